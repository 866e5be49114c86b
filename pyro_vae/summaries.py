"""What ``pyro-vae evaluate`` prints: the per-latent table and the summary of :func:`pyro_vae.inference.evaluate`'s
numbers, each estimate beside its standard error and each unreliable one flagged."""

import math

#: Above this share of points with k-hat over the threshold, an importance-weighted log-likelihood is flagged,
#: by the one rule of :func:`khat_flagged`, in the terminal, the report, compare-runs and the studies.
HIGH_KHAT_SHARE = 0.1


def khat_flagged(share):
    """Whether a log-likelihood whose points have k-hat above the threshold in this ``share`` is flagged."""
    return share is not None and math.isfinite(share) and share > HIGH_KHAT_SHARE


#: Human labels, with units, of the keys that metrics.json, evaluation.json and the studies' tables hold; another key
#: is shown with its underscores as spaces (:func:`label`).
LABELS = {
    "train_seconds": "training time (s)", "seconds": "time (s)", "seconds_per_epoch": "seconds per epoch",
    "train_elbo": "training ELBO (nats per point)", "val_elbo": "validation ELBO (nats per point)",
    "test_elbo": "test ELBO (nats per point)", "elbo": "ELBO (nats per point)", "test_kl": "test KL (nats per point)",
    "log_likelihood": "log p(x) (nats per point)", "test_log_likelihood": "test log p(x) (nats per point)",
    "log_likelihood_estimator": "estimator of log p(x)", "test_log_likelihood_estimator": "estimator of log p(x)",
    "fraction_khat_above_threshold": "share of points with k-hat above the threshold", "khat_threshold": "k-hat threshold",
    "gap": "gap log p(x) - ELBO (nats)", "active_units": "active latents", "inactive_latents": "inactive latents",
    "latents": "latents", "var_mu": "Var(μ)", "mean_sigma2": "E[σ²]", "moment_sum": "Var(μ) + E[σ²]",
    "prior_variance": "prior variance", "mean_mu": "mean μ", "kl": "KL (nats)", "reconstruction_gain": "reconstruction gain (nats)",
    "ks_pvalue": "KS p-value", "coverage_50": "coverage of the 50% interval", "coverage_90": "coverage of the 90% interval",
    "beta": "β", "max_sum_deviation": "largest |Var(μ) + E[σ²] - 1| (active latents)",
    "max_mean_deviation": "largest |mean μ| (active latents)", "smallest_beta_keeping_the_law": "smallest β keeping the law",
    "collapsed_generation_mean_abs_difference": "mean |change| of generated pixels with collapsed latents zeroed",
}


def label(key):
    """The human label of a key (:data:`LABELS`)."""
    return LABELS.get(str(key), str(key).replace("_", " "))


def significant(value, digits=4):
    """A number as every output shows it: ``digits`` significant figures, integers whole, booleans yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def estimate_text(value, se=None, plus_minus="+-"):
    """An estimate and its standard error as every output shows them: the error to two significant figures, the
    value to the same decimal place (``-23.3004 +- 0.0059``); a closed form's zero error as 0, a missing one as ?,
    a value without an error by :func:`significant`.  The report passes ``plus_minus="±"``."""
    if not isinstance(value, float) or not math.isfinite(value) or se is None or not isinstance(se, (int, float)):
        return significant(value)
    if math.isnan(se):
        return f"{significant(value)} {plus_minus} ?"
    if math.isinf(se):
        return f"{significant(value)} {plus_minus} inf"
    if se <= 1e-7 * max(1.0, abs(value)):  # below float32 rounding: a closed form's
        return f"{significant(value)} {plus_minus} 0"
    decimals = max(0, 1 - math.floor(math.log10(se)))
    return f"{value:.{decimals}f} {plus_minus} {se:.{decimals}f}"


def _estimate(value, se):
    if isinstance(se, float) and math.isnan(se) and math.isfinite(value):
        return f"{significant(value)} (one draw: no error estimate)"
    return estimate_text(value, se)


def format_latent_table(result):
    """The per-latent table (Asperti 2019, Table 1) as text; "sum" is read against the prior's variance."""
    latents = result["latents"]
    mu, sigma = ("mu", "sigma") if "mean/sd" in latents["moments"] else ("loc", "scale")
    lines = [f"{'j':>3} {'Var(' + mu + ')':>10} {'E[' + sigma + '^2]':>12} {'sum':>7} {'prior var':>9} {'mean ' + mu:>9} "
             f"{'KL':>7} {'gain':>8}  active"]
    for j in range(len(latents["var_mu"])):
        lines.append(
            f"{j:>3} {latents['var_mu'][j]:>10.4f} {latents['mean_sigma2'][j]:>12.4f} {latents['moment_sum'][j]:>7.3f} "
            f"{latents['prior_variance'][j]:>9.3f} {latents['mean_mu'][j]:>9.3f} {latents['kl'][j]:>7.3f} "
            f"{latents['reconstruction_gain'][j]:>8.3f}  {'yes' if latents['active'][j] else 'no'}"
        )
    lines.append(f"moment law: {latents['moment_law']}; active: Var({mu}) > 0.01 x prior variance")
    return "\n".join(lines)


