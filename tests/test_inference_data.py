"""The InferenceData of q(z|x) draws (``posterior_inference_data``): its layout, and ArviZ reading it as meant.

Monte Carlo tolerances are derived from the number of draws S: the mean of S independent draws has
standard error sd / sqrt(S), the sample sd of S normal draws sd / sqrt(2 (S - 1)); the bounds allow
4.5 of them (a false failure in 1 of ~150,000 per checked number).
"""

import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae._arviz import arviz
from pyro_vae.errors import ConfigError
from pyro_vae.inference.diagnostics import khat_data, posterior_inference_data, psis
from pyro_vae.models import VAE

from linear_gaussian import LinearGaussian

DRAWS, POINTS = 1000, 20
GROUPS = {"posterior", "sample_stats", "posterior_predictive", "observed_data"}


def _linear_gaussian(scale=1.0):
    """The exact linear-Gaussian model; its guide is the exact posterior widened by ``scale``."""
    lg = LinearGaussian()
    lg.guide_scale_factor = scale
    x = lg.sample(POINTS)
    return lg, x, posterior_inference_data(lg.model, lg.guide, x, draws=DRAWS)


def _vae(draws=DRAWS):
    vae = VAE((1, 8, 8), latent_dim=2, likelihood="bernoulli", hidden=(16,))
    x = torch.bernoulli(torch.full((POINTS, 1, 8, 8), 0.3))
    indices = 100 + np.arange(POINTS)
    idata = posterior_inference_data(vae.model, vae.guide, x, draws=draws, attrs={"prior": "N(0, I)"}, indices=indices)
    return vae, x, idata


def _axes(plotted):
    """The first matplotlib Axes of what an ArviZ plot returned (an Axes or an array of them)."""
    assert plotted is not None
    return np.asarray(plotted).ravel()[0]


def test_layout_is_one_chain_of_named_dims_with_weights_predictions_and_no_fitted_parameters():
    _, x, idata = _vae()
    assert set(idata.groups()) == GROUPS  # no constant_data (network weights), no log_likelihood
    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "datapoint", "latent") and z.shape == (1, DRAWS, POINTS, 2)
    np.testing.assert_array_equal(idata.posterior["datapoint"].values, 100 + np.arange(POINTS))
    for name in ("log_joint", "log_q"):
        assert idata.sample_stats[name].dims == ("chain", "draw", "datapoint")
        assert np.isfinite(idata.sample_stats[name].values).all()
    assert idata.sample_stats["khat"].dims == ("datapoint",)
    predicted = idata.posterior_predictive["x"]
    assert predicted.dims == ("chain", "draw", "datapoint", "channel", "height", "width")
    assert predicted.shape == (1, DRAWS, POINTS, 1, 8, 8)
    assert idata.observed_data["x"].dims == ("datapoint", "channel", "height", "width")
    np.testing.assert_array_equal(idata.observed_data["x"].values, x.numpy())  # the data's own shape, not flattened
    assert "one chain" in idata.attrs["draws"] and "one chain" in idata.posterior.attrs["draws"]
    assert idata.attrs["prior"] == "N(0, I)" and idata.attrs["latent_site"] == "z"


def test_vector_data_get_a_feature_dim():
    lg, x, idata = _linear_gaussian()
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "datapoint", "feature")
    assert idata.posterior_predictive["x"].shape == (1, DRAWS, POINTS, len(lg.b))
    assert idata.observed_data["x"].shape == tuple(x.shape)


def test_posterior_predictive_draws_are_x_given_the_stored_z():
    vae, _, idata = _vae()
    predicted = idata.posterior_predictive["x"].values[0]  # (draws, points, 1, 8, 8)
    assert set(np.unique(predicted)) <= {0.0, 1.0}
    z = torch.as_tensor(idata.posterior["z"].values[0])
    with torch.no_grad():
        probs = vae.decode(z).mean.numpy()  # p(x_pixel = 1 | z) of each stored draw
    # each pixel's frequency over the draws against its mean probability: Bernoulli standard errors
    se = np.sqrt(probs.mean(0) * (1 - probs.mean(0)) / DRAWS) + 1e-6
    assert (np.abs(predicted.mean(0) - probs.mean(0)) < 4.5 * se).all()


