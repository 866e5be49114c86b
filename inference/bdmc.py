r"""Bidirectional Monte Carlo (BDMC): how far AIS at T steps can be from :math:`\log p(x)`, on data like these.

Grosse, Ghahramani & Adams (2015); Wu, Burda, Salakhutdinov & Grosse (2017), Sec. 4.  On data simulated
from the fitted model, :math:`z^\ast \sim p(z)`, :math:`x \sim p(x \mid z^\ast)`, :math:`z^\ast` is an exact
draw from the posterior :math:`p(z \mid x)`.  Forward AIS from :math:`f_0` (:mod:`~.ais`) gives
:math:`\log \hat p(x)` with :math:`E[\hat p] = p(x)`: a stochastic *lower* bound.  Reverse AIS, started at
:math:`z^\ast` and run along the same path from :math:`\beta = 1` to 0, gives weights with
:math:`E[\hat w] = 1/p(x)`, so :math:`-\log \frac1M \sum_m \hat w_m` is a stochastic *upper* bound.  The
true :math:`\log p(x)` lies (in expectation) between the two, and the gap between them bounds the bias of
forward AIS at this T on such data; it shrinks to 0 as T grows.  It says nothing certain about the real
data, which the model may fit worse than its own draws: that is why it is reported as a bracket on
simulated data, beside the AIS figure on real data, never as an error of it.
"""

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from pyro_vae import checks
from pyro_vae.errors import ConfigError

from .ais import CHAINS, LEAPFROG, STEPS, anneal, sigmoid_schedule
from .annealing import AnnealingPath, in_chains
from .weights import log_likelihood
from .plates import find_data_plate


def simulate(model, x, chains_path):
    """One draw ``(latents, x_sim)`` from the model run on the rows of ``x`` with every site sampled:
    the latents in ``chains_path``'s layout (one chain), and the observed site reshaped to ``x``.

    :raises ConfigError: when the model's observed data are not ``x`` itself (one observed site whose
        value is ``x`` reshaped): then simulated data have no form the guide can read.
    """
    with torch.no_grad(), poutine.block():
        observed = [site for site in prune_subsample_sites(poutine.trace(model).get_trace(x)).nodes.values()
                    if site["type"] == "sample" and site["is_observed"]]
    if len(observed) != 1 or observed[0]["value"].numel() != x.numel() or not torch.equal(
            observed[0]["value"].reshape(x.shape), x):
        raise ConfigError("the bidirectional bracket simulates data from the model and feeds them to the guide, so the "
                          "model must observe x itself (one observed site, obs=x or x reshaped); this model observes "
                          f"{[site['name'] for site in observed]}")
    with torch.no_grad(), poutine.block():
        one_chain = in_chains(poutine.uncondition(model), 1, chains_path.plate_dim)
        trace = prune_subsample_sites(poutine.trace(one_chain).get_trace(x))
    latents = {layout.name: trace.nodes[layout.name]["value"] for layout in chains_path.layouts}
    return latents, trace.nodes[observed[0]["name"]]["value"].reshape(x.shape)


@torch.no_grad()
def bdmc(model, guide, x, *, steps=STEPS, chains=CHAINS, leapfrog=LEAPFROG, base="guide", data_plate=None, seed=0):
    r"""The bidirectional bracket on ``len(x)`` points simulated from the model (module doc); ``x``'s rows serve
    only as the template the model runs on.

    :returns: dict with ``lower`` and ``upper`` (mean over the simulated points, nats), their Monte Carlo
        errors ``*_se`` (over chains and points), ``width`` = upper - lower and its error, the same per
        point (``*_per_datapoint``), ``steps``, ``chains``, ``leapfrog``, ``base``, ``points``, ``seed``.
    """
    steps, chains = checks.positive_int("steps", steps), checks.positive_int("chains", chains)
    checks.check_work({"points": len(x), "chains": 2 * chains, "intermediate distributions": steps,
                       "passes a move": leapfrog + 1}, "the bidirectional bracket")
    data_plate = find_data_plate(model, guide, x, data_plate)
    pyro.set_rng_seed(seed)
    latents, simulated = simulate(model, x, AnnealingPath(model, guide, x, chains, data_plate, base))
    result = bracket(model, guide, simulated, latents, steps=steps, chains=chains, leapfrog=leapfrog, base=base,
                     data_plate=data_plate)
    return {**result, "seed": seed}


@torch.no_grad()
def bracket(model, guide, simulated, latents, *, steps=STEPS, chains=CHAINS, leapfrog=LEAPFROG, base="guide",
            data_plate="data"):
    """Forward and reverse AIS on ``simulated`` data whose exact posterior draw is ``latents`` (:func:`simulate`);
    the result of :func:`bdmc` without its seed."""
    betas = sigmoid_schedule(steps)
    forward = AnnealingPath(model, guide, simulated, chains, data_plate, base)
    lower_w, _ = anneal(forward, forward.initial(), betas, leapfrog)
    start = forward.flatten(latents).expand(chains, -1, -1).clone()
    reverse_w, _ = anneal(forward, start, betas.flip(0), leapfrog)
    lower, lower_se = _log_mean(lower_w)
    upper, upper_se = _log_mean(reverse_w)
    upper = -upper  # the reverse weights estimate 1 / p(x)
    result = {"steps": steps, "chains": chains, "leapfrog": leapfrog, "base": base, "points": len(simulated)}
    for name, value, se in (("lower", lower, lower_se), ("upper", upper, upper_se),
                            ("width", upper - lower, (lower_se**2 + upper_se**2).sqrt())):
        result[name], result[f"{name}_se"] = value.mean().item(), (se.pow(2).sum().sqrt() / len(value)).item()
        result[f"{name}_per_datapoint"] = value.tolist()
    return result


def _log_mean(log_w):
    """Per point, the log of the mean of ``(M, N)`` chain weights and its delta-method error."""
    estimate = log_likelihood(log_w.T)
    return estimate["per_datapoint"], estimate["per_datapoint_mc_se"]
