r"""The moment law of the KL term, and the smallest beta that keeps it (Asperti 2019, Section 4).

When the KL term works, the aggregate posterior :math:`q(z) = E_x q(z \mid x)` matches the prior's
first two moments, so for every latent j

.. math:: E_x \mu_j(x) \approx 0, \qquad \mathrm{Var}_x \mu_j(x) + E_x \sigma_j^2(x) \approx 1

(law of total variance; exact when :math:`q(z) = p(z)`).  The seed proposes choosing the smallest
KL weight beta for which these hold.  For a grid of beta this study reports, per beta, the largest
deviation of the moment sum from 1 and of the mean from 0 over the *active* latents (collapsed ones
satisfy the law trivially, their posterior being the prior), and picks the smallest beta whose
deviations stay within ``tolerance``.  By default the tolerance is three standard errors of a
variance estimated from the n test points, :math:`3 \sqrt{2 / n}` (0.32 for the 179 test digits,
0.13 for 1,000 MNIST test images): a deviation below it cannot be told from sampling noise.
The fits run in parallel (:mod:`pyro_vae.sweep`; ``executor``, ``workers``) and resume.
"""

import math

from pyro_vae.sweep import run_sweep

from . import Study
from .common import begin, finish, fit_catalogue_vae, held_out_summary, shared_description
from .options import study_presets

NAME = "kl-law"
STUDY = Study("Var(mu) + E[sigma^2] ~ 1 and mean(mu) ~ 0 across beta; the smallest beta that keeps them (Asperti "
              "2019, Sec. 4)",
              quick_minutes=0.3, full_minutes=4)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", latent_dim=4, hidden=(64,), likelihood="bernoulli", betas=(0.05, 1.0), epochs=40,
               batch_size=64, lr=3e-3, tolerance=None, seed=0, executor="local", workers=None),
    full=dict(data="mnist", latent_dim=16, hidden=(256, 64, 32), likelihood="bernoulli",
              betas=(0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 2.0), epochs=60, batch_size=128, lr=1e-3, tolerance=None, seed=0,
              executor="local", workers=None),
)
LATENT_COLUMNS = ("active", "var_mu", "mean_sigma2", "moment_sum", "mean_mu")


def fit_beta(run_dir, data, beta, preset, dynamic_binarization):
    """One fit of the sweep (run in a worker): fit at KL weight ``beta``; the moments on the test split."""
    vae, _ = fit_catalogue_vae(data["train"], preset, objective="meanfield", beta=beta,
                               dynamic_binarization=dynamic_binarization)
    summary = held_out_summary(vae, data["test"])
    return {"beta": beta, "test_elbo": summary["test_elbo"], "model": vae.describe(),
            **{key: summary[key] for key in LATENT_COLUMNS}}


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, data = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    if preset["tolerance"] is None:
        preset["tolerance"] = 3 * math.sqrt(2 / len(data.test))
    tasks = {f"beta={beta:g}": dict(data={"train": data.train, "test": data.test}, beta=beta, preset=preset,
                                    dynamic_binarization=data.binarize == "dynamic") for beta in sorted(preset["betas"])}
    fits = run_sweep(fit_beta, tasks, out / "fits", executor=preset["executor"], workers=preset["workers"],
                     progress=progress).values()
    rows, by_beta = [], []
    for stats in fits:
        active = [j for j, a in enumerate(stats["active"]) if a]
        by_beta.append({"beta": stats["beta"], "active_units": len(active),
                        "max_sum_deviation": max((abs(stats["moment_sum"][j] - 1) for j in active), default=0.0),
                        "max_mean_deviation": max((abs(stats["mean_mu"][j]) for j in active), default=0.0),
                        "test_elbo": stats["test_elbo"]})
        rows += [{"beta": stats["beta"], "latent": j, **{key: stats[key][j] for key in LATENT_COLUMNS}}
                 for j in range(preset["latent_dim"])]
    holding = [b for b in by_beta if b["active_units"] > 0 and b["max_sum_deviation"] <= preset["tolerance"]
               and b["max_mean_deviation"] <= preset["tolerance"]]
    headline = {
        "smallest_beta_keeping_the_law": holding[0]["beta"] if holding else None,
        "tolerance": preset["tolerance"],
        "by_beta": by_beta,
    }
    _plot(rows, out / "figures" / "moment_law.png", preset, shared_description([f["model"] for f in fits], "by beta"))
    return finish(out, rows, headline, started)


def _plot(rows, path, preset, model):
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for active, colour, label in ((True, "#1f77b4", "active latents"), (False, "#999999", "collapsed latents")):
        chosen = [r for r in rows if r["active"] == active]
        ax.scatter([r["beta"] for r in chosen], [r["moment_sum"] for r in chosen], color=colour, s=18, label=label)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.axhspan(1 - preset["tolerance"], 1 + preset["tolerance"], color="green", alpha=0.08,
               label=f"1 +- {preset['tolerance']:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("beta (KL weight)")
    ax.set_ylabel("Var_x(mu_j) + E_x[sigma_j^2]")
    ax.set_title(f"{model}\nthe moment law of the KL term across beta (Asperti 2019, Sec. 4)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
