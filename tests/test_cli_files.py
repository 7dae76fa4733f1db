"""`maasrec fit/split/evaluate` on a user's own files: columns, separators, models, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from maasrec.base import Recommender
from maasrec.cli import main


def _plays(path, n_users=40, n_items=60, per_user=8, seed=0, sep=","):
    """A listening-data table with the header of the issue: userID,artistID,weight."""
    rng = np.random.default_rng(seed)
    rows = [(u, int(i), int(rng.integers(1, 5000))) for u in range(n_users)
            for i in rng.choice(n_items, per_user, replace=False)]
    pd.DataFrame(rows, columns=["userID", "artistID", "weight"]).to_csv(path, index=False,
                                                                         sep=sep)
    return rows


def test_issue_case_plays_csv_auto_detected(tmp_path, capsys):
    rows = _plays(tmp_path / "plays.csv")
    assert main(["fit", "--model", "ALS", "--data", str(tmp_path / "plays.csv"),
                 str(tmp_path / "out")]) == 0
    assert "saved ALS" in capsys.readouterr().out
    model = Recommender.load(tmp_path / "out")
    assert model.user_vocab_.ids.tolist() == sorted({u for u, _, _ in rows})
    assert set(model.item_vocab_.ids.tolist()) == {i for _, i, _ in rows}
    # the weights were read as the ratings (ALS confidences), not dropped
    assert model.seen_.data.max() == max(w for _, _, w in rows)


def test_columns_and_separator_by_option(tmp_path, capsys):
    df = pd.DataFrame({"listener": [1, 1, 2, 2, 3], "band": ["a", "b", "a", "c", "b"],
                       "n": [3, 1, 2, 5, 1]})
    df.to_csv(tmp_path / "x.txt", sep=";", index=False)
    assert main(["fit", "--model", "Popularity", "--data", str(tmp_path / "x.txt"),
                 str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "no user column found" in err and "'listener'" in err and "--user-col" in err
    assert "Traceback" not in err
    assert main(["fit", "--model", "Popularity", "--data", str(tmp_path / "x.txt"),
                 "--user-col", "listener", "--item-col", "band", "--rating-col", "n",
                 "--sep", ";", str(tmp_path / "m")]) == 0
    model = Recommender.load(tmp_path / "m")
    assert sorted(model.item_vocab_.ids.tolist()) == ["a", "b", "c"]


@pytest.mark.parametrize("content, sep, needle", [
    ("userID;artistID;weight\n2;51;3\n", ",", "pass sep=';'"),        # wrong separator
    ("userID artistID weight\n", None, "no rows"),                      # header only
    ("userID,artistID,weight\n2,51,3\n2,52,lots\n", None, "'lots'"),   # non-numeric rating
    ("userID,artistID,weight\n2,51,3\n2,51,4\n", None, "duplicates='sum'"),  # duplicates
    ("", None, "is empty"),                                            # empty file
    ("userID,foo\n2,51\n", None, "no item column found"),              # missing column
    ("userID,artistID\n2,51\n,52\n", None, "user column 'userID' is empty on row 2"),
])
def test_bad_files_are_data_errors_exit_2(tmp_path, capsys, content, sep, needle):
    (tmp_path / "bad.csv").write_text(content)
    rc = main(["fit", "--model", "ALS", "--data", str(tmp_path / "bad.csv"),
               *(["--sep", sep] if sep else []), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "bad.csv" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_file_in_a_subprocess_has_no_traceback(tmp_path):
    (tmp_path / "bad.csv").write_text("userID,artistID,weight\n2,51,3\n2,52,x\n")
    r = subprocess.run([sys.executable, "-m", "maasrec", "fit", "--model", "ALS", "--data",
                        str(tmp_path / "bad.csv"), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("maasrec: error:") and "Traceback" not in r.stderr


def test_duplicates_option_sums(tmp_path):
    (tmp_path / "d.csv").write_text("user,item,count\n1,a,2\n1,a,3\n2,b,1\n")
    assert main(["fit", "--model", "Popularity", "--duplicates", "sum", "--data",
                 str(tmp_path / "d.csv"), str(tmp_path / "m")]) == 0
    m = Recommender.load(tmp_path / "m")
    assert m.seen_.data.tolist() == [5.0, 1.0]


def test_params_typed_by_signature(tmp_path, capsys):
    from maasrec._cli_data import model_class, parse_params

    als = model_class("als")
    p = parse_params(als, ["factors=8", "regularization=3", "implicit=false",
                           "confidence=log"])
    assert p == {"factors": 8, "regularization": 3.0, "implicit": False, "confidence": "log"}
    assert isinstance(p["regularization"], float)
    hybrid = model_class("HybridRecommender")
    p = parse_params(hybrid, ['item_encoders=["id"]', "batch_size=none", "epochs=2",
                              "clip_grad_norm=1"])
    assert p == {"item_encoders": ["id"], "batch_size": None, "epochs": 2,
                 "clip_grad_norm": 1.0}
    _plays(tmp_path / "p.csv")
    for bad, needle in (("factors=eight", "takes an integer"), ("implicit=maybe", "true or false"),
                        ("nope=1", "has no parameter 'nope'"), ("factors", "name=value")):
        assert main(["fit", "--model", "ALS", "--param", bad, "--data",
                     str(tmp_path / "p.csv"), str(tmp_path / "m")]) == 2
        assert needle in capsys.readouterr().err


def test_every_registered_model_is_known():
    from maasrec._cli_data import model_catalogue

    names = set(model_catalogue())
    assert {"Popularity", "ItemKNN", "EASE", "PureSVD", "ALS", "BPRMF"} <= names
    assert {"HybridRecommender", "NeuMF", "SequentialRecommender", "LightGCN", "MultVAE",
            "LMRanker"} <= names


def test_split_then_fit_then_evaluate(tmp_path, capsys):
    _plays(tmp_path / "plays.csv")
    out = tmp_path / "parts"
    assert main(["split", "--data", str(tmp_path / "plays.csv"), "--seed", "3", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    files = {f: len(pd.read_csv(out / f)) for f in ("train.csv", "validation.csv", "test.csv")}
    assert report["files"] == files and sum(files.values()) == 40 * 8
    assert list(pd.read_csv(out / "train.csv").columns) == ["user", "item", "rating"]
    # seeded: the same split again, another seed a different one
    assert main(["split", "--data", str(tmp_path / "plays.csv"), "--seed", "3", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["split", "--data", str(tmp_path / "plays.csv"), "--seed", "3", "--overwrite",
                 str(tmp_path / "again")]) == 0
    assert (out / "test.csv").read_text() == (tmp_path / "again" / "test.csv").read_text()
    assert main(["split", "--data", str(tmp_path / "plays.csv"), "--seed", "4",
                 str(tmp_path / "other")]) == 0
    assert (out / "test.csv").read_text() != (tmp_path / "other" / "test.csv").read_text()
    capsys.readouterr()
    assert main(["fit", "--model", "EASE", "--data", str(out / "train.csv"),
                 str(tmp_path / "ease")]) == 0
    assert main(["evaluate", str(tmp_path / "ease"), "--train", str(out / "train.csv"),
                 "--test", str(out / "test.csv"), "--exclude", str(out / "validation.csv"),
                 "-k", "5"]) == 0
    text = capsys.readouterr().out
    assert "ndcg@5" in text and "95% CI" in text


def test_temporal_and_leave_last_out_splits(tmp_path, capsys):
    rows = [(u, i, t) for u in range(5) for t, i in enumerate(range(u, u + 6))]
    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(tmp_path / "e.csv",
                                                                     index=False)
    assert main(["split", "--data", str(tmp_path / "e.csv"), "--method", "leave-last-out",
                 str(tmp_path / "llo")]) == 0
    test = pd.read_csv(tmp_path / "llo" / "test.csv")
    assert sorted(zip(test["user"], test["item"])) == [(u, u + 5) for u in range(5)]
    assert main(["split", "--data", str(tmp_path / "e.csv"), "--method", "temporal",
                 "--ratios", "0.5,0.5", str(tmp_path / "tmp")]) == 0
    train = pd.read_csv(tmp_path / "tmp" / "train.csv")
    test = pd.read_csv(tmp_path / "tmp" / "test.csv")
    assert train["timestamp"].max() <= test["timestamp"].min()
    assert not (tmp_path / "tmp" / "validation.csv").exists()
    assert main(["split", "--data", str(tmp_path / "e.csv"), "--ratios", "a,b",
                 str(tmp_path / "z")]) == 2
    assert "--ratios" in capsys.readouterr().err


@pytest.mark.slow
def test_neural_models_by_name(tmp_path):
    _plays(tmp_path / "plays.csv", n_users=30, n_items=40)
    assert main(["fit", "--model", "SequentialRecommender", "--data", str(tmp_path / "plays.csv"),
                 "--param", "epochs=1", "--param", "dim=8", "--param", "n_heads=1",
                 "--param", "random_state=0", str(tmp_path / "seq")]) == 0
    assert type(Recommender.load(tmp_path / "seq")).__name__ == "SequentialRecommender"


@pytest.mark.slow
def test_hybrid_with_item_features_file_and_text_columns(tmp_path, capsys):
    from maasrec.cli import _text_model_available

    if not _text_model_available():
        pytest.skip("the default text model (maasrec[text]) is not installed")
    rows = _plays(tmp_path / "plays.csv", n_users=30, n_items=40)
    items = sorted({i for _, i, _ in rows})
    pd.DataFrame({"artistID": items, "name": [f"artist {i}" for i in items],
                  "genre": ["rock" if i % 2 else "jazz" for i in items]}).to_csv(
        tmp_path / "artists.csv", index=False)
    args = ["fit", "--model", "HybridRecommender", "--data", str(tmp_path / "plays.csv"),
            "--param", "epochs=1", "--param", "dim=8", "--param", "random_state=0",
            "--item-features", str(tmp_path / "artists.csv")]
    assert main([*args, "--text-cols", "name,nope", str(tmp_path / "h")]) == 2
    assert "'nope' not found" in capsys.readouterr().err
    assert main([*args, "--text-cols", "name,genre", str(tmp_path / "h")]) == 0
    model = Recommender.load(tmp_path / "h")
    assert "text" in model.config_["item_tower"]  # the text columns reached the model
