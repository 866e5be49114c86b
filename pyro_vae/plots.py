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


def plot_latent_variances(stats, path, title=None):
    """Per-latent stacked bars of Var(mu_j) and E[sigma_j^2], active and collapsed apart (seed 000, Table 1).

    A dashed line marks 1, the variance of the aggregate posterior when the KL term works.
    """
    plt = pyplot()
    import numpy as np

    var_mu, mean_sigma2 = np.array(stats["var_mu"]), np.array(stats["mean_sigma2"])
    active = np.array(stats["active"])
    index = np.arange(len(var_mu))
    mu_name, sigma_name = ("mu", "sigma") if stats.get("moments") == "mean/sd" else ("location", "scale")
    fig, ax = plt.subplots(figsize=(max(7, 0.45 * len(var_mu) + 2), 4.5))
    colours = np.where(active, "#1f77b4", "#bbbbbb")
    ax.bar(index, var_mu, color=colours, label=f"Var_x({mu_name}_j)  (blue: active, grey: collapsed)")
    ax.bar(index, mean_sigma2, bottom=var_mu, color=colours, alpha=0.45, hatch="//", label=f"E_x[{sigma_name}_j^2]")
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="1 = prior variance")
    ax.set_xticks(index)
    ax.set_xlabel("latent coordinate j")
    ax.set_ylabel("variance")
    ax.set_title(title or f"{stats['active_units']} of {len(var_mu)} latents active (Var_x({mu_name}_j) > 0.01)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_khat(khat, path, title=None):
    """ArviZ's k-hat plot of PSIS per data point, with the 0.5 and 0.7 thresholds."""
    plt = pyplot()
    from ._arviz import arviz

    fig, ax = plt.subplots(figsize=(7, 3.5))
    arviz().plot_khat(khat, ax=ax, show_bins=False)
    for level in (0.5, 0.7):
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("test data point")
    ax.set_ylabel("PSIS k-hat")
    ax.set_title(title or f"PSIS k-hat: {(khat > 0.7).mean():.0%} of points above 0.7 (IS estimate unreliable there)")
    fig.tight_layout()
    return save_figure(fig, path)


@torch.no_grad()
def plot_generation_modes(vae, path, active, n=10, alpha=1.0):
    """The three generation modes of seed 003 on the same prior draws, and the decoder mean with the
    collapsed latents set to the prior location (seed 000, Fig. 3)."""
    z = vae.prior().sample((n,))
    zeroed = torch.where(torch.as_tensor(active, device=z.device), z, torch.zeros_like(z))
    panels = {
        "ancestral: z ~ p(z), x ~ p(x|z)  (Algorithm 6)": vae.generate(n, "ancestral", z=z),
        "deterministic: x = E[x|z]  (Algorithm 7)": vae.generate(n, "mean", z=z),
        f"x = E[x|z] + {alpha:g} sd[x|z]": vae.generate(n, "mean+scale", alpha=alpha, z=z),
        "E[x|z] with collapsed latents set to 0": vae.generate(n, "mean", z=zeroed),
    }
    return image_panels(panels, path, columns=n)


@torch.no_grad()
def plot_latent_traversals(vae, latents, path, steps=9, span=2.5):
    """Decoder mean along each listed latent from -span to +span (others at 0), one row per latent."""
    device = next(vae.parameters()).device
    values = torch.linspace(-span, span, steps, device=device)
    panels = {}
    for j in latents:
        z = torch.zeros(steps, vae.latent_dim, device=device)
        z[:, j] = values
        panels[f"latent {j}: z_{j} from {-span:g} to {span:g}"] = vae.generate(steps, "mean", z=z)
    return image_panels(panels, path, columns=steps)


def save_figure(fig, path):
    """Save ``fig`` as PNG at ``path`` (folders created) and close it."""
    plt = pyplot()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
