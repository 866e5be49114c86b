"""Bad input gets one line of ours and changes nothing: a table of CLI and Python cases, and random ones.

The property-based tests drive ``pyro-vae fit``'s argument parser (through ``main``, so accepted
arguments really fit) and ``fit``'s Python arguments with random values: every outcome is a success
or a one-line error of ours (exit status 2 / a ``PyroVAEError``), never another exception.
"""

import json
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_vae.cli import main
from pyro_vae.errors import PyroVAEError
from pyro_vae.inference import evaluate, fit


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    return code, [line for line in err.strip().splitlines() if line.startswith("pyro-vae")], err


def _assert_one_line_of_ours(code, ours, err, pattern=""):
    assert "Traceback" not in err, err
    assert code == 2, err
    assert len(ours) == 1 and ours[0].startswith("pyro-vae: error: "), err
    assert re.search(pattern, ours[0]), ours[0]


FIT_CASES = [
    (["--seed", "-1"], "seed must be an integer from 0 to 2\\*\\*32 - 1"),
    (["--seed", str(2**64)], "seed must be an integer"),
    (["--seed", "1.5"], "seed must be an integer"),
    (["--kl-warmup", "inf"], "kl_warmup must be >= 0 and finite"),
    (["--kl-warmup", "nan"], "kl_warmup must be >= 0 and finite"),
    (["--kl-warmup", "-5"], "kl_warmup must be >= 0"),
    (["--kl-warmup", "1e30"], "longer than the fit's 1: beta would end at 1e-30 instead of 1"),
    (["--beta", "nan"], "beta must be >= 0"),
    (["--lr", "inf"], "lr must be a positive number"),
    (["--clip-norm", "0"], "clip_norm must be a positive number"),
    (["--batch-size", "1e30"], "batch_size must be an integer"),
    (["--latent-dim", "1000000000"], "parameters .* needs about .* more than the .* of memory here"),
    (["--hidden", "100000000"], "needs about .* more than"),
    (["--prior", "mixture", "--prior-components", "100000000000"], "needs about .* more than"),
    (["--prior-components", "0"], "prior_components must be a positive integer"),
    (["--prior-scale", "-1"], "prior_scale must be a positive number"),
    (["--particles", "99999999999999999999", "--objective", "iwae"], "K = 99999999999999999999 .* needs about"),
    (["--objective", "iwae:99999999999999999999"], "needs about"),
    (["--objective", "iwae:"], "expected NAME or NAME:K with K a positive integer"),
    (["--objective", "iwae:0"], "expected NAME or NAME:K"),
    (["--device", "meta"], "device 'meta' holds no data"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--device", "cuda:7"], "cuda"),
    (["--epochs", "nan"], "epochs must be an integer"),
    (["--on-nonfinite", "ignore"], "unknown on_nonfinite .ignore.; expected one of: raise, rollback"),
    (["--optimizer", "sgd"], "unknown optimizer"),
    (["--no-such-option"], "unrecognized arguments"),
]


@pytest.mark.parametrize("argv, pattern", FIT_CASES)
def test_bad_fit_options_are_one_line_and_write_nothing(tmp_path, capsys, argv, pattern):
    out = tmp_path / "run"
    _assert_one_line_of_ours(*_run(["fit", "--epochs", "1", "--no-progress", "--out", str(out), *argv], capsys), pattern)
    assert not out.exists()


@pytest.mark.parametrize("where, pattern", [
    ("file", "is a file, not a directory"),
    ("/dev/null", "is a file, not a directory"),
    ("long", "longer than the 255"),
    ("under-a-file", "is a file, not a directory"),
])
def test_an_out_that_cannot_be_written_is_one_line(tmp_path, capsys, where, pattern):
    (tmp_path / "file").write_text("keep")
    out = {"file": tmp_path / "file", "/dev/null": "/dev/null", "long": tmp_path / ("x" * 300),
           "under-a-file": tmp_path / "file" / "run"}[where]
    _assert_one_line_of_ours(*_run(["fit", "--epochs", "1", "--no-progress", "--out", str(out)], capsys), pattern)
    assert (tmp_path / "file").read_text() == "keep"


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fitted") / "run"
    assert main(["fit", "--epochs", "1", "--latent-dim", "2", "--hidden", "16", "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("argv, pattern", [
    (["--seed", "-1"], "seed must be an integer"),
    (["--inference-points", "0"], "points must be a positive integer"),
    (["--inference-points", "-1"], "points must be a positive integer"),
    (["--alpha", "nan"], "alpha must be a finite number"),
    (["--alpha", "inf"], "alpha must be a finite number"),
    (["--importance-samples", "0"], "importance_samples must be a positive integer"),
    (["--importance-samples", "1000000000000000"], "log importance weights .* needs about .* more than"),
    (["--refine-steps", "100000000000000000000"], "--refine-steps would draw through the model 2.86e\\+23 times"),
    (["--elbo-draws", "100000000000"], "the ELBO terms would draw through the model 1.79e\\+13 times"),
    (["--max-memory", "0"], "memory size"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--device", "meta"], "holds no data"),
])
def test_bad_evaluate_options_are_one_line(fitted_run, capsys, argv, pattern):
    _assert_one_line_of_ours(*_run(["evaluate", str(fitted_run), *argv], capsys), pattern)


@pytest.mark.parametrize("spoil, pattern", [
    (lambda run: (run / "config.json").write_text("[1, 2]"), "must hold a JSON object, found list"),
    (lambda run: (run / "config.json").write_text("{not json"), "config.json cannot be read"),
    (lambda run: _set_latent_dim(run, "abc"), "latent_dim must be a positive integer, got 'abc'"),
    (lambda run: _drop_checkpoint_entry(run, "param_store"), "entry 'param_store' is missing"),
    (lambda run: _set_latent_dim(run, 3), "does not match the pair"),
])
def test_a_damaged_run_directory_is_one_line(fitted_run, tmp_path, capsys, spoil, pattern):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(fitted_run, run)
    spoil(run)
    _assert_one_line_of_ours(*_run(["evaluate", str(run), "--importance-samples", "2"], capsys), pattern)


def _set_latent_dim(run, value):
    config = json.loads((run / "config.json").read_text())
    config["model"]["kwargs"]["latent_dim"] = value
    (run / "config.json").write_text(json.dumps(config))


def _drop_checkpoint_entry(run, key):
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    del state[key]
    torch.save(state, run / "checkpoint.pt")


def test_an_interrupted_fit_says_what_is_really_on_disk(tmp_path, capsys, monkeypatch):
    import pyro_vae.inference as inference

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "fit", interrupted)
    assert main(["fit", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "run")]) == 130
    assert "no epoch had finished" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["fit", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    monkeypatch.setattr(inference, "fit", interrupted)
    assert main(["fit", "--epochs", "2", "--resume", "--no-progress", "--out", str(tmp_path / "run")]) == 130
    assert "keeps the checkpoint of epoch 1 (continue with --resume)" in capsys.readouterr().err
    monkeypatch.setattr(inference, "fit", interrupted)


# ---------------------------------------------------------------- Python calls


def _pair():
    def model(x):
        w = pyro.param("w", torch.ones(2))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(w * z[..., None], 1.0).to_event(1), obs=x)

    def guide(x):
        a = pyro.param("a", torch.zeros(()))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(a, 1.0))

    return model, guide


