"""Number, integer and array-entry argument checks shared by the library, its launchers and the
theory package.

Each raises a one-line ValueError that names the argument, quotes the bad value and says what
is allowed, before any work starts.
"""

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

# Step counters and PRNG seeds are int32 on device.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def is_integer(value: Any) -> bool:
    """Whether `value` is a Python or NumPy integer (a bool is not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def number(name: str, value: Any, predicate: Callable[[float], bool], allowed: str) -> float:
    """`value` as a float, checked to be a real number (a bool is not) for which `predicate`
    holds; the error reads "{name} must be {allowed}, got {value!r}" (an array named by its
    dtype and shape, so that it stays on one line)."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if not (real and predicate(float(value))):
        shown = f"a {describe_array(value)}" if isinstance(value, np.ndarray) else repr(value)
        raise ValueError(f"{name} must be {allowed}, got {shown}")
    return float(value)


def describe_array(array: Any) -> str:
    """`float32[3, 3] array`: an array named by its dtype and shape, for messages that stay on
    one line however large the array."""
    return f"{array.dtype}{list(array.shape)} array"


def integer(
    name: str,
    value: Any,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    none_ok: bool = False,
) -> int | None:
    """`value` as an int, checked to be an integer in [minimum, maximum] (or None, if
    `none_ok`); the error reads "{name} must be an integer in [..], got {value!r}"."""
    if none_ok and value is None:
        return None
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f"≥ {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        allowed = f"None or an integer {bound}" if none_ok else f"an integer {bound}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def first_bad_entry(name: str, array: Any, bad: Any, allowed: str) -> None:
    """Raises "{name} must {allowed}, got {value} at index {index}" for the first entry of
    `array` where the boolean array `bad` (of the same shape) is True, if any.

    Quoting one entry keeps the message on one line however large the array is; the index is
    left out for a scalar.
    """
    bad = np.asarray(bad)
    if bad.any():
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        where = f" at index {index}" if index else ""
        raise ValueError(f"{name} must {allowed}, got {np.asarray(array)[index]}{where}")
