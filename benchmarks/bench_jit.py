"""Pyro's JIT-compiled ELBO against the eager one, per optimisation step.

The dense 784-400-20 Bernoulli VAE (and a small 64-64-8 one, where Python overhead dominates) on
MNIST test images, batch 128: ``JitTraceMeanField_ELBO.loss_and_grads`` against
``TraceMeanField_ELBO.loss_and_grads``, alternating in the same process.  The networks' parameters
go through ``pyro.module`` so that the traced function takes them as inputs.

    python benchmarks/bench_jit.py --data-dir ../shared/data [--steps 50] [--repeats 3]
"""

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

from pyro_vae.data import load_data  # noqa: E402
from pyro_vae.models import VAE  # noqa: E402


def registered(vae):
    def model(x):
        pyro.module("vae", vae)
        vae.model(x)

    def guide(x):
        pyro.module("vae", vae)
        vae.guide(x)

    return model, guide


def seconds_per_step(elbo, model, guide, x, steps):
    elbo.loss_and_grads(model, guide, x)  # warm-up (and compilation)
    started = time.perf_counter()
    for _ in range(steps):
        elbo.loss_and_grads(model, guide, x)
    return (time.perf_counter() - started) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_DATA_DIR", "../shared/data"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated in torch 2.x

    x = load_data("mnist", args.data_dir, binarize="static").test[: args.batch_size]
    print(f"batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    for hidden, latent in (((400,), 20), ((64,), 8)):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        vae = VAE(x.shape[1:], latent_dim=latent, likelihood="bernoulli", hidden=hidden)
        model, guide = registered(vae)
        elbos = {"eager": pyro.infer.TraceMeanField_ELBO(), "jit": pyro.infer.JitTraceMeanField_ELBO(ignore_jit_warnings=True)}
        times = {name: [] for name in elbos}
        for _ in range(args.repeats):
            for name, elbo in elbos.items():
                times[name].append(seconds_per_step(elbo, model, guide, x, args.steps))
        eager, jit = statistics.median(times["eager"]), statistics.median(times["jit"])
        print(f"784-{hidden[0]}-{latent}: eager {eager * 1e3:.2f} ms/step, jit {jit * 1e3:.2f} ms/step, "
              f"ratio jit / eager {jit / eager:.2f}")


if __name__ == "__main__":
    main()
