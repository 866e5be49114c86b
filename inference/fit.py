r"""``fit``: stochastic variational inference for any Pyro model/guide pair.

One loop serves every objective, every model of the catalogue and a user's own pair:

* minibatches are drawn by index from a tensor that stays on the chosen device (no data loader);
* the data plate is scaled by N/B (:class:`~pyro_vae.inference.handlers.DataSubsampleMessenger`),
  so the objective is an estimate of the full-data bound; it is reported per data point;
* the KL weight beta (constant or a schedule) scales the latent sites of model and guide
  (:class:`~pyro_vae.inference.handlers.LatentScaleMessenger`);
* the step is ``objective.differentiable_loss`` and one ``torch.optim`` optimiser over all
  parameters (Pyro's ``SVI`` keeps one optimiser per parameter, which costs about a quarter of a
  step on small networks);
* after each epoch the validation ELBO, reconstruction and KL terms (beta = 1) are computed by
  :func:`~pyro_vae.inference.evaluate.elbo_terms`, and when a run directory is given the history
  and a checkpoint are written atomically, so an interrupted fit resumes from its last epoch with
  the same result as an uninterrupted one.

Parameters are those of ``module`` (default: the ``nn.Module`` owning ``model`` when it is a bound
method) plus every ``pyro.param`` the pair touches on its first step.
"""

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
from pyro import poutine
from pyro.optim.clipped_adam import ClippedAdam
from torch import nn

from pyro_vae.data import check_finite
from pyro_vae.errors import ConfigError, NonFiniteLossError, RunDirError
from pyro_vae.progress import progress_bar
from pyro_vae.rundir import library_versions, load_checkpoint, save_checkpoint, write_csv, write_json

from .evaluate import elbo_terms
from .traces import random_state_kept, trace_pair
from .handlers import DataSubsampleMessenger, LatentScaleMessenger
from .objectives import check_objective, make_objective

