"""The training loop of :func:`~pyro_vae.inference.fit.fit`: its state, one epoch, snapshots and restores.

:class:`TrainerState` is everything that changes as training runs (epoch, step, history, seconds) and
:class:`Trainer` everything fixed for a fit (objective, pair, data, optimiser); a checkpoint is the
state plus the parameters, optimiser and random streams (:meth:`Trainer.checkpoint`), written by
:class:`~pyro_vae.rundir.RunDir`.
"""

import copy
import math
import random
import time
import warnings
from dataclasses import dataclass, field

import numpy
import pyro
import torch
from pyro import poutine

from pyro_vae.errors import ConfigError

from .handlers import DataSubsampleMessenger, LatentScaleMessenger
from .optimizers import make_optimizer
from .traces import random_state_kept, trace_pair

#: How often ``on_nonfinite="rollback"`` may retry one epoch (halving the learning rate each time).
MAX_ROLLBACKS = 3


def rng_state():
    """Every random stream's state as tensors and plain data (a checkpoint must load without pickles)."""
    kind, keys, position, has_gauss, cached = numpy.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(numpy.int64)), position, has_gauss, cached]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    numpy.random.set_state((kind, keys.numpy().astype(numpy.uint32), position, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainerState:
    """What changes as a fit runs: epochs done, optimisation steps, per-epoch history, seconds spent
    training (a history row's ``seconds`` is that total up to the end of its epoch)."""

    epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def from_checkpoint(cls, checkpoint):
        history = checkpoint["history"]
        return cls(checkpoint["epoch"], checkpoint["step"], history, history[-1]["seconds"] if history else 0.0)


class NonFiniteStep(Exception):
    """Raised inside an epoch when the loss is NaN or infinite; carries the step and its minibatch."""

    def __init__(self, loss, step, x):
        super().__init__(loss)
        self.loss, self.step, self.x = loss, step, x


class Trainer:
    """One fit's fixed parts: ``elbo``, the pair, the KL weight, the optimiser.

    ``model``/``guide`` are trained with the data plate scaled by N/B
    (:class:`~pyro_vae.inference.handlers.DataSubsampleMessenger`) and latent sites by ``schedule(step)``
    (:class:`~pyro_vae.inference.handlers.LatentScaleMessenger`); ``pair`` keeps them as given.
    """

    def __init__(self, elbo, model, guide, module, data_plate, num_data, schedule, dynamic_binarization=False,
                 callback=None, parallel=None):
        self.elbo, self.pair, self.module, self.schedule, self.data_plate = elbo, (model, guide), module, schedule, data_plate
        self.num_data, self.parallel = num_data, parallel
        self.kl_weight = LatentScaleMessenger(schedule(0))
        subsample = DataSubsampleMessenger(data_plate, num_data)
        self.model, self.guide = subsample(self.kl_weight(model)), subsample(self.kl_weight(guide))
        self.dynamic_binarization, self.callback = dynamic_binarization, callback
        self.optim, self.params, self.clip_norm = None, None, None

    def make_optimizer(self, spec, x, lr, clip_norm):
        """Run the loss once to create lazy ``pyro.param`` sites (random streams kept, so a resumed fit
        draws what an uninterrupted one would), collect every parameter and build the optimiser
        (:func:`~.optimizers.make_optimizer`)."""
        with random_state_kept(x.device), poutine.trace(param_only=True) as capture:
            self.elbo.differentiable_loss(self.model, self.guide, x)
        self.params = _collect_params(self.module, capture.trace)
        if self.parallel is not None:
            buffers = list(self.module.buffers()) if self.module is not None else []
            self.parallel.share_parameters(self.params + buffers)
        self.optim, self.clip_norm = make_optimizer(spec, self.params, lr, clip_norm)

    def train_epoch(self, state, train, batch_size):
        """One pass over ``train`` in a random order; advances ``state.step``.

        :returns: ``(mean objective per data point, stop)``, ``stop`` when the callback asked for it.
        :raises NonFiniteStep: when a loss is not finite (nothing of that step is applied).
        """
        if self.module is not None:
            self.module.train()
        n = len(train)
        total = torch.zeros((), device=train.device)
        stop = False
        order = torch.randperm(n, device=train.device)
        if self.parallel is not None:
            self.parallel.follow_rank_zero(order)
        for index in order.split(batch_size):
            x, weight = (train[index], 1.0) if self.parallel is None else self._shard(train, index)
            if self.dynamic_binarization:
                x = torch.bernoulli(x)
            self.kl_weight.beta = self.schedule(state.step)
            loss = self.loss_and_gradient(x, weight, state.step + 1)
            if self.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
            self.optim.step()
            total += loss * len(index)
            state.step += 1
            if self.callback is not None:
                stop = bool(self.callback(state.step)) or stop
        if self.parallel is not None:
            stop = self.parallel.any(stop)
        return -total.item() / n, stop

    def _shard(self, train, index):
        part, weight = self.parallel.shard(index)
        return train[part], weight

    def loss_and_gradient(self, x, weight=1.0, step=1):
        """The loss per data point of the (global) minibatch, its gradient in the parameters' ``.grad``.

        :raises NonFiniteStep: when the loss is not finite (no parameter has changed).
        """
        if self.parallel is None:
            loss = self._loss(x, step) / self.num_data
            if not torch.isfinite(loss):
                raise NonFiniteStep(loss.item(), step, x)
            self.optim.zero_grad(set_to_none=True)
            loss.backward()
            return loss.detach()
        loss = self._loss(x, step) / self.num_data if len(x) else torch.zeros((), device=x.device)
        loss = self.parallel.sum_gradients(loss, weight, self.params)  # every process sees the same sum
        if not torch.isfinite(loss):
            raise NonFiniteStep(loss.item(), step, x)
        return loss

    def _loss(self, x, step):
        try:
            return self.elbo.differentiable_loss(self.model, self.guide, x)
        except torch.linalg.LinAlgError:  # a covariance no longer positive definite in float32: as lost as a NaN
            raise NonFiniteStep(math.nan, step, x) from None

    def train_epoch_with_rollback(self, state, train, batch_size, rollbacks):
        """:meth:`train_epoch`; on a non-finite loss restore the epoch's start, halve the learning rate
        and retry, at most ``rollbacks`` times (0: re-raise at once).  Adds the seconds to ``state``."""
        snapshot = self.snapshot(state) if rollbacks else None
        for attempt in range(rollbacks + 1):
            started = time.perf_counter()
            try:
                result = self.train_epoch(state, train, batch_size)
                state.seconds += time.perf_counter() - started
                return result
            except NonFiniteStep as bad:
                state.seconds += time.perf_counter() - started
                if attempt == rollbacks:
                    raise
                self.restore(snapshot, state)
                for group in self.optim.param_groups:
                    group["lr"] *= 0.5
                warnings.warn(f"non-finite loss at epoch {state.epoch + 1}, step {bad.step} ({first_nonfinite_site(self.model, self.guide, bad.x)}): "
                              f"rolled back to the start of the epoch, learning rate halved to {self.optim.param_groups[0]['lr']:g}")

    def checkpoint(self, state, config):
        """Everything a resumed fit needs, as plain tensors and values; data-parallel, every rank's random
        streams too (``rng_ranks``; a collective, so every process calls it)."""
        checkpoint = {
            "epoch": state.epoch, "step": state.step, "history": state.history,
            "module": self.module.state_dict() if self.module is not None else None,
            "param_store": pyro.get_param_store().get_state(),
            "optimizer": self.optim.state_dict(), "rng": rng_state(), "config": config,
        }
        if self.parallel is not None:
            checkpoint["rng_ranks"] = self.parallel.gather(checkpoint["rng"])
        return checkpoint

    def load(self, checkpoint):
        """Parameters, optimiser and random streams from a checkpoint (the optimiser must exist)."""
        self.optim.load_state_dict(checkpoint["optimizer"])
        set_rng_state(checkpoint["rng"] if self.parallel is None else checkpoint["rng_ranks"][self.parallel.rank])

    def snapshot(self, state):
        return copy.deepcopy({"module": self.module.state_dict() if self.module is not None else None,
                              "param_store": pyro.get_param_store().get_state(),
                              "optimizer": self.optim.state_dict(), "step": state.step}) | {"rng": rng_state()}

    def restore(self, snapshot, state):
        load_parameters(snapshot, self.module)
        self.optim.load_state_dict(snapshot["optimizer"])
        set_rng_state(snapshot["rng"])
        state.step = snapshot["step"]


def load_parameters(state, module):
    """The ``module`` and ``param_store`` entries of a checkpoint or snapshot into the live objects."""
    if module is not None:
        module.load_state_dict(state["module"])
    pyro.get_param_store().set_state(state["param_store"])


def first_nonfinite_site(model, guide, x):
    """Name the first site whose value or log-density is not finite (for the NaN report)."""
    with torch.no_grad(), poutine.block(), pyro.validation_enabled(False):
        try:
            model_trace, guide_trace = trace_pair(model, guide, x)
        except torch.linalg.LinAlgError as error:
            return f"a covariance no longer positive definite in float32 ({str(error).splitlines()[0]})"
    for kind, trace in (("guide", guide_trace), ("model", model_trace)):
        for name, site in trace.nodes.items():
            if site["type"] == "sample":
                if not torch.isfinite(site["value"]).all():
                    return f"{kind} site {name!r} (its value)"
                if not torch.isfinite(site["fn"].log_prob(site["value"])).all():
                    return f"{kind} site {name!r} (its log-density)"
    return "no single site (the non-finite value arose in the gradient or the parameters)"


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
