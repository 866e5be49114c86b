r"""Paired comparison of fitted runs on the same test points: is one model better than another?

Every run scores the *same* N points :math:`x_i` by the importance-sampled log-likelihood
:math:`l_i \approx \log p(x_i)` (K draws from the run's guide, Burda et al. 2016) with its Monte Carlo
standard error :math:`m_i` (:func:`~pyro_vae.inference.weights.log_likelihood`).  The question "is mine
better on this data distribution" asks about :math:`E_x \log p(x)`, so the error of a run's mean
:math:`\bar l` is over test points:

.. math::

    \mathrm{se}^2(\bar l) = \widehat{\mathrm{Var}}_i(l_i) / N ,

which holds the Monte Carlo error already: each :math:`l_i` is the point's log-likelihood plus its own
independent Monte Carlo noise, so the spread over points is the spread of both (adding
:math:`\sum_i m_i^2 / N^2` would count that noise twice).  The Monte Carlo part alone,
:math:`\sqrt{\sum_i m_i^2} / N`, is shown beside it.

A difference of two runs A and B is taken point by point, :math:`d_i = l_{A,i} - l_{B,i}`, with the
*paired* error

.. math::

    \mathrm{se}^2(\bar d) = \widehat{\mathrm{Var}}_i(d_i) / N ,

Why paired: most of the spread of :math:`l_i` is how hard each point is, shared by every model, and it
cancels in :math:`d_i`; the unpaired :math:`\sqrt{\mathrm{se}_A^2 + \mathrm{se}_B^2}` counts it twice
and hides real differences.  This is how ``az.compare`` reports ``elpd_diff`` and ``dse`` (Vehtari,
Gelman and Gabry 2017, Sec. 5.2), here per point (means, not sums) and with held-out points scored by
importance sampling rather than leave-one-out.  :math:`\widehat{\mathrm{Var}}` divides by N - 1; the
Monte Carlo errors of different runs are independent (each run has its own seed, ``seed + position``
in the list).  Two runs differ when :math:`|\bar d| > 2\,\mathrm{se}(\bar d)`, else "no difference".

Caveats: :math:`m_i` is the delta-method error, too small where the weights are heavy-tailed (read
PSIS :math:`\hat k` and the replicate error from ``evaluate``); and the estimate is biased low by about
:math:`\mathrm{Var}(w / \bar w) / 2K`, differently for each run, which no error bar covers: raise K
until the difference stops moving.  A run whose pair has global latents is scored, as ``evaluate``
does, conditionally on one draw of them from its guide (drawn with its IS seed), and its row says so;
how much that draw moves the score is in no error bar.
"""

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pyro
import torch

from pyro_vae import checks
from pyro_vae.errors import ConfigError, DataError, RunDirError
from pyro_vae.factories import ModelFactory, pair_module, recorded_entry
from pyro_vae.files import check_file_target, write_json
from pyro_vae.options import documented
from pyro_vae.rundir import RunDir
from pyro_vae.summaries import khat_flagged

from .ais import ais_log_likelihood
from .estimators import importance_log_weights
from .options import CompareRunsOptions
from .weights import log_likelihood
from .plates import find_data_plate, local_pair
from .runs import Run, catalogue_factories, load_run

#: The config entries that say which data a run was fitted on, with the default of one left out.
DATA_ENTRIES = {"data": None, "digit": None, "binarize": "none"}


@dataclass
class RunComparison:
    """What :func:`compare_runs` returns: ``runs`` (one dict per run, best first, with ``diff`` and ``dse``
    to the best and the per-point values) and ``pairwise`` (every pair, the better-ranked first)."""

    runs: list
    pairwise: list
    num_datapoints: int
    importance_samples: int
    split: str = None
    estimator: str = "is"  # or "ais": then ``ais`` holds its settings
    ais: dict = None

    def to_dict(self):
        return asdict(self)

    def __str__(self):
        return format_comparison(self)


def _mean_and_se(values):
    """The mean over points and its standard error (module doc: the Monte Carlo noise is inside the spread)."""
    return values.mean().item(), (values.var() / len(values)).sqrt().item()


def _verdict(difference, se, better):
    if not math.isfinite(difference) or not math.isfinite(se):
        return "undecided (a non-finite estimate)"
    return "no difference" if abs(difference) <= 2 * se else f"{better} better"


