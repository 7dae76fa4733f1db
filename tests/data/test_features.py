"""Tests of maasrec.data.features (ItemFeatures / UserFeatures)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maasrec.data.features import Features, ItemFeatures, UserFeatures
from maasrec.data.vocab import IdVocab
from maasrec.exceptions import DataError


@pytest.fixture
def movies() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movieId": [30, 10, 20],
            "title": ["Heat", None, "  "],
            "plot": ["Cops.", "Toys.", np.nan],
            "genres": ["Action|Crime", np.nan, "Crime||Drama|Crime"],
            "tags": [["a", "b"], [], None],
            "studio": ["WB", None, "Fox"],
            "year": [1995, None, 1999],
        }
    )


def test_text_single_column_masks_missing_and_blank(movies):
    f = ItemFeatures.from_pandas(movies, "movieId", text="title")
    assert f.vocab.ids.tolist() == [30, 10, 20]  # the frame's order
    assert f.vocab.name == "item"
    assert f.has_text
    assert f.texts() == ["Heat", "", ""]
    np.testing.assert_array_equal(f.text_mask, [True, False, False])
    assert f.text.dtype == object


def test_text_several_columns(movies):
    f = ItemFeatures.from_pandas(movies, "movieId", text=["title", "plot"])
    assert f.texts() == ["title: Heat. plot: Cops.", "plot: Toys.", "title:   "]
    assert f.text_mask.tolist() == [True, True, True]


def test_text_callable(movies):
    f = ItemFeatures.from_pandas(
        movies,
        "movieId",
        text=lambda r: f"{r['movieId']}-{r['studio']}" if pd.notna(r["studio"]) else None,
    )
    assert f.texts() == ["30-WB", "", "20-Fox"]
    np.testing.assert_array_equal(f.text_mask, [True, False, True])


def test_categorical(movies):
    f = ItemFeatures.from_pandas(movies, "movieId", categorical="studio")
    codes, labels = f.categorical["studio"]
    assert labels.tolist() == ["Fox", "WB"]  # sorted labels
    np.testing.assert_array_equal(codes, [1, -1, 0])
    assert codes.dtype == np.int64


def test_multi_hot_separator_and_lists(movies):
    f = ItemFeatures.from_pandas(movies, "movieId", multi_hot=["genres"])
    m, labels = f.multi_hot["genres"]
    assert labels.tolist() == ["Action", "Crime", "Drama"]
    # repeated "Crime" counted once, empty piece of "||" ignored, NaN -> empty row
    np.testing.assert_array_equal(m.toarray(), [[1, 1, 0], [0, 0, 0], [0, 1, 1]])
    g = ItemFeatures.from_pandas(
        movies.assign(genres=["A,B", "B", "C"]), "movieId", multi_hot={"genres": ","}
    )
    m, labels = g.multi_hot["genres"]
    assert labels.tolist() == ["A", "B", "C"]
    np.testing.assert_array_equal(m.toarray(), [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    h = ItemFeatures.from_pandas(movies, "movieId", multi_hot="tags")
    m, labels = h.multi_hot["tags"]
    assert labels.tolist() == ["a", "b"]
    np.testing.assert_array_equal(m.toarray(), [[1, 1], [0, 0], [0, 0]])
    assert m.dtype == np.float32


def test_numeric(movies):
    f = ItemFeatures.from_pandas(movies, "movieId", numeric=["year"])
    y = f.numeric["year"]
    assert y.dtype == np.float32
    assert y[0] == 1995 and np.isnan(y[1]) and y[2] == 1999


def test_vectors_follow_frame_rows(movies):
    vec = np.arange(6, dtype=np.float64).reshape(3, 2)
    f = ItemFeatures.from_pandas(movies, "movieId", vectors={"img": vec})
    np.testing.assert_array_equal(f.vectors["img"], vec)
    assert f.vectors["img"].dtype == np.float32
    with pytest.raises(DataError, match=r"vectors 'img' must have shape \(3, d\)"):
        ItemFeatures.from_pandas(movies, "movieId", vectors={"img": np.zeros((2, 2))})


def test_from_pandas_aligned_to_vocab(movies):
    vocab = IdVocab([20, 99, 30], name="item")  # 99 has no row; 10 is not in the vocab
    vec = np.arange(6, dtype=np.float32).reshape(3, 2)
    f = ItemFeatures.from_pandas(
        movies,
        "movieId",
        text="title",
        categorical="studio",
        multi_hot="genres",
        numeric="year",
        vectors={"img": vec},
        vocab=vocab,
    )
    assert f.vocab is vocab and len(f) == f.n == 3
    assert f.texts() == ["", "", "Heat"]
    np.testing.assert_array_equal(f.text_mask, [False, False, True])
    codes, labels = f.categorical["studio"]
    assert labels[codes[0]] == "Fox" and codes[1] == -1 and labels[codes[2]] == "WB"
    m, labels = f.multi_hot["genres"]
    got = [sorted(labels[m[r].indices].tolist()) for r in range(3)]
    assert got == [["Crime", "Drama"], [], ["Action", "Crime"]]
    y = f.numeric["year"]
    assert y[0] == 1999 and np.isnan(y[1]) and y[2] == 1995
    v = f.vectors["img"]
    np.testing.assert_array_equal(v[0], vec[2])
    assert np.isnan(v[1]).all()
    np.testing.assert_array_equal(v[2], vec[0])


def test_align(movies):
    f = ItemFeatures.from_pandas(
        movies,
        "movieId",
        text="title",
        categorical="studio",
        multi_hot="genres",
        numeric="year",
        vectors={"img": np.ones((3, 2))},
    )
    assert f.align(IdVocab([30, 10, 20])) is f
    g = f.align(IdVocab([20, 77, 30], name="item"))
    assert type(g) is ItemFeatures
    assert g.texts() == ["", "", "Heat"]
    np.testing.assert_array_equal(g.text_mask, [False, False, True])
    np.testing.assert_array_equal(g.categorical["studio"][0], [0, -1, 1])
    assert g.categorical["studio"][1].tolist() == ["Fox", "WB"]
    m = g.multi_hot["genres"][0]
    assert m.shape == (3, 3)
    np.testing.assert_array_equal(m.toarray(), [[0, 1, 1], [0, 0, 0], [1, 1, 0]])
    y = g.numeric["year"]
    assert y[0] == 1999 and np.isnan(y[1]) and y[2] == 1995 and y.dtype == np.float32
    v = g.vectors["img"]
    assert np.isnan(v[1]).all() and (v[[0, 2]] == 1).all()
    # the original is untouched
    assert f.texts() == ["Heat", "", ""] and not np.isnan(f.vectors["img"]).any()


def test_align_without_text():
    f = UserFeatures(IdVocab([1, 2], name="user"), numeric={"age": [30, 40]})
    g = f.align(IdVocab([2, 3]))
    assert g.text is None and g.text_mask is None and not g.has_text and g.texts() == []
    assert g.numeric["age"][0] == 40 and np.isnan(g.numeric["age"][1])


def test_duplicated_ids(movies):
    df = pd.concat([movies, movies.iloc[[0]]])
    with pytest.raises(DataError, match=r"duplicated ids in 'movieId': \[30\]"):
        ItemFeatures.from_pandas(df, "movieId", text="title")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"categorical": "nope"}, "nope"),
        ({"numeric": ["year", "nope"]}, "nope"),
        ({"multi_hot": {"nope": "|"}}, "nope"),
        ({"multi_hot": "nope"}, "nope"),
        ({"text": "nope"}, "nope"),
        ({"text": ["title", "nope"]}, "nope"),
    ],
)
def test_bad_columns(movies, kwargs, name):
    with pytest.raises(DataError, match=f"'{name}' not in the frame") as info:
        ItemFeatures.from_pandas(movies, "movieId", **kwargs)
    assert "movieId" in str(info.value)  # lists the columns


def test_bad_id_column(movies):
    with pytest.raises(DataError, match="id column 'item' not in the frame"):
        ItemFeatures.from_pandas(movies, "item")


def test_init_validation():
    v = IdVocab([1, 2])
    with pytest.raises(DataError, match="text has 1 entries for 2 ids"):
        Features(v, text=["a"])
    with pytest.raises(DataError, match="categorical feature 'c'"):
        Features(v, categorical={"c": ["a"]})
    with pytest.raises(DataError, match="multi-hot feature 'g'"):
        Features(v, multi_hot={"g": [["a"]]})
    with pytest.raises(DataError, match="numeric feature 'x' is not numeric"):
        Features(v, numeric={"x": ["a", "b"]})
    with pytest.raises(DataError, match="numeric feature 'x' has shape"):
        Features(v, numeric={"x": [1.0]})
    with pytest.raises(DataError, match="numeric feature 'x' contains inf"):
        Features(v, numeric={"x": [1.0, np.inf]})
    with pytest.raises(DataError, match=r"vectors 'v' must have shape \(2, d\)"):
        Features(v, vectors={"v": np.zeros(2)})


def test_init_from_raw_ids_and_kinds():
    f = UserFeatures([5, 6], categorical={"g": ["m", np.nan]})
    assert isinstance(f.vocab, IdVocab) and f.vocab.name == "user"
    np.testing.assert_array_equal(f.categorical["g"][0], [0, -1])
    assert ItemFeatures.kind == "item" and UserFeatures.kind == "user"
    assert UserFeatures.from_pandas(pd.DataFrame({"uid": [1]}), "uid").vocab.name == "user"


def test_repr(movies):
    f = ItemFeatures.from_pandas(movies, "movieId", text="title", numeric="year")
    assert repr(f) == "ItemFeatures(n=3, text (1 present), numeric=['year'])"
