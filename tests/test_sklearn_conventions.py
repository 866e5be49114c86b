"""The closed-form ``PPCA`` is a scikit-learn estimator: scikit-learn's own checks, ``clone``, model
selection, pipelines, and ``transform`` as the exact posterior mean."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, ShuffleSplit, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from pyro_vae.errors import DataError
from pyro_vae.models.ppca import PPCA


def ppca_data(n, seed=0, n_features=6):
    """``n`` draws of a pPCA with d = 2: orthogonal loadings of norms 3 and 2, sigma = 0.5, mean 1."""
    rng = np.random.default_rng(seed)
    loadings = np.linalg.qr(rng.standard_normal((n_features, 2)))[0] * [3.0, 2.0]
    return rng.standard_normal((n, 2)) @ loadings.T + 0.5 * rng.standard_normal((n, n_features)) + 1.0


@parametrize_with_checks([PPCA(2), PPCA(1, ddof=1)])
def test_sklearn_estimator_checks(estimator, check):
    # Every applicable check passes; check_array_api_input skips itself unless SCIPY_ARRAY_API=1.
    check(estimator)


def test_clone_is_an_unfitted_copy_with_the_same_params():
    fitted = PPCA(3, ddof=1).fit(ppca_data(50))
    copy = clone(fitted)
    assert copy.get_params() == {"n_components": 3, "ddof": 1}
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    check_is_fitted(fitted)  # cloning left the original fitted


def test_cross_val_score_is_the_mean_held_out_log_likelihood():
    # ddof=1 is sklearn's PCA (covariance / (n - 1)), whose score is the same pPCA log-likelihood.
    x = ppca_data(300)
    folds = KFold(5, shuffle=True, random_state=0)
    scores = cross_val_score(PPCA(2, ddof=1), x, cv=folds)
    expected = [PCA(n_components=2).fit(x[train]).score(x[test]) for train, test in folds.split(x)]
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, expected, rtol=1e-9)


def test_grid_search_picks_the_true_latent_dimension():
    # K-fold CV with a fixed training fraction is not consistent between nested models (Shao 1993): with
    # 80% training data it picks d = 3 on about 1 seed in 5 however large n is.  The held-out gain of the
    # true model over a larger one has mean ~ 1 / n_train and spread ~ 1 / sqrt(n_train n_test), so
    # training on 20% makes it 2 spreads; it chose d = 2 on 100 of 100 seeds of this generator.
    search = GridSearchCV(PPCA(1), {"n_components": [1, 2, 3, 4, 5]},
                          cv=ShuffleSplit(n_splits=5, train_size=0.2, random_state=0))
    assert search.fit(ppca_data(2000)).best_params_ == {"n_components": 2}


def test_pipeline_with_a_scaler_fits_transforms_and_scores():
    x = ppca_data(200)
    pipeline = Pipeline([("scale", StandardScaler()), ("ppca", PPCA(2))]).fit(x)
    scaled = StandardScaler().fit_transform(x)
    alone = PPCA(2).fit(scaled)
    np.testing.assert_allclose(pipeline.transform(x), alone.transform(scaled), rtol=1e-12, atol=1e-12)
    assert pipeline.score(x) == pytest.approx(alone.score(scaled), rel=1e-12)
    assert list(pipeline.get_feature_names_out()) == ["ppca0", "ppca1"]


def test_transform_is_the_exact_posterior_mean():
    # Two routes to E[z | x] other than M^{-1} W^T (x - mu): conditioning the joint Gaussian of (z, x),
    # Cov(z, x) Cov(x)^{-1} (x - mu) = W^T C^{-1} (x - mu) (equal by Woodbury); and, as W = U_d
    # (Lambda_d - sigma^2)^{1/2}, the eigenbasis form (lambda_i - sigma^2)^{1/2} / lambda_i u_i^T (x - mu).
    x = ppca_data(40, n_features=4)
    model = PPCA(2).fit(x)
    w, mu, noise = model.loadings_, model.mean_, model.noise_variance_
    joint = (x - mu) @ np.linalg.inv(w @ w.T + noise * np.eye(4)) @ w
    lam = model.eigenvalues_[:2]
    eigen = (x - mu) @ model.components_.T * np.sqrt(lam - noise) / lam
    np.testing.assert_allclose(model.transform(x), joint, rtol=1e-10)
    np.testing.assert_allclose(model.transform(x), eigen, rtol=1e-10)


def test_inverse_transform_of_the_posterior_mean_is_the_shrunk_projection():
    # W M^{-1} W^T = U_d diag((lambda_i - sigma^2) / lambda_i) U_d^T: each principal coordinate shrinks.
    x = ppca_data(40, n_features=4)
    model = PPCA(2).fit(x)
    lam, u = model.eigenvalues_[:2], model.components_.T
    shrunk = model.mean_ + ((x - model.mean_) @ u * (lam - model.noise_variance_) / lam) @ u.T
    np.testing.assert_allclose(model.inverse_transform(model.transform(x)), shrunk, rtol=1e-10)


def test_sample_has_the_model_covariance_and_follows_random_state():
    model = PPCA(2).fit(ppca_data(500))
    n = 20000
    draws = model.sample(n, random_state=0)
    c = model.get_covariance()
    # standard error of a sample covariance entry: sqrt((C_ii C_jj + C_ij^2) / n); allow 5 of them
    tolerance = 5 * np.sqrt((np.outer(np.diag(c), np.diag(c)) + c**2) / n)
    assert (np.abs(np.cov(draws.T) - c) < tolerance).all()
    np.testing.assert_array_equal(model.sample(3, random_state=1), model.sample(3, random_state=1))


def test_torch_tensors_and_image_batches_are_accepted():
    x = ppca_data(64, n_features=16)
    images = torch.tensor(x.reshape(64, 1, 4, 4), requires_grad=True)
    from_tensor = PPCA(2).fit(images)
    from_array = PPCA(2).fit(x)
    np.testing.assert_allclose(from_tensor.score_samples(images), from_array.score_samples(x), rtol=1e-12)
    np.testing.assert_allclose(from_tensor.transform(images), from_array.transform(x), rtol=1e-12)
    assert from_tensor.n_features_in_ == 16


@pytest.mark.parametrize("rows, message", [(1, "got 1 sample"), (0, "got 0 sample")])
def test_too_few_samples_is_a_one_line_data_error(rows, message):
    with pytest.raises(DataError, match=message):
        PPCA(1).fit(np.ones((rows, 3)))


def test_non_finite_data_to_transform_is_a_data_error():
    model = PPCA(1).fit(ppca_data(20, n_features=3))
    with pytest.raises(DataError, match="NaN"):
        model.transform(np.full((2, 3), np.inf))
