r"""Observation models :math:`p_\theta(x \mid z)`.

A likelihood is an ``nn.Module`` that maps the decoder's output to a distribution over one data
point.  It declares how many decoder outputs it needs per data feature (``num_params``: 1 for a
mean or logit, 2 when the decoder also predicts a scale), so the decoder's output shape is
``(..., num_params, *event_shape)`` (the ``num_params`` axis is dropped when it is 1).
``check_data(x)`` raises :class:`~pyro_vae.errors.DataError` when ``x`` lies outside the support.

================ ========================================================== ======================
name             :math:`p(x \mid z)` per feature                             data support
================ ========================================================== ======================
bernoulli        :math:`\mathrm{Bern}(\sigma(f(z)))`                          {0, 1}
cbernoulli       continuous Bernoulli (Loaiza-Ganem & Cunningham 2019)       [0, 1]
gaussian         :math:`\mathcal N(f(z), \sigma_x^2)`                          real
laplace          :math:`\mathrm{Laplace}(f(z), \sigma_x)`                      real
================ ========================================================== ======================

For ``gaussian`` and ``laplace`` the scale :math:`\sigma_x` is one of (option ``sigma_x``):

* a positive number: fixed (1, 0.1, 1e-4 ... as compared in the VAE implementation thesis (ch. 5), Sec. 5.3);
* ``"shared"``: one learned scalar;
* ``"per-feature"``: one learned value per data feature;
* ``"per-sample"``: predicted by the decoder for every sample (the implementation thesis's "simple VAE"),
  :math:`\sigma_x(z) = \mathrm{softplus}(g(z)) + \sigma_{\min}` with ``min_scale`` :math:`\sigma_{\min}`
  (default :math:`10^{-3}`); the floor keeps the likelihood bounded (without it the maximum-likelihood
  objective is unbounded, Mattei & Frellsen 2018).  On data with constant pixels (MNIST's
  background) the fit drives those pixels' scale to the floor, so the floor sets the density there.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F
import pyro.distributions as dist

from .errors import ConfigError, DataError
from .registry import Registry

LIKELIHOODS = Registry("likelihood")

SCALE_MODES = ("shared", "per-feature", "per-sample")
PER_SAMPLE_MIN_SCALE = 1e-3


def _first_offender(x, bad):
    value = x[bad].flatten()[0].item()
    return f"{value:.6g}" if not math.isnan(value) else "nan"


class Likelihood(nn.Module):
    """Base of the built-in likelihoods: holds ``event_shape`` and the support check."""

    num_params = 1
    support_text = "real numbers"

    def __init__(self, event_shape):
        super().__init__()
        self.event_shape = tuple(event_shape)

    def outside_support(self, x):
        """Boolean mask of entries of ``x`` outside the support (finite reals by default)."""
        return ~torch.isfinite(x)

    def check_data(self, x):
        bad = self.outside_support(x)
        if bool(bad.any()):
            raise DataError(
                f"{type(self).__name__} needs data in {self.support_text}; "
                f"{int(bad.sum())} of {bad.numel()} values are not (first: {_first_offender(x, bad)})"
                + self.support_hint
            )

    support_hint = ""

    def _to_event(self, distribution):
        return distribution.to_event(len(self.event_shape))


class LogitBernoulli(dist.Bernoulli):
    r"""A Bernoulli whose ``log_prob`` is :math:`x\,\ell - \mathrm{softplus}(\ell)` for logits :math:`\ell`.

    The same value as torch's ``Bernoulli.log_prob`` (to float rounding), in two passes over the
    data instead of the five of ``binary_cross_entropy_with_logits``' CPU kernel: the likelihood is
    the largest cost of importance-sampled log-likelihoods (``benchmarks/bench_loglik_throughput.py``).
    """

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return torch.addcmul(F.softplus(self.logits).neg_(), value, self.logits)


class IndependentLogitBernoulli(dist.Independent):
    r"""Independent :class:`LogitBernoulli` pixels whose ``log_prob`` is summed over the event at once,

    .. math:: \log p(x \mid \ell) = \sum_j x_j \ell_j - \sum_j \mathrm{softplus}(\ell_j),

    the first sum a batched dot product (``einsum``, which reads the logits once and writes nothing
    of their size) instead of an elementwise product summed after: 6% more importance samples per
    second on the 784-400-20 VAE (``benchmarks/bench_loglik_throughput.py``), 10% less time in the
    density itself.  The price is float32 cancellation between the two 784-term sums: against a
    float64 reference the error is unbiased (mean 2e-6, sd 9e-4 nats over 20,000 rows of logits of
    scale 10) but up to 4e-3 nats for one row (7e-3 at logit scale 20), where summing elementwise
    terms errs by 2e-5; both are far below the Monte Carlo error of a log-likelihood estimate.
    """

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        events = self.reinterpreted_batch_ndims
        logits = self.base_dist.logits.flatten(-events)
        dot = torch.einsum("...j,...j->...", logits, value.flatten(-events).to(logits.dtype))
        return dot - F.softplus(logits).sum(-1)


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Bernoulli(p(z)) per pixel, for binary data."""

    support_text = "{0, 1}"
    support_hint = (
        "; binarise them (Python: pyro_vae.load_data(name, binarize='dynamic') and fit(..., dynamic_binarization=True); "
        "CLI: --binarize dynamic) or, for values in [0, 1], use likelihood='cbernoulli' (CLI: --likelihood cbernoulli)"
    )

    def outside_support(self, x):
        return (x != 0) & (x != 1)

    def forward(self, logits):
        pixels = LogitBernoulli(logits=logits)
        return IndependentLogitBernoulli(pixels, len(self.event_shape)) if self.event_shape else pixels


