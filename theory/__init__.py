"""Infinite-width theory of training with L2 regularization (Lewkowycz & Gur-Ari, 2020).

`l2_flow_mse` (exact), `l2_flow` (ODE solver, cross-entropy) and `linear_model` give the
function-space dynamics of a homogeneous network of a given degree under gradient descent
with L2; `relu_network` and `ntk` build bias-free ReLU networks and their NTK with
neural-tangents (imported through `theory.compat`); `train_finite_network` trains the finite
network for comparison; `hessian_min_eig` measures the curvature that sets the ~1/(l2·lr)
time scale.
"""

from theory.dynamics import l2_flow, l2_flow_mse, linear_model
from theory.finite import train_finite_network
from theory.hessian import hessian_min_eig, lanczos_tridiagonal
from theory.kernels import ntk, relu_network

__all__ = [
    "hessian_min_eig",
    "l2_flow",
    "l2_flow_mse",
    "lanczos_tridiagonal",
    "linear_model",
    "ntk",
    "relu_network",
    "train_finite_network",
]