def compare_scores(scores):
    """Per-run and pairwise tables (module doc) from ``{name: {"per_datapoint": l, "per_datapoint_mc_se": m}}``
    (what :func:`~pyro_vae.inference.weights.log_likelihood` returns) on the same points.

    :returns: ``(runs, pairwise)``, lists of dicts, runs best first.
    """
    values = {name: tuple(torch.as_tensor(s[key], dtype=torch.float64).cpu().flatten()
                          for key in ("per_datapoint", "per_datapoint_mc_se")) for name, s in scores.items()}
    sizes = {len(l) for l, _ in values.values()}
    if len(sizes) != 1 or min(sizes) < 2:
        raise DataError(f"a comparison needs the same two or more points under every run; got {sorted(sizes)} points")
    summary = {name: _mean_and_se(l) for name, (l, _) in values.items()}
    order = sorted(summary, key=lambda name: -summary[name][0])

    def paired(a, b):
        difference, se = _mean_and_se(values[a][0] - values[b][0])
        return {"difference": difference, "se": se, "unpaired_se": (summary[a][1]**2 + summary[b][1]**2) ** 0.5,
                "verdict": _verdict(difference, se, a)}

    runs, pairwise = [], []
    for rank, name in enumerate(order):
        to_best = paired(order[0], name) if rank else {"difference": 0.0, "se": 0.0, "verdict": "best"}
        runs.append({"run": name, "rank": rank, "log_likelihood": summary[name][0], "se": summary[name][1],
                     "mc_se": (values[name][1]**2).sum().sqrt().item() / len(values[name][1]),
                     "diff": to_best["difference"], "dse": to_best["se"], "verdict": to_best["verdict"],
                     "per_datapoint": values[name][0].tolist(), "per_datapoint_mc_se": values[name][1].tolist()})
        pairwise += [{"a": name, "b": other, **paired(name, other)} for other in order[rank + 1:]]
    return runs, pairwise


def _data_of(config):
    entries = {key: config.get(key, default) for key, default in DATA_ENTRIES.items()}
    digit = entries["digit"]
    if digit is not None:
        entries["digit"] = sorted(int(d) for d in ([digit] if isinstance(digit, (int, float)) else digit))
    return entries


def _same_data(paths, configs):
    """The data entries all runs share; refused in one line naming the first entry that differs."""
    for path, config in zip(paths, configs):
        if config.get("data") is None:
            raise ConfigError(f"{path}/config.json records no data set (fitted in Python without config={{'data': ...}}); "
                              "pass the points to score as x=")
    first = _data_of(configs[0])
    for path, config in zip(paths[1:], configs[1:]):
        other = _data_of(config)
        for key in DATA_ENTRIES:
            if other[key] != first[key]:
                raise ConfigError(f"{paths[0]} and {path} were fitted on different data: {key} {first[key]!r} vs "
                                  f"{other[key]!r}; compare runs fitted on the same data (in Python, x= scores given points)")
    return first


def _score(run, x, particles, max_memory, seed, ais=None):
    """Per-point log-likelihood of one loaded run on ``x`` (IS, or AIS with ``ais``), and the names of the globals
    it is conditional on."""
    pair, module = run.model, pair_module(run.model)
    x = checks.as_data(x, "comparison", checks.parameter_dtype(module))
    if getattr(module, "check_data", None) is not None:
        module.check_data(x)
    data_plate = find_data_plate(pair.model, pair.guide, x[:1000], run.config.get("data_plate"))
    pyro.set_rng_seed(seed)  # the draw of the globals, if any, is the seed's too
    model, guide, fixed = local_pair(pair.model, pair.guide, x[:1000], data_plate)
    if ais is not None:
        return ais_log_likelihood(model, guide, x, **ais.annealing(), max_memory=max_memory, data_plate=data_plate,
                                  seed=seed), list(fixed)
    log_weights = importance_log_weights(model, guide, x, particles, max_memory, data_plate=data_plate, seed=seed)
    return log_likelihood(log_weights), list(fixed)


def _test_points(names, paths, split, data_dir):
    """The ``split`` of the data every run was fitted on (all configs read, and refused, before any scoring)."""
    from pyro_vae.data import load_data

    configs = [RunDir(path).config() for path in paths]
    data = _same_data(names, configs)
    splits = load_data(data["data"], data_dir or configs[0].get("data_dir"), digit=data["digit"], binarize=data["binarize"])
    return getattr(splits, split)


