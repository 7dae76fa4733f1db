"""``maasrec compress prune`` and ``maasrec compress distill``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maasrec import Recommender
from maasrec.compress import prune
from maasrec.compress.cli import cli_main
from maasrec.datasets import make_synthetic
from maasrec.models import EASE
from maasrec.neural import SequentialRecommender


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    X = make_synthetic(n_users=80, n_items=40, seed=3).interactions
    df = X.to_pandas()
    df.to_csv(root / "train.csv", index=False)
    seq = SequentialRecommender(dim=16, n_heads=2, max_len=10, epochs=1, random_state=0,
                                verbose=False).fit(X)
    seq.save(root / "seq")
    EASE(l2=10.0).fit(X).save(root / "ease")
    return root, X, seq


def test_prune_structured_writes_the_pruned_model(files, tmp_path, capsys):
    root, X, seq = files
    assert cli_main(["prune", str(root / "seq"), str(tmp_path / "p"), "--data",
                     str(root / "train.csv"), "--epochs", "1", "--amount", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "SequentialRecommender" and out["method"] == "structured"
    assert out["parameters_after"] < out["parameters_before"]
    p = Recommender.load(tmp_path / "p")
    assert p.block_shapes_.shape == (2, 2) and (p.block_shapes_[:, 0] == 1).all()
    # the same as the Python call with the same seed, on the same rows
    same = prune(seq, X, method="structured", amount=0.5, epochs=1, random_state=0)
    users = np.arange(seq.n_users_)
    assert np.allclose(p.score_indices(users), same.score_indices(users), atol=1e-5)


def test_prune_magnitude_without_fine_tune_needs_no_data(files, tmp_path, capsys):
    root, _, _ = files
    assert cli_main(["prune", str(root / "seq"), str(tmp_path / "m"), "--method", "magnitude",
                     "--amount", "0.3", "--epochs", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "magnitude" and out["sparsity"] >= 0.29


def test_prune_refusals_are_clean_errors(files, tmp_path, capsys):
    root, _, _ = files
    assert cli_main(["prune", str(root / "seq"), str(tmp_path / "x")]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli_main(["prune", str(root / "ease"), str(tmp_path / "x"), "--epochs", "0"]) == 2
    assert "EASE" in capsys.readouterr().err
    assert cli_main(["prune", str(root / "seq"), str(tmp_path / "x"), "--epochs", "0",
                     "--amount", "1.5"]) == 2
    assert "1.5" in capsys.readouterr().err


def test_distill_trains_a_student_from_a_saved_teacher(files, tmp_path, capsys):
    root, X, _ = files
    assert cli_main(["distill", str(root / "ease"), str(tmp_path / "s"), "--data",
                     str(root / "train.csv"), "--param", "dim=8", "--param", "n_heads=1",
                     "--param", "epochs=1", "--param", "max_len=8",
                     "--param", "verbose=False", "--candidates", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["teacher"] == "EASE" and out["mode"] == "lists" and out["epochs"] == 1
    s = Recommender.load(tmp_path / "s")
    assert isinstance(s, SequentialRecommender) and s.dim == 8
    assert s.compression_["method"] == "distill"
    assert list(s.user_vocab_.ids) == list(X.user_vocab.ids)


def test_distill_refusals_are_clean_errors(files, tmp_path, capsys):
    root, _, _ = files
    assert cli_main(["distill", str(root / "ease"), str(tmp_path / "s"), "--data",
                     str(root / "train.csv"), "--param", "loss=bpr",
                     "--param", "epochs=1"]) == 2
    assert "loss" in capsys.readouterr().err
    assert cli_main(["distill", str(root / "ease"), str(tmp_path / "s"), "--data",
                     str(root / "train.csv"), "--param", "nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err
