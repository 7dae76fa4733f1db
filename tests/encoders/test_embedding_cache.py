"""The on-disk embedding cache: keys, shards, compaction, corruption, concurrency."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.encoders.cache import (
    EmbeddingCache,
    default_cache_dir,
    file_sha256,
    path_fingerprint,
    resolve_cache_dir,
    text_keys,
)
from maasrec.exceptions import DataError, MaasrecWarning

KEY = {"model": "m", "fingerprint": "f", "pooling": "mean"}


def vec_of(keys, dim=4):
    """A deterministic vector per key, so any writer stores the same value."""
    return np.stack([np.frombuffer(k[:dim * 4], dtype=np.uint32).astype(np.float32) / 2**32
                     for k in keys])


def test_text_keys():
    a, b, c = text_keys(["x", "y", "x"])
    assert a == c != b and len(a) == 32
    assert a == hashlib.sha256(b"x").digest()


def test_put_get_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path, KEY)
    keys = text_keys([f"t{i}" for i in range(10)])
    found, vecs = cache.get(keys)
    assert not found.any() and vecs is None
    assert cache.put(keys[:6], vec_of(keys[:6])) == 6
    assert cache.put(keys[:6], vec_of(keys[:6])) == 0  # already there
    found, vecs = cache.get(keys)
    assert found.tolist() == [True] * 6 + [False] * 4
    np.testing.assert_array_equal(vecs[:6], vec_of(keys[:6]))
    assert (vecs[6:] == 0).all()
    assert cache.hits == 6 and cache.misses == 14
    assert len(cache) == 6 and keys[0] in cache
    assert (cache.path / "key.json").is_file()
    other = EmbeddingCache(tmp_path, KEY)  # a second handle sees the same data
    np.testing.assert_array_equal(other.get(keys[:6])[1], vec_of(keys[:6]))
    assert other.info()["entries"] == 6


def test_namespaces_separate_settings(tmp_path):
    a = EmbeddingCache(tmp_path, KEY)
    b = EmbeddingCache(tmp_path, {**KEY, "pooling": "cls"})
    assert a.namespace != b.namespace
    assert EmbeddingCache(tmp_path, dict(reversed(list(KEY.items())))).namespace == a.namespace
    k = text_keys(["x"])
    a.put(k, vec_of(k))
    assert not b.get(k)[0].any()


def test_duplicates_in_one_put(tmp_path):
    cache = EmbeddingCache(tmp_path, KEY)
    k = text_keys(["a", "b", "a"])
    assert cache.put(k, vec_of(k)) == 2


def test_bad_input(tmp_path):
    cache = EmbeddingCache(tmp_path, KEY)
    k = text_keys(["a", "b"])
    with pytest.raises(DataError, match="shape"):
        cache.put(k, np.zeros((3, 4)))
    with pytest.raises(DataError, match="keys"):
        cache.get([b"short"])
    with pytest.raises(DataError, match="keys"):
        cache.get(np.zeros((2, 16), dtype=np.uint8))
    cache.put(k, vec_of(k))
    with pytest.raises(DataError, match="dimension"):
        cache.put(text_keys(["c"]), np.zeros((1, 7)))
    with pytest.raises(DataError):
        EmbeddingCache(tmp_path, ["not", "a", "mapping"])


def test_non_finite_vectors_are_not_stored(tmp_path):
    cache = EmbeddingCache(tmp_path, KEY)
    k = text_keys(["a", "b"])
    v = vec_of(k)
    v[1, 0] = np.nan
    with pytest.warns(MaasrecWarning, match="non-finite"):
        assert cache.put(k, v) == 1
    assert cache.get(k)[0].tolist() == [True, False]


def test_uint8_key_arrays(tmp_path):
    cache = EmbeddingCache(tmp_path, KEY)
    k = text_keys(["a", "b"])
    arr = np.frombuffer(b"".join(k), dtype=np.uint8).reshape(2, 32)
    cache.put(arr, vec_of(k))
    assert cache.get(k)[0].all()


def test_shards_and_compaction(tmp_path):
    cache = EmbeddingCache(tmp_path, KEY, shard_rows=3, compact_after=1000)
    keys = text_keys([f"t{i}" for i in range(20)])
    for start in range(0, 20, 4):
        cache.put(keys[start:start + 4], vec_of(keys[start:start + 4]))
    assert cache.n_shards == 10  # 5 writes of 4 rows, 3 rows per shard
    cache.compact()
    assert cache.n_shards == 7  # 20 rows / 3
    found, vecs = EmbeddingCache(tmp_path, KEY).get(keys)
    assert found.all()
    np.testing.assert_array_equal(vecs, vec_of(keys))
    auto = EmbeddingCache(tmp_path / "auto", KEY, compact_after=3)
    for i in range(6):
        k = text_keys([f"x{i}"])
        auto.put(k, vec_of(k))
    assert auto.n_shards <= 3 and len(auto) == 6


def test_a_compacted_away_shard_is_found_again(tmp_path):
    reader = EmbeddingCache(tmp_path, KEY)
    writer = EmbeddingCache(tmp_path, KEY)
    keys = text_keys(["a", "b", "c"])
    for k in keys:
        writer.put([k], vec_of([k]))
    assert len(reader) == 3  # indexes the three shards
    writer.compact()  # removes them, writes one
    found, vecs = reader.get(keys)
    assert found.all()
    np.testing.assert_array_equal(vecs, vec_of(keys))


def test_corrupt_and_foreign_files_are_ignored(tmp_path):
    cache = EmbeddingCache(tmp_path, KEY)
    k = text_keys(["a"])
    cache.put(k, vec_of(k))
    (cache.path / "shard-garbage.safetensors").write_bytes(b"\x00\x01 not safetensors")
    (cache.path / ".tmp-half-written.safetensors").write_bytes(b"partial")
    fresh = EmbeddingCache(tmp_path, KEY)
    with pytest.warns(MaasrecWarning, match="unreadable"):
        found, vecs = fresh.get(k)
    assert found.all()
    np.testing.assert_array_equal(vecs, vec_of(k))


def test_clear(tmp_path):
    cache = EmbeddingCache(tmp_path, KEY)
    k = text_keys(["a"])
    cache.put(k, vec_of(k))
    cache.clear()
    assert not cache.path.exists() and len(cache) == 0


def test_resolve_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(None) == tmp_path / "env" == resolve_cache_dir(True)
    assert resolve_cache_dir(False) is None
    assert resolve_cache_dir(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(DataError, match="cache_dir"):
        resolve_cache_dir(3)
    with pytest.raises(DataError, match="empty"):
        resolve_cache_dir("")
    monkeypatch.delenv("MAASREC_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "maasrec", "embeddings")


def test_file_hashes_and_fingerprints(tmp_path):
    big = tmp_path / "model" / "weights.bin"
    big.parent.mkdir()
    data = os.urandom((1 << 20) + 17)
    big.write_bytes(data)
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "model" / "README.md").write_text("docs do not count")
    memo = tmp_path / "memo"
    assert file_sha256(big, memo) == hashlib.sha256(data).hexdigest()
    assert len(list((memo / "_filehash").iterdir())) == 1  # big files are memoised on disk
    fp = path_fingerprint(tmp_path / "model", memo)
    (tmp_path / "model" / "README.md").write_text("changed docs")
    assert path_fingerprint(tmp_path / "model", memo) == fp
    os.rename(tmp_path / "model", tmp_path / "moved")
    assert path_fingerprint(tmp_path / "moved", memo) == fp  # content, not location
    (tmp_path / "moved" / "onnx").mkdir()
    (tmp_path / "moved" / "onnx" / "model.onnx").write_bytes(b"an export transformers ignores")
    assert path_fingerprint(tmp_path / "moved", memo) == fp
    (tmp_path / "moved" / "1_Pooling").mkdir()
    (tmp_path / "moved" / "1_Pooling" / "config.json").write_text("{}")
    fp_pooling = path_fingerprint(tmp_path / "moved", memo)
    assert fp_pooling != fp  # sentence-transformers modules count
    (tmp_path / "moved" / "config.json").write_text('{"hidden_size": 8}')
    assert path_fingerprint(tmp_path / "moved", memo) != fp_pooling


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.text(max_size=8), max_size=6), min_size=1, max_size=5))
def test_any_sequence_of_writes_reads_back(tmp_path_factory, batches):
    root = tmp_path_factory.mktemp("prop")
    cache = EmbeddingCache(root, KEY, shard_rows=2, compact_after=3)
    written = set()
    for texts in batches:
        k = text_keys(texts)
        if k:
            cache.put(k, vec_of(k))
            written |= set(k)
    all_keys = sorted(written)
    if all_keys:
        found, vecs = EmbeddingCache(root, KEY).get(all_keys)
        assert found.all()
        np.testing.assert_array_equal(vecs, vec_of(all_keys))


# -- concurrency -----------------------------------------------------------------------------

def _writer(root: str, worker: int, rounds: int) -> None:
    cache = EmbeddingCache(root, KEY, shard_rows=5, compact_after=6)
    for r in range(rounds):
        # overlapping keys across workers and rounds
        texts = [f"text-{(worker * 7 + r * 3 + j) % 60}" for j in range(8)]
        k = text_keys(texts)
        cache.put(k, vec_of(k))
        cache.get(k)


def _check_consistent(root) -> None:
    cache = EmbeddingCache(root, KEY)
    keys = text_keys([f"text-{i}" for i in range(60)])
    found, vecs = cache.get(keys)
    expected = vec_of(keys)
    np.testing.assert_array_equal(vecs[found], expected[found])
    assert found.sum() >= 50
    leftovers = [p.name for p in cache.path.iterdir() if p.name.startswith(".tmp-")]
    assert not leftovers, leftovers
    from safetensors.numpy import load_file

    for shard in cache.path.glob("shard-*.safetensors"):
        data = load_file(str(shard))  # every visible shard is complete
        assert data["keys"].shape[0] == data["vectors"].shape[0]


def test_concurrent_threads(tmp_path):
    threads = [threading.Thread(target=_writer, args=(str(tmp_path), w, 12)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _check_consistent(tmp_path)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_concurrent_processes(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 12)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    _check_consistent(tmp_path)


def test_a_shard_truncated_after_indexing_is_dropped(tmp_path):
    cache = EmbeddingCache(tmp_path, KEY)
    a, b = text_keys(["a"]), text_keys(["b"])
    cache.put(a, vec_of(a))
    cache.put(b, vec_of(b))
    assert len(cache) == 2
    shard = cache._index[b[0]][0]
    data = (cache.path / shard).read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    (cache.path / shard).write_bytes(data[:header_end + 4])  # damaged behind our back
    with pytest.warns(MaasrecWarning, match="unreadable"):
        found, vecs = cache.get(a + b)
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(vecs[0], vec_of(a)[0])
