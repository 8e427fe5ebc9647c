"""Gradient flow of infinitely wide homogeneous networks trained with L2 regularization.

A network whose output is homogeneous of degree ``degree`` in its parameters (an L-layer ReLU
network without biases: ``f(aθ) = a^L f(θ)``) trained by gradient descent with learning rate
``lr`` on ``loss + (l2 / 2)·‖θ‖²`` follows, at infinite width and in time ``τ = lr·t``
(t in SGD steps), the function-space equation (Lewkowycz & Gur-Ari, 2020)

    ∂τ f(x) = −exp(−2·l2·(degree − 1)·τ) · Θ₀(x, X) · ∂loss/∂f(X) − l2·degree·f(x),      (1)

with ``X`` the training inputs, ``Θ₀`` the infinite-width NTK at initialization and
``f₀ = 0`` (the mean over initializations). The first term is kernel gradient flow with a kernel
that decays as the weights shrink; the second is Euler's identity ``θ·∇θ f = degree·f``
applied to the L2 gradient.

For the mean squared error ``loss = ½·mean over the n·k entries of (f(X) − y)²`` (the
convention of ``neural_tangents.predict.gradient_descent_mse``), equation (1) is linear and
`l2_flow_mse` solves it exactly in the eigenbasis of ``Θ₀(X, X)``. For cross-entropy,
`l2_flow` integrates (1) with an adaptive ODE solver (diffrax). `linear_model` is the
``degree = 1`` case, whose kernel never decays and whose MSE solution converges to kernel ridge
regression.

Like ``neural_tangents.predict``, each function validates its inputs, does the work that does
not depend on time once (the eigendecomposition, the kernel products) and returns a function
``predict(t)`` of the training step.

Precision: in float32 the outputs are accurate to about 1e-4 of their largest value (measured
on 300 digits, depth 3, l2 from 1e-2 to 1e-5); once the network's output has decayed below
that (``l2·τ ≳ 3``) its sign pattern, hence accuracy, is noise. Enable 64-bit floats
(``jax.config.update("jax_enable_x64", True)`` or ``with jax.enable_x64(True):``) to follow
the decay.
"""

import functools
import math
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from theory import checks

Predictor = Callable[[jax.typing.ArrayLike], tuple[jax.Array, jax.Array]]

LOSSES = ("mse", "xent")

# Modes with κ/(2·l2·(degree − 1)) at most this value use the power series in that ratio;
# larger ones use the scaled incomplete gamma function (see `_mode_response`).
_SERIES_MAX_RATIO = 1.0
_RATIO_SERIES_TERMS = 20  # the last term is below 1/20! ≈ 4e-19
# Terms of the power series of Γ(s, z) below `_CONTINUED_FRACTION_MIN_ARGUMENT`: the last is
# below 4^40/40! ≈ 1e-24.
_POWER_SERIES_TERMS = 40
# The scaled incomplete gamma function uses its continued fraction above this argument
# (where it converges in well under `_CONTINUED_FRACTION_TERMS` terms) and its power series
# below it.
_CONTINUED_FRACTION_MIN_ARGUMENT = 4.0
_CONTINUED_FRACTION_TERMS = 48
# Relative asymmetry allowed in a training kernel: far above the rounding of a float32 kernel
# computed in blocks, far below that of a matrix that is not a kernel.
_SYMMETRY_RTOL = 1e-4
# Most negative eigenvalue of a training kernel, relative to its largest |eigenvalue|, taken for
# rounding in float32 and in float64. `jnp.linalg.eigh` returns the eigenvalues of a positive
# semi-definite kernel with errors up to about n·eps·max|eigenvalue| (n·eps is 1e-4 at
# n = 1000 in float32; measured on digits: −1e-16 for kernels computed in float64, −5e-9 for a
# float32 kernel cast to float64), while a matrix that is not a kernel has negative eigenvalues
# of the order of its largest (−1 for −K, −0.2 for a distance matrix).
_PSD_RTOL_FLOAT32, _PSD_RTOL_FLOAT64 = 1e-3, 1e-6
# How far from 1 the rows of cross-entropy targets may sum (float32 rounding of a probability
# vector is far smaller).
_PROBABILITY_ATOL = 1e-4


