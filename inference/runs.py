"""Reloading a fitted run from its directory: the catalogue's VAE or a user's own pair."""

from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_vae import checks
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


def load_run(run_dir, device="cpu", model=None):
    """Rebuild the pair of ``run_dir`` from the factory its ``config.json`` records and load its checkpoint.

    :param model: a factory to use instead (``"path/to/file.py:name"``, ``"package.module:name"`` or a
        :class:`~pyro_vae.factories.ModelFactory`), called with the recorded arguments.
    :raises RunDirError: if the directory, config or checkpoint is missing, corrupt or from another
        version, or the checkpoint does not fit the rebuilt pair.
    """
    device = checks.device(device)
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise RunDirError(f"run directory {run.path} does not exist")
    config = run.config()
    checkpoint = run.load_checkpoint(map_location=device)
    factory = ModelFactory.from_config(config.get("model"), run.path) if model is None else model
    if not isinstance(factory, ModelFactory):
        factory = ModelFactory(factory, (config.get("model") or {}).get("kwargs"))
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
