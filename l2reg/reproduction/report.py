"""The reproduction's Markdown report, from the parts' results (their plots are drawn by
`relation1.plot` and `selection.plot`)."""

from __future__ import annotations

from l2reg import versions
from l2reg.reproduction import relation1, selection, stats


def seconds(value: float | None) -> str:
    """A duration in whole seconds, or 'an unrecorded time' (a cache older than the record)."""
    return "an unrecorded time" if value is None else f"{value:.0f} s"


def time_line(results: dict) -> str:
    """The report's line on time: training time of the parts (as first measured) and this
    run's, and which parts came from the cache."""
    reused = results["reused_parts"]
    if not reused:
        cache = "every part trained in this run"
    elif len(reused) == len(results["parts"]):
        cache = "every part reused from the cache, nothing trained"
    else:
        cache = f"{len(reused)} of {len(results['parts'])} runner calls reused from the cache"
    return (
        f"Time: training {seconds(results['training_seconds'])} (measured when first trained), "
        f"this run {seconds(results['elapsed_seconds'])}; {cache}."
    )


def _met(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


PROTOCOL = (
    "Fixed before any number was seen, and the same for every setup:",
    "- **Replicas.** Each configuration runs on every (data draw, seed) pair. A data draw d "
    "sets the label-noise seed and the validation-split seed to d; a seed sets the "
    "initialization and the batch order.",
    "- **Validation.** Each setup's validation split is carved from its training set (with "
    "its noisy labels, as a user's would be). Every choice (t*, λ_opt, the λ a grid search "
    "picks, the probe's c) is read on validation accuracy; every figure reported is test "
    "accuracy.",
    "- **Intervals.** Means over replicas come with 95% Student-t intervals (ddof = 1). Two "
    "methods on the same replicas are compared by their paired differences (interval and "
    "two-sided t-test p-value).",
    "- **The envelope** at budget T is the test accuracy of the grid's λ (λ = 0 included) with "
    "the best validation accuracy at T: what a grid search finds, with one run per λ.",
    "- **The correction κ** of the predicted λ is fitted on the calibration setup only (the "
    "median over its replicas and budgets of k(T)/c) and used on the held-out setups without "
    "refitting.",
    "- **The probe's fall** (declared after the default preset's setups were measured, before "
    "the `regimes` preset's new setups ran): a probe with a clear peak falls by L2 when its "
    "training accuracy does not rise by 0.5 points or more from t* to its end "
    "(`relations.fall_cause`), by overfitting when it does. Where most of a setup's probes fall "
    f"by L2, relation 3's slope (log λ_opt against log T, on the means) is predicted to be at "
    f"most {selection.FALL_SLOPE_BOUND:g}; where most fall by overfitting, above it. "
    "`suggest_l2` suggests λ only from an L2 fall.",
)


def summary_rows(results: dict) -> list[str]:
    """One table row per goal: the claim, the setup, the measured figure and met or missed."""
    relation_1 = results["relation_1"]
    rows = [
        f"| relation 1: t* ∝ (λη)^slope, slope in [−1.1, −0.9] | "
        f"{relation_1.get('setup', 'calibration')} | {relation1.headline(relation_1)} | "
        f"{_met(relation_1['met'])} |",
    ]
    for result in results["setups"]:
        name = f"{result['setup']} ({result['role']})"
        last = result["relation_2"]["budgets"][-1]
        rows.append(
            f"| relation 2: best λ > 0 beats λ = 0 by ≥ {selection.GAIN_GOAL * 100:.1f} points "
            f"at T = {last['budget_steps']} | {name} | "
            f"{stats.text(last['gain_over_zero_l2'], scale=100)}{selection.unfit_note(result)} | "
            f"{_met(result['relation_2']['met'])} |"
        )
        losses = [
            row["corrected"]["loss_vs_envelope"]["mean"] for row in result["prediction"]["budgets"]
        ]
        rows.append(
            f"| relation 3: κ·λ_pred loses ≤ {selection.PREDICTION_LOSS_GOAL * 100:.1f} points "
            f"at every T | {name} | worst mean loss {_worst(losses, max)}"
            + (" (in sample)" if result["prediction"]["in_sample"] else "")
            + f" | {_met(result['prediction']['met'])} |"
        )
        rows.append(fall_row(result, name))
        for schedule_name, schedule in result["schedules"]["by_schedule"].items():
            differences = [row["vs_envelope"]["mean"] for row in schedule["budgets"]]
            rows.append(
                f"| {schedule_name} within {selection.SCHEDULE_GOAL * 100:.1f} points of the "
                f"envelope at every T | {name} | worst mean {_worst(differences, min, sign='+')} | "
                f"{_met(schedule['met'])} |"
            )
    return rows


def fall_row(result: dict, name: str) -> str:
    """The summary row of what the setup's probes' falls predict of relation 3
    (`selection.fall_prediction`)."""
    predicted = selection.fall_prediction(result)
    bound = f"{selection.FALL_SLOPE_BOUND:g}".replace("-", "−")
    slope = "undefined" if predicted["slope"] is None else f"{predicted['slope']:.2f}"
    if predicted["fall"] is None:
        return (
            f"| the probe's fall predicts relation 3's slope | {name} | most probes without a "
            f"clear peak, slope {slope}{selection.unfit_note(result)} | no prediction |"
        )
    claim = f"≤ {bound}" if predicted["fall"] == "l2" else f"> {bound}"
    verdict = "no prediction" if predicted["held"] is None else _met(predicted["held"])
    return (
        f"| the probe's fall predicts relation 3's slope | {name} | most probes fall by "
        f"{'L2' if predicted['fall'] == 'l2' else 'overfitting'}, so slope {claim}: {slope}"
        f"{selection.unfit_note(result)} | "
        f"{verdict} |"
    )


def _worst(values: list[float | None], pick, sign: str = "") -> str:
    """The worst of means in points (`pick`: max for losses, min for differences), or
    'undefined' where any mean is (an undefined mean never meets a goal)."""
    if any(value is None for value in values):
        return "undefined at some T"
    return f"{pick(values) * 100:{sign}.1f} points"


def report(results: dict) -> str:
    """The Markdown report: the protocol, then every goal with its measured figure."""
    from l2reg import reproduction

    lines = [
        f"# Choosing λ, and the paper's relations, on {results['preset']} settings",
        "",
        f"Replicas: {results['draws']} data draws × {results['seeds']} seeds = "
        f"{len(results['replicas'])}. {time_line(results)}",
        "",
        *versions.markdown(results["environment"]),
        "",
        "## Summary",
        "",
        "| goal | setup | measured | verdict |",
        "|---|---|---|---|",
        *summary_rows(results),
        "",
        "## Protocol",
        "",
        *PROTOCOL,
        "",
        relation1.RULES,
        "",
        "## 1. Relation 1: t* ∝ 1/(λη)",
        "",
        relation1.section(results["relation_1"], rules=False),
        "",
        "![t* vs λη](t_star.png)",
        "",
        "## 2. Choosing λ: relation 3, relation 2 and schedules against the envelope",
        "",
    ]
    for result in results["setups"]:
        lines += [
            selection.section(result),
            f"![{result['setup']}]({reproduction.plot_name(result['setup'])})",
            "",
        ]
    return "\n".join(lines)
