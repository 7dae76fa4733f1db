"""Keyed HMAC pseudonyms: stable per key, different across keys and kinds, reversible by map."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import numpy as np
import pandas as pd
import pytest

from maasrec.data import Interactions, ItemFeatures
from maasrec.exceptions import DataError, UnknownIdError
from maasrec.models import EASE
from maasrec.privacy import Pseudonymiser, PseudonymMap, generate_key, parse_key

KEY = generate_key()


@pytest.fixture
def frame():
    rng = np.random.default_rng(1)
    users = np.array(["ann@x.org", "bob", "carl", "dora"], dtype=object)[rng.integers(0, 4, 60)]
    return pd.DataFrame({"user_id": users, "item_id": rng.integers(100, 120, 60),
                         "rating": rng.integers(1, 6, 60)})


def test_value_is_the_documented_hmac():
    p = Pseudonymiser(KEY, length=16)
    k = hmac.new(parse_key(KEY), b"maasrec pseudonym v1", hashlib.sha256).digest()
    want = "u_" + hmac.new(k, b"user\0s:bob", hashlib.sha256).hexdigest()[:16]
    assert p.pseudonym("bob") == want


def test_stable_per_key_distinct_across_keys_kinds_and_types():
    a, b = Pseudonymiser(KEY), Pseudonymiser(KEY)
    assert a.pseudonym("bob") == b.pseudonym("bob")
    assert a.pseudonym("bob") != Pseudonymiser(generate_key()).pseudonym("bob")
    assert a.pseudonym(7, "user")[2:] != a.pseudonym(7, "item")[2:]
    assert a.pseudonym(7) != a.pseudonym("7")
    assert a.pseudonym(np.int64(7)) == a.pseudonym(7)
    assert a.pseudonym(7).startswith("u_") and a.pseudonym(7, "item").startswith("i_")


def test_frame_round_trip_through_the_saved_map(tmp_path, frame):
    p = Pseudonymiser(KEY)
    out = p.transform(frame, users=True, items=True)
    assert frame["user_id"].iloc[0] in ("ann@x.org", "bob", "carl", "dora")  # input untouched
    assert not set(out["user_id"]) & set(frame["user_id"])
    assert out["rating"].tolist() == frame["rating"].tolist()
    path = p.mapping.save(tmp_path / "ids.map.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    m = PseudonymMap.load(path)
    assert m.reverse(out["user_id"], "user").tolist() == frame["user_id"].tolist()
    back = m.reverse(out["item_id"], "item")
    assert back.tolist() == frame["item_id"].tolist() and isinstance(back[0], int)
    with pytest.raises(UnknownIdError, match="not in this map"):
        m.reverse(["u_0000"], "user")
    with pytest.raises(FileExistsError):
        p.mapping.save(path)


def test_interactions_and_features_keep_their_rows(frame):
    X = Interactions.from_pandas(frame, user_col="user_id", item_col="item_id")
    p = Pseudonymiser(KEY)
    Y = p.transform(X, users=True)
    assert Y.item_vocab == X.item_vocab and Y.nnz == X.nnz
    assert (Y.to_csr() != X.to_csr()).nnz == 0
    assert p.mapping.reverse(Y.user_vocab.ids, "user").tolist() == X.user_vocab.ids.tolist()
    model = EASE().fit(Y)  # models see pseudonyms only
    assert not set(model.user_vocab_.ids.tolist()) & set(X.user_vocab.ids.tolist())
    feats = ItemFeatures.from_pandas(pd.DataFrame({"item": [100, 101], "title": ["a", "b"]}),
                                     "item", text="title")
    fp = p.transform(feats)
    assert fp.vocab.ids.tolist() == p.pseudonymise_ids([100, 101], "item").tolist()
    assert fp.texts() == ["a", "b"]


def test_map_from_another_key_is_refused(tmp_path):
    p = Pseudonymiser(KEY)
    p.pseudonym("x")
    with pytest.raises(DataError, match="made with the key"):
        Pseudonymiser(generate_key(), mapping=p.mapping)
    extended = Pseudonymiser(KEY, mapping=p.mapping)
    extended.pseudonym("y")
    assert len(extended.mapping) == 2


@pytest.mark.parametrize("bad", [True, None, float("nan"), (1, 2), b"raw"])
def test_bad_ids(bad):
    with pytest.raises(DataError):
        Pseudonymiser(KEY).pseudonymise_ids([1, bad])


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="length"):
        Pseudonymiser(KEY, length=8)
    with pytest.raises(DataError, match="kind"):
        Pseudonymiser(KEY).pseudonym(1, kind="session")
    with pytest.raises(DataError, match="cannot pseudonymise a list"):
        Pseudonymiser(KEY).transform([1, 2])
    with pytest.raises(DataError, match="user column 'nope'"):
        Pseudonymiser(KEY).transform(pd.DataFrame({"u": [1]}), user_col="nope")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(DataError, match="not a maasrec pseudonym map"):
        PseudonymMap.load(tmp_path / "junk.json")


def test_short_pseudonyms_detect_collisions():
    p = Pseudonymiser(KEY, length=16)
    p.mapping._add("user", "u_x", "alice")
    with pytest.raises(DataError, match="share the pseudonym"):
        p.mapping._add("user", "u_x", "bob")
