"""load_amazon_sequences: every S3Rec/ICLRec data set by name, any file in the format by path."""

from __future__ import annotations

import gzip
import hashlib
import json
import urllib.request

import pytest

import maasrec.data.datasets as dsmod
from maasrec import datasets
from maasrec.data.datasets import RemoteFile
from maasrec.exceptions import DataError

SEQS = b"1 1 2 3 2\n2 3 4 5\n3 5 1 2 4 3\n"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No MAASREC_DATA, a fresh cache, and no network (file:// URLs only)."""
    monkeypatch.delenv("MAASREC_DATA", raising=False)
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "cache"))
    real = urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        if not str(getattr(url, "full_url", url)).startswith("file:"):
            raise AssertionError(f"test tried to reach the network: {url}")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


@pytest.mark.parametrize("name, folder, fname", [
    ("beauty", "amazon-beauty", "Beauty.txt"),
    ("Sports", "amazon-sports", "Sports_and_Outdoors.txt"),
    ("sports_and_outdoors", "amazon-sports", "Sports_and_Outdoors.txt"),
    ("toys", "amazon-toys", "Toys_and_Games.txt"),
    ("Toys_and_Games", "amazon-toys", "Toys_and_Games.txt"),
    ("amazon-toys", "amazon-toys", "Toys_and_Games.txt"),
    ("YELP", "yelp", "Yelp.txt"),
])
def test_every_dataset_by_name_from_the_data_home(tmp_path, name, folder, fname):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / fname).write_bytes(SEQS)
    ds = datasets.load_amazon_sequences(name, tmp_path, download=False)
    assert ds.name == folder and ds.source == str(tmp_path / folder)
    assert [s.tolist() for s in ds.interactions.sequences(as_ids=True)] == [
        [1, 2, 3, 2], [3, 4, 5], [5, 1, 2, 4, 3]]
    assert ("Yelp" in ds.license) is (folder == "yelp")


def test_every_named_dataset_has_a_pinned_download():
    for folder, (stem, _, _) in dsmod._SEQUENCE_SETS.items():
        spec = dsmod.DOWNLOADS[folder]
        remote = spec[f"{stem}.txt"]
        assert "/2890e6c3ff6a22c6699fc19cb863b66786c1cde4/data/" in remote.url
        assert len(remote.sha256) == 64 and "LICENSE-ICLRec.txt" in spec


def test_download_by_name_verified(tmp_path, monkeypatch):
    lic = b"BSD-3-Clause"
    (tmp_path / "Yelp.txt").write_bytes(SEQS)
    (tmp_path / "LICENSE.txt").write_bytes(lic)
    monkeypatch.setitem(dsmod.DOWNLOADS, "yelp", {
        "Yelp.txt": RemoteFile((tmp_path / "Yelp.txt").as_uri(),
                               hashlib.sha256(SEQS).hexdigest()),
        "LICENSE-ICLRec.txt": RemoteFile((tmp_path / "LICENSE.txt").as_uri(),
                                         hashlib.sha256(lic).hexdigest())})
    ds = datasets.load_amazon_sequences("yelp")
    assert ds.interactions.nnz == 12 and ds.source == str(tmp_path / "cache" / "yelp")
    with pytest.raises(DataError, match=r"Yelp \(yelp\) not found"):
        monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "empty"))
        datasets.load_amazon_sequences("yelp", download=False)


def test_any_file_by_path(tmp_path):
    f = tmp_path / "LastFM.txt"
    f.write_bytes(SEQS)
    (tmp_path / "LastFM_item2attributes.json").write_text(json.dumps({"1": [7], "3": [7, 8]}))
    for arg in (f, str(f), tmp_path, str(tmp_path) + "/"):
        ds = datasets.load_amazon_sequences(arg)
        assert ds.name == "LastFM" and ds.interactions.nnz == 12 and ds.source == str(f)
        m, _ = ds.item_features.multi_hot["attributes"]
        assert m.shape == (5, 2) and m[0].nnz == 1  # item 1 -> attribute 7
    assert "S3Rec/ICLRec sequence format" in ds.description
    gz = tmp_path / "sub" / "Games.txt.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(SEQS))
    (tmp_path / "sub" / "LICENSE.txt").write_text("terms")  # not a sequence file
    assert datasets.load_amazon_sequences(gz.parent).interactions.nnz == 12
    assert datasets.load_amazon_sequences(gz).name == "Games"


def test_ambiguous_or_missing_paths(tmp_path):
    (tmp_path / "a.txt").write_bytes(SEQS)
    (tmp_path / "b.txt").write_bytes(SEQS)
    with pytest.raises(DataError, match=r"2 candidate sequence files \['a.txt', 'b.txt'\]"):
        datasets.load_amazon_sequences(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        datasets.load_amazon_sequences(tmp_path / "nope.txt")


@pytest.mark.parametrize("content, needle", [
    (b"1 1 2\n2 3 x4\n", r"line 2: 'x4' is not an integer id"),
    (b"1,1,2\n", r"line 1: '1,1,2' is not an integer id.*load_interactions"),
    (b"1 1 2\n\n7\n", r"line 3: user 7 has no items"),
    (b"1 1 2\n2 3\n1 4\n", r"user 1 appears on lines 1 and 3"),
    (b"", r"holds no sequences \(empty file\)"),
    (b"\n \n", r"holds no sequences"),
])
def test_malformed_files_name_the_line(tmp_path, content, needle):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(DataError, match=needle):
        datasets.load_amazon_sequences(f)


def test_bad_attribute_file(tmp_path):
    (tmp_path / "X.txt").write_bytes(SEQS)
    (tmp_path / "X_item2attributes.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        datasets.load_amazon_sequences(tmp_path / "X.txt")


def test_real_beauty_unchanged(data_home, require_dataset):
    require_dataset("amazon-beauty")
    ds = datasets.load_amazon_sequences("Beauty", data_home, download=False)
    X = ds.interactions
    assert (X.n_users, X.n_items, X.nnz) == (22363, 12101, 198502)
    by_path = datasets.load_amazon_sequences(f"{data_home}/amazon-beauty/Beauty.txt")
    assert by_path.interactions.nnz == X.nnz and by_path.item_features is not None
