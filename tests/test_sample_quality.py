"""The classifier Frechet distance: the formula against closed forms, the classifier, the ordering."""

import numpy as np
import pytest
import torch

from pyro_vae.data import load_data
from pyro_vae.errors import ConfigError
from pyro_vae.inference.sample_quality import (accuracy, classifier_frechet_distance, frechet_distance,
                                               frechet_distance_from_moments, train_feature_classifier)


def test_moments_formula_against_closed_forms():
    rng = np.random.default_rng(0)
    # diagonal covariances: FD = |m1 - m2|^2 + sum_j (s1_j - s2_j)^2
    m1, m2, s1, s2 = rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    expected = np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2)
    assert frechet_distance_from_moments(m1, np.diag(s1**2), m2, np.diag(s2**2)) == pytest.approx(expected, rel=1e-9)
    # a covariance against itself under a rotation-free shift: only the means count
    a = rng.normal(size=(4, 4))
    cov = a @ a.T + np.eye(4)
    assert frechet_distance_from_moments(m1, cov, m2, cov) == pytest.approx(np.sum((m1 - m2) ** 2), abs=1e-8)


def test_sample_estimate_converges_to_the_gaussian_value():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=generator)
    b = torch.randn(20000, 3, generator=generator) * 2.0 + 1.0
    # exact: 3 * 1^2 + 3 * (1 - 2)^2 = 6; sampling error of each moment is O(1/sqrt(n)) ~ 0.01-0.03
    assert frechet_distance(a, b) == pytest.approx(6.0, abs=0.15)


def test_digit_classifier_features_rank_noisier_images_farther():
    data = load_data("digits")
    classifier = train_feature_classifier(data.train, data.train_labels, epochs=20)
    assert accuracy(classifier, data.test, data.test_labels) > 0.9
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(data.test.shape, generator=generator)
    distances = [classifier_frechet_distance(classifier, data.val, (data.test + s * noise).clamp(0, 1)) for s in (0.0, 0.2, 0.5)]
    assert distances[0] < distances[1] < distances[2]
    with pytest.raises(ConfigError, match="differ in shape"):
        classifier_frechet_distance(classifier, data.test, data.test.flatten(1))
    with pytest.raises(ConfigError, match="labelled"):
        train_feature_classifier(data.train, None)
