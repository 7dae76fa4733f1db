"""The test tree itself: pytest imports test files by basename (no ``__init__.py`` here)."""

from collections import Counter
from pathlib import Path


def test_test_file_basenames_are_unique():
    # Two tests/**/test_x.py files abort collection of the whole suite ("import file
    # mismatch") when run together, as CI does.
    root = Path(__file__).parent
    names = Counter(p.name for p in root.rglob("test_*.py"))
    dupes = sorted(n for n, c in names.items() if c > 1)
    assert not dupes, f"test files with the same basename: {dupes} (rename one of each)"