def format_summary(result):
    """The headline numbers of :func:`~pyro_vae.inference.evaluate` as an aligned table, each with its error,
    then warnings and what ran."""
    given = " | " + ", ".join(result["conditioned_on"]) if "conditioned_on" in result else ""
    rows = []
    if "reconstruction" in result:
        rows += [("ELBO", _estimate(result["elbo"], result.get("elbo_mc_se", math.nan)), f"{result['draws']} draws per point"),
                 ("  reconstruction", _estimate(result["reconstruction"], result["reconstruction_mc_se"]), ""),
                 ("  KL", _estimate(result["kl"], result.get("kl_mc_se", math.nan)), _kl_note(result))]
    else:
        rows.append(("ELBO", f"{result['elbo']:.3f}", "enumerated sites summed out"))
    rows.append((f"log p(x{given})", _estimate(result["log_likelihood"], result["log_likelihood_se"]),
                 f"IS, K = {result['importance_samples']}; delta-method error {result['log_likelihood_mc_se']:.3f}, replicate "
                 f"{result['log_likelihood_replicate_se']:.3f}"))
    if "log_likelihood_finite_points" in result:
        rows.append(("  points with an error", _estimate(result["log_likelihood_finite_points"],
                                                         result["log_likelihood_finite_points_se"]),
                     f"mean over the {result['num_datapoints'] - result['points_without_error']} of {result['num_datapoints']} "
                     "points whose error is finite (a different quantity: those points only)"))
    if "psis_log_likelihood" in result:
        rows.append(("  PSIS", f"{result['psis_log_likelihood']:.3f}", f"k-hat > {result['khat_threshold']:.2f} for "
                     f"{result['fraction_khat_above_threshold']:.1%} of {result['num_datapoints']} points"))
    if "ais" in result:
        rows += ais_rows(result["ais"], result["num_datapoints"])
    if "elbo_refined" in result:
        rows += [("ELBO refined", _estimate(result["elbo_refined"], result["elbo_refined_mc_se"]),
                  f"{result['refinement']['steps']} per-point steps from the encoder's output (semi-amortised)"),
                 ("  gain", _estimate(result["refinement_gain"], result["refinement_gain_mc_se"]),
                  f"amortisation gap closed, from {result['elbo_amortised']:.3f}")]
    if "calibration" in result:
        rows.append(calibration_row(result["calibration"]))
    if "latents" in result:
        rows.append(("active latents", f"{result['active_units']} of {len(result['latents']['active'])}", ""))
    lines = [format_rows(rows)]
    if "infinite" in result:
        lines.append(f"warning: {result['infinite']}")
    share = result.get("fraction_khat_above_threshold", 0)
    if share > 0:  # flagged (a warning) by the rule the report and compare-runs use; below it, a note
        flagged = khat_flagged(share)
        lines.append(f"{'warning' if flagged else 'note'}: PSIS k-hat exceeds {result['khat_threshold']:.2f} (ArviZ's threshold "
                     f"for K = {result['importance_samples']}) for {share:.1%} of the points"
                     f"{'' if flagged else f', not more than the {HIGH_KHAT_SHARE:.0%} at which a log-likelihood is flagged'}: "
                     "q(z|x) is too light-tailed there, so their IS estimates are biased low and their errors unreliable")
    failing = [name for name, uniform in zip(result.get("calibration", {}).get("coordinates", []),
                                            result.get("calibration", {}).get("uniform", [])) if not uniform]
    if failing:
        lines.append(f"warning: q(z|x) is miscalibrated at {', '.join(failing[:8])}{' ...' if len(failing) > 8 else ''}: the "
                     "true latents' ranks among its draws are not uniform (figures/calibration.png shows how)")
    if result.get("points_without_error", 0) and "ais" not in result:
        lines.append(f"warning: {result['points_without_error']} of {result['num_datapoints']} points have k-hat >= 1, so IS "
                     "has no finite error there and the total's is infinite; for a log p(x) that vouches for itself run "
                     "evaluate with --estimator ais (every point) or --estimator ais-where-unreliable (those points)")
    lines += [f"note: {what}: {why}" for what, why in result.get("log_likelihood_notes", {}).items()]
    diagnostics = result.get("diagnostics", {})
    lines.append("ran: " + ", ".join(diagnostics.get("ran", [])))
    lines += [f"skipped: {name} ({reason})" for name, reason in diagnostics.get("skipped", {}).items()]
    return "\n".join(lines)