@documented(CompareRunsOptions)
def compare_runs(runs_or_paths, x=None, *, out=None, progress=None, models=(), ais=None, options=None, **values):
    """Score the same points under every run and compare them, paired (module doc for the formulas).

    ``compare_runs(paths, importance_samples=5000)`` and ``compare_runs(paths, options=CompareRunsOptions(...))`` are
    the same call.

    :param runs_or_paths: run directories (or :class:`~pyro_vae.inference.runs.Run` objects, reloaded
        from their directory with their factory: parameters in Pyro's param store are shared by every
        loaded pair, so each run is loaded just before it is scored; the store is restored after).
    :param x: the points to score; default the ``split`` of the data the runs were fitted on, which must
        be the same for all (data set, digit filter, binarize in their ``config.json``).
    :param out: a JSON file to write the result to (atomically); nothing is written without it.
    :param progress: a one-line note on stderr per run (default: when stderr is a terminal).
    :param models: factories of pairs outside the catalogue (``"path/to/file.py:name"``, ...) that you
        vouch for: a run directory whose config records one of them is rebuilt with it
        (:func:`~pyro_vae.inference.runs.load_run`); a run of any other pair is refused.
    :param ais: :class:`~pyro_vae.inference.ais.AISOptions` to score every point by annealed importance sampling
        instead of IS (its ``where`` and ``bracket_points`` are evaluate's and are not used here).
    :param options: a :class:`~pyro_vae.inference.options.CompareRunsOptions`; keywords replace its fields.
    {options}
    :returns: :class:`RunComparison`; ``str()`` of it is the printed table.  A run whose estimate is flagged
        (more than :data:`~pyro_vae.summaries.HIGH_KHAT_SHARE` of its points with k-hat above the threshold) says so
        in its row (``flag``) and under the table.

    Every refusal (a missing run or checkpoint, an unnamed factory, data that differ, an ``out`` that
    cannot be written) comes before any run is scored.
    """
    options = CompareRunsOptions.build(options, **values)
    particles, seed, split, max_memory = options.importance_samples, options.seed, options.split, options.max_memory
    device = checks.device(options.device)
    if out is not None:
        check_file_target(out, "--out")
    entries = [(run.path, run.factory) if isinstance(run, Run) else (Path(run), None) for run in runs_or_paths]
    if len(entries) < 2:
        raise ConfigError(f"a comparison needs at least two runs, got {len(entries)}")
    entries = _with_factories(entries, models)
    names = [str(path) for path, _ in entries]
    names = [name if names.count(name) == 1 else f"{name} #{j + 1}" for j, name in enumerate(names)]
    if x is None:
        x = _test_points(names, [path for path, _ in entries], split, options.data_dir)
    else:
        split = None
    x = checks.as_data(x, "comparison").to(device)
    store = pyro.get_param_store()
    saved, scores, extra = store.get_state(), {}, {}
    try:
        for j, (name, (path, factory)) in enumerate(zip(names, entries)):
            run_seed = (seed + j) % (checks.MAX_SEED + 1)
            if sys.stderr.isatty() if progress is None else progress:
                what = f"K = {particles}, IS" if ais is None else f"AIS with T = {ais.steps}, M = {ais.chains},"
                print(f"compare-runs: scoring {name} ({j + 1} of {len(names)}) on {len(x)} points, {what} seed {run_seed}",
                      file=sys.stderr)
            scores[name], conditioned = _score(load_run(path, device=device, model=factory), x, particles, max_memory,
                                               run_seed, ais)
            extra[name] = {"path": str(path), "seed": run_seed, "conditioned_on": conditioned,
                           **_flag(scores[name], "IS" if ais is None else "AIS")}
    finally:
        store.clear()
        store.set_state(saved)
    runs, pairwise = compare_scores(scores)
    for row in runs:
        row.update(extra[row["run"]])
    result = RunComparison(runs, pairwise, len(x), particles, split, "is" if ais is None else "ais",
                           None if ais is None else ais.annealing())
    if out is not None:
        write_json(out, result.to_dict())
    return result


