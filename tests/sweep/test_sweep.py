"""Sweeps: a vmapped configuration trains exactly as it does alone; inputs are validated."""

import dataclasses

import numpy as np
import pytest

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


def test_eval_steps_are_log_spaced_and_end_at_the_run():
    steps = sweep.eval_steps(1000, 4)
    np.testing.assert_array_equal(steps, [1, 2, 3, 6, 10, 18, 32, 56, 100, 178, 316, 562, 1000])
    assert sweep.eval_steps(700, 4)[-1] == 700
    assert set(sweep.eval_steps(700, 4)) <= set(steps) | {700}


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
