"""``maasrec tune`` (tune.cli_main): files in, one JSON line out, maasrec errors exit 2."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from maasrec.data.datasets import make_synthetic
from maasrec.data.split import random_split
from maasrec.exceptions import ColdStartWarning
from maasrec.tune import cli_main

pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune_cli")
    X = make_synthetic(200, 80, density=0.06, n_factors=4, seed=1, with_text=False,
                       with_timestamps=False).interactions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        train, valid = random_split(X, (0.8, 0.2), random_state=0)
    paths = d / "train.csv", d / "valid.csv"
    train.to_pandas().to_csv(paths[0], index=False)
    valid.to_pandas().to_csv(paths[1], index=False)
    return d, paths


def test_tune_from_files(files, capsys):
    d, (train, valid) = files
    code = cli_main(["--train", str(train), "--valid", str(valid), "--models",
                     "Popularity,PureSVD", "--n-trials", "4", "--no-progress",
                     "--leaderboard", str(d / "lb.csv"), "--output", str(d / "best"),
                     "--overwrite"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["best_model"] in ("Popularity", "PureSVD") and out["n_trials"] == 4
    lb = pd.read_csv(d / "lb.csv")
    assert len(lb) == 4 and lb["ndcg@10"].iloc[0] == pytest.approx(out["best_value"])
    from maasrec.base import Recommender

    model = Recommender.load(out["saved"])
    assert type(model).__name__ == out["best_model"]


def test_progress_bar_goes_to_stderr(files, capsys):
    _, (train, valid) = files
    assert cli_main(["--train", str(train), "--valid", str(valid), "--models", "PureSVD",
                     "--n-trials", "2"]) == 0
    cap = capsys.readouterr()
    assert "tune" in cap.err and "trial" in cap.err
    json.loads(cap.out.strip().splitlines()[-1])


@pytest.mark.parametrize("args, words", [
    (["--metric", "ndgc@10"], "unknown metric 'ndgc@10'"),
    (["--budget", "soon"], "budget 'soon' is not a duration"),
    (["--models", "EASE,Nope"], "unknown model 'Nope'"),
    (["--storage", "nosuchdb://u:pw@h/db"], "cannot open the tuning storage"),
])
def test_errors_exit_2(files, capsys, args, words):
    _, (train, valid) = files
    code = cli_main(["--train", str(train), "--valid", str(valid), "--n-trials", "1",
                     "--no-progress", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("maasrec: error: ") and words in err


def test_train_needs_valid(files, capsys):
    _, (train, _) = files
    assert cli_main(["--train", str(train), "--n-trials", "1"]) == 2
    assert "--train needs --valid" in capsys.readouterr().err
