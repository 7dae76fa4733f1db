"""The command line: demo, fit, recommend, evaluate."""

import json

import pytest

from maasrec.cli import build_parser, main


def test_demo_popularity_offline(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MAASREC_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["demo", "--models", "popularity", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ml-latest-small" in out and "NDCG@10" in out and "Popularity" in out
    assert "recommends:" in out
    # example recommendations carry movie titles, e.g. "Forrest Gump (1994)"
    assert out.count("(19") + out.count("(20") >= 5


@pytest.mark.slow
def test_demo_default_models(capsys):
    assert main(["demo", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "EASE" in out and "best:" in out


def test_demo_unknown_model(capsys):
    assert main(["demo", "--models", "nope", "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().err


def test_demo_missing_dataset_names_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MAASREC_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "cache"))
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    rc = main(["demo", "--dataset", "100k", "--models", "popularity", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "100k" in err.lower()


def test_fit_recommend_evaluate_roundtrip(tmp_path, capsys):
    from maasrec.data.split import leave_last_out
    from maasrec.testing import tiny_interactions

    train, test = leave_last_out(tiny_interactions(), n_valid=0, n_test=1)
    csv, test_csv = tmp_path / "ratings.csv", tmp_path / "test.csv"
    train.to_pandas().to_csv(csv, index=False)
    test.to_pandas().to_csv(test_csv, index=False)
    out_dir = tmp_path / "model"
    assert main(["fit", "--model", "EASE", "--param", "l2=5", "--data", str(csv), str(out_dir)]) == 0
    capsys.readouterr()
    assert main(["recommend", str(out_dir), "u0", "u1", "-k", "3"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["user"] for x in lines] == ["u0", "u1"] and all(len(x["items"]) == 3 for x in lines)
    assert main(["evaluate", str(out_dir), "--train", str(csv), "--test", str(test_csv), "-k", "5"]) == 0
    assert "ndcg@5" in capsys.readouterr().out
    assert main(["fit", "--model", "EASE", "--data", str(csv), str(out_dir)]) == 2  # exists
    assert "overwrite" in capsys.readouterr().err


def test_parser_has_commands():
    p = build_parser()
    for cmd in ("demo", "fit", "recommend", "evaluate"):
        assert p.parse_args([cmd] + (["m", "u"] if cmd == "recommend" else
                                     ["m", "--train", "a", "--test", "b"] if cmd == "evaluate" else
                                     ["--model", "EASE", "--data", "x", "o"] if cmd == "fit" else []))
