"""What the HTML report shows of one directory, as plain data for its template (:mod:`.report`).

Numbers are printed to 4 significant figures, and a value with a standard error beside it
(``x`` and ``x_se`` or ``x_mc_se`` in the same table) as one cell ``x ± se`` (2 significant figures).
Three kinds of number get a flag a reader cannot miss:

* a **negative KL estimate**: a KL divergence is at least 0, so a negative value is estimation error
  around a KL near 0 (a Monte Carlo or moment-matched estimate), to be read as "about 0";
* a **negative gap** (a column ending in ``gap``: the inference gap and its approximation and
  amortisation parts, Cremer et al. 2018), at least 0 in expectation: Monte Carlo error around a small
  gap, or a per-point optimiser that ended below the amortised guide;
* an **importance-sampled log-likelihood** whose share of points with Pareto k-hat above the threshold
  is more than :data:`HIGH_KHAT_SHARE`: for those points the importance weights have (near-)infinite
  variance, the estimate is biased low and its standard error unreliable (Vehtari et al. 2024,
  "Pareto smoothed importance sampling").
"""

import math
from dataclasses import dataclass, field

from pyro_vae.summaries import HIGH_KHAT_SHARE, estimate_text, is_table_rows, khat_flagged, label, significant

NEGATIVE_KL = "negative KL estimate: a KL divergence is ≥ 0, so this is estimation error around a value near 0"
NEGATIVE_GAP = ("negative gap estimate: the inference gap and its approximation and amortisation parts are ≥ 0 in "
                "expectation, so this is Monte Carlo error around a small gap, or a per-point optimiser that ended "
                "below the amortised guide (more steps or a smaller rate)")

#: Figure file name -> (place in the reading order, caption).  Unknown figures follow, by name.
FIGURES = {
    "training_curve.png": "Training curve: the training objective and the validation ELBO (± 2 SE) per epoch.",
    "reconstructions_samples.png": "Test images, their reconstructions E[x | z = μ(x)], and samples from the prior "
                                   "(drawn by the fit).",
    "evaluated_reconstructions_samples.png": "The same on the evaluated data (drawn by evaluate).",
    "generation_modes.png": "Data, then each generation mode on the same prior draws, on the data's colour scale.",
    "sample_metrics.png": "Sample metrics per generation mode, mean ± 2 standard errors.",
    "latent_variances.png": "Per latent: variance of the posterior mean, mean posterior variance and their sum "
                            "against the prior variance (the moment law).",
    "latent_traversals.png": "Decoded traversals of the active latents.",
    "calibration.png": "Calibration of q(z|x): ECDF of the true latent's PIT among q's draws, minus the uniform, "
                       "per coordinate, with a 95% simultaneous band (outside it: q is miscalibrated there).",
    "guides_ais.png": "Per fit, IS and AIS log p(x) on the same test points, ± 2 Monte Carlo SE.",
    "khat.png": "Pareto k-hat of the importance weights per data point, with the threshold for this K.",
    "variance_split.png": "How the data variance splits between latent and noise, per setting, against pPCA.",
    "moment_law.png": "The KL moment law per latent: variance of the posterior mean plus mean posterior variance.",
    "latent_sweep.png": "Held-out ELBO, log-likelihood and active units against the latent dimension.",
    "latent_spread.png": "Spread of the latent coordinates per setting.",
    "samples_reconstructions.png": "Samples and reconstructions per setting.",
    "noise_injection.png": "What injected noise does to the latents.",
    "compare.png": "Objectives compared: held-out log-likelihood, gradient SNR and the inference gap split.",
    "nuts_marginals.png": "The guide's marginals against the NUTS reference posterior.",
    "samples.png": "Samples from the one-stage and two-stage models.",
    "guides.png": "Per objective: test log p(x) ± 2 SE of each guide and model against its share of points with k-hat "
                  "above the threshold (right: less trustworthy).",
}
#: Figures named per setting: file-name prefix -> caption, ``{}`` the rest of the name (a network, a setting).
FIGURES_BY_PREFIX = {
    "variance_evolution_": "Collapse along training ({} network): the variance over the data of each latent's posterior "
                           "mean, per step (solid: active at the end, dashed: collapsed), with the 0.01 threshold of "
                           "activity; log scale.",
    "patterns_": "What each latent decodes to, less the decoding of z = 0 (Pyle's patterns), for data set, latent "
                 "size and prior {}.",
}


