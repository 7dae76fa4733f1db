"""Data set loaders: embedded copy, local folders, verified downloads, synthetic data."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

import maasrec.data.datasets as dsmod
from maasrec import datasets
from maasrec.data.datasets import Archive, Dataset, RemoteFile, item_text
from maasrec.data.split import leave_last_out
from maasrec.exceptions import ColdStartWarning, DataError

EMBEDDED = Path(dsmod.__file__).resolve().parent.parent / "datasets_data" / "ml-latest-small"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No MAASREC_DATA, a fresh HOME/cache, and no network (file:// URLs only)."""
    monkeypatch.delenv("MAASREC_DATA", raising=False)
    monkeypatch.delenv("MAASREC_CACHE", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    real = urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        if not str(getattr(url, "full_url", url)).startswith("file:"):
            raise AssertionError(f"test tried to reach the network: {url}")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    return home


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# -- tiny fake data sets in the original formats -----------------------------------------
FLAGS = ["0"] * 19


def _flags(*on: int) -> str:
    f = FLAGS.copy()
    for j in on:
        f[j] = "1"
    return "|".join(f)


ML100K = {
    "u.data": b"1\t10\t4\t881250949\n1\t20\t3\t881250950\n2\t10\t5\t881250951\n2\t20\t1\t881250800\n",
    "u.item": (f"10|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4, 5)}\n"
               f"20|Misérables, Les|01-Jan-1998||http://y|{_flags(0)}\n"
               f"30|Never Rated (1990)|01-Jan-1990||http://z|{_flags(8)}\n").encode("latin-1"),
    "u.user": b"1|24|M|technician|85711\n2|53|F|other|T8H1N\n",
}
ML1M_MOVIES = ("10::Toy Story (1995)::Animation|Children's|Comedy\n"
               "20::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
               "30::Caf\u00e9 Society (2016)::Drama\n").encode("latin-1")
ML1M_USERS = b"1::F::1::10::48067\n2::M::56::16::70072\n"
ML1M_RATINGS = b"1::10::5::978300760\n1::20::3::978300700\n2::30::4::978300800\n"
BEAUTY = b"1 1 2 3 2\n2 3 4 5\n3 5 1 2 4 3\n"
BEAUTY_ATTR = json.dumps({"1": [1, 2], "2": [3], "3": [], "4": [1]}).encode()


def write_folder(base: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    for fname, data in files.items():
        (folder / fname).write_bytes(data)
    return folder


def make_zip(path: Path, prefix: str, files: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(prefix + "/", b"")
        for fname, data in files.items():
            z.writestr(f"{prefix}/{fname}", data)
        z.writestr(f"__MACOSX/{prefix}/._u.data", b"junk")
    return path.read_bytes()


# -- Dataset and embedded copy ---------------------------------------------------------
def test_embedded_latest_small_loads_offline(isolated):
    ds = datasets.load_movielens()
    assert isinstance(ds, Dataset) and ds.name == "ml-latest-small" and ds.source == "embedded"
    X = ds.interactions
    assert (X.nnz, X.n_users, X.n_items) == (100_836, 610, 9_724)
    assert X.has_values and X.has_timestamps
    assert X.values.min() == 0.5 and X.values.max() == 5.0
    assert X.user_vocab.ids.dtype.kind == "i" and X.item_vocab.ids.dtype.kind == "i"
    f = ds.item_features
    assert f.n == X.n_items and f.vocab == X.item_vocab
    row = int(X.item_vocab.index(1)[0])
    assert f.text[row] == "Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy"
    assert f.numeric["year"][row] == 1995
    genres, labels = f.multi_hot["genres"]
    assert sorted(labels[genres[row].indices]) == ["Adventure", "Animation", "Children",
                                                   "Comedy", "Fantasy"]
    assert "(no genres listed)" not in labels
    assert ds.user_features is None
    assert len(ds.item_titles) == 9_742 and ds.item_titles[1] == "Toy Story (1995)"
    assert "latest-small" in ds.description and "GroupLens" in ds.license
    assert not (isolated / ".cache").exists()  # nothing written, nothing downloaded
    for alias in ("ml-latest-small", "Latest-Small"):
        assert datasets.load_movielens(alias).interactions.nnz == 100_836


def test_dataset_repr_is_short():
    ds = datasets.load_movielens()
    text = repr(ds)
    assert text.startswith("Dataset('ml-latest-small': 610 users, 9,724 items, 100,836")
    assert "\n" not in text and len(text) < 200


def test_embedded_files_and_checksums():
    names = sorted(p.name for p in EMBEDDED.iterdir())
    assert names == ["README.txt", "SHA256SUMS", "movies.csv.gz", "ratings.csv.gz"]
    assert sum(p.stat().st_size for p in EMBEDDED.iterdir()) < 1_000_000
    sums = dict(line.split()[::-1] for line in (EMBEDDED / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {"movies.csv.gz", "ratings.csv.gz"}
    for fname, digest in sums.items():
        raw = (EMBEDDED / fname).read_bytes()
        assert sha256(raw) == digest
        assert raw[4:8] == b"\0\0\0\0"  # gzip mtime=0: reproducible
        # the decompressed files are the official ones (digests of the GroupLens files)
        official = dsmod.DOWNLOADS["ml-latest-small"].members[fname[:-3]][1]
        assert sha256(gzip.decompress(raw)) == official
    readme = (EMBEDDED / "README.txt").read_text(encoding="utf-8")
    assert "Usage License" in readme and "redistribute" in readme


def test_corrupt_embedded_copy_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "emb"
    copy.mkdir()
    for p in EMBEDDED.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    data = bytearray((copy / "movies.csv.gz").read_bytes())
    data[-10] ^= 0xFF
    (copy / "movies.csv.gz").write_bytes(bytes(data))
    monkeypatch.setattr(dsmod, "_EMBEDDED", copy)
    with pytest.raises(DataError, match=r"embedded MovieLens latest-small file movies\.csv\.gz is corrupt"):
        datasets.load_movielens()


def test_item_text_template():
    assert item_text("Heat (1995)", ["Action", "Crime"]) == "Heat (1995). Genres: Action, Crime"
    assert item_text("Heat (1995)", []) == "Heat (1995)"


def test_unknown_names():
    with pytest.raises(DataError, match=r"unknown MovieLens data set '10m'.*'100k'"):
        datasets.load_movielens("10m")
    with pytest.raises(DataError, match="unknown Amazon/S3Rec sequence data set 'garden'"):
        datasets.load_amazon_sequences("garden")


# -- local folders ---------------------------------------------------------------------
def test_data_home_and_env_take_precedence(tmp_path, monkeypatch):
    write_folder(tmp_path / "a", "ml-100k", ML100K)
    ds = datasets.load_movielens("100k", tmp_path / "a", download=False)
    assert ds.source == str(tmp_path / "a" / "ml-100k")
    # the data set folder itself also works
    assert datasets.load_movielens("ml-100k", tmp_path / "a" / "ml-100k").interactions.nnz == 4
    monkeypatch.setenv("MAASREC_DATA", str(tmp_path / "a"))
    assert datasets.load_movielens("100k", download=False).source == ds.source
    # MAASREC_DATA wins over the embedded copy
    small = {"ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,5\n",
             "movies.csv": b"movieId,title,genres\n1,Toy Story (1995),(no genres listed)\n"}
    write_folder(tmp_path / "a", "ml-latest-small", small)
    ds = datasets.load_movielens(download=False)
    assert ds.interactions.nnz == 1 and ds.item_features.text[0] == "Toy Story (1995)"


def test_ml100k_parsing(tmp_path):
    write_folder(tmp_path, "ml-100k", ML100K)
    ds = datasets.load_movielens("100k", tmp_path, download=False)
    X = ds.interactions
    assert (X.nnz, X.n_users, X.n_items) == (4, 2, 2) and X.has_timestamps
    assert X.to_pandas().query("user == 2 and item == 20")["rating"].item() == 1.0
    f = ds.item_features
    assert f.text.tolist() == ["Toy Story (1995). Genres: Animation, Children's, Comedy",
                               "Misérables, Les"]
    assert f.numeric["year"].tolist() == [1995.0, 1998.0]  # 1998 from the release date
    assert f.multi_hot["genres"][0][1].nnz == 0  # the "unknown" flag is no genre
    assert ds.item_titles.to_dict() == {10: "Toy Story (1995)", 20: "Misérables, Les",
                                        30: "Never Rated (1990)"}
    u = ds.user_features
    assert u.numeric["age"].tolist() == [24.0, 53.0]
    codes, labels = u.categorical["occupation"]
    assert labels[codes].tolist() == ["technician", "other"]
    codes, labels = u.categorical["zip"]
    assert labels[codes].tolist() == ["85711", "T8H1N"]


@pytest.mark.parametrize("with_ts", [True, False])
def test_ml1m_parsing(tmp_path, with_ts):
    files = {"movies.dat": ML1M_MOVIES, "users.dat": ML1M_USERS}
    if with_ts:
        files["ratings.dat"] = ML1M_RATINGS
    else:
        no_ts = b"".join(b"::".join(line.split(b"::")[:3]) + b"\n"
                         for line in ML1M_RATINGS.splitlines())
        files["ratings_complete_no_timestamp.dat.gz"] = gzip.compress(no_ts, mtime=0)
    write_folder(tmp_path, "ml-1m", files)
    ds = datasets.load_movielens("1m", tmp_path, download=False)
    X = ds.interactions
    assert X.nnz == 3 and X.has_timestamps is with_ts
    assert ("NO timestamps" in ds.description) is (not with_ts)
    f = ds.item_features
    assert f.text[1] == "Star Wars: Episode IV - A New Hope (1977). Genres: Action, Sci-Fi"
    assert f.text[2] == "Café Society (2016). Genres: Drama"
    assert f.numeric["year"].tolist() == [1995.0, 1977.0, 2016.0]
    u = ds.user_features
    codes, labels = u.categorical["age"]
    assert labels[codes].tolist() == ["Under 18", "56+"]
    codes, labels = u.categorical["occupation"]
    assert labels[codes].tolist() == ["K-12 student", "self-employed"]
    if with_ts:
        with pytest.warns(ColdStartWarning):  # item 10 only occurs in test
            _, test = leave_last_out(X, n_valid=0)
        assert test.to_pandas()["item"].tolist() == [10]  # user 1's latest rating


def test_amazon_parsing(tmp_path):
    write_folder(tmp_path, "amazon-beauty", {"Beauty.txt": BEAUTY,
                                             "Beauty_item2attributes.json": BEAUTY_ATTR})
    ds = datasets.load_amazon_sequences("beauty", tmp_path, download=False)
    X = ds.interactions
    assert (X.nnz, X.n_users, X.n_items) == (12, 3, 5)
    assert not X.has_values and X.has_timestamps
    seqs = X.sequences(as_ids=True)
    assert [s.tolist() for s in seqs] == [[1, 2, 3, 2], [3, 4, 5], [5, 1, 2, 4, 3]]  # repeats kept
    assert X.timestamps.tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]
    m, _ = ds.item_features.multi_hot["attributes"]
    assert m.shape == (5, 3) and m[4].nnz == 0  # item 5 has no attributes
    assert ds.item_features.text is None and ds.user_features is None
    with pytest.warns(ColdStartWarning):  # item 4 is never in train
        _, valid, test = leave_last_out(X)
    assert test.to_pandas()["item"].tolist() == [2, 5, 3]
    assert valid.to_pandas()["item"].tolist() == [3, 4, 4]


def test_download_false_names_what_was_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("MAASREC_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as exc:
        datasets.load_movielens("1m", tmp_path / "here", download=False)
    msg = str(exc.value)
    assert "MovieLens ml-1m not found" in msg
    assert str(tmp_path / "here" / "ml-1m") in msg and str(tmp_path / "nowhere") in msg
    assert ".cache/maasrec/ml-1m" in msg and "MAASREC_DATA" in msg and "download=True" in msg
    with pytest.raises(DataError, match="Amazon amazon-beauty not found"):
        datasets.load_amazon_sequences(download=False)


# -- downloads (file:// URLs, real code path) ------------------------------------------
def _patch_100k(monkeypatch, tmp_path, *, zip_sha=None, member_sha=None) -> str:
    data = make_zip(tmp_path / "ml-100k.zip", "ml-100k", ML100K)
    url = (tmp_path / "ml-100k.zip").as_uri()
    members = {k: ("sha256", sha256(v)) for k, v in ML100K.items()}
    if member_sha:
        members["u.item"] = ("sha256", member_sha)
    monkeypatch.setitem(dsmod.DOWNLOADS, "ml-100k", Archive(url, zip_sha or sha256(data), members))
    return url


def test_download_verifies_and_caches(tmp_path, monkeypatch, isolated):
    _patch_100k(monkeypatch, tmp_path)
    ds = datasets.load_movielens("100k")
    cache = isolated / ".cache" / "maasrec"
    assert ds.source == str(cache / "ml-100k") and ds.interactions.nnz == 4
    assert sorted(os.listdir(cache)) == ["ml-100k"]  # no temporary files left
    assert sorted(os.listdir(cache / "ml-100k")) == ["u.data", "u.item", "u.user"]
    # second time: from the cache, no download needed
    monkeypatch.setitem(dsmod.DOWNLOADS, "ml-100k", Archive("file:///nonexistent.zip", "0" * 64))
    assert datasets.load_movielens("100k", download=False).source == str(cache / "ml-100k")


def test_download_honours_maasrec_cache(tmp_path, monkeypatch):
    _patch_100k(monkeypatch, tmp_path)
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "mycache"))
    assert datasets.load_movielens("100k").source == str(tmp_path / "mycache" / "ml-100k")


def test_download_checksum_mismatch_deletes_and_names_everything(tmp_path, monkeypatch, isolated):
    data = make_zip(tmp_path / "ml-100k.zip", "ml-100k", ML100K)
    url = _patch_100k(monkeypatch, tmp_path, zip_sha="ab" * 32)
    with pytest.raises(DataError) as exc:
        datasets.load_movielens("100k")
    msg = str(exc.value)
    assert url in msg and "ab" * 32 in msg and sha256(data) in msg and "deleted" in msg
    cache = isolated / ".cache" / "maasrec"
    assert os.listdir(cache) == []  # nothing kept, not even a partial file


def test_download_member_mismatch_keeps_nothing(tmp_path, monkeypatch, isolated):
    _patch_100k(monkeypatch, tmp_path, member_sha="cd" * 32)
    with pytest.raises(DataError, match=r"checksum mismatch for u\.item inside file:.*cdcd"):
        datasets.load_movielens("100k")
    assert os.listdir(isolated / ".cache" / "maasrec") == []


def test_download_git_blob_member_and_missing_member(tmp_path, monkeypatch):
    files = {"ratings.dat": ML1M_RATINGS, "movies.dat": ML1M_MOVIES, "users.dat": ML1M_USERS}
    data = make_zip(tmp_path / "ml-1m.zip", "ml-1m", files)
    url = (tmp_path / "ml-1m.zip").as_uri()
    members = {"ratings.dat": ("git-blob", git_blob(ML1M_RATINGS)),
               "movies.dat": ("sha256", sha256(ML1M_MOVIES))}
    monkeypatch.setitem(dsmod.DOWNLOADS, "ml-1m", Archive(url, sha256(data), members))
    ds = datasets.load_movielens("1m")
    assert ds.interactions.has_timestamps and ds.user_features is not None
    members = {"ratings.dat": ("git-blob", "0" * 40)}
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "c2"))
    monkeypatch.setitem(dsmod.DOWNLOADS, "ml-1m", Archive(url, sha256(data), members))
    with pytest.raises(DataError, match=r"ratings\.dat inside .*expected git-blob 0000"):
        datasets.load_movielens("1m")
    monkeypatch.setitem(dsmod.DOWNLOADS, "ml-1m",
                        Archive(url, sha256(data), {"README": ("sha256", "0" * 64)}))
    with pytest.raises(DataError, match="does not contain the expected file README"):
        datasets.load_movielens("1m")


def test_download_errors_are_data_errors(tmp_path, monkeypatch):
    monkeypatch.setitem(dsmod.DOWNLOADS, "ml-100k",
                        Archive((tmp_path / "missing.zip").as_uri(), "0" * 64))
    with pytest.raises(DataError, match=r"could not download file:.*missing\.zip.*MAASREC_DATA"):
        datasets.load_movielens("100k")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    monkeypatch.setitem(dsmod.DOWNLOADS, "ml-100k",
                        Archive((tmp_path / "bad.zip").as_uri(), sha256(b"not a zip")))
    with pytest.raises(DataError, match="not a valid zip"):
        datasets.load_movielens("100k")


def test_amazon_download(tmp_path, monkeypatch, isolated):
    files = {"Beauty.txt": BEAUTY, "Beauty_item2attributes.json": BEAUTY_ATTR,
             "LICENSE-ICLRec.txt": b"BSD"}
    remote = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        remote[name] = RemoteFile((tmp_path / name).as_uri(), sha256(data))
    monkeypatch.setitem(dsmod.DOWNLOADS, "amazon-beauty", remote)
    ds = datasets.load_amazon_sequences()
    assert ds.interactions.nnz == 12
    cache = isolated / ".cache" / "maasrec" / "amazon-beauty"
    assert sorted(os.listdir(cache)) == sorted(files)
    # one bad file: nothing of the set is kept
    remote = dict(remote, **{"LICENSE-ICLRec.txt": RemoteFile(remote["LICENSE-ICLRec.txt"].url,
                                                             "ef" * 32)})
    monkeypatch.setitem(dsmod.DOWNLOADS, "amazon-beauty", remote)
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "c2"))
    with pytest.raises(DataError, match=r"checksum mismatch for file:.*LICENSE-ICLRec\.txt"):
        datasets.load_amazon_sequences()
    assert os.listdir(tmp_path / "c2") == []


