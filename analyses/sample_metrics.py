"""Numbers of a set of images (generated or real) that several studies report, each with its standard error.

* :func:`roughness`: mean squared difference of horizontally and vertically adjacent pixels
  (high-frequency energy; pixel noise raises it);
* :func:`diversity`: mean Euclidean distance between two different images (0 when every sample is the
  same "average digit");
* :func:`distance_to_data`: mean Euclidean distance from an image to its nearest reference image
  (how far samples fall from real ones).

Each returns ``(value, standard_error)``, the error over the ``n`` images, given the reference images:
``sd / sqrt(n)`` of the per-image numbers, and for :func:`diversity`, a U-statistic over pairs, twice
that of each image's mean distance to the others (Hoeffding's first-order term).
"""

import math

import torch

from pyro_vae.errors import ConfigError


def standard_error(values):
    """Standard error of the mean of the 1-D tensor ``values`` (sample sd over sqrt(n))."""
    if len(values) < 2:
        raise ConfigError(f"a standard error needs at least 2 images, got {len(values)}")
    return values.std().item() / math.sqrt(len(values))


def roughness(images):
    """Mean squared difference of adjacent pixels of ``images (n, C, H, W)``, and its standard error."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).pow(2)
    dy = (images[..., 1:, :] - images[..., :-1, :]).pow(2)
    per_image = (dx.flatten(1).mean(1) + dy.flatten(1).mean(1)) / 2
    return (dx.mean() + dy.mean()).item() / 2, standard_error(per_image)


def diversity(images):
    """Mean Euclidean distance between two different images of ``images``, and its standard error."""
    flat = images.flatten(1)
    distances = torch.cdist(flat, flat)
    n = len(flat)
    to_others = distances.sum(1) / (n - 1)
    return (distances.sum() / (n * (n - 1))).item(), 2 * standard_error(to_others)


def distance_to_data(images, data):
    """Mean Euclidean distance from each image to its nearest image of ``data``, and its standard error."""
    nearest = torch.cdist(images.flatten(1), data.flatten(1)).min(dim=1).values
    return nearest.mean().item(), standard_error(nearest)
