"""Infinite-width theory of training with L2 regularization (Lewkowycz & Gur-Ari, 2020).

`l2_flow_mse` (exact), `l2_flow` (ODE solver, cross-entropy) and `linear_model` give the
function-space dynamics of a homogeneous network of a given degree under gradient descent
with L2; `relu_network` and `ntk` build bias-free ReLU networks and their NTK with
neural-tangents (imported through `theory.compat`); `train_finite_network` trains the finite
network for comparison; `hessian_min_eig` measures the curvature that sets the ~1/(l2·lr)
time scale; `theory.figures` draws the figures of `experiments.theory_figures`.

The names below load their module (and JAX, neural-tangents) on first use, so that
`theory.figure_settings` can check a launcher's flags without them.
"""

from l2reg import lazy

_HOMES = {
    "hessian_min_eig": "theory.hessian",
    "l2_flow": "theory.dynamics",
    "l2_flow_mse": "theory.dynamics",
    "lanczos_tridiagonal": "theory.hessian",
    "linear_model": "theory.dynamics",
    "ntk": "theory.kernels",
    "relu_network": "theory.kernels",
    "train_finite_network": "theory.finite",
}

__all__ = sorted(_HOMES)


__getattr__, __dir__ = lazy.exports("theory", _HOMES)
