"""Cost of the VampPrior's log-density: diagonal-Normal components by matrix products against the broadcast sum.

The one-layer VAE of the guides study's full preset (784-200-200-50, Bernoulli) with a VampPrior of
``--components`` pseudo-inputs and the diagonal guide, on a batch of 100 MNIST test images: one
optimisation step (loss, backward) under ``elbo`` and ``iwae:5``.  ``priors._PointwiseMixture`` scores
diagonal-Normal components with two matrix products over the latent coordinates in float64; the
baseline, in the same process and alternating with it, is the broadcast ``(..., K, d)`` sum that any
other component family takes (``priors._diagonal_normal`` patched to decline).  Prints milliseconds per
step and the ratio baseline / matrix path, and the largest difference of the two losses (float round-off).

    python benchmarks/bench_vamp_prior.py --data-dir ../shared/data [--components 500] [--steps 10] [--repeats 3] [--device cuda]
"""

import argparse
import os
import statistics
import time
from unittest import mock

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

from pyro_vae import priors  # noqa: E402
from pyro_vae.data import load_data  # noqa: E402
from pyro_vae.inference import make_objective  # noqa: E402
from pyro_vae.models import VAE  # noqa: E402


def seconds_per_step(objective, vae, x, steps, broadcast):
    """Mean seconds of one loss-and-backward step, and the last loss; ``broadcast`` takes the baseline path."""
    with mock.patch.object(priors, "_diagonal_normal", lambda components: None) if broadcast else mock.MagicMock():
        objective.differentiable_loss(vae.model, vae.guide, x).backward()  # warm-up
        started = time.perf_counter()
        for _ in range(steps):
            vae.zero_grad(set_to_none=True)
            pyro.set_rng_seed(1)
            loss = objective.differentiable_loss(vae.model, vae.guide, x)
            loss.backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps, loss.item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_DATA_DIR", "../shared/data"))
    parser.add_argument("--components", type=int, default=500)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    x = load_data("mnist", args.data_dir, binarize="static").test[:100].to(device)
    pyro.set_rng_seed(0)
    vae = VAE(x.shape[1:], latent_dim=50, hidden=(200, 200), prior="vamp", prior_options={"components": args.components},
              likelihood="bernoulli").to(device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.components} components of 50 dimensions, batch 100")
    print(f"{'objective':<9} {'matrix ms':>10} {'broadcast ms':>13} {'ratio':>6} {'loss difference':>16}")
    for name, k in (("elbo", 1), ("iwae", 5)):
        objective = make_objective(name, k)
        times, differences = {False: [], True: []}, []
        for _ in range(args.repeats):  # alternate, so drifts of the machine hit both alike
            losses = {}
            for broadcast in (False, True):
                seconds, losses[broadcast] = seconds_per_step(objective, vae, x, args.steps, broadcast)
                times[broadcast].append(seconds)
            differences.append(abs(losses[False] - losses[True]))
        fast, slow = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name}:{k:<4} {fast * 1e3:>10.1f} {slow * 1e3:>13.1f} {slow / fast:>6.1f} {max(differences):>16.2e}")


if __name__ == "__main__":
    main()
