r"""Annealed importance sampling (AIS) of :math:`\log p(x)` for a pair's local latents.

Neal (2001): along the path :math:`f_t = f_0^{1-\beta_t} p(x, \cdot)^{\beta_t}`,
:math:`0 = \beta_0 < \dots < \beta_T = 1`, from the normalised :math:`f_0` (the guide :math:`q(z \mid x)`,
or the prior), a chain draws :math:`z_0 \sim f_0`, and for :math:`t = 1, \dots, T` adds

.. math::

    \log w \mathrel{+}= \log f_t(z_{t-1}) - \log f_{t-1}(z_{t-1})
        = (\beta_t - \beta_{t-1}) \big(\log p(x, z_{t-1}) - \log f_0(z_{t-1})\big),

then moves :math:`z_t \sim K_t(\cdot \mid z_{t-1})`, an HMC kernel that leaves :math:`f_t` invariant
(:func:`~.annealing.hmc_transition`).  :math:`E[w] = p(x)` exactly, for any T: the estimate
:math:`\log \frac1M \sum_m w_m` over M independent chains is a stochastic lower bound whose bias
shrinks as T grows, and its spread over chains is the Monte Carlo error
(:func:`~.weights.log_likelihood` on the ``(N, M)`` chain log weights: the delta-method error, PSIS
:math:`\hat k` of the chain weights for M >= 25).  This is how Wu, Burda, Salakhutdinov &
Grosse (2017) evaluate decoder-based models; whether it is close enough at this T is what the
bidirectional bracket says (:mod:`~pyro_vae.inference.bdmc`).

**Schedule.**  Sigmoidal (Grosse, Ghahramani & Adams 2015, Sec. 5; Wu et al. 2017):
:math:`\tilde\beta_t = \sigma(\delta(2t/T - 1))`, rescaled to run from 0 to 1, with :math:`\delta = 4`.
The variance of an increment is :math:`(\Delta\beta)^2 \mathrm{Var}_{f_t}[\log p(x, z) - \log f_0(z)]`,
and that variance is largest at both ends (near :math:`\beta = 0` the chains still sit in :math:`f_0`'s
bulk where the log-ratio swings most; near 1 the posterior is sharpest); the sigmoid spends its steps
there rather than evenly.

**Transitions.**  ``leapfrog`` velocity-Verlet steps per HMC move and one step size per data point,
shared by its M chains, first set by ten pilot moves at :math:`\beta_0` (:func:`pilot_step_size`), then
multiplied by 1.02 after a move whose acceptance (over the point's chains) was
above ``target_acceptance`` (0.65, Wu et al. 2017) and by 0.98 otherwise.  Adapting on the chains' own
acceptance makes each kernel depend on the chain's past, which AIS's unbiasedness does not cover; Wu et al.
do the same, and the exactness tests (``tests/test_ais.py``) bound the effect on the linear-Gaussian model.
"""

import math
from dataclasses import asdict, dataclass

import pyro
import torch

from pyro_vae import checks
from pyro_vae.options import Options, option
from pyro_vae.progress import progress_bar

from .annealing import BASES, AnnealingPath, hmc_transition
from .estimators import DEFAULT_MAX_MEMORY, load_chunks, save_chunks
from .weights import log_likelihood
from .plates import find_data_plate

#: Defaults: intermediate distributions T, chains M (>= 25 so PSIS can fit the chain weights' tail),
#: leapfrog steps per HMC move, the acceptance rate the step sizes adapt toward, and the first step size.
STEPS, CHAINS, LEAPFROG, TARGET_ACCEPTANCE, INITIAL_STEP_SIZE = 500, 32, 10, 0.65, 0.05
#: kappa of the step-size update after each move (module doc).
ADAPTATION_RATE = 1.0
#: The factors of the pilot moves that set each point's first step size (:func:`pilot_step_size`):
#: 0.05 x 2^4 .. 0.05 / 2^4 first, then finer.
PILOT_FACTORS = (2.0, 2.0, 2.0, 2.0, 1.5, 1.5, 1.25, 1.25, 1.1, 1.1)
#: Steepness of the sigmoidal schedule.
SIGMOID_STEEPNESS = 4.0
#: Bytes per (chain, point, data feature) when sizing batches: the decoder's activations kept for the
#: backward pass of every leapfrog step, in float32, with room to spare (:data:`~.estimators.BYTES_PER_PARTICLE_FEATURE`
#: doubled for the gradients).
BYTES_PER_CHAIN_FEATURE = 64


