"""What every analysis shares: its run directory, its presets, its fits, and the tables it writes.

A study starts with :func:`begin` (preset, directory, data) and ends with :func:`finish` (tables).
It holds its directory with a :class:`~pyro_vae.files.DirectoryLock` from :func:`start` to
:func:`finish`, so a second study on the same ``--out`` is refused; a process that dies lets go of it
(the kernel releases the lock), and a study of this process that raised before :func:`finish` lets go
of it when this process starts a study on that directory again.  Its fits start clean
(:func:`fit_fresh`, :func:`fit_catalogue_vae`), so a fit's numbers depend on its seed alone, not on
what the process (a sweep worker fits many) did before.
"""

import functools
import inspect
import json
import numbers
import shutil
import threading
import time
from pathlib import Path

import pyro
import torch

from pyro_vae.errors import ConfigError, RunDirError
from pyro_vae.factories import pair_module
from pyro_vae.inference.options import FitOptions
from pyro_vae.models import VAE
from pyro_vae.files import TEMPORARY_GLOB, DirectoryLock, make_directory, read_json, write_csv, write_json
from pyro_vae.rundir import RunDir, library_versions

#: Preset options that build the catalogue VAE (the keywords of :class:`~pyro_vae.models.VAE`) and that train it.
MODEL_KEYS = tuple(inspect.signature(VAE).parameters)[1:]
#: The fields of FitOptions a study's fits take from its preset, or from an override the preset does not name
#: (``clip_norm=5``); the objective, its particles and beta are the study's own to set (a preset's ``importance_samples`` is the
#: K of its log-likelihoods; the sweeps set beta per fit).
STUDY_SET = ("objective", "particles", "beta", "dynamic_binarization")
TRAINING_KEYS = tuple(name for name in FitOptions.names() if name not in STUDY_SET)
#: Columns that say what a row is about rather than measure it, in the order ``results.csv`` puts them first:
#: what the row is, its settings, then its place in a sequence.
LABELS = ("data", "network", "layers", "objective", "mode", "generation", "stage", "setting", "prior", "guide", "name", "key",
          "beta", "sigma_x", "latent_dim", "seed", "hold_epochs", "epoch", "phase", "latent")
WHAT = "analysis directory"
_LOCKS = {}  # resolved directory -> (DirectoryLock, id of the thread whose study holds it)


def choose_preset(presets, quick, overrides):
    """The ``quick`` or ``full`` preset (an options instance, :func:`~.options.study_presets`) with the non-None
    ``overrides`` in place of its fields, each checked by its declaration; any field of :data:`TRAINING_KEYS` the
    preset does not name may be given too (checked by FitOptions), reaching every fit of :func:`fit_catalogue_vae`.
    Returns the options as a dict, as ``config.json`` records them."""
    preset = presets["quick" if quick else "full"]
    options = type(preset)
    given, own = {key: value for key, value in overrides.items() if value is not None}, options.keywords()
    unknown = sorted(key for key in given if key not in own and key not in TRAINING_KEYS)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for this analysis; it takes: "
                          f"{', '.join(sorted({*options.names(), *TRAINING_KEYS}))}")
    training = {key: value for key, value in given.items() if key not in own}
    chosen = options.build(preset, **{key: value for key, value in given.items() if key not in training}).values()
    built = FitOptions.build(**training)  # a bad fit option is refused before the study starts
    return {**chosen, **{key: getattr(built, key) for key in training}}


def _refuse_other_config(out, config):
    """Refuse to restart the study saved in ``out`` with options other than the saved ones.

    Every option counts, ``executor`` and ``workers`` too: the studies pass their whole preset to each
    fit, so the sweep would refuse their finished fits later, after config.json had been rewritten.  The
    same study refused before any of its work was done (:func:`unstarted`) holds nothing to keep."""
    if not (out / "config.json").exists():
        return
    saved = read_json(out / "config.json", kind=dict)
    if unstarted(out) and saved.get("analysis") == config.get("analysis"):
        return
    differ = sorted(key for key in set(saved) | set(config) if saved.get(key) != config.get(key))
    if differ:
        changes = "; ".join(f"{key} {json.dumps(saved.get(key))} (saved) vs {json.dumps(config.get(key))} (now)"
                            for key in differ)
        raise RunDirError(f"{out} holds a study started with other options ({changes}); restart it with the saved "
                          "options, or choose another --out")


