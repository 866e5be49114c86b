r"""Priors :math:`p(z)` over a ``latent_dim``-vector.

A prior is a small ``nn.Module`` whose ``forward()`` returns a distribution with
``event_shape == (latent_dim,)``.  Fixed priors keep their constants as buffers, so ``.to(device)``
moves them with the model; the learned mixture keeps trainable parameters.  Any module (or
callable) with that contract can stand in for these.

========== ===================================================================== ==================
name       density (per coordinate unless stated)                                options
========== ===================================================================== ==================
normal     :math:`\mathcal N(0, s^2)`                                            ``scale`` s
laplace    :math:`\frac{1}{2b} e^{-|z|/b}`                                       ``scale`` b
cauchy     :math:`\frac{1}{\pi g (1 + (z/g)^2)}`                                 ``scale`` g
studentt   Student-t with ``df`` :math:`\nu`, scale s                            ``df``, ``scale``
mixture    :math:`\sum_c \pi_c \mathcal N(z; m_c, \mathrm{diag}\, s_c^2)` over   ``components``
           the whole vector, weights, means and scales learned                   (10)
vamp       :math:`\frac1K \sum_k q_\phi(z \mid u_k)`, the guide at K learned     ``components`` K
           pseudo-inputs :math:`u_k`                                             (50)
========== ===================================================================== ==================

The sparse priors follow Pyle, "A Sparse VAE"; the learned mixture is the
"mixture of Gaussians" prior of Dilokthanakul et al. (2016) / Tomczak & Welling (2018, VampPrior
without pseudo-inputs); ``vamp`` is the VampPrior of Tomczak & Welling (2018), "VAE with a
VampPrior", which needs the model's encoder (:meth:`VampPrior.bind`; the catalogue VAE binds it).
"""

import math

import torch
from torch import nn
import pyro.distributions as dist

from . import checks
from .errors import ConfigError
from .options import option
from .registry import Registry

PRIORS = Registry("prior")
_SCALE = option(1.0, "scale", checks.positive_float, float)


def _positive(name, value):
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return float(value)


class FactorisedPrior(nn.Module):
    """The same location-scale family in every coordinate, centred at 0."""

    def __init__(self, family, latent_dim, scale=1.0, **shape_params):
        super().__init__()
        self.family = family
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.full((latent_dim,), _positive("prior scale", scale)))
        for key, value in shape_params.items():
            self.register_buffer(key, torch.full((latent_dim,), _positive(f"prior {key}", value)))
        self._shape_keys = tuple(shape_params)

    def forward(self):
        shape = {key: getattr(self, key) for key in self._shape_keys}
        return self.family(loc=self.loc, scale=self.scale, **shape).to_event(1)

    def extra_repr(self):
        return f"{self.family.__name__}, latent_dim={self.loc.numel()}"


@PRIORS.register("normal", {"scale": _SCALE})
def normal_prior(latent_dim, scale=1.0):
    """N(0, s^2) per coordinate."""
    return FactorisedPrior(dist.Normal, latent_dim, scale)


@PRIORS.register("laplace", {"scale": _SCALE})
def laplace_prior(latent_dim, scale=1.0):
    """Laplace(0, b) per coordinate: sparse codes (Pyle)."""
    return FactorisedPrior(dist.Laplace, latent_dim, scale)


@PRIORS.register("cauchy", {"scale": _SCALE})
def cauchy_prior(latent_dim, scale=1.0):
    """Cauchy(0, g) per coordinate: heavy tails, no variance."""
    return FactorisedPrior(dist.Cauchy, latent_dim, scale)


@PRIORS.register("studentt", {"scale": _SCALE,
                              "df": option(3.0, "degrees of freedom nu", checks.positive_float, float)})
def studentt_prior(latent_dim, scale=1.0, df=3.0):
    """Student-t with df nu and scale s per coordinate."""
    return FactorisedPrior(dist.StudentT, latent_dim, scale, df=df)


