"""Reloading a fitted run from its directory: the catalogue's VAE or a user's own pair."""

from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_vae import checks, models
from pyro_vae.errors import RunDirError
from pyro_vae.factories import ModelFactory, pair_module
from pyro_vae.rundir import RunDir

from .trainer import load_parameters


@dataclass
class Run:
    """A fitted run: its ``model`` (the pair object the factory built, in eval mode where it is an
    ``nn.Module``; ``run.model.model`` and ``run.model.guide`` are the pair), ``config``, ``history``,
    ``metrics`` and the ``factory`` that rebuilt it."""

    path: Path
    config: dict
    model: object
    history: list
    metrics: dict
    factory: ModelFactory = None


def catalogue_factories():
    """The factories a run directory's ``config.json`` may name on its own: the pairs of
    :mod:`pyro_vae.models`, each under the name ``pyro_vae.models:NAME`` and under its defining module
    (what :func:`~pyro_vae.inference.fit` records for a module it is given)."""
    return frozenset(spec for name in models.__all__ for spec in
                     (f"{models.__name__}:{name}", f"{getattr(models, name).__module__}:{getattr(models, name).__qualname__}"))


def load_run(run_dir, device="cpu", model=None):
    """Rebuild the pair of ``run_dir`` from the factory its ``config.json`` records and load its checkpoint.

    A run directory may come from anyone, so the recorded factory is imported only where it is one of the
    catalogue's (:func:`catalogue_factories`); for a run of any other pair, name its factory as ``model``.

    :param model: the factory of the run's pair (``"path/to/file.py:name"``, ``"package.module:name"`` or a
        :class:`~pyro_vae.factories.ModelFactory`), called with the recorded arguments; it must be the one
        the config records (the same file and name, or a file of the same contents).
    :raises RunDirError: if the directory, config or checkpoint is missing, corrupt or from another
        version, the config names a factory outside the catalogue and ``model`` is not given, ``model`` is
        not the recorded factory, or the checkpoint does not fit the rebuilt pair.
    """
    device = checks.device(device)
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise RunDirError(f"run directory {run.path} does not exist")
    config = run.config()
    checkpoint = run.load_checkpoint(map_location=device)
    factory = ModelFactory.from_config(config.get("model"), run.path, catalogue_factories(), named=model)
    with torch.device("cpu"):  # the same initial objects on every device, moved below
        pair = factory()
    module = pair_module(pair)
    try:
        load_parameters(checkpoint, module)
    except (TypeError, RuntimeError, KeyError, AttributeError) as error:
        first = str(error).strip().splitlines()[0]
        raise RunDirError(f"the checkpoint in {run.path} does not match the pair {factory.spec} builds: {first}") from None
    if module is not None:
        module.to(device).eval()
    return Run(run.path, config, pair, checkpoint["history"], run.metrics(), factory)