def test_summary_has_one_row_per_latent_coordinate_and_datapoint_matching_the_exact_posterior():
    az = arviz()
    lg, x, idata = _linear_gaussian()
    summary = az.summary(idata, var_names=["z"], round_to="none")
    labels = [f"z[{i}, {j}]" for i in range(POINTS) for j in range(lg.latent_dim)]
    assert list(summary.index) == labels
    mean = summary["mean"].to_numpy().reshape(POINTS, lg.latent_dim)
    sd = summary["sd"].to_numpy().reshape(POINTS, lg.latent_dim)
    assert np.isfinite(mean).all() and np.isfinite(sd).all()
    exact = lg.posterior(x)
    exact_mean, exact_sd = exact.mean.numpy(), exact.variance.sqrt().numpy()
    assert (np.abs(mean - exact_mean) < 4.5 * exact_sd / math.sqrt(DRAWS)).all()
    assert (np.abs(sd - exact_sd) < 4.5 * exact_sd / math.sqrt(2 * (DRAWS - 1))).all()
    assert summary["r_hat"].isna().all()  # one chain: ArviZ computes no r-hat, as none is meaningful


def test_bulk_ess_of_one_chain_of_independent_draws_is_about_the_number_of_draws():
    # ArviZ's bulk ESS of S = 1000 iid normal draws in one chain, simulated for 20,000 coordinates, has
    # mean 0.964 S and sd 0.087 S; the mean over the 40 coordinates here has sd ~0.014 S, so
    # [0.85 S, 1.1 S] is 8 sd wide on either side, while any one coordinate may stray by 20-30%.
    az = arviz()
    _, _, idata = _linear_gaussian()
    relative = az.ess(idata, var_names=["z"], method="bulk")["z"].values / DRAWS
    assert relative.shape == (POINTS, 2)
    assert 0.85 < relative.mean() < 1.1
    assert relative.min() > 0.5


def test_log_joint_minus_log_q_are_the_importance_weights_of_the_stored_draws():
    lg, x, idata = _linear_gaussian(scale=1.3)  # a too-wide guide: the weights vary
    z = torch.as_tensor(idata.posterior["z"].values[0], dtype=torch.float64)  # (draws, points, latent)
    W, b, x64 = lg.W.double(), lg.b.double(), x.double()
    log_joint = (dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
                 + dist.Normal(z @ W.T + b, lg.noise).log_prob(x64).sum(-1))
    posterior = lg.posterior(x)
    log_q = dist.MultivariateNormal(posterior.mean.double(), posterior.covariance_matrix.double()).log_prob(z)
    stats = idata.sample_stats
    np.testing.assert_allclose(stats["log_joint"].values[0], log_joint.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(stats["log_q"].values[0], log_q.numpy(), rtol=1e-5, atol=1e-4)
    log_w = (stats["log_joint"] - stats["log_q"]).values[0].T  # (points, draws)
    np.testing.assert_array_equal(stats["khat"].values, psis(log_w)["khat"])
    # the importance-sampled log p(x) of these draws against the exact one, within delta-method errors
    estimate = np.logaddexp.reduce(log_w, axis=1) - math.log(DRAWS)
    relative = np.exp(log_w - estimate[:, None])  # w / mean(w)
    se = np.sqrt(relative.var(axis=1, ddof=1) / DRAWS)
    exact = lg.exact_log_likelihood(x).double().numpy()
    assert (se > 0.01).all()  # the weights do vary, so the comparison is no identity
    assert (np.abs(estimate - exact) < 4.5 * se + 1e-4).all()


def test_arviz_plots_the_khat_values_and_the_posterior_predictive_check():
    az = arviz()
    _, _, idata = _vae()
    try:
        with warnings.catch_warnings():  # the DataArray form warns that ArviZ will drop it; khat_data is the ELPDData it wants
            for shown_to_a_user in (FutureWarning, UserWarning):  # (a DeprecationWarning inside arviz is not shown)
                warnings.filterwarnings("error", category=shown_to_a_user)
            ax = _axes(az.plot_khat(khat_data(idata), show_hlines=True))
        np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], idata.sample_stats["khat"].values)
        threshold = 1 - 1 / np.log10(DRAWS)  # ArviZ's min(1 - 1/log10 K, 0.7) at K = 1000 draws
        assert khat_data(idata).good_k == pytest.approx(threshold)
        levels = {round(float(segment[0, 1]), 6) for lines in ax.collections[1:] for segment in lines.get_segments()}
        assert levels == {0.0, round(threshold, 6), 1.0}  # show_hlines draws 0, good_k and 1
        # like with like: the Bernoulli's data and its draws are both integers, so the check compares how often each value
        # occurs (step histograms), not a density estimate of 0/1 floats
        assert idata.observed_data["x"].dtype.kind == "i" and idata.posterior_predictive["x"].dtype.kind == "i"
        ax = _axes(az.plot_ppc(idata, num_pp_samples=50, random_seed=0))
        assert len(ax.get_lines()) >= 52  # 50 predictive draws, the observed data and the predictive mean
        observed = next(line for line in ax.get_lines() if line.get_label() == "Observed")
        share_of_ones = float(idata.observed_data["x"].values.mean())
        assert sorted(set(np.round(observed.get_ydata(), 6))) == sorted({round(1 - share_of_ones, 6), round(share_of_ones, 6)})
    finally:
        plt.close("all")


