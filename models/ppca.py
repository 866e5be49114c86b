r"""Probabilistic PCA: the closed-form estimator, and the same model as a Pyro model/guide pair.

Model (Tipping & Bishop 1999):

.. math::

    z \sim \mathcal N(0, I_d), \qquad x \mid z \sim \mathcal N(W z + \mu, \sigma^2 I_D)
    \quad\Rightarrow\quad x \sim \mathcal N(\mu, C),\ C = W W^\top + \sigma^2 I_D.

Maximum likelihood, with :math:`S = U \Lambda U^\top` the sample covariance (eigenvalues
:math:`\lambda_1 \ge \dots \ge \lambda_D`):

.. math::

    \hat\mu = \bar x, \qquad \hat\sigma^2 = \frac{1}{D - d} \sum_{i > d} \lambda_i, \qquad
    \hat W = U_d (\Lambda_d - \hat\sigma^2 I)^{1/2} R \ \ (R \text{ any rotation; here } I).

The total variance then splits exactly into a latent part
:math:`\operatorname{tr} \hat W \hat W^\top = \sum_{i \le d} (\lambda_i - \hat\sigma^2)` and a noise
part :math:`D \hat\sigma^2`, which is the reference of the variance-identifiability study.
Posterior: :math:`z \mid x \sim \mathcal N(M^{-1} W^\top (x - \mu), \sigma^2 M^{-1})`,
:math:`M = W^\top W + \sigma^2 I_d`.

``PPCA`` is a scikit-learn estimator (``BaseEstimator``, ``TransformerMixin``, ``DensityMixin``), so
``clone``, ``Pipeline``, ``cross_val_score`` and ``GridSearchCV`` work with it: ``fit`` estimates the
above, ``transform`` is the posterior mean, ``score_samples`` the exact log-likelihood in nats,
``score`` its mean (higher is better), ``sample`` draws from the model.  Inputs may be NumPy arrays,
array-likes or torch tensors, and a batch of images ``(n, ...)`` is read as rows ``(n, D)``.  With
``ddof=1`` it reproduces ``sklearn.decomposition.PCA(n_components=d).score_samples``, whose
covariance divides by ``n - 1``; the default ``ddof=0`` is the maximum-likelihood solution above.

Example::

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(500, 6))
    >>> PPCA(n_components=2).fit(x).score(x) < 0
    True
"""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, DensityMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from torch import nn

from pyro_vae.errors import ConfigError, DataError


def _as_rows(x):
    """Torch tensors as NumPy arrays, and a batch of images ``(n, ...)`` as rows ``(n, D)``."""
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else x
    return x.reshape(len(x), -1) if getattr(x, "ndim", 2) > 2 else x


def _require(x, min_samples, purpose):
    """``x`` unchanged if it has ``min_samples`` rows and only finite values, else a one-line DataError."""
    if len(x) < min_samples:
        raise DataError(f"pPCA got {len(x)} sample(s) to {purpose}; it needs at least {min_samples}")
    if not np.isfinite(x).all():
        raise DataError("pPCA data hold NaN or infinite values")
    return x


class PPCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, DensityMixin, BaseEstimator):
    r"""Closed-form probabilistic PCA with ``n_components`` latent dimensions, as a scikit-learn estimator.

    :param int n_components: latent dimension d (1 <= d <= D, checked by ``fit``).
    :param int ddof: 0 for maximum likelihood (default), 1 to match scikit-learn's ``PCA``.

    Fitted attributes: ``mean_`` (D,), ``eigenvalues_`` (D,), ``components_`` (d, D, orthonormal),
    ``loadings_`` = W (D, d), ``noise_variance_`` = sigma^2, ``n_features_in_`` = D (and
    ``feature_names_in_`` when fitted on a data frame).
    """

    def __init__(self, n_components, ddof=0):
        self.n_components = n_components
        self.ddof = ddof

    def fit(self, X, y=None):
        """The estimates :math:`\\hat\\mu, \\hat W, \\hat\\sigma^2` above from ``X`` (n, D); ``y`` is ignored."""
        X = self._validated(X, reset=True, min_samples=2, purpose="fit")
        n_features = X.shape[1]
        d = self._checked_n_components(n_features)
        self.mean_ = X.mean(0)
        centred = X - self.mean_
        covariance = centred.T @ centred / (len(X) - self.ddof)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        self.eigenvalues_ = np.clip(eigenvalues[order], 0.0, None)
        self.components_ = eigenvectors[:, order[:d]].T
        self.noise_variance_ = float(self.eigenvalues_[d:].mean()) if d < n_features else 0.0
        self.loadings_ = self.components_.T * np.sqrt(np.clip(self.eigenvalues_[:d] - self.noise_variance_, 0.0, None))
        return self

    def _validated(self, X, reset, min_samples, purpose):
        """``X`` as a float64 matrix with the fitted number of features (``reset=False``) or recording it."""
        X = validate_data(self, _as_rows(X), reset=reset, dtype=np.float64, ensure_all_finite=False,
                          ensure_min_samples=0)
        return _require(X, min_samples, purpose)

    def _checked_n_components(self, n_features):
        """``n_components`` as an int, after checking it and ``ddof``; one-line ConfigErrors otherwise."""
        d = self.n_components
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 1 <= d <= n_features:
            raise ConfigError(f"n_components must be an integer from 1 to n_features = {n_features}, got {d!r}")
        if self.ddof not in (0, 1):
            raise ConfigError(f"ddof must be 0 or 1, got {self.ddof!r}")
        return int(d)

    @property
    def _n_features_out(self):
        """Output width of ``transform``, for ``get_feature_names_out`` (``ppca0``, ``ppca1``, ...)."""
        return self.components_.shape[0]

    def transform(self, X):
        r"""Posterior mean of the latents, :math:`E[z \mid x] = M^{-1} W^\top (x - \mu)` with
        :math:`M = W^\top W + \sigma^2 I_d`, one row (d,) per row of ``X``.

        The exact posterior is :math:`\mathcal N(M^{-1} W^\top (x - \mu), \sigma^2 M^{-1})`.  With the
        fitted :math:`W = U_d (\Lambda_d - \sigma^2 I)^{1/2}`, :math:`M = \Lambda_d` and
        ``inverse_transform(transform(x))`` is :math:`\mu + U_d \operatorname{diag}((\lambda_i -
        \sigma^2) / \lambda_i) U_d^\top (x - \mu)`: the principal projection, shrunk by the noise.
        """
        check_is_fitted(self)
        X = self._validated(X, reset=False, min_samples=1, purpose="transform")
        w = self.loadings_
        m = w.T @ w + self.noise_variance_ * np.eye(w.shape[1])
        return np.linalg.solve(m, w.T @ (X - self.mean_).T).T

    def inverse_transform(self, Z):
        """The decoder's mean :math:`E[x \\mid z] = W z + \\mu`, one row (D,) per latent row (d,) of ``Z``."""
        check_is_fitted(self)
        Z = _require(check_array(_as_rows(Z), dtype=np.float64, ensure_all_finite=False), 1, "inverse_transform")
        if Z.shape[1] != self.loadings_.shape[1]:
            raise DataError(f"Z has {Z.shape[1]} columns, but PPCA has {self.loadings_.shape[1]} components")
        return Z @ self.loadings_.T + self.mean_

    def get_covariance(self):
        """Model covariance :math:`C = W W^\\top + \\sigma^2 I`."""
        check_is_fitted(self)
        return self.loadings_ @ self.loadings_.T + self.noise_variance_ * np.eye(len(self.mean_))

    def score_samples(self, X):
        """Exact log-likelihood :math:`\\log \\mathcal N(x; \\mu, C)` of each row, in nats."""
        check_is_fitted(self)
        X = self._validated(X, reset=False, min_samples=1, purpose="score")
        centred = X - self.mean_
        sign, logdet = np.linalg.slogdet(self.get_covariance())
        if sign <= 0:
            raise DataError("the pPCA covariance is singular (noise variance 0): use fewer components")
        solved = np.linalg.solve(self.get_covariance(), centred.T).T
        return -0.5 * ((centred * solved).sum(1) + logdet + X.shape[1] * math.log(2 * math.pi))

    def score(self, X, y=None):
        """Mean log-likelihood per data point, in nats (higher is better; ``cross_val_score``'s default)."""
        return float(self.score_samples(X).mean())

    def sample(self, n_samples=1, random_state=None):
        """``n_samples`` draws :math:`x = W z + \\mu + \\sigma \\epsilon` from the fitted model, shape (n_samples, D).

        :param random_state: ``None``, a seed or a ``numpy.random.RandomState`` (scikit-learn's convention).
        """
        check_is_fitted(self)
        rng = check_random_state(random_state)
        z = rng.standard_normal((n_samples, self.loadings_.shape[1]))
        noise = rng.standard_normal((n_samples, len(self.mean_))) * math.sqrt(self.noise_variance_)
        return z @ self.loadings_.T + self.mean_ + noise

    def variance_split(self):
        """Total model variance and its exact split into the latent and the noise parts."""
        check_is_fitted(self)
        latent = float(np.clip(self.eigenvalues_[: len(self.components_)] - self.noise_variance_, 0.0, None).sum())
        noise = len(self.mean_) * self.noise_variance_
        return {"total": latent + noise, "latent": latent, "noise": noise}


