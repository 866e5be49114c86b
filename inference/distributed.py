r"""Data-parallel fitting on ``torch.distributed``: each process takes its shard of every minibatch.

Started in every process of a process group (``torchrun --nproc-per-node P pyro-vae fit ...``, or a
script of one's own that calls ``torch.distributed.init_process_group`` and then
:func:`~pyro_vae.inference.fit.fit`), ``fit`` finds the group (:meth:`DataParallel.current`) and
becomes data-parallel; ``batch_size`` stays the *global* minibatch B:

* every process holds the whole data set and follows rank 0's permutation (broadcast each epoch); a
  minibatch of B indices is cut into P contiguous shards of sizes :math:`b_r` (``tensor_split``);
* each process scales its data plate by :math:`N / b_r` (its shard is a subsample of its own) and
  weights its gradient by :math:`b_r / B` before the gradients are summed (one ``all_reduce`` a step),
  so the sum is exactly the single-process estimate for the global batch,

  .. math:: \sum_r \frac{b_r}{B} \frac{N}{b_r} \sum_{i \in r} \ell_i = \frac{N}{B} \sum_{i=1}^{B} \ell_i ,

  a global latent's KL, once in each process's loss, counts once (:math:`\sum_r b_r / B = 1`), and
  shards of unequal size (the last minibatch) are weighted right.  The importance-weighted bound is a
  log-mean over the particles of one data point, so it does not see the split;
* rank 0's parameters are broadcast before the first step, and the same summed gradient and the same
  optimiser keep all processes' parameters identical after every step (buffers, e.g. batch-norm
  statistics, are rank 0's in the checkpoint);
* process r seeds its random streams with ``seed + r``: the shards' latent draws are independent, and
  rank 0 draws what a single-process fit with ``seed`` would;
* only rank 0 writes the run directory and computes the validation and final ELBO; the others get
  its history and metrics.  A checkpoint holds every rank's random streams, so ``--resume`` continues
  as an uninterrupted fit would; the number of processes is part of the run's config.

The collectives are ``torch.distributed``'s own: ``gloo`` on CPU, ``nccl`` on CUDA, each process on
``cuda:LOCAL_RANK`` (:func:`init_from_environment`).  Written here rather than with
``DistributedDataParallel``, which wraps one ``nn.Module``'s forward: a Pyro pair's loss is computed
by an ELBO over model and guide, and its parameters may live in the param store.
"""

import os

import torch
import torch.distributed as dist

from pyro_vae import checks
from pyro_vae.errors import ConfigError, PyroVAEError


class DataParallel:
    """The process group of a data-parallel fit: this process's ``rank`` of ``size``, and the
    collectives a fit needs (module doc)."""

    def __init__(self):
        self.rank, self.size = dist.get_rank(), dist.get_world_size()

    @classmethod
    def current(cls):
        """The initialised process group of more than one process, or None (a single-process fit)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls()
        return None

    @property
    def writes(self):
        """Whether this process writes the run directory and computes the reported ELBOs (rank 0)."""
        return self.rank == 0

    def seed(self, seed):
        return (seed + self.rank) % 2**32

    def follow_rank_zero(self, tensor):
        """``tensor`` (in place) as rank 0 holds it."""
        dist.broadcast(tensor, 0)
        return tensor

    def shard(self, index):
        """This process's contiguous part of the global minibatch ``index`` and its weight ``b_r / B``."""
        part = index.tensor_split(self.size)[self.rank]
        return part, len(part) / len(index)

    def sum_gradients(self, loss, weight, params):
        """Back-propagate ``weight * loss`` and sum the weighted gradients and losses over processes
        (one ``all_reduce`` of one flat buffer); returns the summed loss.  ``loss`` without a graph (an
        empty shard) contributes zeros."""
        for param in params:
            param.grad = None
        if loss.requires_grad:
            (loss * weight).backward()
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
                         + [(loss.detach() * weight).reshape(1)])
        dist.all_reduce(flat)
        offset = 0
        for param in params:
            param.grad = flat[offset:offset + param.numel()].view_as(param)
            offset += param.numel()
        return flat[-1]

    def share_parameters(self, tensors):
        """Every process's ``tensors`` (parameters, buffers) set to rank 0's values."""
        with torch.no_grad():
            for tensor in tensors:
                dist.broadcast(tensor.data, 0)

    def any(self, flag):
        """Whether ``flag`` is true in any process."""
        value = torch.tensor(float(bool(flag)), device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def from_rank_zero(self, value):
        """Rank 0's ``value`` (any picklable object; it travels between this group's own processes)."""
        holder = [value]
        dist.broadcast_object_list(holder, 0)
        return holder[0]

    def gather(self, value):
        """Every rank's ``value``, in rank order."""
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def outcome_of_rank_zero(self, action):
        """``action()`` run on rank 0 only, its return value given to every process; a refusal there
        (a :class:`~pyro_vae.errors.PyroVAEError`) is raised in every process, so none waits forever."""
        outcome = None
        if self.writes:
            try:
                outcome = ("value", action())
            except PyroVAEError as error:
                outcome = ("error", error)
        kind, value = self.from_rank_zero(outcome)
        if kind == "error":
            raise value
        return value

    @property
    def device(self):
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def init_from_environment(device):
    """Join the process group a launcher such as ``torchrun`` describes (``WORLD_SIZE`` > 1, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); returns the device this process fits on.

    ``gloo`` for ``cpu``, ``nccl`` for ``cuda`` with each process on ``cuda:LOCAL_RANK``.  Without such
    a launcher (or with one process) nothing happens and ``device`` is returned as it is.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    kind = checks.device(device).type
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda under torchrun, but CUDA is not available here")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
    elif kind == "cpu":
        dist.init_process_group("gloo")
    else:
        raise ConfigError(f"data-parallel fitting runs on cpu (gloo) or cuda (nccl), not {device!r}")
    return device


def leave():
    """Leave the process group :func:`init_from_environment` joined (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
