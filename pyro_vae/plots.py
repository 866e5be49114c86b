"""Figures of a run, drawn with matplotlib/seaborn (imported here only, with the Agg backend)."""

from pathlib import Path

import torch


def _pyplot():
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
    canvas = torch.full((channels, rows * (height + 1) - 1, columns * (width + 1) - 1), float("nan"))
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[:, r * (height + 1) : r * (height + 1) + height, c * (width + 1) : c * (width + 1) + width] = image
    return canvas[0].numpy() if channels == 1 else canvas.permute(1, 2, 0).clamp(0, 1).numpy()


def image_panels(panels, path, title=None, columns=10):
    """Save a figure with one row of tiled images per entry of ``panels`` ({label: (n, C, H, W)}).

    Grey panels share the colour scale of the first panel (the data), so a reader compares like with
    like; values outside it saturate.
    """
    plt = _pyplot()
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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


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
