"""Two effect handlers that every objective sees: subsample scaling and the KL weight beta.

Both act on sample sites as they are traced, so they apply to our models and to a user's own
model/guide pair alike, under any ELBO (written by hand because Pyro's ``poutine.scale`` scales
every site, and these must scale only some).
"""

from pyro.poutine.messenger import Messenger

from pyro_vae.errors import ConfigError


class DataSubsampleMessenger(Messenger):
    r"""Treat ``pyro.plate(plate_name, B)`` as a subsample of size B from ``full_size`` data points.

    Sites inside the plate get their log-density scaled by :math:`N/B`, exactly as
    ``pyro.plate(name, N, subsample=...)`` would, and the plate's frame records ``full_size = N``
    so that estimators that must undo the scale before a non-linearity (the importance-weighted
    bound, see :class:`~pyro_vae.inference.iwae.IWAE`) can.  Sites outside the plate (global
    latents) are left unscaled.  A plate the model already subsamples itself is left alone.
    """

    def __init__(self, plate_name, full_size):
        super().__init__()
        self.plate_name = plate_name
        self.full_size = int(full_size)

    def _process_message(self, msg):
        if msg["type"] != "sample":
            return
        stack = msg["cond_indep_stack"]
        for i, frame in enumerate(stack):
            if frame.name != self.plate_name:
                continue
            if frame.full_size not in (None, frame.size):
                return
            msg["cond_indep_stack"] = stack[:i] + (frame._replace(full_size=self.full_size),) + stack[i + 1 :]
            msg["scale"] = msg["scale"] * (self.full_size / frame.size)
            return


class LatentScaleMessenger(Messenger):
    r"""Multiply the log-density of every *latent* (unobserved) sample site by ``beta``.

    Wrapped around both model and guide it turns the ELBO into the beta-ELBO of Higgins et al.
    (2017), :math:`E_q[\log p(x\mid z)] - \beta\, \mathrm{KL}(q(z\mid x) \,\|\, p(z))`, for every
    objective, since it is the same site scale ``poutine.scale`` sets (but only on latent sites, and
    ``beta = 0`` is allowed).  ``beta`` may be changed between steps (annealing).
    """

    def __init__(self, beta=1.0):
        super().__init__()
        self.beta = beta

    @property
    def beta(self):
        return self._beta

    @beta.setter
    def beta(self, value):
        if not value >= 0:
            raise ConfigError(f"beta must be >= 0, got {value!r}")
        self._beta = float(value)

    def _process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"] and self._beta != 1.0:
            msg["scale"] = msg["scale"] * self._beta
