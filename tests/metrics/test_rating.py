"""RMSE and MAE."""

import math

import numpy as np
import pytest

from maasrec.exceptions import DataError
from maasrec.metrics import mae, rmse


def test_known_answers():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    assert rmse([4.0], [4.0]) == 0.0
    assert mae(np.array([1.0, 5.0]), np.array([2.0, 3.0])) == pytest.approx(1.5)


@pytest.mark.parametrize("fn", [rmse, mae])
def test_validation(fn):
    with pytest.raises(DataError, match="same length"):
        fn([1, 2], [1])
    with pytest.raises(DataError, match="empty"):
        fn([], [])
    with pytest.raises(DataError, match="NaN/inf"):
        fn([1, np.nan], [1, 2])
    with pytest.raises(DataError, match="y_pred"):
        fn([1, 2], [1, np.inf])
    with pytest.raises(DataError, match="numeric"):
        fn(["a"], [1])
