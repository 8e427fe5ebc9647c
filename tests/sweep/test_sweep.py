"""Sweeps: a vmapped configuration trains exactly as it does alone; inputs are validated."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import l2reg
from l2reg import sweep

SETUP = sweep.Setup(
    "digits",
    loss="mse",
    model_options=(("parameterization", "ntk"), ("use_bias", False), ("widths", (16, 16))),
)


@pytest.mark.slow
def test_vmapped_configurations_match_runs_alone():
    configs = [
        sweep.Config(1e-3, 1.0, 0, 120),
        sweep.Config(3e-2, 0.5, 1, 45),  # shorter: frozen while its bucket goes on
        # The authors' clock: a cooldown of 0.2/λ steps, short enough to decay here.
        sweep.Config(
            5e-2, 1.0, 2, 80, sweep.AutoL2(learning_rate=1.0, cooldown=0.2, min_l2=1e-3), "step"
        ),
    ]
    together = sweep.run(SETUP, configs, chunk_steps=40, progress=False)
    for config, curves in zip(configs, together, strict=True):
        alone = sweep.run(SETUP, [config], chunk_steps=40, progress=False)[0]
        np.testing.assert_array_equal(curves.steps, alone.steps)
        assert curves.steps[-1] == config.num_steps
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
    configs = [sweep.Config(1e-3, 1.0, 0, 30)]
    sweep.run(SETUP, configs, chunk_steps=10, progress=False)
    compiled = sweep._Program.chunk._cache_size()
    for num_steps in (50, 95):
        (curves,) = sweep.run(
            SETUP, [configs[0]._replace(num_steps=num_steps)], chunk_steps=10, progress=False
        )
        # Every recorded step was evaluated: a step without evaluation would read NaN.
        np.testing.assert_array_equal(curves.steps, sweep.eval_steps(num_steps, 12))
        assert np.all(np.isfinite(curves.test_accuracy)), curves.test_accuracy
    assert sweep._Program.chunk._cache_size() == compiled


def test_extra_evaluation_steps_are_evaluated_in_every_run_that_reaches_them():
    # 9, 23 and 41 are not on the log-spaced grid: a run evaluates there only when asked.
    extra = (9, 23, 41)
    assert not set(extra) & set(sweep.eval_steps(50, 12))
    configs = [sweep.Config(1e-3, 1.0, 0, 50), sweep.Config(1e-3, 1.0, 0, 23)]
    long, short = sweep.run(SETUP, configs, eval_at=extra, chunk_steps=10, progress=False)
    np.testing.assert_array_equal(long.steps, np.union1d(sweep.eval_steps(50, 12), extra))
    np.testing.assert_array_equal(short.steps, np.union1d(sweep.eval_steps(23, 12), (9, 23)))
    for curves in (long, short):
        for field in ("test_accuracy", "test_loss", "l2", "weight_norm"):
            assert np.all(np.isfinite(getattr(curves, field))), field
    # The evaluation after step 23 of the long run is that of the same run stopped there.
    at_23 = long.index_at(23, exact=True)
    for field in ("test_accuracy", "test_loss", "weight_norm"):
        np.testing.assert_allclose(
            getattr(long, field)[at_23], getattr(short, field)[-1], rtol=1e-5
        )
    assert long.accuracy_at(41, exact=True) == long.test_accuracy[list(long.steps).index(41)]


@pytest.mark.slow
def test_autol2_runs_of_different_settings_in_one_bucket_match_their_runs_alone():
    # Each member's decay factor, cooldown, floor, clock η and schedule are traced columns of
    # one vmapped bucket (one slot padded), under momentum: none may leak into another.
    setup = dataclasses.replace(SETUP, momentum=0.5)
    configs = [
        sweep.Config(
            5e-2, 1.0, 2, 90, sweep.AutoL2(learning_rate=1.0, cooldown=0.2, min_l2=1e-3), "step"
        ),
        sweep.Config(3e-2, 0.5, 2, 70, sweep.AutoL2(decay_factor=3.0, cooldown=0.05)),
        sweep.Config(8e-2, 0.7, 5, 50, sweep.AutoL2(cooldown=0.0, min_l2=1e-2)),
    ]
    together = sweep.run(setup, configs, bucket_size=4, chunk_steps=40, progress=False)
    for config, curves in zip(configs, together, strict=True):
        alone = sweep.run(setup, [config], chunk_steps=40, progress=False)[0]
        np.testing.assert_array_equal(curves.steps, alone.steps)
        for field in ("test_accuracy", "test_loss", "l2", "weight_norm"):
            np.testing.assert_allclose(getattr(curves, field), getattr(alone, field), rtol=1e-5)
        # λ decayed, by its own factor, and not below its own floor.
        mode, values = config.l2_mode, np.unique(curves.l2)[::-1]
        assert len(values) >= 2, config
        first = max(config.l2 / mode.decay_factor, mode.min_l2)
        np.testing.assert_allclose(values[1], first, rtol=1e-5)
        assert values[-1] >= mode.min_l2 * (1 - 1e-6)


def learning_rates(config: sweep.Config) -> np.ndarray:
    """η of each of the config's SGD steps, read off the optimizer a sweep trains it with.

    With λ = 0 and no momentum, the update for a unit gradient is −η of that step.
    """
    program = sweep._Program.create(SETUP)
    hyper = jax.tree.map(lambda column: column[0], sweep._Hyper.stack([config._replace(l2=0.0)]))
    tx = program.optimizer(config.l2_mode, hyper)
    params = jnp.zeros(())

    def step(opt_state, _):
        updates, opt_state = tx.update(jnp.ones(()), opt_state, params)
        return opt_state, -updates

    return np.asarray(jax.lax.scan(step, tx.init(params), length=config.num_steps)[1])


@pytest.mark.parametrize("num_steps", [10, 100, 1000])
def test_step_schedule_multiplies_lr_by_a_fifth_at_30_60_and_90_percent(num_steps):
    # By hand: of a run of n steps, the first 0.3n use η, the next 0.3n use 0.2η, the next
    # 0.3n use 0.04η and the last 0.1n use 0.008η (train.py's 'step' schedule, whose
    # boundaries round(f·n) are these same integers here).
    lr = 0.5
    boundaries = [3 * num_steps // 10, 6 * num_steps // 10, 9 * num_steps // 10]
    expected = np.concatenate(
        [
            np.full(boundaries[0], 0.5),
            np.full(boundaries[1] - boundaries[0], 0.1),
            np.full(boundaries[2] - boundaries[1], 0.02),
            np.full(num_steps - boundaries[2], 0.004),
        ]
    )
    rates = learning_rates(sweep.Config(0.0, lr, 0, num_steps, lr_schedule="step"))
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_constant_schedule_keeps_lr_for_the_whole_run():
    np.testing.assert_allclose(learning_rates(sweep.Config(0.0, 0.5, 0, 100)), 0.5, rtol=1e-6)


def test_mse_loss_uses_zero_mean_targets():
    program = sweep._Program.create(SETUP)
    assert program.num_classes == 10
    # Targets y = onehot − 1/10. Example 1, logits 0, label 3: ½(0.9² + 9·0.1²) = 0.45.
    # Example 2, logits 2·onehot(7), label 7: f − y = onehot + 0.1, ½(1.1² + 9·0.1²) = 0.65.
    logits = jnp.zeros((2, 10)).at[1, 7].set(2.0)
    loss = program.loss(logits, jnp.array([3, 7]))
    np.testing.assert_allclose(loss, (0.45 + 0.65) / 2, rtol=1e-6)
    # The recorded test loss is this loss: a bias-free MLP with zero weights outputs 0, so its
    # test loss is 0.45 whatever the test set.
    hyper = sweep._Hyper.stack([sweep.Config(0.0, 0.1, 0, 1)])
    state = program.init(sweep.FixedL2(), hyper)
    state = state._replace(params=jax.tree.map(jnp.zeros_like, state.params))
    metrics = jax.vmap(program._evaluate)(state)
    np.testing.assert_allclose(metrics["test_loss"], [0.45], rtol=1e-6)


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


def test_exact_reading_of_a_step_that_was_not_evaluated_is_a_one_line_error():
    curves = sweep.Curves(np.array([1, 10, 100]), np.array([0.1, 0.5, 0.9]), *(np.zeros(3),) * 3)
    assert curves.accuracy_at(10, exact=True) == 0.5 and curves.index_at(100, exact=True) == 2
    for step, before, after in ((50, 10, 100), (0, None, 1), (101, 100, None)):
        message = (
            f"step {step} was not evaluated (the nearest evaluations are at steps {before} and "
            f"{after}); add it to the evaluations (sweep.run's eval_at)."
        )
        with raises_exactly(message):
            curves.accuracy_at(step, exact=True)


def test_curves_accuracy_at_reads_the_last_evaluation_up_to_a_step():
    steps = np.array([1, 10, 100])
    curves = sweep.Curves(steps, np.array([0.1, 0.5, 0.9]), *(np.zeros(3),) * 3)
    assert [curves.accuracy_at(t) for t in (0, 1, 9.5, 10, 99, 100, 1e6)] == [
        0.1,
        0.1,
        0.1,
        0.5,
        0.5,
        0.9,
        0.9,
    ]


def test_label_noise_moves_the_requested_fraction_to_other_classes():
    labels = np.arange(1000) % 10
    noisy = sweep.noisy_labels(labels, 10, 0.2)
    assert noisy.dtype == np.int32 and np.all((noisy >= 0) & (noisy < 10))
    assert np.count_nonzero(noisy != labels) == 200
    np.testing.assert_array_equal(noisy, sweep.noisy_labels(labels, 10, 0.2))
    np.testing.assert_array_equal(sweep.noisy_labels(labels, 10, 0.0), labels)


def test_bucket_size_trades_shared_overhead_for_wasted_steps():
    assert sweep.choose_bucket_size([1000] * 12, step_overhead=2.0) == 12
    assert sweep.choose_bucket_size([1000] * 40, step_overhead=2.0) == 20
    # Lengths a decade apart: one bucket per length beats one wide bucket.
    assert sweep.choose_bucket_size([10_000] * 4 + [1_000] * 4 + [100] * 4, 2.0) == 4
    assert sweep.choose_bucket_size([10_000, 100], step_overhead=0.0) == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (sweep.Config(-1.0, 1.0, 0, 10), "l2 must be"),
        (sweep.Config(1e-3, 0.0, 0, 10), "lr must be"),
        (sweep.Config(1e-3, 1.0, 0, 0), "num_steps must be"),
        (sweep.Config(0.0, 1.0, 0, 10, sweep.AutoL2()), "AutoL2 needs"),
        (sweep.Config(1e-3, 1.0, 0, 10, lr_schedule="cosine"), "Unknown lr_schedule"),
    ],
)
def test_bad_configurations_are_one_line_errors(config, message):
    with pytest.raises(ValueError, match=message) as error:
        sweep.run(SETUP, [config], progress=False)
    assert "\n" not in str(error.value)


def test_bad_setups_are_one_line_errors():
    with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
        sweep.Setup("digits", loss="hinge")
    with pytest.raises(ValueError, match=r"label_noise must be in \[0, 1\), got 1.5"):
        sweep.Setup("digits", label_noise=1.5)
    with pytest.raises(ValueError, match="batch_size 5000 exceeds"):
        sweep.run(
            dataclasses.replace(SETUP, batch_size=5000), [sweep.Config(0, 1, 0, 1)], progress=False
        )
    with pytest.raises(TypeError, match=r"Expected sweep\.Config"):
        sweep.run(SETUP, [(1e-3, 1.0, 0, 10)], progress=False)


def raises_exactly(message: str, error: type[Exception] = ValueError):
    """`pytest.raises` matching the whole message, which must thus be this one line."""
    return pytest.raises(error, match=rf"^{re.escape(message)}\Z")


@pytest.fixture
def no_work(monkeypatch):
    """Fails a test whose sweep gets as far as loading data (the first work of a run)."""

    def start(setup):
        raise AssertionError("the sweep started work before rejecting its input")

    monkeypatch.setattr(sweep._Program, "create", staticmethod(start))


@pytest.mark.parametrize(
    ("l2", "settings"),
    [
        (float("nan"), None),  # FixedL2
        (float("inf"), {}),
        (0.1, {"decay_factor": 1.0}),
        (0.1, {"cooldown": -0.1}),
        (0.1, {"patience": 0}),
        (0.1, {"check_every": 2.5}),
        (0.1, {"min_l2": -1e-3}),
        (0.1, {"min_l2": 0.2}),
        (0.1, {"learning_rate": 0.0}),
    ],
)
def test_l2_settings_are_rejected_as_the_transform_rejects_them(l2, settings, no_work):
    # The sweep traces these values, so the transform cannot check them itself.
    if settings is None:
        mode, build = sweep.FixedL2(), lambda: l2reg.add_l2(l2)
    else:
        mode = sweep.AutoL2(**settings)
        build = lambda: l2reg.autol2(l2, **{"learning_rate": 1.0, **settings})
    with pytest.raises(ValueError) as expected:
        build()
    config = sweep.Config(l2, 1.0, 0, 10, mode)
    with raises_exactly(f"{expected.value} in {config}."):
        sweep.run(SETUP, [config], progress=False)


@pytest.mark.parametrize("seed", [-(2**31) - 1, 2**31, 2**32 + 5, 1.0, True])
def test_seeds_outside_int32_are_one_line_errors(seed, no_work):
    config = sweep.Config(1e-3, 1.0, seed, 10)
    message = f"seed must be an integer in [-2147483648, 2147483647], got {seed!r} in {config}."
    with raises_exactly(message):
        sweep.run(SETUP, [config], progress=False)


def test_seeds_at_the_int32_bounds_are_kept_exactly():
    # The trainer's range of config.seed; each seed is stacked as it is, not wrapped.
    configs = [sweep.Config(1e-3, 1.0, seed, 10) for seed in (-(2**31), -1, 2**31 - 1)]
    sweep.validate(configs)
    np.testing.assert_array_equal(sweep._Hyper.stack(configs).seed, [-(2**31), -1, 2**31 - 1])


@pytest.mark.parametrize("num_steps", [10.5, 2**31])
def test_num_steps_must_be_an_int32(num_steps, no_work):
    config = sweep.Config(1e-3, 1.0, 0, num_steps)
    message = f"num_steps must be an integer in [1, 2147483647], got {num_steps!r} in {config}."
    with raises_exactly(message):
        sweep.run(SETUP, [config], progress=False)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("evals_per_decade", 0, "evals_per_decade must be an integer ≥ 1, got 0."),
        ("evals_per_decade", -2, "evals_per_decade must be an integer ≥ 1, got -2."),
        ("evals_per_decade", 2.5, "evals_per_decade must be an integer ≥ 1, got 2.5."),
        ("bucket_size", 0, "bucket_size must be None or an integer ≥ 1, got 0."),
        ("bucket_size", 2.5, "bucket_size must be None or an integer ≥ 1, got 2.5."),
        ("chunk_steps", 10.0, "chunk_steps must be an integer ≥ 1, got 10.0."),
        ("step_overhead", float("inf"), "step_overhead must be finite and ≥ 0, got inf."),
        (
            "eval_at",
            (5, 0),
            "eval_at step must be an integer in [1, 10], got 0 (10 is the longest num_steps).",
        ),
        (
            "eval_at",
            (11,),
            "eval_at step must be an integer in [1, 10], got 11 (10 is the longest num_steps).",
        ),
        (
            "eval_at",
            (2.5,),
            "eval_at step must be an integer in [1, 10], got 2.5 (10 is the longest num_steps).",
        ),
    ],
)
def test_bad_run_arguments_are_one_line_errors(argument, value, message, no_work):
    with raises_exactly(message):
        sweep.run(SETUP, [sweep.Config(1e-3, 1.0, 0, 10)], progress=False, **{argument: value})


def test_setup_batch_size_must_be_an_integer_and_run_needs_a_setup(no_work):
    with raises_exactly("batch_size must be an integer ≥ 1, got 2.5."):
        sweep.Setup("digits", batch_size=2.5)
    with raises_exactly("Expected sweep.Setup, got str: 'digits'.", TypeError):
        sweep.run("digits", [sweep.Config(1e-3, 1.0, 0, 10)], progress=False)
