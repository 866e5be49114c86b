"""Semi-amortised refinement at evaluation (Kim et al. 2018) against closed forms and on poor encoders."""

import math

import pyro
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from linear_gaussian import mis_amortised_problem
from pyro_vae import evaluate, fit, load_data
from pyro_vae.inference.gaps import LocalGuide, _guide_sites
from pyro_vae.inference.traces import mean_field_valid
from pyro_vae.inference.refine import refine
from pyro_vae.inference.traces import trace_pair
from pyro_vae.models import VAE, TwoLayerVAE

@pytest.fixture
def mis_amortised():
    return mis_amortised_problem(0.1, log_sd_shift=0.5)  # means off the posterior's, and too wide


def closed_forms(truth, pair, x):
    """Mean over x of the exact ELBO of the amortised guide and of the best diagonal Gaussian, whose precisions
    are the posterior precision's diagonal Lambda_jj: ELBO* = log p(x) - (sum_j log Lambda_jj - log det Lambda) / 2."""
    precision = torch.linalg.inv(truth.posterior_cov)
    log_p = truth.exact_log_likelihood(x)
    optimum = log_p - 0.5 * (precision.diag().log().sum() - torch.logdet(precision))
    with torch.no_grad():
        mean = x @ pair.params["A"].T + pair.params["c"]
        amortised = MultivariateNormal(mean, torch.diag_embed(pair.params["log_sd"].exp().expand_as(mean) ** 2))
    return optimum.mean().item(), (log_p - kl_divergence(amortised, truth.posterior(x))).mean().item()


def test_refinement_closes_the_amortisation_gap_towards_the_closed_form_optimum(mis_amortised):
    truth, pair, x = mis_amortised
    optimum, amortised = closed_forms(truth, pair, x)
    few = refine(pair.model, pair.guide, x, steps=20, draws=1000)
    assert abs(few["elbo_amortised"] - amortised) < 4 * few["elbo_amortised_mc_se"]
    # 20 steps: closer to the optimum than the encoder, by many standard errors
    assert optimum - few["elbo_refined"] < optimum - few["elbo_amortised"] - 4 * few["refinement_gain_mc_se"]
    many = refine(pair.model, pair.guide, x, steps=300, draws=1000)
    print(f"optimum {optimum:.4f}, amortised {amortised:.4f} (estimated {few['elbo_amortised']:.4f} +- "
          f"{few['elbo_amortised_mc_se']:.4f}), 20 steps {few['elbo_refined']:.4f} +- {few['elbo_refined_mc_se']:.4f}, "
          f"300 steps {many['elbo_refined']:.4f} +- {many['elbo_refined_mc_se']:.4f}")
    # 300 steps reach the optimum: Monte Carlo error, plus 0.01 nats for the optimiser's shortfall
    assert abs(many["elbo_refined"] - optimum) < 4 * many["elbo_refined_mc_se"] + 0.01


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", binarize="dynamic")


def test_refinement_never_lowers_a_points_elbo_on_a_poor_encoder(digits):
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=4, hidden=(32,))
    fit(vae.model, vae.guide, digits.train, epochs=3, batch_size=64, lr=3e-3, dynamic_binarization=True, progress=False)
    for layer in vae.encoder.modules():  # a deliberately poor encoder for the fitted decoder
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    vae.eval()
    result = refine(vae.model, vae.guide, digits.test[:100], steps=20, draws=100)
    gain, se = result["per_datapoint"]["refinement_gain"], result["per_datapoint_mc_se"]["refinement_gain"]
    print(f"gain {result['refinement_gain']:.3f} +- {result['refinement_gain_mc_se']:.3f}, smallest gain / se "
          f"{(gain / se).min():.2f}")
    assert result["refinement_gain"] >= -2 * result["refinement_gain_mc_se"]
    assert bool((gain >= -4 * se).all())  # per point, no drop beyond Monte Carlo error (4 se for 100 points)
    assert result["refinement_gain"] > 10 * result["refinement_gain_mc_se"]  # and this encoder leaves a lot to gain