#: Where :func:`~.evaluate.evaluate` runs AIS: on every point, or only where IS's k-hat is above its threshold.
WHERE = ("all", "unreliable")
#: Points simulated for the bidirectional bracket by default (:mod:`~.bdmc`).
BRACKET_POINTS = 10


@dataclass(frozen=True)
class AISOptions(Options):
    """How :func:`~.evaluate.evaluate` runs AIS (module doc): T ``steps``, M ``chains``, ``leapfrog`` steps a move,
    the ``base`` of the path (``guide`` or ``prior``), ``where`` (:data:`WHERE`), and the simulated points of
    the bidirectional bracket (``bracket_points``; 0 for none).  Declared once (:mod:`pyro_vae.options`): the CLI's
    AIS flags are these fields (``where`` comes from ``--estimator``)."""

    command = "ais"

    steps: int = option(STEPS, "AIS: intermediate distributions T", checks.positive_int, int)
    chains: int = option(CHAINS, "AIS: independent chains M per point", checks.positive_int, int)
    leapfrog: int = option(LEAPFROG, "AIS: leapfrog steps per HMC move", checks.positive_int, int)
    base: str = option("guide", "AIS: the path starts at q(z|x) (guide) or at the prior", choices=BASES)
    where: str = option("all", "AIS on every point (all) or where IS's k-hat is above the threshold (unreliable)",
                        choices=WHERE, cli=False)
    bracket_points: int = option(BRACKET_POINTS, "AIS: points simulated from the model for the bidirectional bracket "
                                 "(0: none)", checks.nonnegative_int, int)

    def annealing(self):
        """The keyword arguments of :func:`ais_log_weights` and :func:`~.bdmc.bdmc`."""
        return {key: value for key, value in asdict(self).items() if key in ("steps", "chains", "leapfrog", "base")}


def sigmoid_schedule(steps, steepness=SIGMOID_STEEPNESS):
    r""":math:`\beta_0 = 0 < \beta_1 < \dots < \beta_T = 1`, sigmoidal (module doc); float64 tensor of T + 1."""
    steps = checks.positive_int("steps", steps)
    if steps == 1:
        return torch.tensor([0.0, 1.0], dtype=torch.float64)
    raw = torch.sigmoid(steepness * (2 * torch.arange(steps + 1, dtype=torch.float64) / steps - 1))
    return (raw - raw[0]) / (raw[-1] - raw[0])


def pilot_step_size(path, u, parts, beta, leapfrog=LEAPFROG, target_acceptance=TARGET_ACCEPTANCE):
    """Per-point step sizes for moves at ``beta``, from :data:`INITIAL_STEP_SIZE` by :data:`PILOT_FACTORS`: each
    pilot move multiplies a point's step by the factor where its chains accepted more than
    ``target_acceptance``, divides it otherwise.  The moves leave :math:`f_\\beta` invariant, so the chains
    end where they would have (in distribution).  :returns: ``(u, parts, step_size)``."""
    step = torch.full((u.shape[1],), INITIAL_STEP_SIZE, device=u.device)
    for factor in PILOT_FACTORS:
        u, parts, moved = hmc_transition(path, u, parts, beta, step, leapfrog)
        step = step * torch.where(moved.double().mean(0) > target_acceptance, factor, 1 / factor).to(step.dtype)
    return u, parts, step


def anneal(path, u, betas, leapfrog=LEAPFROG, target_acceptance=TARGET_ACCEPTANCE, step_size=None):
    r"""Run every chain of ``path`` from ``u`` along ``betas`` (increasing: forward AIS from :math:`f_0`;
    decreasing from 1: reverse AIS from a posterior draw, :mod:`~.bdmc`).

    :returns: ``(log_weights, acceptance)``, both ``(chains, points)``: the float64 sum of the log
        increments, and each chain's share of accepted moves.
    """
    parts = tuple(part.detach() for part in path.log_densities(u))
    if step_size is None:
        u, parts, step = pilot_step_size(path, u, parts, betas[0].item(), leapfrog, target_acceptance)
    else:
        step = step_size
    log_w = torch.zeros(u.shape[:2], dtype=torch.float64, device=u.device)
    accepted = torch.zeros(u.shape[:2], dtype=torch.float64, device=u.device)
    moves = len(betas) - 2
    for t in range(1, len(betas)):
        base, joint, _ = parts
        log_w += (betas[t] - betas[t - 1]).item() * (joint - base).double()
        if t == len(betas) - 1:
            break  # the last move changes no weight
        u, parts, moved = hmc_transition(path, u, parts, betas[t].item(), step, leapfrog)
        accepted += moved
        step = step * torch.exp(ADAPTATION_RATE * (moved.double().mean(0) - target_acceptance)).to(step.dtype)
    return log_w, accepted / max(moves, 1)


