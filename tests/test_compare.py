"""pyro-vae compare: the quick preset end to end, and the ranking rule."""

import csv
import json
import math

import pytest

from pyro_vae.analyses.compare import format_table, summarise
from pyro_vae.cli import main


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", "--quick", "--out", str(out), "--no-progress", "--workers", "2"]) == 0
    return out


def test_iwae_is_not_worse_than_the_elbo_and_every_bound_sits_below_its_likelihood(comparison):
    summary = {row["objective"]: row for row in _rows(comparison / "results.csv")}
    assert set(summary) == {"elbo:1", "stl:1", "iwae:5", "iwae-dreg:5"}
    iwae, elbo = summary["iwae:5"], summary["elbo:1"]
    se = math.hypot(float(iwae["log_likelihood_se"]), float(elbo["log_likelihood_se"]))
    assert float(iwae["log_likelihood"]) >= float(elbo["log_likelihood"]) - se
    fits = _rows(comparison / "fits.csv")
    assert len(fits) == 4 * 2 and all(float(f["seconds_per_epoch"]) > 0 for f in fits)
    for fit in fits:  # E log mean w >= E log w (Jensen): the IS estimate is above the ELBO up to MC error
        assert float(fit["log_likelihood"]) > float(fit["test_elbo"]) - 3 * float(fit["log_likelihood_mc_se"])


def test_gradient_snr_dreg_beats_iwae_on_the_encoder_and_matches_it_on_the_decoder(comparison):
    snr = {(row["estimator"], int(row["particles"])): row for row in _rows(comparison / "snr.csv")}
    assert float(snr["iwae-dreg", 5]["encoder_snr_median"]) > float(snr["iwae", 5]["encoder_snr_median"])
    # the decoder gradient of DReG is IWAE's draw by draw, so its SNR is the same number
    assert float(snr["iwae-dreg", 5]["decoder_snr_median"]) == pytest.approx(float(snr["iwae", 5]["decoder_snr_median"]), rel=1e-3)
    # with one particle IWAE is the ELBO and DReG is STL
    assert float(snr["iwae", 1]["encoder_snr_median"]) == pytest.approx(float(snr["elbo", 1]["encoder_snr_median"]), rel=1e-3)
    assert float(snr["iwae-dreg", 1]["encoder_snr_median"]) == pytest.approx(float(snr["stl", 1]["encoder_snr_median"]), rel=1e-3)


def test_gap_split_and_nuts_outputs(comparison):
    for row in _rows(comparison / "gaps.csv"):
        total, approximation, amortisation = (float(row[k]) for k in ("total_gap", "approximation_gap", "amortisation_gap"))
        assert approximation + amortisation == pytest.approx(total, abs=1e-4)
        assert approximation > -3 * float(row["approximation_gap_mc_se"])  # a KL, up to Monte Carlo error
    headline = json.loads((comparison / "headline.json").read_text())
    assert headline["nuts"]["max_r_hat"] > 0.99 and -1 <= headline["nuts"]["spearman_khat_distance"] <= 1
    points = _rows(comparison / "nuts.csv")
    assert len(points) == 3 and all(float(p["energy_distance"]) >= -1e-9 for p in points)
    for name in ("compare.png", "nuts_marginals.png"):
        assert (comparison / "figures" / name).stat().st_size > 10_000
    assert (comparison / "nuts_posterior.nc").exists()


def test_objectives_closer_than_their_seed_spread_share_a_rank():
    fits = [{"objective": name, "seed": s, "log_likelihood": value, "test_elbo": value - 1, "test_kl": 1.0, "gap": 1.0,
             "active_units": 4, "seconds_per_epoch": 1.0, "log_likelihood_mc_se": 0.01,
             "fraction_khat_above_threshold": 0.0}
            for name, values in (("a", (-90.0, -91.0)), ("b", (-90.6, -90.8)), ("c", (-95.0, -95.2)))
            for s, value in enumerate(values)]
    rows = {row["objective"]: row for row in summarise(fits, ["a", "b", "c"])}
    assert rows["a"]["rank"] == "=1" and rows["b"]["rank"] == "=1" and rows["c"]["rank"] == "3"
    assert "not ranked apart" in format_table(list(rows.values()))


def test_a_bad_objective_spec_is_refused_with_the_valid_names(tmp_path, capsys):
    assert main(["compare", "--quick", "--objectives", "elbo", "iwea:5", "--out", str(tmp_path / "c"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "iwea" in error and "iwae-dreg" in error
    assert main(["compare", "--quick", "--objectives", "iwae:0", "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    assert "NAME:K" in capsys.readouterr().err
