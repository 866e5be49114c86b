"""What ``pyro-vae evaluate`` prints: the per-latent table and the summary of :func:`pyro_vae.inference.evaluate`'s
numbers, each estimate beside its standard error and each unreliable one flagged."""

import math

#: Above this share of points with k-hat over the threshold, an importance-weighted log-likelihood is flagged,
#: by the one rule of :func:`khat_flagged`, in the terminal, the report, compare-runs and the studies.
HIGH_KHAT_SHARE = 0.1


def khat_flagged(share):
    """Whether a log-likelihood whose points have k-hat above the threshold in this ``share`` is flagged."""
    return share is not None and math.isfinite(share) and share > HIGH_KHAT_SHARE


def _estimate(value, se):
    if not math.isfinite(value):
        return f"{value}"
    if math.isnan(se):
        return f"{value:.3f} (one draw: no error estimate)"
    return f"{value:.3f} +- {se:.3f}"


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
                 f"IS, K = {result['particles']}; delta-method error {result['log_likelihood_mc_se']:.3f}, replicate "
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
                     f"for K = {result['particles']}) for {share:.1%} of the points"
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


def _number(value):
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def headline_rows(mapping, prefix=""):
    """A flat list of ``(name, value, "")`` rows of a (nested) mapping of numbers, 4 significant figures,
    each ``name`` paired with its ``name_se`` / ``name_mc_se`` as ``value +- se``."""
    rows = []
    for key, value in mapping.items():
        if key.endswith("_se") and (key[:-3] in mapping or key.removesuffix("_mc_se") in mapping):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += headline_rows(value, f"{name}.")
            continue
        se = mapping.get(f"{key}_se", mapping.get(f"{key}_mc_se"))
        text = _number(value) if not isinstance(value, (list, tuple)) else ", ".join(_number(v) for v in value)
        if isinstance(se, float) and math.isnan(se):
            text += " (no error estimate)"
        elif isinstance(se, float):
            text += f" +- {se:.2g}"
        rows.append((name, text, ""))
    return rows


def format_headline(mapping):
    """A study's headline or a fit's metrics as an aligned table (:func:`headline_rows`)."""
    rows = headline_rows(mapping)
    return format_rows(rows) if rows else "(no numbers)"
