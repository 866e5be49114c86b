r"""A reference posterior from NUTS, and how far the guide is from it.

For chosen data points and a fitted model (decoder fixed), :func:`nuts_posterior` draws from the
exact posterior :math:`p_\theta(z \mid x) \propto p(z)\, p_\theta(x \mid z)` with Pyro's NUTS
(Hoffman & Gelman 2014), several independent chains, and returns them as ArviZ InferenceData so
that ``az.summary`` gives r-hat and ESS.  The posteriors of different data points are independent
given the decoder, so one NUTS run samples all chosen points jointly.

:func:`compare_with_guide` sets :math:`q_\phi(z \mid x)` beside the NUTS draws: marginal means and
standard deviations per point and coordinate, and the energy distance between the two sample sets
per point (Szekely & Rizzo 2013),

.. math:: D^2(q, p) = 2 E\|Z - Y\| - E\|Z - Z'\| - E\|Y - Y'\|,\quad Z, Z' \sim q,\ Y, Y' \sim p,

zero iff the distributions are equal; it is written here because neither SciPy (1-D only) nor ArviZ
has the multivariate one.  With PSIS :math:`\hat k` per point it reports the Spearman rank
correlation between :math:`\hat k` and the distance: do the points whose importance weights are
unreliable coincide with those where q and the posterior disagree?
"""

import warnings
from contextlib import contextmanager

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

from pyro_vae._arviz import arviz
from pyro_vae.contract import owner_module
from pyro_vae.errors import ConfigError

from .traces import latent_site, random_state_kept, trace_pair


def nuts_posterior(model, x, num_samples=500, warmup_steps=500, num_chains=4, seed=0, site=None, progress=False,
                   target_accept_prob=0.8, jit_compile=True, module=None):
    """NUTS draws of the latent site of ``model`` given the rows of ``x``, as ArviZ InferenceData.

    Chains run one after another, each from its own seed and a random initial point (Pyro's
    ``init_to_uniform`` on (-2, 2) in the unconstrained space), so r-hat compares dispersed starts.

    :param x: the chosen data points ``(P, ...)`` (a few: NUTS samples their P x d latents jointly).
    :param module: the ``nn.Module`` holding the model's parameters (default: the owner of a bound
        ``model``); its parameters and the Pyro param store are held fixed (no gradient) while NUTS runs,
        which the JIT-compiled potential (``jit_compile``, about 1.7x faster) requires.
    :returns: InferenceData with ``posterior[site]`` of dims ``(chain, draw, datapoint, latent)`` and
        ``sample_stats`` (divergences, step sizes); ``az.summary(result)`` gives r-hat and ESS.
    """
    if num_chains < 2:
        raise ConfigError(f"r-hat needs at least 2 chains, got num_chains={num_chains}")
    # Pyro's HMC makes some tensors (step size, mass matrix) with torch's factory defaults: the device
    # context puts them where x is.
    with random_state_kept(x.device), torch.device(x.device), \
            _parameters_fixed(owner_module(model, module)):
        posterior, stats, name = _run_chains(model, x, num_samples, warmup_steps, num_chains, seed, site, progress,
                                             target_accept_prob, jit_compile)
    dims = {name: ["datapoint"] + [f"{name}_dim_{i}" for i in range(posterior.ndim - 3)]}
    return arviz().from_dict(posterior={name: posterior}, sample_stats={k: np.stack(v) for k, v in stats.items()},
                             dims=dims, attrs={"inference": "NUTS", "site": name})


@contextmanager
def _parameters_fixed(module):
    tensors = list(module.parameters()) if isinstance(module, torch.nn.Module) else []
    tensors += [value.unconstrained() for _, value in pyro.get_param_store().items()]
    flags = [t.requires_grad for t in tensors]
    try:
        for t in tensors:
            t.requires_grad_(False)
        yield
    finally:
        for t, flag in zip(tensors, flags):
            t.requires_grad_(flag)


