"""Model FLOPs of a JAX function, counted on its jaxpr: backend-independent.

XLA's cost analysis depends on the backend (on GPU the compiled program's analysis leaves out
convolutions that run as cuDNN custom calls), so throughput in TFLOP/s is computed from this
count instead: the multiply-adds of every convolution and matrix product, ×2, including those
of the backward pass when the function differentiates. Element-wise work is not counted, as in
the usual "model FLOPs" convention. WRN-28-10 forward and backward on one 32×32 image: 31.5 GFLOP.

`matmul_flops_by_layer` splits the count by the Flax module that ran each product, under the
names XLA gives the ops (`WideResNet/WideBlock_2/Conv_1` for the forward convolution and both
of its gradients), so a profile's per-layer kernel times can be turned into TFLOP/s.
"""

import collections
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import jax
from jax.extend import core as jax_core

__all__ = ["layer_name", "matmul_flops", "matmul_flops_by_layer"]

# A transformation wrapped around a scope: `jvp(WideResNet)`, `transpose(jvp(WideResNet))`.
_WRAPPED = re.compile(r"^[\w.]+\((.*)\)$")


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


def _scoped_flops(jaxpr: jax_core.Jaxpr, scope: str = "") -> Iterator[tuple[str, int]]:
    """(name stack, FLOPs) of each product in `jaxpr` and its nested jaxprs, `scope` first."""
    for equation in jaxpr.eqns:
        stack = "/".join(part for part in (scope, str(equation.source_info.name_stack)) if part)
        if flops := _equation_flops(equation):
            yield stack, flops
        name = equation.primitive.name
        if name == "scan":
            repeats = equation.params["length"]
        elif name == "shard_map":  # the body sees one device's shard: count every device
            repeats = equation.params["mesh"].size
        else:
            repeats = 1
        for sub in _sub_jaxprs(equation.params):
            for inner_stack, flops in _scoped_flops(sub, stack):
                yield inner_stack, repeats * flops


def layer_name(name_stack: str) -> str:
    """The module path in a JAX name stack or XLA op name, transformations left out.

    `jit(step)/transpose(jvp(WideResNet))/WideBlock_2/Conv_1` → `WideResNet/WideBlock_2/Conv_1`:
    `jit(...)` parts are dropped (XLA names ops after the outermost jit, a jaxpr does not) and
    `jvp(...)`, `transpose(...)`, `vmap(...)` wrappers are unwrapped.
    """
    parts = []
    for part in name_stack.split("/"):
        if not part or part.startswith(("jit(", "pjit(")):
            continue
        while match := _WRAPPED.match(part):
            part = match.group(1)
        parts.append(part)
    return "/".join(parts)


def matmul_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs (2 × multiply-adds) of the convolutions and matrix products of ``fn(*args)``.

    Traces ``fn`` (no computation runs; arguments may be `jax.ShapeDtypeStruct`s) and sums
    over its jaxpr, nested calls included (`jit`; `scan` × its length; `shard_map` × its
    mesh's devices, so the count is global; both branches of a `cond` are counted).
    """
    return sum(flops for _, flops in _scoped_flops(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr))


def matmul_flops_by_layer(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, int]:
    """`matmul_flops`, split by the module that ran each product (`layer_name` of its scope).

    A layer's count holds its forward products and their gradients: for a convolution, the
    forward pass, the input gradient and the filter gradient have one count each. Products
    outside any named scope are under "". The values sum to `matmul_flops(fn, *args)`.
    """
    by_layer = collections.Counter()
    for stack, flops in _scoped_flops(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr):
        by_layer[layer_name(stack)] += flops
    return dict(by_layer)
