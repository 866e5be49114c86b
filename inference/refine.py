r"""Semi-amortised refinement at evaluation (Kim, Wiseman, Miller, Sontag & Rush 2018, "Semi-Amortized
Variational Autoencoders"), with the decoder fixed.

The encoder gives each data point its guide parameters :math:`\lambda_0 = \mathrm{enc}_\phi(x)`; S steps
of stochastic gradient ascent on that point's ELBO refine them,

.. math::

    \lambda_{s+1} = \lambda_s + \eta_s \nabla_\lambda \mathrm{ELBO}(x; \theta, \lambda_s), \qquad
    \text{gain}(x) = \mathrm{ELBO}(x; \lambda_S) - \mathrm{ELBO}(x; \lambda_0) \ge 0 \text{ in expectation},

the part of the amortisation gap (Cremer, Li & Duvenaud 2018) that S steps close.  This is the per-point
guide :math:`q^*_x` of :mod:`pyro_vae.inference.gaps`, run for a few steps (Adam, cosine-decayed rate):
every pair whose latent sites have a location and a scale works (location-scale families, ``lowrank``,
a full-covariance Normal, and a flow such as ``iaf``, whose base distribution is refined under the
transforms its encoder conditioned), a site conditioned on an upstream draw (z2 of the two-layer VAE) is
refined through per-point offsets on its amortised parameters (see there), and a family without a
location and a scale is refused with the reason.  Both ELBOs are mean log importance
weights of ``draws`` fresh draws per point, so their Monte Carlo errors are those of
:func:`~pyro_vae.inference.estimators.importance_log_weights`'s draws; the two guides' draws are
independent, so the gain's variance is the sum of theirs.
"""

from pyro_vae import checks

from .gaps import optimised_bounds, summarise


#: Draws per gradient step of the per-point refinement, by default.
OPTIMISATION_PARTICLES = 16


def refine(model, guide, x, steps=20, lr=0.05, draws=100, optimisation_particles=OPTIMISATION_PARTICLES, block_size=100, seed=0,
           data_plate=None):
    """Refine the amortised guide per data point and report what it gains (module doc).

    :param x: the data points, on the model's device.
    :param steps: gradient steps S per point (Kim et al. use 10-20); ``lr``: Adam's initial rate.
    :param draws: draws per point behind each ELBO estimate.
    :param optimisation_particles: draws per gradient step.
    :param block_size: points refined together (memory).
    :param data_plate: the data plate's name (None: found); global latents are fixed to one guide draw.

    The caller's random state is left as it was.

    :returns: ``elbo_amortised``, ``elbo_refined`` and ``refinement_gain`` (refined - amortised, the
        amortisation gap closed), mean nats per data point, each with ``*_mc_se``; the per-point values
        under ``per_datapoint`` and their errors under ``per_datapoint_mc_se``; and ``steps``, ``lr``, ``draws``.
    """
    steps, draws = checks.positive_int("steps", steps), checks.positive_int("draws", draws)
    lr = checks.positive_float("lr", lr)
    bounds = optimised_bounds(model, guide, x, draws, steps, lr, optimisation_particles, block_size, seed, data_plate)
    amortised, refined = bounds["amortised"], bounds["optimised"]
    per_point = {"elbo_amortised": amortised["elbo"], "elbo_refined": refined["elbo"],
                 "refinement_gain": refined["elbo"] - amortised["elbo"]}
    variances = {"elbo_amortised": amortised["elbo_var"], "elbo_refined": refined["elbo_var"],
                 "refinement_gain": amortised["elbo_var"] + refined["elbo_var"]}
    return {**summarise(per_point, variances), "steps": steps, "lr": lr, "draws": draws}
