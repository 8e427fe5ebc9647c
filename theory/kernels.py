"""Homogeneous ReLU networks and their infinite-width kernels, from ``neural_tangents.stax``.

The networks have no biases and use the NTK parameterization, so their output is homogeneous
of degree ``depth`` (the number of weight layers) in the parameters: ``f(aθ) = a^depth·f(θ)``,
the setting of `theory.dynamics`. The same stax triple gives the finite network (``init_fn``,
``apply_fn``, with exactly the kernel's parameterization) and the analytic kernel
(``kernel_fn``).
"""

import math

import jax

from theory import checks, compat

nt = compat.import_neural_tangents()
stax = nt.stax

ARCHITECTURES = ("dense", "conv")
# Axes of a batch of inputs of each architecture.
_INPUT_AXES = {"dense": ("n", "features"), "conv": ("n", "height", "width", "channels")}


def relu_network(
    depth: int,
    *,
    width: int = 512,
    num_outputs: int = 1,
    architecture: str = "dense",
    weight_std: float = math.sqrt(2.0),
    readout_std: float = 1.0,
):
    """A bias-free ReLU network of ``depth`` weight layers in the NTK parameterization.

    ``dense``: ``depth − 1`` hidden Dense(width) + ReLU layers and a Dense readout.
    ``conv``: ``depth − 1`` hidden 3×3 'SAME' Conv(width) + ReLU layers, Flatten and a Dense
    readout; inputs are NHWC images.

    Args:
      depth: number of weight layers, ≥ 1 (the homogeneity degree of the output).
      width: hidden width (channels for ``conv``) of the finite network, ≥ 1; the kernel does
        not depend on it.
      num_outputs: outputs of the finite network (classes), ≥ 1; the kernel is per output.
      architecture: one of ``ARCHITECTURES``.
      weight_std: standard deviation of hidden weights times sqrt(fan-in), finite and > 0;
        sqrt(2) keeps ReLU activations at unit scale.
      readout_std: the same for the readout layer.

    Returns:
      The stax triple ``(init_fn, apply_fn, kernel_fn)``.
    """
    depth = checks.integer("depth", depth)
    width = checks.integer("width", width)
    num_outputs = checks.integer("num_outputs", num_outputs)
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    weight_std = checks.number("weight_std", weight_std, strictly_positive=True)
    readout_std = checks.number("readout_std", readout_std, strictly_positive=True)
    if architecture == "dense":
        hidden = stax.Dense(width, W_std=weight_std, b_std=None, parameterization="ntk")
        head = []
    else:
        hidden = stax.Conv(
            width, (3, 3), padding="SAME", W_std=weight_std, b_std=None, parameterization="ntk"
        )
        head = [stax.Flatten()]
    layers = [hidden, stax.Relu()] * (depth - 1)
    readout = stax.Dense(num_outputs, W_std=readout_std, b_std=None, parameterization="ntk")
    return stax.serial(*layers, *head, readout)


def ntk(
    x1: jax.typing.ArrayLike,
    x2: jax.typing.ArrayLike | None = None,
    *,
    depth: int,
    architecture: str = "dense",
    batch_size: int = 0,
    **network_options,
) -> jax.Array:
    """Infinite-width NTK ``Θ₀(x1, x2)`` of `relu_network` (one output).

    Args:
      x1: (n1, features) inputs for ``dense``, (n1, height, width, channels) images for
        ``conv``; finite, n1 ≥ 1.
      x2: (n2, ...) inputs of the same shape but for n2 ≥ 1, or None for ``x2 = x1``.
      depth: number of weight layers.
      architecture: one of ``ARCHITECTURES``.
      batch_size: when > 0, computes the kernel in blocks of this many rows and columns
        (``neural_tangents.batch``) to bound memory, as conv kernels need; it must divide
        n1 and n2.
      **network_options: ``weight_std``, ``readout_std`` of `relu_network`.

    Returns:
      (n1, n2) float array.
    """
    _, _, kernel_fn = relu_network(depth, architecture=architecture, **network_options)
    if x2 is None:
        (x1,) = check_inputs(architecture, x1=x1)
    else:
        x1, x2 = check_inputs(architecture, x1=x1, x2=x2)
    batch_size = checks.integer("batch_size", batch_size, minimum=0)
    if batch_size:
        n1, n2 = len(x1), len(x1 if x2 is None else x2)
        if n1 % batch_size or n2 % batch_size:
            raise ValueError(f"batch_size must divide n1 = {n1} and n2 = {n2}, got {batch_size}")
        kernel_fn = nt.batch(kernel_fn, batch_size=batch_size, device_count=0)
    return kernel_fn(x1, x2, "ntk")


def check_inputs(architecture: str, **inputs: jax.typing.ArrayLike) -> list[jax.Array]:
    """The named input batches as arrays, checked to be finite with the layout of ``architecture``.

    Args:
      architecture: one of ``ARCHITECTURES``.
      **inputs: arrays by name (the name is quoted in errors), each (num, ...) with num ≥ 1;
        all must have the shape of the first, but for ``num``.

    Returns:
      The arrays, in the order given.
    """
    axes = _INPUT_AXES[architecture]
    arrays = [checks.finite_array(name, x) for name, x in inputs.items()]
    first_name, first = next(iter(inputs)), arrays[0]
    for name, array in zip(inputs, arrays, strict=True):
        if array.ndim != len(axes):
            raise ValueError(
                f"{name} must have shape ({', '.join(axes)}) for architecture {architecture!r}, "
                f"got shape {array.shape}"
            )
        if array.shape[0] == 0:
            raise ValueError(
                f"{name} must hold at least one input (n ≥ 1), got shape {array.shape}"
            )
        if array.shape[1:] != first.shape[1:]:
            raise ValueError(
                f"{name} must have the input shape of {first_name}, {first.shape[1:]}, "
                f"got shape {array.shape}"
            )
    return arrays
