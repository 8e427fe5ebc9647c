"""The stax kernels against closed forms written here."""

import math

import jax
import numpy as np
import pytest

import theory


def arccosine_ntk(x1, x2, weight_std, readout_std):
    """NTK of x ↦ readout_std/√w·Σ_j v_j·relu(weight_std/√d·w_j·x), no biases, w → ∞.

    Θ = readout_std²·(E[relu(u)·relu(u')] + E[relu'(u)·relu'(u')]·q12), with (u, u') Gaussian
    of covariance q = weight_std²·x·x'/d, and the arc-cosine kernels of degree 1 and 0:
    E[relu·relu] = √(q1·q2)·(sin θ + (π − θ)·cos θ)/(2π), E[relu'·relu'] = (π − θ)/(2π).
    """
    d = x1.shape[1]
    q12 = weight_std**2 * x1 @ x2.T / d
    q1 = weight_std**2 * np.sum(x1**2, axis=1) / d
    q2 = weight_std**2 * np.sum(x2**2, axis=1) / d
    norms = np.sqrt(np.outer(q1, q2))
    angle = np.arccos(np.clip(q12 / norms, -1, 1))
    nngp = norms * (np.sin(angle) + (np.pi - angle) * np.cos(angle)) / (2 * np.pi)
    derivative = (np.pi - angle) / (2 * np.pi)
    return readout_std**2 * (nngp + derivative * q12)


@pytest.mark.parametrize("weight_std, readout_std", [(math.sqrt(2), 1.0), (1.3, 0.7)])
def test_two_layer_ntk_is_the_arccosine_kernel(weight_std, readout_std):
    x1 = np.random.default_rng(0).normal(size=(7, 5))
    x2 = np.random.default_rng(1).normal(size=(4, 5))
    kernel = theory.ntk(x1, x2, depth=2, weight_std=weight_std, readout_std=readout_std)
    np.testing.assert_allclose(kernel, arccosine_ntk(x1, x2, weight_std, readout_std), rtol=1e-10)


def test_one_layer_conv_network_is_linear():
    images = np.random.default_rng(0).normal(size=(3, 4, 4, 2))
    kernel = theory.ntk(images, depth=1, architecture="conv", batch_size=1)
    flat = images.reshape(3, -1)
    np.testing.assert_allclose(kernel, flat @ flat.T / flat.shape[1], rtol=1e-10)


def test_conv_kernel_is_a_kernel():
    images = np.random.default_rng(0).normal(size=(4, 5, 5, 1))
    kernel = np.asarray(theory.ntk(images, depth=3, architecture="conv"))
    np.testing.assert_allclose(kernel, kernel.T, rtol=1e-10)
    assert np.linalg.eigvalsh(kernel).min() > 0


def test_finite_network_is_homogeneous_of_degree_depth():
    init_fn, apply_fn, _ = theory.relu_network(3, width=16, num_outputs=2)
    x = np.random.default_rng(0).normal(size=(5, 4))
    _, params = init_fn(jax.random.key(0), x.shape)
    scaled = jax.tree.map(lambda p: 1.7 * p, params)
    np.testing.assert_allclose(apply_fn(scaled, x), 1.7**3 * apply_fn(params, x), rtol=1e-10)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"depth": 0}, "depth"),
        ({"depth": 2, "width": 0}, "width"),
        ({"depth": 2, "architecture": "rnn"}, "architecture"),
    ],
)
def test_bad_network_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        theory.relu_network(**options)
