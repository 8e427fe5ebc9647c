"""Model FLOPs of a JAX function, counted on its jaxpr: backend-independent.

XLA's cost analysis depends on the backend (on GPU the compiled program's analysis leaves out
convolutions that run as cuDNN custom calls), so throughput in TFLOP/s is computed from this
count instead: the multiply-adds of every convolution and matrix product, ×2, including those
of the backward pass when the function differentiates. Element-wise work is not counted, as in
the usual "model FLOPs" convention. WRN-28-10 forward and backward on one 32×32 image: 31.5 GFLOP.
"""

import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
from jax.extend import core as jax_core

__all__ = ["matmul_flops"]


def _sub_jaxprs(params: dict[str, Any]) -> Iterator[jax_core.Jaxpr]:
    for value in params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, jax_core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax_core.Jaxpr):
                yield item


def _equation_flops(equation) -> int:
    name = equation.primitive.name
    output = equation.outvars[0].aval
    if name == "dot_general":
        (contracting, _), _ = equation.params["dimension_numbers"]
        lhs = equation.invars[0].aval
        return 2 * math.prod(output.shape) * math.prod(lhs.shape[d] for d in contracting)
    if name == "conv_general_dilated":
        rhs = equation.invars[1].aval
        rhs_spec = equation.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
        per_output = rhs.shape[rhs_spec[1]] * math.prod(rhs.shape[d] for d in rhs_spec[2:])
        # A dilated input (the backward pass of a strided convolution) is mostly inserted
        # zeros: only one in prod(lhs_dilation) of the window's taps does real work.
        dilation = math.prod(equation.params["lhs_dilation"])
        return 2 * math.prod(output.shape) * per_output // dilation
    return 0


def _jaxpr_flops(jaxpr: jax_core.Jaxpr) -> int:
    total = 0
    for equation in jaxpr.eqns:
        total += _equation_flops(equation)
        name = equation.primitive.name
        if name == "scan":
            repeats = equation.params["length"]
        elif name == "shard_map":  # the body sees one device's shard: count every device
            repeats = equation.params["mesh"].size
        else:
            repeats = 1
        total += repeats * sum(_jaxpr_flops(sub) for sub in _sub_jaxprs(equation.params))
    return total


def matmul_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs (2 × multiply-adds) of the convolutions and matrix products of ``fn(*args)``.

    Traces ``fn`` (no computation runs; arguments may be `jax.ShapeDtypeStruct`s) and sums
    over its jaxpr, nested calls included (`jit`; `scan` × its length; `shard_map` × its
    mesh's devices, so the count is global; both branches of a `cond` are counted).
    """
    return _jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)
