"""Cost of a K-particle IWAE step against a one-particle ELBO step, K = 1, 5, 50.

The dense 784-400-20 Bernoulli VAE on a batch of 128 MNIST test images: one optimisation step
(loss, backward) of ``iwae`` and ``iwae-dreg`` with K vectorised particles, against ``elbo`` with one
particle, alternating in the same process. K particles cost K decoder passes of the batch, so a
ratio well under K shows that the particles are batched rather than looped.

    python benchmarks/bench_iwae_particles.py --data-dir ../shared/data [--steps 30] [--repeats 3]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

from pyro_vae.data import load_data  # noqa: E402
from pyro_vae.inference import make_objective  # noqa: E402
from pyro_vae.models import VAE  # noqa: E402


def seconds_per_step(objective, vae, x, steps):
    objective.differentiable_loss(vae.model, vae.guide, x).backward()  # warm-up, plate nesting
    started = time.perf_counter()
    for _ in range(steps):
        vae.zero_grad(set_to_none=True)
        objective.differentiable_loss(vae.model, vae.guide, x).backward()
    return (time.perf_counter() - started) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_DATA_DIR", "../shared/data"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    x = load_data("mnist", args.data_dir, binarize="static").test[: args.batch_size].to(device)
    pyro.set_rng_seed(0)
    vae = VAE(x.shape[1:], latent_dim=20, likelihood="bernoulli", hidden=(400,)).to(device)
    cases = [("elbo", 1)] + [(name, k) for k in (1, 5, 50) for name in ("iwae", "iwae-dreg")]
    objectives = {case: make_objective(*case) for case in cases}
    times = {case: [] for case in cases}
    for _ in range(args.repeats):  # alternate the cases so drifts of the machine hit all alike
        for case in cases:
            times[case].append(seconds_per_step(objectives[case], vae, x, args.steps))
    base = statistics.median(times["elbo", 1])
    print(f"device {device}, batch {args.batch_size}, torch threads {torch.get_num_threads()}; "
          f"elbo (K=1) step {base * 1e3:.2f} ms")
    print(f"{'objective':<10} {'K':>3} {'ms/step':>9} {'ratio to elbo':>14} {'ratio / K':>10}")
    for name, k in cases[1:]:
        seconds = statistics.median(times[name, k])
        print(f"{name:<10} {k:>3} {seconds * 1e3:>9.2f} {seconds / base:>14.2f} {seconds / base / k:>10.2f}")


if __name__ == "__main__":
    main()
