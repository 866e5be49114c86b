"""Importance samples per second of the log-likelihood estimator against the decoder's raw forward pass.

The dense 784-400-20 Bernoulli VAE on the MNIST files: ``importance_log_weights`` with K particles
for N test images (encoder, K draws from q, decoder, three log-densities, log-sum-exp) against the
decoder alone on the same number of latent vectors in 20,000-row batches, in the same process.
Prints both throughputs and the median ratio of the paired repeats (target >= 0.8).

    python benchmarks/bench_loglik_throughput.py --data-dir ../shared/data [--particles 1000] [--points 200]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

from pyro_vae.data import load_data  # noqa: E402
from pyro_vae.inference.estimators import DEFAULT_MAX_MEMORY, importance_log_weights  # noqa: E402
from pyro_vae.models import VAE  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_DATA_DIR", "../shared/data"))
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--max-memory", type=int, default=DEFAULT_MAX_MEMORY)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    x = load_data("mnist", args.data_dir, binarize="static").test[: args.points].to(device)
    pyro.set_rng_seed(0)
    vae = VAE(x.shape[1:], latent_dim=20, likelihood="bernoulli", hidden=(400,)).to(device).eval()
    samples = args.points * args.particles

    def time_estimator():
        started = time.perf_counter()
        importance_log_weights(vae.model, vae.guide, x, particles=args.particles, max_memory=args.max_memory)
        estimator_seconds.append(time.perf_counter() - started)

    def time_decoder():
        z = torch.randn(samples, 20, device=device)
        started = time.perf_counter()
        for chunk in z.split(20_000):  # large batches: the decoder at its best throughput
            vae.decoder(chunk)
        decoder_seconds.append(time.perf_counter() - started)

    estimator_seconds, decoder_seconds = [], []
    with torch.no_grad():
        importance_log_weights(vae.model, vae.guide, x[:2], particles=2)  # warm-up
        for repeat in range(args.repeats):  # which of the pair goes first alternates
            for timer in (time_estimator, time_decoder) if repeat % 2 == 0 else (time_decoder, time_estimator):
                timer()

    estimator_rate = samples / statistics.median(estimator_seconds)
    decoder_rate = samples / statistics.median(decoder_seconds)
    # Each repeat times the two back to back; the ratio within a pair cancels the machine's drifts.
    ratios = sorted(d / e for d, e in zip(decoder_seconds, estimator_seconds))
    print(f"device {device}, N={args.points} test images x K={args.particles} particles = {samples} samples, "
          f"torch threads {torch.get_num_threads()}, {args.repeats} paired repeats")
    print(f"log-likelihood estimator: {estimator_rate:,.0f} importance samples/s")
    print(f"decoder forward only:     {decoder_rate:,.0f} latent vectors/s")
    print(f"ratio estimator / decoder: median {statistics.median(ratios):.3f} of the pairs "
          f"(range {ratios[0]:.3f}-{ratios[-1]:.3f})   (target >= 0.8)")


if __name__ == "__main__":
    main()
