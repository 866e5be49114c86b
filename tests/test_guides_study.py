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
