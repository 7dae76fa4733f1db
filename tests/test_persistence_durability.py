"""Saving under kills and power loss: atomic exchange, fsync, stale clean-up, foreign files,
the file manifest (issue 17, points 3-5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import maasrec.persistence as persistence
from maasrec import Recommender
from maasrec.exceptions import ModelFormatError
from maasrec.models import EASE, Popularity, PureSVD
from maasrec.persistence import atomic_directory, remove_stale, verify_manifest

ROOT = Path(__file__).resolve().parents[1]
linux_exchange = pytest.mark.skipif(
    persistence._renameat2() is None, reason="needs Linux renameat2 (RENAME_EXCHANGE)"
)
needs_flock = pytest.mark.skipif(persistence.fcntl is None, reason="needs fcntl.flock")


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    X = sp.random(120, 40, density=0.15, format="csr", random_state=rng)
    X.data[:] = 1.0
    return X


@pytest.fixture(scope="module")
def models(X):
    return EASE(l2=1.0).fit(X), EASE(l2=300.0).fit(X)


USERS = list(range(0, 120, 7))


def recs(model):
    return model.recommend(USERS, k=5)[0]


def siblings(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path.parent) if n != path.name)


# -- atomic exchange ---------------------------------------------------------------------------


def test_models_differ(models):
    assert not np.array_equal(recs(models[0]), recs(models[1]))  # else the tests prove nothing


@linux_exchange
def test_overwrite_uses_exchange_not_two_renames(tmp_path, models, monkeypatch):
    path = tmp_path / "m"
    models[0].save(path)
    calls = []
    real = persistence._exchange

    def spy(a, b):
        calls.append((Path(a).name, Path(b).name))
        return real(a, b)

    def no_replace(*a):
        raise AssertionError("os.replace used: the two-rename window is back")

    monkeypatch.setattr(persistence, "_exchange", spy)
    monkeypatch.setattr(persistence.os, "replace", no_replace)
    models[1].save(path, overwrite=True)
    assert len(calls) == 1 and calls[0][1] == "m" and calls[0][0].startswith(".m.tmp-")
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[1]))
    assert siblings(path) == []


@linux_exchange
def test_exchange_swaps_two_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert persistence._exchange(a, b) is True
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"
    with pytest.raises(FileNotFoundError):
        persistence._exchange(a, tmp_path / "missing")


@linux_exchange
def test_interrupted_after_exchange_keeps_new_model(tmp_path, models, monkeypatch):
    path = tmp_path / "m"
    models[0].save(path)
    real = persistence._remove
    removed = []

    def die(p):  # interrupted right after the exchange: the old model is at the temp name
        removed.append(p)
        real(p)
        raise KeyboardInterrupt

    monkeypatch.setattr(persistence, "_remove", die)
    with pytest.raises(KeyboardInterrupt):
        models[1].save(path, overwrite=True)
    monkeypatch.undo()
    assert removed[0].name.startswith(".m.tmp-")
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[1]))
    assert siblings(path) == []


def test_interrupted_before_exchange_keeps_old_model(tmp_path, models, monkeypatch):
    path = tmp_path / "m"
    models[0].save(path)

    def die(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(persistence, "_exchange", die)
    monkeypatch.setattr(persistence.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        models[1].save(path, overwrite=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[0]))
    assert siblings(path) == []  # the exception path removed the temp directory


def test_two_rename_fallback_still_replaces(tmp_path, models, monkeypatch):
    path = tmp_path / "m"
    models[0].save(path)
    monkeypatch.setattr(persistence, "_exchange", lambda a, b: False)
    models[1].save(path, overwrite=True)
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[1]))
    assert siblings(path) == []


def test_first_save_never_replaces_a_concurrent_one(tmp_path, models, monkeypatch):
    path = tmp_path / "m"
    real_exit = atomic_directory._commit
    raced = []

    def racing(self, tmp):  # another process saved to the path meanwhile
        if not raced:
            raced.append(True)
            models[1].save(self.path)
        return real_exit(self, tmp)

    monkeypatch.setattr(atomic_directory, "_commit", racing)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        models[0].save(path)
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[1]))
    assert siblings(path) == []
    # with overwrite=True the later save replaces the concurrent one, whole
    path, raced[:] = tmp_path / "m2", []
    models[0].save(path, overwrite=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[0]))
    assert sorted(siblings(path)) == ["m"]


@linux_exchange
@pytest.mark.parametrize("overwrite", [False, True])
def test_concurrent_first_save_at_the_rename(tmp_path, models, monkeypatch, overwrite):
    path = tmp_path / "m"
    real = persistence._rename_flags
    raced = []

    def racing(src, dst, flags):  # another saver renames its model in just before ours
        if flags == persistence._RENAME_NOREPLACE and not raced:
            raced.append(True)
            models[1].save(dst)
        return real(src, dst, flags)

    monkeypatch.setattr(persistence, "_rename_flags", racing)
    if overwrite:
        models[0].save(path, overwrite=True)
    else:
        with pytest.raises(FileExistsError):
            models[0].save(path)
    monkeypatch.undo()
    assert raced
    np.testing.assert_array_equal(recs(Recommender.load(path)),
                                  recs(models[0] if overwrite else models[1]))
    assert siblings(path) == []


# -- durability --------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fds")
def test_every_file_and_directory_fsynced(tmp_path, X, monkeypatch):
    outer = Popularity().fit(X)
    outer.inner_ = PureSVD(factors=4, random_state=0).fit(X)  # a nested model directory
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(persistence.os, "fsync", spy)
    path = tmp_path / "m"
    outer.save(path)
    monkeypatch.undo()
    # every file and directory was fsynced under its temporary name; map them to the final
    tmp_names = {Path(s).parent for s in synced if Path(s).name == "maasrec.json"
                 and Path(s).parent.name.startswith(".m.tmp-")}
    assert len(tmp_names) == 1
    tmp = str(tmp_names.pop())
    final = {s.replace(tmp, str(path), 1) for s in synced}
    on_disk = {str(p) for p in path.rglob("*")} | {str(path)}
    assert on_disk <= final, sorted(on_disk - final)
    # the parent directory, once, after everything in the temporary tree (the rename)
    assert synced.count(str(tmp_path)) == 1
    assert synced.index(str(tmp_path)) > max(i for i, s in enumerate(synced) if s.startswith(tmp))


def test_fsync_failure_aborts_the_save(tmp_path, models, monkeypatch):
    path = tmp_path / "m"
    models[0].save(path)

    def eio(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(persistence.os, "fsync", eio)
    with pytest.raises(OSError, match="Input/output"):
        models[1].save(path, overwrite=True)
    monkeypatch.undo()
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[0]))
    assert siblings(path) == []


# -- stale clean-up ----------------------------------------------------------------------------


@needs_flock
def test_stale_siblings_removed_live_ones_kept(tmp_path, models):
    path = tmp_path / "m"
    models[0].save(path)
    dead = [tmp_path / ".m.tmp-0123456789ab", tmp_path / ".m.old-deadbeef",
            tmp_path / ".m.old-0123456789abcdef"]
    for d in dead:
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "big.bin").write_bytes(b"x" * 1000)
    live = tmp_path / ".m.tmp-aaaaaaaaaaaa"  # a concurrent saver, alive: holds the lock
    live.mkdir()
    (live / "partial.bin").write_bytes(b"y")
    keep = [tmp_path / ".other.tmp-0123456789ab", tmp_path / ".m.tmp-NOTHEX",
            tmp_path / "m.tmp-0123456789ab", tmp_path / ".m.tmp-0123456789ab.x",
            tmp_path / ".mm.tmp-0123456789ab", tmp_path / ".m.new-0123456789ab"]
    for d in keep:
        d.mkdir()
    afile = tmp_path / ".m.old-0123456789"  # right name, but a file: never touched
    afile.write_text("mine")
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / ".m.tmp-bbbbbbbbbbbb"  # right name, a link to a directory: never followed
    link.symlink_to(target, target_is_directory=True)
    (target / "precious").write_text("p")
    fd = os.open(live, os.O_RDONLY)
    try:
        persistence.fcntl.flock(fd, persistence.fcntl.LOCK_EX | persistence.fcntl.LOCK_NB)
        models[1].save(path, overwrite=True)
        assert all(not d.exists() for d in dead)
        assert (live / "partial.bin").exists()
    finally:
        os.close(fd)
    assert all(d.is_dir() for d in keep)
    assert afile.read_text() == "mine" and (target / "precious").read_text() == "p"
    assert link.is_symlink()
    # the saver is gone (lock released): the next save removes its directory too
    models[0].save(path, overwrite=True)
    assert not live.exists()
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[0]))


@needs_flock
def test_saver_holds_lock_on_its_temp_dir(tmp_path, models):
    path = tmp_path / "m"
    seen = {}
    with atomic_directory(path) as tmp:
        # a concurrent clean-up cannot take it, so it is kept
        assert remove_stale(path) == []
        assert tmp.is_dir()
        seen["tmp"] = tmp
        (tmp / "maasrec.json").write_text("{}")
    assert not seen["tmp"].exists() and path.is_dir()


@needs_flock
def test_temp_dir_taken_by_a_cleanup_is_not_used(tmp_path, monkeypatch):
    path = tmp_path / "m"
    real = persistence._try_lock
    calls = []

    def first_fails(fd):  # a concurrent clean-up locked the new directory first
        calls.append(fd)
        return False if len(calls) == 1 else real(fd)

    monkeypatch.setattr(persistence, "_try_lock", first_fails)
    with atomic_directory(path) as tmp:
        (tmp / "maasrec.json").write_text("{}")
    monkeypatch.undo()
    assert len(calls) >= 2 and path.is_dir()
    # the abandoned directory is unlocked: the clean-up after the save removed it
    assert siblings(path) == []


def test_nested_save_skips_fsync_and_cleanup(tmp_path, X, monkeypatch):
    outer = Popularity().fit(X)
    outer.inner_ = Popularity().fit(X)
    cleaned = []
    real = persistence.remove_stale
    monkeypatch.setattr(persistence, "remove_stale", lambda p: cleaned.append(Path(p).name)
                        or real(p))
    outer.save(tmp_path / "m")
    assert cleaned == ["m"]  # only the outer save cleans its siblings


# -- foreign files -----------------------------------------------------------------------------


def tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("foreign", ["notes.txt", "results/run1.csv", "inner_/mine.txt",
                                     "inner_/retriever/extra.idx"])
def test_foreign_files_refuse_overwrite_and_nothing_is_deleted(tmp_path, X, foreign):
    pytest.importorskip("faiss")
    from maasrec.rankers import FaissRetriever

    outer = Popularity().fit(X)
    outer.inner_ = PureSVD(factors=4, random_state=0).fit(X)
    outer.inner_.set_retriever(FaissRetriever())
    path = tmp_path / "m"
    outer.save(path)
    (path / foreign).parent.mkdir(parents=True, exist_ok=True)
    (path / foreign).write_text("user data")
    before = tree(path)
    with pytest.raises(FileExistsError, match=foreign.replace(".", r"\.")):
        outer.save(path, overwrite=True)
    assert tree(path) == before
    assert siblings(path) == []
    (path / foreign).unlink()
    outer.save(path, overwrite=True)  # only the model's own files: replaced
    (path / "empty_dir").mkdir()  # an empty directory holds nothing to lose
    outer.save(path, overwrite=True)
    assert Recommender.load(path).inner_._retriever is not None


def test_foreign_file_names_all_of_them(tmp_path, models):
    path = tmp_path / "m"
    models[0].save(path)
    for i in range(7):
        (path / f"f{i}.txt").write_text("x")
    with pytest.raises(FileExistsError, match=r"'f0\.txt'.*'f4\.txt' and 2 more"):
        models[1].save(path, overwrite=True)
    assert len(list(path.glob("f*.txt"))) == 7


def test_file_added_during_save_is_detected(tmp_path, models, monkeypatch):
    path = tmp_path / "m"
    models[0].save(path)
    real = persistence.write_model_dir

    def add_foreign(tmp, **kw):
        (path / "late.txt").write_text("written while the save ran")
        return real(tmp, **kw)

    monkeypatch.setattr("maasrec.base.write_model_dir", add_foreign)
    with pytest.raises(FileExistsError, match=r"late\.txt"):
        models[1].save(path, overwrite=True)
    assert (path / "late.txt").exists() and siblings(path) == []


def test_symlink_in_model_dir_is_foreign(tmp_path, models):
    path = tmp_path / "m"
    models[0].save(path)
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.csv").write_text("k")
    (path / "link").symlink_to(other, target_is_directory=True)
    with pytest.raises(FileExistsError, match="link"):
        models[1].save(path, overwrite=True)
    assert (other / "keep.csv").read_text() == "k"


# -- manifest ----------------------------------------------------------------------------------


def test_manifest_lists_every_file_with_size_and_hash(tmp_path, X):
    outer = Popularity().fit(X)
    outer.inner_ = EASE(l2=5.0).fit(X)
    path = tmp_path / "m"
    outer.save(path)
    files = json.loads((path / "maasrec.json").read_text())["files"]
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert set(files) == on_disk - {"maasrec.json"}
    assert "inner_/maasrec.json" in files and "inner_/arrays.safetensors" in files
    for rel, e in files.items():
        assert e == persistence._file_entry(path / rel), rel
    inner = json.loads((path / "inner_" / "maasrec.json").read_text())["files"]
    assert set(inner) == {"arrays.safetensors", "vocab.json"}
    assert verify_manifest(path) is True


def flip_byte(f: Path, at: int = -10) -> None:
    data = bytearray(f.read_bytes())
    data[at] ^= 0x01
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "dir"])
def test_manifest_mismatch_names_the_file(tmp_path, models, damage):
    path = tmp_path / "m"
    models[0].save(path)
    f = path / "arrays.safetensors"
    if damage == "flip":  # same size: only the hash can tell
        flip_byte(f)
        match = r"arrays\.safetensors.*does not match"
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:-3])
        match = r"arrays\.safetensors.*bytes"
    elif damage == "delete":
        f.unlink()
        match = r"arrays\.safetensors.*missing"
    else:
        f.unlink()
        f.mkdir()
        match = r"arrays\.safetensors.*not a regular file"
    with pytest.raises(ModelFormatError, match=match):
        Recommender.load(path)
    with pytest.raises(ModelFormatError, match=match):
        verify_manifest(path)


def test_nested_file_mismatch_names_the_nested_file(tmp_path, X):
    outer = Popularity().fit(X)
    outer.inner_ = EASE(l2=5.0).fit(X)
    path = tmp_path / "m"
    outer.save(path)
    flip_byte(path / "inner_" / "arrays.safetensors")
    with pytest.raises(ModelFormatError, match=r"inner_.arrays\.safetensors"):
        Recommender.load(path)
    with pytest.raises(ModelFormatError, match=r"inner_.arrays\.safetensors"):
        verify_manifest(path)
    # verify_manifest(include_nested=False) leaves it to the nested model's own check
    assert verify_manifest(path, include_nested=False) is True


def test_nested_files_hashed_once_on_load(tmp_path, X, monkeypatch):
    outer = Popularity().fit(X)
    outer.inner_ = EASE(l2=5.0).fit(X)
    path = tmp_path / "m"
    outer.save(path)
    hashed = []
    real = persistence._file_entry
    monkeypatch.setattr(persistence, "_file_entry",
                        lambda p: hashed.append(Path(p).relative_to(path).as_posix()) or real(p))
    Recommender.load(path)
    assert sorted(hashed) == sorted(set(hashed))  # each file once
    assert set(hashed) == {p.relative_to(path).as_posix() for p in path.rglob("*")
                           if p.is_file() and p != path / "maasrec.json"}


@pytest.mark.parametrize("entry", [
    {"../outside": {"size": 1, "sha256": "0" * 64}},
    {"/etc/passwd": {"size": 1, "sha256": "0" * 64}},
    {"a//b": {"size": 1, "sha256": "0" * 64}},
    {"vocab.json": {"size": -1, "sha256": "0" * 64}},
    {"vocab.json": {"size": True, "sha256": "0" * 64}},
    {"vocab.json": {"size": 1, "sha256": "xyz"}},
    {"vocab.json": [1, 2]},
    [1, 2],
])
def test_malformed_manifest(tmp_path, models, entry):
    path = tmp_path / "m"
    models[0].save(path)
    meta = json.loads((path / "maasrec.json").read_text())
    meta["files"] = entry
    (path / "maasrec.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match=r"manifest|files"):
        Recommender.load(path)


def test_unlisted_extra_file_does_not_break_load(tmp_path, models):
    path = tmp_path / "m"
    models[0].save(path)
    (path / "README.txt").write_text("notes")
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[0]))


def test_verify_false_skips_the_check(tmp_path, models):
    path = tmp_path / "m"
    models[0].save(path)
    (path / "vocab.json").write_text((path / "vocab.json").read_text() + " ")
    with pytest.raises(ModelFormatError, match="vocab"):
        persistence.read_model_dir(path)
    persistence.read_model_dir(path, verify=False)  # the JSON still parses


# -- models saved before manifests -------------------------------------------------------------


def strip_manifests(path: Path) -> None:
    for meta_file in path.rglob("maasrec.json"):
        meta = json.loads(meta_file.read_text())
        meta.pop("files", None)
        meta_file.write_text(json.dumps(meta))


def test_model_without_manifest_loads_and_can_be_overwritten(tmp_path, X, models):
    pytest.importorskip("faiss")
    from maasrec.rankers import FaissRetriever

    outer = Popularity().fit(X)
    outer.inner_ = PureSVD(factors=4, random_state=0).fit(X)
    outer.inner_.set_retriever(FaissRetriever())
    path = tmp_path / "m"
    outer.save(path)
    strip_manifests(path)
    assert verify_manifest(path) is False
    back = Recommender.load(path)
    np.testing.assert_array_equal(recs(back), recs(outer))
    (path / "notes.txt").write_text("user")  # a foreign file in an old model: refused
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        models[0].save(path, overwrite=True)
    (path / "notes.txt").unlink()
    (path / "inner_" / "retriever" / "mine.bin").write_text("user")
    with pytest.raises(FileExistsError, match=r"mine\.bin"):
        models[0].save(path, overwrite=True)
    (path / "inner_" / "retriever" / "mine.bin").unlink()
    models[0].save(path, overwrite=True)  # only maasrec's own names: replaced
    np.testing.assert_array_equal(recs(Recommender.load(path)), recs(models[0]))
    assert "files" in json.loads((path / "maasrec.json").read_text())


# -- real kills --------------------------------------------------------------------------------


KILL_CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, scipy.sparse as sp
    import maasrec.persistence as P
    from maasrec.models import EASE
    point, path = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    X = sp.random(120, 40, density=0.15, format="csr", random_state=rng)
    X.data[:] = 1.0
    model = EASE(l2=300.0).fit(X)
    def kill(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "write":  # after the data files, before maasrec.json
        P.build_manifest = kill
    elif point == "exchange":  # just before the exchange
        P._exchange = kill
    elif point == "remove":  # after the exchange, before the old model is removed
        P._remove = kill
    model.save(path, overwrite=True)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL semantics: Linux")
def test_sigkill_at_each_step_leaves_a_loadable_model(tmp_path, models):
    path = tmp_path / "m"
    models[0].save(path)
    for point, expect_new in [("write", False), ("exchange", False), ("remove", True)]:
        proc = subprocess.run([sys.executable, "-c", KILL_CHILD, point, str(path)],
                              capture_output=True, timeout=120)
        assert proc.returncode == -9, (point, proc.stderr.decode()[-2000:])
        np.testing.assert_array_equal(recs(Recommender.load(path)),
                                      recs(models[1] if expect_new else models[0]))
        assert len(siblings(path)) == 1, point  # the dead saver's directory
        models[0].save(path, overwrite=True)
        assert siblings(path) == [], point


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses fork and SIGKILL")
def test_random_sigkills_during_saves(tmp_path):
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reliability_kill.py"), "--n", "20",
         "--items", "800", "--users", "1500", "--seed", "1", "--dir", str(tmp_path / "w"),
         "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert out.exists(), proc.stderr[-3000:]
    s = json.loads(out.read_text())
    assert s["failures"] == [], s["failures"]
    assert proc.returncode == 0
    assert s["kills"] == 20 and s["orphans_after_next_save"] == 0
    assert s["loadable_old_or_new"] + s["missing_after_kill"] == 20
    # a model was at the path after every kill, except a kill before the very first rename
    for r in s["rounds"]:
        assert r["model"] in ("A", "B") or (r["mode"] == "first" and r["saves_done"] == 0)
    # the kills really landed inside saves, not only between them
    assert s["killed_mid_write"] + s["killed_after_complete_write"] >= 5