class MixturePrior(nn.Module):
    r"""Learned mixture of diagonal Gaussians,
    :math:`p(z) = \sum_{c=1}^C \pi_c \mathcal N(z; m_c, \mathrm{diag}(s_c^2))`.

    Means start spread as :math:`\mathcal N(0, I)` draws (seeded by the global RNG), scales at 1,
    weights uniform.  No KL to it has a closed form, so mean-field objectives estimate that term by
    Monte Carlo (see :func:`pyro_vae.kl.kl_path`).
    """

    def __init__(self, latent_dim, components=10):
        super().__init__()
        if int(components) != components or components < 1:
            raise ConfigError(f"mixture prior components must be a positive integer, got {components!r}")
        self.logits = nn.Parameter(torch.zeros(int(components)))
        self.means = nn.Parameter(torch.randn(int(components), latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(int(components), latent_dim))

    def forward(self):
        components = dist.Normal(self.means, self.log_scales.exp()).to_event(1)
        return _PointwiseMixture(dist.Categorical(logits=self.logits), components)


@PRIORS.register("mixture", {"components": option(10, "components", checks.positive_int, int)})
def mixture_prior(latent_dim, components=10):
    """A learned mixture of diagonal Gaussians over the whole vector."""
    return MixturePrior(latent_dim, components)


class _PointwiseMixture(dist.MixtureSameFamily):
    r"""``MixtureSameFamily`` that broadcasts each point against the components before scoring it, which a
    flow component needs (its inverse takes the shape of its input, not the broadcast one).

    Components that are diagonal Normals with batch shape ``(K,)`` (the VampPrior of the diagonal guide,
    the learned mixture) are scored by the expansion scikit-learn's ``GaussianMixture`` uses,

    .. math:: \log \mathcal N(z; \mu_k, \mathrm{diag}\, s_k^2) = -\tfrac12 \big(z^2 \cdot a_k - 2 z \cdot \mu_k a_k
              + \mu_k^2 \cdot a_k\big) - \textstyle\sum_j \log s_{kj} - \tfrac d2 \log 2\pi, \qquad a_k = s_k^{-2},

    as two matrix products over the d coordinates instead of an ``(..., K, d)`` tensor of differences, in
    float64 so that the cancelling terms keep float32's precision for scales down to :data:`pyro_vae.guides.MIN_SCALE`
    (written here because torch's ``MixtureSameFamily`` broadcasts; 10-20 times faster on 500
    components of 50 dimensions, ``benchmarks/bench_vamp_prior.py``)."""

    def log_prob(self, x):
        if self._validate_args:
            self._validate_sample(x)
        log_weights = torch.log_softmax(self.mixture_distribution.logits, dim=-1)
        diagonal = _diagonal_normal(self._unexpanded_components)
        if diagonal is not None:
            return torch.logsumexp(_diagonal_normal_log_prob(x, *diagonal) + log_weights, dim=-1)
        x = self._pad(x)
        x = x.expand(torch.broadcast_shapes(x.shape, self.component_distribution.batch_shape + self.event_shape))
        return torch.logsumexp(self.component_distribution.log_prob(x) + log_weights, dim=-1)

    @property
    def _unexpanded_components(self):
        """The components before any plate's ``expand``, which copies them along its dimensions."""
        return self.__dict__.get("_components_before_expand", self.component_distribution)

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance)
        new._components_before_expand = self._unexpanded_components
        return new


def _diagonal_normal(components):
    """``(loc, scale)``, each ``(K, d)``, of components that are ``Normal(loc, scale).to_event(1)`` with batch
    shape ``(K,)``; else None."""
    if (isinstance(components, dist.Independent) and isinstance(components.base_dist, dist.Normal)
            and components.reinterpreted_batch_ndims == 1 and len(components.batch_shape) == 1):
        shape = components.batch_shape + components.event_shape
        return components.base_dist.loc.expand(shape), components.base_dist.scale.expand(shape)
    return None


def _diagonal_normal_log_prob(x, loc, scale):
    """``(..., K)`` log densities of ``x`` ``(..., d)`` under K diagonal Normals (:class:`_PointwiseMixture`)."""
    z, loc, precision = x.double(), loc.double(), scale.double().pow(-2)
    quadratic = (z * z) @ precision.T - 2 * z @ (loc * precision).T + (loc * loc * precision).sum(-1)
    normaliser = scale.double().log().sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)
    return (-0.5 * quadratic - normaliser).to(x.dtype)


class VampPrior(nn.Module):
    r"""The VampPrior (Tomczak & Welling 2018): the guide's own family at K learned pseudo-inputs,

    .. math:: p_\lambda(z) = \frac1K \sum_{k=1}^K q_\phi(z \mid u_k),

    so the prior is the aggregate posterior of K points that training moves where it helps the ELBO.
    Any guide family works (a flow's components are scored by inverting the flow).  The pseudo-inputs,
    of shape ``(K, *event_shape)``, start as :math:`\mathcal N(0.5, 0.1^2)` draws (global RNG) clamped to
    [0, 1], the middle of the catalogue's pixel range, and are unconstrained after that.  Its KL has no
    closed form: mean-field objectives estimate it by Monte Carlo (:func:`pyro_vae.kl.kl_path`).
    """

    def __init__(self, latent_dim, components=50):
        super().__init__()
        self.latent_dim, self.components = latent_dim, checks.positive_int("vamp prior components", components)
        self.register_parameter("pseudo_inputs", None)
        self._encode = None

    def bind(self, encode, event_shape):
        """Score with ``encode`` (``x -> q(z | x)`` for ``x`` of ``(n, *event_shape)``, e.g. ``VAE.encode``) at
        fresh pseudo-inputs.  ``encode`` is kept outside the module tree, so the model that owns both this
        prior and the encoder is not a submodule of its prior (no cycle in ``parameters()`` or ``state_dict()``)."""
        object.__setattr__(self, "_encode", encode)
        self.pseudo_inputs = nn.Parameter((0.5 + 0.1 * torch.randn(self.components, *event_shape)).clamp(0.0, 1.0))

    def forward(self):
        if self._encode is None:
            raise ConfigError("the vamp prior has no encoder: call bind(encode, event_shape) first (the catalogue VAE does)")
        components = self._encode(self.pseudo_inputs)
        uniform = dist.Categorical(logits=self.pseudo_inputs.new_zeros(self.components))
        return _PointwiseMixture(uniform, components)

    def extra_repr(self):
        return f"components={self.components}, latent_dim={self.latent_dim}"


@PRIORS.register("vamp", {"components": option(50, "components", checks.positive_int, int)})
def vamp_prior(latent_dim, components=50):
    """VampPrior: the guide at K learned pseudo-inputs (Tomczak & Welling 2018)."""
    return VampPrior(latent_dim, components)


def make_prior(prior, latent_dim, **options):
    """A prior module from a registered name (with its options) or a ready module (returned as is)."""
    if isinstance(prior, nn.Module):
        return prior
    try:
        return PRIORS.get(prior)(latent_dim, **options)
    except TypeError as error:
        raise ConfigError(f"prior {prior!r}: {error}") from None
