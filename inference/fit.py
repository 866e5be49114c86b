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
  :func:`~pyro_vae.inference.estimators.elbo_terms`, and when a run directory is given the history
  and a checkpoint are written atomically, so an interrupted fit resumes from its last epoch with
  the same result as an uninterrupted one.

Parameters are those of ``module`` (default: the ``nn.Module`` owning ``model`` when it is a bound
method) plus every ``pyro.param`` the pair touches on its first step.

Called in every process of an initialised ``torch.distributed`` process group (``torchrun``), the fit
is data-parallel: each process takes its shard of every minibatch and the gradients are summed
(:mod:`~pyro_vae.inference.distributed`).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
from pyro import poutine
from torch.distributions import constraints

from pyro_vae.contract import describe_pair, owner_module
from pyro_vae.plots import plot_training_curve
from pyro_vae import checks
from pyro_vae.kl import base_distribution
from pyro_vae.errors import ConfigError, DataError, NonFiniteLossError
from pyro_vae.progress import progress_bar, report_epoch
from pyro_vae.options import documented
from pyro_vae.rundir import RunDir

from .distributed import DataParallel
from .estimators import elbo_terms
from .objectives import check_objective, make_objective, parse_objective
from .plates import find_data_plate
from .traces import random_state_kept, trace_pair
from .optimizers import describe_optimizer
from .options import FitOptions
from .trainer import MAX_ROLLBACKS, NonFiniteStep, Trainer, TrainerState, first_nonfinite_site, load_parameters