OPTIMIZERS = ("adam", "clippedadam")
NONFINITE_POLICIES = ("raise", "rollback")
#: How often ``on_nonfinite="rollback"`` may retry one epoch (halving the learning rate each time).
MAX_ROLLBACKS = 3


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch ``history``, final ``metrics`` and the ``run_dir``."""

    history: list
    metrics: dict
    run_dir: Path = None
    kl_paths: dict = field(default_factory=dict)


def linear_warmup(beta, warmup_steps):
    """KL annealing: ``step -> beta * min(1, step / warmup_steps)`` (Bowman et al. 2016)."""

    def schedule(step):
        return beta * min(1.0, step / warmup_steps) if warmup_steps > 0 else beta

    schedule.description = f"linear warm-up to {beta} over {warmup_steps} steps"
    return schedule


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _owner(model, module):
    if module is not None:
        return module
    owner = getattr(model, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def _rng_state():
    import random

    import numpy

    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    import random

    import numpy

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    numpy.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _first_nonfinite_site(model, guide, x):
    """Name the first site whose log-density is not finite (for the NaN report)."""
    with torch.no_grad(), poutine.block(), pyro.validation_enabled(False):
        model_trace, guide_trace = trace_pair(model, guide, x)
    for kind, trace in (("guide", guide_trace), ("model", model_trace)):
        for name, site in trace.nodes.items():
            if site["type"] == "sample":
                if not torch.isfinite(site["value"]).all():
                    return f"{kind} site {name!r} (its value)"
                if not torch.isfinite(site["fn"].log_prob(site["value"])).all():
                    return f"{kind} site {name!r} (its log-density)"
    return "no single site (the non-finite value arose in the gradient or the parameters)"


def fit(
    model,
    guide,
    train,
    *,
    val=None,
    test=None,
    module=None,
    objective="elbo",
    particles=1,
    beta=1.0,
    epochs=10,
    batch_size=128,
    lr=1e-3,
    optimizer="adam",
    clip_norm=None,
    seed=0,
    device="cpu",
    dynamic_binarization=False,
    out=None,
    resume=False,
    config=None,
    data_plate="data",
    eval_batch_size=1000,
    progress=None,
    validate=False,
    on_nonfinite="raise",
    callback=None,
):
    r"""Fit ``model``/``guide`` to ``train`` by stochastic variational inference.

    :param model: Pyro model ``model(x)``; local sites inside ``pyro.plate(data_plate, len(x))``.
    :param guide: Pyro guide ``guide(x)`` with the same plate.
    :param torch.Tensor train: training data ``(n, ...)``; ``val`` and ``test`` likewise, optional.
    :param module: ``nn.Module`` owning the pair's parameters (default: owner of a bound ``model``).
    :param objective: a name of :data:`~pyro_vae.inference.objectives.OBJECTIVES` (``elbo``, ``meanfield``,
        ``iwae``, ``stl``, ``iwae-dreg``, ``enum``) or a ``pyro.infer.ELBO`` instance.
    :param int particles: particles per data point (K of IWAE).
    :param beta: KL weight, a number >= 0 or a schedule ``step -> beta`` (:func:`linear_warmup`).
    :param str optimizer: ``adam`` (``torch.optim.Adam``) or ``clippedadam`` (Pyro's).
    :param clip_norm: clip the global gradient norm (nats per data point) to this value.
    :param seed: seeds torch, NumPy and Python before the first step (same seed, same numbers on CPU).
    :param device: where data, parameters and every step live (``cpu``, ``cuda``, ...).
    :param dynamic_binarization: draw ``x ~ Bernoulli(x)`` afresh for every training minibatch.
    :param out: run directory for config, history, checkpoint and metrics (nothing written if None).
    :param resume: continue the run in ``out`` from its checkpoint.
    :param dict config: extra entries for ``config.json`` (e.g. the CLI's options and the model's).
    :param bool validate: Pyro/torch distribution argument validation during training (slow).
    :param on_nonfinite: ``raise`` (:class:`~pyro_vae.errors.NonFiniteLossError` naming the step and
        site; the last checkpoint stays intact) or ``rollback`` (restore the state at the start of the
        epoch, halve the learning rate and retry, at most ``MAX_ROLLBACKS`` times).
    :param callback: ``callback(step)`` after every optimisation step (e.g. to record per-latent
        variances along training); it chooses its own frequency.  If it returns True, training stops
        at the end of the current epoch (which is recorded and checkpointed as usual).
    :returns: :class:`FitResult`.
    """
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    particles = _positive_int("particles", particles)
    lr = _positive_float("lr", lr)
    if clip_norm is not None:
        clip_norm = _positive_float("clip_norm", clip_norm)
    if on_nonfinite not in NONFINITE_POLICIES:
        raise ConfigError(f"unknown on_nonfinite {on_nonfinite!r}; expected one of: {', '.join(NONFINITE_POLICIES)}")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; expected one of: {', '.join(OPTIMIZERS)}")
    schedule = beta if callable(beta) else linear_warmup(beta, 0)
    kl_weight = LatentScaleMessenger(schedule(0))
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; expected e.g. cpu, cuda, cuda:0") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA device here")

    module = _owner(model, module)
    splits = {"train": train, "val": val, "test": test}
    for name, x in splits.items():
        if x is not None:
            check_finite(x, f"{name} data")
            if module is not None and hasattr(module, "check_data"):
                module.check_data(torch.bernoulli(x.clamp(0, 1)) if dynamic_binarization and name == "train" else x)
    splits = {name: (x.to(device) if x is not None else None) for name, x in splits.items()}
    train = splits["train"]
    n = len(train)
    if module is not None:
        module.to(device)

    run_config = {
        "objective": objective if isinstance(objective, str) else type(objective).__name__,
        "particles": particles,
        "beta": beta if not callable(beta) else getattr(beta, "description", repr(beta)),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "clip_norm": clip_norm,
        "seed": seed,
        "device": str(device),
        "dynamic_binarization": dynamic_binarization,
        "num_train": n,
        **(config or {}),
    }
    run_dir = Path(out) if out is not None else None
    checkpoint = _prepare_run_dir(run_dir, run_config, resume)

    elbo = make_objective(objective, particles)
    subsample = DataSubsampleMessenger(data_plate, n)
    train_model, train_guide = subsample(kl_weight(model)), subsample(kl_weight(guide))
    with pyro.validation_enabled(False), torch.no_grad():
        kl_paths = check_objective(objective, particles, model, guide, train[: min(n, batch_size)])

    pyro.set_rng_seed(seed)
    history, start_epoch, step = [], 0, 0
    if checkpoint is not None:
        if module is not None:
            module.load_state_dict(checkpoint["module"])
        pyro.get_param_store().set_state(checkpoint["param_store"])
        history, start_epoch, step = checkpoint["history"], checkpoint["epoch"], checkpoint["step"]
        _set_rng_state(checkpoint["rng"])

    seconds = sum(row["seconds"] for row in history)
    epochs_bar = progress_bar(range(start_epoch, epochs), progress, initial=start_epoch, total=epochs, unit="epoch")
    with pyro.validation_enabled(validate):
        params = _capture_params(module, elbo, train_model, train_guide, train[:batch_size], device)
        optim = _make_optimizer(optimizer, params, lr, clip_norm)
        if checkpoint is not None:
            optim.load_state_dict(checkpoint["optimizer"])
        for epoch in epochs_bar:
            snapshot = _snapshot(module, optim, step) if on_nonfinite == "rollback" else None
            for attempt in range(MAX_ROLLBACKS + 1):
                started = time.perf_counter()
                try:
                    objective_sum, step, stop = _train_epoch(elbo, train_model, train_guide, train, batch_size, kl_weight,
                                                       schedule, step, optim, params, clip_norm if optimizer == "adam" else None,
                                                       dynamic_binarization, module, callback)
                    break
                except _NonFiniteStep as bad:
                    seconds += time.perf_counter() - started
                    where = _first_nonfinite_site(train_model, train_guide, bad.x)
                    if snapshot is None or attempt == MAX_ROLLBACKS:
                        kept = (f"the checkpoint of epoch {history[-1]['epoch'] if history else 0} in {run_dir} is intact"
                                if run_dir is not None else "try a lower --lr, --clip-norm, or --on-nan rollback")
                        raise NonFiniteLossError(
                            f"the loss became {bad.loss} at epoch {epoch + 1}, step {bad.step}; first non-finite: "
                            f"{where}; {kept}"
                        ) from None
                    step = _restore(snapshot, module, optim)
                    for group in optim.param_groups:
                        group["lr"] *= 0.5
                    warnings.warn(f"non-finite loss at epoch {epoch + 1}, step {bad.step} ({where}): rolled back "
                                  f"to the start of the epoch, learning rate halved to {optim.param_groups[0]['lr']:g}")
            seconds += time.perf_counter() - started
            row = {"epoch": epoch + 1, "step": step, "beta": kl_weight.beta, "lr": optim.param_groups[0]["lr"],
                   "train_objective": -objective_sum / n}
            if splits["val"] is not None:
                row.update({f"val_{k}": v for k, v in _evaluate(module, model, guide, splits["val"], eval_batch_size).items()})
            row["seconds"] = seconds
            history.append(row)
            _set_postfix(epochs_bar, row)
            if run_dir is not None:  # checkpoint first: history.csv never lists an epoch the checkpoint lacks
                save_checkpoint(run_dir, {
                    "epoch": epoch + 1, "step": step, "history": history,
                    "module": module.state_dict() if module is not None else None,
                    "param_store": pyro.get_param_store().get_state(),
                    "optimizer": optim.state_dict(), "rng": _rng_state(), "config": run_config,
                })
                write_csv(run_dir / "history.csv", history)
            if stop:
                break

    metrics = {"train_seconds": seconds, "epochs": len(history)}
    for name, x in splits.items():
        if x is not None:
            if name == "train" and dynamic_binarization:
                x = torch.bernoulli(x, generator=torch.Generator(device).manual_seed(seed))
            metrics[f"{name}_elbo"] = _evaluate(module, model, guide, x, eval_batch_size)["elbo"]
    if run_dir is not None:
        write_json(run_dir / "metrics.json", metrics)
    return FitResult(history, metrics, run_dir, kl_paths)


class _NonFiniteStep(Exception):
    def __init__(self, loss, step, x):
        super().__init__(loss)
        self.loss, self.step, self.x = loss, step, x


def _train_epoch(elbo, train_model, train_guide, train, batch_size, kl_weight, schedule, step, optim, params,
                 clip_norm, dynamic_binarization, module, callback=None):
    """One pass over ``train`` in a random order; returns (sum of per-datapoint objectives, step, stop),
    ``stop`` when the callback asked for it."""
    if module is not None:
        module.train()
    n = len(train)
    total = torch.zeros((), device=train.device)
    stop = False
    for index in torch.randperm(n, device=train.device).split(batch_size):
        x = train[index]
        if dynamic_binarization:
            x = torch.bernoulli(x)
        kl_weight.beta = schedule(step)
        loss = elbo.differentiable_loss(train_model, train_guide, x) / n
        if not torch.isfinite(loss):
            raise _NonFiniteStep(loss.item(), step + 1, x)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        optim.step()
        total += loss.detach() * len(index)
        step += 1
        if callback is not None:
            stop = bool(callback(step)) or stop
    return total.item(), step, stop


def _capture_params(module, elbo, train_model, train_guide, x, device):
    """Run the loss once to create lazy ``pyro.param`` sites and collect every parameter, leaving the
    random number streams as they were (so a resumed fit draws what an uninterrupted one would)."""
    with random_state_kept(device), poutine.trace(param_only=True) as capture:
        elbo.differentiable_loss(train_model, train_guide, x)
    return _collect_params(module, capture.trace)


def _snapshot(module, optim, step):
    return {
        "module": copy.deepcopy(module.state_dict()) if module is not None else None,
        "param_store": copy.deepcopy(pyro.get_param_store().get_state()),
        "optimizer": copy.deepcopy(optim.state_dict()),
        "rng": _rng_state(),
        "step": step,
    }


def _restore(snapshot, module, optim):
    if module is not None:
        module.load_state_dict(snapshot["module"])
    pyro.get_param_store().set_state(snapshot["param_store"])
    optim.load_state_dict(snapshot["optimizer"])
    _set_rng_state(snapshot["rng"])
    return snapshot["step"]


def _evaluate(module, model, guide, x, batch_size):
    if module is not None:
        module.eval()
    try:
        return elbo_terms(model, guide, x, batch_size)
    finally:
        if module is not None:
            module.train()


def _collect_params(module, param_trace):
    params = list(module.parameters()) if module is not None else []
    seen = {id(p) for p in params}
    for name in sorted(param_trace.nodes):
        value = param_trace.nodes[name]["value"].unconstrained()
        if id(value) not in seen and value.requires_grad:
            params.append(value)
            seen.add(id(value))
    if not params:
        raise ConfigError("the model/guide pair has no trainable parameters (pass module= if they live in an nn.Module)")
    return params


def _make_optimizer(name, params, lr, clip_norm):
    if name == "clippedadam":
        return ClippedAdam(params, lr=lr, clip_norm=clip_norm if clip_norm is not None else 10.0)
    # The fused kernel updates all parameters in one call (CPU and CUDA): 15-20% of a small VAE's step.
    fused = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused)


def _prepare_run_dir(run_dir, run_config, resume):
    """Create the run directory, or check that the one to resume matches; return its checkpoint."""
    if run_dir is None:
        if resume:
            raise ConfigError("resume needs a run directory (out=...)")
        return None
    if resume:
        checkpoint = load_checkpoint(run_dir)
        saved = checkpoint["config"]
        differing = sorted(k for k in set(saved) | set(run_config) if k != "epochs" and saved.get(k) != run_config.get(k))
        if differing:
            raise RunDirError(
                f"cannot resume {run_dir}: options differ from the saved run in "
                + ", ".join(f"{k} (saved {saved.get(k)!r}, now {run_config.get(k)!r})" for k in differing)
            )
        write_json(run_dir / "config.json", run_config)
        return checkpoint
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(f"{run_dir} already holds files; pass resume=True (--resume) to continue it, or choose an empty directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", run_config)
    write_json(run_dir / "versions.json", library_versions())
    return None


def _set_postfix(bar, row):
    if hasattr(bar, "set_postfix"):
        bar.set_postfix({k: f"{v:.2f}" for k, v in row.items() if k in ("train_objective", "val_elbo")})

