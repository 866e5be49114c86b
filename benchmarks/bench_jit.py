"""Pyro's JIT-compiled ELBO against the eager one, per optimisation step.

The dense 784-400-20 Bernoulli VAE (and a small 64-64-8 one, where Python overhead dominates) on
MNIST test images, batch 128: ``JitTraceMeanField_ELBO.loss_and_grads`` against
``TraceMeanField_ELBO.loss_and_grads`` (and with ``--compile``, ``torch.compile`` around the eager
loss), alternating in the same process, validation off as ``fit`` trains.  The networks' parameters
go through ``pyro.module`` so that the traced function takes them as inputs.

    python benchmarks/bench_jit.py --data-dir ../shared/data [--steps 50] [--repeats 3] [--compile]
"""

import argparse
import logging
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


class CompiledLoss:
    """``torch.compile`` around the eager ELBO's ``differentiable_loss`` (Dynamo breaks the graph at
    Pyro's messages and ``.item()`` calls, so the compiled pieces are the tensor code between them)."""

    def __init__(self, elbo, model, guide):
        self.loss = torch.compile(lambda x: elbo.differentiable_loss(model, guide, x))

    def loss_and_grads(self, model, guide, x):
        loss = self.loss(x)
        loss.backward()
        return loss.item()


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
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (10-15 s to compile per net here)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated in torch 2.x
    pyro.enable_validation(False)  # as fit trains
    if args.compile:  # Dynamo explains each graph break at length; the timings are what matter here
        warnings.simplefilter("ignore", UserWarning)
        logging.getLogger("torch._dynamo").setLevel(logging.ERROR)

    x = load_data("mnist", args.data_dir, binarize="static").test[: args.batch_size]
    print(f"batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    for hidden, latent in (((400,), 20), ((64,), 8)):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        vae = VAE(x.shape[1:], latent_dim=latent, likelihood="bernoulli", hidden=hidden)
        model, guide = registered(vae)
        eager = pyro.infer.TraceMeanField_ELBO()
        elbos = {"eager": eager, "jit": pyro.infer.JitTraceMeanField_ELBO(ignore_jit_warnings=True)}
        if args.compile:
            elbos["compile"] = CompiledLoss(eager, model, guide)
            started = time.perf_counter()
            elbos["compile"].loss_and_grads(model, guide, x)
            print(f"784-{hidden[0]}-{latent}: torch.compile took {time.perf_counter() - started:.1f} s to compile")
        times = {name: [] for name in elbos}
        for _ in range(args.repeats):
            for name, elbo in elbos.items():
                times[name].append(seconds_per_step(elbo, model, guide, x, args.steps))
        medians = {name: statistics.median(seconds) for name, seconds in times.items()}
        print(f"784-{hidden[0]}-{latent}: " + ", ".join(f"{name} {t * 1e3:.2f} ms/step" for name, t in medians.items())
              + "; ratio to eager: " + ", ".join(f"{name} {medians[name] / medians['eager']:.2f}" for name in elbos if name != "eager"))


if __name__ == "__main__":
    main()