def calibration_row(calibration):
    """The row of an evaluation's ``calibration`` block: uniform coordinates and the mean interval coverage."""
    coverage_50 = sum(calibration["coverage_50"]) / len(calibration["coverage_50"])
    coverage_90 = sum(calibration["coverage_90"]) / len(calibration["coverage_90"])
    return ("q(z|x) calibration", f"{sum(calibration['uniform'])} of {len(calibration['uniform'])} uniform",
            f"ranks of {calibration['simulations']} simulated latents (KS); central 50% / 90% intervals cover "
            f"{coverage_50:.2f} / {coverage_90:.2f} on average (nominal 0.50 / 0.90, ± {calibration['coverage_se_50']:.2f} / "
            f"{calibration['coverage_se_90']:.2f} per coordinate)")


def ais_rows(ais, num_datapoints):
    """The rows of an evaluation's ``ais`` block: the AIS estimate, the IS+AIS combination, the bracket."""
    setting = f"T = {ais['steps']}, M = {ais['chains']}, {ais['leapfrog']} leapfrog steps, from the {ais['base']}"
    rows = []
    if "log_likelihood" in ais:
        rows.append(("log p(x), AIS", _estimate(ais["log_likelihood"], ais["log_likelihood_se"]),
                     f"{setting}; on {ais['points']} of {num_datapoints} points; acceptance {ais['acceptance']:.2f}"))
        if ais.get("fraction_khat_above_threshold"):
            rows.append(("  chains' k-hat", f"> {ais['khat_threshold']:.2f} at {ais['fraction_khat_above_threshold']:.1%}",
                         f"of the points (ArviZ's threshold for {ais['chains']} draws): their chains' weights are "
                         "heavy-tailed, so their errors may be understated; more steps T narrow them"))
    elif ais["where"] == "unreliable":
        rows.append(("log p(x), AIS", "not run", "no point's IS k-hat is above the threshold"))
    if "combined_log_likelihood" in ais:
        rows.append(("log p(x), IS + AIS", _estimate(ais["combined_log_likelihood"], ais["combined_log_likelihood_se"]),
                     f"AIS on the {ais['points']} points IS's k-hat flags, IS on the other {num_datapoints - ais['points']}"))
    if "bracket" in ais:
        bracket = ais["bracket"]
        rows.append(("  BDMC bracket", f"[{bracket['lower']:.3f}, {bracket['upper']:.3f}] width "
                     f"{_estimate(bracket['width'], bracket['width_se'])}",
                     f"{bracket['points']} points simulated from the model: AIS at this T can be this far below log p(x) "
                     "on data like these"))
    return rows


def _kl_note(result):
    note = ""
    if "global_kl" in result:
        note = f"of which global {result['global_kl']:.3f} nats for all {result['num_datapoints']} points"
    if "conditioned_on" in result:
        note += ("; " if note else "") + (f"per-point numbers given one draw of {', '.join(result['conditioned_on'])} "
                                          "from the guide")
    return note


def format_rows(rows):
    """``(name, value, note)`` rows as an aligned text table: names, values and notes each in a column."""
    rows = list(rows)
    name_width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    return "\n".join(f"{name:<{name_width}}  {value:<{value_width}}  {note}".rstrip() for name, value, note in rows)


def _is_error(keys, key):
    """Whether ``key`` is the standard error of another of ``keys`` (``x_se``, ``x_mc_se``), shown beside it."""
    return any(key.endswith(suffix) and key[:-len(suffix)] in keys for suffix in ("_se", "_mc_se"))


def _error_of(mapping, key):
    """``key``'s standard error in ``mapping``: ``key_se``, else ``key_mc_se``, else None."""
    return mapping.get(f"{key}_se", mapping.get(f"{key}_mc_se"))