def _run_chains(model, x, num_samples, warmup_steps, num_chains, seed, site, progress, target_accept_prob, jit_compile):
    draws, stats = [], {"diverging": [], "step_size": []}
    name = site
    for chain in range(num_chains):
        pyro.set_rng_seed(seed * 1000 + chain)
        kernel = NUTS(model, target_accept_prob=target_accept_prob, jit_compile=jit_compile, ignore_jit_warnings=True)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=1, disable_progbar=not progress)
        with warnings.catch_warnings():  # Pyro's jit_compile uses torch.jit.trace, deprecated in torch 2.x
            warnings.simplefilter("ignore", FutureWarning)
            mcmc.run(x)
        samples = mcmc.get_samples()
        if name is None:
            if len(samples) != 1:
                raise ConfigError(f"the model has latent sites {sorted(samples)}; name the one to compare with site=")
            name = next(iter(samples))
        draws.append(samples[name].detach().cpu().numpy())
        diverging = np.zeros(num_samples, dtype=bool)
        diverging[np.asarray(mcmc.diagnostics()["divergences"]["chain 0"], dtype=int)] = True
        stats["diverging"].append(diverging)
        stats["step_size"].append(np.full(num_samples, kernel.step_size))
    return np.stack(draws), stats, name  # draws: (chain, draw, P, d...)


def energy_distance(a, b):
    """Energy distance :math:`D^2` between samples ``a (n, d)`` and ``b (m, d)`` (V-statistic)."""
    a, b = (torch.as_tensor(s, dtype=torch.float64, device="cpu") for s in (a, b))  # host-side draws
    return (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).item()


@torch.no_grad()
def compare_with_guide(reference, model, guide, x, draws=2000, khat=None, seed=0):
    """Marginal moments of q(z|x) and of the NUTS draws, the energy distance per point, and its rank
    correlation with PSIS ``khat`` (N,) when given.

    :returns: ``{"rows": [per point and coordinate], "points": [per point], "spearman_khat_distance": r or None}``.
    """
    from scipy.stats import spearmanr

    name = reference.attrs["site"]
    nuts = reference.posterior[name].values
    nuts = nuts.reshape(-1, *nuts.shape[2:])  # chains pooled: (draws, P, d)
    with random_state_kept(x.device):
        pyro.set_rng_seed(seed)
        with pyro.plate("reference_draws", draws, dim=-2):
            _, guide_trace = trace_pair(model, guide, x)
    q = latent_site(guide_trace, name)["value"].cpu().numpy()  # (draws, P, d)
    rows, points = [], []
    for i in range(len(x)):
        distance = energy_distance(q[:, i], nuts[:, i])
        points.append({"datapoint": i, "energy_distance": distance, **({"khat": float(khat[i])} if khat is not None else {})})
        for j in range(q.shape[-1]):
            rows.append({"datapoint": i, "latent": j, "q_mean": float(q[:, i, j].mean()), "nuts_mean": float(nuts[:, i, j].mean()),
                         "q_sd": float(q[:, i, j].std()), "nuts_sd": float(nuts[:, i, j].std())})
    correlation = None
    if khat is not None and len(x) > 2:
        correlation = float(spearmanr([p["khat"] for p in points], [p["energy_distance"] for p in points]).statistic)
    return {"rows": rows, "points": points, "spearman_khat_distance": correlation, "q_draws": q, "nuts_draws": nuts}


def plot_marginals(comparison, path, points=4, latents=4, model=None):
    """Overlay q(z|x) and NUTS marginal densities for the first ``points`` x ``latents`` cells; ``model``
    (a one-line description, :func:`~pyro_vae.contract.describe_pair`) heads the title."""
    from pyro_vae.plots import pyplot, save_figure
    import seaborn as sns

    plt = pyplot()
    q, nuts = comparison["q_draws"], comparison["nuts_draws"]
    points, latents = min(points, q.shape[1]), min(latents, q.shape[2])
    fig, axes = plt.subplots(points, latents, figsize=(2.6 * latents, 2.0 * points), squeeze=False)
    for i in range(points):
        for j in range(latents):
            ax = axes[i][j]
            sns.kdeplot(nuts[:, i, j], ax=ax, color="black", label="NUTS p(z|x)")
            sns.kdeplot(q[:, i, j], ax=ax, color="tab:orange", linestyle="--", label="q(z|x)")
            ax.set_yticks([])
            ax.set_ylabel(f"point {i}" if j == 0 else "")
            ax.set_xlabel(f"z_{j}" if i == points - 1 else "")
    axes[0][0].legend(fontsize=7)
    title = "Guide marginals q(z|x) against the NUTS reference posterior p(z|x)"
    fig.suptitle(f"{model}\n{title}" if model else title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