@LIKELIHOODS.register("cbernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """Continuous Bernoulli per pixel, a density on [0, 1] (Loaiza-Ganem & Cunningham 2019)."""

    support_text = "[0, 1]"
    support_hint = "; rescale the data to [0, 1] or use likelihood='gaussian' (CLI: --likelihood gaussian)"

    def outside_support(self, x):
        return ~((x >= 0) & (x <= 1))

    def forward(self, logits):
        return self._to_event(dist.ContinuousBernoulli(logits=logits))


class LocationScaleLikelihood(Likelihood):
    """``family(f(z), sigma_x)`` with a fixed, learned or decoder-predicted scale (see module doc)."""

    def __init__(self, family, event_shape, sigma_x=1.0, min_scale=None):
        super().__init__(event_shape)
        self.family = family
        self.sigma_x = sigma_x
        if min_scale is not None and sigma_x != "per-sample":
            raise ConfigError(f"min_scale applies to sigma_x='per-sample' only, not sigma_x={sigma_x!r}")
        if min_scale is not None and (isinstance(min_scale, bool) or not isinstance(min_scale, (int, float))
                                      or not 0 < min_scale < math.inf):
            raise ConfigError(f"min_scale must be a positive number, got {min_scale!r}")
        self.min_scale = PER_SAMPLE_MIN_SCALE if min_scale is None else float(min_scale)
        if sigma_x == "per-sample":
            self.num_params = 2
        elif sigma_x == "shared":
            self.log_sigma = nn.Parameter(torch.zeros(()))
        elif sigma_x == "per-feature":
            self.log_sigma = nn.Parameter(torch.zeros(self.event_shape))
        else:
            self.register_buffer("fixed_sigma", torch.tensor(float(check_sigma_x(sigma_x))))

    def scale(self, decoder_output=None):
        """The observation scale sigma_x (broadcastable to the data)."""
        if self.sigma_x == "per-sample":
            return F.softplus(decoder_output.select(-len(self.event_shape) - 1, 1)) + self.min_scale
        if self.sigma_x in ("shared", "per-feature"):
            return self.log_sigma.exp()
        return self.fixed_sigma

    def forward(self, decoder_output):
        if self.num_params == 2:
            loc = decoder_output.select(-len(self.event_shape) - 1, 0)
            return self._to_event(self.family(loc, self.scale(decoder_output)))
        return self._to_event(self.family(decoder_output, self.scale()))

    def extra_repr(self):
        return f"{self.family.__name__}, sigma_x={self.sigma_x!r}"


@LIKELIHOODS.register("gaussian")
def gaussian_likelihood(event_shape, sigma_x=1.0, min_scale=None):
    """Normal(mu(z), sigma_x^2) per feature, sigma_x fixed, shared, per feature or per sample."""
    return LocationScaleLikelihood(dist.Normal, event_shape, sigma_x, min_scale)


@LIKELIHOODS.register("laplace")
def laplace_likelihood(event_shape, sigma_x=1.0, min_scale=None):
    """Laplace(mu(z), sigma_x) per feature, sigma_x as for the Gaussian."""
    return LocationScaleLikelihood(dist.Laplace, event_shape, sigma_x, min_scale)


def make_likelihood(likelihood, event_shape, sigma_x=1.0, min_scale=None):
    """A likelihood module from a registered name, or a ready module (returned as is).

    ``sigma_x`` and ``min_scale`` (the floor of a ``per-sample`` scale) apply to ``gaussian`` and
    ``laplace`` only.
    """
    if isinstance(likelihood, nn.Module):
        return likelihood
    factory = LIKELIHOODS.get(likelihood)
    check_sigma_x(sigma_x)
    if likelihood in ("gaussian", "laplace"):
        return factory(event_shape, sigma_x=sigma_x, min_scale=min_scale)
    if min_scale is not None:
        raise ConfigError(f"min_scale applies to the gaussian and laplace likelihoods, not {likelihood!r}")
    return factory(event_shape)


def check_sigma_x(sigma_x):
    """``sigma_x`` itself if it is a positive finite number or a learned mode, else :class:`ConfigError`."""
    if sigma_x in SCALE_MODES:
        return sigma_x
    if isinstance(sigma_x, (int, float)) and not isinstance(sigma_x, bool) and 0 < sigma_x < math.inf:
        return sigma_x
    raise ConfigError(f"sigma_x must be a positive number or one of {', '.join(SCALE_MODES)}; got {sigma_x!r}")


def parse_sigma_x(text):
    """CLI parser for ``--sigma-x``: a positive float, or one of the learned modes."""
    if text in SCALE_MODES:
        return text
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0 or not math.isfinite(value):
        raise ConfigError(
            f"--sigma-x must be a positive number or one of {', '.join(SCALE_MODES)}; got {text!r}"
        )
    return value
