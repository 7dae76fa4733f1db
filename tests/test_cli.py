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
    assert "best:" in out and "--full" in out
    table = out.split("\n\n")[1].splitlines()
    assert "NDCG@10 [95% CI]" in table[0]
    rows = table[2:]
    assert {r.split()[0] for r in rows} == {"Popularity", "ItemKNN", "PureSVD", "ALS"}
    ndcg = [float(r.split()[1]) for r in rows]
    assert ndcg == sorted(ndcg, reverse=True)  # a leaderboard: best first
    for r in rows:  # every estimate lies inside its interval
        est, lo, hi = (float(x.strip("[],")) for x in r.split()[1:4])
        assert lo <= est <= hi and lo < hi
    assert rows[-1].startswith("Popularity")  # the floor every model must beat
    recs = out.split("recommends:\n", 1)[1].splitlines()[:5]
    assert all("(19" in r or "(20" in r for r in recs)  # titled recommendations


def test_demo_model_lists():
    from maasrec.cli import _DEFAULT_DEMO, _demo_models, _model_zoo

    zoo = _model_zoo("", 0)
    parse = build_parser().parse_args
    assert _demo_models(parse(["demo"]), zoo) == list(_DEFAULT_DEMO)
    full = _demo_models(parse(["demo", "--full"]), zoo)
    assert set(full) == set(zoo) - {"sequential"} and "ease" in full and "hybrid" in full
    assert "sequential" in _demo_models(parse(["demo", "--dataset", "beauty"]), zoo)
    assert "sequential" in _demo_models(parse(["demo", "--full", "--dataset", "beauty"]), zoo)
    assert _demo_models(parse(["demo", "--models", "EASE, als"]), zoo) == ["ease", "als"]


def test_demo_full_and_models_exclude_each_other(capsys):
    assert main(["demo", "--full", "--models", "ease", "--no-progress"]) == 2
    assert "--full" in capsys.readouterr().err


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
