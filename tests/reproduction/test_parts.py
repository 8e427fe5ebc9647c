"""Relation 1's grid (`parts`), the budgets read after exactly T steps, and a `Preset` checked
before any training: nothing here trains (`sweep.run` is replaced or refused)."""

import dataclasses
import re

import numpy as np
import pytest

from l2reg import relations, reproduction, training
from l2reg.reproduction import Preset, Setup, TStarGrid, parts, relation1, selection, stats
from l2reg.training import Curves, sweep

LR = 0.5


def run_config(momentum: float | None = None):
    """The runs' trainer config: plain SGD, or momentum SGD with `momentum` (coupled L2)."""
    config = training.default_config()
    config.optimizer = "sgd" if momentum is None else "momentum"
    if momentum is not None:
        config.momentum = momentum
    return config


def make_setup(name: str, role: str, **changes) -> Setup:
    fields = dict(
        config=run_config(),
        lr=LR,
        l2s=(0.0, 1e-3, 1e-2, 1e-1),
        budgets=(150, 500, 1_700, 6_000),
        probe_l2=0.2,  # a probe of 30/(0.2 · 0.5) = 300 steps
        probe_length=30.0,
        autol2_l2=0.1,
        small_l2=1e-3,
    )
    return Setup(name=name, role=role, **{**fields, **changes})


PRESET = Preset(
    t_star=TStarGrid(config=run_config(), lrs=(0.5, 1.0), l2_lrs=(1e-2, 3e-2, 1e-1), run_length=30),
    setups=(make_setup("calib", "calibration"), make_setup("held", "held-out")),
    draws=2,
    seeds=2,
)


def raises_exactly(message: str, error=ValueError):
    """`pytest.raises(error)` matching the whole message, which must thus be one line."""
    return pytest.raises(error, match=rf"^{re.escape(message)}\Z")


def curves(steps, accuracy) -> Curves:
    """Curves with test accuracy `accuracy` at `steps`, every training label fitted, no
    validation split."""
    steps = np.asarray(steps, dtype=float)
    accuracy = np.broadcast_to(np.asarray(accuracy, dtype=float), steps.shape)
    ones = np.ones_like(steps)
    return Curves(steps, 1 - accuracy, ones, 1 - accuracy, accuracy, 0 * ones, LR * ones, ones)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"l2_lrs": (1e-2,)}, "l2_lrs must hold 2 or more distinct values, got (0.01,)"),
        ({"l2_lrs": (1e-2, 1e-2)}, "l2_lrs must hold 2 or more distinct values, got (0.01, 0.01)"),
        ({"l2_lrs": (1e-2, 0.0)}, "each of l2_lrs must be finite and > 0, got 0.0"),
        ({"lrs": ()}, "lrs must hold distinct values (at least one), got ()"),
        ({"lrs": (0.5, 0.5)}, "lrs must hold distinct values (at least one), got (0.5, 0.5)"),
        ({"lrs": (-0.5,)}, "each of lrs must be finite and > 0, got -0.5"),
        ({"run_length": float("nan")}, "run_length must be finite and > 0, got nan"),
        ({"run_length": True}, "run_length must be finite and > 0, got True"),
        ({"config": {"lr": 0.5}}, "t_star's config must be a trainer ConfigDict, got {'lr': 0.5}"),
    ],
    ids=[
        "one l2_lr",
        "l2_lrs repeated",
        "l2_lr 0",
        "no lrs",
        "lrs repeated",
        "lr negative",
        "run_length nan",
        "run_length a bool",
        "config a dict",
    ],
)
def test_t_star_grid_refuses_bad_fields_in_one_line(changes, message):
    with raises_exactly(message):
        dataclasses.replace(PRESET.t_star, **changes)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_t_star_runs_set_lambda_from_the_effective_learning_rate(momentum):
    # λη is the product with the effective η/(1−μ): λ = λη·(1−μ)/η, run_length/(λη) steps.
    grid = dataclasses.replace(PRESET.t_star, l2_lrs=(1e-2, 3e-2, 50.0))
    runs = parts.t_star_runs(grid, [3, 5], momentum)
    expected = [(seed, lr, l2_lr) for seed in (3, 5) for lr in grid.lrs for l2_lr in grid.l2_lrs]
    assert [(run.seed, run.lr, l2_lr) for l2_lr, run in runs] == expected
    for l2_lr, run in runs:
        effective = run.lr / (1 - momentum)
        assert run.l2 * effective == pytest.approx(l2_lr, rel=1e-12)
        assert run.l2_mode == "fixed"
        # 30/(λη) steps, at least one (λη = 50 would round to none).
        assert run.steps == max(1, round(30 / l2_lr))


class Captured(Exception):
    """Raised by a stand-in for `relation1.analyse` once it has the points."""