def _validate(k_train_train, k_test_train, y_train, l2, degree, lr) -> tuple:
    """Checks the arguments shared by every flow.

    Returns:
      ``(k_train_train, k_test_train, y_train, l2, degree, lr)``, arrays and Python numbers.
    """
    l2 = checks.number("l2", l2)
    degree = checks.integer("degree", degree)
    lr = checks.number("lr", lr, strictly_positive=True)
    y_train = checks.targets(y_train)
    k_train_train = checks.finite_array("k_train_train", k_train_train)
    k_test_train = checks.finite_array("k_test_train", k_test_train)
    n = y_train.shape[0]
    if k_train_train.shape != (n, n):
        raise ValueError(
            f"k_train_train must have shape (n, n) = {(n, n)} to match y_train, "
            f"got shape {k_train_train.shape}"
        )
    if k_test_train.ndim != 2 or k_test_train.shape[1] != n:
        raise ValueError(
            f"k_test_train must have shape (m, n) with n = {n}, got shape {k_test_train.shape}"
        )
    # The eigendecomposition reads one triangle only: an asymmetric matrix (a test kernel passed
    # as the training one, say) would give a silently wrong answer.
    asymmetry = float(jnp.max(jnp.abs(k_train_train - k_train_train.T)))
    scale = float(jnp.max(jnp.abs(k_train_train)))
    if asymmetry > _SYMMETRY_RTOL * scale:
        raise ValueError(
            f"k_train_train must be symmetric, got max |K − Kᵀ| = {asymmetry:.3g} "
            f"with max |K| = {scale:.3g}"
        )
    return k_train_train, k_test_train, y_train, l2, degree, lr


def _check_positive_semidefinite(evals: jax.Array) -> None:
    """Raises unless the eigenvalues of ``k_train_train`` are ≥ 0 up to rounding.

    Without this check `l2_flow_mse` would clip the negative ones to 0 while `l2_flow` would
    grow along them: two different wrong answers.
    """
    largest = float(jnp.max(jnp.abs(evals)))
    smallest = float(jnp.min(evals))
    rtol = _PSD_RTOL_FLOAT64 if evals.dtype == jnp.float64 else _PSD_RTOL_FLOAT32
    if smallest < -rtol * largest:
        raise ValueError(
            f"k_train_train must be positive semi-definite, got eigenvalue {smallest:.3g} "
            f"with max |eigenvalue| {largest:.3g}"
        )


def _steps_to_time(t, lr) -> tuple[jax.Array, bool]:
    """Validates steps ``t`` (scalar or 1-D, ≥ 0) and returns ``(τ = lr·t, t was scalar)``."""
    t = checks.real_array("t", t)
    if t.ndim > 1 or t.size == 0:
        raise ValueError(
            f"t must be a scalar or a non-empty 1-D array of steps, got shape {t.shape}"
        )
    checks.first_bad_entry("t", t, jnp.isnan(t) | (t < 0), "hold steps ≥ 0 (inf allowed)")
    return lr * jnp.atleast_1d(t).astype(jnp.result_type(float)), t.ndim == 0


