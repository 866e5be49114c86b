"""Fits per minute of one sweep (:func:`pyro_vae.sweep.run_sweep`) on local worker processes and on Ray, and their ratio.

The fits are the kl-law study's (``pyro_vae.analyses.kl_law``): the catalogue Bernoulli VAE of the quick
preset (8x8 digits, 64-4 network, batch 64, Adam at 3e-3), one fit per KL weight beta, meanfield objective,
then the latent moments and the ELBO on the test digits.  The same ``--fits`` fits run on the ``local``
executor with ``--workers`` processes (the baseline) and on a local Ray of ``--workers`` CPUs, alternating
``--repeats`` times, each time into fresh directories; every fit runs on one torch thread in both.  A sweep's
time includes starting its workers (the local pool's processes, Ray's worker processes, each importing torch),
as a study pays it; starting Ray itself (``ray.init``, once, before the first sweep on Ray) is timed apart, as
a cluster would already run.  Prints fits per minute of each, the median of the per-repeat ratios ray/local,
and whether both executors gave the same results (they should, to float round-off: same seeds, one thread).

    python benchmarks/bench_sweep_executors.py [--fits 8] [--epochs 60] [--workers 2] [--repeats 2] [--quick] [--device cuda]
"""

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pyro_vae.analyses import kl_law  # noqa: E402
from pyro_vae.analyses.common import fit_catalogue_vae, held_out_summary  # noqa: E402
from pyro_vae.data import load_data  # noqa: E402
from pyro_vae.sweep import run_sweep  # noqa: E402


def one_fit(run_dir, data, beta, preset, device):
    """kl-law's ``fit_beta`` on ``device``: the fit at KL weight ``beta``, then its test summary."""
    vae, _ = fit_catalogue_vae(data["train"], preset, objective="meanfield", beta=beta, dynamic_binarization=True,
                               device=device)
    summary = held_out_summary(vae, data["test"].to(device))
    return {"beta": beta, "test_elbo": summary["test_elbo"],
            **{key: summary[key] for key in kl_law.LATENT_COLUMNS}}


def _numbers(value):
    """The numbers of a result, flattened in a fixed order."""
    if isinstance(value, dict):
        return [n for key in sorted(value) for n in _numbers(value[key])]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _numbers(v)]
    return [float(value)] if isinstance(value, (bool, int, float)) else []


def largest_difference(ours, theirs):
    """The largest relative difference between two sweeps' results (``inf`` if they differ in shape)."""
    if ours.keys() != theirs.keys():
        return math.inf
    worst = 0.0
    for key in ours:
        a, b = _numbers(ours[key]), _numbers(theirs[key])
        if len(a) != len(b):
            return math.inf
        for x, y in zip(a, b):
            if x != y:
                worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-12))
    return worst


def timed_sweep(tasks, out, executor, workers):
    started = time.perf_counter()
    results = run_sweep(one_fit, tasks, out, executor=executor, workers=workers, progress=False)
    return time.perf_counter() - started, results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fits", type=int, default=8, help="fits in the sweep (KL weights from 0.05 to 2)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2, help="local worker processes, and Ray's CPUs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="4 fits of 10 epochs, one repeat (a smoke run)")
    parser.add_argument("--data-dir", default=os.environ.get("PYRO_VAE_DATA_DIR", "../shared/data"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.quick:
        args.fits, args.epochs, args.repeats = 4, 10, 1

    import ray

    preset = {**kl_law.PRESETS["quick"], "epochs": args.epochs}
    data = load_data(preset["data"], args.data_dir, binarize="dynamic")
    betas = [round(0.05 * (2 / 0.05) ** (i / max(args.fits - 1, 1)), 4) for i in range(args.fits)]
    tasks = {f"beta={beta:g}": dict(data={"train": data.train, "test": data.test}, beta=beta, preset=preset,
                                    device=args.device) for beta in betas}
    load_before = os.getloadavg()
    started = time.perf_counter()
    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ray_start = time.perf_counter() - started
    seconds = {"local": [], "ray": []}
    difference = 0.0
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for repeat in range(args.repeats):
                order = ("local", "ray") if repeat % 2 == 0 else ("ray", "local")
                results = {}
                for executor in order:
                    took, results[executor] = timed_sweep(tasks, Path(scratch) / f"{executor}{repeat}", executor,
                                                          args.workers)
                    seconds[executor].append(took)
                difference = max(difference, largest_difference(results["ray"], results["local"]))
    finally:
        ray.shutdown()
    load_after = os.getloadavg()

    rate = {executor: [60 * args.fits / s for s in times] for executor, times in seconds.items()}
    ratios = [r / l for r, l in zip(rate["ray"], rate["local"])]
    print(f"{args.fits} kl-law fits (digits, 64-4 Bernoulli VAE, {args.epochs} epochs, batch 64), {args.workers} workers, "
          f"device {args.device}, {args.repeats} repeat(s); load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    print(f"ray.init (local, {args.workers} CPUs, not in the sweeps' times): {ray_start:.1f} s")
    print(f"{'executor':<32}{'seconds':>10}{'fits/min':>10}")
    for executor, name in (("local", f"local, {args.workers} processes (baseline)"), ("ray", f"ray, {args.workers} CPUs")):
        print(f"{name:<32}{statistics.median(seconds[executor]):>10.1f}{statistics.median(rate[executor]):>10.1f}"
              f"   per repeat: {', '.join(f'{r:.1f}' for r in rate[executor])}")
    print(f"ratio ray/local (fits per minute): {statistics.median(ratios):.2f}   per repeat: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}")
    same = difference <= 1e-6
    print(f"same results on both executors: {'yes' if same else 'NO'} (largest relative difference {difference:.1e})")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
