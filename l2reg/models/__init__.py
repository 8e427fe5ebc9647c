"""Flax Linen models and their registry.

    model = l2reg.models.create("wrn28_10", num_classes=10, dtype="bfloat16")
    variables = model.init(rng, images, train=False)
    logits = model.apply(variables, images, train=False)
    logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])

Every model takes `parameterization` ('standard' | 'ntk'), `use_bias`, `dtype` (compute dtype;
parameters stay float32), `axis_name` (batch-norm statistics averaged over that mapped axis)
and `fused_batch_norm` (True: `batch_norm.BatchNorm`, batch norm and the ReLU after it with a
hand-written gradient; False: flax's `nn.BatchNorm` and `nn.relu`, differentiated by JAX; the
same variables and function either way), and returns float32 logits (N, num_classes).
"""

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from l2reg.models.cnn import CNN
from l2reg.models.layers import NORMALIZATIONS, PARAMETERIZATIONS
from l2reg.models.mlp import MLP
from l2reg.models.resnet import STAGE_SIZES, ResNet
from l2reg.models.wide_resnet import WideResNet

__all__ = ["CNN", "MLP", "NAMES", "ResNet", "WideResNet", "create"]

_WRN_NAME = re.compile(r"wrn(\d+)_(\d+)")
NAMES = ("mlp", "cnn", "wrn{depth}_{width}", *(f"resnet{depth}" for depth in STAGE_SIZES))
_NORMALIZATIONS = {
    MLP: NORMALIZATIONS,
    CNN: NORMALIZATIONS,
    WideResNet: (None, "batch"),
    ResNet: (None, "batch"),
}


def _family(name: str) -> tuple[type[nn.Module], dict[str, Any]]:
    """Model class and the options fixed by the name."""
    if name == "mlp":
        return MLP, {}
    if name == "cnn":
        return CNN, {}
    if match := _WRN_NAME.fullmatch(name):
        depth, width = int(match[1]), int(match[2])
        if (depth - 4) % 6 or depth < 10 or width < 1:
            raise ValueError(
                f"model {name!r}: a Wide ResNet needs depth = 6n+4 >= 10 and width >= 1 "
                "(e.g. wrn28_10, wrn16_4)"
            )
        return WideResNet, {"depth": depth, "width": width}
    if name.startswith("resnet") and name[6:].isdigit() and int(name[6:]) in STAGE_SIZES:
        return ResNet, {"depth": int(name[6:])}
    raise ValueError(f"unknown model {name!r}; known: {', '.join(NAMES)}")


def _check_positive_ints(key: str, value: Any) -> None:
    if isinstance(value, int | bool) or not isinstance(value, Sequence) or not value:
        raise TypeError(f"{key}={value!r} must be a non-empty sequence of positive ints")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"{key}={value!r} must be a non-empty sequence of positive ints")


def _check_options(model: type[nn.Module], name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validates options against the model's fields; returns them with `dtype` normalized."""
    fixed = {"parent", "name", "num_classes", "depth", "width"}
    allowed = [f.name for f in dataclasses.fields(model) if f.init and f.name not in fixed]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(allowed)}"
        )
    options = dict(options)
    if options.get("parameterization", "standard") not in PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization={options['parameterization']!r} is not one of {PARAMETERIZATIONS}"
        )
    if options.get("normalization") not in _NORMALIZATIONS[model]:
        raise ValueError(
            f"model {name!r}: normalization={options['normalization']!r} is not one of "
            f"{_NORMALIZATIONS[model]}"
        )
    for key in ("use_bias", "fused_batch_norm"):
        if not isinstance(options.get(key, True), bool):
            raise TypeError(f"{key}={options[key]!r} must be a bool")
    axis_name = options.get("axis_name")
    if axis_name is not None and not isinstance(axis_name, str):
        raise TypeError(f"axis_name={axis_name!r} must be a str or None")
    for key in ("widths", "channels"):
        if key in options:
            _check_positive_ints(key, options[key])
            options[key] = tuple(options[key])
    if "dtype" in options:
        options["dtype"] = _check_dtype(options["dtype"])
    return options


def _check_dtype(value: Any) -> jnp.dtype:
    """The compute dtype `value` names, if JAX can run in it."""
    # jnp.dtype(None) is float64, which JAX would silently truncate to float32 without x64.
    try:
        dtype = None if value is None else jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype={value!r} is not a floating-point dtype such as 'float32'")
    if jax.dtypes.canonicalize_dtype(dtype) != dtype:
        raise ValueError(f"dtype={value!r} needs jax_enable_x64; without it use 'float32'")
    return dtype


def create(name: str, *, num_classes: int, **options: Any) -> nn.Module:
    """Builds the model called `name` (see NAMES) with `num_classes` outputs.

    Args:
      name: 'mlp', 'cnn', 'wrn{depth}_{width}' (depth = 6n+4, e.g. 'wrn28_10') or
        'resnet{18,34,50,101,152}'.
      num_classes: number of logits per example.
      **options: `parameterization` ('standard' | 'ntk'), `use_bias` (bool), `dtype` (compute
        dtype, e.g. 'bfloat16'; 'float64' needs jax_enable_x64), `axis_name` (str | None),
        `fused_batch_norm` (bool) on every model; `widths` (hidden widths) for mlp;
        `channels` (per stage) for cnn; `normalization` (None | 'batch' | 'layer' for mlp and
        cnn, None | 'batch' for the residual networks).

    Returns:
      An unbound `flax.linen.Module`; call it as `model.apply(variables, x, train=...)`.

    Raises:
      ValueError / TypeError: unknown name or option, or a bad option value, in one line.
    """
    model, fixed = _family(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive int")
    return model(num_classes=num_classes, **fixed, **_check_options(model, name, options))
