"""What each process of the data-parallel tests runs (``test_distributed.py`` spawns two of them).

Each job runs in every process of a gloo group of two and saves what it saw to
``out/<job>-<rank>.pt``; the tests compare the ranks' files and the single-process answers.
"""

import os
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.distributed as torch_dist

sys.path.insert(0, str(Path(__file__).parent))

from pyro_vae.data import load_data  # noqa: E402
from pyro_vae.inference import fit, linear_warmup, make_objective  # noqa: E402
from pyro_vae.inference.distributed import DataParallel  # noqa: E402
from pyro_vae.inference.trainer import Trainer  # noqa: E402
from pyro_vae.models import VAE  # noqa: E402

NUM_DATA, GLOBAL_BATCH = 50, 7  # 7 rows over two processes: shards of 4 and 3


class MapPair:
    """A user's pair whose guide draws nothing (point masses), so a step's gradient has no noise: a
    local ``code`` per row in the user's own plate ``rows``, and a ``shift`` that is a global latent
    (``global_latent``) or a parameter (the importance-weighted bound refuses global latents)."""

    def __init__(self, global_latent):
        self.global_latent = global_latent

    def model(self, x):
        weight = pyro.param("weight", torch.linspace(-1.0, 1.0, 2 * x.shape[1]).reshape(x.shape[1], 2))
        if self.global_latent:
            shift = pyro.sample("shift", dist.Normal(torch.zeros(x.shape[1]), 2.0).to_event(1))
        else:
            shift = pyro.param("shift", torch.zeros(x.shape[1]))
        with pyro.plate("rows", len(x)):
            code = pyro.sample("code", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(shift + code @ weight.T, 0.5).to_event(1), obs=x)

    def guide(self, x):
        encoder = pyro.param("encoder", 0.1 * torch.ones(2, x.shape[1]))
        if self.global_latent:
            pyro.sample("shift", dist.Delta(pyro.param("centre", torch.zeros(x.shape[1]))).to_event(1))
        with pyro.plate("rows", len(x)):
            pyro.sample("code", dist.Delta(torch.tanh(x @ encoder.T)).to_event(1))


def gradients(parallel, out):
    """One step's gradient on the same global batch: this process's share summed over processes, and the
    single-process gradient (computed in every process, without collectives), for two objectives, the
    ELBO's with a global latent."""
    x = torch.randn(NUM_DATA, 3, generator=torch.Generator().manual_seed(1))[:GLOBAL_BATCH]
    found = {}
    for objective in ("elbo", "iwae:3"):
        for mode in ("single", "parallel"):
            pyro.clear_param_store()
            pair = MapPair(global_latent=objective == "elbo")
            trainer = Trainer(make_objective(objective, None, data_plate="rows"), pair.model, pair.guide, None, "rows",
                              NUM_DATA, linear_warmup(1.0, 0), parallel=parallel if mode == "parallel" else None)
            trainer.make_optimizer("adam", x, 1e-3, None)
            if mode == "parallel":
                part, weight = parallel.shard(torch.arange(GLOBAL_BATCH))
                loss = trainer.loss_and_gradient(x[part], weight)
            else:
                loss = trainer.loss_and_gradient(x)
            found[objective, mode] = (loss.item(), [p.grad.clone() for p in trainer.params])
    torch.save(found, out / f"gradients-{parallel.rank}.pt")


def _digits_fit(out, epochs, seed=0, resume=False):
    data = load_data("digits")
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    vae = VAE(data.event_shape, latent_dim=2, likelihood="cbernoulli", hidden=(16,))
    result = fit(vae.model, vae.guide, data.train[:256], test=data.test, epochs=epochs, batch_size=64, lr=3e-3,
                 seed=seed, out=out, resume=resume, progress=False)
    return result, torch.cat([p.detach().reshape(-1) for p in vae.parameters()])


def training(parallel, out):
    """A digits VAE fitted for 3 epochs; the same fit stopped after 2 and resumed; a user's pair with a
    global latent.  Saves each fit's parameters, history and metrics."""
    from pairs.hierarchical import Hierarchical

    rank = parallel.rank
    whole, whole_params = _digits_fit(out / "whole", 3)
    _digits_fit(out / "stopped", 2)
    resumed, resumed_params = _digits_fit(out / "stopped", 3, resume=True)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = torch.randn(120, 4, generator=torch.Generator().manual_seed(2)) + 1.0
    user = Hierarchical(4)
    hierarchical = fit(user.model, user.guide, data, test=data, epochs=3, batch_size=40, lr=1e-2, progress=False)
    user_params = torch.cat([value.detach().reshape(-1) for _, value in sorted(pyro.get_param_store().items())])
    torch.save({"whole": (whole.history, whole.metrics, whole_params),
                "resumed": (resumed.history, resumed.metrics, resumed_params),
                "hierarchical": (hierarchical.metrics, user_params)}, out / f"training-{rank}.pt")


JOBS = {"gradients": gradients, "training": training}


def run(rank, world_size, init_file, job, out):
    """Entry point of one spawned process: join the group, run ``job``, leave."""
    torch.set_num_threads(1)
    os.environ.pop("WORLD_SIZE", None)
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        JOBS[job](DataParallel.current(), Path(out))
    finally:
        torch_dist.destroy_process_group()