def _flag(estimate, estimator):
    """``khat_share``, ``khat_threshold`` and, for an estimate that cannot vouch for itself, ``flag``: why."""
    share, threshold = estimate.get("fraction_khat_above_threshold", math.nan), estimate["khat_threshold"]
    row = {"khat_share": share, "khat_threshold": threshold, "flag": ""}
    if khat_flagged(share):
        row["flag"] = (f"{estimator}'s k-hat is above {threshold:.2f} for {share:.1%} of the points: its estimate is biased "
                       "low by an amount no error bar covers, so a difference may be that bias alone")
    return row


def _with_factories(entries, models):
    """``(path, factory)`` per run, the factory the one of ``models`` its config records (or None for a
    catalogue pair); every run's directory, checkpoint and factory checked without running its code."""
    named = [m if isinstance(m, ModelFactory) else ModelFactory(m) for m in models]
    catalogue, used, checked = catalogue_factories(), set(), []
    for path, factory in entries:
        run = RunDir(path)
        if not run.has_checkpoint():
            raise RunDirError(f"run directory {path} does not exist" if not run.path.is_dir() else
                              f"{path} holds no checkpoint ({RunDir.CHECKPOINT}); is it a finished run directory?")
        entry = recorded_entry(run.config().get("model"), path)
        if factory is None:
            chosen = next((m for m in named if m.records(entry, catalogue)), None)
            if chosen is not None:
                used.add(chosen.identity)
                factory = ModelFactory(chosen.spec, entry["kwargs"])
        ModelFactory.from_config(entry, path, catalogue, named=factory)  # refuses an unnamed or other factory
        checked.append((path, factory))
    unused = [m.spec for m in named if m.identity not in used]
    if unused:
        raise ConfigError(f"--model {unused[0]} is the factory of none of the runs; they record: "
                          + ", ".join(sorted({recorded_entry(RunDir(p).config().get("model"), p)["factory"] for p, _ in entries})))
    return checked


def _table(header, rows):
    """Aligned columns: numbers right-aligned with 4 significant figures, text left-aligned."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(text) for text in column) for column in zip(header, *cells)]
    numeric = [all(isinstance(row[c], (int, float)) for row in rows) for c in range(len(header))]
    lines = []
    for row in [header, *cells]:
        lines.append("  ".join(text.rjust(w) if num else text.ljust(w) for text, w, num in zip(row, widths, numeric)).rstrip())
    return "\n".join(lines)


def format_comparison(result):
    """The per-run table (best first; ``diff``/``dse``: best minus each, paired) and the pairwise one, as text,
    then a warning per flagged run."""
    where = f"the {result.split} split" if result.split else "the given points"
    notes = [f"conditional on one draw of {', '.join(r['conditioned_on'])}" if r["conditioned_on"] else "" for r in result.runs]
    notes = [("FLAGGED; " if r.get("flag") else "") + note for r, note in zip(result.runs, notes)]
    header = ["rank", "run", "log p(x)", "se", "mc se", "diff", "dse", "verdict", "seed", "k-hat share"] + (
        ["note"] if any(notes) else [])
    rows = [[r["rank"], r["run"], r["log_likelihood"], r["se"], r["mc_se"], r["diff"], r["dse"], r["verdict"], r["seed"],
             r.get("khat_share", math.nan)] + ([note] if any(notes) else []) for r, note in zip(result.runs, notes)]
    pairs = [[f"{p['a']} - {p['b']}", p["difference"], p["se"], p["unpaired_se"], p["verdict"]] for p in result.pairwise]
    estimator = (f"importance-sampled with K = {result.importance_samples}" if result.estimator == "is" else
                 f"by AIS with T = {result.ais['steps']}, M = {result.ais['chains']}, {result.ais['leapfrog']} leapfrog "
                 f"steps, from the {result.ais['base']}")
    flagged = [f"warning: {r['run']}: {r['flag']}" for r in result.runs if r.get("flag")]
    if flagged and result.estimator == "is":
        flagged.append("compare on AIS (--estimator ais), whose bias the bidirectional bracket of evaluate measures")
    return "\n".join([
        f"log p(x) per point (nats), {estimator}, on the same {result.num_datapoints} points ({where}); se over points "
        "(each point's Monte Carlo noise is inside that spread; 'mc se' is its part); 'no difference': within 2 se",
        _table(header, rows), "",
        _table(["a - b", "difference", "se (paired)", "se (unpaired)", "verdict"], pairs),
        *flagged,
    ])
