"""Factories of model/guide pairs, named so a run directory can record them and ``load_run`` rebuild them.

A factory is named ``path/to/file.py:name`` (a file of the user's) or ``package.module:name`` (an
importable module, e.g. ``pyro_vae.models:VAE``) and called with keyword arguments; it returns an
object with ``model`` and ``guide`` (:class:`pyro_vae.contract.Pair`).  :class:`ModelFactory` holds the
name and the arguments only, so it pickles into sweep workers and into ``config.json``.

Rebuilding a run runs the factory's code, so it is done only for a factory that lives outside the run
directory (a received run directory cannot bring the code it runs), and a file whose contents changed
since the fit is named in a warning.
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

from .contract import Pair, owner_module
from .errors import ConfigError, RunDirError

#: The catalogue VAE as a factory (what ``pyro-vae fit`` without ``--model`` builds).
CATALOGUE_VAE = "pyro_vae.models:VAE"


def parse_model_arg(text):
    """``"key=value"`` -> ``(key, value)``, the value read as JSON where it parses (``3``, ``[1, 2]``,
    ``true``), else kept as a string."""
    key, equals, value = str(text).partition("=")
    if not equals or not key.strip().isidentifier():
        raise ConfigError(f"--model-arg expects KEY=VALUE with KEY a Python name, e.g. latent_dim=4; got {text!r}")
    try:
        return key.strip(), json.loads(value)
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
        self.path = Path(where).resolve() if where.endswith(".py") else None
        self.module_name = None if self.path else where

    def load(self):
        """The factory callable (imports its module)."""
        if self.path is not None:
            if not self.path.is_file():
                raise ConfigError(f"model file {self.path} does not exist")
            name = "pyro_vae_user_" + hashlib.sha1(str(self.path).encode()).hexdigest()[:12]
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, self.path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
        else:
            try:
                module = importlib.import_module(self.module_name)
            except ImportError as error:
                raise ConfigError(f"cannot import {self.module_name!r} for --model {self.spec}: {error}") from None
        factory = getattr(module, self.name, None)
        if not callable(factory):
            found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
            raise ConfigError(f"{self.spec}: no callable {self.name!r} there; callables found: {', '.join(found) or 'none'}")
        return factory

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
        try:
            pair = self.load()(**self.kwargs)
        except TypeError as error:
            raise ConfigError(f"{self.spec}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())}): {error}") from None
        if not isinstance(pair, Pair):
            raise ConfigError(f"{self.spec} returned a {type(pair).__name__}, which has no model and guide; a factory "
                              f"returns an object with both (an nn.Module, a namespace, a module of functions)")
        return pair

    def to_config(self):
        entry = {"factory": self.spec if self.path is None else f"{self.path}:{self.name}", "kwargs": self.kwargs}
        if self.path is not None:
            entry["sha256"] = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return entry

    @classmethod
    def from_config(cls, entry, run_dir):
        """The factory a run recorded (``config["model"]``), checked as the module doc says."""
        if isinstance(entry, dict) and entry.get("class") == "VAE":  # run directories written before factories
            entry = {"factory": CATALOGUE_VAE, "kwargs": entry.get("kwargs", {})}
        if not isinstance(entry, dict) or not isinstance(entry.get("factory"), str) or not isinstance(entry.get("kwargs", {}), dict):
            raise RunDirError(f"{run_dir}/config.json names no model factory (config['model'] = {entry!r}); pass the "
                              f"factory yourself: load_run(..., model='path/to/file.py:factory')")
        factory = cls(entry["factory"], entry.get("kwargs"))
        if factory.path is not None:
            if Path(run_dir).resolve() in factory.path.parents:
                raise RunDirError(f"{run_dir}/config.json names a model file inside the run directory ({factory.path}); "
                                  f"pyro-vae does not run code that came with a run directory: pass model= yourself")
            if not factory.path.is_file():
                raise RunDirError(f"the model file of {run_dir} ({factory.path}) does not exist; pass model= to load_run")
            if entry.get("sha256") and hashlib.sha256(factory.path.read_bytes()).hexdigest() != entry["sha256"]:
                warnings.warn(f"{factory.path} changed since the run in {run_dir} was fitted")
        return factory

    def __repr__(self):
        return f"ModelFactory({self.spec!r}, {self.kwargs!r})"


def pair_module(pair):
    """The ``nn.Module`` holding a pair's parameters: the pair itself, the owner of its bound ``model``, or None."""
    return pair if isinstance(pair, nn.Module) else owner_module(pair.model)
