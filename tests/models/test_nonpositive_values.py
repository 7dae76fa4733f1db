"""Values <= 0 for implicit-feedback models, bool and seed parameters (issue 17, point 8)."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
import pytest

from maasrec.exceptions import DataError, MaasrecWarning
from maasrec.models import ALS, BPRMF, EASE, ItemKNN, Popularity, PureSVD
from maasrec.neural import HybridRecommender, SequentialRecommender

IMPLICIT = {
    "Popularity": lambda: Popularity(),
    "EASE": lambda: EASE(l2=1.0),
    "ItemKNN": lambda: ItemKNN(n_neighbors=5),
    "PureSVD": lambda: PureSVD(factors=2, random_state=0),
    "ALS": lambda: ALS(factors=2, iterations=2, random_state=0),
    "BPRMF": lambda: BPRMF(factors=2, epochs=2, random_state=0),
    "HybridRecommender": lambda: HybridRecommender(dim=4, epochs=1, random_state=0),
    "SequentialRecommender": lambda: SequentialRecommender(
        max_len=4, dim=8, n_layers=1, n_heads=1, epochs=1, verbose=False, random_state=0),
}


def frame(disliked: bool) -> pd.DataFrame:
    rows = [(u, i, 1.0 + (u + i) % 4) for u in range(12) for i in range(8) if (u + i) % 3 == 0]
    if disliked:  # user 0 hated item 1 and was indifferent to item 2
        rows += [(0, 1, -5.0), (0, 2, 0.0)]
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


@pytest.mark.parametrize("name", list(IMPLICIT))
def test_values_at_most_zero_are_left_out_with_a_warning_but_stay_seen(name):
    with pytest.warns(MaasrecWarning, match=r"left 2 of \d+ interactions with a value <= 0"):
        m = IMPLICIT[name]().fit(frame(True))
    assert m.seen_[0, 1] == -5.0 and 2 in m.seen_[0].indices  # seen_ keeps every row
    ids, scores = m.recommend(0, k=8)  # a disliked item is seen: never recommended
    assert not {1, 2} & set(ids[np.isfinite(scores)].tolist())
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*value <= 0")
        ref = IMPLICIT[name]().fit(frame(False))
    # the disliked rows change nothing but the exclusions: same scores as without them
    want = ref.score([0] * 5, [0, 3, 4, 5, 6])
    np.testing.assert_allclose(m.score([0] * 5, [0, 3, 4, 5, 6]), want, rtol=1e-5, atol=1e-6)


def test_explicit_models_keep_every_value():
    df = frame(True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*value <= 0")
        a = EASE(l2=1.0, implicit=False).fit(df)
    b = EASE(l2=1.0, implicit=False).fit(frame(False))
    assert not np.allclose(a.B_, b.B_)  # the -5 rating is part of the explicit fit


def test_all_values_at_most_zero_raise():
    with pytest.raises(DataError, match=r"every one of the 3 interaction values is <= 0 \(e\.g\. -1\.0\)"):
        EASE().fit(pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 2], "rating": [-1.0, 0, -2]}))


def _params(cls):
    return [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]


MODEL_CLASSES = [Popularity, EASE, ItemKNN, PureSVD, ALS, BPRMF, HybridRecommender,
                 SequentialRecommender]
BOOL_CASES = [(cls, p.name) for cls in MODEL_CLASSES for p in _params(cls)
              if p.annotation in (bool, "bool")]
SEED_CASES = [cls for cls in MODEL_CLASSES if "random_state" in {p.name for p in _params(cls)}]


def test_every_model_has_its_bool_and_seed_params_listed():
    assert len(BOOL_CASES) >= 10 and len(SEED_CASES) == 5


@pytest.mark.parametrize("cls, name", BOOL_CASES, ids=[f"{c.__name__}.{n}" for c, n in BOOL_CASES])
@pytest.mark.parametrize("bad", ["no", 1, None])
def test_bool_params_must_be_bools(cls, name, bad):
    with pytest.raises(DataError, match=f"{name} must be True or False, got .*{bad!r}"):
        cls(**{name: bad}).fit(frame(False))


@pytest.mark.parametrize("cls", SEED_CASES, ids=[c.__name__ for c in SEED_CASES])
@pytest.mark.parametrize("bad", ["abc", -1, 2**64, 1.5, True, np.random.RandomState(0)])
def test_random_state_must_be_a_seed(cls, bad):
    with pytest.raises(DataError, match=r"random_state must be .*got "):
        cls(random_state=bad).fit(frame(False))