def test_a_two_layer_guide_is_refined_with_z2_conditional_on_z1(digits):
    torch.manual_seed(0)
    vae = TwoLayerVAE((1, 8, 8), latent_dims=(6, 3), hidden=((16,), (8,)))
    x = digits.test[:30]
    sites, conditional = _guide_sites(vae.guide, x)
    assert set(sites) == {"z1", "z2"} and conditional == {"z2"}
    local = LocalGuide(vae.guide, sites, conditional)
    traces = []
    for guide in (vae.guide, local):  # before any step the per-point guide is the amortised one
        pyro.set_rng_seed(1)
        traces.append(pyro.poutine.trace(guide).get_trace(x))
    for name in ("z1", "z2"):
        assert torch.allclose(traces[0].nodes[name]["value"], traces[1].nodes[name]["value"])
    assert not mean_field_valid(*trace_pair(vae.model, vae.guide, x))  # so the per-point ELBO is Monte Carlo
    result = refine(vae.model, vae.guide, x, steps=5, draws=50)
    assert result["refinement_gain"] >= -2 * result["refinement_gain_mc_se"]


def test_a_lowrank_guide_is_refined_from_exactly_its_amortised_parameters(digits):
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,), guide="lowrank", guide_options={"rank": 2}).eval()
    x = digits.test[:30]
    sites, conditional = _guide_sites(vae.guide, x)
    assert set(sites["z"][1]) == {"loc", "cov_factor", "cov_diag"} and not conditional
    local = LocalGuide(vae.guide, sites, conditional)
    with torch.no_grad():
        amortised, per_point = vae.encode(x), local.distribution("z")
    for name in ("loc", "cov_factor", "cov_diag"):
        assert torch.allclose(getattr(per_point, name), getattr(amortised, name), rtol=1e-5, atol=1e-6)
    result = refine(vae.model, vae.guide, x, steps=10, draws=50)
    assert result["refinement_gain"] >= -2 * result["refinement_gain_mc_se"]


def test_a_flow_guide_is_refined_from_exactly_its_amortised_flow(digits):
    """The iaf guide's per-point version keeps the transforms its encoder conditioned and starts at the
    encoder's base: before any step it draws and scores as the amortised guide."""
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(16,), guide="iaf").eval()
    x = digits.test[:20]
    sites, conditional = _guide_sites(vae.guide, x)
    assert set(sites["z"][1]) == {"loc", "scale"} and not conditional
    local = LocalGuide(vae.guide, sites, conditional)
    traces = []
    for guide in (vae.guide, local):
        pyro.set_rng_seed(1)
        traces.append(pyro.poutine.trace(guide).get_trace(x))
    with torch.no_grad():
        amortised, per_point = (trace.nodes["z"] for trace in traces)
        assert torch.allclose(amortised["value"], per_point["value"])
        assert torch.allclose(amortised["fn"].log_prob(amortised["value"]), per_point["fn"].log_prob(amortised["value"]),
                              atol=1e-5)
    result = evaluate(vae.model, vae.guide, x, importance_samples=10, elbo_draws=2, refine_steps=3)
    assert "refinement" not in result["diagnostics"]["skipped"]
    assert result["refinement_gain"] >= -2 * result["refinement_gain_mc_se"]


def test_evaluate_reports_the_refined_and_amortised_elbos_per_point(digits):
    x = digits.test[:20]
    plain = VAE((1, 8, 8), latent_dim=2, hidden=(16,)).eval()
    result = evaluate(plain.model, plain.guide, x, importance_samples=10, elbo_draws=2, refine_steps=2)
    assert math.isfinite(result["elbo_refined"]) and len(result["refinement_gain_per_datapoint"]) == 20
    assert result["refinement_gain"] == pytest.approx(result["elbo_refined"] - result["elbo_amortised"], abs=1e-4)