def figure_caption(name):
    """What the figure file ``name`` shows, for its caption (empty for a figure no study or command writes)."""
    if name in FIGURES:
        return FIGURES[name]
    for prefix, caption in FIGURES_BY_PREFIX.items():
        if name.startswith(prefix) and name.endswith(".png"):
            return caption.format(name[len(prefix):-len(".png")])
    return ""


@dataclass
class Cell:
    text: str
    flag: str = ""  # why the cell is flagged, or ""
    numeric: bool = False


@dataclass
class Table:
    title: str
    header: list  # the columns' labels, as shown
    rows: list  # lists of Cell
    flags: list = field(default_factory=list)  # distinct flag texts, for the note under the table
    keys: list = field(default_factory=list)  # the columns' keys (header's, before labelling), where they are keys


def as_number(text):
    """A CSV cell as a float where it is one, a bool where it is ``True`` / ``False``, else the text."""
    if not isinstance(text, str):
        return text
    if text in ("True", "False"):  # a CSV's Python booleans: shown as yes / no (significant)
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text


def _error_column(header, name):
    for suffix in ("_se", "_mc_se"):
        if name + suffix in header:
            return name + suffix
    return None


def _is_kl(name):
    return "kl" in str(name).lower().split("_")


def _is_gap(name):
    return str(name).lower().split("_")[-1] == "gap"


def _khat_share(header, row):
    for name in ("fraction_khat_above_threshold", "fraction_khat_above_0.7"):
        if name in header and isinstance(row[header.index(name)], float):
            return row[header.index(name)]
    return None


#: The flag of an IS log-likelihood whose k-hat share is high (the share itself is in its row).
HIGH_KHAT = (f"more than {HIGH_KHAT_SHARE:.0%} of points have k-hat above the threshold (the row's k-hat share): for "
             "them this importance-weighted estimate (IS's particles, or AIS's chains) is biased low and its standard error "
             "unreliable")


def _likelihood_flag(share):
    return HIGH_KHAT if khat_flagged(share) else ""


#: The flag of a number whose Monte Carlo error is NaN.
NO_ERROR = "no Monte Carlo error could be estimated for it (from one draw, or from draws that were not finite)"


def _cell(name, value, error, khat_flag):
    if isinstance(value, float):
        text = estimate_text(value, error if isinstance(error, float) else None, "±")  # the terminal's digits
        flag = (NEGATIVE_KL if _is_kl(name) else NEGATIVE_GAP if _is_gap(name) else "") if value < 0 else ""
        if "log_likelihood" in str(name) and not flag:
            flag = khat_flag
        if not flag and isinstance(error, float) and math.isnan(error):
            flag = NO_ERROR
        return Cell(text, flag, numeric=True)
    return Cell(significant(value), numeric=isinstance(value, int) and not isinstance(value, bool))


def table(title, header, rows):
    """A :class:`Table` of ``rows`` (lists of values in ``header`` order): standard-error columns folded
    into their values' cells, negative KLs and poorly-diagnosed IS log-likelihoods flagged."""
    header = list(header)
    rows = [[as_number(value) for value in row] for row in rows]
    errors = {name: _error_column(header, name) for name in header}
    folded = {column for column in errors.values() if column}
    shown = [name for name in header if name not in folded]
    cells = []
    for row in rows:
        khat_flag = _likelihood_flag(_khat_share(header, row))
        cells.append([_cell(name, row[header.index(name)],
                            row[header.index(errors[name])] if errors[name] else None, khat_flag) for name in shown])
    flags = list(dict.fromkeys(cell.flag for row in cells for cell in row if cell.flag))
    return Table(title, [label(name) for name in shown], cells, flags, shown)


