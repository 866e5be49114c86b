"""The studies, run with their --quick presets; each asserts the property it is about."""

import csv
import json

import pytest

from pyro_vae.cli import main
from pyro_vae.data import load_data
from pyro_vae.errors import RunDirError
from pyro_vae.summaries import label


@pytest.fixture(scope="module")
def identifiability(tmp_path_factory):
    out = tmp_path_factory.mktemp("identifiability")
    assert main(["analyze", "identifiability", "--quick", "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv") as handle:
        rows = {row["setting"]: row for row in csv.DictReader(handle)}
    return out, rows


def _fraction(row):
    return float(row["latent_aggregate_posterior"]) / float(row["total_data"])


def test_beta_and_sigma_x_move_variance_between_latent_and_noise(identifiability):
    _, rows = identifiability
    # the implementation thesis's claim: a larger beta or a larger fixed sigma_x pushes variance out of the latent path
    assert _fraction(rows["beta=0.25, sigma_x learned"]) > 10 * _fraction(rows["beta=4, sigma_x learned"])
    assert _fraction(rows["sigma_x=0.1"]) > 10 * _fraction(rows["sigma_x=1"])
    assert int(rows["sigma_x=0.1"]["active_units"]) > int(rows["sigma_x=1"]["active_units"])


def test_ppca_split_is_exact_and_outputs_are_complete(identifiability):
    out, rows = identifiability
    ppca = rows["pPCA (closed form)"]
    # pPCA's model variance is exactly its training data's: the split adds up to tr S
    config = json.loads((out / "config.json").read_text())
    assert config["analysis"] == "identifiability" and config["preset"] == "quick"
    train = load_data("digits").train.flatten(1).double()
    assert float(ppca["latent_prior"]) + float(ppca["noise_prior"]) == pytest.approx(
        train.var(0, unbiased=False).sum().item(), rel=1e-6)
    assert (out / "figures" / "variance_split.png").stat().st_size > 10_000
    assert len(rows) == 2 + 2 + 1 + 1 + 1
    # the plug-in KL(q(z) || p(z)) of a fully collapsed model (sigma_x = 1: no active latent) is ~0,
    # and clearly positive where the latents carry the data (sigma_x = 0.1)
    assert int(rows["sigma_x=1"]["active_units"]) == 0
    assert abs(float(rows["sigma_x=1"]["aggregate_posterior_kl_to_prior"])) < 0.05
    assert float(rows["sigma_x=0.1"]["aggregate_posterior_kl_to_prior"]) > 0.5
    assert float(rows["Gaussian mixture on the data (5 components)"]["log_likelihood"]) > float(ppca["log_likelihood"])
    with pytest.raises(RunDirError, match="already holds a finished analysis"):
        from pyro_vae.analyses import identifiability as study

        study.run(out, quick=True)


def test_unknown_analysis_lists_the_valid_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # refused by the parser, which has a parser per study
        main(["analyze", "kl-lawz", "--quick", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2 and not (tmp_path / "x").exists()
    assert "unknown analysis 'kl-lawz'; expected one of: beta-sweep, collapse, compare, guides, identifiability, kl-law, latent-sweep, noise-injection, priors, sampling, sigma-sweep, two-stage" in capsys.readouterr().err


def test_collapse_finds_collapsed_latents_that_generation_ignores(tmp_path):
    out = tmp_path / "collapse"
    assert main(["analyze", "collapse", "--quick", "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    dense = [r for r in rows if r["network"] == "mlp"]
    collapsed = [r for r in dense if r["active"] == "False"]
    # Table 1's signature: collapsed latents have Var(mu) ~ 0 and E[sigma^2] ~ 1 (the prior's)
    assert collapsed and all(float(r["var_mu"]) < 0.01 and float(r["mean_sigma2"]) > 0.85 for r in collapsed)
    assert any(r["active"] == "True" for r in dense)
    headline = json.loads((out / "headline.json").read_text())
    # Fig. 3: zeroing the collapsed latents leaves generated pixels (in [0, 1]) nearly unchanged
    assert headline["mlp"]["collapsed_generation_mean_abs_difference"] < 0.05
    for network in ("mlp", "conv"):
        # the headline log p(x) says how it was estimated, with its error and k-hat share, and the report shows them
        evaluation = json.loads((out / "fits" / network / "evaluation.json").read_text())
        assert headline[network]["test_log_likelihood_se"] == evaluation["log_likelihood_se"]
        assert headline[network]["test_log_likelihood_estimator"] == f"IS, K = {evaluation['importance_samples']}"
        assert headline[network]["fraction_khat_above_threshold"] == evaluation["fraction_khat_above_threshold"]
        assert (out / "figures" / f"variance_evolution_{network}.png").stat().st_size > 10_000
        assert (out / "fits" / network / "evaluation.json").exists() and (out / "fits" / network / "posterior.nc").exists()


def test_kl_law_holds_at_beta_1_and_fails_at_small_beta(tmp_path):
    out = tmp_path / "kl-law"
    assert main(["analyze", "kl-law", "--quick", "--out", str(out), "--no-progress"]) == 0
    headline = json.loads((out / "headline.json").read_text())
    by_beta = {row["beta"]: row for row in headline["by_beta"]}
    tolerance = headline["tolerance"]  # 3 standard errors of a variance from the 179 test digits
    assert tolerance == pytest.approx(3 * (2 / 179) ** 0.5)
    assert by_beta[1.0]["max_sum_deviation"] <= tolerance and by_beta[1.0]["max_mean_deviation"] <= tolerance
    assert by_beta[0.05]["max_sum_deviation"] > 2 * tolerance  # a weak KL term lets q(z) spread
    assert headline["smallest_beta_keeping_the_law"] == 1.0


def test_latent_sweep_finds_sparsity_past_the_useful_size(tmp_path):
    out = tmp_path / "latent-sweep"
    assert main(["analyze", "latent-sweep", "--quick", "--out", str(out), "--no-progress"]) == 0
    headline = json.loads((out / "headline.json").read_text())
    by_dim = {row["latent_dim"]: row for row in headline["by_latent_dim"]}
    assert by_dim[2]["active_units"] == 2  # a small latent space is used in full
    assert by_dim[16]["active_units"] < 16  # a large one is not: surplus latents collapse
    assert headline["first_latent_dim_with_inactive_latents"] == 16
    for row in by_dim.values():  # the IS estimate sits above the ELBO (beyond its Monte Carlo error)
        assert row["test_log_likelihood"] > row["test_elbo"] - 3 * row["test_log_likelihood_mc_se"]
    assert (out / "figures" / "latent_sweep.png").stat().st_size > 10_000


def test_sampling_deterministic_samples_are_smoother_and_closer_to_data(tmp_path):
    out = tmp_path / "sampling"
    assert main(["analyze", "sampling", "--quick", "--out", str(out), "--no-progress"]) == 0
    headline = json.loads((out / "headline.json").read_text())
    ancestral, mean = headline["ancestral (Algorithm 6)"], headline["deterministic (Algorithm 7)"]
    # the VAE implementation thesis (ch. 5): Algorithm 6 adds the decoder's pixel noise, Algorithm 7 does not
    assert ancestral["roughness"] > mean["roughness"]
    assert mean["distance_to_data"] < ancestral["distance_to_data"]
    assert ancestral["diversity"] > mean["diversity"]  # the price: less variety
    # the classifier Frechet distance is a distance: held-out real images score lowest
    reference = headline["validation data (reference)"]["frechet_distance"]
    assert 0 <= reference < min(ancestral["frechet_distance"], mean["frechet_distance"])
    assert (out / "figures" / "generation_modes.png").stat().st_size > 10_000


def test_report_gathers_studies_and_runs_into_one_html_page(tmp_path, identifiability):
    out, _ = identifiability
    run = tmp_path / "run"
    assert main(["fit", "--epochs", "1", "--latent-dim", "2", "--hidden", "16", "--out", str(run), "--no-progress"]) == 0
    page = tmp_path / "report.html"
    assert main(["report", str(out), str(run), "--out", str(page)]) == 0
    text = page.read_text()
    assert "<h2>identifiability" in text and "<h2>fit" in text
    assert text.count('src="data:image/png;base64,') >= 2  # figures embedded, no links to folders
    assert "pPCA (closed form)" in text and label("test_elbo") in text and "torch" in text
    assert oct(page.stat().st_mode & 0o777) != oct(0o600)
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")]) == 2


def test_priors_on_synthetic_patches_find_the_five_sources_and_laplace_codes_are_sparser(tmp_path):
    out = tmp_path / "priors"
    assert main(["analyze", "priors", "--quick", "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv") as handle:
        rows = {row["prior"]: row for row in csv.DictReader(handle)}
    # the patches are made from 5 basis images: of 10 latents, 5 are used
    assert int(rows["normal"]["active_units"]) == 5 and int(rows["laplace"]["active_units"]) == 5
    # Laplace-distributed sources: a Laplace prior gives heavier-tailed (sparser) codes than a Normal one;
    # the difference exceeds twice the standard error of a kurtosis from 1,000 points, sqrt(24 / 1000)
    assert float(rows["laplace"]["excess_kurtosis"]) - float(rows["normal"]["excess_kurtosis"]) > 2 * (24 / 1000) ** 0.5
    # Pyle (A Sparse VAE): the Cauchy model reconstructs worse
    assert float(rows["cauchy"]["reconstruction_squared_error"]) > 2 * float(rows["normal"]["reconstruction_squared_error"])
    assert len(list((out / "figures").glob("patterns_*.png"))) == 3


def test_beta_sweep_large_beta_collapses_the_posterior_and_the_samples(tmp_path):
    out = tmp_path / "beta-sweep"
    assert main(["analyze", "beta-sweep", "--quick", "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv") as handle:
        rows = {(row["data"], float(row["beta"])): row for row in csv.DictReader(handle)}
    for data in ("all digits", "digit 3 only"):
        small, large = rows[(data, 0.1)], rows[(data, 50.0)]
        assert int(large["active_units"]) == 0 and int(small["active_units"]) == 2
        assert float(large["latent_spread"]) < 0.01 * float(small["latent_spread"])
        # the VAE implementation thesis (ch. 5): with the posterior collapsed, prior samples lose their variety
        assert float(large["sample_diversity"]) < float(small["sample_diversity"])
    assert float(rows[("all digits", 50.0)]["sample_diversity"]) < 0.2 * float(rows[("all digits", 0.1)]["sample_diversity"])
    assert (out / "figures" / "latent_spread.png").stat().st_size > 10_000


def test_sigma_sweep_large_fixed_sigma_collapses_small_spreads_learned_uses_the_latents(tmp_path):
    out = tmp_path / "sigma-sweep"
    assert main(["analyze", "sigma-sweep", "--quick", "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv") as handle:
        rows = {(row["data"], row["setting"]): row for row in csv.DictReader(handle)}
    for data in ("all digits", "digit 3 only"):
        large, small = rows[(data, "sigma_x=1")], rows[(data, "sigma_x=0.01")]
        # the VAE implementation thesis (ch. 5), Sec. 5.3.4: sigma_x acts as sqrt(beta / 2): a large one collapses the posterior
        assert int(large["active_units"]) == 0 and int(small["active_units"]) == 2
        assert float(large["latent_spread"]) < 0.01 * float(small["latent_spread"])
        assert float(large["sample_diversity"]) < 0.2 * float(small["sample_diversity"])
    learned = rows[("all digits", "sigma_x learned")]
    assert int(learned["active_units"]) == 2
    assert float(learned["frechet_distance"]) < float(rows[("all digits", "sigma_x=1")]["frechet_distance"])
    assert (out / "figures" / "samples_reconstructions.png").stat().st_size > 10_000


def test_two_stage_second_vae_moves_the_codes_towards_the_prior(tmp_path):
    out = tmp_path / "two-stage"
    assert main(["analyze", "two-stage", "--quick", "--out", str(out), "--no-progress"]) == 0
    headline = json.loads((out / "headline.json").read_text())
    reference = headline["validation images (reference)"]
    assert 0 <= reference < min(headline["one stage"], headline["two stages"])
    first, second = headline["stages"]
    # Dai & Wipf's mechanism: stage 2's aggregate posterior is closer to N(0, I) than stage 1's
    assert 0 <= second["aggregate_posterior_kl_to_prior"] < first["aggregate_posterior_kl_to_prior"]
    assert (out / "figures" / "samples.png").stat().st_size > 10_000


def test_noise_injection_drives_gain_below_kl_collapses_and_a_short_collapse_reverses(tmp_path):
    out = tmp_path / "noise-injection"
    assert main(["analyze", "noise-injection", "--quick", "--out", str(out), "--no-progress"]) == 0
    headline = json.loads((out / "headline.json").read_text())
    for hold in (6, 12):
        run = headline[f"hold {hold} epochs"]
        assert run["noise_scale_where_gain_fell_below_kl"] is not None  # Asperti 2019: the gain drops below the KL
        assert run["min_var_mu_under_noise"] < 0.05 * run["var_mu_at_start"]
        assert run["min_kl_under_noise"] < 0.05 * run["kl_at_start"]
    assert headline["hold 6 epochs"]["revived_after_noise_removed"]  # the seed's reversibility, after a short hold
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["phase"] for row in rows} == {"start", "growing", "holding", "removed"}
    assert (out / "figures" / "noise_injection.png").stat().st_size > 10_000
