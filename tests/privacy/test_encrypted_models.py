"""Encrypted model directories: round trips, wrong/missing keys, truncation, tampering."""

from __future__ import annotations

import glob
import inspect
import json
import os
import tempfile

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("cryptography", reason="encryption needs the 'privacy' extra")

import maasrec
from maasrec import Recommender
from maasrec.exceptions import ModelFormatError
from maasrec.models import EASE, ItemKNN
from maasrec.persistence import is_encrypted, load_encrypted, save_encrypted
from maasrec.privacy import KEY_ENV, DecryptionError, EncryptionKeyError, generate_key, sealed

KEY = generate_key()
WIRED = "encryption_key" in inspect.signature(Recommender.save).parameters
needs_wiring = pytest.mark.skipif(not WIRED, reason="Recommender.save/load do not take "
                                  "encryption_key yet (base.py wiring)")


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    users = [f"alice{u}@secret.example" for u in rng.integers(0, 30, 400)]
    return pd.DataFrame({"user": users, "item": rng.integers(0, 50, 400)}).drop_duplicates()


@pytest.fixture(scope="module")
def model(frame):
    return EASE(l2=10.0).fit(frame)


def _plain_dirs() -> set[str]:
    out = set()
    for base in ("/dev/shm", tempfile.gettempdir()):
        out |= set(glob.glob(os.path.join(base, "maasrec-plain-*")))
    return out


def _same(a, b, users):
    ia, sa = a.recommend(users, k=5)
    ib, sb = b.recommend(users, k=5)
    assert ia.tolist() == ib.tolist()
    np.testing.assert_array_equal(sa, sb)


