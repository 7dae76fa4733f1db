"""Model directories are readable by the server's user (deploy/Dockerfile runs as uid 10001).

safetensors writes its files with mode 0o600 whatever the umask; a model saved by one user
on a shared read-only volume was then unreadable by the container ("Permission denied:
'/models/current/arrays.safetensors'", found by running the image).
"""

from __future__ import annotations

import os
import stat
import sys

import pytest

from maasrec.models import EASE, ItemKNN
from maasrec.testing import tiny_interactions

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def modes(root) -> dict[str, int]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            full = os.path.join(dirpath, f)
            out[os.path.relpath(full, root)] = stat.S_IMODE(os.stat(full).st_mode)
    return out


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_follow_the_umask(tmp_path, umask, expected):
    X = tiny_interactions()
    old = os.umask(umask)
    try:
        EASE(l2=10.0).fit(X).save(tmp_path / "ease")
        ItemKNN(n_neighbors=2).fit(X).save(tmp_path / "knn")
    finally:
        os.umask(old)
    for name in ("ease", "knn"):
        got = modes(tmp_path / name)
        assert any(f.endswith(".safetensors") for f in got), got
        assert set(got.values()) == {expected}, (name, {f: oct(m) for f, m in got.items()})
    # and the model loads back
    assert EASE.load(tmp_path / "ease").recommend(history=[1000], k=2)[0].shape == (2,)
