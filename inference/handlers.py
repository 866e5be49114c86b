"""Two effect handlers that every objective sees: subsample scaling and the KL weight beta.

Both act on sample sites as they are traced, so they apply to our models and to a user's own
model/guide pair alike, under any ELBO (written by hand because Pyro's ``poutine.scale`` scales
every site, and these must scale only some).
"""

import functools

from pyro.poutine.messenger import Messenger

from pyro_vae.errors import ConfigError

from .plates import plate_rows


class DataSubsampleMessenger(Messenger):
    r"""Treat ``pyro.plate(plate_name, B)`` as a subsample of size B from ``full_size`` data points.

    Sites inside the plate get their log-density scaled by :math:`N/B`, exactly as
    ``pyro.plate(name, N, subsample=...)`` would, and the plate's frame records ``full_size = N``
    so that estimators that must undo the scale before a non-linearity (the importance-weighted
    bound, see :class:`~pyro_vae.inference.iwae.IWAE`) can.  Sites outside the plate (global
    latents) are left unscaled.  A plate the model already subsamples itself is left alone.  A plate
    written without a size (``pyro.plate("data")``) takes the rows of the data it is called with; its
    frame (size -1 in Pyro) is given that size, so that the scale is N/B and never N/(-1).
    """

    def __init__(self, plate_name, full_size):
        super().__init__()
        self.plate_name = plate_name
        self.full_size = int(full_size)
        self.batch_size = None

    def __call__(self, fn):
        """``fn`` under this handler, which notes the rows B of each call's data (its first argument): a
        plate written without a size (``pyro.plate("data")``, as Pyro's examples do) has size B."""
        @functools.wraps(fn)
        def handled(*args, **kwargs):
            self.batch_size = len(args[0]) if args and hasattr(args[0], "__len__") else None
            with self:
                return fn(*args, **kwargs)

        return handled

    def _process_message(self, msg):
        if msg["type"] != "sample":
            return
        stack = msg["cond_indep_stack"]
        for i, frame in enumerate(stack):
            if frame.name != self.plate_name:
                continue
            if frame.size == -1:
                frame = frame._replace(size=self._unsized_plate_rows(msg, frame))
            elif frame.full_size not in (None, frame.size):
                return
            msg["cond_indep_stack"] = stack[:i] + (frame._replace(full_size=self.full_size),) + stack[i + 1 :]
            msg["scale"] = msg["scale"] * (self.full_size / frame.size)
            return

    def _unsized_plate_rows(self, msg, frame):
        """B for a site of a plate without a size, checked to be the site's extent along the plate's dim
        (Pyro leaves such a dim unbroadcast: a site without it would be scaled as if it had B rows)."""
        extent = plate_rows(frame, msg)
        if self.batch_size is None or extent != self.batch_size:
            raise ConfigError(
                f"site {msg['name']!r} lies in plate {frame.name!r}, which has no size, but has {extent} row(s) along "
                f"its dim {frame.dim} where the data have {self.batch_size}; give the plate its size, "
                f"pyro.plate({frame.name!r}, len(x))")
        return extent


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
