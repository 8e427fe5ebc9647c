"""Sweeps: a member trains the run its config defines, as the trainer trains it; a vmapped member
trains exactly as it does alone; inputs are validated before any work."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import config_dict

import l2reg
from l2reg import training
from l2reg.training import recipe, sweep
from l2reg.training import steps as steps_lib
from l2reg.training.rundir import VALIDATION_FIELDS, Curves


def base_config():
    """The old sweep's digits setup: a bias-free NTK MLP with MSE on centred targets, SGD."""
    config = training.default_config()
    config.model_options = config_dict.ConfigDict(
        {"widths": (16, 16), "parameterization": "ntk", "use_bias": False, "normalization": "none"}
    )
    config.loss = "mse"
    config.mse_targets = "centered"
    config.optimizer = "sgd"
    return config


SETUP = base_config()


# ------------------------------------------------------------------------------------------
# The sweep's curve is the trainer's (issue 19).
# ------------------------------------------------------------------------------------------


def trainer_config(**fields):
    """A few hundred steps of a small MLP on digits, evaluated every 50 steps."""
    config = training.default_config()
    config.model_options.widths = (32, 32)
    config.optimizer = "sgd"
    config.lr = 0.5
    config.l2 = 1e-3
    config.steps = 300
    config.eval_every = 50
    config.checkpoint_every = 300
    for name, value in fields.items():
        target = config
        *path, last = name.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    return config


def trainer_and_sweep(config, workdir) -> tuple[Curves, Curves]:
    """The run of `config` through the trainer (one device) and as a sweep member (sharing its
    bucket with another run), the sweep evaluated at the trainer's steps."""
    training.train_and_evaluate(config, str(workdir), devices=jax.devices()[:1])
    alone = training.read_curves(str(workdir))
    np.testing.assert_array_equal(alone.steps, np.arange(50, config.steps + 1, 50))
    member = sweep.Run(config.l2, config.lr, config.seed, config.steps)
    neighbour = sweep.Run(3 * config.l2, config.lr, config.seed + 1, config.steps)
    # One log-spaced evaluation per decade (steps 1, 10, 100) besides the trainer's: the
    # training means of the evaluations from step 100 on cover the trainer's windows.
    swept, other = sweep.run(
        config,
        [member, neighbour],
        evals_per_decade=1,
        eval_at=alone.steps,
        chunk_steps=100,
        progress=False,
    )
    at = np.searchsorted(swept.steps, alone.steps)
    np.testing.assert_array_equal(swept.steps[at], alone.steps)
    # The neighbour is another run: a comparison that could not tell runs apart is no test.
    assert not np.array_equal(other.weight_norm[at], swept.weight_norm[at])
    return alone, Curves(*(np.asarray(column)[at] for column in swept))


