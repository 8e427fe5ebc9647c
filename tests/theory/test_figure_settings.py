"""theory.figure_settings: the checks of the theory figures, before any work and without JAX."""

import subprocess
import sys

import pytest

from l2reg import data
from theory import figure_settings
from theory.figure_settings import FigureSettings


def test_the_data_set_table_matches_l2reg_data():
    assert tuple(figure_settings.DATASETS) == data.EMBEDDED
    for name, sizes in figure_settings.DATASETS.items():
        dataset = data.load(name)
        features = len(dataset.preprocess(dataset.test.images[:1]).reshape(-1))
        assert sizes == (
            len(dataset.train.labels),
            len(dataset.test.labels),
            features,
            dataset.num_classes,
        ), name


def test_importing_the_settings_loads_no_heavy_module():
    code = (
        "import sys; import theory.figure_settings; "
        "print([m for m in ('jax', 'tensorflow', 'neural_tangents') if m in sys.modules])"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.stdout.strip() == "[]", completed.stderr


def test_check_returns_the_settings_with_python_numbers():
    settings = figure_settings.check(FigureSettings(l2s=[1e-2, 1e-3], widths=[8, 16]))
    assert settings.l2s == (1e-2, 1e-3) and settings.widths == (8, 16)
    assert settings.sizes() == (300, 297, 64, 10)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "cifar7"}, "dataset must be one of digits, mnist1d, got 'cifar7'"),
        (
            {"num_train": 1501},
            "num_train must be an integer in [1, 1500] (the train examples of 'digits'), got 1501",
        ),
        (
            {"dataset": "mnist1d", "num_test": 1001},
            "num_test must be an integer in [1, 1000] (the test examples of 'mnist1d'), got 1001",
        ),
        (
            {"finite_num_train": 2000},
            "finite_num_train must be an integer in [1, 1500] (the train examples of 'digits'), "
            "got 2000",
        ),
        ({"depth": 1}, "depth must be an integer in [2, 1000] (2: one hidden layer), got 1"),
        (
            {"finite_depth": 10**6},
            "finite_depth must be an integer in [2, 1000] (2: one hidden layer), got 1000000",
        ),
        ({"num_times": 0}, "num_times must be an integer ≥ 1, got 0"),
        ({"num_times": 2.5}, "num_times must be an integer ≥ 1, got 2.5"),
        ({"finite_l2": 0.0}, "finite_l2 must be finite and > 0, got 0.0"),
        ({"lr": float("nan")}, "lr must be finite and > 0, got nan"),
        ({"l2s": ()}, "l2s must be one or more numbers, got none"),
        ({"l2s": (1e-3, -1.0)}, "l2s must be finite and > 0, got [0.001, -1.0]"),
        (
            {"l2s": (1e-3, 1e-4, 0.001)},
            "l2s must be distinct, got 0.001 twice in [0.001, 0.0001, 0.001]",
        ),
        ({"widths": (8, 0)}, "widths must be integers ≥ 1, got [8, 0]"),
    ],
)
def test_bad_settings_are_one_line_errors(changes, message):
    with pytest.raises(ValueError) as error:
        figure_settings.check(FigureSettings()._replace(**changes))
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("changes", "name"),
    [({"widths": (128, 10**8)}, "widths"), ({"num_times": 10**9}, "num_times")],
)
def test_sizes_beyond_memory_are_refused_naming_the_setting_and_the_bound(changes, name):
    available = figure_settings.available_memory() / 2**30
    with pytest.raises(ValueError) as error:
        figure_settings.check(FigureSettings()._replace(**changes))
    message = str(error.value)
    assert message.startswith(f"{name} must be small enough for the ") and "\n" not in message
    assert f"this machine has {available:.3g} GiB), got " in message


def test_memory_needed_counts_the_arrays_that_coexist():
    needed = figure_settings.memory_needed(FigureSettings(num_test=100, widths=(10,)))
    n, m, k = 300, 100, 10
    assert needed["kernels"] == (8 * (2 * n * n + m * n), "num_train")
    assert needed["curves"] == (8 * 400 * (n + m) * k, "num_times")
    # depth 2: no width × width layer; the pair and its gradients, one activation per layer.
    assert needed["finite network"] == (8 * (4 * (64 * 10 + 10 * k) + (64 + m) * 10), "widths")
