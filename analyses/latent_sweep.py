r"""Enlarge the latent space until sparsity appears (Asperti 2019, Section 7, step 2).

For latent sizes d = 2, 4, ..., the same VAE is fitted and evaluated: active units (Burda's
:math:`\mathrm{Var}_x \mu_j > 0.01`), test ELBO and importance-sampled log-likelihood.  The seed's
methodology: past the data's useful dimension, extra latents collapse instead of being used, so the
active count levels off while the likelihood stops improving.  Headline: the first d at which some
latents are inactive, and the active count at the largest d.  The fits run in parallel
(:mod:`pyro_vae.sweep`; ``executor``, ``workers``) and a stopped sweep resumes where it stopped.
"""

from pyro_vae.inference.weights import shown
from pyro_vae.inference import importance_log_weights, log_likelihood
from pyro_vae.sweep import run_sweep

from . import Study
from .common import begin, finish, fit_catalogue_vae, held_out_summary, shared_description
from .options import study_presets

NAME = "latent-sweep"
STUDY = Study("active units, ELBO and IS log-likelihood against the latent size (Asperti 2019, Sec. 7)",
              quick_minutes=0.3, full_minutes=4)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", latent_dims=(2, 16), hidden=(256, 64), likelihood="bernoulli", epochs=100, batch_size=64,
               lr=3e-3, importance_samples=50, seed=0, executor="local", workers=None),
    full=dict(data="mnist", latent_dims=(2, 4, 8, 16, 32, 64), hidden=(256, 64), likelihood="bernoulli", epochs=60,
              batch_size=128, lr=1e-3, importance_samples=1000, seed=0, executor="local", workers=None),
)


def fit_latent_size(run_dir, data, latent_dim, preset, dynamic_binarization):
    """One fit of the sweep (run in a worker): fit at ``latent_dim`` and evaluate on the test split."""
    vae, _ = fit_catalogue_vae(data["train"], preset, latent_dim=latent_dim, objective="meanfield",
                               dynamic_binarization=dynamic_binarization)
    summary = held_out_summary(vae, data["test"])
    estimate = log_likelihood(importance_log_weights(vae.model, vae.guide, data["test"], preset["importance_samples"],
                                                     seed=preset["seed"]))
    return {"latent_dim": latent_dim, "model": vae.describe(),
            **{key: summary[key] for key in ("active_units", "test_elbo", "test_kl")},
            **shown(estimate, "test_log_likelihood"), "test_log_likelihood_mc_se": estimate["log_likelihood_mc_se"]}


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, data = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    tasks = {f"latent_dim={d}": dict(data={"train": data.train, "test": data.test}, latent_dim=d, preset=preset,
                                     dynamic_binarization=data.binarize == "dynamic") for d in preset["latent_dims"]}
    rows = list(run_sweep(fit_latent_size, tasks, out / "fits", executor=preset["executor"], workers=preset["workers"],
                          progress=progress).values())
    models = [row.pop("model") for row in rows]
    sparse = [r["latent_dim"] for r in rows if r["active_units"] < r["latent_dim"]]
    headline = {"first_latent_dim_with_inactive_latents": sparse[0] if sparse else None,
                "active_units_at_largest_latent_dim": rows[-1]["active_units"],
                "by_latent_dim": rows}
    _plot(rows, out / "figures" / "latent_sweep.png", preset, shared_description(models, "along the x-axis"))
    return finish(out, rows, headline, started)


def _plot(rows, path, preset, model):
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    dims = [r["latent_dim"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(dims, [r["active_units"] for r in rows], marker="o", label="active latents")
    left.plot(dims, dims, linestyle=":", color="grey", label="all latents")
    left.set_xscale("log", base=2)
    left.set_xlabel("latent size d")
    left.set_ylabel("latents")
    left.legend(fontsize=8)
    right.plot(dims, [r["test_elbo"] for r in rows], marker="o", label="ELBO")
    right.plot(dims, [r["test_log_likelihood"] for r in rows], marker="s", label=f"IS log p(x), K={preset['importance_samples']}")
    right.set_xscale("log", base=2)
    right.set_xlabel("latent size d")
    right.set_ylabel("nats per test point")
    right.legend(fontsize=8)
    fig.suptitle(f"Latent size sweep on {preset['data']} (Asperti 2019, Sec. 7)\n{model}", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
