"""Shared pytest fixtures.

Data sets: tests that read real data are marked ``@pytest.mark.data`` and take the
``data_home`` fixture (the folder named by ``MAASREC_DATA``) or call
``require_dataset("ml-100k", "u.data", ...)``; both skip with a reason when the data are
absent. Run them locally with ``MAASREC_DATA=/path/to/data python -m pytest -m data``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_home() -> Path:
    """The folder named by ``MAASREC_DATA``; skips the test when unset or missing."""
    env = os.environ.get("MAASREC_DATA")
    if not env:
        pytest.skip("MAASREC_DATA is not set: point it at a folder holding ml-100k/, ml-1m/, "
                    "ml-latest-small/, amazon-beauty/ to run data tests")
    path = Path(env).expanduser()
    if not path.is_dir():
        pytest.skip(f"MAASREC_DATA={env} is not a folder")
    return path


@pytest.fixture(scope="session")
def require_dataset(data_home: Path) -> Callable[..., Path]:
    """``require_dataset(folder, *files)`` -> the data set folder, or skip naming what is missing."""

    def _require(folder: str, *files: str) -> Path:
        path = data_home / folder
        if not path.is_dir():
            pytest.skip(f"{folder}/ is not in MAASREC_DATA={data_home}")
        missing = [f for f in files if not (path / f).is_file()]
        if missing:
            pytest.skip(f"{folder}/ in MAASREC_DATA={data_home} lacks {missing}")
        return path

    return _require


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test, restored after it (small networks are faster and
    their timings steadier on one thread). Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
