"""A received run directory runs no code; a run directory has one writer; no dead ends; a full disk says so."""

import errno
import os
import pickle
from pathlib import Path

import pytest
import torch

from pyro_vae.data import load_data
from pyro_vae.errors import PyroVAEError, RunDirError, UnsafeFileError
from pyro_vae.files import DirectoryLock, load_tensors, save_tensors
from pyro_vae.inference import evaluate, fit, load_run
from pyro_vae.models import VAE


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _fit(digits, out, epochs=1, resume=False):
    vae = VAE(digits.event_shape, latent_dim=2, likelihood="cbernoulli", hidden=(16,))
    return fit(vae.model, vae.guide, digits.train[:128], val=digits.val[:64], epochs=epochs, batch_size=64,
               out=out, resume=resume, progress=False)


class _Planted:
    """What an attacker pickles: unpickling it runs ``os.system`` (here: creates a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant(path, marker):
    with open(path, "wb") as stream:
        pickle.dump({"format": "pyro-vae-run", "payload": _Planted(marker)}, stream)


def test_a_planted_pickle_in_the_checkpoint_is_refused_and_never_run(digits, tmp_path, capsys):
    from pyro_vae.cli import main

    _fit(digits, tmp_path / "run")
    marker = tmp_path / "pwned"
    _plant(tmp_path / "run" / "checkpoint.pt", marker)
    with pytest.raises(UnsafeFileError, match="could run code"):
        load_run(tmp_path / "run")
    with pytest.raises(UnsafeFileError):
        _fit(digits, tmp_path / "run", epochs=2, resume=True)
    assert main(["evaluate", str(tmp_path / "run"), "--importance-samples", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could run code" in err[0]
    assert not marker.exists()


def test_a_planted_pickle_in_a_partial_evaluation_is_refused_and_never_run(digits, tmp_path):
    _fit(digits, tmp_path / "run")
    run = load_run(tmp_path / "run")
    marker = tmp_path / "pwned"
    _plant(tmp_path / "run" / "evaluation.partial.pt", marker)
    with pytest.raises(UnsafeFileError, match="evaluation.partial.pt"):
        evaluate(run.model.model, run.model.guide, digits.test[:20], importance_samples=4, out=tmp_path / "run")
    assert not marker.exists()


def test_a_planted_pickle_in_a_studys_figure_data_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _plant(tmp_path / "figure_data.pt", marker)
    with pytest.raises(UnsafeFileError):
        load_tensors(tmp_path / "figure_data.pt")
    assert not marker.exists()


def test_saved_tensors_and_parameter_constraints_round_trip_without_pickles(tmp_path):
    import pyro
    from torch.distributions import constraints

    pyro.param("scale", torch.tensor(2.0), constraint=constraints.positive)
    pyro.param("p", torch.tensor(0.3), constraint=constraints.interval(0.0, 1.0))
    state = {"param_store": pyro.get_param_store().get_state(), "rows": [torch.arange(3)], "seed": 7, "name": "x"}
    save_tensors(tmp_path / "state.pt", state)
    loaded = load_tensors(tmp_path / "state.pt")
    pyro.clear_param_store()
    pyro.get_param_store().set_state(loaded["param_store"])
    assert pyro.param("scale").item() == pytest.approx(2.0) and pyro.param("p").item() == pytest.approx(0.3)
    assert loaded["seed"] == 7 and torch.equal(loaded["rows"][0], torch.arange(3))


def test_a_second_writer_is_refused_naming_the_holder_and_nothing_changes(digits, tmp_path):
    out = tmp_path / "run"
    with DirectoryLock(out, "run directory"):
        with pytest.raises(RunDirError, match=rf"being written by pid {os.getpid()} on "):
            _fit(digits, out)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    _fit(digits, out)  # the lock is released: the same directory now takes the fit
    assert (out / "checkpoint.pt").is_file()


def test_a_fit_stopped_before_its_first_epoch_can_be_rerun_or_resumed(digits, tmp_path):
    from pyro_vae.files import write_json

    for resume in (False, True):
        out = tmp_path / f"resume-{resume}"
        out.mkdir()
        write_json(out / "config.json", {"epochs": 1})  # what a fit leaves when stopped before its first checkpoint
        (out / ".checkpoint.pt.abc123.tmp").write_bytes(b"torn")  # and an interrupted write
        result = _fit(digits, out, epochs=1, resume=resume)
        assert len(result.history) == 1 and (out / "checkpoint.pt").is_file()
        assert not list(out.glob(".*.tmp"))


def test_resume_for_fewer_epochs_than_done_is_refused_before_anything_is_written(digits, tmp_path):
    _fit(digits, tmp_path / "run", epochs=2)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(RunDirError, match="it has finished 2"):
        _fit(digits, tmp_path / "run", epochs=1, resume=True)
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


def test_a_full_disk_is_named_and_the_previous_checkpoint_survives(digits, tmp_path, monkeypatch):
    _fit(digits, tmp_path / "run", epochs=1)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(RunDirError, match="the disk is full"):
        _fit(digits, tmp_path / "run", epochs=2, resume=True)
    monkeypatch.undo()
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert not list((tmp_path / "run").glob(".*.tmp"))


@pytest.mark.parametrize("where", ["file", "long-name"])
def test_an_output_that_cannot_be_a_directory_is_one_line(digits, tmp_path, where):
    out = tmp_path / "a-file"
    out.write_text("x")
    if where == "long-name":
        out = tmp_path / ("n" * 300)
    with pytest.raises(RunDirError, match="is a file, not a directory|longer than the 255"):
        _fit(digits, out)


def test_a_checkpoint_missing_an_entry_is_named(digits, tmp_path):
    _fit(digits, tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["param_store"]
    torch.save(state, path)
    with pytest.raises(RunDirError, match="entry 'param_store' is missing"):
        load_run(tmp_path / "run")


class StudentTLikelihood(torch.nn.Module):
    """A user's own likelihood object, as issue 35 item 11 fitted it (a class of the user's module)."""

    num_params = 1

    def __init__(self, event_shape):
        super().__init__()
        self.event_shape = tuple(event_shape)

    def forward(self, location):
        import pyro.distributions as dist

        return dist.StudentT(4.0, location, 1.0).to_event(len(self.event_shape))


def test_a_fit_with_a_users_likelihood_object_writes_a_checkpoint_pyro_vae_reads_back(digits, tmp_path):
    vae = VAE(digits.event_shape, latent_dim=2, likelihood=StudentTLikelihood(digits.event_shape), hidden=(16,))
    fit(vae.model, vae.guide, digits.train[:64], epochs=1, batch_size=64, out=tmp_path / "run", progress=False)
    from pyro_vae.rundir import RunDir

    checkpoint = RunDir(tmp_path / "run").load_checkpoint()  # the suite reads what it wrote (it refused it)
    assert checkpoint["config"]["model"]["kwargs"]["likelihood"] == "StudentTLikelihood()"  # its text, as config.json
    with pytest.raises(PyroVAEError) as refused:  # the object cannot be rebuilt from text: one line, no pickle
        load_run(tmp_path / "run")
    assert not isinstance(refused.value, UnsafeFileError) and "\n" not in str(refused.value)


def test_a_state_holding_another_object_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(RunDirError, match="cannot write .*StudentTLikelihood.*could not read back"):
        save_tensors(tmp_path / "state.pt", {"weights": torch.zeros(2), "likelihood": StudentTLikelihood((2,))})
    assert not list(tmp_path.iterdir())