def _scaled_upper_gamma(s: float, z: jax.Array, log_z: jax.Array) -> jax.Array:
    """``exp(z)·Γ(s, z)`` for ``0 ≤ s < 1`` and ``z ≥ 0``, without overflow at large ``z``.

    ``log_z`` is ``log(z)``, passed separately so that ``z`` may underflow to 0 (at late
    times) while ``Γ(0, z) ≈ −γ − log(z)`` stays finite.
    """
    # Below the threshold, Γ(s, z) = Γ(s) − z^s/s − Σ_{j≥1} (−1)^j·z^(s+j)/(j!·(s+j)), where
    # Γ(s) − z^s/s becomes −γ − log(z) at s = 0 (jax.scipy.special.exp1 is avoided: it does
    # not terminate on some arrays that mix small and large arguments).
    z_small = jnp.minimum(z, _CONTINUED_FRACTION_MIN_ARGUMENT)
    log_z_small = jnp.minimum(log_z, math.log(_CONTINUED_FRACTION_MIN_ARGUMENT))
    orders = jnp.arange(1, _POWER_SERIES_TERMS, dtype=z.dtype)
    coefficients = jnp.cumprod(-1 / orders)  # (−1)^j / j!
    tail = jnp.sum(
        coefficients * z_small[..., None] ** orders / (s + orders), axis=-1
    )  # Σ_{j≥1} (−1)^j·z^j/(j!·(s+j))
    if s == 0:
        small = -np.euler_gamma - log_z_small - tail
    else:
        power = jnp.exp(s * log_z_small)
        small = math.gamma(s) - power / s - power * tail
    small = jnp.exp(z_small) * small

    # Γ(s, z) = exp(−z)·z^s / (z + 1 − s − 1·(1 − s)/(z + 3 − s − 2·(2 − s)/(z + 5 − s − …))),
    # evaluated by the modified Lentz method with a fixed number of terms.
    z_large = jnp.maximum(z, _CONTINUED_FRACTION_MIN_ARGUMENT)
    tiny = jnp.finfo(z.dtype).tiny

    def lentz_step(i, carry):
        denominator, c, d, fraction = carry
        coefficient = -i * (i - s)
        denominator = denominator + 2
        d = coefficient * d + denominator
        d = 1 / jnp.where(jnp.abs(d) < tiny, tiny, d)
        c = denominator + coefficient / c
        c = jnp.where(jnp.abs(c) < tiny, tiny, c)
        return denominator, c, d, fraction * c * d

    first = z_large + 1 - s
    _, _, _, fraction = jax.lax.fori_loop(
        1,
        _CONTINUED_FRACTION_TERMS,
        lentz_step,
        (first, jnp.full_like(z_large, 1 / tiny), 1 / first, 1 / first),
    )
    large = z_large**s * fraction
    return jnp.where(z < _CONTINUED_FRACTION_MIN_ARGUMENT, small, large)


