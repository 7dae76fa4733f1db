"""Bootstrap intervals and paired tests."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maasrec.exceptions import DataError
from maasrec.metrics import EvaluationResult, bootstrap_ci, paired_test


def make_result(users, values, metric="ndcg@10", protocol="full"):
    values = np.asarray(values, dtype=float)
    return EvaluationResult(
        {metric: float(np.nanmean(values))}, {metric: values}, np.asarray(users),
        {metric: (math.nan, math.nan)}, protocol=protocol, k=(10,), n_users=len(users),
        n_items=100, n_negatives=None, counts={}, elapsed=0.0, scoring_time=0.0,
        n_bootstrap=0, confidence=0.95,
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=60), st.integers(0, 2**32 - 1))
def test_bootstrap_ci_contains_mean_and_is_seeded(values, seed):
    lo, hi = bootstrap_ci(values, n_bootstrap=200, random_state=seed)
    mean = float(np.mean(values))
    assert lo - 1e-12 <= mean <= hi + 1e-12
    assert (lo, hi) == bootstrap_ci(values, n_bootstrap=200, random_state=seed)


def test_bootstrap_ci_columns_and_nan():
    x = np.array([[0.0, 1.0], [1.0, np.nan], [0.5, 1.0], [0.25, np.nan]])
    lo, hi = bootstrap_ci(x, n_bootstrap=300)
    assert lo.shape == (2,) and lo[1] == hi[1] == 1.0  # NaN rows are left out
    assert lo[0] <= 0.4375 <= hi[0]
    with pytest.raises(DataError, match="n_bootstrap"):
        bootstrap_ci([1.0], n_bootstrap=0)
    with pytest.raises(DataError, match="confidence"):
        bootstrap_ci([1.0], confidence=1.5)
    with pytest.raises(DataError, match="non-empty"):
        bootstrap_ci([])


def test_paired_test_aligns_by_user_id():
    rng = np.random.default_rng(0)
    users = np.arange(200)
    a_vals = rng.random(200)
    b_vals = a_vals - 0.1 + rng.normal(0, 0.01, 200)
    a = make_result(users, a_vals)
    # b lists its users in another order, misses some and has extra ones
    perm = rng.permutation(200)[:150]
    b = make_result(np.r_[users[perm], [900, 901]], np.r_[b_vals[perm], [0.0, 1.0]])
    out = paired_test(a, b, "ndcg@10", n_bootstrap=500, random_state=1)
    assert out.n_users == 150 and out.n_only_a == 50 and out.n_only_b == 2
    assert out.mean_diff == pytest.approx(np.mean(a_vals[perm] - b_vals[perm]))
    assert out.ci[0] <= out.mean_diff <= out.ci[1]
    assert out.t_pvalue < 1e-10 and out.wilcoxon_pvalue < 1e-10
    assert "diff=+0.1" in repr(out)
    # swapping flips the sign; NaN users are dropped
    back = paired_test(b, a, "ndcg@10", n_bootstrap=0)
    assert back.mean_diff == pytest.approx(-out.mean_diff) and math.isnan(back.ci[0])


def test_paired_test_identical_and_noise():
    rng = np.random.default_rng(1)
    x = rng.random(100)
    same = paired_test(make_result(range(100), x), make_result(range(100), x), "ndcg@10")
    assert same.mean_diff == 0.0 and same.t_pvalue == 1.0 and same.wilcoxon_pvalue == 1.0
    noise = paired_test(make_result(range(100), x),
                        make_result(range(100), x + rng.normal(0, 0.05, 100)), "ndcg@10")
    assert noise.t_pvalue > 0.001


def test_paired_test_errors():
    a = make_result([1, 2, 3], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="no per-user values"):
        paired_test(a, a, "recall@10")
    with pytest.raises(DataError, match="cannot compare"):
        paired_test(a, make_result([1, 2, 3], [0.1, 0.2, 0.3], protocol="sampled"), "ndcg@10")
    with pytest.raises(DataError, match="at least 2 users"):
        paired_test(a, make_result([3, 4], [0.1, 0.2]), "ndcg@10")
    with pytest.raises(DataError, match="EvaluationResult"):
        paired_test(a, {"ndcg@10": 1.0}, "ndcg@10")