#: What a study and its fits write before any work is done: their locks, configs, versions and task settings.
START_FILES = frozenset({".lock", "config.json", "versions.json", "task.json"})


def unstarted(out):
    """Whether the directory ``out`` holds nothing but :data:`START_FILES` and interrupted writes (a study
    refused after it started, before any fit finished an epoch)."""
    return all(path.is_dir() or path.name in START_FILES or path.match(TEMPORARY_GLOB) for path in Path(out).rglob("*"))


def discard_unstarted(out, existed):
    """Remove what a study that was refused before doing anything (:func:`unstarted`) wrote into ``out``,
    and ``out`` itself unless it ``existed`` before, so that the refused command leaves nothing behind; a
    directory holding any work is left as it is."""
    out = Path(out)
    release(out)
    if not out.is_dir() or not unstarted(out):
        return
    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for entry in out.iterdir():
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


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


def load_preset_data(preset, data_dir):
    """The preset's data set, binarised dynamically (training) and once (evaluation) for the catalogue VAE
    with a Bernoulli likelihood; a user's pair (preset ``model``) gets the data as they are."""
    from pyro_vae.data import load_data

    bernoulli = preset.get("likelihood") == "bernoulli" and not preset.get("model")
    return load_data(preset["data"], data_dir, binarize="dynamic" if bernoulli else "none")


def begin(name, presets, out, quick, data_dir, overrides, load=load_preset_data):
    """Everything a study does first: pick its preset, start its directory, load its data.

    :param load: ``load(preset, data_dir)``, what the study needs before its fits: by default the
        preset's data set (:func:`load_preset_data`); a study of several data sets loads them all, and a
        study whose workers load their own data only checks that it exists.  A failure lets go of the
        directory.
    :returns: ``(preset, out, started, data)``, ``data`` what ``load`` returned.
    """
    preset = choose_preset(presets, quick, overrides)
    out, started = start(out, name, {"preset": "quick" if quick else "full", **preset, "data_dir": data_dir})
    try:
        data = load(preset, data_dir)
    except BaseException:
        release(out)
        raise
    return preset, out, started, data


def fit_fresh(build, train, seed, init_seed=None, watch=None, **options):
    """Build a pair with ``build()`` from a clean start, fit it to ``train``; ``(pair, FitResult)``, in eval mode.

    Clean start: an empty Pyro parameter store and every random stream seeded with ``init_seed``
    (default ``seed``) before ``build`` runs, so the initial weights depend on that seed alone.
    :param seed: :func:`~pyro_vae.inference.fit`'s seed (its training draws).
    :param watch: ``watch(pair)`` returns fit's ``callback`` for the built pair (to record it along training).
    :param options: further options of :func:`~pyro_vae.inference.fit` (``objective``, ``epochs``, ...).
        An ``out`` is a sweep task's own fit directory: a fit interrupted there (the sweep stopped) resumes
        from its checkpoint, bit for bit as if it had not stopped, and one stopped before its first checkpoint
        starts again.
    """
    from pyro_vae.inference import fit

    if options.get("out") is not None:
        fit_dir = RunDir(options["out"])
        if fit_dir.path.exists() and not fit_dir.has_checkpoint():
            shutil.rmtree(fit_dir.path)  # stopped before its first checkpoint: nothing to resume
        options["resume"] = fit_dir.path.exists()
    pyro.clear_param_store()
    pyro.set_rng_seed(seed if init_seed is None else init_seed)
    pair = build()
    module = pair_module(pair)
    result = fit(pair.model, pair.guide, train, module=module, seed=seed,
                 callback=watch(pair) if watch is not None else None, **options)
    if module is not None:
        module.eval()
    return pair, result


