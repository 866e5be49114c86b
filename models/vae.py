r"""The variational autoencoder as a Pyro model/guide pair built from swappable parts.

Generative model and amortised guide (Kingma & Welling 2014; Rezende et al. 2014):

.. math::

    p_\theta(x, z) = p(z)\, p_\theta(x \mid z), \qquad
    q_\phi(z \mid x) = F\big(z;\ \mu_\phi(x), s_\phi(x)\big),

with the prior :math:`p(z)` from :mod:`pyro_vae.priors`, the likelihood from
:mod:`pyro_vae.likelihoods`, the guide family from :mod:`pyro_vae.guides` (location-scale as written
here, or a low-rank Gaussian, or an inverse autoregressive flow) and encoder/decoder from
:mod:`pyro_vae.networks`.  ``model(x)`` and ``guide(x)`` are plain Pyro functions with the latent
site ``"z"`` and the observed site ``"x"`` inside ``pyro.plate("data", len(x))``; any objective,
:func:`pyro_vae.inference.fit` and the analyses use them as they would a user's own pair.

Example::

    >>> from pyro_vae.models import VAE
    >>> vae = VAE((1, 8, 8), latent_dim=8, prior="laplace", likelihood="cbernoulli", hidden=(128,))
    >>> vae.guide(torch.rand(5, 1, 8, 8))    # doctest: +SKIP
"""

import pyro
import torch
from torch import nn

from pyro_vae import checks
from pyro_vae.errors import ConfigError, DataError
from pyro_vae.guides import location, make_guide_family, scale
from pyro_vae.likelihoods import make_likelihood
from pyro_vae.networks import make_network
from pyro_vae.priors import make_prior


def _checked_event_shape(event_shape):
    try:
        shape = tuple(event_shape)
    except TypeError:
        shape = None
    if not shape or not all(checks.is_number(s) and int(s) == s and s >= 1 for s in shape):
        raise ConfigError(f"event_shape must be a non-empty tuple of positive integers like (1, 28, 28) or (784,), "
                          f"got {event_shape!r}")
    return tuple(int(s) for s in shape)


def _part_name(part):
    return part if isinstance(part, str) else type(part).__name__


