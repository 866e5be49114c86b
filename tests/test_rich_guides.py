r"""The lowrank and iaf guide families and the VampPrior, against exact answers.

On the linear-Gaussian model of ``linear_gaussian.py`` (data 5, latents 3) the posterior is the
correlated Gaussian :math:`\mathcal N(m(x), \Sigma)`, :math:`\Lambda = \Sigma^{-1}`, and for any q

.. math:: \mathrm{ELBO}(q) = \log p(x) - \mathrm{KL}(q \,\|\, p(z \mid x)),

so each fitted guide is checked twice: its Monte Carlo ELBO against :math:`\log p(x)` minus its
exact KL to the posterior, and that KL against what its family can reach: 0 for ``lowrank`` of rank
d - 1 (module doc of :mod:`pyro_vae.guides`), and for a diagonal Gaussian at least
:math:`\tfrac12 (\sum_j \log \Lambda_{jj} - \log\det\Lambda)`, reached by
:math:`q = \mathcal N(m, \mathrm{diag}(1/\Lambda_{jj}))`.
"""

import math
from types import SimpleNamespace

import pytest
import torch
import pyro
import pyro.distributions as dist
from torch import nn
from torch.distributions import kl_divergence

from linear_gaussian import LinearGaussian
from pyro_vae.cli import build_parser
from pyro_vae.commands import catalogue_vae
from pyro_vae.data import load_data
from pyro_vae.errors import ConfigError, UnknownNameError
from pyro_vae.guides import MOMENT_DRAWS, FlowPosterior, location, make_guide_family, scale
from pyro_vae.inference import elbo_terms, evaluate, fit, load_run
from pyro_vae.inference.path_gradients import detach_parameters
from pyro_vae.kl import kl_path
from pyro_vae.models import VAE
from pyro_vae.priors import VampPrior, make_prior

LATENT, POINTS, ELBO_DRAWS = 3, 50, 1000
TRUTH = LinearGaussian(data_dim=5, latent_dim=LATENT, noise=0.5, seed=0)
PRECISION = torch.linalg.inv(TRUTH.posterior_cov)
#: KL of the best diagonal Gaussian to the posterior, per data point: 0.337 nats here.
DIAGONAL_GAP = 0.5 * (PRECISION.diag().log().sum() - torch.logdet(PRECISION)).item()
#: What the fits may leave of the reachable KL: the lowrank fit reaches about 0.002 nats in its 400 steps.
OPTIMISATION_SLACK = 0.01


def _log_joint(x, z):
    prior = dist.Normal(torch.zeros(LATENT), 1.0).to_event(1)
    return prior.log_prob(z) + dist.Normal(z @ TRUTH.W.T + TRUTH.b, TRUTH.noise).to_event(1).log_prob(x)


class LinearAmortised(nn.Module):
    """A registered guide family on a linear encoder of the centred data: q(z|x) = family(A (x - xbar) + c)."""

    def __init__(self, guide, x, **options):
        super().__init__()
        self.family = make_guide_family(guide, LATENT, **options)
        self.linear = nn.Linear(x.shape[1], self.family.num_outputs_per_latent * LATENT)
        self.register_buffer("centre", x.mean(0))

    def forward(self, x):
        return self.family(self.linear(x - self.centre))


def _fit(guide, x, steps, lr, path_derivative, **options):
    """SVI on the exact model by the reparameterised ELBO gradient, 4 draws a step; with ``path_derivative``
    the STL estimator (Roeder et al. 2017), whose noise vanishes as q reaches the posterior."""
    torch.manual_seed(0)
    q_of = LinearAmortised(guide, x, **options)
    optimiser = torch.optim.Adam(q_of.parameters(), lr=lr)
    decay = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - 0.95 * step / steps)
    for _ in range(steps):
        q = q_of(x)
        z = q.rsample((4,))
        log_q = (detach_parameters(q) if path_derivative else q).log_prob(z)
        loss = -(_log_joint(x, z) - log_q).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        decay.step()
    return q_of


