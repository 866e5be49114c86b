"""Figures of a run, drawn with matplotlib/seaborn (imported here only, with the Agg backend)."""

from pathlib import Path

import torch


def pyplot():
    """matplotlib.pyplot on the Agg backend with seaborn's white theme (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="white", context="notebook")
    return plt


def _tile(images, columns):
    """``(n, C, H, W)`` -> one ``(rows*H, columns*W)`` grey or ``(.., 3)`` array, with 1-pixel gaps."""
    images = images.detach().float().cpu()
    n, channels, height, width = images.shape
    rows = -(-n // columns)
    canvas = torch.full((channels, rows * (height + 1) - 1, columns * (width + 1) - 1), float("nan"), device="cpu")
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[:, r * (height + 1) : r * (height + 1) + height, c * (width + 1) : c * (width + 1) + width] = image
    return canvas[0].numpy() if channels == 1 else canvas.permute(1, 2, 0).clamp(0, 1).numpy()


def image_panels(panels, path, title=None, columns=10):
    """Save a figure with one row of tiled images per entry of ``panels`` ({label: (n, C, H, W)}).

    Grey panels share the colour scale of the first panel (the data), so a reader compares like with
    like; values outside it saturate.
    """
    plt = pyplot()
    reference = next(iter(panels.values())).detach().float()
    vmin, vmax = float(reference.min()), float(reference.max())
    fig, axes = plt.subplots(len(panels), 1, figsize=(columns * 0.9, 1.1 * sum(-(-len(p) // columns) for p in panels.values()) + 0.6 * len(panels)), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], panels.items()):
        ax.imshow(_tile(images, columns), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(label, fontsize=10, loc="left")
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


@torch.no_grad()
def plot_reconstructions_and_samples(vae, x, path, n=10, title=None):
    """Originals and their reconstructions, and prior samples drawn ancestrally and by the mean.

    Needs an image model (``event_shape`` of length 3) with ``reconstruct`` and ``generate``.
    """
    was_training = vae.training
    vae.eval()
    try:
        x = x[:n]
        panels = {
            "data (test split)": x,
            "reconstruction E[x | z = loc q(z|x)]": vae.reconstruct(x),
            "samples, decoder mean (z ~ p(z), x = E[x|z])": vae.generate(n, mode="mean"),
            "samples, ancestral (z ~ p(z), x ~ p(x|z))": vae.generate(n, mode="ancestral"),
        }
    finally:
        vae.train(was_training)
    return image_panels(panels, path, title=title, columns=n)


def plot_latent_variances(stats, path, title=None, model=None):
    """Per-latent stacked bars of Var(mu_j) and E[sigma_j^2], active and collapsed apart (Asperti 2019, Table 1).

    A dashed line marks 1, the variance of the aggregate posterior when the KL term works.
    """
    plt = pyplot()
    import numpy as np

    var_mu, mean_sigma2 = np.array(stats["var_mu"]), np.array(stats["mean_sigma2"])
    active = np.array(stats["active"])
    index = np.arange(len(var_mu))
    mu_name, sigma_name = ("mu", "sigma") if "mean/sd" in stats.get("moments", "") else ("location", "scale")
    fig, ax = plt.subplots(figsize=(max(7, 0.45 * len(var_mu) + 2), 4.5))
    colours = np.where(active, "#1f77b4", "#bbbbbb")
    ax.bar(index, var_mu, color=colours, label=f"Var_x({mu_name}_j)  (blue: active, grey: collapsed)")
    ax.bar(index, mean_sigma2, bottom=var_mu, color=colours, alpha=0.45, hatch="//", label=f"E_x[{sigma_name}_j^2]")
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="1 = prior variance")
    ax.set_xticks(index)
    ax.set_xlabel("latent coordinate j")
    ax.set_ylabel("variance")
    ax.set_title(title or f"{model + chr(10) if model else ''}{stats['active_units']} of {len(var_mu)} latents active "
                 f"(Var_x({mu_name}_j) > 0.01 x prior variance)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_khat(khat, path, threshold, particles, model=None):
    """ArviZ's k-hat plot of PSIS per data point, with ArviZ's threshold for ``particles`` draws
    (:func:`~pyro_vae.inference.weights.khat_threshold`) drawn and counted in the title.

    The k-hats go to ArviZ as ``ELPDData`` (with the number of draws), the form it asks for."""
    plt = pyplot()
    import numpy as np
    from matplotlib.lines import Line2D

    from ._arviz import arviz, khat_elpd

    khat = np.asarray(khat, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.3))
    arviz().plot_khat(khat_elpd(khat, threshold, particles), ax=ax, show_bins=False, show_hlines=True)
    ax.set_xlabel("test data point")
    ax.set_ylabel("PSIS k-hat")
    # ArviZ draws its three reference lines without labels (at 0, good_k and 1, in its own styles): a legend for them
    references = [(":", "0"), ("-.", f"{threshold:.2f}: threshold for K = {particles} (above: unreliable)"),
                  ("--", "1: the weights' mean is infinite (no finite error)")]
    ax.legend([Line2D([], [], color="C1", linestyle=style, alpha=0.7) for style, _ in references],
              [label for _, label in references], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
              frameon=False)
    share = (khat > threshold).mean()
    ax.set_title(f"{model + chr(10) if model else ''}PSIS k-hat at K = {particles}: {share:.0%} of points above "
                 f"{threshold:.2f} (IS estimate unreliable there)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_calibration(result, path, model=None, most=12):
    """ArviZ's ECDF-difference plot of the calibration check's PIT values against U(0, 1), one panel per latent
    coordinate (the ``most`` with the smallest KS p-values, the rest named in the title), each with its
    simultaneous 95% band; :func:`~pyro_vae.inference.calibration.calibration`'s module doc says how to read it."""
    import warnings

    import numpy as np
    from scipy import stats

    from ._arviz import arviz

    plt, az = pyplot(), arviz()
    order = np.argsort(result["ks_pvalue"])[:most]
    columns = min(4, len(order))
    rows = -(-len(order) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows + 0.9), squeeze=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Assuming variable is continuous")  # it is: the PIT is randomised
        for ax, d in zip(axes.flat, order):
            az.plot_ecdf(result["pit"][:, d], cdf=stats.uniform().cdf, difference=True, confidence_bands=True,
                         ci_prob=0.95, eval_points=np.linspace(0, 1, 101), ax=ax)
            ax.set_title(f"{result['coordinates'][d]}: KS p = {result['ks_pvalue'][d]:.2g}\n50% interval covers "
                         f"{result['coverage_50'][d]:.2f}, 90% covers {result['coverage_90'][d]:.2f}", fontsize=8)
            ax.set_xlabel("PIT of the true latent under q(z|x)", fontsize=8)
    for ax in list(axes.flat)[len(order):]:
        ax.axis("off")
    shown = "" if len(order) == len(result["coordinates"]) else f" (the {len(order)} least uniform of {len(result['coordinates'])})"
    fig.suptitle(f"{model + chr(10) if model else ''}Calibration of q(z|x) on {result['simulations']} simulations{shown}: "
                 "ECDF minus uniform, 95% simultaneous band\ndown then up: q too wide; up then down: q too narrow; "
                 "a hump or a dip: q shifted",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_curve(history, path, model=None):
    """The objective being optimised and the validation ELBO against epochs (nats per data point).

    The y-range is set by the values' 2nd-98th percentiles (padded), so one early spike does not
    flatten the rest; points outside it are drawn at the edge, and the title says how many."""
    plt = pyplot()
    import numpy as np

    epochs = [row["epoch"] for row in history]
    series = {"train objective (beta-weighted)": [row.get("train_objective") for row in history],
              "validation ELBO": [row.get("val_elbo") for row in history]}
    series = {name: np.array([np.nan if v is None else v for v in values], dtype=float) for name, values in series.items()}
    series = {name: values for name, values in series.items() if np.isfinite(values).any()}
    fig, ax = plt.subplots(figsize=(7, 3.8))
    low, high = robust_range(np.concatenate(list(series.values())))
    clipped = 0
    for name, values in series.items():
        clipped += int(((values < low) | (values > high)).sum())
        ax.plot(epochs, np.clip(values, low, high), marker="o" if len(epochs) < 30 else None, markersize=3, label=name)
    if "validation ELBO" in series and len(history) and "val_elbo_mc_se" in history[-1]:
        se = np.array([row.get("val_elbo_mc_se", np.nan) for row in history], dtype=float)
        ax.fill_between(epochs, series["validation ELBO"] - 2 * se, series["validation ELBO"] + 2 * se, alpha=0.25,
                        label="validation ELBO +- 2 Monte Carlo SE")
    ax.set_ylim(low, high)
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("nats per data point")
    ax.legend(fontsize=8)
    note = f" ({clipped} {'value' if clipped == 1 else 'values'} off the scale, drawn at its edge)" if clipped else ""
    ax.set_title(f"{model + chr(10) if model else ''}training curve{note}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def robust_range(values, lower=2, upper=98, pad=0.1):
    """A y-range from the finite values' percentiles, padded by ``pad`` of its width: spikes stay off it."""
    import numpy as np

    finite = values[np.isfinite(values)]
    low, high = np.percentile(finite, [lower, upper]) if len(finite) else (0.0, 1.0)
    width = (high - low) or max(abs(high), 1.0)
    return low - pad * width, high + pad * width


@torch.no_grad()
def plot_generation_modes(vae, x, path, active, n=10, alpha=1.0, title=None):
    """Data, then the three generation modes of the VAE implementation thesis (ch. 5) on the same prior draws, and the decoder mean
    with the collapsed latents set to the prior location (Asperti 2019, Fig. 3); grey panels share the
    data's colour scale."""
    z = vae.prior().sample((n,))
    zeroed = torch.where(torch.as_tensor(active, device=z.device), z, torch.zeros_like(z))
    panels = {
        "data (test split)": x[:n],
        "ancestral: z ~ p(z), x ~ p(x|z)  (Algorithm 6)": vae.generate(n, "ancestral", z=z),
        "deterministic: x = E[x|z]  (Algorithm 7)": vae.generate(n, "mean", z=z),
        f"x = E[x|z] + {alpha:g} sd[x|z]": vae.generate(n, "mean+scale", alpha=alpha, z=z),
        "E[x|z] with collapsed latents set to 0": vae.generate(n, "mean", z=zeroed),
    }
    return image_panels(panels, path, title=title, columns=n)


@torch.no_grad()
def plot_latent_traversals(vae, latents, path, steps=9, span=2.5, title=None):
    """Decoder mean along each listed latent from -span to +span (others at 0), one row per latent."""
    device = next(vae.parameters()).device
    values = torch.linspace(-span, span, steps, device=device)
    panels = {}
    for j in latents:
        z = torch.zeros(steps, vae.latent_dim, device=device)
        z[:, j] = values
        panels[f"latent {j}: z_{j} from {-span:g} to {span:g}"] = vae.generate(steps, "mean", z=z)
    return image_panels(panels, path, title=title, columns=steps)


def save_figure(fig, path):
    """Save ``fig`` as PNG at ``path`` atomically (folders created) and close it."""
    from .files import atomic_write

    plt = pyplot()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
    return Path(path)
