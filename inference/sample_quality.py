r"""Sample quality: a Frechet distance in the feature space of a classifier this project trains.

The Frechet Inception Distance (Heusel et al. 2017) compares Gaussian fits of Inception-v3 features
of real and generated images:

.. math:: \mathrm{FD} = \|\mu_r - \mu_g\|^2 + \operatorname{tr}\big(\Sigma_r + \Sigma_g - 2(\Sigma_r \Sigma_g)^{1/2}\big).

No pretrained Inception weights are available offline, so the features here are the penultimate
activations of a small classifier trained on the labelled training split of the *same* data set
(:func:`train_feature_classifier`).  **These numbers are not FIDs and are not comparable with
published FIDs**; they rank models fitted to the same data, scored by the same classifier and seed.
"""

import numpy as np
import torch
from torch import nn

from pyro_vae.errors import ConfigError

from .traces import random_state_kept

#: What every output that quotes the number says about it.
DESCRIPTION = ("Frechet distance in the penultimate-layer features of a classifier trained by pyro-vae on the same "
               "data's training split (not an Inception FID; comparable only within one data set and classifier)")


class FeatureClassifier(nn.Module):
    """An MLP classifier; ``features(x)`` are its penultimate activations."""

    def __init__(self, in_features, classes, hidden=(256, 128)):
        super().__init__()
        layers, width = [nn.Flatten()], in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def train_feature_classifier(x, labels, epochs=20, batch_size=128, lr=1e-3, seed=0, hidden=(256, 128)):
    """Fit a :class:`FeatureClassifier` to ``(x, labels)`` by cross-entropy with Adam; returns it in eval mode.
    The caller's random state is left as it was."""
    if labels is None:
        raise ConfigError("the classifier Frechet distance needs a labelled data set (digits, mnist)")
    with random_state_kept(x.device):
        return _train(x, labels, epochs, batch_size, lr, seed, hidden)


def _train(x, labels, epochs, batch_size, lr, seed, hidden):
    generator = torch.Generator(device=x.device).manual_seed(seed)
    torch.manual_seed(seed)
    with torch.device("cpu"):  # the same initial weights from a seed on every device, then moved
        classifier = FeatureClassifier(x[0].numel(), int(labels.max()) + 1, hidden)
    classifier.to(x.device)
    optimiser = torch.optim.Adam(classifier.parameters(), lr=lr)
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator, device=x.device).split(batch_size):
            optimiser.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(classifier(x[index]), labels[index]).backward()
            optimiser.step()
    return classifier.eval()


@torch.no_grad()
def accuracy(classifier, x, labels):
    return (classifier(x).argmax(1) == labels).float().mean().item()


def frechet_distance_from_moments(mean_a, cov_a, mean_b, cov_b):
    r"""The Frechet distance between N(mean_a, cov_a) and N(mean_b, cov_b) (module doc).

    :math:`\operatorname{tr}(\Sigma_a \Sigma_b)^{1/2}` is computed as the sum of square roots of the
    eigenvalues of the symmetric :math:`\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2}`, which stays exact where
    ReLU features leave the covariances singular (``scipy.linalg.sqrtm`` of the product does not).
    """
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross_trace = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross_trace)


def frechet_distance(features_a, features_b):
    """Frechet distance between Gaussian fits (mean, covariance) of two feature samples ``(n, k)``."""
    a = np.asarray(features_a.detach().cpu() if torch.is_tensor(features_a) else features_a, dtype=np.float64)
    b = np.asarray(features_b.detach().cpu() if torch.is_tensor(features_b) else features_b, dtype=np.float64)
    return frechet_distance_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


@torch.no_grad()
def classifier_frechet_distance(classifier, real, generated):
    """Frechet distance between classifier features of real and generated images (see :data:`DESCRIPTION`)."""
    if tuple(real.shape[1:]) != tuple(generated.shape[1:]):
        raise ConfigError(f"real images {tuple(real.shape[1:])} and generated ones {tuple(generated.shape[1:])} differ in shape")
    return frechet_distance(classifier.features(real), classifier.features(generated))