def _elbo(q_of, x):
    """Monte Carlo ELBO per data point and its standard error, from ELBO_DRAWS draws per point."""
    with torch.no_grad():
        q = q_of(x)
        z = q.sample((ELBO_DRAWS,))
        log_w = (_log_joint(x, z) - q.log_prob(z)).double()
    return log_w.mean().item(), (log_w.var(0).sum() / ELBO_DRAWS).sqrt().item() / len(x)


def _exact_kl(q, x):
    """KL(q(z|x) || p(z|x)) per point, torch's closed form between multivariate normals."""
    covariance = q.covariance_matrix if hasattr(q, "covariance_matrix") else torch.diag_embed(q.variance)
    return kl_divergence(dist.MultivariateNormal(q.mean, covariance), TRUTH.posterior(x))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Models this small run fastest on one thread (and leave the other cores free)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    x = TRUTH.sample(POINTS)
    return x, TRUTH.exact_log_likelihood(x).mean().item()


def test_lowrank_guide_reaches_the_exact_posterior_and_log_likelihood(data):
    x, log_p = data
    q_of = _fit("lowrank", x, steps=400, lr=0.1, path_derivative=True, rank=LATENT - 1)
    with torch.no_grad():
        q, posterior = q_of(x), TRUTH.posterior(x)
        kl = _exact_kl(q, x)
    assert kl.mean() < OPTIMISATION_SLACK, kl.mean()
    # Per point, KL = 0.5 d' Lambda d + 0.5 sum_i (l_i - 1 - log l_i), d the mean's error and l_i the
    # eigenvalues of Sigma^-1 S: the mean is within 0.05 posterior sd (Mahalanobis), the covariance's
    # eigenvalue ratios within 10% on average (one far-out x is allowed 0.3, as its KL 0.02 permits).
    error = q.loc - posterior.loc
    mahalanobis2 = (error @ PRECISION * error).sum(-1)
    ratios = torch.linalg.eigvals(PRECISION @ q.covariance_matrix).real
    assert torch.allclose(kl, 0.5 * mahalanobis2 + 0.5 * (ratios - 1 - ratios.log()).sum(-1), atol=1e-4)
    assert mahalanobis2.max().sqrt() < 0.05, mahalanobis2.max().sqrt()
    assert (ratios - 1).abs().mean() < 0.1, ratios
    elbo, se = _elbo(q_of, x)
    assert abs(elbo - (log_p - kl.mean().item())) < 3 * se + 1e-4, (elbo, log_p, kl.mean(), se)  # ELBO = log p - KL
    assert abs(elbo - log_p) < 3 * se + OPTIMISATION_SLACK, (elbo, log_p, se)


def test_diagonal_guide_stays_below_log_likelihood_by_the_closed_form_gap(data):
    x, log_p = data
    diagonal = _fit("normal", x, steps=400, lr=0.1, path_derivative=True)
    with torch.no_grad():
        kl = _exact_kl(diagonal(x), x).mean().item()
    assert DIAGONAL_GAP > 0.3
    assert DIAGONAL_GAP - 1e-4 <= kl < DIAGONAL_GAP + OPTIMISATION_SLACK, (kl, DIAGONAL_GAP)
    elbo, se = _elbo(diagonal, x)
    assert log_p - elbo > DIAGONAL_GAP - 3 * se, (log_p - elbo, DIAGONAL_GAP, se)
    assert abs(elbo - (log_p - kl)) < 3 * se + 1e-4, (elbo, log_p, kl, se)


def test_iaf_guide_beats_the_diagonal_one_on_the_same_budget(data):
    x, log_p = data
    diagonal = _fit("normal", x, steps=300, lr=0.03, path_derivative=False)
    flow = _fit("iaf", x, steps=300, lr=0.03, path_derivative=False, layers=2)
    (flow_elbo, flow_se), (diagonal_elbo, diagonal_se) = _elbo(flow, x), _elbo(diagonal, x)
    assert flow_elbo > diagonal_elbo - 3 * math.hypot(flow_se, diagonal_se), (flow_elbo, diagonal_elbo)
    assert flow_elbo < log_p + 3 * flow_se  # a bound: never above log p(x)