#: Draws per point of the validation ELBO after each epoch, and of the final metrics; each number's
#: standard error is recorded beside it (``val_elbo_mc_se``, ``test_elbo_mc_se``).  ``evaluate`` takes
#: as many as an error of about 0.01 nats needs (:func:`~.estimators.elbo_terms`).
VALIDATION_DRAWS, METRIC_DRAWS = 2, 8


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch ``history``, final ``metrics``, the ``run_dir``, the KL path of
    each latent site and the ``data_plate`` the pair was scaled by."""

    history: list
    metrics: dict
    run_dir: Path = None
    kl_paths: dict = field(default_factory=dict)
    data_plate: str = None


def linear_warmup(beta, warmup_steps):
    """KL annealing: ``step -> beta * min(1, step / warmup_steps)`` (Bowman et al. 2016)."""

    def schedule(step):
        return beta * min(1.0, step / warmup_steps) if warmup_steps > 0 else beta

    schedule.description = f"linear warm-up to {beta} over {warmup_steps} steps"
    return schedule


@documented(FitOptions)
def fit(model, guide, train, *, val=None, test=None, module=None, out=None, resume=False, config=None, data_plate=None,
        progress=None, callback=None, options=None, **values):
    r"""Fit ``model``/``guide`` to ``train`` by stochastic variational inference.

    Every option is checked, and the objective computed once on a minibatch, before anything is
    written: a refused configuration leaves no run directory behind.  The options are those of
    :class:`~pyro_vae.inference.options.FitOptions`, as keywords or as ``options=`` (keywords win).

    Examples::

        data = pyro_vae.load_data("digits", binarize="dynamic")
        vae = pyro_vae.VAE(data.event_shape, latent_dim=8)
        result = pyro_vae.fit(vae.model, vae.guide, data.train, val=data.val, test=data.test, objective="iwae:5",
                              epochs=50, lr=1e-3, dynamic_binarization=True, out="runs/iwae")
        result.metrics["test_elbo"], result.metrics["test_elbo_mc_se"]

    :param model: Pyro model ``model(x)``; local sites inside one ``pyro.plate`` of size ``len(x)``
        (the data plate, any name; see :mod:`pyro_vae.contract`), global sites outside it.
    :param guide: Pyro guide ``guide(x)`` with the same plate.
    :param torch.Tensor train: training data ``(n, ...)``; ``val`` and ``test`` likewise, optional.
    :param module: ``nn.Module`` owning the pair's parameters (default: owner of a bound ``model``).
    :param out: run directory for config, history, checkpoint and metrics (nothing written if None).
    :param resume: continue the run in ``out`` from its checkpoint.
    :param dict config: extra entries for ``config.json`` (e.g. the CLI's options); ``config["model"]``
        (``{"factory": ..., "kwargs": ...}``, :mod:`pyro_vae.factories`) lets ``load_run`` rebuild the pair,
        and is filled in for an owning module with ``init_kwargs`` (the catalogue VAE).
    :param str data_plate: the name of the plate over data points (default: found, see :mod:`pyro_vae.contract`).
    :param progress: a progress bar of the epochs: None (where the terminal is one), True or False.
    :param options: a :class:`~pyro_vae.inference.options.FitOptions`; the keywords below replace its fields.
    :param callback: ``callback(step)`` after every optimisation step (e.g. to record per-latent
        variances along training); it chooses its own frequency.  If it returns True, training stops
        at the end of the current epoch (which is recorded and checkpointed as usual).
    {options}
    :returns: :class:`FitResult`.
    """
    options = FitOptions.build(options, **values)
    if resume and out is None:
        raise ConfigError("resume needs a run directory (out=...)")
    device = checks.device(options.device)
    module = owner_module(model, module)
    splits = _checked_splits({"train": train, "val": val, "test": test}, module, options.dynamic_binarization, device)
    train = splits["train"]
    n = len(train)
    batch_size = min(options.batch_size, n)  # a batch larger than the data set is the whole data set
    schedule = options.schedule(steps_per_epoch=-(-n // batch_size))

    first = train[:batch_size]
    if options.dynamic_binarization:  # what a training step sees
        first = torch.bernoulli(first.clamp(0, 1))
    with pyro.validation_enabled(False):  # a non-finite parameter is reported by the first step, naming its site
        data_plate = find_data_plate(model, guide, first, data_plate)
        elbo = make_objective(options.objective, options.particles, data_plate=data_plate)
        checks.check_memory(elbo.num_particles * first.numel() * first.element_size(),
                            f"a step at K = {elbo.num_particles} particles on minibatches of {len(first)} (at least its "
                            "decoder outputs)", device)
        kl_paths = check_objective(elbo, model, guide, first, data_plate)
    _check_support(model, guide, first)
    parallel = DataParallel.current()
    trainer = Trainer(elbo, model, guide, module, data_plate, n, schedule, options.dynamic_binarization, callback, parallel)
    objective, beta = options.objective, options.beta
    run_config = {  # the options as given, with what they resolved to where that differs
        **options.values(),
        "objective": parse_objective(objective)[0] if isinstance(objective, str) else type(objective).__name__,
        "particles": elbo.num_particles,
        "beta": beta if not callable(beta) else getattr(beta, "description", repr(beta)),
        "batch_size": batch_size, "optimizer": describe_optimizer(options.optimizer), "device": str(device), "num_train": n,
        "data_plate": data_plate, **({"processes": parallel.size} if parallel is not None else {}), **(config or {}),
    }
    if "model" not in run_config and hasattr(module, "init_kwargs"):  # a module that can say how it was built
        run_config["model"] = {"factory": f"{type(module).__module__}:{type(module).__qualname__}", "kwargs": module.init_kwargs}
    run_config = json.loads(json.dumps(run_config, default=str))  # what config.json holds (an object: its text), also in the checkpoint
    run_dir = RunDir(out) if out is not None else None
    checkpoint = _start(run_dir, run_config, resume, parallel)
    try:
        seed = options.seed
        pyro.set_rng_seed(seed if parallel is None else parallel.seed(seed))
        state = TrainerState()
        if checkpoint is not None:
            load_parameters(checkpoint, module)
            state = TrainerState.from_checkpoint(checkpoint)
        with pyro.validation_enabled(options.validate):
            trainer.make_optimizer(options.optimizer, train[:batch_size], options.lr, options.clip_norm)
            if checkpoint is not None:
                trainer.load(checkpoint)
            _train(trainer, state, splits, options.epochs, batch_size, run_dir, run_config, progress, options.eval_batch_size,
                   MAX_ROLLBACKS if options.on_nonfinite == "rollback" else 0)
        metrics = {"train_seconds": state.seconds, "epochs": len(state.history)}
        if parallel is None or parallel.writes:
            metrics.update(_final_metrics(trainer, splits, options.eval_batch_size, seed))
            if run_dir is not None:
                run_dir.write_metrics(metrics)
                plot_training_curve(state.history, run_dir.path / "figures" / "training_curve.png",
                                    model=describe_pair(model, module))
        if parallel is not None:
            state.history, metrics = parallel.from_rank_zero((state.history, metrics))
    finally:
        if run_dir is not None:
            run_dir.release()
    return FitResult(state.history, metrics, run_dir.path if run_dir is not None else None, kl_paths, data_plate)


def _start(run_dir, run_config, resume, parallel):
    """The run directory taken for the fit (:meth:`RunDir.start`), by rank 0 alone in a data-parallel fit;
    returns the checkpoint to resume from (every process gets it) or None."""
    if run_dir is None:
        return None
    if parallel is None:
        return run_dir.start(run_config, resume)
    return parallel.outcome_of_rank_zero(lambda: run_dir.start(run_config, resume))


def _final_metrics(trainer, splits, eval_batch_size, seed):
    """Each split's ELBO (and its Monte Carlo error) at the end of the fit."""
    metrics = {}
    for name, x in splits.items():
        if x is not None:
            if name == "train" and trainer.dynamic_binarization:
                x = torch.bernoulli(x, generator=torch.Generator(x.device).manual_seed(seed))
            terms = _evaluate(trainer.module, *trainer.pair, x, eval_batch_size, trainer.data_plate, METRIC_DRAWS)
            metrics.update({f"{name}_{key}": terms[key] for key in ("elbo", "elbo_mc_se", "infinite") if key in terms})
    return metrics


def _checked_splits(splits, module, dynamic_binarization, device):
    """Check each split (a finite floating tensor of the parameters' dtype, converted where it can be, and the
    owner's ``check_data`` where it has one); move them to ``device``."""
    dtype = checks.parameter_dtype(module)
    splits = {name: checks.as_data(x, f"{name}", dtype) if x is not None or name == "train" else None
              for name, x in splits.items()}
    for name, x in splits.items():
        if x is not None:
            if module is not None and hasattr(module, "check_data"):
                module.check_data(torch.bernoulli(x.clamp(0, 1)) if dynamic_binarization and name == "train" else x)
    if module is not None:
        module.to(device)
    return {name: (x.to(device) if x is not None else None) for name, x in splits.items()}


def _check_support(model, guide, x):
    """Refuse data outside an observed site's support in one line (a pair without ``check_data`` too), unless the
    site's distribution was built with ``validate_args=False``: its author chose to score such values (Pyro's
    ``examples/vae/vae.py`` scores grey pixels under a Bernoulli), which is seen by tracing with validation on."""
    with random_state_kept(x.device), poutine.block(), torch.no_grad():
        try:
            with pyro.validation_enabled(True):
                model_trace, validated = trace_pair(model, guide, x)[0], True
        except (ValueError, RuntimeError):  # a parameter check failed: look without validation instead
            with pyro.validation_enabled(False):
                model_trace, validated = trace_pair(model, guide, x)[0], False
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and site["is_observed"]:
            support = site["fn"].support
            if _depends_on_values(support):  # bounds that move with parameters or latents: left to the likelihood
                continue
            if validated and base_distribution(site["fn"])._validate_args is False:  # the author's own choice
                continue
            if not bool(support.check(site["value"]).all()):
                raise DataError(f"the data are outside the support of the model's observed site {name!r} "
                                f"({type(site['fn']).__name__}, support {support}); transform the data or choose another likelihood")


def _depends_on_values(constraint):
    while isinstance(constraint, constraints.independent):
        constraint = constraint.base_constraint
    return constraints.is_dependent(constraint) or any(torch.is_tensor(v) for v in vars(constraint).values())


def _train(trainer, state, splits, epochs, batch_size, run_dir, run_config, progress, eval_batch_size, rollbacks):
    """The epochs from ``state.epoch`` to ``epochs``: train, validate, record, checkpoint."""
    train = splits["train"]
    writes = trainer.parallel is None or trainer.parallel.writes
    bar = progress_bar(range(state.epoch, epochs), progress if writes else False, initial=state.epoch, total=epochs,
                       unit="epoch")
    for _ in bar:
        try:
            mean_objective, stop = trainer.train_epoch_with_rollback(state, train, batch_size, rollbacks)
        except NonFiniteStep as bad:
            where = first_nonfinite_site(trainer.model, trainer.guide, bad.x)
            advice = "try a lower --lr, --clip-norm, or --on-nonfinite rollback"
            if run_dir is not None:
                saved = run_dir.finished_epochs()
                advice = (f"the checkpoint of epoch {saved} in {run_dir} is intact; " if saved else
                          f"no epoch finished, so {run_dir} holds no checkpoint and can be started again; ") + advice
            raise NonFiniteLossError(f"the loss became {bad.loss} at epoch {state.epoch + 1}, step {bad.step}; first "
                                     f"non-finite: {where}; {advice}") from None
        state.epoch += 1
        row = {"epoch": state.epoch, "step": state.step, "beta": trainer.kl_weight.beta,
               "lr": trainer.optim.param_groups[0]["lr"], "train_objective": mean_objective}
        if splits["val"] is not None and writes:
            terms = _evaluate(trainer.module, *trainer.pair, splits["val"], eval_batch_size, trainer.data_plate, VALIDATION_DRAWS)
            row.update({f"val_{k}": v for k, v in terms.items() if k not in ("draws", "infinite")})
        row["seconds"] = state.seconds
        state.history.append(row)
        if writes:
            report_epoch(state.epoch, epochs)  # to a sweep's bar, when this fit is one of a sweep's tasks
        if hasattr(bar, "set_postfix"):
            bar.set_postfix({k: f"{v:.2f}" for k, v in row.items() if k in ("train_objective", "val_elbo")})
        if run_dir is not None:
            checkpoint = trainer.checkpoint(state, run_config)  # in every process: it gathers their random streams
            if writes:
                run_dir.save_epoch(checkpoint, state.history)
        if stop:
            break


def _evaluate(module, model, guide, x, batch_size, data_plate, draws):
    if module is not None:
        module.eval()
    try:
        return elbo_terms(model, guide, x, batch_size, particles=draws, data_plate=data_plate)
    finally:
        if module is not None:
            module.train()
