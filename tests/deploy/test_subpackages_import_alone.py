"""Every subpackage imports on its own in a fresh interpreter.

Sphinx's autosummary (an incremental docs build) and a user's first line
(`from maasrec.fusion import ConcatFusion`) import one subpackage before any other; an
import cycle that the package's usual import order hides fails there only.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import maasrec

SUBPACKAGES = sorted(m.name for m in pkgutil.iter_modules(maasrec.__path__, "maasrec.")
                     if m.ispkg)


def test_there_are_subpackages():
    assert {"maasrec.fusion", "maasrec.encoders", "maasrec.models"} <= set(SUBPACKAGES)


@pytest.mark.slow
def test_each_subpackage_imports_first():
    procs = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True) for name in SUBPACKAGES}
    failed = {}
    for name, p in procs.items():
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            failed[name] = err.strip().splitlines()[-1]
    assert not failed, failed
