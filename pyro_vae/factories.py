"""Factories of model/guide pairs, named so a run directory can record them and ``load_run`` rebuild them.

A factory is named ``path/to/file.py:name`` (a file of the user's) or ``package.module:name`` (an
importable module, e.g. ``pyro_vae.models:VAE``) and called with keyword arguments; it returns an
object with ``model`` and ``guide`` (:class:`pyro_vae.contract.Pair`).  :class:`ModelFactory` holds the
name and the arguments only, so it pickles into sweep workers and into ``config.json``.

Rebuilding a run runs the factory's code, and a run directory may come from anyone: so the factory its
``config.json`` records is imported only where it is one of the catalogue's (:mod:`pyro_vae.models`);
any other must be named by the user, and must be the one recorded (:meth:`ModelFactory.from_config`).
"""

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
import warnings
from pathlib import Path

from torch import nn

from . import checks
from .contract import Pair, owner_module
from .errors import ConfigError, RunDirError
from .usercode import UserCodeError, as_user_code_error, mark_user_module

#: The catalogue VAE as a factory (what ``pyro-vae fit`` without ``--model`` builds).
CATALOGUE_VAE = "pyro_vae.models:VAE"


def parse_model_arg(text, flag="--model-arg"):
    """``"key=value"`` -> ``(key, value)``, the value read as JSON where it parses (``3``, ``[1, 2]``,
    ``true``), else kept as a string; ``flag`` names the option in a refusal."""
    key, equals, value = str(text).partition("=")
    if not equals or not key.strip().isidentifier():
        raise ConfigError(f"{flag} expects KEY=VALUE with KEY a Python name, e.g. latent_dim=4; got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except RecursionError:
        raise ConfigError(f"{flag} {key.strip()}: the value is nested too deeply to read as JSON") from None
    except ValueError:
        return key.strip(), value


class ModelFactory:
    """A named factory and its keyword arguments (module doc).

    :param str spec: ``path/to/file.py:name`` or ``package.module:name``.
    :param dict kwargs: JSON-able keyword arguments of the factory.
    """

    def __init__(self, spec, kwargs=None):
        self.spec = str(spec)
        self.kwargs = dict(kwargs or {})
        where, colon, self.name = self.spec.rpartition(":")
        if not colon or not where or not self.name.isidentifier():
            raise ConfigError(f"--model expects path/to/file.py:factory or package.module:factory; got {self.spec!r}")
        if not where.endswith(".py") and not all(part.isidentifier() for part in where.split(".")):
            raise ConfigError(f"--model {self.spec!r}: {where!r} is neither a file ending in .py nor a module name "
                              f"(package.module); expected path/to/file.py:factory or package.module:factory")
        self.path = Path(where).resolve() if where.endswith(".py") else None
        self.module_name = None if self.path else where

    def load(self):
        """The factory callable (imports its module; what the module raises is the user's, :mod:`pyro_vae.usercode`)."""
        module = self._load_file() if self.path is not None else self._import_module()
        mark_user_module(module)
        factory = getattr(module, self.name, None)
        if not callable(factory):
            found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
            raise ConfigError(f"{self.spec}: no callable {self.name!r} there; callables found: {', '.join(found) or 'none'}")
        return factory

    def _load_file(self):
        checks.named_file(self.path, "model file")
        name = "pyro_vae_user_" + hashlib.sha1(str(self.path).encode()).hexdigest()[:12]
        module = sys.modules.get(name)
        if module is None:
            if str(self.path.parent) not in sys.path:  # as `python file.py` does: it may import modules beside it
                sys.path.insert(0, str(self.path.parent))
            spec = importlib.util.spec_from_file_location(name, self.path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                _users(spec.loader.exec_module, module)
            except BaseException:
                del sys.modules[name]
                raise
        return module

    def _import_module(self):
        try:
            return _users(importlib.import_module, self.module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not self.module_name.startswith(error.name):
                raise  # a module that the user's module imports is missing: the user's code says where
            raise ConfigError(f"cannot import {self.module_name!r} for --model {self.spec}: {error}") from None

    def accepts(self, argument):
        """Whether the factory takes a keyword ``argument`` (e.g. ``event_shape``)."""
        try:
            parameters = inspect.signature(self.load()).parameters
        except (TypeError, ValueError):
            return False
        return argument in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())

    def fill_event_shape(self, event_shape):
        """Give the factory the data's ``event_shape`` where it takes one and was not given one."""
        if "event_shape" not in self.kwargs and self.accepts("event_shape"):
            self.kwargs["event_shape"] = list(event_shape)
        return self

    def __call__(self):
        """Build the pair; refuse what is not one (:class:`~pyro_vae.contract.Pair`)."""
        factory = self.load()
        try:
            inspect.signature(factory).bind(**self.kwargs)
        except TypeError as error:
            raise ConfigError(f"{self.spec}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())}): {error}") from None
        except ValueError:  # no signature to read (a builtin): the call says
            pass
        pair = _users(factory, **self.kwargs)
        if inspect.isclass(pair) or not isinstance(pair, Pair) or not (callable(pair.model) and callable(pair.guide)):
            what = f"the class {pair.__name__} itself" if inspect.isclass(pair) else f"a {type(pair).__name__}"
            raise ConfigError(f"{self.spec} returned {what}, which is no model/guide pair; a factory returns an object "
                              f"whose model and guide are callables (an nn.Module instance, a namespace, a module of functions)")
        return pair

    @property
    def identity(self):
        """What names the factory's code: its resolved file and name, or its module and name."""
        return f"{self.path}:{self.name}" if self.path is not None else self.spec

    def sha256(self):
        return hashlib.sha256(self.path.read_bytes()).hexdigest() if self.path is not None and self.path.is_file() else None

    def to_config(self):
        entry = {"factory": self.identity, "kwargs": self.kwargs}
        if self.path is not None:
            entry["sha256"] = self.sha256()
        return entry

    def records(self, entry, catalogue):
        """Whether ``entry`` (a run's checked ``config["model"]``, :func:`recorded_entry`) records this
        factory: the same file or module and name; or, for a file moved since, the same name in a file
        of the same contents; or, for a catalogue factory, the same object under another module path.
        Nothing that ``entry`` names is imported unless it is in ``catalogue``."""
        recorded = entry["factory"]
        if recorded == self.identity:
            return True
        if self.path is not None:
            return self.path.is_file() and recorded.rpartition(":")[2] == self.name and entry.get("sha256") == self.sha256()
        return recorded in catalogue and self.spec in catalogue and ModelFactory(recorded).load() is self.load()

    @classmethod
    def from_config(cls, entry, run_dir, catalogue, named=None):
        """The factory that rebuilds the run in ``run_dir``, whose ``config.json`` records ``entry``.

        A run directory may come from anyone, so what its config names is never imported unless it is one
        of ``catalogue`` (the specs of :mod:`pyro_vae.models`' pairs).  Any other factory must be
        ``named`` by the user (``--model``, ``load_run(model=...)``); it is then called with the recorded
        keyword arguments, and refused in one line unless it is the one the config records
        (:meth:`records`).  A named file whose contents changed since the fit is named in a warning.
        """
        entry = recorded_entry(entry, run_dir)
        if named is None:
            if entry["factory"] not in catalogue:
                raise RunDirError(
                    f"{run_dir}/config.json records the model factory {entry['factory']!r}, which is not one of pyro-vae's "
                    f"({', '.join(sorted(catalogue))}); pyro-vae runs no code that a run directory names: if you trust "
                    f"that code, name the factory yourself (--model on the command line, model= in Python)")
            return cls(entry["factory"], entry["kwargs"])
        factory = named if isinstance(named, cls) else cls(named, entry["kwargs"])
        if not factory.records(entry, catalogue):
            raise RunDirError(f"{run_dir} was fitted with the model factory {entry['factory']!r}, not with {factory.spec!r}; "
                              f"name the factory its config.json records")
        if factory.path is not None and entry.get("sha256") not in (None, factory.sha256()):
            warnings.warn(f"{factory.path} changed since the run in {run_dir} was fitted")
        return factory

    def __repr__(self):
        return f"ModelFactory({self.spec!r}, {self.kwargs!r})"


def _users(function, *args, **kwargs):
    """Call the user's ``function``; its ``sys.exit`` becomes a :class:`~pyro_vae.usercode.UserCodeError` that
    names where, so that a Python session or a fit does not end as if all went well."""
    try:
        return function(*args, **kwargs)
    except SystemExit as error:
        raise as_user_code_error(error) or UserCodeError(f"your code called sys.exit({error.code!r})") from None


def recorded_entry(entry, run_dir):
    """A run's ``config["model"]``, checked: ``{"factory": str, "kwargs": dict, "sha256": str or absent}``."""
    if isinstance(entry, dict) and entry.get("class") == "VAE":  # run directories written before factories
        entry = {"factory": CATALOGUE_VAE, "kwargs": entry.get("kwargs", {})}
    if (not isinstance(entry, dict) or not isinstance(entry.get("factory"), str)
            or not isinstance(entry.get("kwargs", {}), dict) or not isinstance(entry.get("sha256", ""), str)):
        raise RunDirError(f"{run_dir}/config.json names no model factory (config['model'] = {entry!r:.200}); pass the "
                          f"factory yourself: --model path/to/file.py:factory, load_run(..., model=...)")
    return {**entry, "kwargs": dict(entry.get("kwargs", {}))}


def pair_module(pair):
    """The ``nn.Module`` holding a pair's parameters: the pair itself, the owner of its bound ``model``, or None."""
    return pair if isinstance(pair, nn.Module) else owner_module(pair.model)
