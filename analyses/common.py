"""What every analysis shares: its run directory, its presets, and the tables it writes."""

import time
from pathlib import Path

from pyro_vae.errors import ConfigError, RunDirError
from pyro_vae.rundir import library_versions, write_csv, write_json


def choose_preset(presets, quick, overrides):
    """The ``quick`` or ``full`` preset with the non-None ``overrides`` applied."""
    preset = dict(presets["quick" if quick else "full"])
    for key, value in overrides.items():
        if value is not None:
            if key not in preset:
                raise ConfigError(f"unknown option {key!r} for this analysis; it takes: {', '.join(sorted(preset))}")
            preset[key] = value
    return preset


def start(out, name, config):
    """Create the analysis directory and write its config and library versions; refuse to overwrite."""
    out = Path(out)
    if out.exists() and (out / "results.csv").exists():
        raise RunDirError(f"{out} already holds a finished analysis; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"analysis": name, **config})
    write_json(out / "versions.json", library_versions())
    return out, time.perf_counter()


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
    return preset, out, started, load_data(preset["data"], data_dir, binarize=binarize), binarize


def finish(out, rows, headline, started):
    """Write the table of every number (CSV) and the headline numbers (JSON)."""
    write_csv(out / "results.csv", rows)
    write_json(out / "headline.json", {**headline, "seconds": time.perf_counter() - started})
    return headline
