"""The gradient of every objective, for one draw and in expectation, on the model of Pyro's gradient tests (issue 35).

Ported from pyro-ppl ``tests/infer/test_gradient.py`` (commit ff6ae1c95): the model of ``test_particle_gradient``,
``test_subsample_gradient`` and ``test_plate``, :math:`z_i \\sim N(0, 1)`, :math:`x_i \\sim N(z_i, 1)` on the data
[-0.5, 2.0], with the guide :math:`N(\\mathrm{loc}_i, \\mathrm{scale})` at loc = 0, scale = 1, where the loss's
gradient (the negative ELBO's) is loc [0.5, -2.0], scale [2.0].  The one change a user makes: ``model(x)`` and
``guide(x)`` take the data, as our importance-weighted objectives need.  Beside it, our own two-latent chain
:math:`z_1 \\to z_2 \\to x` with a guide :math:`q(z_1)\\,q(z_2)` or, with dependence between its latents,
:math:`q(z_1)\\,q(z_2 \\mid z_1)`, :math:`z_2 \\sim N(a_2 + c z_1, s_2)`.

1. **One draw**: what each objective puts in ``.grad`` equals the per-draw gradient derived by hand (``_per_draw``),
   as Pyro's ``test_particle_gradient`` checks for ``Trace_ELBO``.
2. **Expectation**: the mean over M batches of n independent draws (the data repeated n times, each copy with its
   own draw) against the analytic ELBO gradient (K = 1: elbo, meanfield, stl, enum; closed forms below,
   differentiated by autograd) or against a plain-PyTorch estimate of the IWAE bound's gradient from 400,000
   draws of K (iwae:3, iwae-dreg:3; no Pyro in it).  Judged by :math:`|z| <` ``Z_BOUND`` with the standard error of
   the batch means (and of the reference).  iwae-dreg on the dependent guide is refused by ``check_objective``
   (its gradient is biased there; issue 35, item 1).
3. **Subsampling**, as ``test_subsample_gradient``: one data point at a time (Pyro's ``subsample=`` plate, scale
   N/B = 2), inside ``poutine.scale(s)`` for s = 1 and 2: the mean of the two subsamples' loss and gradient is
   s times the full data's.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch.distributions import Normal

from pyro_vae.errors import ConfigError
from pyro_vae.inference import check_objective, make_objective

# enum on a model with nothing to enumerate is Trace_ELBO's estimator, which Pyro advises of (its tests turn it off)
pytestmark = pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites configured for enumeration")

X = torch.tensor([-0.5, 2.0])
SPECS = ["elbo", "meanfield", "stl", "enum", "iwae:3", "iwae-dreg:3"]
#: |z| bound for about 150 coordinates over all tests: a family-wise false-alarm rate near 1e-3 (Bonferroni)
Z_BOUND = 4.5
BATCHES, COPIES = 30, 2000
REFERENCE_DRAWS = 400_000
#: initial guide parameters: Pyro's for the one-latent model; the chain's, with c != 0 so that q(z2 | z1) depends
INITS = {"one": {"loc": torch.zeros(2), "scale": torch.ones(1)},
         "independent": {"a1": torch.zeros(2), "s1": torch.ones(1), "a2": torch.zeros(2), "s2": torch.ones(1)},
         "dependent": {"a1": torch.zeros(2), "s1": torch.ones(1), "a2": torch.zeros(2), "s2": torch.ones(1),
                       "c": torch.full((1,), 0.5)}}
SEEN = {}  # the guide's draws, for the per-draw oracle


def _point(x, ind):
    """Which of the two data points each row is (the data are copies of X)."""
    return ind % len(X)


def make_pair(kind):
    """``model(x, subsample=None)`` and ``guide(x, subsample=None)`` over copies of X (Pyro's subsample plate)."""
    def model(x, subsample=None):
        with pyro.plate("data", len(x), subsample=subsample) as ind:
            if kind == "one":
                z = pyro.sample("z", dist.Normal(0.0, 1.0))
            else:
                z1 = pyro.sample("z1", dist.Normal(0.0, 1.0))
                z = pyro.sample("z2", dist.Normal(z1, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[ind])

    def guide(x, subsample=None):
        params = {name: pyro.param(name, value.clone()) for name, value in INITS[kind].items()}
        with pyro.plate("data", len(x), subsample=subsample) as ind:
            p = _point(x, ind)
            if kind == "one":
                SEEN["z"] = pyro.sample("z", dist.Normal(params["loc"][p], params["scale"])).detach()
                return
            z1 = pyro.sample("z1", dist.Normal(params["a1"][p], params["s1"]))
            shift = params["c"] * z1 if kind == "dependent" else 0.0
            pyro.sample("z2", dist.Normal(params["a2"][p] + shift, params["s2"]))

    return model, guide


def _gradient_vector(kind, divide=1.0):
    return torch.cat([pyro.param(name).unconstrained().grad.flatten() / divide for name in INITS[kind]])


def _loss_and_gradient(elbo, model, guide, x, kind, divide=1.0, **kwargs):
    pyro.clear_param_store()
    loss = elbo.loss_and_grads(model, guide, x, **kwargs)
    return loss / divide, _gradient_vector(kind, divide)


# ---- oracles -----------------------------------------------------------------------------------------------------

def _elbo_closed_form(kind, params):
    """Sum over the two points of the ELBO at the guide ``params``, in closed form (Gaussian expectations)."""
    log_2pi = math.log(2 * math.pi)
    if kind == "one":
        loc, s = params["loc"], params["scale"]
        return (-log_2pi - 0.5 * (loc ** 2 + s ** 2) - 0.5 * ((X - loc) ** 2 + s ** 2)
                + torch.log(s) + 0.5 * (log_2pi + 1)).sum()
    a1, s1, a2, s2 = params["a1"], params["s1"], params["a2"], params["s2"]
    c = params.get("c", torch.zeros(1))
    # z1 ~ N(a1, s1^2), z2 = a2 + c z1 + s2 e: E z2 = a2 + c a1, Var z2 = c^2 s1^2 + s2^2, Var(z2 - z1) = (c-1)^2 s1^2 + s2^2
    prior_z1 = -0.5 * log_2pi - 0.5 * (a1 ** 2 + s1 ** 2)
    prior_z2 = -0.5 * log_2pi - 0.5 * ((a2 + (c - 1) * a1) ** 2 + (c - 1) ** 2 * s1 ** 2 + s2 ** 2)
    likelihood = -0.5 * log_2pi - 0.5 * ((X - a2 - c * a1) ** 2 + c ** 2 * s1 ** 2 + s2 ** 2)
    entropy = torch.log(s1) + torch.log(s2) + log_2pi + 1
    return (prior_z1 + prior_z2 + likelihood + entropy).sum()


def _leaf_params(kind):
    return {name: value.double().clone().requires_grad_() for name, value in INITS[kind].items()}


def analytic_elbo_loss_and_gradient(kind):
    params = _leaf_params(kind)
    loss = -_elbo_closed_form(kind, params)
    grads = torch.autograd.grad(loss, list(params.values()))
    return loss.item(), torch.cat([g.flatten() for g in grads]), torch.zeros(1 + sum(g.numel() for g in grads))


def _iwae_log_weights(kind, params, k, draws, generator):
    x = X.double()
    if kind == "one":
        z = params["loc"] + params["scale"] * torch.randn(draws, k, 2, generator=generator, dtype=torch.float64)
        return (Normal(z, 1.0).log_prob(x) + Normal(0.0, 1.0).log_prob(z) - Normal(params["loc"], params["scale"]).log_prob(z))
    z1 = params["a1"] + params["s1"] * torch.randn(draws, k, 2, generator=generator, dtype=torch.float64)
    loc2 = params["a2"] + params.get("c", torch.zeros(1, dtype=torch.float64)) * z1
    z2 = loc2 + params["s2"] * torch.randn(draws, k, 2, generator=generator, dtype=torch.float64)
    return (Normal(0.0, 1.0).log_prob(z1) + Normal(z1, 1.0).log_prob(z2) + Normal(z2, 1.0).log_prob(x)
            - Normal(params["a1"], params["s1"]).log_prob(z1) - Normal(loc2, params["s2"]).log_prob(z2))


def iwae_reference_loss_and_gradient(kind, k, chunks=20):
    """Plain PyTorch, float64: the negative IWAE bound (sum over the points) and its gradient from
    ``REFERENCE_DRAWS`` draws of K, with standard errors from ``chunks`` independent chunks."""
    generator = torch.Generator().manual_seed(12345)
    rows = []
    for _ in range(chunks):
        params = _leaf_params(kind)
        log_w = _iwae_log_weights(kind, params, k, REFERENCE_DRAWS // chunks, generator)
        loss = -(torch.logsumexp(log_w, dim=1) - math.log(k)).mean(0).sum()
        grads = torch.autograd.grad(loss, list(params.values()))
        rows.append(torch.cat([loss.detach().reshape(1)] + [g.flatten() for g in grads]))
    rows = torch.stack(rows)
    mean, se = rows.mean(0), rows.std(0) / math.sqrt(chunks)
    return mean[0].item(), mean[1:], se


def reference(kind, spec):
    """(loss, gradient, standard errors of [loss, gradient...]) of the quantity ``spec`` estimates."""
    k = int(spec.partition(":")[2] or 1)
    return analytic_elbo_loss_and_gradient(kind) if k == 1 else iwae_reference_loss_and_gradient(kind, k)


def _z_scores(draws, expected, reference_se):
    """z of the mean of ``draws`` (rows: independent batch means) against ``expected``."""
    mean, se = draws.mean(0).double(), draws.std(0).double() / math.sqrt(len(draws))
    return (mean - expected.double()) / torch.sqrt(se ** 2 + reference_se.double() ** 2)


# ---- 1. one draw ---------------------------------------------------------------------------------------------------

def _per_draw(spec, z, loc, scale):
    """The loss's gradient for the guide's draw ``z`` (shape (2,) or (K, 2)), derived by hand; see the module doc.

    With e = (z - loc) / scale and d = d/dz log p(x, z) = -z + (x - z):
    elbo, enum: the full derivative of log p - log q along z = loc + scale e; d log q / d scale = -1 / scale.
    stl: log q's parameters held fixed, so d/dz [log p - log q] = d + (z - loc) / scale^2 is the whole derivative.
    meanfield: log p(x | z) minus the closed-form KL(N(loc, scale) || N(0, 1)) = (loc^2 + scale^2 - 1) / 2 - log scale.
    iwae: normalised weights w~ times the per-particle elbo gradient; iwae-dreg: w~^2 times the per-particle stl one.
    """
    d = -z + (X - z)
    e = (z - loc) / scale
    name = spec.partition(":")[0]
    if name in ("elbo", "enum"):
        return -d, -(d * e + 1 / scale).sum(-1)
    if name == "stl":
        g = d + (z - loc) / scale ** 2
        return -g, -(g * e).sum(-1)
    if name == "meanfield":
        return -((X - z) - loc), -((X - z) * e - scale + 1 / scale).sum(-1)
    log_w = Normal(z, 1.0).log_prob(X) + Normal(0.0, 1.0).log_prob(z) - Normal(loc, scale).log_prob(z)
    w = torch.softmax(log_w, dim=0)
    if name == "iwae":
        return -(w * d).sum(0), -(w * (d * e + 1 / scale)).sum()
    g = d + (z - loc) / scale ** 2
    return -(w ** 2 * g).sum(0), -(w ** 2 * g * e).sum()


@pytest.mark.parametrize("spec", SPECS)
def test_one_draws_gradient_is_the_hand_derived_one(spec):
    model, guide = make_pair("one")
    elbo = make_objective(spec)
    pyro.set_rng_seed(0)
    _, actual = _loss_and_gradient(elbo, model, guide, X, "one")
    loc, scale = INITS["one"]["loc"], INITS["one"]["scale"]
    expected_loc, expected_scale = _per_draw(spec, SEEN["z"], loc, scale)
    torch.testing.assert_close(actual, torch.cat([expected_loc.flatten(), expected_scale.reshape(1)]),
                               rtol=1e-5, atol=1e-5)


# ---- 2. expectation ------------------------------------------------------------------------------------------------

def batch_means(spec, kind, subsample=False, scale=1.0):
    """``BATCHES`` rows of [loss, gradient...] per copy of the data, each the mean over ``COPIES`` independent draws;
    with ``subsample`` the mean of the two one-point subsamples' (each scaled by N/B = 2 by Pyro's plate)."""
    model, guide = make_pair(kind)
    model, guide = poutine.scale(model, scale=scale), poutine.scale(guide, scale=scale)
    elbo = make_objective(spec)
    x = X.repeat(COPIES)
    rows = []
    for seed in range(BATCHES):
        pyro.set_rng_seed(seed)
        if not subsample:
            loss, gradient = _loss_and_gradient(elbo, model, guide, x, kind, COPIES)
        else:
            parts = [_loss_and_gradient(elbo, model, guide, x, kind, COPIES, subsample=torch.arange(i, len(x), 2))
                     for i in range(len(X))]
            loss, gradient = sum(p[0] for p in parts) / 2, sum(p[1] for p in parts) / 2
        rows.append(torch.cat([torch.tensor([loss]), gradient]))
    return torch.stack(rows)


def _serves(spec, kind):
    model, guide = make_pair(kind)
    try:
        check_objective(make_objective(spec), model, guide, X, "data")
    except ConfigError as error:
        assert spec.startswith("iwae-dreg") and kind == "dependent", error
        assert len(str(error).splitlines()) == 1 and "'z2' takes the draw of 'z1'" in str(error) and "stl" in str(error)
        return False
    return True


@pytest.mark.parametrize("kind", ["one", "independent", "dependent"])
@pytest.mark.parametrize("spec", SPECS)
def test_expected_loss_and_gradient_are_the_bounds(spec, kind):
    if not _serves(spec, kind):
        return
    loss, gradient, reference_se = reference(kind, spec)
    z = _z_scores(batch_means(spec, kind), torch.cat([torch.tensor([loss], dtype=torch.float64), gradient]),
                  reference_se)
    assert z.abs().max() < Z_BOUND, z


# ---- 3. subsampling ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1.0, 2.0], ids=["unscaled", "scaled"])
@pytest.mark.parametrize("spec", SPECS)
def test_subsampled_loss_and_gradient_are_unbiased_for_the_full_datas(spec, scale):
    loss, gradient, reference_se = reference("one", spec)
    expected = scale * torch.cat([torch.tensor([loss], dtype=torch.float64), gradient])
    z = _z_scores(batch_means(spec, "one", subsample=True, scale=scale), expected, scale * reference_se)
    assert z.abs().max() < Z_BOUND, z
