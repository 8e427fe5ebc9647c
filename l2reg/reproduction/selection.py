r"""Choosing λ without a grid search, measured against one: relation 3 and L2 schedules.

For one setup (a trainer config with a validation split, a constant SGD learning rate η and
budgets T) and its replicas (`stats.Replica`: data draw × seed), `study` trains

- **grid**: fixed λ over `Setup.l2s` (λ = 0 first) for T_max = budgets[-1] steps, evaluated
  after every budget. Constant η makes one run's curve its accuracy at every T ≤ T_max.
- **probe**: one large-λ run per replica (`probe.probe_run`), read on validation accuracy:
  c = t*·λη (relation 1's constant, from one cheap run).
- **predicted**: for each budget T, a run of T steps at relation 3's λ_pred(T) = c/(ηT), and
  one at the corrected κ·c/(ηT), κ fitted on the calibration setup only (`correction`).
- **schedules** (`SCHEDULES`): AutoL2 as released, AutoL2 on a t*-clock (cooldown = c in units
  of 1/(λη), i.e. one t* at the current λ), AutoL2 with `min_l2` = the corrected λ_pred(T_max),
  and the anytime schedule λ(t) = c/(η(t + t0)) (`l2reg.anytime_l2`) with the probe's c and
  with κ·c. Each is one run whose curve gives its accuracy at every budget.

and analyses them with validation accuracy for every choice and test accuracy for every
figure reported:

- **envelope(T)**: the test accuracy of the grid's λ with the best validation accuracy at T:
  what a grid search finds, with one run per λ (per budget, were η scheduled).
- **relation 3**: λ_opt(T) (validation, refined between grid points) and k(T) = λ_opt·η·T
  against the probe's c (and relation 1's), the slope of log λ_opt against log T (−1 if
  relation 3 holds), and the test accuracy lost by using λ_pred(T) instead of the envelope.
- **relation 2** at every budget: the gain of the best λ > 0 (chosen on validation) over λ = 0.
- **whether λ = 0 fits its training labels** (relation 1's rule (a), `zero_l2_fit`): where it
  does not, the network underfits or diverges without L2, and the setup does not test λ
  selection in the regime the relations describe; the report says so next to its verdicts.
- **schedules**: test accuracy at each T minus the envelope, paired over replicas; the goal
  is within SCHEDULE_GOAL of it at every T.

Every mean comes with its 95% interval over replicas (`stats`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from l2reg import checks, relations
from l2reg.files import pyplot, save_figure
from l2reg.reproduction import probe, relation1, stats
from l2reg.reproduction.stats import Replica
from l2reg.training import sweep
from l2reg.training.rundir import Curves

ROLES = ("calibration", "held-out")
# Goals: a schedule within this much accuracy of the envelope at every budget; the predicted λ
# losing at most this much; relation 2's gain over λ = 0 at least this much.
SCHEDULE_GOAL = 0.005
PREDICTION_LOSS_GOAL = 0.005
GAIN_GOAL = 0.015
# The probe costs at most this fraction of the grid search (every λ of the grid, T_max steps).
PROBE_COMPUTE_GOAL = 0.1
# The probe's fall predicts relation 3 (`fall_prediction`): where most probes fall by L2,
# λ_opt falls with the budget (the slope of log λ_opt against log T at most this); where most
# fall by overfitting, it does not (the slope above it).
FALL_SLOPE_BOUND = -0.5

Train = Callable[[str, list[tuple[Replica, sweep.Run]], Sequence[int]], list[Curves]]


@dataclasses.dataclass(frozen=True)
class Setup:
    """One setup of the study.

    Attributes:
      name: an identifier, e.g. 'digits_mse' (its key in a preset's `setups`); also names
        its runner calls and its plot.
      role: 'calibration' (the predictor's correction κ may be fitted on it) or 'held-out'
        (never used for a choice: κ comes from the calibration setup).
      config: the trainer config of every run (model, data with its validation split, loss,
        optimizer); its l2, lr, seed, steps and l2_mode are set per run.
      lr: the constant SGD learning rate η of every run (> 0).
      l2s: the λ grid, strictly increasing from 0 (the λ = 0 baseline), ≥ 3 values > 0.
      budgets: the budgets T in steps, strictly increasing; the grid runs last budgets[-1].
      probe_l2: λ of the probe (> 0), which runs probe_length/(λη) steps.
      probe_length: > 0.
      autol2_l2: AutoL2's initial λ (> 0).
      small_l2: a small fixed λ of the grid, the paper's Fig. 1c reference for time to
        accuracy (one of l2s, > 0).
      cooldown_in_t_star: the t*-clocked AutoL2's cooldown, in units of the probe's c (a
        cooldown of c/(λη) steps is one t* at the current λ).
      cooldowns: a cooldown sweep: one more AutoL2 schedule per value, with that cooldown in
        units of 1/(λη) (the released AutoL2 has 0.1); none by default.
      autol2_starts: a sweep of AutoL2's start: one more AutoL2 schedule (the released
        cooldown) per value, starting at λ = value/η (a λη, with η the effective learning
        rate: the same values mean the same start on setups of different η); none by default.
    """

    name: str
    role: str
    config: ml_collections.ConfigDict = dataclasses.field(repr=False)
    lr: float
    l2s: tuple[float, ...]
    budgets: tuple[int, ...]
    probe_l2: float
    probe_length: float
    autol2_l2: float
    small_l2: float
    cooldown_in_t_star: float = 1.0
    cooldowns: tuple[float, ...] = ()
    autol2_starts: tuple[float, ...] = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(
                "a setup's name must be an identifier (letters, digits, _: it is a config "
                f"key, e.g. --config.setups.digits_mse.lr=0.5), got {self.name!r}"
            )
        if self.role not in ROLES:
            raise ValueError(f"setup {self.name!r}: role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.config, ml_collections.ConfigDict):
            raise ValueError(
                f"setup {self.name!r}: config must be a ConfigDict, got {self.config!r}"
            )
        l2s = tuple(self.l2s)
        if len(l2s) < 4 or l2s[0] != 0 or np.any(np.diff(l2s) <= 0) or not np.all(np.isfinite(l2s)):
            raise ValueError(
                f"setup {self.name!r}: l2s must be strictly increasing finite values from 0 with "
                f"at least 3 values > 0, got {l2s!r}"
            )
        budgets = tuple(self.budgets)
        if not (
            budgets
            and all(checks.is_integer(b) and 1 <= b <= checks.INT32_MAX for b in budgets)
            and np.all(np.diff(budgets) > 0)
        ):
            raise ValueError(
                f"setup {self.name!r}: budgets must be strictly increasing integers in "
                f"[1, {checks.INT32_MAX}], "
                f"got {budgets!r}"
            )
        for name in ("lr", "probe_l2", "probe_length", "autol2_l2", "cooldown_in_t_star"):
            checks.number(
                f"setup {self.name!r}: {name}",
                getattr(self, name),
                lambda x: math.isfinite(x) and x > 0,
                "finite and > 0",
            )
        for field, item in (("cooldowns", "a cooldown"), ("autol2_starts", "a start")):
            values = tuple(getattr(self, field))
            for value in values:
                checks.number(
                    f"setup {self.name!r}: {item} of {field}",
                    value,
                    lambda x: math.isfinite(x) and x > 0,
                    "finite and > 0",
                )
            if len(set(values)) != len(values):
                raise ValueError(f"setup {self.name!r}: {field} must differ, got {values!r}")
        if self.small_l2 not in l2s[1:]:
            raise ValueError(
                f"setup {self.name!r}: small_l2 must be one of the grid's λ > 0 {l2s[1:]}, "
                f"got {self.small_l2!r}"
            )

    @property
    def num_steps(self) -> int:
        return int(self.budgets[-1])

    def base_config(self) -> ml_collections.ConfigDict:
        """The config of the setup's runs: constant η, coupled L2 (the relations' L2)."""
        config = self.config.copy_and_resolve_references()
        config.lr = self.lr
        config.lr_schedule = "constant"
        config.l2_placement = "coupled"
        return config


def effective_lr(setup: Setup) -> float:
    """η/(1−μ) of the setup (its L2 goes through momentum μ), the η of the relations."""
    return probe.effective_lr(setup.base_config())


# The schedules compared with the envelope: name → the run's fields, from the setup, the
# replica's probe c, the correction κ and the effective η.
SCHEDULES: dict[str, Callable[[Setup, float, float, float], dict[str, Any]]] = {
    "AutoL2 (released)": lambda setup, c, kappa, lr: {"l2": setup.autol2_l2, "l2_mode": "autol2"},
    "AutoL2, t*-clock": lambda setup, c, kappa, lr: {
        "l2": setup.autol2_l2,
        "l2_mode": "autol2",
        "autol2": (("cooldown", setup.cooldown_in_t_star * c),),
    },
    "AutoL2, min_l2 = κ·λ_pred(T_max)": lambda setup, c, kappa, lr: {
        "l2": max(setup.autol2_l2, kappa * c / (lr * setup.num_steps)),
        "l2_mode": "autol2",
        "autol2": (("min_l2", kappa * c / (lr * setup.num_steps)),),
    },
    "anytime, c": lambda setup, c, kappa, lr: {
        "l2": setup.probe_l2,
        "l2_mode": "anytime",
        "anytime_c": c,
    },
    "anytime, κ·c": lambda setup, c, kappa, lr: {
        "l2": setup.probe_l2,
        "l2_mode": "anytime",
        "anytime_c": kappa * c,
    },
}


def schedules(setup: Setup) -> dict[str, Callable[[Setup, float, float, float], dict[str, Any]]]:
    """SCHEDULES, then one AutoL2 per value of the setup's cooldown sweep, then one per value of
    its start sweep."""
    cooled = {
        f"AutoL2, cooldown {cooldown:g}/(λη)": functools.partial(_autol2_cooling, cooldown)
        for cooldown in setup.cooldowns
    }
    started = {
        f"AutoL2 from λη = {start:g}": functools.partial(_autol2_starting, start)
        for start in setup.autol2_starts
    }
    return {**SCHEDULES, **cooled, **started}


def _autol2_cooling(cooldown: float, setup: Setup, c: float, kappa: float, lr: float) -> dict:
    return {"l2": setup.autol2_l2, "l2_mode": "autol2", "autol2": (("cooldown", cooldown),)}


def _autol2_starting(start: float, setup: Setup, c: float, kappa: float, lr: float) -> dict:
    return {"l2": start / lr, "l2_mode": "autol2"}


def earliest_decays(
    l2: float,
    lr: float,
    cooldown: float,
    steps: int,
    *,
    factor: float,
    check_every: int,
    patience: int,
) -> list[int]:
    """The steps at which AutoL2 (`l2reg.autol2`) from λ = `l2` at the effective η `lr` decays
    within `steps` steps if each decay comes as soon as its cooldown allows, as if training
    always stalled. A run's λ after step s is at least λ·factor^−(decays at steps ≤ s); where
    it is larger, a decay waited for a plateau."""
    decays, last = [], 0
    while True:
        # A decay is checked every check_every steps, from the (patience + 1)-th check on,
        # more than cooldown/(λη) steps after the previous one.
        wait = cooldown / (l2 * lr)
        step = max(
            (math.floor((last + wait) / check_every) + 1) * check_every,
            (patience + 1) * check_every,
        )
        if step > steps:
            return decays
        decays.append(step)
        last, l2 = step, l2 / factor


def waited_for_plateaus(curve: Curves, l2: float, earliest: Sequence[int], factor: float) -> int:
    """How many of a run's evaluations show a λ above the one its earliest decays would give
    by then: a decay that waited for a plateau (seen to the evaluations' resolution)."""
    bound = l2 / factor ** np.searchsorted(np.asarray(earliest), curve.steps, side="right")
    # λ is float32 in the curve: a relative tolerance well above its rounding.
    return int(np.sum(curve.l2 > bound * (1 + 1e-4)))


def decays_made(curve: Curves, initial_l2: float, factor: float) -> int:
    """How many times a run's λ was divided by `factor` from `initial_l2` by its last step."""
    final = float(curve.l2[-1])
    return round(math.log(initial_l2 / final) / math.log(factor)) if final > 0 else -1


selection_accuracy = probe.selection_accuracy


def _at(curve: Curves, step: int, values: np.ndarray) -> float:
    return float(values[curve.index_at(step, exact=True)])


def grid_runs(setup: Setup, replicas: Sequence[Replica]) -> list[tuple[Replica, sweep.Run]]:
    """The fixed-λ grid: every λ of the setup for T_max steps, per replica."""
    return [
        (r, sweep.Run(l2, setup.lr, r.seed, setup.num_steps, l2_mode="fixed"))
        for r in replicas
        for l2 in setup.l2s
    ]


def probe_runs(setup: Setup, replicas: Sequence[Replica]) -> list[tuple[Replica, sweep.Run]]:
    """One probe per replica (`probe.probe_run` at the setup's η)."""
    config = setup.base_config()
    return [
        (r, probe.probe_run(config, setup.probe_l2, setup.probe_length, r.seed)) for r in replicas
    ]


def predicted_runs(
    setup: Setup, replicas: Sequence[Replica], c: Sequence[float], kappa: float
) -> list[tuple[Replica, sweep.Run]]:
    """Per replica and budget T, a run of T steps at λ_pred(T) = c/(ηT), then one at κ·λ_pred(T)."""
    lr = effective_lr(setup)
    runs = []
    for r, c_r in zip(replicas, c, strict=True):
        for factor in (1.0, kappa):
            for budget in setup.budgets:
                l2 = factor * c_r / (lr * budget)
                runs.append((r, sweep.Run(l2, setup.lr, r.seed, int(budget), l2_mode="fixed")))
    return runs


def schedule_runs(
    setup: Setup, replicas: Sequence[Replica], c: Sequence[float], kappa: float
) -> list[tuple[Replica, sweep.Run]]:
    """Every schedule of `schedules(setup)` per replica (schedules outermost), T_max steps
    each."""
    lr = effective_lr(setup)
    return [
        (
            r,
            sweep.Run(
                lr=setup.lr, seed=r.seed, steps=setup.num_steps, **make(setup, c_r, kappa, lr)
            ),
        )
        for make in schedules(setup).values()
        for r, c_r in zip(replicas, c, strict=True)
    ]


def correction(result: dict) -> float:
    """κ: the median over the calibration setup's replicas and budgets of k(T)/c, the factor
    that turns the probe's c into relation 3's constant on that setup."""
    ratios = [
        k / c
        for row in result["relation_3"]["budgets"]
        for k, c in zip(row["k"]["values"], result["probe"]["c"]["values"], strict=True)
        if k is not None and c is not None
    ]
    if not ratios:
        raise ValueError(f"setup {result['setup']!r} gives no k(T)/c to fit the correction on")
    return float(np.median(ratios))


def study(
    setup: Setup,
    replicas: Sequence[Replica],
    train: Train,
    *,
    kappa: float | None = None,
    relation_1_c: dict | None = None,
) -> tuple[dict, dict]:
    """Trains and analyses one setup (see the module docstring).

    Args:
      setup: the setup.
      replicas: its replicas.
      train: `train(call_name, [(replica, run)], eval_at)` → one `Curves` per run, in order.
      kappa: the correction κ from the calibration setup; None for the calibration setup
        itself, which fits it on its own grid (in sample: the report says so).
      relation_1_c: relation 1's c (an `stats.interval`-like dict with 'mean'), for the
        comparison with k(T); None where relation 1 was not measured on this setup.

    Returns:
      (the results, JSON-ready; the curves by kind, for the plots).
    """
    if setup.role == "held-out" and kappa is None:
        raise ValueError(f"held-out setup {setup.name!r} needs κ from the calibration setup")
    lr = effective_lr(setup)
    budgets = [int(b) for b in setup.budgets]
    grid = grid_runs(setup, replicas)
    grid_curves = train(f"{setup.name}: λ grid", grid, budgets)
    # Evaluated evenly, probe.EVALS times, as `probe.suggest` evaluates its probe through the
    # trainer: a log-spaced grid alone would round t* (and c) to a twelfth of a decade.
    probe_length = probe_runs(setup, replicas[:1])[0][1].steps
    probe_evals = sorted(
        {max(1, round(k * probe_length / probe.EVALS)) for k in range(1, probe.EVALS + 1)}
    )
    probes = train(f"{setup.name}: probe", probe_runs(setup, replicas), probe_evals)
    measured = [probe.measure(curve, setup.probe_l2, lr) for curve in probes]
    c = [m["c"] for m in measured]

    by = {(r, run.l2): curve for (r, run), curve in zip(grid, grid_curves, strict=True)}
    split = selection_accuracy(grid_curves[0])[1]
    positive = np.array(setup.l2s[1:])

    def table(curve_key, budget, which):
        curve = by[curve_key]
        values = selection_accuracy(curve)[0] if which == "select" else curve.test_accuracy
        return _at(curve, budget, values)

    envelope, relation_3_rows, relation_2_rows, chosen = {}, [], [], {}
    for budget in budgets:
        select = np.array(
            [[table((r, l2), budget, "select") for l2 in setup.l2s] for r in replicas]
        )
        test = np.array([[table((r, l2), budget, "test") for l2 in setup.l2s] for r in replicas])
        masked = np.where(np.isfinite(select), select, -np.inf)
        best_any = np.argmax(masked, axis=1)
        best_positive = 1 + np.argmax(masked[:, 1:], axis=1)
        rows = np.arange(len(replicas))
        envelope[budget] = test[rows, best_any]
        chosen[budget] = [setup.l2s[i] for i in best_any]
        l2_opt = np.array(
            [
                relations.l2_opt(positive, s[1:]) if np.any(np.isfinite(s[1:])) else np.nan
                for s in select
            ]
        )
        k = l2_opt * lr * budget
        relation_3_rows.append(
            {
                "budget_steps": budget,
                "l2_opt": stats.interval(l2_opt),
                "k": stats.interval(k),
                "at_grid_edge": int(
                    np.sum((best_positive == 1) | (best_positive == len(positive)))
                ),
                "chosen_l2": chosen[budget],
                "test_accuracy_by_l2": [stats.interval(column) for column in test.T],
                "selection_accuracy_by_l2": [stats.interval(column) for column in select.T],
            }
        )
        relation_2_rows.append(
            {
                "budget_steps": budget,
                "best_l2_on_validation": [setup.l2s[i] for i in best_positive],
                "gain_over_zero_l2": stats.paired(test[rows, best_positive], test[:, 0]),
            }
        )
    log_t = np.log(budgets)
    per_replica_slopes = []
    for index in range(len(replicas)):
        values = np.array([_nan(row["l2_opt"]["values"][index]) for row in relation_3_rows])
        ok = np.isfinite(values)
        per_replica_slopes.append(
            float(np.polyfit(log_t[ok], np.log(values[ok]), 1)[0]) if ok.sum() >= 2 else np.nan
        )
    mean_l2_opt = np.array([_nan(row["l2_opt"]["mean"]) for row in relation_3_rows])
    ok = np.isfinite(mean_l2_opt)
    pooled_slope = (
        float(np.polyfit(log_t[ok], np.log(mean_l2_opt[ok]), 1)[0]) if ok.sum() >= 2 else None
    )

    zero_l2 = zero_l2_fit(setup, [by[(r, setup.l2s[0])] for r in replicas])
    probe_result = {
        "l2": setup.probe_l2,
        "steps": probe_runs(setup, replicas[:1])[0][1].steps,
        "clear_peak": [m["clear_peak"] for m in measured],
        "fall": [m["fall"] for m in measured],
        "train_accuracy_rise": [m["train_accuracy_rise"] for m in measured],
        "t_star": [m["probe"]["t_star"] for m in measured],
        "c": stats.interval(c),
    }
    result = {
        "setup": setup.name,
        "role": setup.role,
        "selection_split": split,
        "lr": setup.lr,
        "effective_lr": lr,
        "l2s": list(setup.l2s),
        "budgets": budgets,
        "replicas": [list(r) for r in replicas],
        "probe": probe_result,
        "zero_l2_fit": zero_l2,
        "relation_1_c": relation_1_c,
        "relation_2": {
            "budgets": relation_2_rows,
            "met": all(
                _at_least(row["gain_over_zero_l2"]["mean"], GAIN_GOAL)
                for row in relation_2_rows[-1:]
            ),
        },
        "relation_3": {
            "budgets": relation_3_rows,
            "l2_opt_vs_budget_slope": pooled_slope,
            "per_replica_slope": stats.interval(per_replica_slopes),
            "budget_decades": float(np.log10(budgets[-1] / budgets[0])),
        },
        "envelope": {str(b): stats.interval(envelope[b]) for b in budgets},
    }
    own_kappa = correction(result)
    result["correction"] = {
        "kappa": own_kappa if kappa is None else kappa,
        "fitted_here": kappa is None,
        "kappa_on_this_setup": own_kappa,
    }
    kappa = result["correction"]["kappa"]

    predicted = predicted_runs(setup, replicas, c, kappa)
    predicted_curves = train(f"{setup.name}: predicted λ", predicted, ())
    count = len(budgets)
    prediction_rows = []
    for index, budget in enumerate(budgets):
        row = {"budget_steps": budget}
        for offset, name in ((0, "uncorrected"), (count, "corrected")):
            curves = [
                predicted_curves[2 * count * i + offset + index] for i in range(len(replicas))
            ]
            l2 = [predicted[2 * count * i + offset + index][1].l2 for i in range(len(replicas))]
            accuracy = np.array([float(curve.test_accuracy[-1]) for curve in curves])
            row[name] = {
                "l2": stats.interval(l2),
                "test_accuracy": stats.interval(accuracy),
                "loss_vs_envelope": stats.paired(envelope[budget], accuracy),
            }
        prediction_rows.append(row)
    compute = probe_result["steps"] / (len(setup.l2s) * setup.num_steps)
    held_out = setup.role == "held-out"
    result["prediction"] = {
        "budgets": prediction_rows,
        "probe_compute_fraction": compute,
        "goal": PREDICTION_LOSS_GOAL,
        # Met when the corrected prediction loses at most the goal at every budget, from a
        # probe with a clear peak; on the calibration setup this is in sample.
        "met": all(p for p in result["probe"]["clear_peak"])
        and compute <= PROBE_COMPUTE_GOAL
        and all(
            _at_least(_negated(r["corrected"]["loss_vs_envelope"]["mean"]), -PREDICTION_LOSS_GOAL)
            for r in prediction_rows
        ),
        "in_sample": not held_out,
    }

    schedule_curves = train(
        f"{setup.name}: schedules", schedule_runs(setup, replicas, c, kappa), budgets
    )
    n = len(replicas)
    made = schedules(setup)
    by_schedule = {
        name: schedule_curves[index * n : (index + 1) * n] for index, name in enumerate(made)
    }
    zero = [by[r, 0.0] for r in replicas]
    small = [by[r, setup.small_l2] for r in replicas]
    target = float(np.mean([curve.test_accuracy[-1] for curve in zero]))
    schedule_rows = {}
    for name, curves in by_schedule.items():
        rows = []
        for budget in budgets:
            accuracy = np.array([_at(curve, budget, curve.test_accuracy) for curve in curves])
            rows.append(
                {
                    "budget_steps": budget,
                    "test_accuracy": stats.interval(accuracy),
                    "vs_envelope": stats.paired(accuracy, envelope[budget]),
                }
            )
        schedule_rows[name] = {
            "budgets": rows,
            "steps_to_zero_l2_final_accuracy": stats.interval(
                [_steps_to(curve, target) for curve in curves]
            ),
            "met": all(_at_least(row["vs_envelope"]["mean"], -SCHEDULE_GOAL) for row in rows),
        }
        decays = _decays(made[name], setup, curves, c, kappa, lr)
        if decays is not None:
            schedule_rows[name]["decays"] = decays
    result["schedules"] = {
        "goal": SCHEDULE_GOAL,
        "by_schedule": schedule_rows,
        "time_to_accuracy_target": target,
        "steps_to_target": {
            "λ = 0": stats.interval([_steps_to(curve, target) for curve in zero]),
            f"fixed λ = {setup.small_l2:g}": stats.interval(
                [_steps_to(curve, target) for curve in small]
            ),
        },
    }
    curves = {"grid": by, "probes": probes, "schedules": by_schedule, "zero": zero, "small": small}
    return result, curves


def zero_l2_fit(setup: Setup, curves: Sequence[Curves]) -> dict:
    """Whether the λ = 0 run of each replica fits the clean share of its training labels:
    its highest training accuracy at least relation 1's rule (a) bound, 1 − label noise −
    `relation1.FIT_MARGIN` (`relation1.fit_threshold`).

    Returns:
      {'highest_train_accuracy': per replica (None where the run has none), 'threshold',
      'fits': per replica}.
    """
    noise = relation1.label_noise(setup.config)
    fits = [relation1.training_fit(curve, noise) for curve in curves]
    return {
        "highest_train_accuracy": [highest for highest, _, _ in fits],
        "threshold": relation1.fit_threshold(noise),
        "fits": [bool(fit) for _, _, fit in fits],
    }


def _decays(make, setup: Setup, curves: list[Curves], c, kappa: float, lr: float) -> dict | None:
    """An unfloored AutoL2 schedule's decays per replica: `made` by T_max, the most its
    cooldown allows (`earliest_decays`) and `late_evaluations`, how many evaluations show a decay
    later than the cooldown allows (`waited_for_plateaus`); None for other schedules."""
    made, bound, late = [], [], []
    for curve, c_r in zip(curves, c, strict=True):
        fields = make(setup, c_r, kappa, lr)
        settings = {**setup.base_config().autol2.to_dict(), **dict(fields.get("autol2", ()))}
        if fields["l2_mode"] != "autol2" or settings["min_l2"] > 0:
            return None
        earliest = earliest_decays(
            fields["l2"],
            lr,
            settings["cooldown"],
            setup.num_steps,
            factor=settings["decay_factor"],
            check_every=settings["check_every"],
            patience=settings["patience"],
        )
        made.append(decays_made(curve, fields["l2"], settings["decay_factor"]))
        bound.append(len(earliest))
        late.append(waited_for_plateaus(curve, fields["l2"], earliest, settings["decay_factor"]))
    return {"made": made, "cooldown_bound": bound, "late_evaluations": late}


def _steps_to(curve: Curves, target: float) -> float:
    """The first evaluated step at which the test accuracy reaches `target` (NaN: never)."""
    hits = np.nonzero(curve.test_accuracy >= target)[0]
    return float(curve.steps[hits[0]]) if hits.size else np.nan


SCHEDULE_STYLES = ("C0", "C3", "C4", "C2", "C5", "C6", "C8")


def _schedule_colors(count: int) -> list:
    """SCHEDULE_STYLES, then shades of one map for a cooldown sweep's further schedules."""
    extra = max(0, count - len(SCHEDULE_STYLES))
    return [*SCHEDULE_STYLES, *pyplot().cm.copper(np.linspace(0.1, 0.9, extra))][:count]


def plot(result: dict, curves: dict, path: str) -> None:
    """Four panels of one setup, every replica counted in each mean: test accuracy at each
    budget T of the envelope (with its 95% band), λ = 0, the predicted λ and every schedule;
    accuracy vs λ at each budget (validation chooses, test reported) with λ_pred marked; λ(t)
    of each schedule (every replica drawn); test accuracy over steps (time to accuracy)."""
    plt = pyplot()
    budgets = np.array(result["budgets"])
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    top_left, top_right, bottom_left, bottom_right = axes.flat
    n = len(result["replicas"])

    def band(axis, rows, label, **style):
        mean = np.array([_nan(r["mean"]) for r in rows])
        low = np.array([_nan(r["low"]) for r in rows])
        high = np.array([_nan(r["high"]) for r in rows])
        axis.plot(budgets, mean, label=label, **style)
        axis.fill_between(budgets, low, high, alpha=0.15, color=style.get("color"))

    band(
        top_left,
        [result["envelope"][str(b)] for b in budgets],
        "envelope (best grid λ on validation)",
        color="k",
        linewidth=2.5,
    )
    zero = [row["test_accuracy_by_l2"][0] for row in result["relation_3"]["budgets"]]
    band(top_left, zero, "λ = 0", color="grey", linestyle=":")
    for name, style in (("uncorrected", "--"), ("corrected", "-.")):
        rows = [row[name]["test_accuracy"] for row in result["prediction"]["budgets"]]
        band(top_left, rows, f"λ_pred(T) {name}", color="C1", linestyle=style, marker="x")
    for (name, schedule), color in zip(
        result["schedules"]["by_schedule"].items(),
        _schedule_colors(len(result["schedules"]["by_schedule"])),
        strict=True,
    ):
        band(
            top_left,
            [row["test_accuracy"] for row in schedule["budgets"]],
            name,
            color=color,
            marker="o",
            markersize=3,
        )
    top_left.set(xscale="log", xlabel="budget T (steps)", ylabel="test accuracy at T")
    top_left.set_xticks(budgets, [str(b) for b in budgets])
    top_left.minorticks_off()
    top_left.set_title(
        f"{result['setup']}: accuracy at each budget (means of {n} replicas, 95% bands)", fontsize=9
    )
    top_left.legend(fontsize=6.5)

    l2s = np.array(result["l2s"])
    shades = plt.cm.viridis(np.linspace(0, 0.85, len(budgets)))
    for row, prediction, color in zip(
        result["relation_3"]["budgets"], result["prediction"]["budgets"], shades, strict=True
    ):
        mean = np.array([_nan(a["mean"]) for a in row["test_accuracy_by_l2"]])
        top_right.plot(
            l2s[1:], mean[1:], marker="o", color=color, label=f"T = {row['budget_steps']}"
        )
        top_right.axhline(mean[0], color=color, linestyle=":", linewidth=0.8)
        for name, marker in (("uncorrected", "v"), ("corrected", "^")):
            top_right.plot(
                prediction[name]["l2"]["mean"],
                prediction[name]["test_accuracy"]["mean"],
                marker=marker,
                color=color,
                markersize=9,
                markeredgecolor="k",
                linestyle="none",
            )
    top_right.set(xscale="log", xlabel="λ", ylabel="test accuracy (mean)")
    top_right.set_title(
        "Accuracy vs λ per budget (dotted: λ = 0); ▼ λ_pred, ▲ κ·λ_pred", fontsize=9
    )
    top_right.legend(fontsize=7)

    for (name, runs), color in zip(
        curves["schedules"].items(), _schedule_colors(len(curves["schedules"])), strict=True
    ):
        for index, curve in enumerate(runs):
            bottom_left.plot(
                curve.steps,
                np.maximum(curve.l2, 1e-9),
                color=color,
                linewidth=0.8,
                alpha=0.7,
                label=name if index == 0 else None,
            )
            bottom_right.plot(
                curve.steps,
                curve.test_accuracy,
                color=color,
                linewidth=0.7,
                alpha=0.6,
                label=name if index == 0 else None,
            )
    for runs, color, label in (
        (curves["zero"], "grey", "λ = 0"),
        (curves["small"], "k", f"fixed λ = {curves['small'][0].l2[-1]:g}"),
    ):
        for index, curve in enumerate(runs):
            bottom_right.plot(
                curve.steps,
                curve.test_accuracy,
                color=color,
                linewidth=0.7,
                linestyle=":",
                label=label if index == 0 else None,
            )
    for row in result["relation_3"]["budgets"]:
        bottom_left.plot(
            [row["budget_steps"]] * len(row["chosen_l2"]),
            np.maximum(row["chosen_l2"], 1e-9),
            "k_",
            markersize=12,
        )
    bottom_left.set(xscale="log", yscale="log", xlabel="step", ylabel="λ (0 drawn at 1e-9)")
    bottom_left.set_title(
        f"λ(t) of each schedule, all {n} replicas; — the λ chosen on validation at each T",
        fontsize=9,
    )
    bottom_left.legend(fontsize=6.5)
    target = result["schedules"]["time_to_accuracy_target"]
    bottom_right.axhline(target, color="grey", linewidth=0.8)
    finals = [
        row["test_accuracy"]["mean"]
        for s in result["schedules"]["by_schedule"].values()
        for row in s["budgets"]
    ]
    low = min([target - 0.1, *(f - 0.05 for f in finals if f is not None)])
    bottom_right.set(xscale="log", xlabel="step", ylabel="test accuracy", ylim=(max(0, low), None))
    bottom_right.set_title(
        f"Time to accuracy, all {n} replicas; grey line: λ = 0's final mean", fontsize=9
    )
    bottom_right.legend(fontsize=6.5)
    save_figure(figure, path)


def _nan(value):
    return np.nan if value is None else value


def _at_least(value: float | None, goal: float) -> bool:
    """Whether a mean meets a goal; an undefined mean (None) never does."""
    return value is not None and value >= goal


def _negated(value: float | None) -> float | None:
    return None if value is None else -value


def _points(summary: dict | None) -> str:
    """An interval of accuracy (or of a difference) in points."""
    return stats.text(summary, scale=100)


def _met(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


def section(result: dict) -> str:
    """The setup's part of report.md: relations 2 and 3, the predicted λ and the schedules
    against the envelope, each goal marked met or missed."""
    name, n = result["setup"], len(result["replicas"])
    correction_ = result["correction"]
    lines = [
        f"### {name} ({result['role']})",
        "",
        f"η = {result['lr']:g} (effective {result['effective_lr']:g}), {n} replicas, budgets "
        f"{', '.join(str(b) for b in result['budgets'])} steps "
        f"({result['relation_3']['budget_decades']:.2f} decades); choices on "
        f"{result['selection_split']} accuracy, figures on test accuracy (points, mean "
        "[95% interval]).",
        "",
        f"**Probe** (λ = {result['probe']['l2']:g}, {result['probe']['steps']} steps, "
        f"{result['prediction']['probe_compute_fraction']:.1%} of the grid's steps): c = "
        f"{stats.text(result['probe']['c'], digits=3)}; clear peak in "
        f"{sum(result['probe']['clear_peak'])} of {n} replicas{_falls(result['probe'])}.",
        "",
        _zero_l2_line(result["zero_l2_fit"]),
        "",
        "**Relation 3** (λ_opt = k/(ηT)): k(T) = λ_opt(T)·η·T, λ_opt refined on the "
        "validation grid:",
        "",
        "| T | λ_opt | k | k / probe c | best λ at the grid's edge |",
        "|---|---|---|---|---|",
    ]
    c_mean = result["probe"]["c"]["mean"]
    for row in result["relation_3"]["budgets"]:
        k = row["k"]
        ratio = f"{k['mean'] / c_mean:.2f}" if k["mean"] is not None and c_mean else "—"
        lines.append(
            f"| {row['budget_steps']} | {stats.text(row['l2_opt'], digits=6)} | "
            f"{stats.text(k, digits=3)} | {ratio} | {row['at_grid_edge']} of {n} |"
        )
    relation_3 = result["relation_3"]
    slope = relation_3["l2_opt_vs_budget_slope"]
    lines += [
        "",
        f"Slope of log λ_opt against log T: {slope:.2f} on the means, "
        f"{stats.text(relation_3['per_replica_slope'], digits=2)} per replica (relation 3: −1)."
        if slope is not None
        else "Slope of log λ_opt against log T: undefined.",
    ]
    if result["relation_1_c"] and result["relation_1_c"].get("mean") is not None:
        lines.append(
            f"Relation 1's c on this setup: {result['relation_1_c']['mean']:.3g} "
            f"(k/relation-1 c at T_max: "
            f"{_ratio(relation_3['budgets'][-1]['k']['mean'], result['relation_1_c']['mean'])})."
        )
    where = (
        "fitted here (in sample)"
        if correction_["fitted_here"]
        else f"from the calibration setup, not refitted (on this setup it would be "
        f"{correction_['kappa_on_this_setup']:.2f})"
    )
    lines += [
        "",
        f"**Predicted λ.** λ_pred(T) = c/(ηT) from the probe, and κ·λ_pred with κ = "
        f"{correction_['kappa']:.3f} {where}. Test accuracy lost against the envelope "
        f"(goal ≤ {PREDICTION_LOSS_GOAL * 100:.1f} points at every T with κ):",
        "",
        "| T | envelope | λ_pred: loss | κ·λ_pred: loss |",
        "|---|---|---|---|",
    ]
    for row in result["prediction"]["budgets"]:
        lines.append(
            f"| {row['budget_steps']} | {_points(result['envelope'][str(row['budget_steps'])])}"
            f" | {_points(row['uncorrected']['loss_vs_envelope'])} | "
            f"{_points(row['corrected']['loss_vs_envelope'])} |"
        )
    lines += [
        "",
        f"Predicted λ {_met(result['prediction']['met'])}"
        + (
            " (in sample: κ was fitted on this setup)."
            if result["prediction"]["in_sample"]
            else "."
        ),
        "",
        f"**Relation 2** (the best λ > 0 on validation against λ = 0, goal ≥ "
        f"{GAIN_GOAL * 100:.1f} points at T_max): "
        + "; ".join(
            f"T = {row['budget_steps']}: {_points(row['gain_over_zero_l2'])}"
            + _p(row["gain_over_zero_l2"])
            for row in result["relation_2"]["budgets"]
        )
        + f". {_met(result['relation_2']['met'])}.",
        "",
        f"**Schedules against the envelope** (test accuracy at T minus the envelope's, paired; "
        f"goal ≥ −{SCHEDULE_GOAL * 100:.1f} points at every T):",
        "",
        "| schedule | " + " | ".join(f"T = {b}" for b in result["budgets"]) + " | goal |",
        "|---|" + "---|" * (len(result["budgets"]) + 1),
    ]
    for schedule_name, schedule in result["schedules"]["by_schedule"].items():
        lines.append(
            f"| {schedule_name} | "
            + " | ".join(_points(row["vs_envelope"]) for row in schedule["budgets"])
            + f" | {_met(schedule['met'])} |"
        )
    decaying = {
        name: schedule["decays"]
        for name, schedule in result["schedules"]["by_schedule"].items()
        if "decays" in schedule
    }
    if decaying:
        lines += [
            "",
            f"**AutoL2's decays by T_max = {result['budgets'][-1]}** (per replica), against "
            "the most its cooldown allows (each decay as soon as its cooldown is over, as if "
            "training always stalled), and the evaluations at which λ was above that earliest "
            "schedule's: a decay that waited for a plateau (seen to the evaluations' "
            "resolution):",
            "",
            "| schedule | decays | cooldown allows | evaluations with a later decay | "
            "waited for a plateau |",
            "|---|---|---|---|---|",
            *(
                f"| {name} | {', '.join(map(str, d['made']))} | "
                f"{', '.join(map(str, d['cooldown_bound']))} | "
                f"{', '.join(map(str, d['late_evaluations']))} | "
                f"{sum(late > 0 for late in d['late_evaluations'])} of "
                f"{len(d['made'])} replicas |"
                for name, d in decaying.items()
            ),
        ]
    target = result["schedules"]["time_to_accuracy_target"]
    reached = {
        **result["schedules"]["steps_to_target"],
        **{
            name: schedule["steps_to_zero_l2_final_accuracy"]
            for name, schedule in result["schedules"]["by_schedule"].items()
        },
    }
    lines += [
        "",
        f"**Time to accuracy** (steps to λ = 0's final mean test accuracy, {target:.1%}; "
        "replicas that never reach it are counted as missing):",
        "",
        "| run | steps | missing |",
        "|---|---|---|",
        *(
            f"| {label} | {stats.text(value, digits=0)} | {value['missing']} |"
            for label, value in reached.items()
        ),
        "",
    ]
    return "\n".join(lines)


def fall_prediction(result: dict) -> dict:
    """What the probes' falls (`relations.fall_cause`) predict of relation 3 on a setup, and
    whether it held: most probes (over half) falling by L2 predict a slope of log λ_opt against
    log T of at most FALL_SLOPE_BOUND, most falling by overfitting one above it; otherwise
    (most without a clear peak, or a tie) nothing is predicted ('held' None), as it is when the
    slope is undefined."""
    falls = result["probe"].get("fall") or []
    slope = result["relation_3"]["l2_opt_vs_budget_slope"]
    majority = next((f for f in ("l2", "overfitting") if 2 * falls.count(f) > len(falls)), None)
    held = None
    if majority is not None and slope is not None:
        held = slope <= FALL_SLOPE_BOUND if majority == "l2" else slope > FALL_SLOPE_BOUND
    return {"fall": majority, "slope": slope, "held": held}


def _falls(probe_result: dict) -> str:
    """The probes' falls (`relations.fall_cause`) as a clause of the probe's line: how many are
    L2's and how many overfitting, with the training accuracy's change after t* per replica."""
    falls = probe_result.get("fall")
    if not falls or all(f is None for f in falls):
        return ""
    rises = ", ".join(
        "—" if r is None else f"{100 * r:+.1f}" for r in probe_result["train_accuracy_rise"]
    )
    return (
        f"; its fall is L2's in {falls.count('l2')} and overfitting in "
        f"{falls.count('overfitting')} (training accuracy from t* to the end, points: {rises}; "
        "`suggest_l2` predicts λ only from an L2 fall)"
    )


def _zero_l2_line(fit: dict) -> str:
    """The section's line on whether λ = 0 fits its training labels (`zero_l2_fit`)."""
    highest = ", ".join(
        "—" if h is None else f"{100 * h:.1f}" for h in fit["highest_train_accuracy"]
    )
    measured = (
        f"highest training accuracy {highest} points, against relation 1's rule (a) bound "
        f"{100 * fit['threshold']:.1f}"
    )
    unfit = fit["fits"].count(False)
    if not unfit:
        return f"**λ = 0** fits its training labels in every replica ({measured})."
    return (
        f"**λ = 0 does not fit its training labels** in {unfit} of {len(fit['fits'])} replicas "
        f"({measured}): without L2 the network underfits or diverges, so this setup does not "
        "test λ selection in the regime the relations describe."
    )


def unfit_note(result: dict) -> str:
    """A clause for the summary's rows of a setup whose λ = 0 runs do not all fit their
    training labels (`zero_l2_fit`); '' where they do."""
    fits = result.get("zero_l2_fit", {}).get("fits", [])
    unfit = fits.count(False)
    return f" (λ = 0 does not fit its training labels in {unfit} of {len(fits)})" if unfit else ""


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "—"


def _p(summary: dict) -> str:
    return "" if summary.get("p_value") is None else f" (p = {summary['p_value']:.2g})"


# The schedules `suggest_l2 --schedule` prints, by its name: the schedule of SCHEDULES.
SUGGESTED_SCHEDULES = {
    "anytime": "anytime, κ·c",
    "autol2": "AutoL2, min_l2 = κ·λ_pred(T_max)",
}


def calibration_record(results: dict) -> dict:
    """What `suggest_l2` tells a user, from a reproduction's results: κ and the spread of
    k(T)/c over the calibration setup's replicas and budgets, and for every setup the test
    accuracy the corrected prediction and each suggested schedule lost against the envelope.

    Returns:
      {'preset', 'kappa', 'kappa_range' [min, max], 'setups': [{'setup', 'role', 'budgets',
      'replicas', 'prediction_loss' (mean per budget), 'schedules' {suggest name: mean
      difference per budget}, 'relation_3_slope'}]}: accuracies as fractions, None where
      undefined.
    """
    calibration = next(s for s in results["setups"] if s["role"] == "calibration")
    c = calibration["probe"]["c"]["values"]
    ratios = [
        k / c_r
        for row in calibration["relation_3"]["budgets"]
        for k, c_r in zip(row["k"]["values"], c, strict=True)
        if k is not None and c_r
    ]
    setups = []
    for result in results["setups"]:
        by_schedule = result["schedules"]["by_schedule"]
        setups.append(
            {
                "setup": result["setup"],
                "role": result["role"],
                "budgets": result["budgets"],
                "replicas": len(result["replicas"]),
                "prediction_loss": [
                    row["corrected"]["loss_vs_envelope"]["mean"]
                    for row in result["prediction"]["budgets"]
                ],
                "schedules": {
                    name: [row["vs_envelope"]["mean"] for row in by_schedule[schedule]["budgets"]]
                    for name, schedule in SUGGESTED_SCHEDULES.items()
                },
                "relation_3_slope": result["relation_3"]["l2_opt_vs_budget_slope"],
            }
        )
    return {
        "preset": results["preset"],
        "kappa": calibration["correction"]["kappa"],
        "kappa_range": [min(ratios), max(ratios)] if ratios else None,
        "setups": setups,
    }
