"""Sphinx configuration for maasrec.

The build runs the gallery scripts of ``examples/gallery/`` (sphinx-gallery, small data)
and writes one API page per public name (autosummary, listed by hand in ``api/*.rst``;
``tests/test_docs_examples.py`` checks that every name of every ``__all__`` is listed).
"""

import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "src")))

from maasrec import __version__  # noqa: E402

project = "maasrec"
author = "maasrec developers"
copyright = "2026, maasrec developers"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autodoc_typehints = "description"
autosummary_generate = True
autosummary_imported_members = False
templates_path = ["_templates"]
nitpicky = False
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
suppress_warnings = ["ref.python"]

# -- theme --------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"maasrec {version}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "navbar_align": "left",
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
html_show_sourcelink = False

# -- gallery: executed at build time on small data, one thread ----------------------
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

import torch  # noqa: E402

torch.set_num_threads(1)  # the gallery runs in this process


sphinx_gallery_conf = {
    "examples_dirs": os.path.join("..", "examples", "gallery"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "reset_modules": ("matplotlib",),
    "min_reported_time": 1,
    "write_computation_times": True,
    "show_memory": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
}


# -- constants: a dict or tuple without a ``#:`` comment would show its type's docstring
def _drop_type_docstring(app, what, name, obj, options, lines):
    if what in ("data", "attribute") and not isinstance(obj, type) and not callable(obj):
        doc = type(obj).__doc__ or ""
        if lines and doc and lines[0].strip() == doc.strip().splitlines()[0].strip():
            lines[:] = []


def setup(app):
    app.connect("autodoc-process-docstring", _drop_type_docstring)