def test_lowrank_kl_to_a_diagonal_normal_is_closed_form_and_matches_torch_and_monte_carlo():
    generator = torch.Generator().manual_seed(3)
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    q = dist.LowRankMultivariateNormal(draw(3, 4), draw(3, 4, 2), draw(3, 4).exp())
    loc, sd = draw(4), draw(4).exp()
    p = dist.Normal(loc, sd).to_event(1)
    assert kl_path(q, p) == "analytic"
    analytic = kl_divergence(q, p)
    assert torch.allclose(analytic, kl_divergence(q, dist.MultivariateNormal(loc, torch.diag(sd**2))), atol=1e-10)
    torch.manual_seed(1)
    z = q.sample((200_000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    assert torch.all((analytic - log_ratio.mean(0)).abs() < 3 * log_ratio.std(0) / math.sqrt(len(z)))
    assert kl_path(q, dist.Laplace(loc, sd).to_event(1)) == "monte-carlo"


def test_flow_and_vamp_kl_are_monte_carlo_and_moments_are_read_for_every_family():
    torch.manual_seed(0)
    out = torch.randn(6, 4 * LATENT)
    flow = make_guide_family("iaf", LATENT)(out)
    normal = dist.Normal(torch.zeros(LATENT), 1.0).to_event(1)
    with pytest.raises(NotImplementedError):
        kl_divergence(flow, normal)
    assert isinstance(flow, FlowPosterior) and kl_path(flow, normal) == "monte-carlo"
    vamp = VAE((5,), latent_dim=LATENT, prior="vamp", prior_options={"components": 3}, likelihood="gaussian", hidden=(8,))
    assert kl_path(vamp.encode(torch.randn(2, 5)), vamp.prior()) == "monte-carlo"
    lowrank = make_guide_family("lowrank", LATENT)(out)
    assert torch.equal(location(lowrank), lowrank.loc)
    assert torch.allclose(scale(lowrank), lowrank.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt())
    draws = flow.sample((20_000,))
    sd = draws.std(0)
    assert torch.all((location(flow) - draws.mean(0)).abs() < 5 * sd / math.sqrt(MOMENT_DRAWS))
    # the sample sd of MOMENT_DRAWS draws errs by about sd / sqrt(2 MOMENT_DRAWS) (Gaussian-like tails)
    assert torch.all((scale(flow) - sd).abs() < 5 * sd / math.sqrt(2 * MOMENT_DRAWS))


@pytest.mark.parametrize("guide", ["normal", "lowrank", "iaf"])
def test_vamp_prior_is_the_uniform_mixture_of_the_guide_at_its_pseudo_inputs(guide):
    vae = VAE((5,), latent_dim=2, prior="vamp", prior_options={"components": 4}, guide=guide, likelihood="gaussian",
              hidden=(8,))
    z = torch.randn(6, 2)
    u = vae.prior.pseudo_inputs
    by_hand = torch.stack([vae.encode(u[k:k + 1]).log_prob(z) for k in range(4)]).logsumexp(0) - math.log(4)
    assert torch.allclose(vae.prior().log_prob(z), by_hand, atol=1e-5)
    assert u.shape == (4, 5) and bool(((u >= 0) & (u <= 1)).all())


def test_vamp_prior_pseudo_inputs_are_trained_and_not_a_cycle():
    vae = VAE((5,), latent_dim=2, prior="vamp", prior_options={"components": 4}, likelihood="gaussian", hidden=(8,))
    names = [name for name, _ in vae.named_parameters()]
    assert "prior.pseudo_inputs" in names and not any(name.startswith("prior.") and name != "prior.pseudo_inputs"
                                                        for name in names)
    assert len(vae.state_dict()) == len(names) + sum(1 for _ in vae.named_buffers())
    x = TRUTH.sample(32)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    assert bool(torch.isfinite(vae.prior.pseudo_inputs.grad).all()) and vae.prior.pseudo_inputs.grad.abs().sum() > 0
    before = vae.prior.pseudo_inputs.detach().clone()
    fit(vae.model, vae.guide, x, epochs=2, batch_size=16, lr=0.01, progress=False)
    assert not torch.allclose(vae.prior.pseudo_inputs, before)
    with pytest.raises(ConfigError, match="bind"):
        VampPrior(2, 3)()


def test_unknown_names_list_the_new_families_and_bad_options_are_one_line_errors():
    with pytest.raises(UnknownNameError, match="cauchy, iaf, lowrank, normal"):
        VAE((5,), guide="flow")
    with pytest.raises(UnknownNameError, match="vamp"):
        make_prior("vampprior", 2)
    for options in ({"rank": 0}, {"layers": 2}):
        with pytest.raises(ConfigError, match="lowrank"):
            VAE((5,), guide="lowrank", guide_options=options)
    with pytest.raises(ConfigError, match="at least latent_dim"):
        VAE((5,), latent_dim=4, guide="iaf", guide_options={"hidden": [3]})
    with pytest.raises(ConfigError, match="guide_options"):
        make_guide_family(lambda out: None, 2, rank=2)


def test_iaf_vae_fits_its_flow_round_trips_through_its_run_and_evaluates(tmp_path):
    data = load_data("digits")
    x, test = data.train[:128], data.test[:40]
    pyro.set_rng_seed(0)
    vae = VAE(data.event_shape, latent_dim=2, prior="vamp", prior_options={"components": 3}, guide="iaf",
              guide_options={"layers": 3, "hidden": [8]}, likelihood="cbernoulli", hidden=(16,))
    assert "vamp prior, iaf(3) guide" in vae.describe()
    flow_before = [p.detach().clone() for p in vae.guide_family.parameters()]
    fit(vae.model, vae.guide, x, epochs=1, batch_size=32, lr=0.01, out=tmp_path / "run", progress=False)
    assert all(not torch.equal(p, q) for p, q in zip(vae.guide_family.parameters(), flow_before))
    run = load_run(tmp_path / "run")
    assert run.model.init_kwargs["guide_options"] == {"layers": 3, "hidden": [8]}
    elbos = []
    for pair in (vae, run.model):
        pair.eval()
        pyro.set_rng_seed(1)
        elbos.append(elbo_terms(pair.model, pair.guide, test, particles=2)["elbo"])
    assert elbos[0] == pytest.approx(elbos[1], abs=1e-5)
    result = evaluate(run.model.model, run.model.guide, test, importance_samples=5, elbo_draws=2, draws=10)
    assert result["latents"]["moments"] == "monte-carlo mean/sd of z"
    assert all(math.isfinite(v) for v in result["latents"]["var_mu"] + result["latents"]["prior_variance"])
    assert math.isfinite(result["log_likelihood"])


@pytest.mark.parametrize("flags, label", [(["--guide", "lowrank", "--guide-rank", "3"], "lowrank(3)"),
                                          (["--guide", "iaf", "--guide-layers", "4"], "iaf(4)")])
def test_cli_guide_flags_become_guide_options(flags, label):
    args = build_parser().parse_args(["fit", "--prior", "vamp", "--prior-components", "3", "--hidden", "8", *flags])
    vae = catalogue_vae(args, SimpleNamespace(event_shape=(1, 8, 8)))
    assert vae.guide_family.label == label and vae.prior.components == 3


def test_a_parts_options_come_from_its_registry_with_its_own_defaults_and_others_are_refused():
    from pyro_vae.errors import ConfigError

    vamp = catalogue_vae(build_parser().parse_args(["fit", "--prior", "vamp", "--hidden", "8"]),
                         SimpleNamespace(event_shape=(1, 8, 8)))
    assert vamp.prior.components == 50  # the vamp prior's declared default, not the mixture's 10
    studentt = catalogue_vae(build_parser().parse_args(["fit", "--prior", "studentt", "--prior-df", "5", "--hidden", "8"]),
                             SimpleNamespace(event_shape=(1, 8, 8)))
    assert studentt.init_kwargs["prior_options"] == {"df": 5.0}
    with pytest.raises(ConfigError, match="^--prior-df does not apply to the normal prior; it takes --prior-scale$"):
        catalogue_vae(build_parser().parse_args(["fit", "--prior-df", "5"]), SimpleNamespace(event_shape=(1, 8, 8)))
    with pytest.raises(ConfigError, match="^--guide-rank does not apply to the iaf guide; it takes --guide-layers$"):
        catalogue_vae(build_parser().parse_args(["fit", "--guide", "iaf", "--guide-rank", "3"]),
                      SimpleNamespace(event_shape=(1, 8, 8)))


def test_a_part_registered_with_an_option_gets_its_flag_check_and_default_from_the_registry_alone():
    import argparse

    from pyro_vae import checks
    from pyro_vae.cli import _add_part_options
    from pyro_vae.options import option
    from pyro_vae.registry import Registry

    widgets = Registry("widget")
    widgets.register("round", {"radius": option(2.0, "radius", checks.positive_float, float)})(dict)
    widgets.register("square")(dict)
    parser = argparse.ArgumentParser()
    _add_part_options(parser, widgets)
    assert parser.parse_args(["--widget-radius", "3"]).widget_radius == 3.0
    assert parser.parse_args([]).widget_radius is None  # the part's own default applies
    assert "radius of the round widget (default: 2)" in " ".join(parser.format_help().split())
    with pytest.raises(SystemExit):
        parser.parse_args(["--widget-radius", "-1"])


@pytest.mark.parametrize("scale", [1.0, 1e-2, 1e-4])
def test_diagonal_normal_mixture_is_scored_exactly_by_matrix_products_also_when_a_plate_expands_it(scale):
    """The diagonal-Normal components' matrix-product path (priors._PointwiseMixture) against the
    broadcast float64 sum of per-component densities, for points at and far from the components,
    with scales down to 1e-4, and with the gradient of the components' parameters."""
    from pyro_vae.priors import _PointwiseMixture

    torch.manual_seed(0)
    loc = torch.randn(30, 6, requires_grad=True)
    sd = (scale * (0.1 + torch.rand(30, 6))).requires_grad_()
    z = torch.cat([loc[:4].detach() + sd[:4].detach() * torch.randn(4, 6), torch.randn(2, 6)]).reshape(3, 2, 6)
    logits = torch.randn(30)
    mixture = _PointwiseMixture(dist.Categorical(logits=logits), dist.Normal(loc, sd).to_event(1)).expand((3, 2))
    fast = mixture.log_prob(z)
    components = dist.Normal(loc.double(), sd.double()).to_event(1).log_prob(z.double()[..., None, :])
    exact = torch.logsumexp(components + torch.log_softmax(logits.double(), -1), -1)
    assert fast.shape == (3, 2) and fast.dtype == torch.float32
    assert torch.allclose(fast.double(), exact, rtol=1e-6, atol=1e-5)
    grads = torch.autograd.grad(fast.sum(), (loc, sd))
    exact_grads = torch.autograd.grad(exact.sum(), (loc, sd))
    for ours, theirs in zip(grads, exact_grads):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())


def test_a_lowrank_rank_above_the_latent_dimension_is_cut_to_it():
    # rank d holds every covariance; more makes the capacitance matrix singular up to rounding (the class doc)
    guide = make_guide_family("lowrank", 1, rank=2)
    assert guide.rank == 1 and guide.num_outputs_per_latent == 3
    assert make_guide_family("lowrank", 4, rank=2).rank == 2
