"""Tests of maasrec.persistence: atomic model directories, JSON + safetensors, no pickle."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from maasrec import __version__
from maasrec.data.vocab import IdVocab
from maasrec.exceptions import ModelFormatError
from maasrec.persistence import (
    FORMAT_NAME,
    FORMAT_VERSION,
    atomic_directory,
    csr_from_arrays,
    csr_to_arrays,
    read_json,
    read_model_dir,
    write_model_dir,
)


def write_minimal(path, **kw):
    args = {
        "class_name": "maasrec.models.Popularity",
        "params": {},
        "attributes": {},
        "vocabs": {},
        "arrays": {},
    }
    args.update(kw)
    with atomic_directory(path, overwrite=True) as tmp:
        write_model_dir(tmp, **args)


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# -- atomic_directory --------------------------------------------------------------------------


def test_atomic_directory_creates_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "deep" / "model"
    with atomic_directory(target) as tmp:
        assert tmp != target and tmp.parent == target.parent and tmp.is_dir()
        (tmp / "a.txt").write_text("hello")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "hello"
    assert siblings(target) == []


def test_existing_path_without_overwrite(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "maasrec.json").write_text("{}")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        with atomic_directory(target):
            pass
    assert (target / "maasrec.json").read_text() == "{}"
    assert siblings(target) == []


def test_existing_file_is_never_replaced(tmp_path):
    target = tmp_path / "m"
    target.write_text("precious")
    with pytest.raises(FileExistsError, match="not a directory"):
        with atomic_directory(target, overwrite=True):
            pass
    assert target.read_text() == "precious"


def test_non_model_directory_never_replaced(tmp_path):
    target = tmp_path / "home"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a maasrec model"):
        with atomic_directory(target, overwrite=True):
            pass
    assert (target / "thesis.tex").read_text() == "precious"
    assert siblings(target) == []


def test_empty_directory_and_model_directory_replaced(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "maasrec.json").write_text("1")
    assert (target / "maasrec.json").read_text() == "1"
    (target / "stale.bin").write_text("old")  # not a model file: refused, nothing deleted
    with pytest.raises(FileExistsError, match=r"stale\.bin"):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "maasrec.json").write_text("never")
    assert (target / "stale.bin").read_text() == "old"
    (target / "stale.bin").unlink()
    (target / "vocab.json").write_text("old")  # a model file name (no manifest): replaced
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "maasrec.json").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["maasrec.json"]
    assert (target / "maasrec.json").read_text() == "2"
    assert siblings(target) == []  # no .old-* or .tmp-* left


def test_exception_inside_block_keeps_old_directory(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "maasrec.json").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "maasrec.json").write_text("new")
            raise RuntimeError("disk full")
    assert (target / "maasrec.json").read_text() == "old"
    assert siblings(target) == []
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(tmp_path / "fresh"):
            raise KeyboardInterrupt
    assert not (tmp_path / "fresh").exists()
    assert siblings(target) == []


def test_failed_rename_restores_old_directory(tmp_path, monkeypatch):
    target = tmp_path / "m"
    target.mkdir()
    (target / "maasrec.json").write_text("old")
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # moving the new directory into place fails
            raise OSError("rename failed")
        return real(src, dst)

    # the two-rename path (systems without renameat2's RENAME_EXCHANGE)
    monkeypatch.setattr("maasrec.persistence._exchange", lambda a, b: False)
    monkeypatch.setattr("maasrec.persistence.os.replace", flaky)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_directory(target, overwrite=True) as tmp:
            (tmp / "maasrec.json").write_text("new")
    monkeypatch.setattr("maasrec.persistence.os.replace", real)
    assert (target / "maasrec.json").read_text() == "old"
    assert siblings(target) == []


# -- write / read ------------------------------------------------------------------------------


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "m"
    arrays = {
        "B_": np.arange(6, dtype=np.float32).reshape(2, 3),
        "idx_": np.array([3, -1]),
        "flags_": np.array([True, False]),
    }
    vocabs = {
        "user_vocab_": IdVocab(["a", "b"], name="user"),
        "item_vocab_": IdVocab([5, 7, 9], name="item"),
    }
    write_minimal(
        path,
        params={
            "l2": np.float64(2.5),
            "k": np.int64(3),
            "flag": np.bool_(True),
            "shape": (1, 2),
            "nested": {"x": [1, None]},
        },
        attributes={"B_": {"type": "ndarray"}},
        vocabs=vocabs,
        arrays=arrays,
        extra={"extra_state": {"a": 1}},
    )
    d = read_model_dir(path)
    meta = d["meta"]
    assert meta["format"] == FORMAT_NAME and meta["format_version"] == FORMAT_VERSION
    assert meta["maasrec_version"] == __version__
    assert meta["class"] == "maasrec.models.Popularity"
    assert meta["params"] == {
        "l2": 2.5,
        "k": 3,
        "flag": True,
        "shape": [1, 2],
        "nested": {"x": [1, None]},
    }
    assert type(meta["params"]["k"]) is int
    assert meta["extra_state"] == {"a": 1}
    assert "saved_at" in meta
    assert d["vocabs"] == vocabs
    for k, a in arrays.items():
        np.testing.assert_array_equal(d["arrays"][k], a)
        assert d["arrays"][k].dtype == a.dtype
    assert d["path"] == path and d["weights_path"] == path / "weights.safetensors"
    files = sorted(p.name for p in path.iterdir())
    assert files == ["arrays.safetensors", "maasrec.json", "vocab.json"]
    # no pickle anywhere: the files are JSON or safetensors
    json.loads((path / "maasrec.json").read_text())
    json.loads((path / "vocab.json").read_text())


def test_write_without_arrays_has_no_arrays_file(tmp_path):
    write_minimal(tmp_path / "m")
    d = read_model_dir(tmp_path / "m")
    assert d["arrays"] == {} and d["vocabs"] == {}
    assert not (tmp_path / "m" / "arrays.safetensors").exists()


def test_unsaveable_values(tmp_path):
    with pytest.raises(ModelFormatError, match=r"params\.obj .*cannot be saved as JSON"):
        write_minimal(tmp_path / "a", params={"obj": object()})
    with pytest.raises(ModelFormatError, match=r"attributes\.d"):
        write_minimal(tmp_path / "b", attributes={"d": {1: "non-string key"}})
    with pytest.raises(ModelFormatError, match="dtype object"):
        write_minimal(tmp_path / "c", arrays={"names_": np.array(["a", None], dtype=object)})
    # failed writes leave nothing (maasrec.json is written last, the temp dir is removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_weights_written_with_torch(tmp_path):
    torch = pytest.importorskip("torch")
    write_minimal(tmp_path / "m", weights={"net.w": torch.ones(2, 2, requires_grad=True)})
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "m" / "weights.safetensors"))
    assert torch.equal(w["net.w"], torch.ones(2, 2))


# -- read_model_dir errors ---------------------------------------------------------------------


def test_read_not_a_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="is not a directory"):
        read_model_dir(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFormatError, match="is not a directory"):
        read_model_dir(tmp_path / "file")


def test_read_without_meta(tmp_path):
    with pytest.raises(ModelFormatError, match=r"has no maasrec\.json"):
        read_model_dir(tmp_path)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m"
    write_minimal(
        path, vocabs={"item_vocab_": IdVocab([1, 2])}, arrays={"x_": np.ones(3, dtype=np.float32)}
    )
    return path


def edit_meta(path, **changes):
    meta = json.loads((path / "maasrec.json").read_text())
    meta.update(changes)
    (path / "maasrec.json").write_text(json.dumps(meta))


def test_read_wrong_format_name(saved):
    edit_meta(saved, format="some-other-format")
    with pytest.raises(ModelFormatError, match="not a maasrec model description"):
        read_model_dir(saved)
    (saved / "maasrec.json").write_text("[1, 2]")
    with pytest.raises(ModelFormatError, match="not a maasrec model description"):
        read_model_dir(saved)


def test_read_newer_version_names_it(saved):
    edit_meta(saved, format_version=FORMAT_VERSION + 41, maasrec_version="9.9.9")
    with pytest.raises(ModelFormatError) as info:
        read_model_dir(saved)
    msg = str(info.value)
    assert str(FORMAT_VERSION + 41) in msg and "9.9.9" in msg and "upgrade" in msg
    assert __version__ in msg


@pytest.mark.parametrize("version", ["1", None, 1.5])
def test_read_bad_version(saved, version):
    edit_meta(saved, format_version=version)
    with pytest.raises(ModelFormatError, match="format_version"):
        read_model_dir(saved)


def test_read_older_version_ok(saved):
    # every version from 1 to FORMAT_VERSION reads; 0 and below were never formats
    from maasrec.persistence import FORMAT_VERSION

    for v in range(1, FORMAT_VERSION + 1):
        edit_meta(saved, format_version=v)
        assert read_model_dir(saved)["meta"]["format_version"] == v
    edit_meta(saved, format_version=0)
    with pytest.raises(ModelFormatError, match="format_version 0"):
        read_model_dir(saved)


def test_read_corrupt_json(saved):
    (saved / "maasrec.json").write_text('{"format": "maasrec-model", ')
    with pytest.raises(ModelFormatError, match="cannot read"):
        read_model_dir(saved)
    (saved / "maasrec.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelFormatError, match="cannot read"):
        read_model_dir(saved)


def test_read_corrupt_vocab(saved):
    (saved / "vocab.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match=r"vocab\.json"):
        read_model_dir(saved)


@pytest.mark.parametrize(
    "content",
    [
        '{"item_vocab_": {"kind": "int", "ids": [1, 1]}}',  # duplicates
        '{"item_vocab_": {"kind": "int"}}',  # no ids
        '{"item_vocab_": [1, 2]}',  # not an object
        '{"item_vocab_": {"kind": "int", "ids": ["a"]}}',  # wrong kind
    ],
)
def test_read_invalid_vocab_structure(saved, content):
    (saved / "vocab.json").write_text(content)
    with pytest.raises(ModelFormatError, match="vocab"):
        read_model_dir(saved)


def test_read_corrupt_safetensors(saved):
    (saved / "arrays.safetensors").write_bytes(b"\x00\x01not a safetensors file at all")
    with pytest.raises(ModelFormatError, match=r"arrays\.safetensors"):
        read_model_dir(saved)
    data = (saved / "arrays.safetensors").read_bytes()
    (saved / "arrays.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError):
        read_model_dir(saved)


def test_read_json_helper(tmp_path):
    with pytest.raises(ModelFormatError, match="cannot read"):
        read_json(tmp_path / "nope.json")
    (tmp_path / "ok.json").write_text('{"a": NaN}')
    assert np.isnan(read_json(tmp_path / "ok.json")["a"])


# -- sparse helpers ----------------------------------------------------------------------------


def test_csr_round_trip():
    m = sp.random(5, 7, density=0.3, format="csr", random_state=0, dtype=np.float32)
    attr, arrays = csr_to_arrays("seen_", m)
    assert attr == {"type": "csr", "shape": [5, 7]}
    assert set(arrays) == {"seen_.data", "seen_.indices", "seen_.indptr"}
    back = csr_from_arrays("seen_", json.loads(json.dumps(attr)), arrays)
    assert (back != m).nnz == 0 and back.shape == m.shape and back.dtype == np.float32
    attr, arrays = csr_to_arrays("e", sp.csr_matrix((0, 3)))
    assert csr_from_arrays("e", attr, arrays).shape == (0, 3)


def test_csr_from_arrays_missing():
    attr, arrays = csr_to_arrays("seen_", sp.eye(3, format="csr"))
    del arrays["seen_.indptr"]
    with pytest.raises(ModelFormatError, match="'seen_' is missing or corrupt"):
        csr_from_arrays("seen_", attr, arrays)
    attr, arrays = csr_to_arrays("seen_", sp.eye(3, format="csr"))
    with pytest.raises(ModelFormatError):
        csr_from_arrays("seen_", {"type": "csr", "shape": [2, 2]}, arrays)


# -- properties --------------------------------------------------------------------------------

array_st = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_]),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arrays=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_.]{0,10}", fullmatch=True), array_st, max_size=4
    ),
    ids=st.lists(st.one_of(st.integers(-(10**9), 10**9)), unique=True, max_size=10),
    params=st.dictionaries(
        st.text(max_size=5),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(10**6), 10**6),
            st.floats(allow_nan=False),
            st.text(max_size=5),
        ),
        max_size=4,
    ),
)
def test_round_trip_property(tmp_path, arrays, ids, params):
    path = tmp_path / "prop"
    write_minimal(path, params=params, arrays=arrays, vocabs={"v_": IdVocab(ids)})
    d = read_model_dir(path)
    assert d["meta"]["params"] == params
    assert d["vocabs"]["v_"] == IdVocab(ids)
    assert set(d["arrays"]) == set(arrays)
    for k, a in arrays.items():
        np.testing.assert_array_equal(d["arrays"][k], a)
        assert d["arrays"][k].dtype == a.dtype and d["arrays"][k].shape == a.shape
    assert siblings(path) == []


def test_model_directory_has_normal_permissions(tmp_path):
    # the model directory gets the same mode as any directory the user creates (umask),
    # not the 0o700 of a private temporary directory
    (tmp_path / "plain").mkdir()
    with atomic_directory(tmp_path / "m") as tmp:
        (tmp / "maasrec.json").write_text("{}")
    assert (tmp_path / "m").stat().st_mode == (tmp_path / "plain").stat().st_mode