def test_download_table_is_pinned():
    for name, spec in dsmod.DOWNLOADS.items():
        entries = [spec] if isinstance(spec, Archive) else list(spec.values())
        for e in entries:
            assert e.url.startswith("https://"), name
            assert len(e.sha256) == 64 and int(e.sha256, 16) >= 0
    assert "/2890e6c3ff6a22c6699fc19cb863b66786c1cde4/" in dsmod.DOWNLOADS["amazon-beauty"][
        "Beauty.txt"].url


# -- synthetic -------------------------------------------------------------------------
def test_synthetic_shape_and_determinism():
    a = datasets.make_synthetic(300, 200, density=0.05, n_factors=4, seed=7)
    b = datasets.make_synthetic(300, 200, density=0.05, n_factors=4, seed=7)
    X = a.interactions
    assert (X.n_users, X.n_items) == (300, 200)
    assert (X.user_counts() >= 1).all()
    assert 0.8 * 0.05 * 300 * 200 < X.nnz <= 1.3 * 0.05 * 300 * 200
    assert not X.has_values and X.has_timestamps
    for attr in ("user_indices", "item_indices", "timestamps"):
        np.testing.assert_array_equal(getattr(X, attr), getattr(b.interactions, attr))
    assert a.item_features.texts() == b.item_features.texts()
    c = datasets.make_synthetic(300, 200, density=0.05, n_factors=4, seed=8)
    assert not np.array_equal(c.interactions.item_indices[:50], X.item_indices[:50])
    pairs = X.user_indices * 200 + X.item_indices
    assert len(np.unique(pairs)) == X.nnz  # no repeated (user, item)


