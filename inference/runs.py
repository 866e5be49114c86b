"""Reloading a fitted run from its directory."""

from dataclasses import dataclass
from pathlib import Path

import pyro

from pyro_vae.errors import RunDirError
from pyro_vae.models import VAE
from pyro_vae.rundir import load_checkpoint, read_json

MODEL_CLASSES = {"VAE": VAE}


@dataclass
class Run:
    """A fitted run: its ``model`` (an ``nn.Module`` in eval mode), ``config``, ``history`` and ``metrics``."""

    path: Path
    config: dict
    model: object
    history: list
    metrics: dict


def load_run(run_dir, device="cpu"):
    """Rebuild the model of ``run_dir`` from its ``config.json`` and load its checkpoint.

    :raises RunDirError: if the directory, config or checkpoint is missing, corrupt or from another
        version, or the run's model was built from objects rather than names (then rebuild the
        model yourself and load ``checkpoint.pt``'s ``"module"`` state).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    config = read_json(run_dir / "config.json")
    checkpoint = load_checkpoint(run_dir, map_location=device)
    spec = config.get("model")
    if not isinstance(spec, dict) or spec.get("class") not in MODEL_CLASSES:
        raise RunDirError(
            f"{run_dir}/config.json names no model pyro-vae can rebuild (config['model'] = {spec!r}); "
            f"rebuild the model/guide pair yourself and load checkpoint.pt"
        )
    try:
        model = MODEL_CLASSES[spec["class"]](**spec["kwargs"])
        model.load_state_dict(checkpoint["module"])
    except (TypeError, RuntimeError, KeyError) as error:
        raise RunDirError(f"the checkpoint in {run_dir} does not match its config: {error}") from None
    pyro.get_param_store().set_state(checkpoint["param_store"])
    metrics_path = run_dir / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    return Run(run_dir, config, model.to(device).eval(), checkpoint["history"], metrics)
