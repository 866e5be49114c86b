"""compare_runs / pyro-vae compare-runs: a paired comparison of fitted runs on the same test points."""

import json
import math
from pathlib import Path

import numpy as np
import pyro
import pytest

from pyro_vae import ConfigError, fit, load_data
from pyro_vae.cli import main
from pyro_vae.inference import compare_runs, importance_log_weights, log_likelihood
from pyro_vae.inference.model_comparison import compare_scores
from pyro_vae.models import VAE

from linear_gaussian import LinearGaussian

PAIRS = Path(__file__).parent / "pairs"
DIGITS = {"data": "digits", "binarize": "none"}  # what fit(..., config=) records for compare_runs to reload


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny VAEs on digits: ``good`` and ``twin`` (the same 10-epoch fit twice) and ``short`` (its first 6 epochs)."""
    data, root = load_data("digits"), tmp_path_factory.mktemp("runs")

    def run(name, epochs):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        vae = VAE(data.event_shape, latent_dim=2, likelihood="cbernoulli", hidden=(16,))
        fit(vae.model, vae.guide, data.train, epochs=epochs, out=root / name, progress=False, config=DIGITS)
        return str(root / name)

    return {name: run(name, epochs) for name, epochs in (("good", 10), ("twin", 10), ("short", 6))}


def _files(*directories):
    return sorted(str(p) for d in directories for p in Path(d).rglob("*"))


def test_two_identical_fits_show_no_difference(runs):
    before = _files(runs["good"], runs["twin"])
    result = compare_runs([runs["good"], runs["twin"]], importance_samples=50, seed=3)
    assert _files(runs["good"], runs["twin"]) == before  # nothing written by default
    (pair,) = result.pairwise
    assert pair["verdict"] == "no difference" and abs(pair["difference"]) < 0.1
    assert {row["seed"] for row in result.runs} == {3, 4}  # each run its own IS seed: seed + position
    first, second = result.runs
    assert first["per_datapoint"] != second["per_datapoint"]  # so the draws differed
    assert result.num_datapoints == 179 and result.split == "test"
    text = str(result)
    assert runs["good"] in text and runs["twin"] in text and "no difference" in text


def test_a_worse_fit_is_found_worse(runs, tmp_path):
    result = compare_runs([runs["short"], runs["good"]], importance_samples=50, out=tmp_path / "cmp.json")
    best, worse = result.runs
    assert best["run"] == runs["good"] and worse["run"] == runs["short"] and best["seed"] == 1
    assert worse["diff"] > 2 * worse["dse"] > 0
    assert worse["verdict"] == f"{runs['good']} better" == result.pairwise[0]["verdict"]
    written = json.loads((tmp_path / "cmp.json").read_text())
    assert written["runs"][0]["run"] == runs["good"] and written["pairwise"][0]["difference"] == pytest.approx(worse["diff"])


def test_paired_se_is_smaller_and_matches_numpy(runs):
    result = compare_runs([runs["short"], runs["good"]], importance_samples=50)
    rows = {row["run"]: row for row in result.runs}
    (pair,) = result.pairwise
    assert pair["se"] < pair["unpaired_se"] / 2  # the points' variation cancels
    l_a, l_b = (np.array(rows[runs[name]]["per_datapoint"]) for name in ("good", "short"))
    m_a = np.array(rows[runs["good"]]["per_datapoint_mc_se"])
    n = len(l_a)
    d = l_a - l_b
    assert pair["a"] == runs["good"] and pair["difference"] == pytest.approx(d.mean(), rel=1e-9)
    # the spread over points holds each point's Monte Carlo noise already (module doc)
    assert pair["se"] == pytest.approx(np.sqrt(d.var(ddof=1) / n), rel=1e-9)
    assert rows[runs["good"]]["se"] == pytest.approx(np.sqrt(l_a.var(ddof=1) / n), rel=1e-9)
    assert rows[runs["good"]]["mc_se"] == pytest.approx(np.sqrt((m_a**2).sum()) / n, rel=1e-9)
    assert pair["unpaired_se"] == pytest.approx(np.hypot(rows[runs["good"]]["se"], rows[runs["short"]]["se"]))


def test_exact_model_against_itself_and_the_folded_monte_carlo_error():
    """A linear-Gaussian model with a too-wide guide: log p(x) is exact, so every difference is Monte Carlo."""
    truth = LinearGaussian()
    truth.guide_scale_factor = 1.5
    x = truth.sample(100)
    scores = [log_likelihood(importance_log_weights(truth.model, truth.guide, x, particles=50, seed=seed))
              for seed in range(21)]
    verdicts = [compare_scores({"A": scores[r], "B": scores[r + 1]})[1][0]["verdict"] for r in range(20)]
    assert verdicts.count("no difference") >= 18
    # on these fixed points the spread of the mean over seeds is the Monte Carlo error the tables fold in
    means = np.array([s["log_likelihood"] for s in scores])
    folded = np.mean([float((s["per_datapoint_mc_se"] ** 2).sum().sqrt()) / len(x) for s in scores])
    assert 0.5 < means.std(ddof=1) / folded < 1.5
    exact = truth.exact_log_likelihood(x).double()
    assert abs(means.mean() - exact.mean().item()) < 4 * folded  # the estimates centre on the exact value


def _fit_cli(out, spec, *options):
    pyro.clear_param_store()  # as a fresh process would: these pairs keep their parameters in Pyro's param store
    assert main(["fit", "--data", "digits", "--model", str(PAIRS / spec), *options, "--epochs", "2", "--no-progress",
                 "--out", str(out)]) == 0


def test_cli_compares_a_users_pairs_and_refuses_different_data(tmp_path, capsys):
    for name in ("a", "b"):  # the same fit twice
        _fit_cli(tmp_path / name, "robust_fa.py:make_robust_fa", "--model-arg", "factors=2")
    _fit_cli(tmp_path / "mu", "hierarchical.py:make_pair", "--model-arg", "latent_dim=2")  # a global latent mu
    _fit_cli(tmp_path / "other", "robust_fa.py:make_robust_fa", "--model-arg", "factors=2", "--digit", "3")
    capsys.readouterr()
    runs = [str(tmp_path / name) for name in ("a", "b", "mu")]
    named = ["--model", str(PAIRS / "robust_fa.py:make_robust_fa"), "--model", str(PAIRS / "hierarchical.py:make_pair")]
    assert main(["compare-runs", *runs, *named, "--importance-samples", "20", "--out", str(tmp_path / "cmp.json")]) == 0
    out = capsys.readouterr().out
    assert all(run in out for run in runs) and out.count("conditional on one draw of mu") == 1
    result = json.loads((tmp_path / "cmp.json").read_text())
    assert {row["run"]: row["conditioned_on"] for row in result["runs"]} == {runs[0]: [], runs[1]: [], runs[2]: ["mu"]}
    assert len(result["pairwise"]) == 3 and result["num_datapoints"] == 179
    twins = next(p for p in result["pairwise"] if {p["a"], p["b"]} == set(runs[:2]))
    assert twins["verdict"] == "no difference"

    assert main(["compare-runs", runs[0], str(tmp_path / "other"), *named[:2], "--importance-samples", "20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pyro-vae: error: ") and "digit None vs [3]" in err


def test_python_refusals(runs, tmp_path):
    with pytest.raises(ConfigError, match="at least two runs"):
        compare_runs([runs["good"]])
    bare = tmp_path / "bare"
    data = load_data("digits")
    vae = VAE(data.event_shape, latent_dim=2, likelihood="cbernoulli", hidden=(8,))
    fit(vae.model, vae.guide, data.train[:64], epochs=1, out=bare, progress=False)  # no config: data unknown
    with pytest.raises(ConfigError, match="records no data set"):
        compare_runs([bare, runs["good"]], importance_samples=5)
    result = compare_runs([bare, runs["good"]], x=data.val[:50], importance_samples=5)  # explicit points: scored as given
    assert result.num_datapoints == 50 and result.split is None and result.runs[0]["run"] == runs["good"]


def test_compare_on_ais_and_flag_an_estimate_that_cannot_vouch_for_itself(runs, monkeypatch):
    from pyro_vae import summaries
    from pyro_vae.inference.ais import AISOptions

    x = load_data("digits").test[:12]
    on_is = compare_runs([runs["short"], runs["good"]], x=x, importance_samples=30)
    on_ais = compare_runs([runs["short"], runs["good"]], x=x, ais=AISOptions(steps=15, chains=25))  # PSIS from 25
    assert on_ais.estimator == "ais" and on_ais.ais["steps"] == 15 and on_is.estimator == "is"
    assert "by AIS with T = 15, M = 25" in str(on_ais)
    # the same paired arithmetic on other estimates of the same points: each AIS point has its chains' error
    for row in on_ais.runs:
        assert len(row["per_datapoint"]) == 12 and all(se > 0 for se in row["per_datapoint_mc_se"])
        assert math.isfinite(row["khat_share"]) and 0 < row["khat_threshold"] < 1
    # a flagged run says so in its row and under the table, and the way out is named (every run is flagged
    # when any share of points above the threshold is too many)
    monkeypatch.setattr(summaries, "HIGH_KHAT_SHARE", -1.0)  # the one rule's share (pyro_vae.summaries.khat_flagged)
    flagged = compare_runs([runs["short"], runs["good"]], x=x, importance_samples=30)
    text = str(flagged)
    assert all(row["flag"] for row in flagged.runs) and text.count("FLAGGED") == 2
    assert f"warning: {runs['good']}: IS's k-hat is above" in text and "--estimator ais" in text
    assert "warning" not in str(on_is) or any(row["flag"] for row in on_is.runs)


def test_the_flag_rule_follows_the_share_of_points_above_the_threshold():
    from pyro_vae.inference.model_comparison import _flag
    from pyro_vae.summaries import HIGH_KHAT_SHARE

    assert _flag({"fraction_khat_above_threshold": HIGH_KHAT_SHARE, "khat_threshold": 0.7}, "IS")["flag"] == ""
    flag = _flag({"fraction_khat_above_threshold": 0.997, "khat_threshold": 0.67}, "IS")["flag"]
    assert "99.7% of the points" in flag and "bias alone" in flag
