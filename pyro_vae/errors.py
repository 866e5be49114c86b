"""Exception types of pyro-vae.

Every error a user can cause is a :class:`PyroVAEError`, so the CLI can print it as one line and
exit non-zero, and Python callers can catch the specific kind they care about.  Each subclass also
derives from the builtin exception a Python user would expect (``ValueError`` for bad values,
``FileNotFoundError`` for missing files), so ``except ValueError`` keeps working.
"""

import re


class PyroVAEError(Exception):
    """Base class of every error pyro-vae raises on purpose; its message is one line."""

    def __init__(self, message="", *args):
        # Pyro's poutine.trace re-raises a ValueError raised inside a model or guide as a new one of the same
        # class with the trace's shape table appended ("...\nTrace Shapes: ..."); ours stay one line
        if isinstance(message, str):
            message = re.split(r"\n\s*Trace Shapes:", message)[0]
        super().__init__(message, *args)


class ConfigError(PyroVAEError, ValueError):
    """An option has an invalid value, or options are combined in a way that is not valid."""


class UnknownNameError(ConfigError, KeyError):
    """A name (prior, likelihood, objective, data set, ...) is not among the registered ones."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


class DataError(PyroVAEError, ValueError):
    """Data are missing, malformed, non-finite, of the wrong shape or outside a likelihood's support."""


class RunDirError(PyroVAEError, OSError):
    """A run directory is missing, incomplete, from another version, or its checkpoint is corrupt."""


class NonFiniteLossError(PyroVAEError, FloatingPointError):
    """The loss became NaN or infinite during fitting; names the step and the offending site."""


class UnsafeFileError(RunDirError):
    """A file to load holds objects other than tensors and plain data: loading it could run code."""
