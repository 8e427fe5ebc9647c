"""Infinite-width dynamics with L2: limits, closed form vs ODE solver, and relation 1."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import theory
from l2reg import relations
from theory import compat, dynamics, problems


def random_problem(n=24, m=9, k=3, seed=0, depth=2):
    """A depth-`depth` NTK on random inputs and random targets."""
    rng = np.random.default_rng(seed)
    x_train, x_test = rng.normal(size=(n, 5)), rng.normal(size=(m, 5))
    return (
        np.asarray(theory.ntk(x_train, depth=depth)),
        np.asarray(theory.ntk(x_test, x_train, depth=depth)),
        rng.normal(size=(n, k)),
    )


def test_shapes_for_scalar_and_array_times():
    k_train_train, k_test_train, y_train = random_problem()
    predict = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=0.01, degree=3)
    f_train, f_test = predict(7.0)
    assert f_train.shape == (24, 3) and f_test.shape == (9, 3)
    steps = np.array([0.0, 7.0, 300.0])
    f_trains, f_tests = predict(steps)
    assert f_trains.shape == (3, 24, 3) and f_tests.shape == (3, 9, 3)
    np.testing.assert_allclose(f_trains[1], f_train, rtol=1e-12)
    np.testing.assert_allclose(f_tests[1], f_test, rtol=1e-12)
    np.testing.assert_array_equal(f_trains[0], 0.0)


def test_numpy_scalars_are_accepted():
    k_train_train, k_test_train, y_train = random_problem()
    exact = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=1e-2, degree=3, lr=0.5)
    numpy = theory.l2_flow_mse(
        k_train_train,
        k_test_train,
        y_train,
        l2=np.float32(1e-2),
        degree=np.int64(3),
        lr=np.float64(0.5),
    )
    np.testing.assert_allclose(numpy(10.0)[1], exact(10.0)[1], rtol=1e-6)


def test_learning_rate_rescales_time():
    k_train_train, k_test_train, y_train = random_problem()
    slow = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=0.01, degree=2, lr=0.5)
    fast = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=0.01, degree=2, lr=2.0)
    np.testing.assert_allclose(slow(40.0)[1], fast(10.0)[1], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("degree", [1, 3])
def test_no_l2_is_neural_tangents_gradient_descent(degree):
    nt = compat.import_neural_tangents()
    k_train_train, k_test_train, y_train = random_problem()
    steps = np.array([0.5, 5.0, 50.0, 5000.0])
    f_train, f_test = theory.l2_flow_mse(
        k_train_train, k_test_train, y_train, l2=0.0, degree=degree, lr=0.3
    )(steps)
    reference = nt.predict.gradient_descent_mse(k_train_train, y_train, learning_rate=0.3)
    ref_train, ref_test = reference(steps, np.zeros_like(y_train), np.zeros((9, 3)), k_test_train)
    np.testing.assert_allclose(f_train, ref_train, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(f_test, ref_test, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("s", [0.0, 0.25, 1 / 3, 0.45])
def test_scaled_upper_gamma_matches_scipy_in_both_branches(s):
    # Arguments on both sides of the switch from the power series to the continued fraction.
    z = np.array([1e-6, 0.01, 0.3, 1.0, 2.5, 3.99, 4.0, 4.01, 6.0, 12.0, 40.0, 300.0])
    assert z.min() < dynamics._CONTINUED_FRACTION_MIN_ARGUMENT < z.max()
    # exp(z)·Γ(s, z), with Γ(s, z) = gammaincc(s, z)·Γ(s), and Γ(0, z) = E₁(z).
    if s == 0:
        reference = np.exp(z) * special.exp1(z)
    else:
        reference = np.exp(z) * special.gammaincc(s, z) * special.gamma(s)
    scaled = dynamics._scaled_upper_gamma(s, jnp.asarray(z), jnp.log(z))
    np.testing.assert_allclose(scaled, reference, rtol=1e-10)


@pytest.mark.parametrize("degree", [2, 3])
def test_closed_form_agrees_with_the_ode_solver(degree):
    k_train_train, k_test_train, y_train = random_problem()
    l2 = 0.01
    # Every form of the exact mode solution is exercised: modes with κ/(2·l2·(degree − 1))
    # below the switch (power series in it) and above it (incomplete gamma), where at early
    # times the gamma function's argument κ/(2·l2·(degree − 1))·exp(−2·l2·(degree − 1)·τ) is
    # still above the switch to its continued fraction.
    ratios = np.linalg.eigvalsh(k_train_train) / y_train.size / (2 * l2 * (degree - 1))
    assert ratios.min() < dynamics._SERIES_MAX_RATIO < ratios.max()
    assert ratios.max() > dynamics._CONTINUED_FRACTION_MIN_ARGUMENT
    steps = np.geomspace(0.1, 20 / l2, 25)
    closed = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=l2, degree=degree)
    solved = theory.l2_flow(
        k_train_train,
        k_test_train,
        y_train,
        l2=l2,
        degree=degree,
        loss="mse",
        rtol=1e-10,
        atol=1e-12,
    )
    for exact, numerical in zip(closed(steps), solved(steps), strict=True):
        np.testing.assert_allclose(exact, numerical, rtol=0, atol=1e-7)


def test_linear_model_converges_to_kernel_ridge_regression():
    k_train_train, k_test_train, y_train = random_problem()
    l2 = 0.003
    predict = theory.linear_model(k_train_train, k_test_train, y_train, l2=l2)
    ridge = l2 * y_train.size  # the loss is a mean over the n·k entries
    weights = np.linalg.solve(k_train_train + ridge * np.eye(24), y_train)
    for steps in (np.inf, 200 / l2):
        f_train, f_test = predict(steps)
        np.testing.assert_allclose(f_train, k_train_train @ weights, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(f_test, k_test_train @ weights, rtol=1e-8, atol=1e-10)


def test_linear_model_without_l2_on_a_rank_deficient_kernel_is_the_minimum_norm_interpolant():
    # 100 digits of 64 pixels: the depth-1 kernel has rank 54, the rest rounding.
    problem = problems.load_flat("digits", num_train=100, num_test=50)
    k_train_train = np.asarray(theory.ntk(problem.x_train, depth=1))
    k_test_train = np.asarray(theory.ntk(problem.x_test, problem.x_train, depth=1))
    assert np.linalg.matrix_rank(k_train_train, hermitian=True) < 100
    weights = np.linalg.pinv(k_train_train, rcond=1e-10, hermitian=True) @ problem.y_train
    predict = theory.linear_model(k_train_train, k_test_train, problem.y_train, l2=0.0)
    for steps in (np.inf, 1e14):
        f_train, f_test = predict(steps)
        np.testing.assert_allclose(f_train, k_train_train @ weights, rtol=0, atol=1e-9)
        np.testing.assert_allclose(f_test, k_test_train @ weights, rtol=0, atol=1e-9)


def test_network_without_l2_on_duplicate_inputs_is_the_minimum_norm_interpolant():
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(10, 5)), rng.normal(size=(9, 5))
    x_train = np.concatenate([x_train, x_train[:2]])  # two inputs twice: rank 10 of 12
    y_train = rng.normal(size=(12, 3))
    k_train_train = np.asarray(theory.ntk(x_train, depth=3))
    k_test_train = np.asarray(theory.ntk(x_test, x_train, depth=3))
    weights = np.linalg.pinv(k_train_train, rcond=1e-10, hermitian=True) @ y_train
    predict = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=0.0, degree=3)
    f_train, f_test = predict(np.inf)
    np.testing.assert_allclose(f_train, k_train_train @ weights, rtol=0, atol=1e-9)
    np.testing.assert_allclose(f_test, k_test_train @ weights, rtol=0, atol=1e-9)


@pytest.mark.parametrize("l2", [1e-12, 1e-16, 1e-300])
def test_tiny_l2_is_continuous_with_no_l2(l2):
    k_train_train, k_test_train, y_train = random_problem()
    steps = np.array([0.1, 1.0, 10.0, 100.0])
    tiny = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=l2, degree=3)(steps)
    none = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=0.0, degree=3)(steps)
    for with_l2, without in zip(tiny, none, strict=True):
        # L2 moves the outputs by about (degree + 2·(degree − 1))·l2·τ of their size.
        scale = np.abs(without).max() * (1e-10 + 10 * l2 * steps.max())
        np.testing.assert_allclose(with_l2, without, rtol=0, atol=scale)


def test_network_output_vanishes_but_linear_model_does_not():
    k_train_train, k_test_train, y_train = random_problem()
    l2 = 0.01
    network = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=l2, degree=3)
    linear = theory.linear_model(k_train_train, k_test_train, y_train, l2=l2)
    peak = np.abs(network(np.geomspace(1, 1 / l2, 20))[1]).max()
    assert np.abs(network(30 / l2)[1]).max() < 1e-20 * peak
    np.testing.assert_array_equal(network(np.inf)[1], 0.0)
    assert np.abs(linear(30 / l2)[1]).max() > 0.1 * peak


@pytest.mark.slow
def test_test_loss_minimum_and_accuracy_peak_on_digits(digits_kernels):
    """Relation 1 from first principles: on 300 digits with a depth-3 ReLU NTK the step of
    the test-loss minimum scales as (l2·lr)^s, s in [−1.1, −0.85], over two decades of l2."""
    k_train_train, k_test_train, y_train, test_labels = digits_kernels
    y_test = np.eye(10)[test_labels]
    l2s, lr = np.array([1e-3, 1e-4, 1e-5]), 0.5
    loss_minima, final_drops = [], []
    for l2 in l2s:
        steps = np.geomspace(1, 30 / (l2 * lr), 400)
        _, f_test = theory.l2_flow_mse(
            k_train_train, k_test_train, y_train, l2=float(l2), degree=3, lr=lr
        )(steps)
        f_test = np.asarray(f_test)
        test_loss = problems.mse_loss(f_test, y_test)
        loss_minima.append(steps[np.argmin(test_loss)])
        curve = problems.accuracy(f_test, test_labels)
        peak = relations.t_star(steps, curve)
        # Accuracy rises to its peak, then declines once the kernel has decayed.
        assert peak.peak_accuracy > curve[0] + 0.1
        final_drops.append(peak.peak_accuracy - curve[-1])
    fit = relations.fit_t_star(l2s, lr, np.array(loss_minima))
    assert -1.1 <= fit.slope <= -0.85, fit
    assert min(final_drops) > 0.03, final_drops


def test_linear_model_accuracy_has_no_late_decline(digits_kernels):
    k_train_train, k_test_train, y_train, test_labels = digits_kernels
    for l2 in (1e-2, 1e-4):
        steps = np.geomspace(1, 300 / l2, 200)
        curve = problems.accuracy(
            np.asarray(theory.linear_model(k_train_train, k_test_train, y_train, l2=l2)(steps)[1]),
            test_labels,
        )
        # Within one test image of the best accuracy at the end.
        assert curve[-1] >= curve.max() - 1 / len(test_labels), (l2, curve.max(), curve[-1])


def test_cross_entropy_flow_reaches_the_stationary_point_of_the_linear_model():
    k_train_train, k_test_train, y_train = random_problem()
    labels = np.eye(3)[np.argmax(y_train, axis=1)]
    l2 = 0.05
    f_train, f_test = theory.linear_model(k_train_train, k_test_train, labels, l2=l2, loss="xent")(
        400 / l2
    )
    # Stationarity of equation (1) at degree 1: l2·f(x) = −Θ(x, X)·∂loss/∂f(X).
    gradient = (jax.nn.softmax(f_train, axis=-1) - labels) / len(labels)
    np.testing.assert_allclose(l2 * f_train, -k_train_train @ gradient, atol=1e-6)
    np.testing.assert_allclose(l2 * f_test, -k_test_train @ gradient, atol=1e-6)
    assert problems.accuracy(f_train, np.argmax(labels, axis=1)) > 0.5


def test_cross_entropy_network_fits_then_vanishes():
    k_train_train, k_test_train, y_train = random_problem()
    labels = np.eye(3)[np.argmax(y_train, axis=1)]
    l2 = 0.05
    predict = theory.l2_flow(k_train_train, k_test_train, labels, l2=l2, degree=2)
    f_train, _ = predict(np.array([3.0 / l2, 40.0 / l2]))
    assert np.abs(f_train[1]).max() < 1e-3 * np.abs(f_train[0]).max()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"l2": -1e-3}, "l2"),
        ({"l2": float("nan")}, "l2"),
        ({"degree": 0}, "degree"),
        ({"degree": 2.0}, "degree"),
        ({"lr": 0.0}, "lr"),
        ({"y_train": np.zeros((5, 3))}, "k_train_train"),
        ({"y_train": np.zeros(24)}, "y_train"),
        ({"k_test_train": np.zeros((9, 23))}, "k_test_train"),
        ({"k_train_train": np.full((24, 24), np.nan)}, r"k_train_train must be finite, got nan"),
        ({"y_train": np.zeros((24, 0))}, r"y_train must have shape \(n, k\) with n, k ≥ 1"),
        ({"y_train": np.ones((24, 3), complex)}, "y_train must hold real numbers"),
        ({"k_train_train": np.triu(np.ones((24, 24)))}, "k_train_train must be symmetric"),
    ],
)
def test_bad_arguments_raise_one_line_errors(change, match):
    k_train_train, k_test_train, y_train = random_problem()
    arguments = dict(
        k_train_train=k_train_train,
        k_test_train=k_test_train,
        y_train=y_train,
        l2=1e-3,
        degree=2,
        lr=1.0,
    )
    arguments.update(change)
    for flow in (theory.l2_flow_mse, theory.l2_flow):
        with pytest.raises(ValueError, match=match) as error:
            flow(**arguments)
        assert "\n" not in str(error.value)


def test_bad_steps_and_loss_raise():
    k_train_train, k_test_train, y_train = random_problem()
    predict = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=1e-3, degree=2)
    for steps in (-1.0, np.ones((2, 2)), np.nan, np.array([]), 1j, True):
        with pytest.raises(ValueError, match="t must"):
            predict(steps)
    with pytest.raises(ValueError, match="loss"):
        theory.l2_flow(k_train_train, k_test_train, y_train, l2=1e-3, degree=2, loss="hinge")
    labels = np.eye(3)[np.argmax(y_train, axis=1)]
    with pytest.raises(ValueError, match="finite"):
        theory.l2_flow(k_train_train, k_test_train, labels, l2=1e-3, degree=2)(np.inf)


@pytest.mark.parametrize("flow", [theory.l2_flow_mse, theory.l2_flow])
def test_a_training_kernel_that_is_not_positive_semidefinite_is_a_one_line_error(flow):
    k_train_train, k_test_train, y_train = random_problem()
    labels = np.eye(3)[np.argmax(y_train, axis=1)]
    points = np.random.default_rng(1).normal(size=(24, 5))
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)  # symmetric, indefinite
    for matrix in (-k_train_train, distances):
        with pytest.raises(ValueError) as error:
            flow(matrix, k_test_train, labels, l2=1e-3, degree=2)
        message = str(error.value)
        assert message.startswith("k_train_train must be positive semi-definite, got eigenvalue -")
        assert "\n" not in message


def test_bad_steps_name_the_first_bad_entry_in_one_line():
    k_train_train, k_test_train, y_train = random_problem()
    labels = np.eye(3)[np.argmax(y_train, axis=1)]
    steps = np.geomspace(1, 1e4, 400)
    steps[123] = -1.0
    predict = theory.l2_flow_mse(k_train_train, k_test_train, y_train, l2=1e-3, degree=2)
    with pytest.raises(ValueError) as error:
        predict(steps)
    assert str(error.value) == "t must hold steps ≥ 0 (inf allowed), got -1.0 at index (123,)"
    steps[123] = np.inf
    with pytest.raises(ValueError) as error:
        theory.l2_flow(k_train_train, k_test_train, labels, l2=1e-3, degree=2)(steps)
    assert str(error.value) == "t must be finite for the ODE solver, got inf at index (123,)"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_steps": 0}, "max_steps must be an integer ≥ 1, got 0"),
        ({"max_steps": 1e4}, "max_steps must be an integer ≥ 1, got 10000.0"),
        ({"rtol": 0.0}, "rtol must be a finite number > 0, got 0.0"),
        ({"rtol": np.inf}, "rtol must be a finite number > 0, got inf"),
        ({"atol": -1e-8}, "atol must be a finite number > 0, got -1e-08"),
        ({"atol": np.nan}, "atol must be a finite number > 0, got nan"),
        ({"solver": "dopri5"}, "solver must be an adaptive diffrax solver instance"),
        ({"solver": diffrax.Euler()}, "solver must be an adaptive diffrax solver instance"),
        (
            {"y_train": 2 * np.eye(3)[[0, 1, 2, 0]]},
            "y_train must hold probability vectors (entries ≥ 0 summing to 1) for loss='xent', "
            "got row 0 = [2.0, 0.0, 0.0]",
        ),
    ],
)
def test_bad_solver_options_raise_when_the_flow_is_built(options, message):
    k_train_train, k_test_train, _ = random_problem(n=4, m=2)
    arguments = {"y_train": np.eye(3)[[0, 1, 2, 0]], "l2": 1e-3, "degree": 2, **options}
    with pytest.raises(ValueError) as error:
        theory.l2_flow(k_train_train, k_test_train, **arguments)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_mse_targets_need_not_be_probabilities():
    k_train_train, k_test_train, y_train = random_problem(n=4, m=2)
    theory.l2_flow(k_train_train, k_test_train, y_train, l2=1e-3, degree=2, loss="mse")


def test_solver_out_of_steps_is_a_one_line_error():
    k_train_train, k_test_train, y_train = random_problem(n=4, m=2)
    predict = theory.l2_flow(
        k_train_train, k_test_train, y_train, l2=1e-3, degree=2, loss="mse", max_steps=3
    )
    with pytest.raises(RuntimeError) as error:
        predict(np.array([1.0, 1e3]))
    message = str(error.value)
    assert message.startswith("the ODE solver failed before step t = 1000 with max_steps=3: ")
    assert "max_steps" in message.split(": ", 1)[1] and "\n" not in message
