"""`l2reg.checks`: one message format, "{name} must be {allowed}, got {value}", on one line."""

import numpy as np
import pytest

from l2reg import checks


@pytest.mark.parametrize("value", [1, 2.5, np.float32(3.0), np.int64(4)])
def test_number_returns_a_real_number_that_passes_as_a_float(value):
    assert checks.number("lr", value, lambda x: x > 0, "> 0") == float(value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-1.0, "-1.0"),
        (float("nan"), "nan"),
        (True, "True"),  # a bool is not a number
        ("0.1", "'0.1'"),
        (np.zeros((3, 4), np.float32), "a float32[3, 4] array"),
    ],
)
def test_number_names_the_argument_and_quotes_the_value_on_one_line(value, shown):
    with pytest.raises(ValueError) as error:
        checks.number("lr", value, lambda x: x > 0, "finite and > 0")
    assert str(error.value) == f"lr must be finite and > 0, got {shown}"


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (0, {}, "steps must be an integer ≥ 1, got 0"),
        (2.0, {}, "steps must be an integer ≥ 1, got 2.0"),
        (False, {}, "steps must be an integer ≥ 1, got False"),
        (11, {"maximum": 10}, "steps must be an integer in [1, 10], got 11"),
        ("x", {"none_ok": True}, "steps must be None or an integer ≥ 1, got 'x'"),
    ],
)
def test_integer_refuses_non_integers_and_values_out_of_range(value, kwargs, message):
    with pytest.raises(ValueError) as error:
        checks.integer("steps", value, **kwargs)
    assert str(error.value) == message


def test_integer_passes_integers_in_range_and_none_when_allowed():
    assert checks.integer("steps", np.int32(7), maximum=7) == 7
    assert checks.integer("seed", -3, minimum=checks.INT32_MIN) == -3
    assert checks.integer("bucket_size", None, none_ok=True) is None


def test_first_bad_entry_quotes_one_entry_and_its_index():
    values = np.array([[1.0, 2.0], [-3.0, -4.0]])
    with pytest.raises(ValueError) as error:
        checks.first_bad_entry("l2", values, values < 0, "be ≥ 0")
    assert str(error.value) == "l2 must be ≥ 0, got -3.0 at index (1, 0)"
    checks.first_bad_entry("l2", values, np.zeros_like(values, bool), "be ≥ 0")  # none bad
    with pytest.raises(ValueError, match=r"^l2 must be ≥ 0, got -1.0$"):
        checks.first_bad_entry("l2", np.float64(-1.0), np.bool_(True), "be ≥ 0")