def _mode_response(
    kappa: jax.Array, tau: jax.Array, l2: jax.typing.ArrayLike, degree: int, decays: bool
) -> jax.Array:
    """Solution of one eigenmode of equation (1) for MSE, divided by its eigenvalue and target.

    A mode with eigenvalue ``κ`` (of ``Θ₀(X, X)/(n·k)``) and target ``y`` obeys
    ``g' = −κ·exp(−aτ)·(g − y) − b·g``, ``g(0) = 0``, with ``a = 2·l2·(degree − 1)`` and
    ``b = l2·degree``. With the integrating factor and ``q = exp(−as)``,

        g(τ) = κ·y·ψ(τ),   ψ(τ) = exp(−bτ)/a · ∫_Q^1 q^(−p)·exp(−c·(q − Q)) dq,

    where ``Q = exp(−aτ)``, ``c = κ/a`` and ``p = b/a = degree/(2·(degree − 1))`` (so
    ``s = 1 − p`` is in [0, ½)). With ``v = c·q`` the integral is
    ``c^(p−1)·[e^x·Γ(s, x) − e^(x−c)·e^c·Γ(s, c)]`` at ``x = c·Q`` (upper incomplete gamma;
    the exponential integral when degree = 2); for ``c ≤ 1`` its power series
    ``e^x·Σ_j (−c)^j/j! · (1 − Q^(s+j))/(s+j)`` avoids the cancellation of the two terms.
    Without kernel decay (``a = 0``: l2 = 0 or degree = 1), ``ψ = (1 − exp(−(κ+b)τ))/(κ+b)``,
    and ``ψ(∞) = 0`` for a null mode (``κ + b = 0``), whose target `l2_flow_mse` sets to 0.

    Returning ``ψ`` rather than ``g`` keeps modes with ``κ → 0`` exact for test predictions,
    which need ``g/κ``.

    Args:
      kappa: (n,) eigenvalues of ``Θ₀(X, X)/(n·k)``, ≥ 0.
      tau: (T,) times ``lr·t``, ≥ 0, possibly inf.
      l2: L2 coefficient λ (may be traced).
      degree: homogeneity degree of the network.
      decays: whether the kernel decays, ``l2 > 0 and degree > 1`` (static).

    Returns:
      (T, n) array ``ψ``.
    """
    tau = tau[:, None]
    finite_tau = jnp.where(jnp.isinf(tau), 0.0, tau)
    decay_rate, shrink_rate = 2 * l2 * (degree - 1), l2 * degree
    if not decays:
        rate = kappa + shrink_rate
        safe_rate = jnp.where(rate > 0, rate, 1.0)
        psi = jnp.where(rate > 0, -jnp.expm1(-safe_rate * finite_tau) / safe_rate, finite_tau)
        # A null mode (κ = 0, no L2) never moves; ψ(∞) = 0, not ∞, keeps ψ·y finite (y = 0).
        return jnp.where(jnp.isinf(tau), jnp.where(rate > 0, 1 / safe_rate, 0.0), psi)

    s = (degree - 2) / (2 * (degree - 1))  # 1 − shrink_rate/decay_rate
    ratio = kappa / decay_rate
    survival = jnp.exp(-decay_rate * finite_tau)  # Q

    # Power series for small ratio; the clipped ratio keeps the unused branch finite.
    small_ratio = jnp.minimum(ratio, _SERIES_MAX_RATIO)
    orders = s + jnp.arange(_RATIO_SERIES_TERMS, dtype=tau.dtype)
    inverse_orders = -1 / jnp.arange(1, _RATIO_SERIES_TERMS, dtype=tau.dtype)
    coefficients = jnp.cumprod(jnp.concatenate([jnp.ones(1, tau.dtype), inverse_orders]))
    # coefficients[j] = (−1)^j / j!
    safe_orders = jnp.where(orders > 0, orders, 1.0)
    integrals = jnp.where(
        orders > 0,
        -jnp.expm1(-safe_orders * decay_rate * finite_tau[..., None]) / safe_orders,
        decay_rate * finite_tau[..., None],
    )  # (1 − Q^(s+j))/(s+j), (T, 1, J)
    series = jnp.exp(small_ratio * survival) * jnp.sum(
        coefficients * small_ratio[:, None] ** jnp.arange(_RATIO_SERIES_TERMS) * integrals, axis=-1
    )

    # Incomplete gamma form for large ratio.
    large_ratio = jnp.maximum(ratio, _SERIES_MAX_RATIO)
    large_x = large_ratio * survival
    log_large_ratio = jnp.log(large_ratio)
    # e^(x − c) with x − c = −c·(1 − Q) from expm1: at small l2 both c and x are huge and
    # their difference would lose every digit.
    gamma_form = large_ratio ** (-s) * (
        _scaled_upper_gamma(s, large_x, log_large_ratio - decay_rate * finite_tau)
        - jnp.exp(large_ratio * jnp.expm1(-decay_rate * finite_tau))
        * _scaled_upper_gamma(s, large_ratio, log_large_ratio)
    )

    integral = jnp.where(ratio <= _SERIES_MAX_RATIO, series, gamma_form)
    psi = jnp.exp(-shrink_rate * finite_tau) * integral / decay_rate
    # The kernel decays and the L2 term drives every mode to zero.
    return jnp.where(jnp.isinf(tau), 0.0, psi)


@functools.partial(jax.jit, static_argnames="degree")
def _predict_mse(train_map, test_map, kappa, y_eigen, tau, l2, degree):
    """(T, n, k) and (T, m, k) outputs at times ``tau`` from the eigenbasis of `l2_flow_mse`."""
    decays = degree > 1
    psi = _mode_response(kappa, tau, l2, degree, decays)
    if decays:  # l2 = 0 has no kernel decay; a traced l2 cannot choose the branch
        psi = jnp.where(l2 > 0, psi, _mode_response(kappa, tau, l2, degree, False))
    weighted = psi[..., None] * y_eigen
    return (
        jnp.einsum("ij,tjk->tik", train_map, weighted),
        jnp.einsum("ij,tjk->tik", test_map, weighted),
    )