def fit_catalogue_vae(train, preset, init_seed=None, watch=None, **overrides):
    """The catalogue VAE of ``preset`` fitted to ``train`` by :func:`fit_fresh`: ``(vae, FitResult)``.

    Built for ``train``'s event shape from the preset's :data:`MODEL_KEYS`, trained with its
    :data:`TRAINING_KEYS`, without a progress bar; ``overrides`` replace either (``latent_dim=4``,
    ``epochs=...``, ``progress=...``) or add fit's other options (``objective``, ``beta``, ``val``, ...).
    """
    options = {"progress": False, **{key: preset[key] for key in MODEL_KEYS + TRAINING_KEYS if key in preset},
               **overrides}
    model = {key: options.pop(key) for key in MODEL_KEYS if key in options}
    build = functools.partial(VAE, train.shape[1:], **model)
    return fit_fresh(build, train, options.pop("seed"), init_seed=init_seed, watch=watch, **options)


@torch.no_grad()
def held_out_summary(vae, x):
    r"""What the studies report of a fitted catalogue VAE on held-out ``x``.

    The latent table of :func:`~pyro_vae.inference.latent_statistics` (``active``, ``active_units``,
    ``var_mu``, ``mean_sigma2``, ``moment_sum``, ``mean_mu``, ``kl``, ...), then ``test_elbo`` and
    ``test_kl`` (:func:`~pyro_vae.inference.elbo_terms`), and ``reconstruction_squared_error``: the
    squared error of :math:`E[x \mid z = \mu(x)]`, summed over features, averaged over points.  The
    statistics draw from the global random stream before the ELBO does, always in that order, so a
    study that seeds the stream gets the same numbers on every run.
    """
    from pyro_vae.inference import elbo_terms, latent_statistics

    stats = latent_statistics(vae.model, vae.guide, x)
    terms = elbo_terms(vae.model, vae.guide, x)
    return {**stats, "test_elbo": terms["elbo"], "test_kl": terms["kl"],
            "reconstruction_squared_error": (vae.reconstruct(x) - x).flatten(1).pow(2).sum(1).mean().item()}


def shared_description(descriptions, where):
    """One title line for a figure of several fitted models, from their one-line descriptions
    (:func:`~pyro_vae.contract.describe_pair`): the ``", "``-separated parts they share, and for a part
    that differs its last word and ``where`` the reader finds it (``"likelihood by panel"``).  Models
    described in different shapes are all named."""
    parts = [description.split(", ") for description in descriptions]
    if len({len(split) for split in parts}) != 1:
        return "; ".join(dict.fromkeys(descriptions))
    return ", ".join(column[0] if len(set(column)) == 1 else f"{column[0].split()[-1]} {where}"
                     for column in zip(*parts))


def figure_title(*lines, width=85):
    """A figure title of ``lines``, each broken after a ``", "`` where it would pass ``width`` characters (a
    model description's parts, :meth:`VAE.describe`), so that it stays inside a figure as narrow as a row
    of ten images."""
    broken = []
    for line in lines:
        current = ""
        for part in line.split(", "):
            if current and len(current) + 2 + len(part) > width:
                broken.append(current + ",")
                current = part
            else:
                current = f"{current}, {part}" if current else part
        broken.append(current)
    return "\n".join(broken)


def labels_first(rows):
    """``rows`` with their columns in reading order: the labels in the order of :data:`LABELS`, then other
    text columns, then the numbers (a column is a number when each of its filled cells is), these two in
    the order the columns first appear (a sweep's results come back with their keys sorted).  A row
    without a column gets None there, an empty cell as before."""
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def place(column):
        if column in LABELS:
            return 0, LABELS.index(column)
        cells = [row[column] for row in rows if row.get(column) is not None]
        return (2 if all(isinstance(cell, numbers.Number) for cell in cells) else 1), 0

    ordered = sorted(columns, key=place)
    return [{column: row.get(column) for column in ordered} for row in rows]


def finish(out, rows, headline, started):
    """Write the table of every number (CSV, labels first: :func:`labels_first`) and the headline numbers
    (JSON); let go of the directory."""
    try:
        write_csv(out / "results.csv", labels_first(rows))
        write_json(out / "headline.json", {**headline, "seconds": time.perf_counter() - started})
    finally:
        release(out)
    return headline