def test_numpy_lists_float64_and_booleans_are_converted():
    import numpy as np

    model, guide = _pair()
    x = np.random.default_rng(0).normal(size=(40, 2))
    for data in (x, x.tolist(), torch.tensor(x), torch.tensor(x) > 0):
        pyro.clear_param_store()
        result = fit(model, guide, data, epochs=1, progress=False)
        assert result.metrics["train_elbo"] < 0
        assert evaluate(model, guide, data, importance_samples=3)["log_likelihood"] < 0


def test_model_and_guide_must_sample_the_same_sites():
    model, guide = _pair()

    def no_z(x):
        pyro.param("a", torch.zeros(()))

    def extra(x):
        a = pyro.param("a", torch.zeros(()))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(a, 1.0))
            pyro.sample("u", dist.Normal(0.0, 1.0))

    with pytest.raises(PyroVAEError, match="the guide has no site 'z', which the model samples"):
        fit(model, no_z, torch.randn(20, 2), epochs=1, progress=False)
    with pytest.raises(PyroVAEError, match="the guide samples 'u', which the model lacks"):
        fit(model, extra, torch.randn(20, 2), epochs=1, progress=False)
    with pytest.raises(PyroVAEError, match="the guide has no site 'z'"):
        evaluate(model, no_z, torch.randn(20, 2), importance_samples=2)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(seed=-1), "seed"), (dict(seed="abc"), "seed"), (dict(seed=None), "seed"), (dict(seed=1.5), "seed"),
    (dict(beta="1"), "beta"), (dict(beta=float("nan")), "beta"), (dict(epochs=float("nan")), "epochs"),
    (dict(lr=float("inf")), "lr"), (dict(batch_size=True), "batch_size"), (dict(device="meta"), "device"),
    (dict(device=2**63), "unknown device"),  # found by the property-based test: torch raised a ValueError
    (dict(train="abc"), "cannot be read as numbers"), (dict(train=torch.empty(0, 2)), "are empty"),
    (dict(train=torch.full((4, 2), float("nan"))), "non-finite"),
    (dict(train=torch.randn(4, 2).to("meta")), "meta device hold no values"), (dict(eval_batch_size=0), "eval_batch_size"),
])
def test_bad_fit_arguments_are_a_pyro_vae_error_naming_them(kwargs, pattern):
    model, guide = _pair()
    options = {"train": torch.randn(20, 2), "epochs": 1, "progress": False, **kwargs}
    with pytest.raises(PyroVAEError, match=pattern):
        fit(model, guide, options.pop("train"), **options)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(max_memory=0), "max_memory"), (dict(max_memory=-5), "max_memory"), (dict(inference_points=-1), "inference_points"),
    (dict(alpha=float("nan")), "alpha"), (dict(seed=-1), "seed"), (dict(importance_samples=0), "importance_samples"),
    (dict(x=torch.empty(0, 2)), "are empty"), (dict(x=torch.full((3, 2), float("inf"))), "non-finite"),
])
def test_bad_evaluate_arguments_are_a_pyro_vae_error_naming_them(kwargs, pattern):
    model, guide = _pair()
    options = {"x": torch.randn(10, 2), "importance_samples": 2, **kwargs}
    with pytest.raises(PyroVAEError, match=pattern):
        evaluate(model, guide, options.pop("x"), **options)