def l2_flow_mse(
    k_train_train: jax.typing.ArrayLike,
    k_test_train: jax.typing.ArrayLike,
    y_train: jax.typing.ArrayLike,
    *,
    l2: float,
    degree: int,
    lr: float = 1.0,
) -> Predictor:
    """Exact infinite-width MSE dynamics with L2, equation (1) of this module.

    Solves, for the loss ``½·mean over the n·k entries of (f(X) − y)²``,

        ∂τ f(x) = −exp(−2·l2·(degree − 1)·τ)·Θ₀(x, X)·(f(X) − y)/(n·k) − l2·degree·f(x),

    with ``f₀ = 0``, exactly in the eigenbasis of ``Θ₀(X, X)`` (see `_mode_response`). Test
    predictions follow from the training ones: ``f(x) = Θ₀(x, X)·Θ₀(X, X)⁺·f(X)`` at all times,
    computed without inverting small eigenvalues. Eigenvalues within rounding of zero
    (``≤ √n·eps·max``) are null modes, never learned: with ``l2 = 0`` and a rank-deficient
    kernel (duplicate inputs, more examples than features at degree 1) ``predict(inf)`` is the
    minimum-norm interpolant ``f(x) = Θ₀(x, X)·Θ₀(X, X)⁺·y``.

    Args:
      k_train_train: (n, n) NTK ``Θ₀(X, X)`` between training inputs (one output; the kernel
        of k outputs is ``Θ₀ ⊗ I_k``), positive semi-definite.
      k_test_train: (m, n) NTK ``Θ₀(X*, X)`` between test and training inputs.
      y_train: (n, k) training targets.
      l2: L2 coefficient λ of ``(λ/2)·‖θ‖²``, ≥ 0.
      degree: homogeneity degree L of the network (its number of layers for a bias-free ReLU
        network), ≥ 1; 1 is a linear model.
      lr: learning rate η; time is ``τ = lr·t``.

    Returns:
      ``predict(t)``: ``t`` in steps (≥ 0, inf allowed), a scalar or a 1-D array of length T.
      Returns ``(f_train, f_test)`` of shapes ``(n, k), (m, k)`` for a scalar and
      ``(T, n, k), (T, m, k)`` for an array.
    """
    k_train_train, k_test_train, y_train, l2, degree, lr = _validate(
        k_train_train, k_test_train, y_train, l2, degree, lr
    )
    normalization = y_train.size
    evals, evecs = jnp.linalg.eigh(k_train_train)
    _check_positive_semidefinite(evals)
    # Eigenvalues within rounding of 0 are null modes: Θ₀ moves neither f(X) nor f(X*) along
    # them, so their targets are never learned. Dropping them makes the l2 = 0 limit the
    # minimum-norm interpolant, not ∞·0. eigh puts a null space's eigenvalues at about
    # eps·max (measured on digits up to n = 1500, float32 and float64); √n·eps·max leaves a
    # margin of 10 to 40 and keeps the genuine modes of float32 kernels that the n·eps·max of
    # numpy.linalg.matrix_rank would drop (digits, n = 1000, depth 2: 5e-5·max < 1.2e-4·max).
    n = evals.shape[0]
    null = evals <= math.sqrt(n) * jnp.finfo(evals.dtype).eps * jnp.max(evals)
    kappa = jnp.where(null, 0.0, evals) / normalization
    y_eigen = jnp.where(null[:, None], 0.0, evecs.T @ y_train)  # (n, k)
    train_map = evecs * kappa  # f(X) = V·diag(κ)·(ψ·y_eigen)
    test_map = k_test_train @ evecs / normalization  # f(X*) = Θ₀(X*, X)·V/(n·k)·(ψ·y_eigen)

    def predict(t):
        tau, scalar = _steps_to_time(t, lr)
        f_train, f_test = _predict_mse(
            train_map, test_map, kappa, y_eigen, tau.astype(kappa.dtype), l2, degree
        )
        return (f_train[0], f_test[0]) if scalar else (f_train, f_test)

    return predict