def test_round_trip_and_nothing_readable(tmp_path, model, frame, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    before = _plain_dirs()
    path = tmp_path / "m"
    assert save_encrypted(model, path, KEY) == str(path)
    assert sorted(os.listdir(path)) == ["maasrec.json", "model.enc"]
    assert is_encrypted(path)
    meta = json.loads((path / "maasrec.json").read_text())
    assert "class" not in meta and "params" not in meta
    blob = (path / "model.enc").read_bytes()
    for secret in (b"@secret.example", b"maasrec-model", b"\"l2\"", b"__metadata__"):
        assert secret not in blob
    users = frame["user"].iloc[:3].tolist()
    _same(model, load_encrypted(path, KEY), users)
    assert _plain_dirs() == before  # the scratch copies are gone


def test_key_forms_and_env(tmp_path, model, frame, monkeypatch):
    path = tmp_path / "m"
    raw = __import__("maasrec.privacy", fromlist=["parse_key"]).parse_key(KEY)
    save_encrypted(model, path, raw)
    _same(model, load_encrypted(path, raw.hex()), frame["user"].iloc[:2].tolist())
    monkeypatch.setenv(KEY_ENV, KEY)
    _same(model, load_encrypted(path), frame["user"].iloc[:2].tolist())


def test_torch_weights_and_other_classes(tmp_path, frame):
    from maasrec.neural import NeuMF

    net = NeuMF(dim=8, mlp_layers=(8,), epochs=1, random_state=0).fit(frame)
    save_encrypted(net, tmp_path / "net", KEY)
    _same(net, load_encrypted(tmp_path / "net", KEY), frame["user"].iloc[:2].tolist())
    knn = ItemKNN().fit(frame)
    save_encrypted(knn, tmp_path / "knn", KEY)
    _same(knn, load_encrypted(tmp_path / "knn", KEY, cls=ItemKNN), frame["user"].iloc[:2].tolist())
    with pytest.raises(ModelFormatError, match="not a EASE"):
        load_encrypted(tmp_path / "knn", KEY, cls=EASE)


def test_missing_key(tmp_path, model, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    save_encrypted(model, tmp_path / "m", KEY)
    with pytest.raises(DecryptionError, match="MAASREC_MODEL_KEY") as err:
        load_encrypted(tmp_path / "m")
    assert isinstance(err.value, ModelFormatError)
    # the plain loader names the problem instead of "not a model"
    with pytest.raises(DecryptionError, match="encrypted model"):
        Recommender.load(tmp_path / "m") if not WIRED else maasrec.persistence.read_model_dir(
            tmp_path / "m")


def test_wrong_key_loads_nothing(tmp_path, model):
    save_encrypted(model, tmp_path / "m", KEY)
    calls = []
    with pytest.raises(DecryptionError, match="another key"):
        sealed.load_encrypted(tmp_path / "m", generate_key(), loader=calls.append)
    assert calls == []


@pytest.mark.parametrize("how", ["truncate", "truncate_and_fix_manifest", "flip_middle",
                                 "flip_last", "append", "key_id"])
def test_damaged_files_load_nothing(tmp_path, model, how):
    path = tmp_path / "m"
    save_encrypted(model, path, KEY)
    enc, meta_file = path / "model.enc", path / "maasrec.json"
    blob = bytearray(enc.read_bytes())
    meta = json.loads(meta_file.read_text())
    if how.startswith("truncate"):
        blob = blob[: len(blob) // 2]
    elif how == "flip_middle":
        blob[len(blob) // 2] ^= 0x10
    elif how == "flip_last":
        blob[-1] ^= 0x01
    elif how == "append":
        blob += b"\0" * 32
    if how in ("truncate_and_fix_manifest", "append"):
        meta["files"]["model.enc"]["size"] = len(blob)
    if how == "key_id":
        meta["encryption"]["key_id"] = "0" * 16
    enc.write_bytes(bytes(blob))
    meta_file.write_text(json.dumps(meta))
    before = _plain_dirs()
    calls = []
    with pytest.raises(DecryptionError) as err:
        sealed.load_encrypted(path, KEY, loader=calls.append)
    assert calls == [] and _plain_dirs() == before
    assert str(path) in str(err.value)


def test_bad_key_on_save_writes_nothing(tmp_path, model):
    with pytest.raises(EncryptionKeyError):
        save_encrypted(model, tmp_path / "m", "hunter2")
    assert os.listdir(tmp_path) == []


def test_overwrite_rules(tmp_path, model, frame):
    path = tmp_path / "m"
    model.save(path)
    with pytest.raises(FileExistsError):
        save_encrypted(model, path, KEY)
    assert not is_encrypted(path)
    save_encrypted(model, path, KEY, overwrite=True)
    assert is_encrypted(path)
    model.save(path, overwrite=True)  # and back: the encrypted directory is the model's own
    assert not is_encrypted(path)
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary siblings left


def test_inner_model_errors_name_the_encrypted_path(tmp_path, model, monkeypatch):
    save_encrypted(model, tmp_path / "m", KEY)

    def broken(plain):
        raise ModelFormatError(f"{plain!r}: something is wrong")

    with pytest.raises(ModelFormatError, match=str(tmp_path / "m")) as err:
        sealed.load_encrypted(tmp_path / "m", KEY, loader=broken)
    assert "maasrec-plain-" not in str(err.value)


def test_not_an_encrypted_model(tmp_path, model):
    model.save(tmp_path / "plain")
    with pytest.raises(ModelFormatError, match="not an encrypted"):
        load_encrypted(tmp_path / "plain", KEY)
    with pytest.raises(ModelFormatError, match=r"no maasrec\.json"):
        load_encrypted(tmp_path / "nothing", KEY)


@needs_wiring
def test_save_and_load_methods(tmp_path, model, frame, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "m"
    model.save(path, encryption_key=KEY)
    assert is_encrypted(path)
    _same(model, Recommender.load(path, encryption_key=KEY), frame["user"].iloc[:2].tolist())
    _same(model, maasrec.load(path, encryption_key=KEY), frame["user"].iloc[:2].tolist())
    with pytest.raises(DecryptionError, match="MAASREC_MODEL_KEY"):
        Recommender.load(path)
    monkeypatch.setenv(KEY_ENV, KEY)
    _same(model, EASE.load(path), frame["user"].iloc[:2].tolist())
