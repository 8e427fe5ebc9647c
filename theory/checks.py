"""Argument checks shared by the theory module.

Each raises a one-line ValueError that names the argument, quotes the bad value and says what
is allowed, and returns the value converted for use, so that callers check before any work.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Theory code calls these as checks.integer and checks.first_bad_entry.
from l2reg.checks import first_bad_entry, integer  # noqa: F401
from l2reg.checks import number as real_number


def number(name: str, value: Any, *, strictly_positive: bool = False) -> float:
    """``value`` as a float, checked to be a finite real number ≥ 0 (> 0 if strictly_positive).

    Python and NumPy scalars are accepted; bools and arrays are not (`l2reg.checks.number`).
    """
    bound = "> 0" if strictly_positive else "≥ 0"
    return real_number(
        name,
        value,
        lambda x: math.isfinite(x) and (x > 0 if strictly_positive else x >= 0),
        f"a finite number {bound}",
    )


def real_array(name: str, value: Any) -> jax.Array:
    """``value`` as a JAX array, checked to have an integer or floating dtype (not bool)."""
    dtype = value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype
    if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise ValueError(f"{name} must hold real numbers (integer or floating), got dtype {dtype}")
    return jnp.asarray(value)


def finite_array(name: str, value: Any) -> jax.Array:
    """`real_array` whose entries are all finite."""
    array = real_array(name, value)
    first_bad_entry(name, array, ~jnp.isfinite(array), "be finite")
    return array


def targets(y_train: Any) -> jax.Array:
    """Training targets as a finite (n, k) array with n, k ≥ 1."""
    y_train = finite_array("y_train", y_train)
    if y_train.ndim != 2 or 0 in y_train.shape:
        raise ValueError(f"y_train must have shape (n, k) with n, k ≥ 1, got shape {y_train.shape}")
    return y_train
