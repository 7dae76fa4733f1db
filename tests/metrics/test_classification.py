"""Binary classification metrics: known answers, references, properties, errors."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.exceptions import DataError
from maasrec.metrics import (
    accuracy,
    classification_report,
    confusion_counts,
    f1,
    log_loss,
    precision,
    recall,
    roc_auc,
)


def test_known_answers():
    y = [0, 0, 1, 1]
    p = [0.1, 0.6, 0.4, 0.9]
    assert confusion_counts(y, p) == {"tp": 1, "fp": 1, "tn": 1, "fn": 1}
    assert accuracy(y, p) == 0.5
    assert precision(y, p) == 0.5
    assert recall(y, p) == 0.5
    assert f1(y, p) == 0.5
    assert roc_auc(y, p) == 0.75
    expected = -np.mean([math.log(0.9), math.log(0.4), math.log(0.4), math.log(0.9)])
    assert log_loss(y, p) == pytest.approx(expected)
    # hard 0/1 predictions and a custom threshold
    assert accuracy([1, 0, 1], [1, 0, 0]) == pytest.approx(2 / 3)
    assert recall(y, p, threshold=0.35) == 1.0
    assert precision(y, p, threshold=0.35) == pytest.approx(2 / 3)


def test_zero_division_and_ties():
    assert precision([1, 0], [0.1, 0.2]) == 0.0
    assert precision([1, 0], [0.1, 0.2], zero_division=1.0) == 1.0
    assert recall([0, 0], [0.9, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert roc_auc([0, 1], [0.2, 0.8]) == 1.0
    assert roc_auc([1, 0], [0.2, 0.8]) == 0.0


def test_log_loss_clips_confident_mistakes():
    assert np.isfinite(log_loss([1, 0], [0.0, 1.0]))
    assert log_loss([1, 0], [1.0, 0.0]) == pytest.approx(-math.log(1 - 1e-15), abs=1e-12)


def _auc_brute(y, s):
    pos = [v for v, t in zip(s, y) if t]
    neg = [v for v, t in zip(s, y) if not t]
    total = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return total / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=40))
def test_auc_matches_pairwise_definition(rows):
    y = [int(a) for a, _ in rows]
    s = [b / 6 for _, b in rows]
    if 0 < sum(y) < len(y):
        assert roc_auc(y, s) == pytest.approx(_auc_brute(y, s))
        # a strictly increasing transform of the scores changes nothing
        assert roc_auc(y, np.exp(np.asarray(s) * 3)) == pytest.approx(roc_auc(y, s))
    else:
        with pytest.raises(DataError, match="both classes"):
            roc_auc(y, s)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=1, max_size=40),
       st.floats(0.05, 0.95))
def test_counts_and_f1_consistency(rows, threshold):
    y = [int(a) for a, _ in rows]
    p = [b for _, b in rows]
    c = confusion_counts(y, p, threshold=threshold)
    assert sum(c.values()) == len(y)
    pr, rc = precision(y, p, threshold=threshold), recall(y, p, threshold=threshold)
    fv = f1(y, p, threshold=threshold)
    if pr + rc > 0:
        assert fv == pytest.approx(2 * pr * rc / (pr + rc))
    assert 0.0 <= accuracy(y, p, threshold=threshold) <= 1.0
    report = classification_report(y, p, threshold=threshold)
    assert report.f1 == pytest.approx(fv) and report.confusion == c
    assert report.support == {"positive": sum(y), "negative": len(y) - sum(y)}
    assert 0.0 <= log_loss(y, p)


def test_against_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1)
    assert roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p))
    assert log_loss(y, p) == pytest.approx(sk.log_loss(y, p))
    d = (p >= 0.5).astype(int)
    assert f1(y, p) == pytest.approx(sk.f1_score(y, d))
    assert precision(y, p) == pytest.approx(sk.precision_score(y, d))
    assert recall(y, p) == pytest.approx(sk.recall_score(y, d))
    assert accuracy(y, p) == pytest.approx(sk.accuracy_score(y, d))


def test_report_text_and_dict():
    r = classification_report([0, 1, 1, 0], [0.2, 0.8, 0.4, 0.3])
    text = str(r)
    assert "precision" in text and "roc_auc" in text and "positive" in text
    d = r.to_dict()
    assert d["roc_auc"] == 1.0 and d["f1"] == pytest.approx(2 / 3)
    single = classification_report([1, 1], [0.2, 0.9])
    assert math.isnan(single.roc_auc) and single.to_dict()["roc_auc"] is None
    scores = classification_report([0, 1], [-2.0, 3.0])  # scores, not probabilities
    assert math.isnan(scores.log_loss) and scores.roc_auc == 1.0


@pytest.mark.parametrize("fn", [accuracy, precision, recall, f1, roc_auc, log_loss])
def test_validation(fn):
    with pytest.raises(DataError, match="same length"):
        fn([0, 1], [0.5])
    with pytest.raises(DataError, match="empty"):
        fn([], [])
    with pytest.raises(DataError, match="NaN"):
        fn([0, 1], [0.5, np.nan])
    with pytest.raises(DataError, match="binary"):
        fn([0, 2], [0.5, 0.5])
    with pytest.raises(DataError, match="1-d"):
        fn([[0, 1], [1, 0]], [[0.5, 0.5], [0.5, 0.5]])


def test_log_loss_needs_probabilities_and_threshold_is_checked():
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        log_loss([0, 1], [0.5, 1.5])
    with pytest.raises(DataError, match="threshold"):
        f1([0, 1], [0.2, 0.7], threshold=float("nan"))