def _loss_gradient(loss: str, f_train: jax.Array, y_train: jax.Array) -> jax.Array:
    """Gradient of the mean training loss with respect to the (n, k) outputs ``f(X)``."""
    if loss == "mse":  # ½·mean over the n·k entries of (f − y)²
        return (f_train - y_train) / y_train.size
    # Cross-entropy averaged over the n examples, y a probability vector per example.
    return (jax.nn.softmax(f_train, axis=-1) - y_train) / y_train.shape[0]


@functools.partial(
    jax.jit, static_argnames=("degree", "loss", "solver", "rtol", "atol", "max_steps")
)
def _solve_flow(kernel, y_train, tau, l2, *, degree, loss, solver, rtol, atol, max_steps):
    """Equation (1) solved with diffrax: (T, n + m, k) outputs at sorted times ``tau``.

    Also returns diffrax's result, ``diffrax.RESULTS.successful`` unless the solver failed.
    ``kernel`` is ``[Θ₀(X, X); Θ₀(X*, X)]``, (n + m, n), so that each evaluation of the vector
    field is one matrix product for the training and test outputs together.
    """
    n = y_train.shape[0]

    def vector_field(tau, f, l2):
        gradient = _loss_gradient(loss, f[:n], y_train)
        decay = jnp.exp(-2 * l2 * (degree - 1) * tau)
        return -decay * (kernel @ gradient) - l2 * degree * f

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0=0.0,
        t1=tau[-1],
        dt0=None,
        y0=jnp.zeros((kernel.shape[0], y_train.shape[1]), kernel.dtype),
        args=l2,
        saveat=diffrax.SaveAt(ts=tau),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=False,  # `l2_flow` reports a failure in one line instead of equinox's traceback
    )
    return solution.ys, solution.result


def _check_probabilities(y_train: jax.Array) -> None:
    """Raises unless each row of the (n, k) targets is a probability vector, as xent needs."""
    bad_rows = (jnp.min(y_train, axis=1) < 0) | (
        jnp.abs(jnp.sum(y_train, axis=1) - 1) > _PROBABILITY_ATOL
    )
    if bool(jnp.any(bad_rows)):
        row = int(jnp.argmax(bad_rows))
        raise ValueError(
            "y_train must hold probability vectors (entries ≥ 0 summing to 1) for "
            f"loss='xent', got row {row} = {y_train[row].tolist()}"
        )


