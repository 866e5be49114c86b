r"""A Gaussian mixture as a Pyro model with its component enumerated exactly.

.. math::

    c \sim \mathrm{Categorical}(\pi), \qquad x \mid c \sim \mathcal N(m_c, \mathrm{diag}\, s_c^2),
    \qquad \log p(x) = \log \sum_c \pi_c\, \mathcal N(x; m_c, \mathrm{diag}\, s_c^2).

The component site is marked for parallel enumeration, so ``TraceEnum_ELBO`` (objective ``enum``)
sums it out and the "ELBO" it optimises is the exact log-likelihood; the guide has no latent sites
(weights, means and scales are maximum-likelihood parameters).  The same log-likelihood as
scikit-learn's ``GaussianMixture(covariance_type="diag")``, its EM counterpart (a test compares the
two, and the fits).  Seed 000 reads the VAE's aggregate posterior :math:`q(z)` as such a mixture; fit
this to draws of :math:`q(z)` to check.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.errors import ConfigError


class GaussianMixturePair(nn.Module):
    """Mixture of ``components`` diagonal Gaussians over data of ``event_shape``, as a Pyro model/guide pair.

    Fitted by SVI (``fit(..., objective="enum")``), like ``PPCAPair``; it is not a scikit-learn
    estimator: scikit-learn's ``GaussianMixture(covariance_type="diag")`` fits the same model by EM.

    :param init_data: optional data ``(n, ...)``; the means start at ``components`` distinct rows
        drawn with the global RNG and the scales at the data's standard deviation.
    """

    def __init__(self, event_shape, components=10, init_data=None):
        super().__init__()
        if isinstance(components, bool) or int(components) != components or components < 1:
            raise ConfigError(f"components must be a positive integer, got {components!r}")
        self.event_shape = tuple(event_shape)
        n_features = math.prod(self.event_shape)
        self.logits = nn.Parameter(torch.zeros(int(components)))
        self.means = nn.Parameter(torch.randn(int(components), n_features))
        self.log_scales = nn.Parameter(torch.zeros(int(components), n_features))
        if init_data is not None:
            flat = init_data.reshape(len(init_data), -1)
            with torch.no_grad():
                self.means.copy_(flat[torch.randperm(len(flat))[: int(components)]])
                self.log_scales.copy_(flat.std(0).clamp_min(1e-3).log().expand_as(self.log_scales))

    def model(self, x):
        x = x.reshape(len(x), -1)
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Categorical(logits=self.logits), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Normal(self.means[c], self.log_scales[c].exp()).to_event(1), obs=x)

    def guide(self, x):
        """No latent sites to guess: the component is summed out exactly."""

    def _joint_log_prob(self, x):
        """:math:`\\log \\pi_c + \\log \\mathcal N(x; m_c, \\mathrm{diag}\\, s_c^2)`, shape ``(n, components)``."""
        x = x.reshape(len(x), -1)
        components = dist.Normal(self.means, self.log_scales.exp()).to_event(1).log_prob(x[:, None, :])
        return components + torch.log_softmax(self.logits, -1)

    def exact_log_likelihood(self, x):
        """:math:`\\log p(x)` per row, by log-sum-exp over components."""
        return torch.logsumexp(self._joint_log_prob(x), dim=-1)

    def responsibilities(self, x):
        """:math:`p(c \\mid x)` per row, shape ``(n, components)``."""
        return torch.softmax(self._joint_log_prob(x), dim=-1)