def assert_same_run(alone: Curves, swept: Curves):
    np.testing.assert_allclose(swept.test_accuracy, alone.test_accuracy, rtol=0, atol=1e-5)
    np.testing.assert_allclose(swept.test_loss, alone.test_loss, rtol=1e-4)
    # Training means over the same windows (the first one starts at step 11 in the sweep). The
    # drivers agree to float rounding, not bit for bit, so of the window's 5000 training
    # predictions one near a tie may differ.
    np.testing.assert_allclose(swept.train_loss[1:], alone.train_loss[1:], rtol=1e-4)
    np.testing.assert_allclose(swept.train_accuracy[1:], alone.train_accuracy[1:], atol=2.5e-4)
    np.testing.assert_allclose(swept.weight_norm, alone.weight_norm, rtol=1e-5)
    np.testing.assert_array_equal(swept.lr.astype(np.float32), alone.lr.astype(np.float32))
    # Both NaN without a validation split (assert_allclose takes NaN as equal to NaN).
    np.testing.assert_allclose(
        swept.validation_accuracy, alone.validation_accuracy, rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(swept.validation_loss, alone.validation_loss, rtol=1e-4)
    # It learned: an untrained model is near chance.
    assert alone.test_accuracy[-1] > 0.3


def test_sweep_curve_equals_the_trainers_with_fixed_l2(tmp_path):
    alone, swept = trainer_and_sweep(trainer_config(), tmp_path)
    assert_same_run(alone, swept)
    np.testing.assert_array_equal(swept.l2.astype(np.float32), alone.l2.astype(np.float32))
    assert np.all(alone.l2 == np.float32(1e-3))
    assert np.all(np.isnan(alone.validation_accuracy) & np.isnan(swept.validation_accuracy))


def test_sweep_and_trainer_evaluate_the_same_validation_split(tmp_path):
    # 300 of digits' 1,500 training examples, with noisy labels, held out for validation. At
    # η = 0.2: measured at η = 0.5, fitting the noisy labels amplified the drivers' float
    # rounding (1e-7) to 2e-5 in ‖θ‖ between steps 100 and 150, and to 2 test examples by 300;
    # at η = 0.2 they agree to 1e-7 over the 300 steps.
    config = trainer_config(
        lr=0.2,
        data_options__label_noise=0.2,
        data_options__validation_size=300,
        data_options__validation_seed=4,
    )
    alone, swept = trainer_and_sweep(config, tmp_path)
    assert np.all(np.isfinite(alone.validation_accuracy)), alone.validation_accuracy
    assert np.all(np.isfinite(swept.validation_loss)), swept.validation_loss
    assert_same_run(alone, swept)
    # Noisy validation labels: about 20% of them cannot be predicted from the images.
    assert 0.3 < alone.validation_accuracy[-1] < 0.9
    at = len(alone.steps) - 1
    assert alone.accuracy_at(300, split="validation") == alone.validation_accuracy[at]
    assert alone.accuracy_at(300, split="test") == alone.test_accuracy[at]


def test_sweep_curve_equals_the_trainers_with_the_anytime_schedule(tmp_path):
    # Under momentum, so that the schedule runs on the effective η/(1 − μ) = 0.25/0.5 = 0.5:
    # t0 = c/(η_eff·λ(0)) = 20 steps, so λ falls by a factor 16 over the 300 steps.
    config = trainer_config(
        l2_mode="anytime", l2=0.1, anytime_c=1.0, optimizer="momentum", momentum=0.5, lr=0.25
    )
    alone, swept = trainer_and_sweep(config, tmp_path)
    expected = np.array([l2reg.anytime_l2(0.1, 0.5, 1.0)(step) for step in alone.steps])
    np.testing.assert_allclose(swept.l2, expected, rtol=1e-6)
    np.testing.assert_allclose(swept.l2, alone.l2, rtol=1e-7)
    # λ(300) = λ(0)/(1 + λ(0)·η_eff·300/c) = 0.1/16, falling at every evaluation.
    np.testing.assert_allclose(alone.l2[-1], 0.1 / 16, rtol=1e-6)
    assert np.all(np.diff(alone.l2) < 0)
    assert_same_run(alone, swept)


def test_anytime_members_with_their_own_c_record_their_own_schedule():
    # One bucket, c traced per member: each records λ of its own schedule at every evaluation.
    setup = SETUP.copy_and_resolve_references()
    setup.optimizer, setup.momentum = "momentum", 0.9
    runs = [sweep.Run(0.05, 0.1, 0, 60, l2_mode="anytime", anytime_c=c) for c in (0.5, 2.0, 8.0)]
    curves = sweep.run(setup, runs, bucket_size=3, chunk_steps=30, progress=False)
    for run, curve in zip(runs, curves, strict=True):
        # Coupled L2 under momentum 0.9: η_eff = 0.1/(1 − 0.9) = 1.
        schedule = l2reg.anytime_l2(0.05, 0.1 / (1 - 0.9), run.anytime_c)
        np.testing.assert_allclose(curve.l2, [schedule(step) for step in curve.steps], rtol=1e-6)
        assert np.all(np.isfinite(curve.test_accuracy))


def test_sweep_curve_equals_the_trainers_with_autol2(tmp_path):
    # λ = 0.1 at η = 0.5: a cooldown of 0.02/(λη) = 0.4 steps at first, so λ may halve at
    # every check (check_every = 10 steps) after two without a new loss record (patience 2).
    # The two drivers agree to float rounding (~1e-7), not bit for bit (a vmapped product is
    # blocked differently): over 200 steps the curves agree to 1e-7, but measured over 300
    # steps with decay_factor 10, λ still equal, one test example of 297 came out differently.
    config = trainer_config(
        l2_mode="autol2", l2=0.1, steps=200, autol2__cooldown=0.02, autol2__decay_factor=2.0
    )
    alone, swept = trainer_and_sweep(config, tmp_path)
    assert len(np.unique(alone.l2)) >= 3, alone.l2  # λ decayed at least twice
    np.testing.assert_array_equal(swept.l2.astype(np.float32), alone.l2.astype(np.float32))
    assert_same_run(alone, swept)


def test_sweep_lambda_equals_the_trainers_with_an_inexact_decay_factor(tmp_path):
    config = trainer_config(
        l2_mode="autol2", l2=0.1, steps=200, autol2__cooldown=0.02, autol2__decay_factor=3.0
    )
    alone, swept = trainer_and_sweep(config, tmp_path)
    assert len(np.unique(alone.l2)) >= 3, alone.l2  # λ decayed at least twice
    np.testing.assert_array_equal(swept.l2.astype(np.float32), alone.l2.astype(np.float32))


@pytest.mark.slow
@pytest.mark.slow
def test_sweep_curve_equals_the_trainers_with_momentum_and_a_step_schedule(tmp_path):
    config = trainer_config(optimizer="momentum", momentum=0.9, lr=0.05, lr_schedule="step")
    alone, swept = trainer_and_sweep(config, tmp_path)
    # η × 0.2 from steps 90, 180 and 270 on (a line's lr is η of its step).
    np.testing.assert_allclose(alone.lr, [0.05, 0.01, 0.01, 0.002, 0.002, 0.0004], rtol=1e-6)
    assert_same_run(alone, swept)


@pytest.mark.slow
def test_sweep_curve_equals_the_trainers_with_batch_norm(tmp_path):
    config = trainer_config(
        dataset="mnist1d", model_options__normalization="batch", model_options__use_bias=False
    )
    alone, swept = trainer_and_sweep(config, tmp_path)
    assert_same_run(alone, swept)


# ------------------------------------------------------------------------------------------
# A member is its config.
# ------------------------------------------------------------------------------------------


def test_a_member_trains_the_config_that_run_config_gives(monkeypatch):
    base = SETUP.copy_and_resolve_references()
    member = sweep.Run(
        2e-2, 0.7, 5, 33, l2_mode="autol2", lr_schedule="cosine", autol2=(("min_l2", 1e-3),)
    )
    config = member.config(base)
    assert (config.l2, config.lr, config.seed, config.steps) == (2e-2, 0.7, 5, 33)
    assert (config.l2_mode, config.lr_schedule, config.autol2.min_l2) == ("autol2", "cosine", 1e-3)
    # Everything else is the base config's, which is left alone.
    expected = SETUP.copy_and_resolve_references()
    expected.update(l2=2e-2, lr=0.7, seed=5, steps=33, l2_mode="autol2", lr_schedule="cosine")
    expected.autol2.min_l2 = 1e-3
    assert config.to_dict() == expected.to_dict()
    assert base.to_dict() == SETUP.to_dict()
    assert sweep.Run(1e-3, 0.5, 0, 10).config(base).l2_mode == base.l2_mode == "fixed"
    # anytime_c is set when given, else the base config's.
    anytime = sweep.Run(2e-2, 0.7, 5, 33, l2_mode="anytime", anytime_c=3.0).config(base)
    assert (anytime.l2_mode, anytime.anytime_c) == ("anytime", 3.0)
    assert sweep.Run(1e-3, 0.5, 0, 10).config(base).anytime_c == base.anytime_c == 1.0
    # The sweep validates each member's config with the trainer's validation, once per member.
    validated = []
    monkeypatch.setattr(
        sweep.config_lib, "validate", lambda config: validated.append(config.to_dict())
    )
    sweep.validate(base, [member, sweep.Run(1e-3, 0.5, 0, 10)])
    assert validated == [
        base.to_dict(),
        config.to_dict(),
        sweep.Run(1e-3, 0.5, 0, 10).config(base).to_dict(),
    ]


def test_a_bad_member_is_a_one_line_error_naming_it(no_work):
    good = sweep.Run(1e-3, 1.0, 0, 10)
    bad = sweep.Run(1e-3, 1.0, 0, 10, lr_schedule="linear")
    with raises_exactly(
        f"config.lr_schedule must be one of ('constant', 'cosine', 'step'), got 'linear' (in {bad})"
    ):
        sweep.run(SETUP, [good, bad], progress=False)
    # Exactly the trainer's message for that config.
    with pytest.raises(ValueError) as trainer_error:
        training.validate(bad.config(SETUP))
    with raises_exactly(f"{trainer_error.value} (in {bad})"):
        sweep.validate(SETUP, [good, bad])


# ------------------------------------------------------------------------------------------
# Vmapped members, buckets and evaluations.
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_vmapped_configurations_match_runs_alone():
    runs = [
        sweep.Run(1e-3, 1.0, 0, 120),
        sweep.Run(3e-2, 0.5, 1, 45),  # shorter: frozen while its bucket goes on
        # A cooldown of 0.2/λ steps (0.2·η_eff in units of 1/(λη_eff)), short enough to decay.
        sweep.Run(
            5e-2,
            1.0,
            2,
            80,
            l2_mode="autol2",
            lr_schedule="step",
            autol2=(("cooldown", 0.2), ("min_l2", 1e-3)),
        ),
    ]
    together = sweep.run(SETUP, runs, chunk_steps=40, progress=False)
    for run, curves in zip(runs, together, strict=True):
        alone = sweep.run(SETUP, [run], chunk_steps=40, progress=False)[0]
        np.testing.assert_array_equal(curves.steps, alone.steps)
        assert curves.steps[-1] == run.steps
        for field in ("test_accuracy", "test_loss", "l2", "weight_norm"):
            np.testing.assert_allclose(getattr(curves, field), getattr(alone, field), rtol=1e-4)
    # AutoL2 decayed and respects its floor.
    assert together[2].l2[-1] < 5e-2
    assert together[2].l2.min() >= 1e-3 * (1 - 1e-6)
    # Fixed λ stays put; an untrained model is near chance, a trained one is not.
    np.testing.assert_allclose(together[0].l2, 1e-3)
    assert together[0].test_accuracy[-1] > together[0].test_accuracy[0] + 0.1


def test_runs_of_any_length_share_one_compiled_chunk_and_evaluate_at_their_steps():
    # Each chunk gets its own window of the evaluation steps, so a sweep of another length
    # reuses the compiled program (the whole run's table as an argument recompiled it).
    run = sweep.Run(1e-3, 1.0, 0, 30)
    sweep.run(SETUP, [run], chunk_steps=10, progress=False)
    compiled = sweep._chunk._cache_size()
    for steps in (50, 95):
        (curves,) = sweep.run(SETUP, [run._replace(steps=steps)], chunk_steps=10, progress=False)
        # Every recorded step was evaluated: a step without evaluation would read NaN.
        np.testing.assert_array_equal(curves.steps, sweep.eval_steps(steps, 12))
        assert np.all(np.isfinite(curves.test_accuracy)), curves.test_accuracy
    assert sweep._chunk._cache_size() == compiled


def test_extra_evaluation_steps_are_evaluated_in_every_run_that_reaches_them():
    # 9, 23 and 41 are not on the log-spaced grid: a run evaluates there only when asked.
    extra = (9, 23, 41)
    assert not set(extra) & set(sweep.eval_steps(50, 12))
    runs = [sweep.Run(1e-3, 1.0, 0, 50), sweep.Run(1e-3, 1.0, 0, 23)]
    long, short = sweep.run(SETUP, runs, eval_at=extra, chunk_steps=10, progress=False)
    np.testing.assert_array_equal(long.steps, np.union1d(sweep.eval_steps(50, 12), extra))
    np.testing.assert_array_equal(short.steps, np.union1d(sweep.eval_steps(23, 12), (9, 23)))
    for curves in (long, short):
        for field in Curves._fields:
            # The validation columns are NaN: the data set has no validation split.
            assert np.all(np.isfinite(getattr(curves, field)) != (field in VALIDATION_FIELDS)), (
                field
            )
    # The evaluation after step 23 of the long run is that of the same run stopped there.
    at_23 = long.index_at(23, exact=True)
    for field in ("test_accuracy", "test_loss", "weight_norm"):
        np.testing.assert_allclose(
            getattr(long, field)[at_23], getattr(short, field)[-1], rtol=1e-5
        )
    assert long.accuracy_at(41, exact=True) == long.test_accuracy[list(long.steps).index(41)]


@pytest.mark.slow
def test_autol2_runs_of_different_settings_in_one_bucket_match_their_runs_alone():
    # Each member's decay factor, cooldown, floor and schedule are traced columns of one
    # vmapped bucket (one slot padded), under momentum: none may leak into another.
    setup = SETUP.copy_and_resolve_references()
    setup.optimizer, setup.momentum = "momentum", 0.5
    runs = [
        # η_eff = 1/(1 − 0.5) = 2: a cooldown of 0.2/λ steps is 0.4 in units of 1/(λη_eff).
        sweep.Run(
            5e-2,
            1.0,
            2,
            90,
            l2_mode="autol2",
            lr_schedule="step",
            autol2=(("cooldown", 0.4), ("min_l2", 1e-3)),
        ),
        sweep.Run(
            3e-2, 0.5, 2, 70, l2_mode="autol2", autol2=(("decay_factor", 3.0), ("cooldown", 0.05))
        ),
        sweep.Run(8e-2, 0.7, 5, 50, l2_mode="autol2", autol2=(("cooldown", 0.0), ("min_l2", 1e-2))),
    ]
    together = sweep.run(setup, runs, bucket_size=4, chunk_steps=40, progress=False)
    for run, curves in zip(runs, together, strict=True):
        alone = sweep.run(setup, [run], chunk_steps=40, progress=False)[0]
        np.testing.assert_array_equal(curves.steps, alone.steps)
        for field in ("test_accuracy", "test_loss", "l2", "weight_norm"):
            np.testing.assert_allclose(getattr(curves, field), getattr(alone, field), rtol=1e-5)
        # λ decayed, by its own factor, and not below its own floor.
        settings = run.config(setup).autol2
        values = np.unique(curves.l2)[::-1]
        assert len(values) >= 2, run
        first = max(run.l2 / settings.decay_factor, settings.min_l2)
        np.testing.assert_allclose(values[1], first, rtol=1e-5)
        assert values[-1] >= settings.min_l2 * (1 - 1e-6)


def test_bucket_size_trades_shared_overhead_for_wasted_steps():
    assert sweep.choose_bucket_size([1000] * 12, step_overhead=2.0) == 12
    assert sweep.choose_bucket_size([1000] * 40, step_overhead=2.0) == 20
    # Lengths a decade apart: one bucket per length beats one wide bucket.
    assert sweep.choose_bucket_size([10_000] * 4 + [1_000] * 4 + [100] * 4, 2.0) == 4
    assert sweep.choose_bucket_size([10_000, 100], step_overhead=0.0) == 1


def test_eval_steps_are_log_spaced_and_end_at_the_run():
    steps = sweep.eval_steps(1000, 4)
    np.testing.assert_array_equal(steps, [1, 2, 3, 6, 10, 18, 32, 56, 100, 178, 316, 562, 1000])
    assert sweep.eval_steps(700, 4)[-1] == 700
    assert set(sweep.eval_steps(700, 4)) <= set(steps) | {700}
    # Extra steps are added up to the run's end.
    np.testing.assert_array_equal(
        sweep.eval_steps(700, 4, (600, 5, 10, 2000)),
        [1, 2, 3, 5, 6, 10, 18, 32, 56, 100, 178, 316, 562, 600, 700],
    )


def curves_with_accuracy(steps, accuracy) -> Curves:
    zeros = np.zeros(len(steps))
    return Curves(np.asarray(steps), zeros, zeros, zeros, np.asarray(accuracy), zeros, zeros, zeros)


def test_exact_reading_of_a_step_that_was_not_evaluated_is_a_one_line_error():
    curves = curves_with_accuracy([1, 10, 100], [0.1, 0.5, 0.9])
    assert curves.accuracy_at(10, exact=True) == 0.5 and curves.index_at(100, exact=True) == 2
    for step, before, after in ((50, 10, 100), (0, None, 1), (101, 100, None)):
        message = (
            f"step {step} was not evaluated (the nearest evaluations are at steps {before} and "
            f"{after}); add it to the evaluations (sweep.run's eval_at)"
        )
        with raises_exactly(message):
            curves.accuracy_at(step, exact=True)


def test_curves_read_validation_accuracy_and_refuse_other_splits():
    curves = curves_with_accuracy([1, 10, 100], [0.1, 0.5, 0.9])
    # Left out of the constructor, the validation columns are NaN.
    assert np.all(np.isnan(curves.validation_accuracy)) and len(curves.validation_loss) == 3
    assert np.isnan(curves.accuracy_at(10, split="validation"))
    validated = curves._replace(validation_accuracy=np.array([0.2, 0.6, 0.8]))
    assert validated.accuracy_at(50, split="validation") == 0.6
    assert validated.accuracy_at(50) == validated.accuracy_at(50, split="test") == 0.5
    with raises_exactly("split must be one of ('test', 'validation'), got 'train'"):
        curves.accuracy_at(10, split="train")


def test_curves_accuracy_at_reads_the_last_evaluation_up_to_a_step():
    curves = curves_with_accuracy([1, 10, 100], [0.1, 0.5, 0.9])
    assert [curves.accuracy_at(t) for t in (0, 1, 9.5, 10, 99, 100, 1e6)] == [
        0.1,
        0.1,
        0.1,
        0.5,
        0.5,
        0.9,
        0.9,
    ]


# ------------------------------------------------------------------------------------------
# The recipe as a sweep traces it: schedules and the loss.
# ------------------------------------------------------------------------------------------


def learning_rates(run: sweep.Run) -> np.ndarray:
    """η of each of the run's SGD steps, read off the optimizer a sweep trains it with (its
    hyperparameters stacked and traced as in a bucket).

    With λ = 0 and no momentum, the update for a unit gradient is −η of that step.
    """
    config = run._replace(l2=0.0).config(SETUP)
    stacked = recipe.Hyperparameters.stack([recipe.Hyperparameters.on_host(config)])
    params = jnp.zeros(())

    @jax.jit
    def rates(stacked):
        hyper = jax.tree.map(lambda column: column[0], stacked)
        tx = recipe.create_optimizer(config, hyper)

        def step(opt_state, _):
            updates, opt_state = tx.update(jnp.ones(()), opt_state, params)
            return opt_state, -updates

        return jax.lax.scan(step, tx.init(params), length=run.steps)[1]

    return np.asarray(rates(stacked))


@pytest.mark.parametrize("steps", [10, 100, 1000])
def test_step_schedule_multiplies_lr_by_a_fifth_at_30_60_and_90_percent(steps):
    # By hand: of a run of n steps, the first 0.3n use η, the next 0.3n use 0.2η, the next
    # 0.3n use 0.04η and the last 0.1n use 0.008η (the default lr_step_boundaries and
    # lr_step_factor, whose boundaries round(f·n) are these same integers here).
    boundaries = [3 * steps // 10, 6 * steps // 10, 9 * steps // 10]
    expected = np.concatenate(
        [
            np.full(boundaries[0], 0.5),
            np.full(boundaries[1] - boundaries[0], 0.1),
            np.full(boundaries[2] - boundaries[1], 0.02),
            np.full(steps - boundaries[2], 0.004),
        ]
    )
    rates = learning_rates(sweep.Run(0.0, 0.5, 0, steps, lr_schedule="step"))
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_constant_schedule_keeps_lr_for_the_whole_run():
    np.testing.assert_allclose(learning_rates(sweep.Run(0.0, 0.5, 0, 100)), 0.5, rtol=1e-6)


def test_cosine_schedule_decays_to_zero_over_each_members_own_run():
    rates = learning_rates(sweep.Run(0.0, 0.5, 0, 100, lr_schedule="cosine"))
    t = np.arange(100)
    np.testing.assert_allclose(rates, 0.25 * (1 + np.cos(np.pi * t / 100)), rtol=1e-5, atol=1e-7)


def test_mse_loss_targets_are_one_hot_or_centred():
    logits = jnp.zeros((2, 10)).at[1, 7].set(2.0)
    labels = jnp.array([3, 7])
    # Centred, y = onehot − 1/10. Example 1, logits 0, label 3: ½(0.9² + 9·0.1²) = 0.45.
    # Example 2, logits 2·onehot(7), label 7: f − y = onehot + 0.1, ½(1.1² + 9·0.1²) = 0.65.
    centred = recipe.create_loss(SETUP)(logits, labels)
    np.testing.assert_allclose(centred, [0.45, 0.65], rtol=1e-6)
    # One-hot, y = onehot: ½·1² = 0.5 and ½·1² = 0.5.
    one_hot = SETUP.copy_and_resolve_references()
    one_hot.mse_targets = "one_hot"
    np.testing.assert_allclose(recipe.create_loss(one_hot)(logits, labels), [0.5, 0.5], rtol=1e-6)


def test_data_draws_share_compiled_steps_and_keep_their_own_data():
    # Draws differ in the label-noise and validation seeds: the same shapes, other values. The
    # data are arguments of the compiled steps, so a second draw compiles nothing, yet trains on
    # its own labels and split.
    def draw(seed):
        config = SETUP.copy_and_resolve_references()
        config.data_options.label_noise = 0.2
        config.data_options.label_noise_seed = seed
        config.data_options.validation_size = 200
        config.data_options.validation_seed = seed
        return config

    runs = [sweep.Run(1e-3, 0.5, 0, 20)]
    first = sweep.run(draw(11), runs, progress=False)[0]
    compiled = sweep._chunk._cache_size()
    second = sweep.run(draw(12), runs, progress=False)[0]
    assert sweep._chunk._cache_size() == compiled
    assert not np.array_equal(first.validation_loss, second.validation_loss)
    # Each draw's curve is the one its own data give when swept alone in a fresh process state.
    sweep._PROGRAMS.clear()
    sweep._DATA.clear()
    again = sweep.run(draw(12), runs, progress=False)[0]
    np.testing.assert_allclose(again.validation_loss, second.validation_loss, rtol=1e-6)
    np.testing.assert_allclose(again.test_loss, second.test_loss, rtol=1e-6)


def test_buckets_of_any_size_share_one_compiled_init_equal_to_a_vmapped_one():
    runs = [sweep.Run(1e-3 * (i + 1), 0.5, i, 20) for i in range(3)]
    program, _ = sweep._load(SETUP)
    configs = [run.config(SETUP) for run in runs]
    hyper = recipe.Hyperparameters.stack([recipe.Hyperparameters.on_host(c) for c in configs])
    frozen = sweep._Frozen(configs[0])
    state = sweep._init(program, frozen, hyper)
    compiled = sweep._init_member._cache_size()
    two = jax.tree.map(lambda value: value[:2], hyper)
    assert jax.tree.leaves(sweep._init(program, frozen, two))[0].shape[0] == 2
    assert sweep._init_member._cache_size() == compiled
    vmapped = jax.jit(
        jax.vmap(
            functools.partial(
                steps_lib.init_state,
                configs[0],
                model=program.model,
                input_shape=program.dataset.input_shape,
            )
        )
    )(hyper)
    for ours, theirs in zip(jax.tree.leaves(state), jax.tree.leaves(vmapped), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_recorded_test_loss_is_the_configs_loss():
    # A bias-free MLP with zero weights outputs 0, so its centred MSE test loss is 0.45
    # whatever the test set.
    program, arrays = sweep._load(SETUP)
    config = sweep.Run(0.0, 0.1, 0, 1).config(SETUP)
    hyper = recipe.Hyperparameters.stack([recipe.Hyperparameters.on_host(config)])
    frozen = sweep._Frozen(config)
    state = sweep._init(program, frozen, hyper)
    state = state.replace(params=jax.tree.map(jnp.zeros_like, state.params))
    metrics = jax.vmap(functools.partial(program.evaluate, config, arrays))(state)
    np.testing.assert_allclose(metrics["test_loss"], [0.45], rtol=1e-6)
    np.testing.assert_allclose(metrics["test_accuracy"], [np.mean(arrays.test_labels == 0)])


# ------------------------------------------------------------------------------------------
# Validation: one-line errors before any work.
# ------------------------------------------------------------------------------------------


def raises_exactly(message: str, error: type[Exception] = ValueError):
    """`pytest.raises` matching the whole message, which must thus be this one line."""
    return pytest.raises(error, match=rf"^{re.escape(message)}\Z")


@pytest.fixture
def no_work(monkeypatch):
    """Fails a test whose sweep gets as far as loading data (the first work of a run)."""

    def start(config):
        raise AssertionError("the sweep started work before rejecting its input")

    monkeypatch.setattr(sweep, "_load", start)


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (sweep.Run(-1.0, 1.0, 0, 10), "config.l2 must be finite and >= 0, got -1.0"),
        (sweep.Run(1e-3, 0.0, 0, 10), "config.lr must be finite and > 0, got 0.0"),
        (sweep.Run(1e-3, 1.0, 0, 0), "config.steps must be an integer in [1, 2147483647], got 0"),
        (
            sweep.Run(0, 1.0, 0, 10, l2_mode="autol2"),
            "config.l2 must be > 0 with l2_mode='autol2', got 0",
        ),
        (
            sweep.Run(1e-3, 1.0, 0, 10, l2_mode="auto"),
            "config.l2_mode must be one of ('none', 'fixed', 'autol2', 'anytime'), got 'auto'",
        ),
        (
            sweep.Run(0, 1.0, 0, 10, l2_mode="anytime"),
            "config.l2 must be > 0 with l2_mode='anytime', got 0",
        ),
        (
            sweep.Run(1e-3, 1.0, 0, 10, l2_mode="anytime", anytime_c=0.0),
            "config.anytime_c must be finite and > 0 with l2_mode='anytime', got 0.0",
        ),
        (
            sweep.Run(1e-3, 1.0, 0, 10, l2_mode="anytime", anytime_c=float("inf")),
            "config.anytime_c must be finite and > 0 with l2_mode='anytime', got inf",
        ),
        (
            sweep.Run(1e-3, 1.0, 0, 10, autol2=(("warmup", 3),)),
            "config.autol2 must have exactly the fields of "
            "l2reg.training.default_config(): unknown config.autol2.warmup",
        ),
    ],
)
def test_bad_configurations_are_one_line_errors(run, message, no_work):
    with raises_exactly(f"{message} (in {run})"):
        sweep.run(SETUP, [run], progress=False)


def test_bad_base_configs_are_one_line_errors(no_work):
    run = sweep.Run(1e-3, 1.0, 0, 10)
    hinge = SETUP.copy_and_resolve_references()
    hinge.loss = "hinge"
    with raises_exactly("config.loss must be one of ('cross_entropy', 'mse'), got 'hinge'"):
        sweep.run(hinge, [run], progress=False)
    noisy = SETUP.copy_and_resolve_references()
    noisy.data_options.label_noise = 1.5
    with raises_exactly("label_noise must be in [0, 1), got 1.5"):
        sweep.run(noisy, [run], progress=False)
    with raises_exactly("runs must hold sweep.Run, got tuple: (0.001, 1.0, 0, 10)", TypeError):
        sweep.run(SETUP, [(1e-3, 1.0, 0, 10)], progress=False)
    with raises_exactly("runs must hold at least one sweep.Run, got none"):
        sweep.run(SETUP, [], progress=False)
    with raises_exactly("config must be a ConfigDict, got 'digits'"):
        sweep.run("digits", [run], progress=False)


def test_a_batch_larger_than_the_training_set_is_a_one_line_error():
    config = SETUP.copy_and_resolve_references()
    config.batch_size = 5000
    with raises_exactly("config.batch_size=5000 exceeds the 1500 training examples of 'digits'"):
        sweep.run(config, [sweep.Run(0.0, 1.0, 0, 1)], progress=False)


@pytest.mark.parametrize(
    "settings",
    [
        {"decay_factor": 1.0},
        {"cooldown": -0.1},
        {"patience": 0},
        {"patience": True},
        {"check_every": 0},
        {"min_l2": -1e-3},
        {"min_l2": 0.2},
    ],
)
def test_autol2_settings_are_rejected_as_the_transform_rejects_them(settings, no_work):
    # The sweep traces these values, so the transform cannot check them itself.
    with pytest.raises(ValueError) as expected:
        l2reg.autol2(0.1, learning_rate=1.0, **settings)
    run = sweep.Run(0.1, 1.0, 0, 10, l2_mode="autol2", autol2=tuple(settings.items()))
    with raises_exactly(f"config.autol2.{expected.value} (in {run})"):
        sweep.run(SETUP, [run], progress=False)


@pytest.mark.parametrize(
    ("run", "field", "original"),
    [
        (
            sweep.Run(0.1, 1.0, 0, 10, l2_mode="autol2", autol2=(("check_every", 2.5),)),
            "check_every",
            "int",
        ),
        (
            sweep.Run(0.1, 1.0, 0, 10, l2_mode="autol2", autol2=(("cooldown", "0.1"),)),
            "cooldown",
            "float",
        ),
        (sweep.Run(1e-3, 1.0, 1.0, 10), "seed", "int"),
        (sweep.Run(1e-3, 1.0, 0, 10.5), "steps", "int"),
    ],
)
def test_fields_of_the_wrong_type_are_one_line_errors_naming_the_run(run, field, original, no_work):
    # The config's fields keep their types: a run cannot set one to another type.
    with pytest.raises(TypeError, match=re.escape(f"(in {run})")) as error:
        sweep.run(SETUP, [run], progress=False)
    assert "\n" not in str(error.value)
    assert f"'{field}'" in str(error.value) and f"<class '{original}'>" in str(error.value)


@pytest.mark.parametrize("l2", [float("nan"), float("inf")])
@pytest.mark.parametrize("mode", ["fixed", "autol2"])
def test_non_finite_l2_is_a_one_line_error(l2, mode, no_work):
    run = sweep.Run(l2, 1.0, 0, 10, l2_mode=mode)
    with raises_exactly(f"config.l2 must be finite and >= 0, got {l2!r} (in {run})"):
        sweep.run(SETUP, [run], progress=False)


@pytest.mark.parametrize("seed", [-(2**31) - 1, 2**31, 2**32 + 5, True])
def test_seeds_outside_int32_are_one_line_errors(seed, no_work):
    run = sweep.Run(1e-3, 1.0, seed, 10)
    message = f"config.seed must be an integer in [-2147483648, 2147483647], got {seed!r}"
    with raises_exactly(f"{message} (in {run})"):
        sweep.run(SETUP, [run], progress=False)


def test_seeds_at_the_int32_bounds_are_kept_exactly():
    # The trainer's range of config.seed; each seed is stacked as it is, not wrapped.
    runs = [sweep.Run(1e-3, 1.0, seed, 10) for seed in (-(2**31), -1, 2**31 - 1)]
    sweep.validate(SETUP, runs)
    stacked = recipe.Hyperparameters.stack(
        [recipe.Hyperparameters.on_host(run.config(SETUP)) for run in runs]
    )
    assert stacked.seed.dtype == jnp.int32
    np.testing.assert_array_equal(stacked.seed, [-(2**31), -1, 2**31 - 1])


@pytest.mark.parametrize("steps", [0, 2**31, True])
def test_steps_must_be_an_int32(steps, no_work):
    run = sweep.Run(1e-3, 1.0, 0, steps)
    message = f"config.steps must be an integer in [1, 2147483647], got {steps!r}"
    with raises_exactly(f"{message} (in {run})"):
        sweep.run(SETUP, [run], progress=False)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("evals_per_decade", 0, "evals_per_decade must be an integer ≥ 1, got 0"),
        ("evals_per_decade", -2, "evals_per_decade must be an integer ≥ 1, got -2"),
        ("evals_per_decade", 2.5, "evals_per_decade must be an integer ≥ 1, got 2.5"),
        ("bucket_size", 0, "bucket_size must be None or an integer ≥ 1, got 0"),
        ("bucket_size", 2.5, "bucket_size must be None or an integer ≥ 1, got 2.5"),
        ("chunk_steps", 10.0, "chunk_steps must be an integer ≥ 1, got 10.0"),
        ("step_overhead", float("inf"), "step_overhead must be finite and >= 0, got inf"),
        (
            "eval_at",
            (5, 0),
            "eval_at's step (the longest run has 10) must be an integer in [1, 10], got 0",
        ),
        (
            "eval_at",
            (11,),
            "eval_at's step (the longest run has 10) must be an integer in [1, 10], got 11",
        ),
        (
            "eval_at",
            (2.5,),
            "eval_at's step (the longest run has 10) must be an integer in [1, 10], got 2.5",
        ),
    ],
)
def test_bad_run_arguments_are_one_line_errors(argument, value, message, no_work):
    with raises_exactly(message):
        sweep.run(SETUP, [sweep.Run(1e-3, 1.0, 0, 10)], progress=False, **{argument: value})
