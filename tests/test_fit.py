"""fit: run directories, reproducibility, resuming, a user's own pair, and faults."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.data import load_data
from pyro_vae.errors import ConfigError, DataError, NonFiniteLossError, RunDirError
from pyro_vae.inference import elbo_terms, fit, linear_warmup, load_run
from pyro_vae.models import VAE


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _vae(digits, **kwargs):
    options = dict(latent_dim=4, likelihood="cbernoulli", hidden=(32,))
    options.update(kwargs)
    return VAE(digits.event_shape, **options)


def _fit(digits, out=None, epochs=3, resume=False, seed=0, lr=3e-3, **kwargs):
    pyro.set_rng_seed(seed)
    vae = _vae(digits)
    config = {"model": {"class": "VAE", "kwargs": vae.init_kwargs}}
    result = fit(vae.model, vae.guide, digits.train[:300], val=digits.val, test=digits.test, epochs=epochs,
                 batch_size=64, lr=lr, seed=seed, out=out, resume=resume, config=config, progress=False, **kwargs)
    return vae, result


def test_run_directory_holds_config_versions_history_metrics_checkpoint(digits, tmp_path):
    vae, result = _fit(digits, out=tmp_path / "run")
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 0 and config["epochs"] == 3 and config["objective"] == "elbo"
    assert "torch" in json.loads((run / "versions.json").read_text())
    assert len((run / "history.csv").read_text().strip().splitlines()) == 1 + 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"train_elbo", "val_elbo", "test_elbo", "train_seconds"}
    assert metrics["test_elbo"] == pytest.approx(result.metrics["test_elbo"])
    loaded = load_run(run)
    for name, tensor in vae.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)
    assert loaded.history == result.history


def test_same_seed_gives_the_same_numbers(digits):
    _, first = _fit(digits, seed=7)
    _, second = _fit(digits, seed=7)
    _, other = _fit(digits, seed=8)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(first.history) == strip(second.history)
    assert strip(first.history) != strip(other.history)


def test_resumed_fit_matches_an_uninterrupted_one_bit_for_bit(digits, tmp_path):
    vae_full, full = _fit(digits, out=tmp_path / "full", epochs=4)
    _fit(digits, out=tmp_path / "split", epochs=2)
    vae_resumed, resumed = _fit(digits, out=tmp_path / "split", epochs=4, resume=True)
    for name, tensor in vae_full.state_dict().items():
        assert torch.equal(vae_resumed.state_dict()[name], tensor), name
    assert resumed.metrics["test_elbo"] == full.metrics["test_elbo"]
    assert len(resumed.history) == 4
    seconds = [row["seconds"] for row in resumed.history]  # training time up to each epoch
    assert seconds == sorted(seconds) and resumed.metrics["train_seconds"] == seconds[-1]


def test_a_resumed_fit_counts_its_training_seconds_once():
    """History rows carry the running total of training seconds, so a checkpoint's total is its last row's
    (summing the rows counted epoch 1 once per later epoch: 6 s here, not 3)."""
    from pyro_vae.inference.trainer import TrainerState

    history = [{"epoch": 1, "seconds": 1.0}, {"epoch": 2, "seconds": 2.0}, {"epoch": 3, "seconds": 3.0}]
    assert TrainerState.from_checkpoint({"epoch": 3, "step": 30, "history": history}).seconds == 3.0
    assert TrainerState.from_checkpoint({"epoch": 0, "step": 0, "history": []}).seconds == 0.0


def test_resume_refuses_changed_options_and_existing_runs_are_not_overwritten(digits, tmp_path):
    _fit(digits, out=tmp_path / "run", epochs=1)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(RunDirError, match="already holds a run with a checkpoint"):
        _fit(digits, out=tmp_path / "run", epochs=1)
    with pytest.raises(RunDirError, match=r"batch_size \(saved 64, now 32\)"):
        vae = _vae(digits)
        fit(vae.model, vae.guide, digits.train[:300], epochs=2, batch_size=32, lr=3e-3, out=tmp_path / "run",
            resume=True, config={"model": {"class": "VAE", "kwargs": vae.init_kwargs}}, progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_truncated_checkpoint_is_reported(digits, tmp_path):
    _fit(digits, out=tmp_path / "run", epochs=1)
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RunDirError, match="truncated or corrupt"):
        load_run(tmp_path / "run")
    with pytest.raises(RunDirError, match="does not exist"):
        load_run(tmp_path / "missing")


def test_a_users_own_model_guide_pair_fits_through_the_same_fit():
    # Probabilistic PCA written the plain Pyro way, parameters in pyro.param, no module, no subclass.
    torch.manual_seed(0)
    x = torch.randn(500, 2) @ torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, -1.0]]) + 0.1 * torch.randn(500, 3)

    def model(x):
        w = pyro.param("w", torch.randn(2, 3))
        sigma = pyro.param("sigma", torch.tensor(1.0), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ w, sigma).to_event(1), obs=x)

    def guide(x):
        a = pyro.param("a", torch.zeros(3, 2))
        s = pyro.param("s", torch.ones(2), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x @ a, s).to_event(1))

    result = fit(model, guide, x, val=x, epochs=150, batch_size=100, lr=0.03, progress=False)
    assert result.history[-1]["val_elbo"] > result.history[0]["val_elbo"] + 1.0
    # The noise scale is learned down towards the true 0.1 from 1.
    assert pyro.param("sigma").item() < 0.4


def test_non_finite_loss_names_the_site_and_keeps_the_last_checkpoint(digits, tmp_path):
    vae, _ = _fit(digits, out=tmp_path / "run", epochs=1)
    saved = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        vae.decoder.body[0].weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="site 'x'"):
        fit(vae.model, vae.guide, digits.train[:300], epochs=2, batch_size=64, out=tmp_path / "run2", progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == saved


@pytest.mark.parametrize(
    "options, message",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": -1}, "batch_size must be a positive integer"),
        ({"particles": 0}, "particles must be a positive integer"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"beta": -0.5}, "beta must be >= 0"),
        ({"objective": "elbow"}, "unknown objective 'elbow'; expected one of: elbo, enum, iwae, iwae-dreg, meanfield, stl"),
        ({"optimizer": "sgd"}, "unknown optimizer"),
        ({"objective": pyro.infer.RenyiELBO()}, "objective RenyiELBO has no differentiable_loss, which fit"),
        ({"optimizer": pyro.optim.ExponentialLR({"optimizer": torch.optim.SGD, "optim_args": {"lr": 0.1}, "gamma": 0.9})},
         "no Pyro learning-rate scheduler"),
        ({"optimizer": pyro.optim.Adam(lambda module, name: {"lr": 0.1})}, "not a per-parameter function"),
        ({"optimizer": lambda params: "sgd"}, "returned str, not a torch.optim.Optimizer"),
        ({"optimizer": 3}, "is not usable"),
        ({"device": "tpu:9"}, "device"),
    ],
)
def test_bad_options_are_refused_with_a_message(digits, options, message):
    vae = _vae(digits)
    with pytest.raises(ConfigError, match=message):
        fit(vae.model, vae.guide, digits.train[:64], progress=False, **options)


def _fit_with(digits, optimizer, **kwargs):
    pyro.clear_param_store()
    _, result = _fit(digits, epochs=2, optimizer=optimizer, **kwargs)
    return [row["train_objective"] for row in result.history]


def test_fit_takes_pyro_optimisers_torch_classes_and_factories(digits, tmp_path):
    import functools

    by_class = _fit_with(digits, torch.optim.SGD, lr=0.05)
    assert _fit_with(digits, functools.partial(torch.optim.SGD, lr=0.05)) == by_class
    assert _fit_with(digits, pyro.optim.SGD({"lr": 0.05})) == by_class
    # Pyro's Adam is torch's unfused Adam; "adam" is the fused kernel: the same update up to float rounding.
    assert _fit_with(digits, pyro.optim.Adam({"lr": 3e-3})) == pytest.approx(_fit_with(digits, "adam", lr=3e-3), rel=1e-5)
    assert by_class != _fit_with(digits, torch.optim.SGD, lr=0.01)  # the class is given fit's lr
    _fit(digits, out=tmp_path / "run", epochs=1, optimizer=pyro.optim.Adam({"lr": 3e-3}))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["optimizer"]
    assert saved == "pyro.optim.Adam({'lr': 0.003})"


@pytest.mark.parametrize(
    "data, message",
    [
        (torch.full((10, 1, 8, 8), float("nan")), "non-finite"),
        (torch.zeros(0, 1, 8, 8), "empty"),
        (torch.rand(10, 1, 7, 7), r"expected \(n, 1, 8, 8\)"),
        (-torch.rand(10, 1, 8, 8), r"needs data in \[0, 1\]"),
    ],
)
def test_bad_data_are_refused_with_a_message(digits, data, message):
    vae = _vae(digits)
    with pytest.raises(DataError, match=message):
        fit(vae.model, vae.guide, data, progress=False)


def test_beta_scales_the_kl_in_the_objective_and_warms_up(digits):
    # With the analytic KL and beta, the mean-field objective is reconstruction - beta * KL on the same draw.
    vae = _vae(digits, likelihood="gaussian", sigma_x=0.5)
    x = digits.train[:50]
    from pyro_vae.inference import LatentScaleMessenger

    weight = LatentScaleMessenger(0.25)
    pyro.set_rng_seed(0)
    loss = pyro.infer.TraceMeanField_ELBO().loss(weight(vae.model), weight(vae.guide), x) / len(x)
    pyro.set_rng_seed(0)
    terms = elbo_terms(vae.model, vae.guide, x, particles=1)  # the same single draw
    assert -loss == pytest.approx(terms["reconstruction"] - 0.25 * terms["kl"], rel=1e-4)
    schedule = linear_warmup(2.0, 10)
    assert [schedule(s) for s in (0, 5, 10, 20)] == [0.0, 1.0, 2.0, 2.0]
    result = fit(vae.model, vae.guide, digits.train[:128], epochs=2, batch_size=64, beta=schedule, progress=False)
    assert [row["beta"] for row in result.history] == [0.2, 0.6]  # beta of each epoch's last step (1, 3)
    assert all(math.isfinite(row["train_objective"]) for row in result.history)


def test_a_checkpoint_from_another_format_version_is_refused(digits, tmp_path):
    _fit(digits, out=tmp_path / "run", epochs=1)
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)  # a checkpoint holds tensors and plain data only
    state["format_version"] = 99
    torch.save(state, path)
    with pytest.raises(RunDirError, match="written by checkpoint format 99"):
        load_run(tmp_path / "run")
    with pytest.raises(RunDirError, match="written by checkpoint format 99"):
        _fit(digits, out=tmp_path / "run", epochs=2, resume=True)
