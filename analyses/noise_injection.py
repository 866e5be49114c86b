r"""Collapse a latent on purpose by noise, then remove the noise (Asperti 2019, Section 5, Fig. 7).

Asperti's account of collapse: a latent :math:`z_j` stays active while its *reconstruction gain*
(how much worse :math:`-\log p(x \mid z)` gets with :math:`z_j` at the prior's location, see
:func:`~pyro_vae.inference.evaluate.reconstruction_gain`) exceeds its KL term; when the gain falls
below the KL, the optimiser prefers to switch the latent off.  The experiment:

1. fit a VAE; pick, among the clearly active latents (:math:`\mathrm{Var}_x \mu_j > 0.1` and gain above
   KL), the one with the smallest KL (the most fragile one);
2. *growing*: keep training while Gaussian noise of a growing scale s is added to :math:`z_j` where the
   decoder reads it (a forward pre-hook on the decoder, training steps only), so the decoder can use
   :math:`z_j` less and less; s grows by ``noise_factor`` every ``epochs_per_level`` epochs until the
   gain of j falls below its KL;
3. *holding*: keep that noise for ``hold`` epochs and watch j collapse
   (:math:`\mathrm{Var}_x \mu_j \le 0.01`); the experiment runs once per ``hold`` in ``hold_epochs``,
   each from the same first fit, since whether the collapse reverses can depend on how long it lasted;
4. *removed*: take the noise away and train ``revival_epochs`` more, measuring whether and when j
   becomes clearly active again (:math:`\mathrm{Var}_x \mu_j > 0.1` and gain above KL; the seed
   claims the collapse is reversible).

After every epoch, on ``track_points`` validation points, without noise: the gain, the KL, the
variance of the means and the mean posterior variance of j, and the number of active latents
(the others, inactive at the start, should stay inactive).
"""

import copy
import math

import torch

from pyro_vae.errors import ConfigError
from pyro_vae.inference import fit, latent_statistics, reconstruction_gain

from . import Study
from .common import begin, finish, fit_catalogue_vae
from .options import study_presets

NAME = "noise-injection"
STUDY = Study("noise on one active latent until its gain falls below its KL, collapse, then revival (Asperti 2019, "
              "Sec. 5)",
              quick_minutes=0.8, full_minutes=4)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", latent_dim=8, hidden=(256, 64), likelihood="bernoulli", epochs=40, batch_size=64,
               lr=2e-3, first_noise=0.25, noise_factor=2.0, epochs_per_level=2, max_levels=8, hold_epochs=(6, 12),
               revival_epochs=25, track_points=300, seed=0),
    full=dict(data="mnist", latent_dim=16, hidden=(256, 64, 32), likelihood="bernoulli", epochs=60, batch_size=128,
              lr=1e-3, first_noise=0.25, noise_factor=2.0, epochs_per_level=3, max_levels=8, hold_epochs=(5, 20),
              revival_epochs=30, track_points=1000, seed=0),
)
ACTIVE = 0.01


class Schedule:
    """The phases of the experiment, advanced after each epoch from the latent's measured numbers."""

    def __init__(self, preset, hold):
        self.preset, self.hold, self.phase, self.level, self.epochs_in_phase = preset, hold, "growing", 0, 0
        self.noise = preset["first_noise"]
        self.crossing_noise = None

    def after_epoch(self, gain, kl):
        self.epochs_in_phase += 1
        p = self.preset
        if self.phase == "growing":
            if gain < kl:
                self.phase, self.epochs_in_phase, self.crossing_noise = "holding", 0, self.noise
            elif self.epochs_in_phase % p["epochs_per_level"] == 0:
                self.level += 1
                if self.level >= p["max_levels"]:
                    self.phase, self.epochs_in_phase = "holding", 0  # the largest noise, without a crossing
                else:
                    self.noise *= p["noise_factor"]
        elif self.phase == "holding" and self.epochs_in_phase >= self.hold:
            self.phase, self.epochs_in_phase, self.noise = "removed", 0, 0.0

    @property
    def epochs(self):
        """The longest the phases can take; training stops ``revival_epochs`` after the noise is removed."""
        p = self.preset
        return p["epochs_per_level"] * p["max_levels"] + self.hold + p["revival_epochs"] + 1


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, data = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    options = dict(objective="meanfield", batch_size=preset["batch_size"], lr=preset["lr"], seed=preset["seed"],
                   dynamic_binarization=data.binarize == "dynamic", progress=progress)
    vae, _ = fit_catalogue_vae(data.train, preset, **options)
    start = _measure(vae, data.val[: preset["track_points"]])
    candidates = [j for j in range(preset["latent_dim"]) if start["var_mu"][j] > 0.1 and start["gain"][j] > start["kl"][j]]
    if not candidates:
        raise ConfigError("no latent is clearly active after the first fit (Var mu > 0.1 and gain > KL); "
                          "fit longer (--epochs) or choose a larger latent size")
    latent = min(candidates, key=lambda j: start["kl"][j])
    inactive_at_start = [j for j in range(preset["latent_dim"]) if start["var_mu"][j] <= ACTIVE]

    first_fit = copy.deepcopy(vae.state_dict())
    rows, headline = [], {"latent": latent}
    for hold in preset["hold_epochs"]:
        vae.load_state_dict(first_fit)
        schedule = Schedule(preset, hold)
        trajectory = _inject(vae, data, latent, schedule, start, inactive_at_start, options, preset)
        rows += [{"hold_epochs": hold, **row} for row in trajectory]
        headline[f"hold {hold} epochs"] = _headline(trajectory, schedule)
    _plot(rows, latent, out / "figures" / "noise_injection.png", vae.describe())
    return finish(out, rows, headline, started)


