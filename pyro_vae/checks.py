"""Checks of the values a user passes, in one place and one wording.

Each check returns the value in its canonical type or raises :class:`~pyro_vae.errors.ConfigError`
(:class:`~pyro_vae.errors.DataError` for data) naming the argument, the value and what was expected;
the CLI's argument types are these same checks (:func:`argument_type`), so ``--seed -1`` and
``fit(seed=-1)`` are refused in the same words.
"""

import argparse
import math
import os

import torch

from .errors import ConfigError, DataError, UnknownNameError

#: NumPy's seeds (which ``pyro.set_rng_seed`` sets too) are 32-bit.
MAX_SEED = 2**32 - 1
#: devices that hold data (``meta`` holds shapes only)
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


#: The largest file a user names that pyro-vae reads whole (a model file, a JSON of arguments).
MAX_NAMED_FILE_BYTES = 16 * 2**20


def named_file(path, what, limit=MAX_NAMED_FILE_BYTES, error=ConfigError):
    """``path`` as a :class:`~pathlib.Path`, refused in one line (an ``error``) unless it is a regular file of
    at most ``limit`` bytes (not a directory, a device such as ``/dev/zero``, a pipe or a huge file)."""
    import stat
    from pathlib import Path

    path = Path(path)
    try:
        info = path.stat()
    except OSError as failure:
        raise error(f"{what} {path} cannot be read: {failure.strerror or failure}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {path} is a directory; name a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file (a device, a pipe or a socket); name a file")
    if info.st_size > limit:
        raise error(f"{what} {path} has {info.st_size:,} bytes, more than the {limit:,} pyro-vae reads")
    return path


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(name, value):
    if not is_number(value) or not math.isfinite(value) or int(value) != value or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def nonnegative_int(name, value):
    if not is_number(value) or not math.isfinite(value) or int(value) != value or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def switch(name, value):
    """``value`` if it is True or False (not 1, not "yes")."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return value


def one_of(name, value, choices):
    """``value`` if it is one of ``choices``; else one line listing them (the words of every unknown name)."""
    if value not in choices:
        raise UnknownNameError(f"unknown {name} {value!r}; expected one of: {', '.join(map(str, choices))}")
    return value


def widths(name, value):
    """Hidden-layer widths: a sequence of positive integers (empty for none, as the linear network has), as a tuple."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{name} must be a sequence of positive layer widths such as (256, 64), got {value!r}")
    value = tuple(value)
    if not all(is_number(w) and math.isfinite(w) and int(w) == w and w >= 1 for w in value):
        raise ConfigError(f"{name} must be a sequence of positive integer widths such as (256, 64), got {value!r}")
    return tuple(int(w) for w in value)


def seed(name, value):
    if not is_number(value) or not math.isfinite(value) or int(value) != value or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer from 0 to 2**32 - 1, got {value!r}")
    return int(value)


def positive_float(name, value):
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def nonnegative_float(name, value):
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be >= 0 and finite, got {value!r}")
    return float(value)


def finite_float(name, value):
    if not is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def device(value):
    """A ``torch.device`` that holds data and exists here."""
    try:
        parsed = torch.device(value)
    except (RuntimeError, TypeError, ValueError, OverflowError):
        raise ConfigError(f"unknown device {value!r}; expected e.g. cpu, cuda, cuda:0") from None
    if parsed.type not in DEVICE_TYPES:
        raise ConfigError(f"device {value!r} holds no data; expected one of: {', '.join(DEVICE_TYPES)} (e.g. cuda:0)")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA device here")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ConfigError(f"device {value!r}: torch sees {torch.cuda.device_count()} CUDA device(s) here")
    return parsed


def device_spec(name, value):
    """``value`` as given (``"cuda:1"``), once :func:`device` has found it a device that holds data and exists here:
    the check of an options field, which keeps the user's spelling for the run's config."""
    device(value)
    return value


def _human(nbytes):
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if nbytes < 1024 or unit == "PB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    return f"{nbytes:.3g} PB"


def memory_available(where="cpu"):
    """Bytes of memory on ``where``: free memory of a CUDA device, else the machine's physical memory."""
    where = torch.device(where)
    if where.type == "cuda":
        return torch.cuda.mem_get_info(where)[0]
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(nbytes, what, where="cpu"):
    """Refuse, before anything is allocated, a cost of ``nbytes`` larger than the memory there is."""
    available = memory_available(where)
    if nbytes > available:
        raise ConfigError(f"{what} needs about {_human(nbytes)}, more than the {_human(available)} of memory here")


#: The most draws through the model one request may ask for: at a microsecond each, 10^12 take 11.6 days.
MAX_MODEL_DRAWS = 10**12


def check_work(factors, what):
    """Refuse, before anything runs, a request whose draws through the model, the product of ``factors``
    (``{"points": N, "steps": S, ...}``), pass :data:`MAX_MODEL_DRAWS`: no machine finishes it."""
    total = math.prod(int(v) for v in factors.values())
    if total > MAX_MODEL_DRAWS:
        days = total * 1e-6 / 86400
        raise ConfigError(f"{what} would draw through the model {total:.3g} times ("
                          + " x ".join(f"{v:,} {k}" for k, v in factors.items())
                          + f"), more than the {MAX_MODEL_DRAWS:.0e} pyro-vae takes on (at a microsecond a draw, "
                          f"{days:.3g} days); ask for fewer")
    return total


def check_finite(x, what="data"):
    """Raise :class:`DataError` if ``x`` is empty or holds NaN or infinity (where bad data enter)."""
    if x.numel() == 0 or len(x) == 0:
        raise DataError(f"{what} is empty")
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise DataError(f"{what} holds {int(bad.sum())} non-finite values (first at index {index}: {x[index].item()})")


def parameter_dtype(module):
    """The floating dtype of ``module``'s parameters (None without a module or parameters)."""
    if module is None:
        return None
    return next((p.dtype for p in module.parameters() if p.dtype.is_floating_point), None)


def as_data(x, name, dtype=None):
    """``x`` as a finite tensor of ``dtype`` (default: torch's default dtype) with at least one row: NumPy
    arrays, lists, integer, boolean and other floating tensors are converted."""
    if x is None:
        raise DataError(f"{name} data are None; expected a tensor of shape (n, ...)")
    if not torch.is_tensor(x):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as error:
            raise DataError(f"{name} data of type {type(x).__name__} cannot be read as numbers: {error}") from None
    if x.dim() == 0 or len(x) == 0:
        raise DataError(f"{name} data of shape {tuple(x.shape)} are empty (no rows); expected shape (n, ...) with n >= 1")
    if x.is_complex():
        raise DataError(f"{name} data are complex ({x.dtype}); expected real numbers")
    if x.device.type not in DEVICE_TYPES:
        raise DataError(f"{name} data on the {x.device.type} device hold no values (shapes only); pass data on "
                        f"{' or '.join(DEVICE_TYPES[:2])}")
    target = dtype or torch.get_default_dtype()
    x = x if x.dtype == target else x.to(target)
    check_finite(x, f"{name} data")
    return x


def argument_type(check, name, parse=int):
    """An ``argparse`` type from a check: the text parsed by ``parse``, then ``check(name, value)`` (None: no check); a
    refusal is argparse's one-line error."""

    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {'an integer' if parse is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            return value if check is None else check(name, value)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = getattr(check, "__name__", name)  # without a check: the option's name
    return convert