def is_table_rows(value):
    """A non-empty list of rows (mappings), shown as a table of its own."""
    return isinstance(value, list) and bool(value) and all(isinstance(row, dict) for row in value)


def headline_rows(mapping, prefix=""):
    """``(label, value, key)`` rows of a mapping's scalars and lists of numbers: the human :func:`label`, the value
    with its ``key_se`` / ``key_mc_se`` (:func:`estimate_text`), and the key as ``metrics.json`` or ``headline.json``
    spells it where the label differs; the numbers of a mapping inside that is no row are flattened as ``outer.inner``
    (rows and lists of rows are :func:`headline_tables`', texts :func:`_texts`')."""
    rows = []
    for key, value in mapping.items():
        if _is_error(mapping, key):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if not _is_row(value):
                rows += headline_rows(value, f"{name}.")
            continue
        if isinstance(value, str) or is_table_rows(value):
            continue
        se = _error_of(mapping, key)
        if isinstance(value, (list, tuple)):
            text = ", ".join(significant(v) for v in value)
        elif isinstance(se, float) and math.isnan(se):
            text = f"{significant(value)} (no error estimate)"
        else:
            text = estimate_text(value, se)
        shown = f"{prefix}{label(key)}"
        rows.append((shown, text, name if shown != name else ""))
    return rows


def _is_row(value):
    """A mapping of scalars with at least one number: a row of a table."""
    return (isinstance(value, dict) and bool(value) and all(not isinstance(cell, (dict, list)) for cell in value.values())
            and any(isinstance(cell, (int, float)) and not isinstance(cell, bool) for cell in value.values()))


def format_table(rows, heading=None):
    """Rows (dicts of scalars) as an aligned text table, a column per key headed by its :func:`label`; ``heading``: the
    heading of a first column of row names (``rows`` then a mapping name -> row).  An ``x_se`` column is folded into
    ``x`` (:func:`estimate_text`)."""
    labelled = heading is not None
    items = list(rows.items()) if labelled else [(None, row) for row in rows]
    columns = list(dict.fromkeys(key for _, row in items for key in row))
    shown = [column for column in columns if not _is_error(columns, column)]
    header = ([heading] if labelled else []) + [label(column) for column in shown]
    body = []
    for name, row in items:
        cells = [estimate_text(row[column], _error_of(row, column)) if column in row else "" for column in shown]
        body.append(([str(name)] if labelled else []) + cells)
    widths = [max(len(str(line[i])) for line in [header] + body) for i in range(len(header))]
    return "\n".join("  ".join(f"{cell:<{w}}" if i == 0 and labelled else f"{cell:>{w}}" for i, (cell, w) in
                               enumerate(zip(line, widths))).rstrip() for line in [header] + body)


def headline_tables(mapping, prefix=""):
    """``(name, text)`` of every table in a (nested) headline: each list of rows, and at each level the entries that
    are rows (mappings of scalars) together, one row per key (by network, by objective, ...)."""
    tables = []
    rows = {key: value for key, value in mapping.items() if _is_row(value)}
    if rows:
        tables.append((prefix.rstrip(".") or "per row", format_table(rows, heading="")))
    for key, value in mapping.items():
        if is_table_rows(value):
            tables.append((f"{prefix}{key}", format_table(value)))
        elif isinstance(value, dict) and key not in rows:
            tables += headline_tables(value, f"{prefix}{key}.")
    return tables


def _texts(mapping, prefix=""):
    """``(name, text)`` of every text value in a (nested) headline that no table holds."""
    found = []
    for key, value in mapping.items():
        if isinstance(value, str):
            found.append((f"{prefix}{key}", value))
        elif isinstance(value, dict) and not _is_row(value):
            found += _texts(value, f"{prefix}{key}.")
    return found


def format_headline(mapping):
    """A study's headline or a fit's metrics as text: its numbers as an aligned table (:func:`headline_rows`), each
    table inside it (rows by beta, by network, ...) aligned under its name, and each text as a note."""
    tables = headline_tables(mapping)
    rows = headline_rows(mapping)
    blocks = [format_rows(rows)] if rows else []
    blocks += [f"{name}:\n{text}" for name, text in tables]
    blocks += [f"note: {name}: {text}" for name, text in _texts(mapping)]
    return "\n".join(blocks) if blocks else "(no numbers)"