def _inject(vae, data, latent, schedule, start, inactive_at_start, options, preset):
    """Run the growing / holding / removed phases from the current parameters; one row per epoch."""
    tracked = data.val[: preset["track_points"]]
    steps_per_epoch = math.ceil(len(data.train) / preset["batch_size"])
    rows = [_row(0, "start", 0.0, start, latent, inactive_at_start)]

    def add_noise(module, inputs):
        if module.training and schedule.noise > 0:
            z = inputs[0].clone()
            z[..., latent] = z[..., latent] + schedule.noise * torch.randn_like(z[..., latent])
            return (z,)
        return None

    def after_step(step):
        if step % steps_per_epoch == 0:
            numbers = _measure(vae, tracked)
            rows.append(_row(step // steps_per_epoch, schedule.phase, schedule.noise, numbers, latent, inactive_at_start))
            schedule.after_epoch(numbers["gain"][latent], numbers["kl"][latent])
            vae.train()
            return schedule.phase == "removed" and schedule.epochs_in_phase >= preset["revival_epochs"]
        return False

    hook = vae.decoder.register_forward_pre_hook(add_noise)
    try:
        fit(vae.model, vae.guide, data.train, epochs=schedule.epochs, callback=after_step, **options)
    finally:
        hook.remove()
    return rows


def _measure(vae, x):
    vae.eval()
    stats = latent_statistics(vae.model, vae.guide, x)
    return {"gain": reconstruction_gain(vae.model, vae.guide, x)["gain"], "kl": stats["kl"], "var_mu": stats["var_mu"],
            "mean_sigma2": stats["mean_sigma2"], "active_units": stats["active_units"]}


def _row(epoch, phase, noise, numbers, latent, inactive_at_start):
    return {"epoch": epoch, "phase": phase, "noise_scale": noise, "gain": numbers["gain"][latent], "kl": numbers["kl"][latent],
            "var_mu": numbers["var_mu"][latent], "mean_sigma2": numbers["mean_sigma2"][latent],
            "active_units": numbers["active_units"],
            "revived_others": sum(numbers["var_mu"][j] > ACTIVE for j in inactive_at_start)}


def _headline(rows, schedule):
    """Collapse by Burda's threshold (Var mu <= 0.01); revival, once the noise is gone: the latent is
    clearly active again by the bar used to choose it (Var mu > 0.1 *and* gain above KL).  Var mu alone
    lags: a latent whose gain is already ~0 keeps Var mu above 0.1 for epochs while it decays."""
    noisy = [r for r in rows if r["phase"] in ("growing", "holding")]
    removed = [r for r in rows if r["phase"] == "removed"]
    collapsed = [r["epoch"] for r in noisy + removed if r["var_mu"] <= ACTIVE]
    revived = [r["epoch"] for r in removed if r["var_mu"] > 0.1 and r["gain"] > r["kl"]]
    removal_epoch = removed[0]["epoch"] - 1 if removed else None
    return {
        "noise_scale_where_gain_fell_below_kl": schedule.crossing_noise,
        "var_mu_at_start": rows[0]["var_mu"], "min_var_mu_under_noise": min(r["var_mu"] for r in noisy),
        "kl_at_start": rows[0]["kl"], "min_kl_under_noise": min(r["kl"] for r in noisy),
        "collapsed": bool(collapsed), "first_collapsed_epoch": collapsed[0] if collapsed else None,
        "revived_after_noise_removed": bool(revived),
        "epochs_to_revive": revived[0] - removal_epoch if revived else None,
        "var_mu_at_end": rows[-1]["var_mu"],
        "largest_count_of_other_latents_activated": max(r["revived_others"] for r in rows),
    }


def _plot(rows, latent, path, model):
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    holds = sorted({r["hold_epochs"] for r in rows})
    fig, axes = plt.subplots(2, len(holds), figsize=(7 * len(holds), 6), sharex="col", squeeze=False)
    for column, hold in enumerate(holds):
        part = [r for r in rows if r["hold_epochs"] == hold]
        top, bottom = axes[0][column], axes[1][column]
        epochs = [r["epoch"] for r in part]
        top.plot(epochs, [r["gain"] for r in part], marker=".", label=f"reconstruction gain of z_{latent}")
        top.plot(epochs, [r["kl"] for r in part], marker=".", label=f"KL of z_{latent}")
        top.set_ylabel("nats per data point")
        top.set_title(f"noise held {hold} epochs")
        top.legend(fontsize=8)
        bottom.plot(epochs, [r["var_mu"] for r in part], marker=".", label="Var_x mu")
        bottom.plot(epochs, [r["mean_sigma2"] for r in part], marker=".", label="E_x sigma^2")
        bottom.plot(epochs, [r["noise_scale"] for r in part], linestyle=":", color="grey", label="noise scale")
        bottom.axhline(ACTIVE, color="black", linewidth=0.5)
        bottom.set_yscale("symlog", linthresh=0.01)
        bottom.set_ylim(bottom=0)
        bottom.set_xlabel("epoch after the first fit")
        bottom.legend(fontsize=8)
        for ax in (top, bottom):
            for phase, colour in (("holding", "tab:red"), ("removed", "tab:green")):
                marked = [r["epoch"] for r in part if r["phase"] == phase]
                if marked:
                    ax.axvspan(min(marked) - 0.5, max(marked) + 0.5, color=colour, alpha=0.08)
    fig.suptitle(f"{model}\nnoise on z_{latent}: growing (white), held (red), removed (green) (Asperti 2019, Sec. 5)",
                 fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
