"""validation= of implicit-feedback models loses its rows of value <= 0, as training does."""

import numpy as np
import pandas as pd
import pytest

from maasrec.exceptions import DataError, MaasrecWarning
from maasrec.models import EASE, Popularity


class _Capture(Popularity):
    """Popularity that keeps the validation part its _fit receives."""

    def _fit(self, data, *, item_features=None, user_features=None, validation=None):
        self.got_validation_ = validation
        return super()._fit(data, item_features=item_features, user_features=user_features,
                            validation=validation)


def _frames():
    train = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3], "item": [10, 11, 10, 12, 11, 12],
                          "rating": [5.0, 4.0, 3.0, 5.0, 4.0, 2.0]})
    valid = pd.DataFrame({"user": [1, 2, 3], "item": [12, 11, 10], "rating": [4.0, -1.0, 0.0]})
    return train, valid


def test_non_positive_validation_rows_are_left_out_with_a_warning():
    train, valid = _frames()
    with pytest.warns(MaasrecWarning, match="2 of 3 validation interactions"):
        m = _Capture().fit(train, validation=valid)
    v = m.got_validation_
    assert v.nnz == 1
    assert np.all(v.values > 0)


def test_all_non_positive_validation_is_a_clear_error():
    train, valid = _frames()
    valid = valid.assign(rating=[-1.0, 0.0, -2.0])
    with pytest.raises(DataError, match="validation: every one of its 3 interaction values"):
        _Capture().fit(train, validation=valid)


def test_explicit_feedback_keeps_every_validation_row():
    train, valid = _frames()
    m = EASE(implicit=False).fit(train, validation=valid)  # EASE ignores validation
    assert m.is_fitted
