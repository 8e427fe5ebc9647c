"""The kernel problems' helpers: one-hot targets, accuracy, MSE loss, curves and loading."""

import numpy as np
import pytest

from l2reg import data
from theory import problems

# Two times × three test examples × two classes; labels 0, 1, 1.
OUTPUTS = np.array(
    [
        [[0.9, 0.1], [0.2, 0.3], [0.6, 0.5]],  # predicts 0, 1, 0: 2 of 3 right
        [[0.1, 0.4], [0.7, 0.0], [0.0, 1.0]],  # predicts 1, 0, 1: 1 of 3 right
    ]
)
LABELS = np.array([0, 1, 1])
# ½·mean of (f − y)² over the 3·2 entries: squared errors summed by hand, per time.
#   t0: 0.01 + 0.01 + 0.04 + 0.49 + 0.36 + 0.25 = 1.16 → 1.16/12
#   t1: 0.81 + 0.16 + 0.49 + 1.00 + 0.00 + 0.00 = 2.46 → 2.46/12
EXPECTED_LOSS = np.array([1.16, 2.46]) / 12


def test_accuracy_per_time_and_for_one_time():
    np.testing.assert_allclose(problems.accuracy(OUTPUTS, LABELS), [2 / 3, 1 / 3])
    assert problems.accuracy(OUTPUTS[0], LABELS) == pytest.approx(2 / 3)


def test_mse_loss_is_half_the_mean_squared_error_per_time():
    targets = np.eye(2)[LABELS]
    np.testing.assert_allclose(problems.mse_loss(OUTPUTS, targets), EXPECTED_LOSS, rtol=1e-12)
    assert problems.mse_loss(OUTPUTS[1], targets) == pytest.approx(EXPECTED_LOSS[1])


def test_y_test_is_one_hot_with_the_training_targets_classes():
    # Three classes in the training targets, though the test labels use only 0 and 1.
    problem = problems.Problem(
        x_train=np.zeros((3, 1)),
        y_train=np.eye(3),
        x_test=np.zeros((2, 1)),
        test_labels=np.array([1, 0]),
    )
    np.testing.assert_array_equal(problem.y_test, [[0, 1, 0], [1, 0, 0]])


def test_curves_reads_the_test_outputs_of_a_predictor():
    problem = problems.Problem(
        x_train=np.zeros((4, 1)),
        y_train=np.eye(2)[[0, 1, 1, 0]],
        x_test=np.zeros((3, 1)),
        test_labels=LABELS,
    )
    steps = np.array([10.0, 20.0])

    def predict(t):
        np.testing.assert_array_equal(t, steps)
        return np.full((2, 4, 2), np.nan), OUTPUTS  # train outputs must not be used

    accuracy, loss = problems.curves(predict, steps, problem)
    np.testing.assert_allclose(accuracy, [2 / 3, 1 / 3])
    np.testing.assert_allclose(loss, EXPECTED_LOSS, rtol=1e-12)


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"num_train": 0}, "num_train must be an integer ≥ 1, got 0"),
        ({"num_train": 2.5}, "num_train must be an integer ≥ 1, got 2.5"),
        ({"num_train": 5, "num_test": 0}, "num_test must be an integer ≥ 1, got 0"),
    ],
)
def test_load_flat_rejects_bad_sizes_before_loading(sizes, message):
    # An unknown data set name would raise a different error if anything were loaded first.
    with pytest.raises(ValueError) as error:
        problems.load_flat("no such data set", **sizes)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"num_train": 1501}, "num_train must be ≤ 1500, the train examples of 'digits', got 1501"),
        (
            {"num_train": 5, "num_test": 298},
            "num_test must be ≤ 297, the test examples of 'digits', got 298",
        ),
    ],
)
def test_load_flat_rejects_more_examples_than_the_data_set_has(sizes, message):
    with pytest.raises(ValueError) as error:
        problems.load_flat("digits", **sizes)
    assert str(error.value) == message


def test_metrics_reject_targets_of_another_shape():
    with pytest.raises(
        ValueError, match=r"labels must have shape \(m,\) = \(3,\) .* got shape \(2,\)"
    ):
        problems.accuracy(OUTPUTS, LABELS[:2])
    # (1, 2) targets would broadcast against every example.
    with pytest.raises(
        ValueError, match=r"targets must have shape \(m, k\) = \(3, 2\) .* \(1, 2\)"
    ):
        problems.mse_loss(OUTPUTS, np.eye(2)[LABELS][:1])


def test_load_flat_digits_keeps_the_first_examples():
    problem = problems.load_flat("digits", num_train=7, num_test=4)
    dataset = data.load("digits")
    # 8×8 images flattened to 64 float64 features.
    assert problem.x_train.shape == (7, 64) and problem.x_test.shape == (4, 64)
    assert problem.x_train.dtype == np.float64
    np.testing.assert_array_equal(problem.y_train, np.eye(10)[dataset.train.labels[:7]])
    np.testing.assert_array_equal(problem.test_labels, dataset.test.labels[:4])
    everything = problems.load_flat("digits", num_train=7)
    assert everything.x_test.shape == (len(dataset.test.labels), 64)
    np.testing.assert_array_equal(everything.x_test[:4], problem.x_test)