class VAE(nn.Module):
    """A VAE whose prior, guide family, likelihood and networks are chosen by name or given as objects.

    :param event_shape: shape of one data point, e.g. ``(1, 28, 28)`` or ``(784,)``.
    :param latent_dim: number of latent coordinates d.
    :param prior: prior name (``normal``, ``laplace``, ``cauchy``, ``studentt``, ``mixture``, ``vamp``) or module.
    :param prior_options: keyword options of the prior (``scale``, ``df``, ``components``); a prior with a
        ``bind(encode, event_shape)`` method (``vamp``) is bound to this VAE's encoder.
    :param guide: guide family name (``normal``, ``cauchy``, ``lowrank``, ``iaf``) or callable mapping encoder
        output to q (:mod:`pyro_vae.guides`).
    :param guide_options: keyword options of the guide family (``rank`` of ``lowrank``; ``layers``, ``context``,
        ``hidden`` of ``iaf``).
    :param likelihood: likelihood name (``bernoulli``, ``cbernoulli``, ``gaussian``, ``laplace``) or module.
    :param sigma_x: observation scale of ``gaussian``/``laplace``: a number, ``shared``,
        ``per-feature`` or ``per-sample``.
    :param min_scale: floor of a ``per-sample`` scale (default 1e-3; see :mod:`pyro_vae.likelihoods`).
    :param network: ``mlp``, ``conv`` or ``linear`` (the decoder mirrors the encoder).
    :param hidden: hidden widths of the ``mlp`` encoder (the decoder uses them reversed).

    The defaults are the CLI's (``pyro-vae fit``): 8 latents, hidden widths (256, 64), a Normal prior and
    guide, a Bernoulli likelihood (binary data: ``load_data(name, binarize="dynamic")`` with
    ``fit(..., dynamic_binarization=True)``, as the CLI does for ``bernoulli``).
    """

    def __init__(
        self,
        event_shape,
        latent_dim=8,
        prior="normal",
        prior_options=None,
        guide="normal",
        guide_options=None,
        likelihood="bernoulli",
        sigma_x=1.0,
        min_scale=None,
        network="mlp",
        hidden=(256, 64),
    ):
        super().__init__()
        event_shape, latent_dim = _checked_event_shape(event_shape), checks.positive_int("latent_dim", latent_dim)
        hidden = checks.widths("hidden", hidden)
        self.init_kwargs = {
            "event_shape": list(event_shape), "latent_dim": latent_dim, "prior": prior,
            "prior_options": prior_options, "guide": guide, "guide_options": guide_options, "likelihood": likelihood,
            "sigma_x": sigma_x, "min_scale": min_scale, "network": network, "hidden": list(hidden),
        }
        self.event_shape, self.latent_dim = event_shape, latent_dim
        parts = (prior, prior_options, guide, guide_options, likelihood, sigma_x, min_scale, network, hidden)
        with torch.device("meta"):  # shapes only: what the parameters would cost, before allocating them
            self._build(*parts)
        size = sum(p.numel() * p.element_size() for p in self.parameters())
        checks.check_memory(4 * size, f"this VAE's {sum(p.numel() for p in self.parameters()):,} parameters (with their "
                            f"gradients and Adam's two moments)")
        self._build(*parts)

    def _build(self, prior, prior_options, guide, guide_options, likelihood, sigma_x, min_scale, network, hidden):
        self.prior = make_prior(prior, self.latent_dim, **(prior_options or {}))
        self.likelihood = make_likelihood(likelihood, self.event_shape, sigma_x=sigma_x, min_scale=min_scale)
        self.guide_family = make_guide_family(guide, self.latent_dim, **(guide_options or {}))
        n_params = getattr(self.likelihood, "num_params", 1)
        decoder_shape = self.event_shape if n_params == 1 else (n_params, *self.event_shape)
        encoder_width = getattr(self.guide_family, "num_outputs_per_latent", 2) * self.latent_dim
        self.encoder = make_network(network, self.event_shape, (encoder_width,), hidden)
        self.decoder = make_network(network, (self.latent_dim,), decoder_shape, hidden, decoder=True)
        if hasattr(self.prior, "bind"):  # a prior made of the guide (the VampPrior)
            self.prior.bind(self.encode, self.event_shape)

    def describe(self):
        """One line naming this VAE (figure titles): prior, guide, likelihood, latents, network."""
        options = self.init_kwargs
        network = f"{options['network']} {tuple(options['hidden'])}" if options["network"] == "mlp" else options["network"]
        sigma = f" (sigma_x {options['sigma_x']})" if _part_name(options["likelihood"]) in ("gaussian", "laplace") else ""
        guide = getattr(self.guide_family, "label", _part_name(options["guide"]))  # with its key option: iaf(4)
        return (f"VAE: {_part_name(options['prior'])} prior, {guide} guide, {_part_name(options['likelihood'])}"
                f"{sigma} likelihood, {self.latent_dim} latents, {network}")

    # ------------------------------------------------------------------ the Pyro pair
    def model(self, x):
        """:math:`z \\sim p(z)`, :math:`x \\sim p_\\theta(x \\mid z)`, one pair per row of ``x``."""
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x):
        """:math:`z \\sim q_\\phi(z \\mid x)`, amortised by the encoder."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.encode(x))

    # ------------------------------------------------------------------ conveniences
    def encode(self, x):
        """The guide distribution :math:`q_\\phi(z \\mid x)` (batch shape ``x.shape[:1]``)."""
        return self.guide_family(self.encoder(x))

    def decode(self, z):
        """The observation distribution :math:`p_\\theta(x \\mid z)`."""
        return self.likelihood(self.decoder(z))

    def reconstruct(self, x):
        """Decoder mean at the guide's location: :math:`E[x \\mid z = \\mu_\\phi(x)]`."""
        return self.decode(location(self.encode(x))).mean

    def generate(self, n, mode="ancestral", alpha=1.0, z=None):
        """``n`` new data points from the prior, by one of the three modes of the VAE implementation thesis (ch. 5):

        * ``ancestral`` (Algorithm 6): :math:`z \\sim p(z)`, :math:`x \\sim p_\\theta(x \\mid z)`;
        * ``mean`` (Algorithm 7, "deterministic"): :math:`z \\sim p(z)`, :math:`x = E[x \\mid z]`;
        * ``mean+scale``: :math:`x = E[x \\mid z] + \\alpha\\, \\mathrm{sd}[x \\mid z]`.

        Pass ``z`` (``(n, latent_dim)``) to decode given latents instead of prior draws, e.g. the
        same draws under every mode.
        """
        z = self.prior().sample((n,)) if z is None else z
        observation = self.decode(z)
        if mode == "ancestral":
            return observation.sample()
        if mode == "mean":
            return observation.mean
        if mode == "mean+scale":
            return observation.mean + alpha * observation.stddev
        raise ConfigError(f"unknown generation mode {mode!r}; expected one of: ancestral, mean, mean+scale")

    def check_data(self, x):
        """Raise :class:`DataError` unless ``x`` has rows of ``event_shape`` inside the likelihood's support."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise DataError(
                f"data of shape {tuple(x.shape)} do not fit this model: expected (n, {', '.join(map(str, self.event_shape))})"
            )
        check = getattr(self.likelihood, "check_data", None)
        if check is not None:
            check(x)

    def posterior_location_scale(self, x):
        """Location and scale of :math:`q_\\phi(z \\mid x)` (mean and sd for a Normal guide)."""
        q = self.encode(x)
        return location(q), scale(q)
