"""Options declared once (pyro_vae.options): FitOptions is fit's keywords, its checks, its config and its CLI flags."""

import contextlib
import dataclasses
import inspect
import json

import pyro
import pytest

from pyro_vae.data import load_data
from pyro_vae.errors import ConfigError, UnknownNameError
from pyro_vae.usercode import UserCodeError
from pyro_vae.inference import fit
from pyro_vae.inference.options import FitOptions
from pyro_vae.models import VAE


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _fit(digits, out, **kwargs):
    pyro.set_rng_seed(0)
    vae = VAE(digits.event_shape, latent_dim=2, likelihood="cbernoulli", hidden=(16,))
    return fit(vae.model, vae.guide, digits.train[:200], val=digits.val[:50], out=out, progress=False, **kwargs)


def test_options_given_as_keywords_or_as_an_object_are_the_same_fit(digits, tmp_path):
    keywords = _fit(digits, tmp_path / "keywords", epochs=2, batch_size=50, lr=3e-3, kl_warmup=1, seed=3)
    options = _fit(digits, tmp_path / "object", options=FitOptions(epochs=2, batch_size=50, lr=3e-3, kl_warmup=1, seed=3))
    mixed = _fit(digits, tmp_path / "mixed", options=FitOptions(epochs=2, batch_size=50, lr=1.0, kl_warmup=1), lr=3e-3, seed=3)
    def numbers(result):
        return [{key: value for key, value in row.items() if key != "seconds"} for row in result.history]

    assert numbers(keywords) == numbers(options) == numbers(mixed)  # keywords replace the object's fields
    # 200 points in batches of 50: beta warms up over the 4 steps of the first epoch (0.75 at its last), then stays
    assert [row["beta"] for row in keywords.history] == [0.75, 1.0]


def test_the_run_config_records_every_option_under_its_field_name(digits, tmp_path):
    _fit(digits, tmp_path / "run", epochs=1, clip_norm=5.0, on_nonfinite="rollback")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    for name in FitOptions.names():
        assert name in config, name
    assert config["clip_norm"] == 5.0 and config["on_nonfinite"] == "rollback" and config["particles"] == 1  # resolved K


@pytest.mark.parametrize("values, error, pattern", [
    ({"epoch": 3}, UnknownNameError, "unknown fit option 'epoch'; expected one of: objective, particles, beta"),
    ({"epochs": None}, ConfigError, "epochs must be a positive integer, got None"),
    ({"validate": "yes"}, ConfigError, "validate must be True or False"),
    ({"on_nonfinite": "ignore"}, UnknownNameError, "unknown on_nonfinite 'ignore'; expected one of: raise, rollback"),
    ({"on_nonfinite": None}, UnknownNameError, "unknown on_nonfinite None"),
    ({"objective": "vimco"}, UnknownNameError, "unknown objective 'vimco'"),
    ({"kl_warmup": 5, "epochs": 2}, ConfigError, "kl_warmup 5 epochs is longer than the fit's 2"),
    ({"kl_warmup": 1, "beta": lambda step: 1.0}, ConfigError, "with a schedule as beta, leave kl_warmup at 0"),
])
def test_a_bad_option_is_refused_when_the_options_are_made_before_any_work(digits, tmp_path, values, error, pattern):
    with pytest.raises(error, match=pattern):
        FitOptions.build(**values)
    with pytest.raises(error, match=pattern):
        _fit(digits, tmp_path / "run", **values)
    assert not (tmp_path / "run").exists()