@pytest.mark.parametrize("kwargs", [dict(event_shape=()), dict(event_shape=(0,)), dict(event_shape=(1, 2.5, 8)),
                                    dict(event_shape=(64,), latent_dim=True), dict(event_shape=(64,), latent_dim=0),
                                    dict(event_shape=(64,), hidden=16), dict(event_shape=(64,), hidden=(8, 0)),
                                    dict(event_shape=(64,), hidden="64")])
def test_bad_vae_shapes_are_refused(kwargs):
    from pyro_vae.models import VAE

    with pytest.raises(PyroVAEError, match="event_shape|latent_dim|hidden"):
        VAE(**kwargs)


def test_files_and_factories_named_on_the_command_line_are_checked_before_they_are_read(tmp_path, capsys):
    """Issue 38, items 2 and 10: a device, a directory or a huge file as --model-args, a path that is no
    module name, a directory ending in .py, JSON nested 60,000 deep: one line each, nothing read whole."""
    (tmp_path / "dir.py").mkdir()
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as stream:
        stream.truncate(17 * 2**20)  # sparse: no disk spent
    pair = "tests/pairs/robust_fa.py:make_robust_fa"
    cases = [
        (["--model", pair, "--model-args", "/dev/zero"], "/dev/zero is not a regular file"),
        (["--model", pair, "--model-args", str(tmp_path)], "is a directory; name a file"),
        (["--model", pair, "--model-args", str(huge)], "has 17,825,792 bytes, more than the 16,777,216"),
        (["--model", pair, "--model-arg", "factors=" + "[" * 60_000], "nested too deeply"),
        (["--model", "../../../../etc/passwd:x"], "is neither a file ending in .py nor a module name"),
        (["--model", f"{tmp_path / 'dir.py'}:make"], "dir.py is a directory; name a file"),
    ]
    for argv, pattern in cases:
        code, ours, err = _run(["fit", "--data", "synthetic-patches", *argv, "--out", str(tmp_path / "run")], capsys)
        _assert_one_line_of_ours(code, ours, err, re.escape(pattern))
        assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- random inputs