class PPCAPair(nn.Module):
    r"""pPCA as a Pyro model/guide pair with learned :math:`W, \mu, \sigma^2`, fitted by SVI.

    :param guide: ``"exact"``: the exact posterior :math:`p(z \mid x)` under the current parameters
        (the ELBO then equals :math:`\log p(x)` and SVI is stochastic maximum likelihood);
        ``"linear"``: an amortised Gaussian :math:`q(z \mid x) = \mathcal N(A (x - \mu),
        \mathrm{diag}\, s^2)` with its own parameters.
    """

    def __init__(self, event_shape, latent_dim, guide="exact"):
        super().__init__()
        if guide not in ("exact", "linear"):
            raise ConfigError(f"unknown pPCA guide {guide!r}; expected one of: exact, linear")
        self.event_shape = tuple(event_shape)
        self.latent_dim = latent_dim
        self.guide_kind = guide
        n_features = math.prod(self.event_shape)
        self.loadings = nn.Parameter(0.1 * torch.randn(n_features, latent_dim))
        self.mean = nn.Parameter(torch.zeros(n_features))
        self.log_noise_variance = nn.Parameter(torch.zeros(()))
        if guide == "linear":
            self.encoder = nn.Linear(n_features, latent_dim, bias=False)
            self.log_guide_scale = nn.Parameter(torch.zeros(latent_dim))

    @property
    def noise_variance(self):
        return self.log_noise_variance.exp()

    def model(self, x):
        x = x.reshape(len(x), -1)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim, device=x.device), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.loadings.T + self.mean, self.noise_variance.sqrt()).to_event(1), obs=x)

    def guide(self, x):
        x = x.reshape(len(x), -1)
        with pyro.plate("data", len(x)):
            pyro.sample("z", self.posterior(x))

    def posterior(self, x):
        """The guide's :math:`q(z \\mid x)` (the exact posterior for ``guide="exact"``)."""
        centred = x.reshape(len(x), -1) - self.mean
        if self.guide_kind == "linear":
            return dist.Normal(self.encoder(centred), self.log_guide_scale.exp()).to_event(1)
        w, noise = self.loadings, self.noise_variance
        m = w.T @ w + noise * torch.eye(self.latent_dim, device=x.device)
        covariance = noise * torch.linalg.inv(m)
        return dist.MultivariateNormal(centred @ torch.linalg.solve(m, w.T).T, covariance_matrix=covariance)

    def exact_log_likelihood(self, x):
        """:math:`\\log \\mathcal N(x; \\mu, W W^\\top + \\sigma^2 I)` per row under the current parameters."""
        x = x.reshape(len(x), -1)
        covariance = self.loadings @ self.loadings.T + self.noise_variance * torch.eye(x.shape[1], device=x.device)
        return dist.MultivariateNormal(self.mean, covariance_matrix=covariance).log_prob(x)


def principal_angles(a, b):
    """Principal angles (degrees, ascending) between the column spaces of ``a`` (D, p) and ``b`` (D, q)."""
    from scipy.linalg import subspace_angles

    a = a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)
    b = b.detach().cpu().numpy() if torch.is_tensor(b) else np.asarray(b)
    return np.degrees(np.sort(subspace_angles(a, b)))
