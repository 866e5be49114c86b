"""The studies, run with their --quick presets; each asserts the property it is about."""

import csv
import json

import pytest

from pyro_vae.cli import main
from pyro_vae.data import load_data
from pyro_vae.errors import RunDirError


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
    # seed 003's claim: a larger beta or a larger fixed sigma_x pushes variance out of the latent path
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
    assert len(rows) == 2 + 2 + 1 + 1
    with pytest.raises(RunDirError, match="already holds a finished analysis"):
        from pyro_vae.analyses import identifiability as study

        study.run(out, quick=True)


def test_unknown_analysis_lists_the_valid_ones(tmp_path, capsys):
    assert main(["analyze", "kl-lawz", "--quick", "--out", str(tmp_path / "x")]) == 2
    assert "unknown analysis 'kl-lawz'; expected one of: identifiability" in capsys.readouterr().err
