"""What every analysis shares: its run directory, its presets, and the tables it writes.

A study holds its directory with a :class:`~pyro_vae.files.DirectoryLock` from :func:`start` to
:func:`finish`, so a second study on the same ``--out`` is refused; a process that dies lets go of it
(the kernel releases the lock), and a study of this process that raised before :func:`finish` lets go
of it when this process starts a study on that directory again.
"""

import json
import threading
import time
from pathlib import Path

from pyro_vae import checks
from pyro_vae.errors import ConfigError, RunDirError
from pyro_vae.files import DirectoryLock, make_directory, read_json, write_csv, write_json
from pyro_vae.rundir import library_versions

#: Preset options that count something (positive integers) and learning rates (positive finite numbers).
COUNTS = frozenset({"epochs", "latent_dim", "seeds", "workers", "batch_size", "particles", "samples", "snr_draws",
                    "snr_points", "gap_points", "gap_steps", "nuts_points", "nuts_samples", "nuts_chains", "track_every",
                    "track_points", "gmm_components", "gmm_steps", "second_epochs", "draws_per_point",
                    "epochs_per_level", "max_levels", "revival_epochs"})
RATES = frozenset({"lr"})
WHAT = "analysis directory"
_LOCKS = {}  # resolved directory -> (DirectoryLock, id of the thread whose study holds it)


def check_option(key, value):
    """``value`` of the option ``key``, refused if a count is no positive integer or a rate no positive number."""
    if key in COUNTS:
        return checks.positive_int(key, value)
    if key in RATES:
        return checks.positive_float(key, value)
    return value


def choose_preset(presets, quick, overrides):
    """The ``quick`` or ``full`` preset with the non-None ``overrides`` applied (checked by :func:`check_option`)."""
    preset = dict(presets["quick" if quick else "full"])
    for key, value in overrides.items():
        if value is not None:
            if key not in preset:
                raise ConfigError(f"unknown option {key!r} for this analysis; it takes: {', '.join(sorted(preset))}")
            preset[key] = check_option(key, value)
    return preset


def _refuse_other_config(out, config):
    """Refuse to restart the study saved in ``out`` with options other than the saved ones.

    Every option counts, ``executor`` and ``workers`` too: the studies pass their whole preset to each
    fit, so the sweep would refuse their finished fits later, after config.json had been rewritten."""
    if not (out / "config.json").exists():
        return
    saved = read_json(out / "config.json", kind=dict)
    differ = sorted(key for key in set(saved) | set(config) if saved.get(key) != config.get(key))
    if differ:
        changes = "; ".join(f"{key} {json.dumps(saved.get(key))} (saved) vs {json.dumps(config.get(key))} (now)"
                            for key in differ)
        raise RunDirError(f"{out} holds a study started with other options ({changes}); restart it with the saved "
                          "options, or choose another --out")


def start(out, name, config):
    """Create (or resume) the analysis directory, lock it, and write its config and library versions.

    Refuses, before anything is written, a directory that is a file or cannot be written, a finished
    analysis, one started with other options (:func:`_refuse_other_config`) and one another study holds.
    """
    out = make_directory(out, WHAT)
    if (out / "results.csv").exists():
        raise RunDirError(f"{out} already holds a finished analysis; choose another --out")
    config = json.loads(json.dumps({"analysis": name, **config}, default=str))  # as config.json holds it
    _refuse_other_config(out, config)
    release(out, only_this_thread=True)  # a study of this thread that raised is over
    _LOCKS[out.resolve()] = (DirectoryLock(out, WHAT).acquire(), threading.get_ident())
    write_json(out / "config.json", config)
    write_json(out / "versions.json", library_versions())
    return out, time.perf_counter()


def release(out, only_this_thread=False):
    """Let go of the directory without finishing (a study that stops early); :func:`finish` does it too."""
    key = Path(out).resolve()
    lock, thread = _LOCKS.get(key, (None, None))
    if lock is not None and (not only_this_thread or thread == threading.get_ident()):
        lock.release()
        del _LOCKS[key]


def begin(name, presets, out, quick, data_dir, overrides):
    """Everything a study does first: pick its preset, start its directory, load its data.

    Data for the catalogue VAE with a Bernoulli likelihood are binarised dynamically (training) and once
    (evaluation); a user's pair (preset ``model``) gets the data as they are.
    :returns: ``(preset, out, started, data, binarize)``.
    """
    from pyro_vae.data import load_data

    preset = choose_preset(presets, quick, overrides)
    out, started = start(out, name, {"preset": "quick" if quick else "full", **preset, "data_dir": data_dir})
    binarize = "dynamic" if preset.get("likelihood") == "bernoulli" and not preset.get("model") else "none"
    try:
        data = load_data(preset["data"], data_dir, binarize=binarize)
    except BaseException:
        release(out)
        raise
    return preset, out, started, data, binarize


def finish(out, rows, headline, started):
    """Write the table of every number (CSV) and the headline numbers (JSON); let go of the directory."""
    try:
        write_csv(out / "results.csv", rows)
        write_json(out / "headline.json", {**headline, "seconds": time.perf_counter() - started})
    finally:
        release(out)
    return headline
