"""The command line: the README's main job, and one-line errors with exit status 2."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_vae.cli import main
from pyro_vae.summaries import estimate_text

README = Path(__file__).resolve().parents[1] / "README.md"


def test_fit_command_writes_a_run_directory_with_figure(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--epochs", "2", "--latent-dim", "3", "--hidden", "32", "--out", str(out), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()  # an aligned table: label, value, metrics.json's key
    metrics = json.loads((out / "metrics.json").read_text())
    assert ["epochs", "2"] in [line.split() for line in lines] and metrics["epochs"] == 2 and metrics["test_elbo"] < 0
    test_elbo = next(line for line in lines if line.endswith("  test_elbo"))
    assert test_elbo.startswith("test ELBO (nats per point)  ")  # the human label, with its unit
    printed = test_elbo[len("test ELBO (nats per point)"):-len("test_elbo")].strip()
    assert printed == estimate_text(metrics["test_elbo"], metrics["test_elbo_mc_se"])
    decimals = printed.split(" +- ")[1].split(".")[1]  # the error to two significant figures
    assert len(decimals.lstrip("0")) == 2
    for figure in ("reconstructions_samples", "training_curve"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 5_000
    config = json.loads((out / "config.json").read_text())
    assert config["binarize"] == "dynamic" and config["model"]["kwargs"]["latent_dim"] == 3


def test_python_dash_m_works_and_errors_are_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "fit", "--prior", "gaussian", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == "pyro-vae: error: unknown prior 'gaussian'; expected one of: cauchy, laplace, mixture, normal, studentt, vamp"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--likelihood", "poisson"], "unknown likelihood 'poisson'"),
        (["--guide", "laplace"], "unknown guide 'laplace'"),
        (["--network", "resnet"], "unknown network 'resnet'"),
        (["--objective", "vimco"], "unknown objective 'vimco'"),
        (["--data", "cifar"], "unknown data set 'cifar'"),
        (["--latent-dim", "0"], "latent_dim must be a positive integer"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
        (["--particles", "0"], "particles must be a positive integer"),
        (["--lr", "-1"], "lr must be a positive number"),
        (["--beta", "-1"], "beta must be >= 0"),
        (["--sigma-x", "zero", "--likelihood", "gaussian"], "--sigma-x must be a positive number"),
        (["--likelihood", "bernoulli", "--binarize", "none"], r"needs data in \{0, 1\}"),
        (["--guide", "cauchy", "--objective", "meanfield"], "KL\\(q \\|\\| p\\) is infinite"),
        (["--data", "mnist", "--data-dir", "/nonexistent"], "no MNIST files"),
        (["--network", "conv", "--data", "synthetic-patches", "--likelihood", "gaussian", "--hidden", "0"], "positive layer widths"),
    ],
)
def test_bad_input_gets_a_one_line_error(tmp_path, capsys, argv, message):
    try:  # argparse's own errors (--hidden) exit with 2 as well
        code = main(["fit", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress", *argv])
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, err), err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_readme_user_pair_example_runs():
    text = README.read_text()
    block = re.search(r"<!-- user-pair-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["result"].history[-1]["val_elbo"] > namespace["result"].history[0]["val_elbo"]


def test_version_names_this_package_and_the_libraries_its_numbers_depend_on(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"pyro-vae {version('pyro-vae')} (")
    for name in ("torch", "pyro-ppl", "arviz"):
        assert f"{name} {version(name)}" in line


@pytest.mark.parametrize("folder", ["inference", "models", "analyses"])
def test_the_repository_root_cannot_import_a_second_copy_of_a_subpackage(folder):
    """From the root, ``import inference`` would find the folder as a package of its own, beside ``pyro_vae.inference``
    with registries of its own; it is refused in one line naming the right import."""
    result = subprocess.run([sys.executable, "-c", f"import {folder}"], cwd=README.parent, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"ImportError: this folder is the package pyro_vae.{folder}; import it as pyro_vae.{folder} (as '{folder}' it "
        "would be a second copy, with registries of its own)")
    same = subprocess.run([sys.executable, "-c", f"import pyro_vae.{folder}"], cwd=README.parent, capture_output=True, text=True)
    assert same.returncode == 0, same.stderr


def test_an_old_flag_spelling_still_works_with_a_note_and_the_config_records_the_new_name(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--epochs", "1", "--latent-dim", "2", "--hidden", "16", "--on-nan", "rollback", "--out", str(out),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "pyro-vae: note: --on-nan is deprecated and will be removed in the next release; use --on-nonfinite" in err
    config = json.loads((out / "config.json").read_text())
    assert config["on_nonfinite"] == "rollback" and "on_nan" not in config


def test_every_fit_flag_shows_its_default_and_the_inference_flags_are_the_fit_options_fields(capsys):
    """The inference group of ``fit --help`` is built from FitOptions: a flag per field the CLI takes, each with
    its default in the help, and none of them hand-kept in cli.py."""
    import dataclasses

    from pyro_vae.cli import build_parser
    from pyro_vae.inference.options import FitOptions

    parser = build_parser()
    fit_parser = parser._subparsers._group_actions[0].choices["fit"]
    flags = {action.dest: action for action in fit_parser._actions if action.option_strings and action.help != "==SUPPRESS=="}
    for spec in dataclasses.fields(FitOptions):
        if spec.metadata["cli"]:
            action = flags[spec.name]
            assert action.default == spec.default and "--" + spec.name.replace("_", "-") in action.option_strings
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--epochs", "--batch-size", "--lr", "--seed", "--kl-warmup", "--clip-norm"):
        shown = re.search(re.escape(flag) + r" [A-Z_]+ (.*?)(?= --|$)", text).group(1)
        assert "default" in shown, (flag, shown)


def test_evaluate_takes_its_flags_from_evaluate_options_and_the_old_points_spelling_with_a_note(tmp_path, capsys):
    import dataclasses

    from pyro_vae.cli import build_parser
    from pyro_vae.inference.options import EvaluateOptions

    parser = build_parser()
    evaluate = parser._subparsers._group_actions[0].choices["evaluate"]
    flags = {action.dest: action for action in evaluate._actions if action.option_strings and action.help != "==SUPPRESS=="}
    for spec in dataclasses.fields(EvaluateOptions):
        if spec.metadata["cli"]:
            assert flags[spec.name].default == spec.default, spec.name
    args = parser.parse_args(["evaluate", "run", "--points", "7"])
    assert args.inference_points == 7
    assert "--points is deprecated" in capsys.readouterr().err and "--inference-points" in " ".join(flags["inference_points"].option_strings)
