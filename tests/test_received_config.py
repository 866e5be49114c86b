"""A received run directory names no code to run: every way of naming code in ``config.json`` is refused
in one line by ``load_run``, ``evaluate``, ``compare-runs`` and ``report``, and the marker file that the
code would create never appears (issue 38, item 1).  Only the catalogue's factories are imported on a
config's say-so; anything else runs only when the user names it, and must be the recorded factory."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_vae.cli import main
from pyro_vae.data import load_data
from pyro_vae.errors import RunDirError
from pyro_vae.factories import ModelFactory
from pyro_vae.inference import catalogue_factories, compare_runs, fit, load_run
from pyro_vae.models import VAE

PAIRS = Path(__file__).parent / "pairs"
TOUCH = "from pathlib import Path\nPath({marker!r}).touch()\ndef make(**kwargs):\n    Path({marker!r}).touch()\n"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A catalogue VAE's run directory and a user pair's, one epoch each on digits."""
    root = tmp_path_factory.mktemp("fitted")
    data = load_data("digits")
    vae = VAE(data.event_shape, latent_dim=2, likelihood="cbernoulli", hidden=(16,))
    fit(vae.model, vae.guide, data.train[:128], epochs=1, batch_size=64, out=root / "catalogue", progress=False,
        config={"data": "digits", "model": {"factory": "pyro_vae.models:VAE", "kwargs": vae.init_kwargs}})
    factory = ModelFactory(f"{PAIRS / 'vae_obs.py'}:make_vae", {"latent_dim": 2, "hidden": 16, "event_shape": [1, 8, 8]})
    pair = factory()
    fit(pair.model, pair.guide, data.train[:128].clamp(0, 1), epochs=1, batch_size=64, out=root / "user", progress=False,
        config={"data": "digits", "model": factory.to_config()})
    return root


def _attacks(run, cwd, outside, marker):
    """(factory, kwargs) entries that would create ``marker`` if pyro-vae ran what they name."""
    (run / "evil.py").write_text(TOUCH.format(marker=str(marker)))
    for folder in (cwd / "bundle", cwd / "pmod", outside):
        folder.mkdir(exist_ok=True)
        (folder / "evil.py").write_text(TOUCH.format(marker=str(marker)))
    (cwd / "pmod" / "__init__.py").write_text("")
    return {
        "os.system": ("os:system", {"command": f"touch {marker}"}),
        "subprocess.getoutput": ("subprocess:getoutput", {"cmd": f"touch {marker}"}),
        "runpy inside the run": ("runpy:run_path", {"path_name": str(run / "evil.py")}),
        "file inside the run": (f"{run / 'evil.py'}:make", {}),
        "file relative to the cwd": ("bundle/evil.py:make", {}),
        "package beside the run": ("pmod.evil:make", {}),
        "file outside the run": (f"{outside / 'evil.py'}:make", {}),
        "a function of ours": ("pyro_vae.cli:main", {"argv": ["fit", "--epochs", "1", "--out", str(marker)]}),
    }


def _plant(fitted, tmp_path, attack):
    """A copy of the catalogue run whose config names the attack's code; the cwd the attacker hopes for."""
    run, cwd, marker = tmp_path / "received", tmp_path / "cwd", tmp_path / "marker"
    shutil.copytree(fitted / "catalogue", run)
    cwd.mkdir()
    factory, kwargs = _attacks(run, cwd, tmp_path / "outside", marker)[attack]
    config = json.loads((run / "config.json").read_text())
    config["model"] = {"factory": factory, "kwargs": kwargs}
    (run / "config.json").write_text(json.dumps(config))
    return run, cwd, marker


