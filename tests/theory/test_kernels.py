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


def same_padded_patches(images):
    """(n, height, width, 9·channels): each pixel's 3×3 neighbourhood, zeros outside the image."""
    _, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    shifted = [padded[:, i : i + height, j : j + width] for i in range(3) for j in range(3)]
    return np.concatenate(shifted, axis=-1)


@pytest.mark.parametrize(
    "weight_std, readout_std, batch_size", [(math.sqrt(2), 1.0, 0), (1.3, 0.7, 1)]
)
def test_two_layer_conv_ntk_is_the_pixel_mean_of_patch_arccosine_kernels(
    weight_std, readout_std, batch_size
):
    # A 3×3 'SAME' conv of infinitely many channels, ReLU, Flatten and a dense readout: each
    # pixel's pre-activations are those of a dense layer on its 3×3 patch (fan-in 9·channels),
    # and the readout weights of different pixels are independent, so the NTK is the mean over
    # pixels of the two-layer dense NTK of the patches. Both sides are closed forms in float64:
    # they agree to rounding. Non-square 4×5 images of 2 channels tell a transposed or 1-D
    # filter, another padding or a missing conv layer from the real one.
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(3, 4, 5, 2)), rng.normal(size=(2, 4, 5, 2))
    kernel = theory.ntk(
        x1,
        x2,
        depth=2,
        architecture="conv",
        batch_size=batch_size,
        weight_std=weight_std,
        readout_std=readout_std,
    )
    patches1, patches2 = same_padded_patches(x1), same_padded_patches(x2)
    per_pixel = [
        arccosine_ntk(patches1[:, i, j], patches2[:, i, j], weight_std, readout_std)
        for i in range(4)
        for j in range(5)
    ]
    np.testing.assert_allclose(kernel, np.mean(per_pixel, axis=0), rtol=1e-10)


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


def test_numpy_integers_are_accepted():
    _, _, kernel_fn = theory.relu_network(np.int64(2), width=np.int64(8), num_outputs=np.int32(3))
    x = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(kernel_fn(x, None, "ntk"), theory.ntk(x, depth=2), rtol=1e-12)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"depth": 0}, "depth must be an integer ≥ 1, got 0"),
        ({"depth": 2.0}, "depth must be an integer ≥ 1, got 2.0"),
        ({"width": 0}, "width must be an integer ≥ 1, got 0"),
        ({"num_outputs": 0}, "num_outputs must be an integer ≥ 1, got 0"),
        ({"num_outputs": True}, "num_outputs must be an integer ≥ 1, got True"),
        ({"architecture": "rnn"}, "architecture must be one of ('dense', 'conv'), got 'rnn'"),
        ({"weight_std": 0.0}, "weight_std must be a finite number > 0, got 0.0"),
        ({"weight_std": -1.0}, "weight_std must be a finite number > 0, got -1.0"),
        ({"weight_std": math.nan}, "weight_std must be a finite number > 0, got nan"),
        ({"weight_std": math.inf}, "weight_std must be a finite number > 0, got inf"),
        ({"readout_std": 0.0}, "readout_std must be a finite number > 0, got 0.0"),
        ({"readout_std": "1"}, "readout_std must be a finite number > 0, got '1'"),
    ],
)
def test_bad_network_options_raise_one_line_errors(options, message):
    with pytest.raises(ValueError) as error:
        theory.relu_network(**{"depth": 2, **options})
    assert str(error.value) == message


IMAGES = np.zeros((4, 3, 3, 1))


@pytest.mark.parametrize(
    "inputs, options, message",
    [
        (
            (np.zeros((4, 5)),),
            {"architecture": "conv"},
            "x1 must have shape (n, height, width, channels) for architecture 'conv', "
            "got shape (4, 5)",
        ),
        (
            (IMAGES,),
            {},
            "x1 must have shape (n, features) for architecture 'dense', got shape (4, 3, 3, 1)",
        ),
        (
            (np.zeros((4, 5)), np.zeros((2, 4))),
            {},
            "x2 must have the input shape of x1, (5,), got shape (2, 4)",
        ),
        ((np.zeros((0, 5)),), {}, "x1 must hold at least one input (n ≥ 1), got shape (0, 5)"),
        (
            (np.zeros((4, 5)), np.zeros((0, 5))),
            {},
            "x2 must hold at least one input (n ≥ 1), got shape (0, 5)",
        ),
        ((np.full((4, 5), np.nan),), {}, "x1 must be finite, got nan at index (0, 0)"),
        ((np.zeros((4, 5), complex),), {}, "x1 must hold real numbers"),
        (
            (IMAGES,),
            {"architecture": "conv", "batch_size": 3},
            "batch_size must divide n1 = 4 and n2 = 4, got 3",
        ),
        (
            (IMAGES, IMAGES[:2]),
            {"architecture": "conv", "batch_size": 4},
            "batch_size must divide n1 = 4 and n2 = 2, got 4",
        ),
        (
            (IMAGES,),
            {"architecture": "conv", "batch_size": -1},
            "batch_size must be an integer ≥ 0",
        ),
    ],
)
def test_bad_kernel_inputs_raise_one_line_errors(inputs, options, message):
    with pytest.raises(ValueError) as error:
        theory.ntk(*inputs, depth=2, **options)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
