"""load_interactions / load_item_features: a user's own CSV/TSV/Parquet files."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from maasrec.data import loaders
from maasrec.data.loaders import load_interactions, load_item_features, read_table
from maasrec.exceptions import DataError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("header, expected", [
    ("userID,artistID,weight", ("userID", "artistID", "weight", None)),
    ("userId,movieId,rating,timestamp", ("userId", "movieId", "rating", "timestamp")),
    ("user_id,item_id,score,ts", ("user_id", "item_id", "score", "ts")),
    ("UserID,ItemID,count,time", ("UserID", "ItemID", "count", "time")),
    ("user,item", ("user", "item", None, None)),
    ("customer_id,product_id,quantity,date", ("customer_id", "product_id", "quantity", "date")),
])
def test_common_column_names_are_found(tmp_path, header, expected):
    n = len(header.split(","))
    values = ["1", "10", "4", "2020-01-02" if "date" in header else "100"][:n]
    rows = [",".join(values), ",".join(["2", "11", *values[2:]])]
    ds = load_interactions(write(tmp_path, "f.csv", header + "\n" + "\n".join(rows) + "\n"))
    cols = ds.metadata["columns"]
    assert (cols["user"], cols["item"], cols["rating"], cols["timestamp"]) == expected
    X = ds.interactions
    assert X.nnz == 2 and X.has_values is (expected[2] is not None)
    assert X.has_timestamps is (expected[3] is not None)


def test_plays_values_and_ids(tmp_path):
    p = write(tmp_path, "plays.csv", "userID,artistID,weight\n2,51,13883\n2,52,11690\n3,51,228\n")
    ds = load_interactions(p)
    df = ds.interactions.to_pandas()
    assert df.values.tolist() == [[2, 51, 13883.0], [2, 52, 11690.0], [3, 51, 228.0]]
    assert ds.name == "plays" and ds.source == str(p) and "artistID" in ds.description


def test_separators_headerless_compressed(tmp_path):
    # MovieLens 100K layout: tab separated, no header -> user item rating timestamp
    p = write(tmp_path, "u.data", "1\t10\t4\t881250949\n1\t20\t3\t881250950\n")
    ds = load_interactions(p)
    assert ds.metadata["header"] is False and ds.metadata["sep"] == "\t"
    assert ds.interactions.timestamps.tolist() == [881250949, 881250950]
    # MovieLens 1M layout: '::'
    ds = load_interactions(write(tmp_path, "r.dat", "1::10::5::978300760\n2::30::4::97830\n"))
    assert ds.metadata["sep"] == "::" and ds.interactions.nnz == 2
    # semicolons and string ids, gzip
    gz = tmp_path / "s.csv.gz"
    gz.write_bytes(gzip.compress(b"user;item;rating\nann;x;1.5\nbob;y;2\n"))
    X = load_interactions(gz).interactions
    assert X.user_vocab.ids.tolist() == ["ann", "bob"] and X.values.tolist() == [1.5, 2.0]
    # TSV by extension with explicit columns
    X = load_interactions(write(tmp_path, "t.tsv", "a\tb\n1\tq\n"), user_col="a",
                          item_col="b").interactions
    assert X.item_vocab.ids.tolist() == ["q"]
    # headerless with 5 columns: which is which is unknown
    with pytest.raises(DataError, match="no header and 5 columns"):
        load_interactions(write(tmp_path, "five.txt", "1 2 3 4 5\n"))


def test_dates_as_timestamps(tmp_path):
    p = write(tmp_path, "d.csv", "user,item,date\n1,a,2021-03-04\n1,b,2021-03-01\n")
    X = load_interactions(p).interactions
    assert X.has_timestamps and X.sequences(as_ids=True)[0].tolist() == ["b", "a"]
    with pytest.raises(DataError, match=r"timestamp column 'date'.*row 2 \(line 3\): 'soon'"):
        load_interactions(write(tmp_path, "e.csv", "user,item,date\n1,a,2021-03-04\n1,b,soon\n"))


def test_missing_column_lists_columns_and_option(tmp_path):
    p = write(tmp_path, "m.csv", "listener,band\n1,a\n")
    with pytest.raises(DataError) as exc:
        load_interactions(p)
    msg = str(exc.value)
    assert "no user column found" in msg and "['listener', 'band']" in msg
    assert "user_col=" in msg and "--user-col" in msg and "m.csv" in msg
    with pytest.raises(DataError, match=r"rating column 'stars' not found; the columns are"):
        load_interactions(p, "listener", "band", rating_col="stars")
    # case-insensitive match of a named column; the same column twice is refused
    assert load_interactions(p, "LISTENER", "band").interactions.nnz == 1
    with pytest.raises(DataError, match="cannot be both"):
        load_interactions(p, "listener", "listener")


def test_bad_separator_names_the_right_one(tmp_path):
    p = write(tmp_path, "x.csv", "user|item|rating\n1|2|3\n")
    assert load_interactions(p).interactions.nnz == 1  # guessed
    with pytest.raises(DataError, match=r"only one column found.*given separator ','.*"
                                        r"pass sep='\|'"):
        load_interactions(p, sep=",")
    with pytest.raises(DataError, match="sep must be a non-empty string"):
        load_interactions(p, sep="")


def test_non_numeric_and_empty_values(tmp_path):
    p = write(tmp_path, "r.csv", "user,item,rating\n1,2,5\n1,3,five\n2,3,\n")
    with pytest.raises(DataError, match=r"rating column 'rating'.*row 2 \(line 3\): 'five' "
                                        r"\(2 such value"):
        load_interactions(p)
    with pytest.raises(DataError, match=r"rating column 'rating'.*: inf \(1 such"):
        load_interactions(write(tmp_path, "i.csv", "user,item,rating\n1,2,inf\n"))
    with pytest.raises(DataError, match=r"item column 'item' is empty on row 1"):
        load_interactions(write(tmp_path, "e.csv", "user,item\n1,\n"))


def test_duplicate_rows_policy(tmp_path):
    p = write(tmp_path, "d.csv", "user,item,count\n1,a,2\n2,b,1\n1,a,3\n")
    with pytest.raises(DataError) as exc:
        load_interactions(p)
    msg = str(exc.value)
    assert "user 1 and item 'a'" in msg and "row 1 (line 2) and row 3 (line 4)" in msg
    assert "duplicates='sum'" in msg
    assert load_interactions(p, duplicates="sum").interactions.values.tolist() == [5.0, 1.0]
    assert load_interactions(p, duplicates="last").interactions.values.tolist() == [3.0, 1.0]
    assert load_interactions(p, duplicates="keep").interactions.nnz == 3
    with pytest.raises(DataError, match="duplicates='often'"):
        load_interactions(p, duplicates="often")


def test_empty_missing_and_header_only(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        load_interactions(write(tmp_path, "e.csv", ""))
    with pytest.raises(DataError, match="is empty"):
        load_interactions(write(tmp_path, "b.csv", "\n\n"))
    with pytest.raises(DataError, match=r"has a header \(\['user', 'item'\]\) but no rows"):
        load_interactions(write(tmp_path, "h.csv", "user,item\n"))
    with pytest.raises(DataError, match="no such file"):
        load_interactions(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="it is a folder"):
        load_interactions(tmp_path)


def test_ragged_rows(tmp_path):
    with pytest.raises(DataError, match=r"cannot parse.*same number of fields"):
        load_interactions(write(tmp_path, "r.csv", "user,item\n1,2\n1,2,3,4\n"))


def test_vocabularies_and_unknown_rows(tmp_path):
    from maasrec.data import IdVocab

    p = write(tmp_path, "v.csv", "user,item\n1,a\n9,a\n1,z\n")
    X = load_interactions(p, user_vocab=IdVocab([1, 2]), item_vocab=IdVocab(["a", "b"]),
                          unknown="ignore").interactions
    assert X.nnz == 1 and X.n_items == 2


def test_parquet(tmp_path, monkeypatch):
    df = pd.DataFrame({"userId": [1, 2], "movieId": [10, 20], "rating": [4.0, 3.5]})
    path = tmp_path / "r.parquet"
    if loaders.importlib.util.find_spec("pyarrow") is not None:
        df.to_parquet(path)
        assert load_interactions(path).interactions.values.tolist() == [4.0, 3.5]
    else:
        path.write_bytes(b"PAR1")
    monkeypatch.setattr(loaders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"needs pyarrow.*pip install pyarrow"):
        load_interactions(path)


def test_read_table_reports_what_it_used(tmp_path):
    df, info = read_table(write(tmp_path, "a.csv", "x,y\n1,2\n"))
    assert info == {"sep": ",", "header": True} and list(df.columns) == ["x", "y"]


def test_item_features_file(tmp_path):
    inter = load_interactions(write(tmp_path, "i.csv", "user,movieId\n1,10\n1,20\n2,30\n"))
    vocab = inter.interactions.item_vocab
    p = write(tmp_path, "movies.csv", "movieId,title,genres\n20,Heat (1995),Action|Crime\n"
                                      "10,Toy Story (1995),\n99,Unrated (1990),Drama\n")
    feats, titles = load_item_features(p, vocab, text_cols="title,genres",
                                       multi_hot=["genres"])
    assert feats.text.tolist()[:2] == ["Toy Story (1995)", "Heat (1995). Action|Crime"]
    assert not feats.text[2]  # item 30 is not in the file: no text
    m, labels = feats.multi_hot["genres"]
    assert m.shape[0] == 3 and sorted(labels.tolist()) == ["Action", "Crime"]  # item 99 is not in the vocabulary
    assert titles[20] == "Heat (1995)"
    feats, _ = load_item_features(p, vocab)  # the title column is found by name
    assert feats.text[0] == "Toy Story (1995)"
    with pytest.raises(DataError, match=r"column 'plot' not found; the columns are"):
        load_item_features(p, vocab, text_cols=["plot"])
    q = write(tmp_path, "bare.csv", "movieId,year\n10,1995\n")
    with pytest.raises(DataError, match=r"no text column found.*text_cols="):
        load_item_features(q, vocab)
    feats, titles = load_item_features(q, vocab, numeric="year")
    assert titles is None and feats.numeric["year"][0] == 1995.0
    assert np.isnan(feats.numeric["year"][1])
    dup = write(tmp_path, "dup.csv", "movieId,title\n10,a\n10,b\n")
    with pytest.raises(DataError, match="duplicated ids"):
        load_item_features(dup, vocab)
