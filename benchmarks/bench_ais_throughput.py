"""Decoder passes per second of annealed importance sampling against a plain-PyTorch loop doing the same passes.

AIS (``pyro_vae.inference.ais``) on the dense 784-400-20 Bernoulli VAE and N MNIST test images costs
about T x M x (L + 1) decoder forward+backward passes per point (each HMC move evaluates the gradient
L + 1 times; ten pilot moves set the step sizes).  The baseline, timed in the same process with paired,
alternating repeats, is a hand-written loop of exactly as many passes on batches of the same number of rows:
decoder forward, Bernoulli log-likelihood plus the standard-normal prior, backward to z.  Prints both rates
and the median ratio (aim >= 0.8), then the time the guides study's AIS subset would take at this rate.

    python benchmarks/bench_ais_throughput.py --data-dir ../shared/data [--steps 20] [--chains 32] [--points 83]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

from pyro_vae.data import load_data  # noqa: E402
from pyro_vae.inference.ais import PILOT_FACTORS, ais_log_weights  # noqa: E402
from pyro_vae.models import VAE  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_DATA_DIR", "../shared/data"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--points", type=int, default=83, help="one batch at the default --max-memory (128 MiB)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--study-points", type=int, default=200, help="the guides study's AIS subset, for the estimate")
    parser.add_argument("--study-steps", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    x = load_data("mnist", args.data_dir, binarize="static").test[: args.points].to(device)
    pyro.set_rng_seed(0)
    vae = VAE(x.shape[1:], latent_dim=20, likelihood="bernoulli", hidden=(400,)).to(device).eval()
    for parameter in vae.parameters():
        parameter.requires_grad_(False)  # both sides differentiate in z only
    moves = args.steps - 1 + len(PILOT_FACTORS)
    passes = moves * (args.leapfrog + 1)  # per (chain, point)
    rows = args.points * args.chains
    flat = x.reshape(len(x), -1)

    def time_ais():
        started = time.perf_counter()
        ais_log_weights(vae.model, vae.guide, x, steps=args.steps, chains=args.chains, leapfrog=args.leapfrog, seed=0)
        ais_seconds.append(time.perf_counter() - started)

    def time_baseline():
        z = torch.randn(args.chains, args.points, 20, device=device)
        started = time.perf_counter()
        for _ in range(passes):
            z = z.detach().requires_grad_()
            logits = vae.decoder(z)
            log_p = (-torch.nn.functional.binary_cross_entropy_with_logits(logits.reshape(rows, -1), flat.repeat(args.chains, 1),
                                                                        reduction="none").sum(-1) - 0.5 * (z**2).sum(-1).reshape(-1))
            (grad,) = torch.autograd.grad(log_p.sum(), z)
            z = z + 1e-3 * grad
        baseline_seconds.append(time.perf_counter() - started)

    ais_seconds, baseline_seconds = [], []
    ais_log_weights(vae.model, vae.guide, x[:2], steps=2, chains=2)  # warm-up
    for repeat in range(args.repeats):  # which of the pair goes first alternates
        for timer in (time_ais, time_baseline) if repeat % 2 == 0 else (time_baseline, time_ais):
            timer()
    total = passes * rows
    ratios = [b / a for a, b in zip(ais_seconds, baseline_seconds)]
    print(f"{args.points} points x {args.chains} chains, T = {args.steps}, {args.leapfrog} leapfrog steps: "
          f"{passes} decoder forward+backward passes per chain, {total:,} rows in all")
    print(f"AIS:      {total / statistics.median(ais_seconds):,.0f} row-passes/s (median of {args.repeats})")
    print(f"baseline: {total / statistics.median(baseline_seconds):,.0f} row-passes/s")
    print(f"ratio AIS / baseline: {statistics.median(ratios):.2f} (repeats {', '.join(f'{r:.2f}' for r in ratios)}; aim >= 0.8)")
    per_point = statistics.median(ais_seconds) / args.points / passes * (args.study_steps - 1 + len(PILOT_FACTORS)) * (args.leapfrog + 1)
    print(f"estimate for the guides study's subset ({args.study_points} points, T = {args.study_steps}, M = {args.chains}): "
          f"{per_point * args.study_points / 60:.1f} min per fitted pair on this machine")


if __name__ == "__main__":
    main()