def test_synthetic_has_planted_structure():
    ds = datasets.make_synthetic(2000, 400, density=0.03, n_factors=8, seed=0)
    X = ds.interactions
    cl = ds.metadata["item_cluster"]
    theta = ds.metadata["user_factors"]
    assert np.bincount(cl).min() == 400 // 8
    # interactions follow the users' preferences: the mean preference of a user for the
    # cluster of an item they chose is E[sum_k theta_k^2] = 1.3 / 3.4 ~ 0.38 for
    # Dirichlet(0.3) over 8 clusters, against 1/8 for items unrelated to the user
    share = theta[X.user_indices, cl[X.item_indices]].mean()
    assert 0.3 < share < 0.46
    # popularity skew: the top 10% of items hold a large share of interactions
    counts = np.sort(X.item_counts())[::-1]
    assert counts[:40].sum() / counts.sum() > 0.2
    # each item's text mostly uses its cluster's words
    words = ds.metadata["cluster_words"]
    for i, text in enumerate(ds.item_features.texts()[:50]):
        toks = text.split()
        assert len(toks) == 7
        assert sum(t in set(words[cl[i]]) for t in toks) >= 5


def test_synthetic_options_and_errors():
    ds = datasets.make_synthetic(50, 30, seed=1, with_text=False, with_timestamps=False)
    assert ds.item_features is None and not ds.interactions.has_timestamps
    for kwargs, match in [({"n_users": 0}, "n_users"), ({"density": 0.0}, "density"),
                          ({"density": 0.9}, "density"), ({"n_factors": 31}, "n_factors"),
                          ({"n_items": 2.5}, "n_items")]:
        params = {"n_users": 50, "n_items": 30} | kwargs
        with pytest.raises(DataError, match=match):
            datasets.make_synthetic(**params)


