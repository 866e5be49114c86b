r"""Gradient signal-to-noise ratio of an objective, per parameter group.

For each scalar parameter :math:`\theta_p`, with :math:`g^{(m)}` the gradient of the objective from
draw :math:`m = 1..M` of the guide at fixed parameters and data,

.. math:: \mathrm{SNR}_p = \frac{|\hat E[g_p]|}{\widehat{\mathrm{sd}}[g_p]},

as Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh (2018, "Tighter variational bounds are not
necessarily better", eq. 6) measure it.  Their finding: for IWAE the inference network's SNR falls
like :math:`O(1/\sqrt K)` while the generative network's rises like :math:`O(\sqrt K)`; DReG's
inference-network SNR does not fall (Tucker et al. 2019).  A group's SNR is summarised by the mean
and the median over its scalar parameters; parameters whose gradient has zero variance over the draws are left
out and counted.  The caller's random state is left as it was.
"""

import warnings

import pyro
import torch
from torch import nn

from pyro_vae.errors import ConfigError

from .objectives import make_objective
from .traces import random_state_kept


def parameter_groups(module):
    """``{"encoder": [...], "decoder": [...]}`` for a module with those parts, else ``{"all": [...]}``."""
    if isinstance(getattr(module, "encoder", None), nn.Module) and isinstance(getattr(module, "decoder", None), nn.Module):
        return {"encoder": list(module.encoder.parameters()), "decoder": list(module.decoder.parameters())}
    return {"all": list(module.parameters())}


def gradient_snr(model, guide, x, groups, objective="elbo", particles=1, draws=100, seed=0):
    """SNR of the gradient of ``objective`` (K = ``particles``) on the data ``x``, per parameter group.

    :param dict groups: ``{name: [tensors]}`` (e.g. :func:`parameter_groups` of a VAE).
    :param int draws: M, independent draws of the estimator (one backward pass each).
    :returns: ``{group: {"snr_mean", "snr_median", "parameters", "zero_gradient"}}`` and, per group,
        the per-parameter SNR tensor under ``"snr"``.
    """
    if draws < 2:
        raise ConfigError(f"gradient_snr needs at least 2 draws to estimate a standard deviation, got {draws}")
    elbo = make_objective(objective, particles)
    tensors = [t for group in groups.values() for t in group]
    if not tensors or not all(t.requires_grad for t in tensors):
        raise ConfigError("gradient_snr needs a non-empty list of parameters that require grad in every group")
    with random_state_kept(x.device):
        return _gradient_snr(elbo, model, guide, x, groups, tensors, draws, seed)


def _gradient_snr(elbo, model, guide, x, groups, tensors, draws, seed):
    elbo.differentiable_loss(model, guide, x)  # the first call settles Pyro's plate nesting
    pyro.set_rng_seed(seed)
    # Welford's running mean and sum of squares: memory O(parameters), whatever M
    mean = [torch.zeros_like(t) for t in tensors]
    squares = [torch.zeros_like(t) for t in tensors]
    for m in range(1, draws + 1):
        loss = elbo.differentiable_loss(model, guide, x)
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        for g, mu, ss in zip(grads, mean, squares):
            g = torch.zeros_like(mu) if g is None else g.detach()
            delta = g - mu
            mu += delta / m
            ss += delta * (g - mu)
    result, start = {}, 0
    for name, group in groups.items():
        mu = torch.cat([t.flatten() for t in mean[start:start + len(group)]])
        sd = torch.cat([t.flatten() for t in squares[start:start + len(group)]]).div(draws - 1).sqrt()
        start += len(group)
        varying = sd > 0
        if not varying.any():
            warnings.warn(f"gradient_snr: every gradient of group {name!r} has zero variance over {draws} draws; its SNR is NaN")
        snr = mu[varying].abs() / sd[varying]
        result[name] = {"snr_mean": snr.mean().item(), "snr_median": snr.median().item(),
                        "parameters": int(varying.sum()), "zero_gradient": int((~varying).sum()), "snr": snr}
    return result
