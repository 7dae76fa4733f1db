"""recommend_all: every user's top-k sharded into part files, merged by the reader."""

import numpy as np
import pytest

from maasrec.datasets import make_synthetic
from maasrec.exceptions import DataError, ModelFormatError
from maasrec.models import EASE
from maasrec.recommend_all import read_recommendations, recommend_all


@pytest.fixture(scope="module")
def model():
    X = make_synthetic(n_users=50, n_items=30, density=0.1, seed=0, with_text=False).interactions
    return EASE().fit(X)


def test_parts_merge_to_recommend_of_every_user(model, tmp_path):
    paths = [recommend_all(model, tmp_path, k=5, batch_size=7, rank=r, world_size=3)
             for r in range(3)]
    assert [p.name for p in paths] == [f"part-0000{r}-of-00003.safetensors" for r in range(3)]
    got = read_recommendations(tmp_path, model)
    users = model.user_vocab_.ids
    ids, scores = model.recommend(list(users), k=5)
    np.testing.assert_array_equal(got["users"], users)
    np.testing.assert_array_equal(got["items"], ids)
    np.testing.assert_allclose(got["score"], scores, rtol=1e-6)


def test_missing_or_mixed_parts_are_errors(model, tmp_path):
    recommend_all(model, tmp_path, k=3, rank=0, world_size=2)
    with pytest.raises(ModelFormatError, match=r"lacks part\(s\) \[1\] of 2"):
        read_recommendations(tmp_path)
    recommend_all(model, tmp_path, k=3)  # a 1-process run left in the same folder
    with pytest.raises(ModelFormatError, match="world sizes"):
        read_recommendations(tmp_path)
    with pytest.raises(ModelFormatError, match="no recommend_all part"):
        read_recommendations(tmp_path / "empty")
    with pytest.raises(DataError, match="rank"):
        recommend_all(model, tmp_path, rank=2, world_size=2)