@pytest.mark.slow
def test_synthetic_scales():
    ds = datasets.make_synthetic(100_000, 20_000, density=0.001, n_factors=16, seed=0)
    assert 1_800_000 < ds.interactions.nnz <= 2_000_000


# -- real data (MAASREC_DATA) ----------------------------------------------------------
@pytest.mark.data
def test_real_latest_small_matches_embedded(data_home, require_dataset):
    require_dataset("ml-latest-small", "ratings.csv", "movies.csv")
    ds = datasets.load_movielens("latest-small", data_home, download=False)
    assert ds.source == str(data_home / "ml-latest-small")
    X = ds.interactions
    assert (X.nnz, X.n_users, X.n_items) == (100_836, 610, 9_724)
    emb = datasets.load_movielens().interactions
    np.testing.assert_array_equal(X.item_indices, emb.item_indices)
    np.testing.assert_array_equal(X.timestamps, emb.timestamps)


@pytest.mark.data
def test_real_ml100k(data_home, require_dataset):
    require_dataset("ml-100k", "u.data", "u.item", "u.user")
    ds = datasets.load_movielens("100k", data_home, download=False)
    X = ds.interactions
    assert (X.nnz, X.n_users, X.n_items) == (100_000, 943, 1_682)
    assert X.has_timestamps and X.timestamps.min() == 874724710
    assert X.timestamps.max() == 893286638
    assert ds.user_features.n == 943 and len(ds.item_titles) == 1_682
    assert len(ds.user_features.categorical["occupation"][1]) == 21
    assert len(ds.item_features.multi_hot["genres"][1]) == 18  # 19 flags minus "unknown"
    assert ds.item_features.text[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert any("Misérables" in t for t in ds.item_titles)  # latin-1 decoded


@pytest.mark.data
def test_real_ml1m(data_home, require_dataset):
    folder = require_dataset("ml-1m", "movies.dat")
    ds = datasets.load_movielens("1m", data_home, download=False)
    X = ds.interactions
    assert (X.nnz, X.n_users, X.n_items) == (1_000_209, 6_040, 3_706)
    hist = np.bincount(X.values.astype(int), minlength=6)[1:].tolist()
    assert hist == [56_174, 107_557, 261_197, 348_971, 226_310]
    assert len(ds.item_titles) == 3_883
    if not (folder / "ratings.dat").exists():
        assert not X.has_timestamps and "NO timestamps" in ds.description
    if (folder / "users.dat").exists():
        assert ds.user_features.n == 6_040
        assert len(ds.user_features.categorical["age"][1]) == 7


@pytest.mark.data
def test_real_beauty(data_home, require_dataset):
    require_dataset("amazon-beauty", "Beauty.txt", "Beauty_item2attributes.json")
    ds = datasets.load_amazon_sequences("beauty", data_home, download=False)
    X = ds.interactions
    assert (X.n_users, X.n_items, X.nnz) == (22_363, 12_101, 198_502)
    assert X.user_counts().min() == 5
    assert len(ds.item_features.multi_hot["attributes"][1]) == 637


@pytest.mark.data
def test_pinned_member_digests_match_real_files(data_home):
    checked = 0
    for folder, spec in dsmod.DOWNLOADS.items():
        entries = (spec.members.items() if isinstance(spec, Archive)
                   else ((k, ("sha256", v.sha256)) for k, v in spec.items()))
        for fname, (algo, expected) in entries:
            path = data_home / folder / fname
            if path.is_file():
                assert dsmod._digest(path, algo) == expected, path
                checked += 1
    if not checked:
        pytest.skip(f"no pinned file found under MAASREC_DATA={data_home}")


@pytest.mark.data
def test_shared_folders_pass_their_sha256sums(data_home):
    sums_files = sorted(data_home.glob("*/SHA256SUMS"))
    if not sums_files:
        pytest.skip(f"no */SHA256SUMS under MAASREC_DATA={data_home}")
    for sums in sums_files:
        for line in sums.read_text().splitlines():
            digest, fname = line.split()
            h = hashlib.sha256()
            with open(sums.parent / fname, "rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(chunk)
            assert h.hexdigest() == digest, sums.parent / fname

