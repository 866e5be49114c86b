r"""A VAE with two stochastic layers (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted
Autoencoders", section 5), as a Pyro model/guide pair.

.. math::

    p_\theta(x, z_1, z_2) = \mathcal N(z_2;\ 0, I)\ \mathcal N\big(z_1;\ \mu_\theta(z_2), \sigma_\theta(z_2)^2\big)\
        \mathrm{Bernoulli}\big(x;\ \mathrm{logits}_\theta(z_1)\big), \qquad
    q_\phi(z_1, z_2 \mid x) = q_\phi(z_1 \mid x)\, q_\phi(z_2 \mid z_1),

both guide factors diagonal (Normal by default, any family of :mod:`pyro_vae.guides` per layer).  Every
conditional is a network of two deterministic tanh layers: Burda's 784-100-50 architecture has 200
units between x and z1 and 100 between z1 and z2 (the defaults, ``latent_dims=(100, 50)``,
``hidden=((200, 200), (100, 100))``; the generative networks use the widths reversed).  The sites
``"z1"``, ``"z2"`` and ``"x"`` lie in ``pyro.plate("data", len(x))``; any data shape works (it is
flattened), e.g. the 8x8 digits.

The guide samples z1 before z2 and the model z2 before z1, so the model's :math:`p(z_1 \mid z_2)` is read
at a z2 drawn *given* z1: a closed-form KL at z1 (``meanfield``) is not the ELBO's term there, and
only Monte Carlo KLs are (``elbo``, ``iwae:K``; see :func:`pyro_vae.inference.traces.mean_field_valid`).

Example::

    >>> from pyro_vae.models import TwoLayerVAE
    >>> vae = TwoLayerVAE((1, 8, 8), latent_dims=(8, 4), hidden=((32, 32), (16, 16)))
    >>> vae.generate(5).shape
    torch.Size([5, 1, 8, 8])
"""

import pyro
import torch
from torch import nn

from pyro_vae import checks
from pyro_vae.errors import ConfigError
from pyro_vae.guides import location, make_guide_family
from pyro_vae.likelihoods import make_likelihood
from pyro_vae.networks import Reshaping
from pyro_vae.priors import make_prior

from .vae import VAE, _checked_event_shape


def _tanh_mlp(in_shape, widths, out_shape):
    """``in -> widths (tanh) -> out`` on tensors with any leading dims, ``in_shape`` and ``out_shape`` flattened."""
    sizes = [int(torch.Size(in_shape).numel()), *widths, int(torch.Size(out_shape).numel())]
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Tanh()]
    return Reshaping(in_shape, out_shape, nn.Sequential(*layers[:-1]))


