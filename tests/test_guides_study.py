"""``pyro-vae analyze guides --quick``: every guide, the VampPrior and both models fit and are scored
alike, the numbers obey the bounds they must, and what cannot be computed says why."""

import csv
import json
import math

import pytest

from pyro_vae.analyses.guides import PUBLISHED, guide_options
from pyro_vae.cli import main
from pyro_vae.errors import ConfigError


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("guides") / "study"
    assert main(["analyze", "guides", "--quick", "--out", str(out), "--no-progress"]) == 0
    with open(out / "results.csv") as stream:
        rows = list(csv.DictReader(stream))
    return out, rows


def test_every_setting_is_fitted_and_scored(study):
    out, rows = study
    settings = {(r["layers"], r["guide"], r["prior"], r["objective"]) for r in rows}
    assert settings == {(layers, guide, "normal", "elbo") for layers in ("one-layer", "two-layer")
                        for guide in ("normal", "lowrank", "iaf:2")} | {("one-layer", "normal", "vamp", "elbo")}
    assert list(rows[0])[:4] == ["layers", "objective", "prior", "guide"]  # labels first
    for row in rows:
        log_p, elbo = float(row["log_likelihood"]), float(row["test_elbo"])
        # log p(x) >= ELBO; the IS estimate at K = 100 is itself a lower bound, so allow its error only
        assert log_p > elbo - 3 * float(row["test_elbo_mc_se"]) - 0.05, row
        # ArviZ's threshold at K = 100 is 1 - 1/log10(K) = 0.5, below 0.7
        assert 0 <= float(row["fraction_khat_above_0.7"]) <= float(row["fraction_khat_above_threshold"]) + 1e-12
        assert float(row["seconds_per_epoch"]) > 0 and int(row["active_units"]) >= 0
    assert (out / "figures" / "guides.png").stat().st_size > 10_000
    headline = json.loads((out / "headline.json").read_text())
    assert headline["best"] in {",".join(p.replace(":", "=") for p in s) for s in settings}


def test_gap_split_runs_for_every_guide_flows_included(study):
    _, rows = study
    for row in rows:
        approximation, se = float(row["approximation_gap"]), float(row["approximation_gap_mc_se"])
        # KL(q*_x || p(z|x)) >= 0, up to its Monte Carlo error; for a flow q*_x refits its base only
        assert approximation > -3 * se, row
        assert float(row["amortisation_gap_mc_se"]) > 0


def test_guide_specs_and_published_numbers():
    assert guide_options("iaf:4") == ("iaf", {"layers": 4}) and guide_options("lowrank:3") == ("lowrank", {"rank": 3})
    assert guide_options("normal") == ("normal", {})
    with pytest.raises(ConfigError, match="only iaf:LAYERS and lowrank:RANK"):
        guide_options("normal:3")
    # Burda et al. (2016), Table 1: the IWAE and the second layer each improve on the one-layer VAE
    assert PUBLISHED[("one-layer", "iwae:5")] > PUBLISHED[("one-layer", "elbo")]
    assert PUBLISHED[("two-layer", "elbo")] > PUBLISHED[("one-layer", "elbo")]


def test_every_fit_gets_an_ais_log_likelihood_with_a_finite_error_and_its_gap(study):
    out, rows = study
    for row in rows:
        ais, se = float(row["log_likelihood_ais"]), float(row["log_likelihood_ais_mc_se"])
        assert math.isfinite(ais) and 0 < se < math.inf, row
        # both are stochastic lower bounds of the same numbers: AIS is no worse than the ELBO by more than its error
        assert float(row["approximation_gap_ais"]) > -3 * float(row["approximation_gap_ais_mc_se"]) - 0.05, row
        assert 0 < float(row["ais_acceptance"]) < 1
    bracketed = [row for row in rows if math.isfinite(float(row["bracket_width"]))]
    assert {row["layers"] for row in bracketed} == {"one-layer", "two-layer"}
    assert all(row["guide"] == "normal" and row["prior"] == "normal" for row in bracketed)
    headline = json.loads((out / "headline.json").read_text())
    assert set(headline["bracket_width_by_fit"]) == {"one-layer,normal,normal,elbo", "two-layer,normal,normal,elbo"}
    assert (out / "figures" / "guides_ais.png").stat().st_size > 10_000