def test_fits_signature_and_docstring_list_every_option_with_its_default():
    parameters = inspect.signature(fit).parameters
    for spec in dataclasses.fields(FitOptions):
        assert parameters[spec.name].default == spec.default and parameters[spec.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert f":param {spec.name}: " in fit.__doc__
    assert "{options}" not in fit.__doc__ and "Examples::" in fit.__doc__


def test_a_new_field_is_a_new_cli_flag_with_its_check_and_default():
    """What "one field" buys: a subclass with one more field gets the flag, its check and its default from it alone."""
    import argparse

    from pyro_vae import checks
    from pyro_vae.options import option

    @dataclasses.dataclass(frozen=True)
    class MoreOptions(FitOptions):
        warmup_lr_steps: int = option(10, "steps of learning-rate warm-up", checks.positive_int, int)

    parser = argparse.ArgumentParser()
    MoreOptions.add_arguments(parser)
    assert parser.parse_args([]).warmup_lr_steps == 10
    assert parser.parse_args(["--warmup-lr-steps", "3"]).warmup_lr_steps == 3
    with pytest.raises(ConfigError, match="warmup_lr_steps must be a positive integer"):
        MoreOptions(warmup_lr_steps=0)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("study", ["kl-law", "collapse", "sampling"])
def test_a_fit_option_no_preset_names_reaches_a_studys_fits_from_the_command_line(study, tmp_path, monkeypatch):
    """``pyro-vae analyze NAME --clip-norm 5``: a field of FitOptions that the study's presets do not name reaches the
    fit of its catalogue VAE (recorded at the call, then stopped: the plumbing, not the study, is under test)."""
    import pyro_vae.inference
    from pyro_vae.analyses import ANALYSES
    from pyro_vae.analyses.common import choose_preset

    seen = {}

    def recording_fit(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(pyro_vae.inference, "fit", recording_fit)
    module = ANALYSES.get(study).load()
    serial = {"executor": "serial"} if "executor" in module.PRESETS["quick"].names() else {}  # this process: seen is filled
    with pytest.raises((_Stop, UserCodeError)):  # a sweep's task reports the stop as an error of the user's code
        module.run(tmp_path / "out", quick=True, clip_norm=5.0, on_nonfinite="rollback", progress=False, **serial)
    assert seen["clip_norm"] == 5.0 and seen["on_nonfinite"] == "rollback"
    with pytest.raises(ConfigError, match="clip_norm must be a positive number"):  # refused before the study starts
        choose_preset(module.PRESETS, True, {"clip_norm": -1.0})
    with pytest.raises(ConfigError, match="unknown option 'clip_nrom'"):
        choose_preset(module.PRESETS, True, {"clip_nrom": 5.0})


def test_an_old_spelling_works_for_one_release_with_a_note_saying_the_new_one():
    """``particles`` meant the training objective's K in fit and the importance samples K in evaluate, compare and
    compare-runs; ``seeds`` was a count.  The latter are now ``importance_samples`` and ``replicates``."""
    from pyro_vae.analyses.options import CompareOptions
    from pyro_vae.cli import build_parser
    from pyro_vae.inference.options import CompareRunsOptions, EvaluateOptions

    for options, old, new in ((EvaluateOptions, "particles", "importance_samples"),
                              (CompareRunsOptions, "particles", "importance_samples"),
                              (CompareOptions, "seeds", "replicates"), (CompareOptions, "particles", "importance_samples")):
        with pytest.warns(FutureWarning, match=f"{old}= is deprecated .* use {new}="):
            assert getattr(options.build(**{old: 7}), new) == 7
        with pytest.raises(ConfigError, match=f"{old} and {new} are one"):
            options.build(**{old: 7, new: 8})
    parser = build_parser()
    for argv, field in ((["evaluate", "run", "--particles", "7"], "importance_samples"),
                        (["compare-runs", "a", "b", "--particles", "7"], "importance_samples"),
                        (["compare", "--out", "o", "--seeds", "7"], "replicates")):
        assert getattr(parser.parse_args(argv), field) == 7
    for argv in (["fit", "--encoder", "conv"], ["compare", "--out", "o", "--encoder", "conv"]):  # now --network, as VAE's
        assert parser.parse_args(argv).network == "conv"
    for argv in (["fit", "--hidden", "64,32"], ["fit", "--hidden", "64", "32"], ["compare", "--out", "o", "--hidden", "64,32"]):
        assert parser.parse_args(argv).hidden == (64, 32)  # apart or comma-separated, in every command
    assert FitOptions.build(particles=7).particles == 7  # fit's particles: the training objective's K, unchanged


def test_every_studys_presets_are_instances_of_its_options_class_whose_fields_are_declared_once():
    from pyro_vae.analyses import ANALYSES
    from pyro_vae.analyses.common import choose_preset
    from pyro_vae.analyses.options import STUDY_FIELDS, CompareOptions

    for name in ANALYSES.names():
        presets = ANALYSES.get(name).load().PRESETS
        options = type(presets["full"])
        assert type(presets["quick"]) is options and options.command == name
        for spec in dataclasses.fields(options):  # FitOptions', CompareOptions' or STUDY_FIELDS' own declaration
            owners = [owner for owner in (FitOptions, CompareOptions) if spec.name in owner.names()]
            if not owners and spec.name not in STUDY_FIELDS:
                continue  # the study's own option, declared in its module only (study_presets(own=...))
            expected = dataclasses.fields(owners[0])[owners[0].names().index(spec.name)].metadata if owners else \
                STUDY_FIELDS[spec.name].metadata
            assert spec.metadata is expected or spec.metadata == expected, (name, spec.name)
        assert choose_preset(presets, False, {}) == presets["full"].values()  # config.json records these
    kl_law = ANALYSES.get("kl-law").load()
    with pytest.raises(ConfigError, match="betas must be a positive number, got -1"):
        choose_preset(kl_law.PRESETS, True, {"betas": (0.5, -1)})
    with pytest.raises(UnknownNameError, match="unknown executor 'nosuch'"):
        choose_preset(kl_law.PRESETS, True, {"executor": "nosuch"})
    with pytest.raises(ConfigError, match="hidden must be a sequence"):
        type(kl_law.PRESETS["quick"])(hidden=64)
    from pyro_vae.analyses.options import study_presets
    from pyro_vae.options import option

    own = {"lrs": option(None, "learning rates, one fit each")}
    assert study_presets("toy", own=own, quick={"lrs": (0.1,), "epochs": 2})["quick"].lrs == (0.1,)
    for declared, said in (({}, "'lrs' is declared nowhere"), ({**own, "epochs": own["lrs"]}, "'epochs' is declared twice")):
        with pytest.raises(TypeError, match=said):
            study_presets("toy", own=declared, quick={"lrs": (0.1,), "epochs": 2})


def _spelled(spec, value):
    """The command line that sets the field ``spec`` to ``value``, as a user types it after reading --help."""
    from pyro_vae.options import _shown

    flag = "--" + spec.name.replace("_", "-")
    if isinstance(spec.default, bool):
        return [flag] if value else []
    return [flag, *_shown(value).split()] if spec.metadata["nargs"] else [flag, _shown(value)]


def test_every_field_of_every_study_is_a_flag_of_its_own_that_gives_back_the_presets_value():
    """``pyro-vae analyze NAME --help`` lists each field of the study's options class, with the presets' values as its
    default, and each fit option that reaches its fits; typing the full preset's value as the help shows it gives the
    preset's value back, checked by the field's declaration."""
    from pyro_vae.analyses import ANALYSES
    from pyro_vae.analyses.common import TRAINING_KEYS
    from pyro_vae.cli import build_parser

    analyze = build_parser()._subparsers._group_actions[0].choices["analyze"]
    parsers = analyze._subparsers._group_actions[0].choices
    assert sorted(parsers) == ANALYSES.names()
    for name, parser in parsers.items():
        presets = ANALYSES.get(name).load().PRESETS
        options = type(presets["full"])
        flags = [spec for spec in dataclasses.fields(options) if spec.metadata["cli"]]
        dests = {action.dest for action in parser._actions}
        dests |= {"model_kwargs"} if "model_arg" in dests else set()  # the pair's factory arguments: --model-arg K=V
        assert {spec.name for spec in flags} | set(TRAINING_KEYS) <= dests, name
        argv = ["--out", "o"] + [word for spec in flags for word in _spelled(spec, getattr(presets["full"], spec.name))
                                 if getattr(presets["full"], spec.name) is not None]
        given = vars(parser.parse_args(argv))
        built = options.build(presets["quick"], **{spec.name: given[spec.name] for spec in flags
                                                   if given.get(spec.name) is not None})
        assert json.dumps(built.values()) == json.dumps(presets["full"].values()), name
    kl_law = parsers["kl-law"].format_help()
    assert "--betas BETAS [BETAS ...]" in kl_law and "(default: quick 0.05 1.0; full 0.01 0.03 0.1 0.3 0.5 1.0 2.0)" in \
        " ".join(kl_law.split())


def test_a_studys_flags_reach_its_fits_and_a_bad_value_is_one_line(tmp_path, monkeypatch, capsys):
    import pyro_vae.inference
    from pyro_vae.cli import main

    seen = {}

    def recording_fit(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(pyro_vae.inference, "fit", recording_fit)
    out = tmp_path / "out"
    argv = ["analyze", "kl-law", "--quick", "--executor", "serial", "--no-progress", "--out", str(out)]
    assert main([*argv, "--betas", "0.25", "--clip-norm", "5"]) == 2  # stopped at the first fit, as recorded
    assert seen["beta"] == 0.25 and seen["clip_norm"] == 5 and not out.exists()
    for values, said in ((["--betas", "0.5", "-1"], "betas must be a positive number, got -1"),
                         (["--betas"], "argument --betas: expected at least one argument"),
                         (["--latent-dims", "2"], "unrecognized arguments: --latent-dims 2"),
                         (["--betas", "x"], "argument --betas: betas must be a number, got 'x'")):
        capsys.readouterr()
        with contextlib.suppress(SystemExit):
            assert main([*argv, *values]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
        assert not out.exists()