def _two(name, value, item):
    """``value`` as a pair, each entry checked by ``item``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"{name} must name the two layers (z1, z2), e.g. {name}=(100, 50); got {value!r}")
    return tuple(item(entry) for entry in value)


class TwoLayerVAE(nn.Module):
    """Burda et al.'s two-stochastic-layer VAE (module doc).

    :param event_shape: shape of one data point, e.g. ``(1, 28, 28)`` or ``(784,)``.
    :param latent_dims: sizes of z1 (next to x) and z2 (top).
    :param hidden: hidden widths of the x<->z1 networks and of the z1<->z2 networks (decoders reversed).
    :param guide: guide family name of both layers, or a pair of names (z1, z2), via
        :func:`pyro_vae.guides.make_guide_family` (``normal``, ``cauchy``, ``lowrank``, ``iaf``).
    :param guide_options: options of the guide families (e.g. ``{"rank": 3}``), given to both layers.
    :param likelihood: likelihood name of :func:`pyro_vae.likelihoods.make_likelihood` (binary data: ``bernoulli``).
    """

    def __init__(self, event_shape, latent_dims=(100, 50), hidden=((200, 200), (100, 100)), guide="normal",
                 guide_options=None, likelihood="bernoulli"):
        super().__init__()
        self.event_shape = _checked_event_shape(event_shape)
        self.latent_dims = _two("latent_dims", latent_dims, lambda d: checks.positive_int("latent_dims", d))
        hidden = _two("hidden", hidden, lambda widths: tuple(checks.positive_int("hidden", h) for h in widths))
        guides = _two("guide", (guide, guide) if isinstance(guide, str) else guide, lambda g: g)
        self.init_kwargs = {"event_shape": list(self.event_shape), "latent_dims": list(self.latent_dims),
                            "hidden": [list(h) for h in hidden], "guide": guide, "guide_options": guide_options, "likelihood": likelihood}
        (d1, d2), (near, far) = self.latent_dims, hidden
        self.prior = make_prior("normal", d2)
        self.conditional = make_guide_family("normal", d1)  # p(z1 | z2): a diagonal Normal from network outputs
        # attributes, not a list: a family that is an nn.Module (iaf) registers its parameters here
        self.guide_z1, self.guide_z2 = (make_guide_family(g, d, **(guide_options or {})) for g, d in zip(guides, (d1, d2)))
        self.likelihood = make_likelihood(likelihood, self.event_shape)
        n_params = getattr(self.likelihood, "num_params", 1)
        widths = [getattr(family, "num_outputs_per_latent", 2) * d for family, d in zip((self.guide_z1, self.guide_z2), (d1, d2))]
        self.encoder = nn.ModuleDict({"z1": _tanh_mlp(self.event_shape, near, (widths[0],)),
                                      "z2": _tanh_mlp((d1,), far, (widths[1],))})
        self.decoder = nn.ModuleDict({
            "z1": _tanh_mlp((d2,), far[::-1], (2 * d1,)),
            "x": _tanh_mlp((d1,), near[::-1], self.event_shape if n_params == 1 else (n_params, *self.event_shape)),
        })

    def describe(self):
        """One line naming this model (figure titles)."""
        options = self.init_kwargs
        guides = options["guide"] if isinstance(options["guide"], str) else "/".join(map(str, options["guide"]))
        return (f"TwoLayerVAE: {self.latent_dims[0]}-{self.latent_dims[1]} latents, {guides} guide, {options['likelihood']} "
                f"likelihood, tanh {tuple(options['hidden'][0])}/{tuple(options['hidden'][1])}")

    # ------------------------------------------------------------------ the Pyro pair
    def model(self, x):
        """:math:`z_2 \\sim N(0, I)`, :math:`z_1 \\sim p_\\theta(z_1 \\mid z_2)`, :math:`x \\sim p_\\theta(x \\mid z_1)`."""
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", self.prior())
            z1 = pyro.sample("z1", self.conditional(self.decoder["z1"](z2)))
            pyro.sample("x", self.likelihood(self.decoder["x"](z1)), obs=x)

    def guide(self, x):
        """:math:`z_1 \\sim q_\\phi(z_1 \\mid x)`, :math:`z_2 \\sim q_\\phi(z_2 \\mid z_1)`."""
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", self.guide_z1(self.encoder["z1"](x)))
            pyro.sample("z2", self.guide_z2(self.encoder["z2"](z1)))

    # ------------------------------------------------------------------ conveniences
    check_data = VAE.check_data

    def reconstruct(self, x):
        """Decoder mean at the guide's location of z1: :math:`E[x \\mid z_1 = \\mathrm{loc}\\, q_\\phi(z_1 \\mid x)]`."""
        return self.likelihood(self.decoder["x"](location(self.guide_z1(self.encoder["z1"](x))))).mean

    def generate(self, n, mode="ancestral", alpha=1.0, z=None):
        """``n`` new data points from the prior; ``z`` (``(n, latent_dims[1])``) gives the top-layer latents z2.

        * ``ancestral``: :math:`z_1 \\sim p(z_1 \\mid z_2)`, :math:`x \\sim p(x \\mid z_1)`;
        * ``mean``: :math:`z_1 = E[z_1 \\mid z_2]`, :math:`x = E[x \\mid z_1]` (deterministic given z2);
        * ``mean+scale``: as ``mean``, plus :math:`\\alpha\\, \\mathrm{sd}[x \\mid z_1]`.
        """
        if mode not in ("ancestral", "mean", "mean+scale"):
            raise ConfigError(f"unknown generation mode {mode!r}; expected one of: ancestral, mean, mean+scale")
        z2 = self.prior().sample((n,)) if z is None else z
        layer = self.conditional(self.decoder["z1"](z2))
        observation = self.likelihood(self.decoder["x"](layer.sample() if mode == "ancestral" else location(layer)))
        if mode == "ancestral":
            return observation.sample()
        return observation.mean + (alpha * observation.stddev if mode == "mean+scale" else 0)
