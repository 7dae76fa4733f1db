"""Bad input across the Python API and the CLI: a maasrec error naming the value (issue 17).

One table: each case is a call that must raise a :class:`~maasrec.exceptions.MaasrecError`
subclass (never a bare numpy/scipy/torch error, never silent garbage) whose message holds
the offending value. CLI cases run ``maasrec.cli.main([...])`` in-process and need a
non-zero exit, a one-line message naming the value and no traceback. The HTTP cases live
in ``tests/serving/``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from maasrec.base import Recommender
from maasrec.cli import main
from maasrec.data import Interactions
from maasrec.data.split import (
    cold_item_split,
    cold_user_split,
    leave_last_out,
    random_split,
    temporal_split,
)
from maasrec.data.vocab import IdVocab
from maasrec.exceptions import MaasrecError
from maasrec.metrics import evaluate
from maasrec.models import ALS, BPRMF, EASE, ItemKNN, PureSVD
from maasrec.neural import HybridRecommender, NeuMF, SequentialRecommender
from maasrec.rankers import TopK

DF = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3, 4], "item": [10, 11, 10, 12, 11, 12, 13],
                   "rating": [5.0, 3.0, 4.0, 2.0, 1.0, 5.0, 4.0],
                   "timestamp": [1, 2, 3, 4, 5, 6, 7]})
_CACHE: dict = {}


def data() -> Interactions:
    if "data" not in _CACHE:
        _CACHE["data"] = Interactions.from_pandas(DF)
    return _CACHE["data"]


def model() -> EASE:
    if "model" not in _CACHE:
        _CACHE["model"] = EASE(l2=1.0).fit(data())
    return _CACHE["model"]


def df_with(**cols) -> pd.DataFrame:
    return DF.assign(**cols)


# (case id, call, text the message must contain)
CASES: list[tuple[str, object, str]] = []


def case(name: str, needle: str):
    def deco(fn):
        CASES.append((name, fn, needle))
        return fn
    return deco


def add(name: str, fn, needle: str) -> None:
    CASES.append((name, fn, needle))


# -- data constructors ---------------------------------------------------------------------
add("arrays-bool-user", lambda: Interactions.from_arrays([True, 1], [1, 2]), "True")
add("arrays-bool-item", lambda: Interactions.from_arrays([1, 2], [False, 0]), "False")
add("arrays-int-overflow", lambda: Interactions.from_arrays([2**64], [1]), str(2**64))
add("arrays-neg-overflow", lambda: Interactions.from_arrays([-(2**70)], [1]), str(-(2**70)))
add("arrays-uint64-overflow",
    lambda: Interactions.from_arrays(np.array([2**63], dtype=np.uint64), [1]), str(2**63))
add("arrays-user-set", lambda: Interactions.from_arrays({1, 2}, [1, 2]), "{1, 2}")
add("arrays-item-generator", lambda: Interactions.from_arrays([1, 2], (i for i in [1, 2])),
    "generator")
add("arrays-user-dict", lambda: Interactions.from_arrays({1: 2}, [1]), "{1: 2}")
add("arrays-length", lambda: Interactions.from_arrays([1, 2, 3], [1, 2]), "3")
add("arrays-empty", lambda: Interactions.from_arrays([], []), "empty")
add("arrays-nan-value", lambda: Interactions.from_arrays([1, 2], [1, 2], [1.0, np.nan]), "nan")
add("arrays-inf-value", lambda: Interactions.from_arrays([1, 2], [1, 2], [np.inf, 1]), "inf")
add("arrays-nan-id", lambda: Interactions.from_arrays([1.0, np.nan], [1, 2]), "NaN")
add("arrays-none-id", lambda: Interactions.from_arrays(["a", None], [1, 2]), "None")
add("arrays-duplicates-policy",
    lambda: Interactions.from_arrays([1], [1], duplicates="average"), "average")
add("arrays-duplicates-raise",
    lambda: Interactions.from_arrays([1, 1], [7, 7], duplicates="raise"), "7")
add("arrays-2d-users", lambda: Interactions.from_arrays(np.ones((2, 2)), [1, 2]), "(2, 2)")
add("arrays-nested-ids", lambda: Interactions.from_arrays([[1], 2], [1, 2]), "[1]")
add("arrays-bad-timestamps",
    lambda: Interactions.from_arrays([1, 2], [1, 2], timestamps=["x", "y"]), "'x'")
add("arrays-unknown-policy",
    lambda: Interactions.from_arrays([1], [1], user_vocab=IdVocab([1]), unknown="drop"), "drop")
add("arrays-unknown-id",
    lambda: Interactions.from_arrays([9], [1], user_vocab=IdVocab([1], name="user")), "9")
add("pandas-not-a-frame", lambda: Interactions.from_pandas([1, 2]), "list")
add("pandas-empty", lambda: Interactions.from_pandas(DF.iloc[:0]), "empty")
add("pandas-no-user-col", lambda: Interactions.from_pandas(DF.rename(columns={"user": "who"})),
    "who")
add("pandas-missing-col", lambda: Interactions.from_pandas(DF, user_col="customer"), "customer")
add("pandas-bool-ids", lambda: Interactions.from_pandas(df_with(user=[True, 1, 0, False, 2, 3, 4])),
    "True")
add("pandas-rating-text", lambda: Interactions.from_pandas(df_with(rating=["a"] * 7)), "rating")
add("pandas-rating-nan", lambda: Interactions.from_pandas(df_with(rating=[np.nan] + [1.0] * 6)),
    "nan")
add("pandas-time-text", lambda: Interactions.from_pandas(df_with(timestamp=["soon"] * 7)),
    "timestamp")
add("csr-all-zero", lambda: Interactions.from_csr(sp.csr_matrix((3, 4))), "3x4")
add("csr-nan", lambda: Interactions.from_csr(sp.csr_matrix(np.array([[np.nan, 1.0]]))), "nan")
add("csr-3d", lambda: Interactions.from_csr(np.ones((2, 2, 2))), "(2, 2, 2)")
add("csr-id-count", lambda: Interactions.from_csr(sp.eye(3, format="csr"), user_ids=[1, 2]), "2")
add("csr-bool-ids", lambda: Interactions.from_csr(sp.eye(2, format="csr"), user_ids=[True, False]),
    "True")
add("vocab-duplicates", lambda: IdVocab(["a", "b", "a"]), "'a'")
add("vocab-set", lambda: IdVocab({"a", "b"}), "set")
add("vocab-frozenset", lambda: IdVocab(frozenset({3})), "frozenset({3})")
add("vocab-string", lambda: IdVocab("abc"), "'abc'")
add("vocab-2d", lambda: IdVocab(np.ones((2, 2))), "(2, 2)")
add("vocab-overflow", lambda: IdVocab([1, 2**80]), str(2**80))
add("vocab-bool-array", lambda: IdVocab(np.array([True, False])), "True")
add("vocab-index-policy", lambda: IdVocab([1]).index([1], unknown="maybe"), "maybe")
add("vocab-ids-of-range", lambda: IdVocab([1]).ids_of([5]), "5")

# -- splits -----------------------------------------------------------------------------------
add("split-ratio-sum", lambda: random_split(data(), (0.9, 0.9)), "0.9")
add("split-ratio-negative", lambda: random_split(data(), (-0.5, 1.5)), "-0.5")
add("split-seed-text", lambda: random_split(data(), random_state="abc"), "abc")
add("split-not-data", lambda: random_split("data.csv"), "str")
add("leave-last-negative", lambda: leave_last_out(data(), n_test=-1), "-1")
add("leave-last-float", lambda: leave_last_out(data(), n_test=1.5), "1.5")
add("temporal-no-time", lambda: temporal_split(Interactions.from_arrays([1, 2], [1, 2]),
                                               ratios=(0.5, 0.5)), "timestamp")
add("cold-item-size", lambda: cold_item_split(data(), test_size=1.5), "1.5")
add("cold-user-ratios", lambda: cold_user_split(data(), (0.5,)), "0.5")

# -- model parameters (checked by fit) --------------------------------------------------------
PARAMS = [
    (EASE, {"l2": -5}, "-5"), (EASE, {"l2": math.nan}, "nan"), (EASE, {"l2": "big"}, "big"),
    (EASE, {"l2": math.inf}, "inf"), (EASE, {"implicit": "no"}, "no"),
    (EASE, {"implicit": 1}, "1"),
    (ItemKNN, {"n_neighbors": 0}, "0"), (ItemKNN, {"n_neighbors": 2.5}, "2.5"),
    (ItemKNN, {"shrinkage": -1}, "-1"), (ItemKNN, {"implicit": "yes"}, "yes"),
    (PureSVD, {"factors": -3}, "-3"), (PureSVD, {"random_state": "abc"}, "abc"),
    (PureSVD, {"implicit": None}, "None"),
    (ALS, {"factors": 0}, "0"), (ALS, {"regularization": -1.0}, "-1.0"),
    (ALS, {"alpha": 0}, "0"), (ALS, {"iterations": "10"}, "10"),
    (ALS, {"confidence": "square"}, "square"), (ALS, {"random_state": "abc"}, "abc"),
    (ALS, {"random_state": -7}, "-7"), (ALS, {"random_state": 2**64}, str(2**64)),
    (ALS, {"random_state": 1.5}, "1.5"), (ALS, {"random_state": True}, "True"),
    (ALS, {"implicit": "no"}, "no"), (ALS, {"verbose": "loud"}, "loud"),
    (ALS, {"cg_steps": 0}, "0"),
    (BPRMF, {"learning_rate": 0}, "0"), (BPRMF, {"epochs": -1}, "-1"),
    (BPRMF, {"optimizer": "adagrad"}, "adagrad"), (BPRMF, {"item_bias": "yes"}, "yes"),
    (BPRMF, {"random_state": [1, 2]}, "[1, 2]"), (BPRMF, {"init_std": -0.1}, "-0.1"),
    (HybridRecommender, {"dim": 0}, "0"), (HybridRecommender, {"loss": "hinge"}, "hinge"),
    (HybridRecommender, {"epochs": -2}, "-2"), (HybridRecommender, {"tie_history": "no"}, "no"),
    (HybridRecommender, {"random_state": "x"}, "x"),
    (HybridRecommender, {"learning_rate": -1e-3}, "-0.001"),
    (NeuMF, {"dim": -1}, "-1"), (NeuMF, {"random_state": "seed"}, "seed"),
    (SequentialRecommender, {"max_len": 0}, "0"),
    (SequentialRecommender, {"dropout": 1.0}, "1.0"),
    (SequentialRecommender, {"n_heads": "two"}, "two"),
    (SequentialRecommender, {"random_state": "abc"}, "abc"),
    (SequentialRecommender, {"verbose": "quiet"}, "quiet"),
]
for cls, kw, needle in PARAMS:
    (name, value), = kw.items()
    add(f"param-{cls.__name__}-{name}={value!r}",
        lambda cls=cls, kw=kw: cls(**kw).fit(DF), needle)

# -- fit inputs ------------------------------------------------------------------------------
add("fit-list", lambda: EASE().fit([[1, 2]]), "list")
add("fit-ndarray", lambda: EASE().fit(np.ones((2, 2))), "ndarray")
add("fit-all-negative", lambda: EASE().fit(df_with(rating=[-1.0] * 7)), "-1.0")
add("fit-all-zero", lambda: ALS().fit(df_with(rating=[0.0] * 7)), "0.0")
add("fit-als-explicit-negative",
    lambda: ALS(implicit=False).fit(df_with(rating=[1.0, -2.0, 1, 1, 1, 1, 1])), "-2.0")
add("fit-inf-rating", lambda: EASE().fit(df_with(rating=[np.inf] + [1.0] * 6)), "inf")
add("fit-empty-csr", lambda: EASE().fit(sp.csr_matrix((0, 0))), "0x0")
add("fit-nan-csr", lambda: ItemKNN().fit(sp.csr_matrix(np.array([[1.0, np.nan]]))), "nan")
add("fit-bool-ids", lambda: EASE().fit(df_with(item=[True, False, True, 1, 0, 2, 3])), "True")
add("fit-set-validation", lambda: HybridRecommender(epochs=1).fit(DF, validation={1, 2}), "set")

# -- recommend / score / similar_items ------------------------------------------------------
add("rec-k-zero", lambda: model().recommend(1, k=0), "0")
add("rec-k-negative", lambda: model().recommend(1, k=-3), "-3")
add("rec-k-float", lambda: model().recommend(1, k=2.5), "2.5")
add("rec-k-str", lambda: model().recommend(1, k="10"), "'10'")
add("rec-k-bool", lambda: model().recommend(1, k=True), "True")
add("rec-k-none", lambda: model().recommend(1, k=None), "None")
add("rec-unknown-user", lambda: model().recommend(99), "99")
add("rec-unknown-users", lambda: model().recommend([1, "nobody"]), "nobody")
add("rec-bool-user", lambda: model().recommend(True), "True")
add("rec-bool-in-list", lambda: model().recommend([1, False]), "False")
add("rec-overflow-user", lambda: model().recommend(2**64), str(2**64))
add("rec-set-users", lambda: model().recommend({1, 2}), "{1, 2}")
add("rec-frozenset-users", lambda: model().recommend(frozenset({1})), "frozenset")
add("rec-dict-users", lambda: model().recommend({1: "a"}), "{1: 'a'}")
add("rec-generator-users", lambda: model().recommend(u for u in [1]), "generator")
add("rec-empty-users", lambda: model().recommend([]), "empty")
add("rec-no-users", lambda: model().recommend(), "users")
add("rec-nan-user", lambda: model().recommend([1.0, np.nan]), "NaN")
add("rec-unknown-allow", lambda: model().recommend(1, items=[10, 999]), "999")
add("rec-bool-allow", lambda: model().recommend(1, items=[True]), "True")
add("rec-unknown-exclude", lambda: model().recommend(1, exclude=[4242]), "4242")
add("rec-overflow-exclude", lambda: model().recommend(1, exclude=[2**65]), str(2**65))
add("rec-per-user-count", lambda: model().recommend([1, 2], items=[[10], [11], [12]]), "3")
add("rec-sparse-allow", lambda: model().recommend(1, items=sp.eye(2, format="csr")), "items=")
add("rec-batch-size", lambda: model().recommend(1, batch_size=0), "0")
add("rec-batch-size-str", lambda: model().recommend(1, batch_size="big"), "big")
add("rec-history-unknown", lambda: model().recommend(history=[10, 777]), "777")
add("rec-history-bool", lambda: model().recommend(history=[True]), "True")
add("rec-history-set", lambda: model().recommend(history={10, 11}), "{10, 11}")
add("rec-history-inner-set", lambda: model().recommend(history=[[10], {11, 12}]), "{11, 12}")
add("rec-history-string", lambda: model().recommend(history="10"), "history")
add("rec-history-count", lambda: model().recommend([1, 2, 3], history=[[10], [11]]), "3 users")
add("rec-history-none-item", lambda: model().recommend(history=[None, [10]]), "None")
add("rec-retriever-bad", lambda: model().recommend(1, retriever="fast"), "fast")
add("score-unknown-item", lambda: model().score([1], [31337]), "31337")
add("score-lengths", lambda: model().score([1, 2], [10]), "2 and 1")
add("score-bool", lambda: model().score([1], [True]), "True")
add("score-set", lambda: model().score({1}, [10]), "{1}")
add("score-overflow", lambda: model().score([2**64], [10]), str(2**64))
add("similar-unknown", lambda: model().similar_items(555), "555")
add("similar-k", lambda: model().similar_items(10, k=0), "0")
add("similar-empty", lambda: model().similar_items([]), "empty")
add("similar-set", lambda: model().similar_items({10, 11}), "{10, 11}")
add("similar-bool", lambda: model().similar_items(False), "False")
add("unfitted-recommend", lambda: EASE().recommend(1), "EASE")
add("unfitted-score", lambda: ALS().score([1], [1]), "ALS")
add("unfitted-save", lambda: EASE().save("/tmp/never-written"), "EASE")
add("set-params-unknown", lambda: EASE().set_params(lambda_=3), "lambda_")
add("set-retriever-bad", lambda: model().set_retriever("flat"), "flat")

# -- rankers -------------------------------------------------------------------------------
add("topk-k", lambda: TopK(0), "0")
add("topk-nan", lambda: TopK(2).rank(np.array([[np.nan, 1.0]])), "NaN")
add("topk-1d", lambda: TopK(2).rank(np.ones(3)), "(3,)")
add("topk-filter-range", lambda: TopK(2).rank(np.ones((1, 3)), deny=[7]), "7")
add("topk-filter-float", lambda: TopK(2).rank(np.ones((1, 3)), allow=[0.5]), "float")

# -- evaluate ------------------------------------------------------------------------------
add("eval-k-zero", lambda: evaluate(model(), data(), data(), k=0), "0")
add("eval-k-str", lambda: evaluate(model(), data(), data(), k="ten"), "ten")
add("eval-metric", lambda: evaluate(model(), data(), data(), metrics=["accuracy@5"]), "accuracy")
add("eval-protocol", lambda: evaluate(model(), data(), data(), protocol="partial"), "partial")
add("eval-negatives", lambda: evaluate(model(), data(), data(), protocol="sampled",
                                       n_negatives=-1), "-1")
add("eval-bootstrap", lambda: evaluate(model(), data(), data(), n_bootstrap=-5), "-5")
add("eval-test-type", lambda: evaluate(model(), data(), "test.csv"), "str")
add("eval-unfitted", lambda: evaluate(EASE(), data(), data()), "EASE")

# -- save / load paths ------------------------------------------------------------------------
add("load-missing", lambda: Recommender.load("/nonexistent/maasrec-model"), "/nonexistent")
add("load-file", lambda: Recommender.load(__file__), "test_bad_inputs.py")


@case("load-not-a-model", "maasrec.json")
def _load_not_model():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        Recommender.load(d)


@case("save-exists", "exists")
def _save_exists():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        model().save(d)


@pytest.mark.parametrize("name, call, needle", CASES, ids=[c[0] for c in CASES])
def test_python_api_bad_input(name, call, needle):
    """A maasrec error whose message names the offending value."""
    with pytest.raises(Exception) as info:
        call()
    exc = info.value
    assert isinstance(exc, (MaasrecError, FileExistsError)), (
        f"{name}: {type(exc).__name__} is not a maasrec error: {exc}")
    assert needle.lower() in str(exc).lower(), f"{name}: {needle!r} not in {str(exc)!r}"


# -- the CLI ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    csv = d / "train.csv"
    DF.to_csv(csv, index=False)
    model().save(d / "model")
    (d / "bad.csv").write_text("who,what\n1,2\n")
    (d / "empty.csv").write_text("user,item\n")
    (d / "nan.csv").write_text("user,item,rating\n1,10,nan\n")
    return d


CLI_CASES = [
    ("fit-unknown-model", ["fit", "--model", "Nope", "--data", "{d}/train.csv", "{d}/m1"], "Nope"),
    ("fit-bad-param-value", ["fit", "--model", "EASE", "--param", "l2=-5", "--data",
                             "{d}/train.csv", "{d}/m2"], "-5"),
    ("fit-unknown-param", ["fit", "--model", "EASE", "--param", "alpha=1", "--data",
                           "{d}/train.csv", "{d}/m3"], "alpha"),
    ("fit-param-no-equals", ["fit", "--model", "EASE", "--param", "l2", "--data",
                             "{d}/train.csv", "{d}/m4"], "l2"),
    ("fit-bool-param", ["fit", "--model", "EASE", "--param", "implicit=\"no\"", "--data",
                        "{d}/train.csv", "{d}/m5"], "no"),
    ("fit-missing-data", ["fit", "--model", "EASE", "--data", "{d}/absent.csv", "{d}/m6"],
     "absent.csv"),
    ("fit-no-columns", ["fit", "--model", "EASE", "--data", "{d}/bad.csv", "{d}/m7"], "who"),
    ("fit-empty-data", ["fit", "--model", "EASE", "--data", "{d}/empty.csv", "{d}/m8"], "empty"),
    ("fit-nan-rating", ["fit", "--model", "EASE", "--data", "{d}/nan.csv", "{d}/m9"], "nan"),
    ("fit-output-exists", ["fit", "--model", "EASE", "--data", "{d}/train.csv", "{d}/model"],
     "model"),
    ("recommend-missing-model", ["recommend", "{d}/nomodel", "1"], "nomodel"),
    ("recommend-unknown-user", ["recommend", "{d}/model", "424242"], "424242"),
    ("recommend-k-zero", ["recommend", "{d}/model", "1", "-k", "0"], "0"),
    ("recommend-text-user", ["recommend", "{d}/model", "alice"], "alice"),
    ("recommend-k-huge-ok-but-bad-user", ["recommend", "{d}/model", "1", "2**64", "-k",
                                          "1000000000"], "2**64"),
    ("recommend-not-model", ["recommend", "{d}", "1"], "maasrec.json"),
    ("evaluate-missing-test", ["evaluate", "{d}/model", "--train", "{d}/train.csv", "--test",
                               "{d}/gone.csv"], "gone.csv"),
    ("evaluate-k-negative", ["evaluate", "{d}/model", "--train", "{d}/train.csv", "--test",
                             "{d}/train.csv", "-k", "-2"], "-2"),
    ("evaluate-bad-test", ["evaluate", "{d}/model", "--train", "{d}/train.csv", "--test",
                           "{d}/bad.csv"], "who"),
    ("demo-unknown-model", ["demo", "--models", "nope", "--no-progress"], "nope"),
    ("argparse-k-text", ["recommend", "{d}/model", "1", "-k", "ten"], "ten"),
    ("argparse-unknown-command", ["train"], "train"),
]


@pytest.mark.parametrize("name, argv, needle", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(name, argv, needle, cli_files, capsys):
    """Non-zero exit, one line naming the value, no traceback."""
    argv = [a.replace("{d}", str(cli_files)) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc not in (0, None), f"{name}: exit status {rc}"
    assert "Traceback" not in err, err
    last = [ln for ln in err.strip().splitlines() if ln.strip()][-1]
    assert "error" in last and needle.lower() in last.lower(), f"{name}: {err!r}"


def test_case_count():
    """The issue asks for >= 150 bad-input cases across API, CLI and HTTP (>= 120 here)."""
    assert len(CASES) + len(CLI_CASES) >= 150
