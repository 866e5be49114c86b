"""Failures in a user's code (a factory, a model, a guide): one line that names where, the traceback on request.

The rule, for every command and every worker of a sweep: an exception raised while a user's code is on
the stack ends the command in one line::

    pyro-vae: error: your code raised ValueError: latent_dim must be positive (pairs.py:12, in make_vae; ...)

with exit status 2, naming the innermost frame of the user's code.  ``pyro-vae --debug ...`` (or
``PYRO_VAE_DEBUG=1``) prints the full traceback before that line.  A user's code that calls
``sys.exit`` is reported the same way: a fit cannot end "successfully" having written nothing.  An
exception with no user frame on its stack (a bug of ours, torch's or Pyro's) keeps its traceback.

A frame is *the user's* unless its file lies in pyro-vae's own package folders, in Python's standard
library or in the installed site-packages; a module that a user's factory is imported from counts as
the user's even when it is installed (:func:`mark_user_module`).
"""

import importlib.util
import os
import sys
import sysconfig
import traceback
from pathlib import Path

from .errors import PyroVAEError

DEBUG_VARIABLE = "PYRO_VAE_DEBUG"
_USER_ROOTS = set()


class UserCodeError(PyroVAEError, RuntimeError):
    """The user's code (factory, model, guide) raised, or called ``sys.exit``; the message names where."""


def _package_roots():
    roots = {str(Path(__file__).resolve().parent)}
    for name in ("pyro_vae.models", "pyro_vae.inference", "pyro_vae.analyses"):
        spec = importlib.util.find_spec(name)
        roots.update(str(Path(p).resolve()) for p in (spec.submodule_search_locations or ()))
    paths = sysconfig.get_paths()
    roots.update(str(Path(paths[key]).resolve()) for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths)
    return tuple(sorted(roots))


def mark_user_module(module):
    """Count the folder of ``module`` (a user's factory was imported from it) as the user's code."""
    path = getattr(module, "__file__", None)
    if path:
        _USER_ROOTS.add(str(Path(path).resolve().parent))


def _is_users(filename, ours):
    if not filename or filename.startswith("<"):
        return False
    path = str(Path(filename).resolve())
    inside = lambda root: path == root or path.startswith(root + os.sep)  # noqa: E731
    return any(inside(root) for root in _USER_ROOTS) or not any(inside(root) for root in ours)


def user_frame(error):
    """``(file, line, function)`` of the innermost frame of the user's code in ``error``'s traceback (a
    ``SyntaxError`` in a user's file: its file and line), or None when no user code was running."""
    ours = _package_roots()
    frames = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(error.__traceback__)]
    if isinstance(error, SyntaxError) and error.filename:
        frames.append((error.filename, error.lineno, "<module>"))
    return next((frame for frame in reversed(frames) if _is_users(frame[0], ours)), None)


def debugging(flag=False):
    """Whether tracebacks were asked for: ``--debug``, or ``PYRO_VAE_DEBUG`` set to anything but "" or "0"."""
    return bool(flag) or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def as_user_code_error(error):
    """A :class:`UserCodeError` of one line for ``error`` where it was raised in the user's code, else None."""
    if isinstance(error, PyroVAEError):
        return None
    where = user_frame(error)
    if where is None:
        return None
    filename, line, function = where
    if isinstance(error, SystemExit):
        what = f"your code called sys.exit({error.code!r}), so pyro-vae stopped before finishing"
    else:
        lines = [text for text in str(error).splitlines() if text.strip()]
        text = lines[0].strip() if lines else ""
        more = " ..." if len(lines) > 1 else ""
        what = f"your code raised {type(error).__name__}" + (f": {text}{more}" if text else "")
    return UserCodeError(f"{what} ({filename}:{line}, in {function}; pyro-vae --debug or {DEBUG_VARIABLE}=1 shows "
                         f"the traceback)")


def print_traceback(error):
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
