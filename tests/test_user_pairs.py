"""A statistician's own pairs, each in its own file under tests/pairs/, subclassing nothing of ours:
(a) a VAE whose data plate is named ``obs``, (b) a hierarchical linear-Gaussian model with a global
latent (exact log-likelihood known), (c) robust factor analysis with a Student-t likelihood."""

import json
import subprocess
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae._arviz import arviz
from pyro_vae import ConfigError, evaluate, fit, load_run
from pyro_vae.analyses.compare import compare
from pyro_vae.factories import ModelFactory
from pyro_vae.inference import IWAE, elbo_terms
from pyro_vae.inference.objectives import capabilities, check_objective, make_objective
from pyro_vae.inference.plates import find_data_plate

from pairs.hierarchical import make_pair
from pairs.robust_fa import make_robust_fa
from pairs.vae_obs import make_vae

PAIRS = Path(__file__).parent / "pairs"


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pyro_vae", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def patches():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(96, 1, 2, 2, generator=generator)


@pytest.fixture
def gaussian_data():
    truth = make_pair((4,))
    generator = torch.Generator().manual_seed(3)
    mu = 2.0 * torch.randn(4, generator=generator)
    z = torch.randn(120, 2, generator=generator)
    return mu + z @ torch.randn(2, 4, generator=generator) + 0.5 * torch.randn(120, 4, generator=generator), truth


# ------------------------------------------------------------------ failure 1: any plate name, identical numbers

@pytest.mark.parametrize("plate", ["obs", "rows"])
def test_plate_name_changes_no_number(plate, patches):
    def run(name):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = make_vae((1, 2, 2), plate=name)
        return fit(vae.model, vae.guide, patches[:64], val=patches[64:], epochs=2, batch_size=16, progress=False)

    reference, renamed = run("data"), run(plate)
    assert renamed.data_plate == plate
    for a, b in zip(reference.history, renamed.history):
        assert a["train_objective"] == pytest.approx(b["train_objective"], rel=1e-6)
        assert a["val_elbo"] == pytest.approx(b["val_elbo"], rel=1e-6)


def test_data_plate_errors_list_the_plates_seen(patches):
    def no_plate(x):
        pyro.sample("x", dist.Normal(torch.zeros(x.shape[1:]), 1.0).to_event(3), obs=x)

    with pytest.raises(ConfigError, match="no plate of size 8.*plates seen: none"):
        find_data_plate(no_plate, lambda x: None, patches[:8])

    def self_subsampling(x):
        with pyro.plate("data", 1000, subsample=torch.arange(len(x))):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand(x.shape[1:]).to_event(3), obs=x)

    with pytest.raises(ConfigError, match="subsamples plate 'data' itself"):
        find_data_plate(self_subsampling, lambda x: None, patches[:8])
    vae = make_vae((1, 2, 2), plate="obs")
    with pytest.raises(ConfigError, match="data_plate 'data' does not enclose.*'obs' \\(size 8\\)"):
        find_data_plate(vae.model, vae.guide, patches[:8], "data")


# ------------------------------------------------------------------ failure 2: global latents, exact oracle

def test_global_kl_counted_once_whatever_the_batch_size(gaussian_data):
    x, pair = gaussian_data
    pair.set_exact_guide(x)
    truth = pair.exact_log_likelihood(x).item() / len(x)
    whole = elbo_terms(pair.model, pair.guide, x, batch_size=len(x))
    # exact posterior, one batch: every draw's log weight is log p(X)
    assert whole["elbo"] == pytest.approx(truth, abs=1e-4)
    assert whole["global_kl"] > 1.0  # what a per-batch count would multiply
    # batches of 7 draw the global afresh each: unbiased all the same, within the estimator's own error
    # (computed from batch totals, since the global draw couples a batch's points)
    batched = elbo_terms(pair.model, pair.guide, x, batch_size=7, particles=40)
    assert batched["draws"] == 40 and batched["elbo_mc_se"] > 0
    assert abs(batched["elbo"] - truth) < 4 * batched["elbo_mc_se"] + 1e-4


