"""Sphinx configuration: the API reference (autodoc) and the tutorials, jupytext "percent" files in
``../tutorials`` that myst-nb reads as notebooks and executes at every build.

Build (from the repository root; warnings are errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import os
import shutil
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# ---- the tutorials: Sphinx reads sources only under docs/, so each ../tutorials/NN_name.py is
# copied to docs/tutorials/ (ignored by git) when it changed; copies of removed tutorials go.
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
_copies = DOCS / "tutorials"
_copies.mkdir(exist_ok=True)
for _stale in set(_copies.glob("*.py")) - {_copies / source.name for source in TUTORIALS}:
    _stale.unlink()
for _source in TUTORIALS:
    _copy = _copies / _source.name
    if not _copy.exists() or _copy.read_bytes() != _source.read_bytes():
        shutil.copyfile(_source, _copy)

# The notebooks' kernels inherit this environment: one torch/BLAS thread each (the tutorials' models
# are tiny, and several threads fighting over two cores are slower than one) and no spinning waits.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

project = "pyro-vae"
author = "the pyro-vae authors"
copyright = "the pyro-vae authors"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]

root_doc = "index"
exclude_patterns = ["conf.py", "_build", "jupyter_execute", ".jupyter_cache", "Thumbs.db", ".DS_Store"]
html_theme = "furo"
html_title = "pyro-vae"

# ---- autodoc (the package must be installed: pyro_vae.models, .inference and .analyses map to the
# folders models/, inference/ and analyses/)
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"

# ---- MyST and the notebooks
myst_enable_extensions = ["dollarmath", "amsmath"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".py": "myst-nb"}
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = "force"  # every build runs every tutorial
nb_execution_timeout = 1800  # seconds per cell: a hang guard, not a speed limit (the suite must pass under load)
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_in_temp = True  # the tutorials' run directories and files go to a temporary folder
nb_merge_streams = True


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Leave out members that scikit-learn adds to our estimators (``PPCA.set_score_request`` and the
    other metadata-routing methods made by ``BaseEstimator``): they are sklearn's API, documented there,
    and their docstrings link to sklearn's glossary, which these pages do not have."""
    if (getattr(obj, "__module__", None) or "").startswith("sklearn."):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
