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

def _write_if_changed(page, text):
    """Write a generated page only when its text changed, so Sphinx rereads only what did."""
    if not page.exists() or page.read_text() != text:
        page.write_text(text)


# ---- the command-line reference: written from the parser at every build (docs/cli.md, ignored by git), so that
# it says what `pyro-vae COMMAND --help` says
def _write_cli_reference():
    from unittest import mock

    from pyro_vae.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    lines = ["# Command-line reference", "",
             "Each command's `--help`, as the installed `pyro-vae` prints it; this page is written from the parser "
             "(`pyro_vae.cli.build_parser`) whenever the documentation is built.", ""]
    with mock.patch.dict(os.environ, {"COLUMNS": "86"}):  # argparse's width: the theme's column holds 88 characters of code
        for name, command in commands.items():
            lines += [f"## pyro-vae {name}", "", "```text", command.format_help().rstrip(), "```", ""]
            for study, parser in (command._subparsers._group_actions[0].choices.items() if command._subparsers else ()):
                lines += [f"### pyro-vae {name} {study}", "", "```text", parser.format_help().rstrip(), "```", ""]
    text = "\n".join(lines)
    _write_if_changed(DOCS / "cli.md", text)


_write_cli_reference()


# ---- the parts reference: every name the CLI and Python accept, from the registries (docs/parts.md, ignored by git), so
# that a part or an objective registered in one file appears here with its options and capabilities
def _first_line(obj):
    """The first sentence of a docstring, in MyST: ``code`` as `code`, :math:`x` as $x$, other roles as their text."""
    import re

    paragraph = " ".join(line.strip() for line in (obj.__doc__ or "").strip().split("\n\n")[0].splitlines())
    sentence = re.split(r"(?<!et al)(?<!e\.g)(?<!Fig)(?<!Sec)(?<=[a-z)`])\. ", paragraph + " ")[0].strip().rstrip(".")
    sentence = re.sub(r":math:`([^`]*)`", r"$\1$", sentence)
    sentence = re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]*)`", r"`\1`", sentence)
    return sentence.replace("``", "`").replace("|", "\\|")


def _write_parts_reference():
    from pyro_vae.data import DATASETS
    from pyro_vae.guides import GUIDES
    from pyro_vae.inference.objectives import OBJECTIVES, capabilities
    from pyro_vae.likelihoods import LIKELIHOODS
    from pyro_vae.networks import NETWORKS
    from pyro_vae.priors import PRIORS

    lines = ["# Parts and objectives", "",
             "Every name that `pyro-vae` and Python accept, with its options and their defaults; this page is written "
             "from the registries (`pyro_vae.registry.Registry`) whenever the documentation is built, so a part registered "
             "in its module appears here, and as a flag of the command line, with nothing else to edit.", ""]
    for registry, flag in ((DATASETS, "--data"), (PRIORS, "--prior"), (GUIDES, "--guide"), (LIKELIHOODS, "--likelihood"),
                           (NETWORKS, "--network")):
        lines += [f"## {registry.kind.capitalize()}s (`{flag}`)", "", "| name | options (default) | factory | what |",
                  "| --- | --- | --- | --- |"]
        for name in registry.names():
            factory = registry.get(name)
            options = ", ".join(f"`--{registry.kind}-{option}` ({field.default:g})"
                                for option, field in registry.options(name).items()) or "none"
            lines.append(f"| `{name}` | {options} | `{factory.__qualname__}` | {registry.about(name) or _first_line(factory)} |")
        lines.append("")
    lines += ["## Objectives (`--objective NAME` or `NAME:K`)", "",
              "What each estimator is, read from the capabilities its class declares (`pyro_vae.inference.objectives`).", "",
              "| name | what | class | K by default | KL term | gradient |", "| --- | --- | --- | --- | --- | --- |"]
    for name in OBJECTIVES.names():
        cls = OBJECTIVES.get(name)
        able = capabilities(cls)
        gradient = "path derivative only" if able.path_derivative else "reparameterised only" if able.reparameterised_only else "full"
        lines.append(f"| `{name}` | {OBJECTIVES.about(name) or _first_line(cls)} | `{cls.__qualname__}` | "
                     f"{able.default_particles} | {able.kl.replace('-', ' ')} | {gradient} |")
    text = "\n".join(lines) + "\n"
    _write_if_changed(DOCS / "parts.md", text)


