"""Homogeneous ReLU networks and their infinite-width kernels, from ``neural_tangents.stax``.

The networks have no biases and use the NTK parameterization, so their output is homogeneous
of degree ``depth`` (the number of weight layers) in the parameters: ``f(aθ) = a^depth·f(θ)``,
the setting of `theory.dynamics`. The same stax triple gives the finite network (``init_fn``,
``apply_fn``, with exactly the kernel's parameterization) and the analytic kernel
(``kernel_fn``).
"""

import math

import jax
import jax.numpy as jnp

from theory import compat

nt = compat.import_neural_tangents()
stax = nt.stax

ARCHITECTURES = ("dense", "conv")


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
      width: hidden width (channels for ``conv``) of the finite network; the kernel does not
        depend on it.
      num_outputs: outputs of the finite network (classes); the kernel is per output.
      architecture: one of ``ARCHITECTURES``.
      weight_std: standard deviation of hidden weights times sqrt(fan-in); sqrt(2) keeps
        ReLU activations at unit scale.
      readout_std: the same for the readout layer.

    Returns:
      The stax triple ``(init_fn, apply_fn, kernel_fn)``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer ≥ 1, got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an integer ≥ 1, got {width!r}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
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
      x1: (n1, ...) inputs, flattened features for ``dense``, NHWC images for ``conv``.
      x2: (n2, ...) inputs, or None for ``x2 = x1``.
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
    if batch_size:
        kernel_fn = nt.batch(kernel_fn, batch_size=batch_size, device_count=0)
    return kernel_fn(jnp.asarray(x1), None if x2 is None else jnp.asarray(x2), "ntk")