def l2_flow(
    k_train_train: jax.typing.ArrayLike,
    k_test_train: jax.typing.ArrayLike,
    y_train: jax.typing.ArrayLike,
    *,
    l2: float,
    degree: int,
    lr: float = 1.0,
    loss: str = "xent",
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 100_000,
) -> Predictor:
    """Infinite-width dynamics with L2, equation (1), integrated with an adaptive ODE solver.

    Integrates ``∂τ f(x) = −exp(−2·l2·(degree − 1)·τ)·Θ₀(x, X)·∂loss/∂f(X) − l2·degree·f(x)``
    from ``f₀ = 0`` jointly for the training and test outputs, with ``diffrax`` (Dopri5 and a
    PID step-size controller by default).

    Args:
      k_train_train: (n, n) NTK between training inputs, positive semi-definite.
      k_test_train: (m, n) NTK between test and training inputs.
      y_train: (n, k) targets: one-hot labels or probabilities for ``"xent"``.
      l2: L2 coefficient λ, ≥ 0.
      degree: homogeneity degree of the network, ≥ 1.
      lr: learning rate η; time is ``τ = lr·t``.
      loss: ``"xent"``: softmax cross-entropy averaged over the n examples; ``"mse"``:
        ``½·mean over the n·k entries of (f − y)²`` (the equation `l2_flow_mse` solves
        exactly).
      solver: an adaptive diffrax solver instance; Dopri5 when None. Pass an implicit one such
        as ``diffrax.Kvaerno5()`` where the system is stiff: ``κ_max·lr·max(t) ≫ 1``, with
        ``κ_max`` the largest eigenvalue of ``Θ₀(X, X)/(n·k)`` for ``"mse"`` or of
        ``Θ₀(X, X)/n`` for ``"xent"`` (its rate per unit of ``τ = lr·t``).
      rtol, atol: tolerances of the step-size controller, finite and > 0.
      max_steps: most solver steps per call of ``predict``, ≥ 1.

    Returns:
      ``predict(t)`` with the shapes of `l2_flow_mse`; ``t`` finite. Each call solves from 0
      to ``max(t)``, and raises RuntimeError if the solver fails (e.g. runs out of max_steps).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    solver = diffrax.Dopri5() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractAdaptiveSolver):
        raise ValueError(
            f"solver must be an adaptive diffrax solver instance such as diffrax.Dopri5() or "
            f"diffrax.Kvaerno5(), got {solver!r}"
        )
    rtol = checks.number("rtol", rtol, strictly_positive=True)
    atol = checks.number("atol", atol, strictly_positive=True)
    max_steps = checks.integer("max_steps", max_steps)
    k_train_train, k_test_train, y_train, l2, degree, lr = _validate(
        k_train_train, k_test_train, y_train, l2, degree, lr
    )
    _check_positive_semidefinite(jnp.linalg.eigvalsh(k_train_train))
    if loss == "xent":
        _check_probabilities(y_train)
    kernel = jnp.concatenate([k_train_train, k_test_train])
    n = k_train_train.shape[0]
    options = dict(degree=degree, loss=loss, solver=solver, rtol=rtol, atol=atol)

    def predict(t):
        tau, scalar = _steps_to_time(t, lr)
        steps = jnp.asarray(t)
        checks.first_bad_entry("t", steps, ~jnp.isfinite(steps), "be finite for the ODE solver")
        order = jnp.argsort(tau)
        outputs, result = _solve_flow(
            kernel, y_train, tau[order].astype(kernel.dtype), l2, max_steps=max_steps, **options
        )
        if result != diffrax.RESULTS.successful:
            raise RuntimeError(
                f"the ODE solver failed before step t = {float(jnp.max(tau)) / lr:g} with "
                f"max_steps={max_steps}: {diffrax.RESULTS[result]}"
            )
        outputs = outputs[jnp.argsort(order)]
        f_train, f_test = outputs[:, :n], outputs[:, n:]
        return (f_train[0], f_test[0]) if scalar else (f_train, f_test)

    return predict


def linear_model(
    k_train_train: jax.typing.ArrayLike,
    k_test_train: jax.typing.ArrayLike,
    y_train: jax.typing.ArrayLike,
    *,
    l2: float,
    lr: float = 1.0,
    loss: str = "mse",
) -> Predictor:
    """A model linear in its parameters (degree 1), trained with L2: its kernel never decays.

    For MSE it is `l2_flow_mse` with ``degree=1``; ``predict(inf)`` is the kernel ridge
    regression limit ``f(X*) = Θ₀(X*, X)·(Θ₀(X, X) + l2·n·k·I)⁻¹·y`` (the ridge is ``l2·n·k``
    because the loss is a mean over the n·k entries; with ``l2 = 0``, ``Θ₀(X, X)⁺`` replaces the
    inverse). For ``"xent"`` it is `l2_flow` with ``degree=1``.

    Args:
      k_train_train: (n, n) kernel between training inputs (the model's tangent kernel).
      k_test_train: (m, n) kernel between test and training inputs.
      y_train: (n, k) targets.
      l2: L2 coefficient λ, ≥ 0.
      lr: learning rate η; time is ``τ = lr·t``.
      loss: ``"mse"`` (closed form) or ``"xent"`` (ODE solver).

    Returns:
      ``predict(t)`` with the shapes of `l2_flow_mse`.
    """
    if loss == "mse":
        return l2_flow_mse(k_train_train, k_test_train, y_train, l2=l2, degree=1, lr=lr)
    return l2_flow(k_train_train, k_test_train, y_train, l2=l2, degree=1, lr=lr, loss=loss)
