"""Training samples per second of a data-parallel ``fit`` with 1 and 2 processes, and their ratio.

The dense 784-400-20 Bernoulli VAE at a global batch of 128 on the MNIST files (``--data digits``: the
8x8 digits, with ``--hidden 400``), meanfield objective, Adam at 1e-3.  Three fits from the same seed,
in one invocation: one process with one torch thread (the baseline), one process with
``--threads`` threads (what a single process does with the whole machine), and P processes of one
thread each in a gloo group (:mod:`pyro_vae.inference.distributed`), spawned as ``torchrun`` would.
Samples per second count the epochs after the first (warm-up), from the fits' own timings.

    python benchmarks/bench_data_parallel.py --data-dir ../shared/data [--epochs 4] [--processes 2] [--device cuda]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from pyro_vae.data import load_data  # noqa: E402
from pyro_vae.inference import fit  # noqa: E402
from pyro_vae.models import VAE  # noqa: E402


def one_fit(args, device):
    """Samples per second of the epochs after the first, and the final test ELBO."""
    data = load_data(args.data, args.data_dir, binarize="dynamic")
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = VAE(data.event_shape, latent_dim=20, likelihood="bernoulli", hidden=(400,))
    result = fit(vae.model, vae.guide, data.train, test=data.test, objective="meanfield", epochs=args.epochs, batch_size=128,
                 lr=1e-3, device=device, dynamic_binarization=True, progress=False, seed=0)
    seconds = result.history[-1]["seconds"] - result.history[0]["seconds"]
    return (args.epochs - 1) * len(data.train) / seconds, result.metrics["test_elbo"]


def _process(rank, args, init_file, out):
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=args.processes)
    try:
        rate, elbo = one_fit(args, device)
        if rank == 0:
            Path(out).write_text(f"{rate} {elbo}")
    finally:
        dist.destroy_process_group()


def data_parallel(args):
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "rate"
        mp.start_processes(_process, args=(args, str(Path(scratch) / "init"), str(out)), nprocs=args.processes,
                           start_method="spawn")
        rate, elbo = out.read_text().split()
    return float(rate), float(elbo)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_DATA_DIR", "../shared/data"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per process)")
    args = parser.parse_args()
    if args.device == "cuda" and torch.cuda.device_count() < args.processes:
        sys.exit(f"--device cuda with {args.processes} processes needs {args.processes} GPUs; {torch.cuda.device_count()} here")

    torch.set_num_threads(1)
    baseline, baseline_elbo = one_fit(args, torch.device(args.device))
    torch.set_num_threads(args.threads)
    threaded, threaded_elbo = one_fit(args, torch.device(args.device))
    parallel, parallel_elbo = data_parallel(args)
    print(f"{args.data}, 784-400-20 meanfield VAE, global batch 128, {args.epochs} epochs (first not timed), device {args.device}")
    print(f"{'run':<34}{'samples/s':>10}{'ratio':>8}{'test ELBO':>11}")
    for name, rate, elbo in (("1 process, 1 thread (baseline)", baseline, baseline_elbo),
                             (f"1 process, {args.threads} threads", threaded, threaded_elbo),
                             (f"{args.processes} processes, 1 thread each", parallel, parallel_elbo)):
        print(f"{name:<34}{rate:>10.0f}{rate / baseline:>8.2f}{elbo:>11.2f}")


if __name__ == "__main__":
    main()
