r"""Is q(z|x) calibrated?  Simulation-based calibration of an amortised guide (Talts, Betancourt, Simpson,
Vehtari & Gelman 2018).

Draw :math:`z^\ast \sim p(z)`, :math:`x \sim p(x \mid z^\ast)` from the fitted model (:func:`~.bdmc.simulate`);
then :math:`z^\ast` is an exact draw of :math:`p(z \mid x)`.  If :math:`q(z \mid x) = p(z \mid x)`, the rank of
any coordinate of :math:`z^\ast` among L draws of :math:`q(z \mid x)` is uniform on :math:`\{0, \dots, L\}`, over
simulations.  An amortised guide makes this cheap: one encoder pass per simulation, no refitting.

Per latent coordinate (each site's value mapped to the real line by ``biject_to`` of its support and
flattened, as :mod:`~.annealing` holds it: any function of z has uniform ranks under calibration), over N
simulations:

* ``pit``: the randomised probability integral transform :math:`u = (r + U)/(L + 1)`, :math:`U \sim U(0, 1)`,
  exactly uniform on (0, 1) under calibration whatever L (ties broken at random);
* ``ks_pvalue``: the Kolmogorov-Smirnov test of those u against U(0, 1) (SciPy), and ``uniform``: p above
  0.01 / D (Bonferroni over the D coordinates);
* ``coverage_50``, ``coverage_90``: the share of simulations whose :math:`z^\ast` lies in q's central 50% and
  90% intervals (u within [0.25, 0.75] and [0.05, 0.95]), with binomial errors ``coverage_se_*``.  A guide
  too wide covers more than the nominal share and piles u in the middle (the ECDF difference goes down, then
  up); one too narrow covers less and piles u at both ends (up, then down: an under-dispersed q, the usual
  failure of the reverse KL); a shifted one piles them on one side (a hump or a dip).

The figure (:func:`pyro_vae.plots.plot_calibration`) is ArviZ's ECDF-difference plot of u against U(0, 1)
with simultaneous 95% bands (Säilynoja, Bürkner & Vehtari 2022).
"""

import math

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from pyro_vae import checks
from pyro_vae.errors import ConfigError

from .annealing import AnnealingPath
from .bdmc import simulate
from .plates import find_data_plate
from .traces import random_state_kept

#: Defaults: simulations N and draws L of q(z|x) per simulation (L + 1 = 100 possible ranks).
SIMULATIONS, DRAWS = 200, 99


@torch.no_grad()
def calibration(model, guide, x, simulations=SIMULATIONS, draws=DRAWS, seed=0, data_plate=None):
    """Simulation-based calibration of ``guide`` for ``model`` (module doc); ``x``'s rows serve only as the
    template the model runs on (repeated if there are fewer than ``simulations``).  The caller's random
    state is left as it was.

    :returns: dict with ``coordinates`` (names ``site[j]``), and per coordinate ``ks_pvalue``, ``uniform``,
        ``coverage_50``, ``coverage_90``; ``coverage_se_50``, ``coverage_se_90``, ``simulations``, ``draws``,
        ``uniform_threshold``; and ``pit``, an ``(N, D)`` NumPy array (for the figure, not for JSON).
    :raises ConfigError: when the model does not observe ``x`` itself (:func:`~.bdmc.simulate`), or a latent is
        discrete.
    """
    from scipy import stats

    simulations, draws = checks.positive_int("simulations", simulations), checks.positive_int("draws", draws)
    checks.check_work({"simulations": simulations, "draws a simulation": draws}, "the calibration check")
    template = x[torch.arange(simulations, device=x.device) % len(x)]
    data_plate = find_data_plate(model, guide, x[:simulations], data_plate)
    with random_state_kept(x.device), poutine.block(), torch.no_grad():
        guide_trace = prune_subsample_sites(poutine.trace(guide).get_trace(x[:1]))
    discrete = [name for name, site in guide_trace.nodes.items()
                if site["type"] == "sample" and not site["is_observed"] and site["fn"].support.is_discrete]
    if discrete:
        raise ConfigError(f"the calibration check ranks latents on the real line; site {discrete[0]!r} is discrete "
                          f"({type(guide_trace.nodes[discrete[0]]['fn']).__name__}), where ranks tie")
    with random_state_kept(x.device):
        pyro.set_rng_seed(seed)
        latents, simulated = simulate(model, template, AnnealingPath(model, guide, template, 1, data_plate))
        path = AnnealingPath(model, guide, simulated, draws, data_plate)
        drawn, truth = path.initial(), path.flatten(latents)  # (L, N, D) and (1, N, D), unconstrained
        ranks = (drawn < truth).sum(0).double()
        pit = ((ranks + torch.rand(ranks.shape, dtype=torch.float64, device=ranks.device)) / (draws + 1)).cpu().numpy()
    names = [f"{layout.name}[{j}]" for layout in path.layouts for j in range(layout.stop - layout.start)]
    pvalues = [float(stats.kstest(pit[:, d], "uniform").pvalue) for d in range(pit.shape[1])]
    threshold = 0.01 / len(names)
    return {
        "coordinates": names, "simulations": simulations, "draws": draws,
        "ks_pvalue": pvalues, "uniform": [p > threshold for p in pvalues], "uniform_threshold": threshold,
        "coverage_50": np.mean((pit >= 0.25) & (pit <= 0.75), axis=0).tolist(),
        "coverage_90": np.mean((pit >= 0.05) & (pit <= 0.95), axis=0).tolist(),
        "coverage_se_50": math.sqrt(0.25 / simulations), "coverage_se_90": math.sqrt(0.09 / simulations),
        "pit": pit,
    }
