r"""From log importance weights to :math:`\log p(x)`: the estimate, its two Monte Carlo errors, PSIS
:math:`\hat k`, and what goes wherever an estimate is shown.

The weights come from :func:`~pyro_vae.inference.estimators.importance_log_weights` (IS, K draws of q(z|x) per
point) or from :func:`~pyro_vae.inference.ais.ais_log_weights` (AIS, one weight per chain); the arithmetic on
them is the same, and this is the one place it is done.
"""

import math

import torch

#: Fewest draws for which ArviZ's PSIS fits a Pareto tail (to the largest min(0.2 K, 3 sqrt K) > 4 weights).
PSIS_MIN_DRAWS = 25
#: Groups of particles in the replicate standard error of :func:`log_likelihood`.
REPLICATES = 10


def khat_threshold(draws):
    """ArviZ's threshold above which PSIS is unreliable for ``draws`` draws: ``min(1 - 1/log10 K, 0.7)``."""
    return min(1 - 1 / math.log10(draws), 0.7) if draws > 1 else -math.inf


def log_likelihood(log_weights, replicates=REPLICATES):
    r"""Importance-sampled :math:`\log p(x_i) \approx \hat\ell_i = \log \frac1K \sum_k w_{ik}` (Burda et al.
    2016) from ``(N, K)`` log weights, with two Monte Carlo standard errors of the mean over points.

    * Delta method (``log_likelihood_mc_se``): :math:`\mathrm{se}_i^2 = \widehat{\mathrm{Var}}(\tilde w)/K`
      with :math:`\tilde w_k = w_k / \bar w`, and :math:`\sqrt{\sum_i \mathrm{se}_i^2} / N`.  It needs the
      weights' variance to exist, which fails exactly where q's tails are too light (PSIS
      :math:`\hat k > 1/2`): there it understates the error.
    * Replicates (``log_likelihood_replicate_se``): the K particles of a point, iid, form R groups of
      m = K // R, each an independent replicate estimate :math:`\hat\ell_{ir}` at m particles; their
      spread measures the error at m directly, with no variance assumption.  It is carried to K by
      the rate at which a mean of weights with Pareto tail index :math:`1/\hat k_i` settles: the
      generalised central limit theorem gives an error falling like :math:`K^{-(1 - \max(\hat k_i, 1/2))}`
      (the usual :math:`K^{-1/2}` for :math:`\hat k_i \le 1/2`), so
      :math:`\mathrm{se}_i = \mathrm{sd}_r(\hat\ell_{ir}) (m/K)^{1 - \max(\hat k_i, 1/2)}`, and infinite for
      :math:`\hat k_i \ge 1` (no mean to converge to).  :math:`\hat k_i` is PSIS's (ArviZ), for K >=
      :data:`PSIS_MIN_DRAWS`; below that the rate is taken as :math:`K^{-1/2}`, said under ``notes`` (``{what: why}``).
      A bootstrap over particles was not used: with infinite variance it is inconsistent (Athreya 1987).

    ``replicates=None`` skips the replicate error (then the delta-method one is quoted).
    ``log_likelihood_se`` is the larger of the two, the one to quote.  ``points_without_error`` counts the
    points whose error is infinite; when some but not all are, ``log_likelihood_finite_points`` and its
    ``_se`` give the mean over the others (a different quantity, said so wherever it is shown).  Also returned: PSIS's ``khat``
    per point and the PSIS log-likelihood (``psis``, or None below :data:`PSIS_MIN_DRAWS` draws),
    ``khat_threshold`` (:func:`khat_threshold`) and the share of points above it.
    """
    from .diagnostics import psis

    log_weights = log_weights.double()
    num_points, num = log_weights.shape
    per_point = torch.logsumexp(log_weights, dim=1) - math.log(num)
    relative = torch.exp(log_weights - per_point[:, None] - math.log(num)) * num  # w / mean(w)
    variance = ((relative - 1) ** 2).sum(1) / max(num - 1, 1) / num
    result = {"per_datapoint": per_point, "per_datapoint_mc_se": variance.sqrt(), "importance_samples": num,
              "log_likelihood": per_point.mean().item(),
              "log_likelihood_mc_se": (variance.sum().sqrt() / num_points).item() if num > 1 else math.nan,
              "khat_threshold": khat_threshold(num), "notes": {}}
    smoothed = psis(log_weights) if num >= PSIS_MIN_DRAWS else None
    result["psis"] = smoothed
    if smoothed is None:
        result["notes"]["PSIS"] = f"K = {num} is below the {PSIS_MIN_DRAWS} draws ArviZ needs to fit a Pareto tail"
    khat = torch.as_tensor(smoothed["khat"], dtype=torch.float64) if smoothed is not None else None
    replicate = _replicate_se(log_weights, khat, min(replicates, num // 2)) if replicates else None
    if replicates is None:
        pass  # not asked for (AIS: its chains are few, and the bracket checks its bias)
    elif replicate is None:
        result["notes"]["replicate error"] = f"K = {num} gives fewer than two groups of two particles"
    elif khat is None:
        result["notes"]["replicate error"] = (f"carried to K at the finite-variance rate (no k-hat below {PSIS_MIN_DRAWS} "
                                              "draws)")
    result["per_datapoint_replicate_se"] = replicate
    result["log_likelihood_replicate_se"] = (replicate.pow(2).sum().sqrt() / num_points).item() if replicate is not None else math.nan
    result["log_likelihood_se"] = max((v for v in (result["log_likelihood_mc_se"], result["log_likelihood_replicate_se"])
                                       if not math.isnan(v)), default=math.nan)
    if khat is not None:
        result["fraction_khat_above_threshold"] = float((khat > result["khat_threshold"]).double().mean())
    _add_finite_points(result)
    return result


def shown(estimate, name="log_likelihood"):
    """What goes wherever a log p(x) estimate is shown (a study's table or headline, the report): the value
    ``name``, its error ``name_se`` (the one to quote), ``name_estimator`` (``"IS, K = 1000"`` or ``"AIS, T = 500,
    M = 32"``) and ``fraction_khat_above_threshold`` (NaN without k-hat), by which the report flags it.  Takes a
    :func:`log_likelihood` or :func:`~.ais.ais_log_likelihood` result, or an ``evaluate`` result."""
    if estimate.get("estimator") == "ais":
        estimator = f"AIS, T = {estimate['steps']}, M = {estimate['chains']}"
    else:
        estimator = f"IS, K = {estimate['importance_samples']}"
    return {name: estimate["log_likelihood"], f"{name}_se": estimate["log_likelihood_se"], f"{name}_estimator": estimator,
            "fraction_khat_above_threshold": estimate.get("fraction_khat_above_threshold", math.nan)}


def point_se(estimate):
    """Per point, the error to quote of a :func:`log_likelihood` result: the larger of its two."""
    se = estimate["per_datapoint_mc_se"]
    return se if estimate["per_datapoint_replicate_se"] is None else torch.maximum(se, estimate["per_datapoint_replicate_se"])


def _add_finite_points(result):
    """How many points have no finite error (k-hat >= 1), and the mean and error of the others: one such point
    makes the total error infinite, which alone says nothing of the rest."""
    se = point_se(result)
    finite = torch.isfinite(se)
    result["points_without_error"] = int((~finite).sum())
    if 0 < result["points_without_error"] < len(se):
        result["log_likelihood_finite_points"] = result["per_datapoint"][finite].mean().item()
        result["log_likelihood_finite_points_se"] = (se[finite].pow(2).sum().sqrt() / int(finite.sum())).item()


def _replicate_se(log_weights, khat, groups):
    if groups < 2:
        return None
    size = log_weights.shape[1] // groups
    grouped = log_weights[:, : groups * size].reshape(len(log_weights), groups, size)
    replicates = torch.logsumexp(grouped, dim=2) - math.log(size)
    spread = replicates.std(dim=1)
    tail = torch.full_like(spread, 0.5) if khat is None else khat.clamp(min=0.5)
    se = spread * (size / log_weights.shape[1]) ** (1 - tail)
    return torch.where(tail >= 1, torch.full_like(se, math.inf), se)