_write_parts_reference()


# ---- the public API: one page per name of pyro_vae.__all__ (autosummary writes them into docs/api/generated/), listed
# on docs/api/public.rst, written here from __all__ (both ignored by git)
def _write_public_api():
    import pyro_vae

    objects = {name: getattr(pyro_vae, name) for name in pyro_vae.__all__}
    errors = [name for name, obj in objects.items() if isinstance(obj, type) and issubclass(obj, Exception)]
    classes = [name for name, obj in objects.items() if isinstance(obj, type) and name not in errors]
    functions = [name for name, obj in objects.items() if not isinstance(obj, type)]
    lines = ["Public API", "==========", "",
             "The names of ``pyro_vae.__all__``, one page each, under the name you call them by (``pyro_vae.fit``); "
             "this page is written from ``__all__`` whenever the documentation is built.", "", ".. currentmodule:: pyro_vae", ""]
    for title, names in (("Functions", functions), ("Classes", classes)):
        lines += [title, "-" * len(title), "", ".. autosummary::", "   :toctree: generated", "", *(f"   {name}" for name in names), ""]
    # the errors keep their one description in pyro_vae.errors (a second would make every :class:`ConfigError` ambiguous)
    lines += ["Errors", "------", "", "Every error a user can cause is one of these (documented in :mod:`pyro_vae.errors`): "
              + ", ".join(f":class:`~pyro_vae.errors.{name}`" for name in errors) + ".", ""]
    text = "\n".join(lines)
    _write_if_changed(DOCS / "api" / "public.rst", text)


_write_public_api()
autosummary_generate = True

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
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "myst_nb",
]
# Formulas become MathML when the page is built (latex2mathml; the browser draws MathML itself), so they render
# with no script and no network; MathJax from a CDN showed raw \(q(z \mid x)\) offline.
html_math_renderer = "mathml"

root_doc = "index"
exclude_patterns = ["conf.py", "_build", "jupyter_execute", ".jupyter_cache", "Thumbs.db", ".DS_Store"]
html_theme = "furo"
html_title = "pyro-vae"
html_static_path = ["_static"]
html_css_files = ["reading.css"]

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


def _mathml(latex, display):
    """MathML of a formula; a function name (log, exp, ...) gets TeX's thin space before its argument, which
    latex2mathml leaves to a renderer that MathML Core browsers do not have."""
    import re

    from latex2mathml.converter import convert

    mathml = convert(latex.strip(), display="block" if display else "inline")
    return re.sub(r"<mi>(log|exp|max|min|sup|inf|det|tr|arg|sin|cos)</mi>", r'<mi>\1</mi><mspace width="0.1667em"/>', mathml)


def _visit_math(translator, node):
    from docutils import nodes

    translator.body.append(f'<span class="math">{_mathml(node.astext(), False)}</span>')
    raise nodes.SkipNode


def _visit_displaymath(translator, node):
    """A display formula; several separated by blank lines (as Sphinx's math directive allows) each get one."""
    from docutils import nodes

    parts = [part for part in node.astext().split("\n\n") if part.strip()]
    number = f'<span class="eqno">({node["number"]})</span>' if node.get("number") else ""
    formulas = "".join(_mathml(part, True) for part in parts)
    translator.body.append(f'<div class="math notranslate">{number}{formulas}</div>')
    raise nodes.SkipNode


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.add_html_math_renderer("mathml", (_visit_math, None), (_visit_displaymath, None))
