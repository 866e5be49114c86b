r"""Beta across a range, with two latents, on all digits and on a single digit (seed 003, Sec. 5.3, Fig. 5.17).

For each beta a VAE with d = 2 latents is fitted to the digits and to one digit class alone.  Reported
per fit: active units, test ELBO, the spread of the posterior means (total variance of
:math:`\mu(x)`), and the diversity of deterministic samples :math:`E[x \mid z]`, :math:`z \sim p(z)`
(mean distance between two samples, see :mod:`pyro_vae.analyses.sampling`).  The seed's claims: a large
beta collapses the posterior, so every sample is the "average digit" (diversity near 0); a small beta
spreads :math:`q(z)` widely and samples from the prior become noisy.  Figures: the latent means coloured
by class, and prior samples, per beta.  The largest beta of each preset is meant to reach full
collapse (no active latent), the regime the claim is about.  The fits run in parallel
(:mod:`pyro_vae.sweep`) and a stopped sweep resumes where it stopped.
"""

import pyro
import torch

from pyro_vae.data import load_data
from pyro_vae.inference import elbo_terms, fit, latent_statistics
from pyro_vae.models import VAE
from pyro_vae.rundir import atomic_write
from pyro_vae.sweep import run_sweep

from .common import choose_preset, finish, start
from .sampling import diversity

NAME = "beta-sweep"
SUMMARY = "latent spread, collapse and sample diversity across beta, on all digits and one digit (seed 003)"
PRESETS = {
    "quick": dict(data="digits", digit=3, betas=(0.1, 50.0), latent_dim=2, hidden=(128,), likelihood="cbernoulli",
                  epochs=40, batch_size=64, lr=3e-3, samples=200, seed=0, executor="local", workers=None),
    "full": dict(data="mnist", digit=3, betas=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0), latent_dim=2, hidden=(400,),
                 likelihood="cbernoulli", epochs=60, batch_size=128, lr=1e-3, samples=1000, seed=0, executor="local",
                 workers=None),
}
EXPECTED_MINUTES = {"quick": 0.5, "full": 25}


def fit_beta(run_dir, data, label, beta, preset):
    """One fit of the sweep (run in a worker); keeps the test codes and samples for the figures."""
    pyro.clear_param_store()
    pyro.set_rng_seed(preset["seed"])
    vae = VAE(data["train"].shape[1:], latent_dim=preset["latent_dim"], likelihood=preset["likelihood"], hidden=preset["hidden"])
    fit(vae.model, vae.guide, data["train"], objective="meanfield", beta=beta, epochs=preset["epochs"],
        batch_size=preset["batch_size"], lr=preset["lr"], seed=preset["seed"], progress=False)
    vae.eval()
    with torch.no_grad():
        codes = vae.posterior_location_scale(data["test"])[0]
        generated = vae.generate(preset["samples"], "mean")
    atomic_write(run_dir / "figure_data.pt", lambda tmp: torch.save({"codes": codes, "samples": generated[:10]}, tmp))
    return {
        "data": label, "beta": beta,
        "active_units": latent_statistics(vae.model, vae.guide, data["test"])["active_units"],
        "test_elbo": elbo_terms(vae.model, vae.guide, data["test"])["elbo"],
        "latent_spread": codes.var(0, unbiased=False).sum().item(),
        "sample_diversity": diversity(generated),
        "data_diversity": diversity(data["test"]),
    }


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset = choose_preset(PRESETS, quick, overrides)
    out, started = start(out, NAME, {"preset": "quick" if quick else "full", **preset, "data_dir": data_dir})
    sets = {"all digits": load_data(preset["data"], data_dir), f"digit {preset['digit']} only":
            load_data(preset["data"], data_dir, digit=preset["digit"])}
    tasks, labels = {}, {}
    for index, (label, data) in enumerate(sets.items()):
        for beta in preset["betas"]:
            key = f"{'all' if index == 0 else 'digit'},beta={beta:g}"
            tasks[key] = dict(data={"train": data.train, "test": data.test}, label=label, beta=beta, preset=preset)
            labels[key] = data.test_labels
    results = run_sweep(fit_beta, tasks, out / "fits", executor=preset["executor"], workers=preset["workers"],
                        progress=progress)
    rows, spreads, samples = list(results.values()), {}, {}
    for key, row in results.items():
        saved = torch.load(out / "fits" / key / "figure_data.pt")
        spreads[(row["data"], row["beta"])] = (saved["codes"], labels[key])
        samples[f"{row['data']}, beta={row['beta']:g}"] = saved["samples"]
    _plot_spreads(spreads, out / "figures" / "latent_spread.png")
    from pyro_vae.plots import image_panels

    image_panels(samples, out / "figures" / "samples.png", title="decoder means at prior draws, per beta")
    headline = {f"{r['data']}, beta={r['beta']:g}": {k: r[k] for k in ("active_units", "latent_spread", "sample_diversity")}
                for r in rows}
    return finish(out, rows, headline, started)


def _plot_spreads(spreads, path):
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    # shared axes: a collapsed posterior shows as a dot at the origin beside the spread ones
    fig, axes = plt.subplots(1, len(spreads), figsize=(3.2 * len(spreads), 3.4), squeeze=False, sharex=True, sharey=True)
    for ax, ((label, beta), (codes, labels)) in zip(axes[0], spreads.items()):
        ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=6)
        ax.set_title(f"{label}\nbeta={beta:g}", fontsize=9)
        ax.set_xlabel("mu_1")
        ax.set_ylabel("mu_2")
    fig.suptitle("Posterior means of the test data (colour: class)")
    fig.tight_layout()
    return save_figure(fig, path)