ATTACKS = ["os.system", "subprocess.getoutput", "runpy inside the run", "file inside the run", "file relative to the cwd",
           "package beside the run", "file outside the run", "a function of ours"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_config_naming_code_runs_nothing_through_any_command(fitted, tmp_path, attack, monkeypatch, capsys):
    run, cwd, marker = _plant(fitted, tmp_path, attack)
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))  # as `python -m pyro_vae` puts the cwd on the path
    with pytest.raises(RunDirError, match="runs no code that a run directory names"):
        load_run(run)
    with pytest.raises(RunDirError, match="runs no code that a run directory names"):
        compare_runs([fitted / "catalogue", run], importance_samples=2)
    capsys.readouterr()
    for command in (["evaluate", str(run), "--importance-samples", "2"], ["compare-runs", str(fitted / "catalogue"), str(run)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "name the factory yourself" in err, err
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0  # the report reads data only
    assert not marker.exists()


def test_python_m_pyro_vae_does_not_import_a_package_beside_the_run(fitted, tmp_path):
    run, cwd, marker = _plant(fitted, tmp_path, "package beside the run")
    done = subprocess.run([sys.executable, "-m", "pyro_vae", "evaluate", str(run), "--importance-samples", "2"], cwd=cwd,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "'pmod.evil:make'" in done.stderr
    assert not marker.exists()


def test_a_factory_the_user_names_runs_and_must_be_the_recorded_one(fitted, tmp_path, capsys):
    user = fitted / "user"
    with pytest.raises(RunDirError, match="name the factory yourself"):
        load_run(user)
    assert load_run(user, model=f"{PAIRS / 'vae_obs.py'}:make_vae").config["model"]["kwargs"]["latent_dim"] == 2
    with pytest.raises(RunDirError, match="not with .*robust_fa.py:make_robust_fa"):
        load_run(user, model=f"{PAIRS / 'robust_fa.py'}:make_robust_fa")
    moved = tmp_path / "moved.py"  # the same code elsewhere is the recorded factory; other code of that name is not
    moved.write_bytes((PAIRS / "vae_obs.py").read_bytes())
    assert load_run(user, model=f"{moved}:make_vae").factory.path == moved
    moved.write_text(moved.read_text() + "\n# edited\n")
    with pytest.raises(RunDirError, match="was fitted with the model factory"):
        load_run(user, model=f"{moved}:make_vae")
    # compare-runs: the named factory serves the run that records it; a name no run records is refused
    assert main(["compare-runs", str(fitted / "catalogue"), str(user), "--importance-samples", "3",
                 "--model", f"{PAIRS / 'vae_obs.py'}:make_vae"]) == 0
    capsys.readouterr()
    assert main(["compare-runs", str(fitted / "catalogue"), str(user), "--importance-samples", "3", "--model", f"{PAIRS / 'vae_obs.py'}:make_vae",
                 "--model", f"{PAIRS / 'robust_fa.py'}:make_robust_fa"]) == 2
    assert "is the factory of none of the runs" in capsys.readouterr().err


def test_the_catalogue_is_exactly_the_models_pairs():
    assert catalogue_factories() == {"pyro_vae.models:VAE", "pyro_vae.models:TwoLayerVAE", "pyro_vae.models.vae:VAE",
                                     "pyro_vae.models.two_layer:TwoLayerVAE"}


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_entries = st.one_of(
    st.builds(lambda f, k: {"factory": f, "kwargs": k}, st.one_of(_text, st.from_regex(r"[a-z_.]{1,12}:[a-z_]{1,8}", fullmatch=True),
                                                                    st.sampled_from(["os:system", "builtins:print", "json:loads"])),
              st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.one_of(st.integers(), _text), max_size=3)),
    st.none(), st.integers(), _text, st.lists(_text, max_size=2),
    st.dictionaries(_text, st.one_of(_text, st.integers()), max_size=3))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entry=_entries)
def test_any_config_entry_outside_the_catalogue_is_refused_in_one_line_before_any_import(entry, tmp_path):
    from unittest import mock

    with mock.patch.object(ModelFactory, "load", side_effect=AssertionError("a factory was imported")) as load:
        with pytest.raises(RunDirError) as refused:
            ModelFactory.from_config(entry, tmp_path, catalogue_factories())
    assert "\n" not in str(refused.value) and not load.called


@pytest.mark.parametrize("planted", ["config.json", "metrics.json", "checkpoint.pt"])
def test_a_received_file_that_is_a_device_is_refused_before_it_is_read(fitted, tmp_path, planted, capsys):
    """Issue 38, item 2: a link to /dev/zero in a run directory would be read until memory runs out."""
    run = tmp_path / "received"
    shutil.copytree(fitted / "catalogue", run)
    (run / planted).unlink()
    (run / planted).symlink_to("/dev/zero")
    assert main(["evaluate", str(run), "--importance-samples", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a regular file" in err, err
    if planted != "checkpoint.pt":
        assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) in (0, 2)
        assert "Traceback" not in capsys.readouterr().err


def test_an_idx_file_is_read_within_its_bound(tmp_path, monkeypatch):
    import gzip

    from pyro_vae import data
    from pyro_vae.errors import DataError

    with pytest.raises(DataError, match="is not a regular file"):
        data.read_idx("/dev/zero")
    with gzip.open(tmp_path / "big-idx3-ubyte.gz", "wb") as stream:  # a small file that unpacks to more than the bound
        stream.write(bytes([0, 0, 8, 1]) + (4000).to_bytes(4, "big") + bytes(4000))
    monkeypatch.setattr(data, "MAX_IDX_BYTES", 1000)
    with pytest.raises(DataError, match="holds more than the 1,000 bytes"):
        data.read_idx(tmp_path / "big-idx3-ubyte.gz")