def _is_scalar(value):
    return value is None or isinstance(value, (bool, int, float, str))


def name_value_table(title, mapping, labels=None, value_heading="value"):
    """A two-column table of a mapping of numbers (``labels`` renames keys and, when given, selects and
    orders them); a ``key_se`` / ``key_mc_se`` entry is folded into its key's row."""
    names = [key for key in (labels or mapping) if key in mapping]
    errors = [error for error in map(lambda name: _error_column(mapping, name), names) if error and error not in names]
    wide = table(title, names + errors, [[mapping[name] for name in names + errors]])
    labels = labels or {}
    rows = [[Cell(labels.get(name, label(name))), cell] for name, cell in zip(wide.keys, wide.rows[0])]
    return Table(title, ["quantity", value_heading], rows, wide.flags)


def headline_tables(headline, title="Headline numbers"):
    """``headline.json`` (or ``metrics.json``) as tables.

    Its top-level numbers form one name/value table.  Mappings of numbers come in two shapes, each
    one table: ``quantity_by_label`` keys (``{"test_log_likelihood_by_setting": {setting: value}}``) give a
    row per label and a column per quantity; other keys are labels of a row (``{"ancestral": {metric:
    value}}``) with a column per metric.  Text values and deeper nesting become notes."""
    scalars = {key: value for key, value in headline.items() if _is_scalar(value) and not isinstance(value, str)}
    flat = {key: value for key, value in headline.items()
            if isinstance(value, dict) and all(_is_scalar(v) for v in value.values())}
    notes = [f"{key}: {value}" for key, value in headline.items() if isinstance(value, str)]
    lists = {key: value for key, value in headline.items() if is_table_rows(value)}
    notes += [f"{key}: nested deeper than a table; see headline.json" for key, value in headline.items()
              if not (_is_scalar(value) or key in flat or key in lists)]
    tables = [name_value_table(title, scalars)] if scalars else []
    for key, rows in lists.items():  # rows of a sweep (kl-law's by_beta): a table, a column per quantity
        columns = list(dict.fromkeys(column for row in rows for column in row))
        tables.append(table(f"{title}: {key.replace('_', ' ')}", columns, [[row.get(c, "") for c in columns] for row in rows]))
    by_label = {key: value for key, value in flat.items() if "_by_" in key}
    if by_label:
        labels = list(dict.fromkeys(label for value in by_label.values() for label in value))
        label_name = next(iter(by_label)).split("_by_")[-1]
        tables.append(table(f"{title} by {label_name}", [label_name, *(key.split("_by_")[0] for key in by_label)],
                            [[label, *(value.get(label, "") for value in by_label.values())] for label in labels]))
    rows = {key: value for key, value in flat.items() if key not in by_label}
    if rows:
        columns = list(dict.fromkeys(column for value in rows.values() for column in value))
        tables.append(table(f"{title} per row", ["", *columns],
                            [[key, *(value.get(column, "") for column in columns)] for key, value in rows.items()]))
    return tables, notes


EVALUATION_ROWS = {  # key -> label, in the order shown
    "elbo": "ELBO",
    "reconstruction": "reconstruction E_q log p(x|z)",
    "kl": "KL(q || p)",
    "log_likelihood": "log p(x), importance-sampled",
    "log_likelihood_finite_points": "log p(x), IS, mean over the points with a finite error only",
    "points_without_error": "points whose IS error is infinite (k-hat >= 1)",
    "psis_log_likelihood": "log p(x), Pareto-smoothed",
    "elbo_amortised": "ELBO of the amortised guide (refinement's start)",
    "elbo_refined": "ELBO after per-point refinement (semi-amortised)",
    "refinement_gain": "refinement gain: amortisation gap closed",
    "fraction_khat_above_threshold": "share of points with k-hat above the threshold",
    "khat_threshold": "k-hat threshold for K",
    "active_units": "active units",
    "importance_samples": "importance samples K",
    "particles": "importance samples K",  # evaluation.json of pyro-vae before the rename
    "num_datapoints": "data points",
}