@torch.no_grad()
def ais_log_weights(model, guide, x, *, steps=STEPS, chains=CHAINS, leapfrog=LEAPFROG, base="guide",
                    max_memory=DEFAULT_MAX_MEMORY, data_plate=None, seed=None, checkpoint=None, progress=None):
    r"""AIS log weights of every chain, ``(N, chains)``, and the chains' acceptance rates ``(N, chains)``.

    ``x`` is split into batches of points sized so that a batch's ``chains`` x points x features stay
    near ``max_memory`` bytes (:data:`BYTES_PER_CHAIN_FEATURE`).  With ``seed`` each batch is seeded by
    ``(seed, batch)``; with ``checkpoint`` finished batches are kept there (atomically), so an interrupted
    run called again with the same arguments continues and returns the same weights.  The pair must have
    no global latent left (:func:`~.plates.local_pair` fixes them first).
    """
    steps, chains, leapfrog = (checks.positive_int(name, value) for name, value in
                               (("steps", steps), ("chains", chains), ("leapfrog", leapfrog)))
    max_memory = checks.positive_int("max_memory", max_memory)
    checks.check_finite(x, "data")
    checks.check_work({"points": len(x), "chains": chains, "intermediate distributions": steps,
                       "passes a move": leapfrog + 1}, "annealed importance sampling")
    points = max(1, min(len(x), int(max_memory // (BYTES_PER_CHAIN_FEATURE * max(1, x[0].numel()) * chains))))
    key = {"num_datapoints": len(x), "steps": steps, "chains": chains, "leapfrog": leapfrog, "base": base,
           "points": points, "seed": seed}
    done = load_chunks(checkpoint, key, x.device)
    betas = sigmoid_schedule(steps)
    data_plate = find_data_plate(model, guide, x[:points], data_plate)
    batches = list(x.split(points))
    with progress_bar(total=len(x), initial=sum(len(b) for b in batches[:len(done)]), progress=progress,
                      desc=f"AIS (T={steps}, M={chains})", unit="point") as bar:
        for index, batch in enumerate(batches):
            if index < len(done):
                continue
            if seed is not None:
                pyro.set_rng_seed((seed * 1_000_003 + index) % 2**32)
            path = AnnealingPath(model, guide, batch, chains, data_plate, base)
            log_w, acceptance = anneal(path, path.initial(), betas, leapfrog)
            done.append(torch.stack([log_w.T, acceptance.T]).cpu())
            if checkpoint is not None:
                save_chunks(checkpoint, key, done)
            bar.update(len(batch))
    stacked = torch.cat(done, dim=1)
    return stacked[0], stacked[1]


def ais_log_likelihood(model, guide, x, **options):
    r"""The AIS estimate of :math:`\log p(x)` (module doc) with :func:`~.weights.log_likelihood`'s
    delta-method error and k-hat over the chains (no replicate error: with M = 32 chains its k-hat
    correction is noise; a large k-hat flags a point whose error may be understated, and the bias is what the
    bracket of :mod:`~.bdmc` measures), plus ``estimator``, ``steps``, ``chains``, ``leapfrog``, ``base``
    and the acceptance rate per point (``acceptance_per_datapoint``) and overall (``acceptance``).
    ``options`` are :func:`ais_log_weights`'."""
    log_w, acceptance = ais_log_weights(model, guide, x, **options)
    result = log_likelihood(log_w, replicates=None)
    per_point = acceptance.double().mean(1)
    result.update(estimator="ais", steps=options.get("steps", STEPS), chains=log_w.shape[1],
                  leapfrog=options.get("leapfrog", LEAPFROG), base=options.get("base", "guide"),
                  acceptance_per_datapoint=per_point, acceptance=per_point.mean().item())
    return result