def test_relation_1_reads_each_run_with_the_effective_learning_rate(monkeypatch, tmp_path):
    # Under momentum μ = 0.9, every point reaching relation 1 has effective_lr = η/(1−μ) and
    # λ·η/(1−μ) = its grid λη: c = t*·λη is then relations.py's c.
    preset = dataclasses.replace(
        PRESET, t_star=dataclasses.replace(PRESET.t_star, config=run_config(momentum=0.9))
    )
    calls = []

    def flat_sweep(config, runs, *, evals_per_decade, eval_at, progress):
        calls.append((progress, [run.steps for run in runs]))
        return [curves(sweep.eval_steps(run.steps, evals_per_decade, eval_at), 0.5) for run in runs]

    points = []

    def analyse(given, **kwargs):
        points.extend(given)
        raise Captured

    monkeypatch.setattr(sweep, "run", flat_sweep)
    monkeypatch.setattr(relation1, "analyse", analyse)
    with pytest.raises(Captured):
        reproduction.reproduce(str(tmp_path), preset, name="momentum")
    replicas = preset.replicas()
    assert len(points) == len(replicas) * 2 * 3
    assert [tuple(p.replica) for p in points] == [tuple(r) for r in replicas for _ in range(6)]
    # One runner call per data draw, each with that draw's replicas.
    assert [name for name, _ in calls] == [
        "relation 1: t* grid (draw 0)",
        "relation 1: t* grid (draw 1)",
    ]
    for point in points:
        assert point.effective_lr == pytest.approx(relations.effective_lr(point.lr, 0.9))
        assert point.effective_lr == pytest.approx(point.lr / 0.1)
        assert point.l2 * point.effective_lr == pytest.approx(point.l2_lr, rel=1e-12)
        assert point.l2_lr in preset.t_star.l2_lrs  # the grid's value, never recomputed
        assert point.curve.steps[-1] == round(30 / point.l2_lr)


def test_a_setups_probe_lasts_probe_length_over_the_effective_lambda_eta():
    setup = make_setup("calib", "calibration", config=run_config(momentum=0.9))
    assert selection.effective_lr(setup) == pytest.approx(LR / 0.1)
    (_, probe), *_ = selection.probe_runs(setup, stats.replicas(1, 1))
    assert probe.steps == round(30 / (0.2 * LR / 0.1))


def step_marked(call, runs, eval_at):
    """A trainer of curves whose accuracy is 0.5 + step/10⁵ (any λ, any schedule), evaluated
    like a sweep: 12 a decade and after every step of `eval_at` a run reaches."""
    out = []
    for _, run in runs:
        steps = sweep.eval_steps(run.steps, 12, eval_at).astype(float)
        out.append(curves(steps, 0.5 + steps / 1e5))
    return out


def test_accuracy_at_a_budget_is_read_after_exactly_that_many_steps():
    # The sweep's own evaluations nearest below 150, 500 and 1700 are 147, 464 and 1468 steps:
    # read there, every figure at those budgets would come out lower.
    setup = make_setup("calib", "calibration")
    result, _ = selection.study(setup, stats.replicas(1, 2), step_marked)
    for budget in setup.budgets:
        marked = 0.5 + budget / 1e5
        assert result["envelope"][str(budget)]["mean"] == pytest.approx(marked, rel=1e-12)
        row = next(r for r in result["relation_3"]["budgets"] if r["budget_steps"] == budget)
        for column in row["test_accuracy_by_l2"]:
            assert column["mean"] == pytest.approx(marked, rel=1e-12)
    for schedule in result["schedules"]["by_schedule"].values():
        for row in schedule["budgets"]:
            assert row["test_accuracy"]["mean"] == pytest.approx(0.5 + row["budget_steps"] / 1e5)
            assert row["vs_envelope"]["mean"] == pytest.approx(0.0, abs=1e-12)
    # A predicted-λ run lasts its budget: its accuracy is read at its end, step T.
    for row in result["prediction"]["budgets"]:
        marked = 0.5 + row["budget_steps"] / 1e5
        assert row["corrected"]["test_accuracy"]["mean"] == pytest.approx(marked, rel=1e-12)


def test_a_budget_that_was_not_evaluated_is_an_error_not_an_earlier_reading():
    def ignores_eval_at(call, runs, eval_at):
        return step_marked(call, runs, ())

    with raises_exactly(
        "step 150 was not evaluated (the nearest evaluations are at steps 147.0 and 178.0); "
        "add it to the evaluations (sweep.run's eval_at)"
    ):
        selection.study(make_setup("calib", "calibration"), stats.replicas(1, 1), ignores_eval_at)


def setups(**changes):
    """PRESET with its calibration setup changed."""
    calibration, held_out = PRESET.setups
    return lambda: dataclasses.replace(
        PRESET, setups=(dataclasses.replace(calibration, **changes), held_out)
    )


def held_out_config(**changes):
    """PRESET with fields of its held-out setup's trainer config changed."""

    def make():
        calibration, held_out = PRESET.setups
        config = held_out.config.copy_and_resolve_references()
        for name, value in changes.items():
            target = config
            *path, last = name.split(".")
            for part in path:
                target = target[part]
            target[last] = value
        held_out = dataclasses.replace(held_out, config=config)
        return dataclasses.replace(PRESET, setups=(calibration, held_out))

    return make