def test_loo_and_waic_refuse_draws_of_q_for_want_of_a_log_likelihood_group():
    az = arviz()
    _, _, idata = _vae(draws=50)
    for criterion in (az.loo, az.waic):
        with pytest.raises(TypeError, match="log likelihood not found"):
            criterion(idata)


def test_netcdf_round_trip_keeps_groups_dims_shapes_values_and_attrs(tmp_path):
    az = arviz()
    _, _, idata = _vae(draws=200)
    path = tmp_path / "posterior.nc"
    idata.to_netcdf(str(path))
    loaded = az.from_netcdf(str(path))
    assert set(loaded.groups()) == GROUPS
    for group in GROUPS:
        before, after = idata[group], loaded[group]
        assert set(after.data_vars) == set(before.data_vars)
        for name, variable in before.data_vars.items():
            assert after[name].dims == variable.dims and after[name].shape == variable.shape
            np.testing.assert_array_equal(after[name].values, variable.values)
    np.testing.assert_array_equal(loaded.posterior["datapoint"].values, 100 + np.arange(POINTS))
    assert loaded.attrs["prior"] == "N(0, I)" and loaded.attrs["draws"] == idata.attrs["draws"]


def test_one_draw_gets_infinite_khat_as_psislw_gives_for_a_tail_too_short():
    lg = LinearGaussian()
    idata = posterior_inference_data(lg.model, lg.guide, lg.sample(3), draws=1)
    assert idata.posterior["z"].shape == (1, 1, 3, 2)
    assert np.isinf(idata.sample_stats["khat"].values).all()


def test_a_global_latent_is_refused_with_the_way_out():
    def model(x):
        shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(shift, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        pyro.sample("shift", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x / 2, 0.7))

    with pytest.raises(ConfigError, match="outside the data plate.*local_pair"):
        posterior_inference_data(model, guide, torch.randn(5), draws=10, site="z")


def test_a_latent_site_named_latent_keeps_its_posterior_group_through_netcdf(tmp_path):
    """Issue 35, item 5: Pyro's ``examples/vae/vae.py`` names its latent site ``latent``; ArviZ dropped a
    variable named as a dim, so posterior.nc had no ``posterior`` group and az.summary summarised pixels."""
    az = arviz()

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("latent", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))
            pyro.sample("obs", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("latent", dist.Normal(x.expand(len(x), 2) / 3, 0.8).to_event(1))

    x = torch.randn(POINTS, 1)
    idata = posterior_inference_data(model, guide, x, draws=200)
    idata.to_netcdf(str(tmp_path / "posterior.nc"))
    loaded = az.from_netcdf(str(tmp_path / "posterior.nc"))
    assert "posterior" in loaded.groups() and loaded.posterior["latent"].dims == ("chain", "draw", "datapoint", "latent_dim")
    summary = az.summary(loaded, var_names=["latent"], kind="stats")
    assert len(summary) == POINTS * 2 and all(name.startswith("latent[") for name in summary.index)
