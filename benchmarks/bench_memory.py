"""Peak resident memory (RSS) of ``pyro-vae fit`` on the MNIST files, against the bare interpreter.

Runs the fit in a child process and reads the child's peak RSS from the kernel
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``); the baseline is a child that only imports
torch and pyro-vae, measured the same way in the same invocation.  Target: below 1.5 GB.

    python benchmarks/bench_memory.py --data-dir ../shared/data [--epochs 2] [--objective iwae --particles 50]
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile


def peak_rss_mb(command):
    """Peak RSS (MB) of one child process running ``command`` (a fresh process each time)."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    output = subprocess.run([sys.executable, "-c", wrapper, *command], check=True, capture_output=True, text=True).stdout
    return int(output.split()[-1]) / 1024  # Linux reports kilobytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_DATA_DIR", "../shared/data"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--objective", default="meanfield")
    parser.add_argument("--particles", type=int, default=1)
    parser.add_argument("--hidden", default="400")
    args = parser.parse_args()

    baseline = peak_rss_mb([sys.executable, "-c", "import torch, pyro, pyro_vae.inference, pyro_vae.models"])
    with tempfile.TemporaryDirectory() as out:
        fit = peak_rss_mb([sys.executable, "-m", "pyro_vae", "fit", "--data", "mnist", "--data-dir", args.data_dir,
                           "--latent-dim", "20", "--hidden", args.hidden, "--objective", args.objective,
                           "--particles", str(args.particles), "--epochs", str(args.epochs), "--out", f"{out}/run",
                           "--no-progress"])
    print(f"peak RSS: import only {baseline:,.0f} MB; fit on MNIST ({args.objective}, K={args.particles}, "
          f"{args.epochs} epochs) {fit:,.0f} MB; fit - import {fit - baseline:,.0f} MB; "
          f"ratio {fit / baseline:.2f}   (target: fit below 1,500 MB)")


if __name__ == "__main__":
    main()
