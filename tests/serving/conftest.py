"""Fixtures of the serving tests: small saved models (int ids and str ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maasrec.models import EASE, Popularity


def _frame(n_users: int = 40, n_items: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        n = int(rng.integers(3, 15))
        for i in rng.choice(n_items, size=n, replace=False):
            rows.append((u, 1000 + int(i)))
    # user 1 has seen all but 4 items: k=10 gives a list shorter than k (padding dropped)
    rows += [(1, 1000 + i) for i in range(n_items - 4)]
    return pd.DataFrame(rows, columns=["user", "item"]).drop_duplicates()


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    """Interactions with integer user ids 1..40 and item ids 1000..1059."""
    return _frame()


@pytest.fixture(scope="session")
def ease_model(frame) -> EASE:
    """A fitted EASE with integer ids."""
    return EASE(l2=5.0).fit(frame)


@pytest.fixture(scope="session")
def model_root(tmp_path_factory) -> Path:
    """The directory holding every saved model below (the servers' default model root)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def ease_dir(model_root, ease_model) -> Path:
    """``ease_model`` saved."""
    path = model_root / "ease"
    ease_model.save(path)
    return path


@pytest.fixture(scope="session")
def ease_dir2(model_root, frame) -> Path:
    """A different EASE (other l2, other data) saved: recommendations differ."""
    path = model_root / "ease2"
    EASE(l2=200.0).fit(_frame(seed=1)).save(path)
    return path


@pytest.fixture(scope="session")
def pop_str_dir(model_root, frame) -> Path:
    """A Popularity model with string ids ("1", "2", ... users; "1000", ... items)."""
    df = frame.astype({"user": str, "item": str})
    path = model_root / "pop_str"
    Popularity().fit(df).save(path)
    return path


@pytest.fixture(scope="session")
def broken_dir(model_root, ease_dir) -> Path:
    """A directory that looks like a model but has a corrupt arrays file."""
    import shutil

    path = model_root / "broken"
    shutil.copytree(ease_dir, path)
    (path / "arrays.safetensors").write_bytes(b"not safetensors")
    return path