def t_star(**changes):
    return lambda: dataclasses.replace(PRESET, t_star=dataclasses.replace(PRESET.t_star, **changes))


def preset(**changes):
    return lambda: dataclasses.replace(PRESET, **changes)


CALIBRATION, HELD_OUT = PRESET.setups
TOO_LONG = sweep.Run(1e-2 / 0.5, 0.5, 0, 3 * 10**12, l2_mode="fixed")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (preset(draws=0), "draws must be an integer in [1, 100], got 0"),
        # Refused, not expanded into a list of 10¹¹ replicas.
        (preset(seeds=100_000_000_000), "seeds must be an integer in [1, 100], got 100000000000"),
        (preset(seeds=True), "seeds must be an integer in [1, 100], got True"),
        (preset(evals_per_decade=0), "evals_per_decade must be an integer ≥ 1, got 0"),
        (preset(driver="gpu"), "driver must be one of ('sweep', 'trainer'), got 'gpu'"),
        (
            preset(driver="trainer", trainer_evals=7),
            "setup 'calib': budgets [150, 500, 1700] are not trainer evaluations: with 6000 "
            "steps and trainer_evals=7 the trainer evaluates every 857 steps, so each budget "
            "must be a multiple of 857",
        ),
        (preset(t_star=None), "t_star must be a TStarGrid, got None"),
        (preset(setups=()), "setups must hold at least one Setup, got ()"),
        (
            preset(setups=(HELD_OUT,)),
            "setups must hold exactly one 'calibration' setup, got roles ['held-out']",
        ),
        (
            preset(setups=(CALIBRATION, dataclasses.replace(HELD_OUT, role="calibration"))),
            "setups must hold exactly one 'calibration' setup, got roles "
            "['calibration', 'calibration']",
        ),
        (
            preset(setups=(CALIBRATION, dataclasses.replace(HELD_OUT, name="calib"))),
            "setups must have distinct names, got ['calib', 'calib']",
        ),
        (
            setups(budgets=(150.0, 6_000)),
            "setup 'calib': budgets must be strictly increasing integers in [1, 2147483647], got "
            "(150.0, 6000)",
        ),
        (
            t_star(run_length=3e10),
            "config.steps must be an integer in [1, 2147483647], got 3000000000000 "
            f"(in {TOO_LONG})",
        ),
        (
            setups(probe_l2=1e-12),
            "config.steps must be an integer in [1, 2147483647], got 60000000000000 (in "
            f"{sweep.Run(1e-12, 0.5, 0, 60_000_000_000_000, 'fixed', 'constant')})",
        ),
        (
            held_out_config(**{"data_options.label_noise": 1.5}),
            "label_noise must be in [0, 1), got 1.5",
        ),
        (
            held_out_config(batch_size=0),
            "config.batch_size must be an integer in [1, 2147483647], got 0",
        ),
        pytest.param(
            setups(probe_l2=5.0),
            "probe_l2=5 times the effective learning rate η/(1−μ)=0.5 is 2.5 ≥ 1: each step's "
            "L2 term alone would zero or flip the weights; use probe_l2 < 2",
        ),
        pytest.param(
            t_star(config=None),
            "t_star's config must be a trainer ConfigDict, got None",
        ),
    ],
    ids=[
        "no draws",
        "1e11 seeds",
        "seeds a bool",
        "no evaluations",
        "unknown driver",
        "budget off the trainer's evaluations",
        "no t* grid",
        "no setups",
        "no calibration setup",
        "two calibration setups",
        "names repeated",
        "budget not an integer",
        "t* run beyond int32 steps",
        "probe beyond int32 steps",
        "label noise of a held-out setup",
        "batch size of a held-out setup",
        "probe λη ≥ 1",
        "t* grid without a config",
    ],
)
def test_bad_settings_are_one_line_errors_before_any_training(
    settings, message, tmp_path, monkeypatch
):
    def must_not_train(*args, **kwargs):
        raise AssertionError("the reproduction trained before rejecting its settings")

    monkeypatch.setattr(sweep, "run", must_not_train)
    workdir = tmp_path / "new"
    with raises_exactly(message):
        reproduction.reproduce(str(workdir), settings(), name="bad")
    assert not workdir.exists()


def test_reproduce_refuses_settings_that_are_not_a_preset(tmp_path):
    with raises_exactly("settings must be a Preset, got {'draws': 1}"):
        reproduction.reproduce(str(tmp_path / "new"), {"draws": 1}, name="bad")
    assert not (tmp_path / "new").exists()


def test_setups_whose_plots_would_share_a_file_are_refused():
    assert reproduction.plot_name("calib_a") == reproduction.plot_name("Calib_A")
    with pytest.raises(ValueError, match=re.escape("selection-calib-a.png")):
        dataclasses.replace(
            PRESET,
            setups=(
                dataclasses.replace(CALIBRATION, name="calib_a"),
                dataclasses.replace(HELD_OUT, name="Calib_A"),
            ),
        )
