"""maasrec.privacy.attacks.membership_inference: a loss-threshold attack over users."""

from __future__ import annotations

import numpy as np
import pytest

from maasrec.data.split import cold_user_split
from maasrec.datasets import make_synthetic
from maasrec.exceptions import DataError, NotFittedError
from maasrec.models import BPRMF, EASE
from maasrec.privacy.attacks import MembershipInferenceResult, membership_inference


@pytest.fixture(scope="module")
def groups():
    X = make_synthetic(600, 200, density=0.05, n_factors=4, seed=0,
                       with_text=False).interactions
    return cold_user_split(X, (0.34, 0.33, 0.33), random_state=0)


@pytest.mark.parametrize("statistic", ["loglik", "rank"])
def test_overfit_model_gives_its_training_users_away(groups, statistic):
    members, outsiders, _ = groups
    model = EASE(l2=1.0).fit(members)  # almost no regularisation: memorises co-occurrences
    res = membership_inference(model, members, outsiders, statistic=statistic)
    assert isinstance(res, MembershipInferenceResult)
    assert res.auc > 0.75
    assert len(res.member_scores) == len(res.member_users) > 100
    assert len(res.nonmember_scores) == len(res.nonmember_users) > 100
    assert res.member_scores.mean() > res.nonmember_scores.mean()
    assert res.to_dict()["auc"] == res.auc


def test_model_that_saw_neither_group_is_at_chance(groups):
    members, outsiders, third = groups
    model = EASE(l2=1.0).fit(third)
    res = membership_inference(model, members, outsiders)
    assert abs(res.auc - 0.5) < 0.12


def test_last_item_target_and_sampling(groups):
    members, outsiders, _ = groups
    model = EASE(l2=1.0).fit(members)
    res = membership_inference(model, members, outsiders, target="last", max_users=50,
                               random_state=1)
    assert len(res.member_scores) == len(res.nonmember_scores) == 50
    again = membership_inference(model, members, outsiders, target="last", max_users=50,
                                 random_state=1)
    np.testing.assert_array_equal(res.member_users, again.member_users)
    assert res.auc == again.auc


def test_bad_inputs(groups):
    members, outsiders, _ = groups
    with pytest.raises(NotFittedError):
        membership_inference(EASE(), members, outsiders)
    model = EASE(l2=1.0).fit(members)
    with pytest.raises(DataError, match="both"):
        membership_inference(model, members, members)
    with pytest.raises(DataError, match="'loss'"):
        membership_inference(model, members, outsiders, statistic="loss")
    with pytest.raises(DataError, match="'first'"):
        membership_inference(model, members, outsiders, target="first")
    with pytest.raises(DataError, match="max_users"):
        membership_inference(model, members, outsiders, max_users=0)
    with pytest.raises(DataError, match="supports_history"):
        membership_inference(BPRMF(factors=4, epochs=1).fit(members), members, outsiders)