_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=4), st.lists(st.integers(-3, 3), max_size=2))
_SMALL_COUNT = st.one_of(st.integers(-3, 2), st.sampled_from([0.5, float("nan"), "1", None, True]))
_FIT_ARGUMENTS = {
    "epochs": _SMALL_COUNT, "batch_size": _JUNK, "lr": _JUNK, "beta": _JUNK, "seed": _JUNK, "clip_norm": _JUNK,
    "particles": st.one_of(_SMALL_COUNT, st.integers(10**13, 10**30)), "objective": st.one_of(
        st.sampled_from(["elbo", "meanfield", "iwae", "stl", "iwae-dreg", "iwae:", "iwae:3", "x:1", ":"]), st.text(max_size=6)),
    "optimizer": st.one_of(st.sampled_from(["adam", "clippedadam"]), _JUNK), "device": st.one_of(
        st.sampled_from(["cpu", "meta", "cuda", "cpu:0"]), _JUNK), "on_nonfinite": st.one_of(st.just("raise"), _JUNK),
    "data_plate": st.one_of(st.none(), st.just("data"), st.text(max_size=4)),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=_FIT_ARGUMENTS))
def test_random_fit_arguments_fit_or_raise_one_line_of_ours(kwargs):
    pyro.clear_param_store()
    model, guide = _pair()
    try:
        result = fit(model, guide, torch.randn(24, 2), progress=False, **kwargs)
    except PyroVAEError as error:
        assert "\n" not in str(error), str(error)
    else:
        assert len(result.history) == result.metrics["epochs"] >= 1


_VALUES = st.one_of(st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e30", "1.5", "", "x", "18446744073709551616",
                                     "iwae:", "meta", "1", "2"]), st.text(alphabet="0123456789.-e:abc", max_size=5))
_OPTIONS = ["--seed", "--epochs", "--batch-size", "--lr", "--beta", "--kl-warmup", "--particles", "--latent-dim",
            "--prior-components", "--prior-scale", "--clip-norm", "--objective", "--device", "--hidden", "--prior",
            "--sigma-x", "--binarize"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_OPTIONS), _VALUES), max_size=3))
def test_random_cli_arguments_fit_or_give_one_line_of_ours(tmp_path_factory, capsys, options):
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["fit", *[token for pair in options for token in pair], "--epochs", "1", "--hidden", "8", "--latent-dim", "2",
            "--no-progress", "--out", str(out)]
    code, ours, err = _run(argv, capsys)
    assert "Traceback" not in err, err
    if code == 0:
        assert (out / "checkpoint.pt").is_file()
    else:
        _assert_one_line_of_ours(code, ours, err)
        assert not (out / "checkpoint.pt").exists()