def evaluation_tables(evaluation):
    """The evaluation summary (per-point averages, with errors and flags) and the per-latent table of
    an ``evaluation.json``."""
    labels = dict(EVALUATION_ROWS)
    k = evaluation.get("importance_samples", evaluation.get("particles"))  # the old key: a run evaluated before the rename
    if k is not None:  # every log-likelihood with its estimator, K and error
        labels["log_likelihood"] = f"log p(x), importance-sampled, K = {k} (± the larger error)"
        labels["psis_log_likelihood"] = f"log p(x), Pareto-smoothed, K = {k}"
    tables = [name_value_table(f"Evaluation on {evaluation.get('num_datapoints', '?')} points", evaluation,
                               labels, "per point")]
    by_site = evaluation.get("latents_by_site")
    per_site = list(by_site.values()) if isinstance(by_site, dict) else [evaluation.get("latents")]
    if isinstance(evaluation.get("ais"), dict):
        tables.append(ais_table(evaluation["ais"]))
    if isinstance(evaluation.get("calibration"), dict):
        tables.append(calibration_table(evaluation["calibration"]))
    tables += [latent_table(latents) for latents in per_site if isinstance(latents, dict)]
    return tables


AIS_ROWS = {  # key of evaluation.json's "ais" -> label, in the order shown
    "log_likelihood": "log p(x), annealed importance sampling (on its points)",
    "combined_log_likelihood": "log p(x), AIS where IS's k-hat flags a point, IS elsewhere (all points)",
    "bracket_lower": "bracket on simulated data: forward AIS (lower)",
    "bracket_upper": "bracket on simulated data: reverse AIS (upper)",
    "bracket_width": "bracket width: how far below log p(x) AIS at this T can be",
    "fraction_khat_above_threshold": "share of points with the chains' k-hat above the threshold",
    "khat_threshold": "k-hat threshold for M chains",
    "acceptance": "HMC acceptance rate",
    "points": "points AIS ran on",
    "steps": "intermediate distributions T",
    "chains": "chains M per point",
    "leapfrog": "leapfrog steps per move",
    "base": "the path starts at",
}


def calibration_table(result):
    """The ``calibration`` block of an ``evaluation.json``: a row per latent coordinate."""
    columns = ["ks_pvalue", "uniform", "coverage_50", "coverage_90"]
    names = result.get("coordinates", [])
    rows = [[name, *(result[column][j] for column in columns)] for j, name in enumerate(names)]
    return table(f"Calibration of q(z|x) ({result.get('simulations', '?')} simulations, {result.get('draws', '?')} draws "
                 f"each; nominal coverage 0.50 ± {result.get('coverage_se_50', math.nan):.3f} and 0.90 ± "
                 f"{result.get('coverage_se_90', math.nan):.3f}; uniform: KS p above {result.get('uniform_threshold', math.nan):.2g})",
                 ["coordinate", *columns], rows)


def ais_table(ais):
    """The ``ais`` block of an ``evaluation.json``: the estimate, the bracket and the sampler's settings."""
    flat = {key: value for key, value in ais.items() if not isinstance(value, (dict, list))}
    flat.update({f"bracket_{key}": value for key, value in ais.get("bracket", {}).items() if not isinstance(value, list)})
    return name_value_table(f"Annealed importance sampling (T = {ais.get('steps', '?')}, M = {ais.get('chains', '?')})",
                            flat, AIS_ROWS, "per point")


LATENT_COLUMNS = ["active", "kl", "var_mu", "mean_sigma2", "moment_sum", "prior_variance", "reconstruction_gain"]


def latent_table(latents):
    """One row per latent coordinate: active, KL, the moment-law terms and the reconstruction gain."""
    columns = [name for name in LATENT_COLUMNS if isinstance(latents.get(name), list)]
    count = len(latents[columns[0]]) if columns else 0
    rows = [[f"z{j}", *(latents[name][j] for name in columns)] for j in range(count)]
    site = latents.get("site", "z")
    return table(f"Per latent (site {site!r}, {latents.get('moments', '')}; active: Var(μ) above "
                 f"0.01 × prior variance)", ["latent", *columns], rows)