def test_evaluate_serves_a_global_latent_conditionally(gaussian_data, tmp_path):
    x, pair = gaussian_data
    pair.set_exact_guide(x)
    result = evaluate(pair.model, pair.guide, x, importance_samples=20, out=tmp_path, inference_points=5, draws=40)
    assert result["data_plate"] == "points" and set(result["conditioned_on"]) == {"mu"}
    mu = torch.tensor(result["conditioned_on"]["mu"])
    exact = dist.MultivariateNormal(mu, pair.covariance()).log_prob(x)
    assert torch.allclose(torch.tensor(result["log_likelihood_per_datapoint"]), exact, atol=1e-3)
    assert "per-latent statistics" in result["diagnostics"]["ran"]
    assert "image figures (reconstructions, generation modes, traversals)" in result["diagnostics"]["skipped"]


def test_importance_weighted_objective_refused_for_a_global_latent(gaussian_data, tmp_path):
    x, pair = gaussian_data
    with pytest.raises(ConfigError, match="iwae:5: latent site 'mu' is outside the data plate 'points'"):
        fit(pair.model, pair.guide, x, objective="iwae:5", epochs=1, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ failures 6-8

def test_one_objective_grammar_and_capabilities_by_class(patches):
    vae = make_vae((1, 2, 2))
    result = fit(vae.model, vae.guide, patches, objective="iwae:3", epochs=1, progress=False)
    assert result.history and make_objective("iwae:3").num_particles == 3
    with pytest.raises(ConfigError, match="names 3 particles but particles=4"):
        make_objective("iwae:3", 4)

    class MyIWAE(IWAE):
        pass

    assert capabilities(MyIWAE(num_particles=2)).importance_weighted
    from pyro_vae.models import VAE

    cauchy = VAE((1, 2, 2), latent_dim=2, guide="cauchy", hidden=(8,))
    with torch.no_grad(), pytest.raises(ConfigError, match="MyIWAE with 2 particle"):
        check_objective(MyIWAE(num_particles=2), cauchy.model, cauchy.guide, patches[:4], "data")


def test_refused_configuration_writes_nothing(patches, tmp_path):
    from pyro_vae.models import VAE

    vae = VAE((1, 2, 2), latent_dim=2, guide="cauchy", likelihood="cbernoulli", hidden=(8,))
    with pytest.raises(ConfigError, match="infinite"):
        fit(vae.model, vae.guide, patches, objective="elbo", epochs=1, out=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
    fit(vae.model, vae.guide, patches, objective="iwae:3", epochs=1, out=tmp_path / "x", progress=False)
    assert (tmp_path / "x" / "checkpoint.pt").exists()


@pytest.mark.parametrize("objective", ["stl", "iwae-dreg:3"])
def test_path_derivative_estimators_take_a_lognormal_guide(objective):
    x = torch.rand(32, 3) + 0.5

    def model(x):
        scale = pyro.param("scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        with pyro.plate("rows", len(x)):
            s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
            pyro.sample("x", dist.Normal(0.0, scale * s.unsqueeze(-1)).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("a", torch.tensor(0.5)) * x.abs().log().mean(-1)
        with pyro.plate("rows", len(x)):
            pyro.sample("s", dist.LogNormal(loc, 0.5))

    result = fit(model, guide, x, objective=objective, epochs=2, batch_size=32, progress=False)
    assert all(torch.isfinite(torch.tensor(row["train_objective"])) for row in result.history)


# ------------------------------------------------------------------ failures 3-5: the CLI, load_run, compare

CASES = {
    "vae_obs": ("vae_obs.py:make_vae", ["latent_dim=2", "hidden=16"], ("elbo", "iwae:3", "stl"), "digits"),
    "hierarchical": ("hierarchical.py:make_pair", ["latent_dim=2"], ("elbo", "meanfield", "stl"), "synthetic-patches"),
    "robust_fa": ("robust_fa.py:make_robust_fa", ["factors=2"], ("elbo", "iwae:3", "stl"), "synthetic-patches"),
    "lognormal": ("lognormal_vae.py:make_vae", ["latent_dim=2", "hidden=16"], ("elbo", "iwae-dreg:3", "stl"), "digits"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_fit_evaluate_and_load_run(case, tmp_path):
    spec, model_args, objectives, data = CASES[case]
    out = tmp_path / case
    args = [a for kv in model_args for a in ("--model-arg", kv)]
    done = _cli("fit", "--data", data, "--model", PAIRS / spec, *args, "--objective", objectives[1],  # iwae:3 or meanfield
                "--epochs", 2, "--batch-size", 64, "--no-progress", "--out", out)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["factory"].endswith(spec.replace("/", "")) and config["model"]["kwargs"]["event_shape"]
    refused = _cli("evaluate", out, "--importance-samples", 20, "--inference-points", 3)  # the directory's say-so runs no code
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "name the factory yourself" in refused.stderr
    shown = _cli("evaluate", out, "--model", PAIRS / spec, "--importance-samples", 20, "--inference-points", 3, "--estimator", "ais",
                 "--steps", 5, "--chains", 4, "--bracket-points", 3, "--calibration", 20)
    assert shown.returncode == 0, shown.stderr
    assert "ran: elbo, importance-sampled log-likelihood" in shown.stdout and "AIS (T = 5, M = 4) on" in shown.stdout
    run = load_run(out, model=str(PAIRS / spec))
    params = {name: value.detach().clone() for name, value in pyro.get_param_store().items()}
    assert run.factory.spec.endswith(spec) and params
    assert config["objective"] == objectives[1].split(":")[0] and config["particles"] == (3 if ":" in objectives[1] else 1)
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["data_plate"] == {"vae_obs": "obs", "hierarchical": "points", "robust_fa": "rows",
                                        "lognormal": "data"}[case]
    if case == "lognormal":  # read in z's own space (issue 35, item 6); posterior.nc holds positive draws
        assert evaluation["latents"]["moments"] == "mean/sd of z (closed form)"
        assert bool((arviz().from_netcdf(str(out / "posterior.nc")).posterior["z"] > 0).all())
    # AIS, its bracket and the calibration check run on a pair from its own file, given the globals' draw if any
    assert evaluation["ais"]["points"] == evaluation["num_datapoints"] and evaluation["ais"]["bracket"]["points"] == 3
    assert evaluation["calibration"]["simulations"] == 20
    assert ("conditioned_on" in evaluation) == (case == "hierarchical")


def test_data_outside_a_users_likelihood_get_one_line(tmp_path):
    done = _cli("fit", "--data", "synthetic-patches", "--model", PAIRS / "vae_obs.py:make_vae", "--out", tmp_path / "r")
    assert done.returncode == 2 and "outside the support of the model's observed site 'x'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()


def test_cli_refuses_vae_options_with_a_model(tmp_path):
    done = _cli("fit", "--model", PAIRS / "robust_fa.py:make_robust_fa", "--prior", "laplace", "--out", tmp_path / "r")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--prior builds the catalogue VAE" in done.stderr
    done = _cli("fit", "--model", PAIRS / "robust_fa.py:nothing", "--out", tmp_path / "r")
    assert done.returncode == 2 and "no callable 'nothing'" in done.stderr and "make_robust_fa" in done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_compare_three_objectives(case, tmp_path):
    spec, model_args, objectives, _ = CASES[case]
    from pyro_vae.factories import parse_model_arg

    factory = ModelFactory(str(PAIRS / spec), dict(parse_model_arg(a) for a in model_args) | {"event_shape": [1, 2, 2]})
    generator = torch.Generator().manual_seed(1)
    data = {split: torch.rand(n, 1, 2, 2, generator=generator) for split, n in (("train", 64), ("val", 16), ("test", 16))}
    result = compare(factory, data, tmp_path, objectives, replicates=1, epochs=2, batch_size=32, importance_samples=20, snr_particles=(1, 3),
                     snr_draws=4, snr_points=8, gap_points=4, gap_steps=5, nuts_points=2, nuts_samples=10, nuts_warmup=10,
                     nuts_chains=2, executor="serial", progress=False)
    assert [row["objective"] for row in sorted(result["summary"], key=lambda r: r["objective"])] == sorted(
        f"{o}:1" if ":" not in o else o for o in objectives)
    if case not in ("vae_obs", "lognormal"):  # pairs without an encoder and a decoder network
        assert "gradient SNR per network" in result["skipped"]
    if case == "hierarchical":  # a global latent: no importance-weighted SNR, and each such skip names why
        assert any("outside the data plate" in why for why in result["skipped"].values())


def test_cli_compare_takes_a_users_pair(tmp_path):
    done = _cli("compare", "--quick", "--data", "synthetic-patches", "--model", PAIRS / "robust_fa.py:make_robust_fa",
                "--model-arg", "factors=2", "--objectives", "elbo", "iwae:3", "--replicates", 1, "--epochs", 1, "--importance-samples", 20,
                "--clip-norm", 5, "--on-nonfinite", "rollback", "--executor", "serial", "--no-progress", "--out", tmp_path / "cmp")
    assert done.returncode == 0, done.stderr
    headline = json.loads((tmp_path / "cmp" / "headline.json").read_text())
    assert set(headline["table"]) == {"elbo:1", "iwae:3"}
    assert "gradient SNR per network" in headline["skipped"] and "skipped: gradient SNR per network" in done.stdout
    config = json.loads((tmp_path / "cmp" / "config.json").read_text())
    assert config["model"].endswith("robust_fa.py:make_robust_fa") and config["model_kwargs"] == {"factors": 2}
    # fit options that compare does not set itself reach every fit from FitOptions' flags, none of them threaded by hand
    assert config["clip_norm"] == 5.0 and config["on_nonfinite"] == "rollback"
    for fit_config in (tmp_path / "cmp" / "fits").glob("*/fit/config.json"):
        fitted = json.loads(fit_config.read_text())
        assert fitted["clip_norm"] == 5.0 and fitted["on_nonfinite"] == "rollback" and fitted["epochs"] == 1
    assert len(list((tmp_path / "cmp" / "fits").glob("*/fit/config.json"))) == 2


def _normal_pair(sized):
    """A linear-Gaussian pair whose data plate has a size or, as Pyro's semi-supervised VAE example writes it
    (``examples/vae/ss_vae_M2.py``), none."""
    def plate(x):
        return pyro.plate("data", len(x)) if sized else pyro.plate("data")

    def model(x):
        w = pyro.param("w", torch.ones(x.shape[-1]))
        with plate(x):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x)), 1.0))
            pyro.sample("x", dist.Normal(z.unsqueeze(-1) * w, 1.0).to_event(1), obs=x)

    def guide(x):
        a = pyro.param("a", torch.tensor(0.1))
        with plate(x):
            pyro.sample("z", dist.Normal(a * x.sum(-1), 1.0))

    return model, guide


@pytest.mark.parametrize("objective", ["elbo", "iwae:3"])
def test_a_plate_without_a_size_fits_as_the_sized_plate_does(objective):
    """Issue 35, item 3: with --data-plate naming an unsized plate, the scale was N/(-1): a run trained the
    negated objective (+2.99e21) and reported success.  Now the plate takes the rows of x."""
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(0))
    results = {}
    for sized in (True, False):
        pyro.clear_param_store()
        model, guide = _normal_pair(sized)
        results[sized] = fit(model, guide, x, objective=objective, epochs=3, batch_size=10, lr=0.01, seed=1,
                             progress=False, data_plate=None if sized else "data")
    assert results[False].data_plate == "data"
    assert [r["train_objective"] for r in results[False].history] == [r["train_objective"] for r in results[True].history]
    assert all(r["train_objective"] < 0 for r in results[False].history)


def test_an_unsized_plate_is_found_without_naming_it():
    model, guide = _normal_pair(sized=False)
    result = fit(model, guide, torch.randn(40, 3), epochs=1, batch_size=8, progress=False)
    assert result.data_plate == "data" and result.history[0]["train_objective"] < 0
