"""Extreme Hessian eigenvalues by Lanczos iteration on Hessian-vector products.

Near a minimum of ``L(θ) + (l2/2)·‖θ‖²`` of an overparameterized network, the directions in
which ``L`` is flat are curved only by the L2 term, so the smallest Hessian eigenvalue is
≈ ``l2``: the slowest mode of gradient descent relaxes in ~1/(l2·lr) steps.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from theory import checks


def lanczos_tridiagonal(
    matvec: Callable[[jax.Array], jax.Array], start: jax.Array, num_iterations: int
) -> tuple[jax.Array, jax.Array]:
    """Lanczos tridiagonalization with full reorthogonalization.

    Args:
      matvec: ``v ↦ A·v`` for a symmetric ``A`` of size (P, P), on (P,) vectors.
      start: (P,) nonzero finite floating-point starting vector.
      num_iterations: Krylov dimension K, 1 ≤ K ≤ P.

    Returns:
      ``(alphas, betas)``: the diagonal (K,) and off-diagonal (K − 1,) of the tridiagonal
      matrix whose eigenvalues (Ritz values) approximate the extreme eigenvalues of ``A``.
    """
    if start.ndim != 1 or not jnp.issubdtype(start.dtype, jnp.floating):
        raise ValueError(
            f"start must be a 1-D floating-point vector, got shape {start.shape} of {start.dtype}"
        )
    num_iterations = checks.integer("num_iterations", num_iterations, maximum=start.size)
    # Under `jit` (as `hessian_min_eig` calls it) the values are unknown; its start is random.
    if not isinstance(start, jax.core.Tracer):
        start = checks.finite_array("start", start)
        if not bool(jnp.any(start)):
            raise ValueError("start must be nonzero, got a vector of zeros")
    basis = jnp.zeros((num_iterations, start.size), start.dtype)
    vector = start / jnp.linalg.norm(start)
    # A relative residual below this means the Krylov space is exhausted (A has fewer
    # distinct eigenvalues along `start` than iterations).
    breakdown = jnp.sqrt(jnp.finfo(start.dtype).eps)

    def step(i, carry):
        basis, vector, alphas, betas, exhausted = carry
        basis = basis.at[i].set(vector)
        product = matvec(vector)
        scale = jnp.linalg.norm(product)
        alpha = jnp.vdot(vector, product)
        # Full reorthogonalization against every earlier vector (twice, for stability):
        # in floating point, plain three-term Lanczos loses orthogonality and repeats
        # converged eigenvalues.
        for _ in range(2):
            product = product - basis.T @ (basis @ product)
        beta = jnp.linalg.norm(product)
        # After exhaustion the remaining rows decouple (beta = 0) with diagonal alphas[0],
        # a Rayleigh quotient of A, so they add no Ritz value outside the spectrum's range.
        alpha = jnp.where(exhausted, alphas[0], alpha)
        exhausted = exhausted | (beta <= breakdown * scale)
        beta = jnp.where(exhausted, 0.0, beta)
        vector = jnp.where(exhausted, 0.0, product / jnp.where(beta > 0, beta, 1.0))
        return basis, vector, alphas.at[i].set(alpha), betas.at[i].set(beta), exhausted

    zeros = jnp.zeros(num_iterations, start.dtype)
    _, _, alphas, betas, _ = jax.lax.fori_loop(
        0, num_iterations, step, (basis, vector, zeros, zeros, jnp.array(False))
    )
    return alphas, betas[:-1]


def hessian_min_eig(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    *,
    num_iterations: int = 100,
    key: jax.Array | None = None,
) -> jax.Array:
    """Smallest eigenvalue of the Hessian of ``loss_fn`` at ``params``, by Lanczos.

    Uses Hessian-vector products (forward-over-reverse), never the (P, P) Hessian.

    Args:
      loss_fn: scalar function of a parameter pytree, e.g. the training loss plus
        ``(l2/2)·‖θ‖²``.
      params: the pytree of finite floating-point arrays at which the Hessian is taken; P
        parameters in all.
      num_iterations: Krylov dimension, 1 ≤ num_iterations; capped at P. The smallest Ritz
        value is an upper bound that converges to the smallest eigenvalue from above.
      key: PRNG key of the random starting vector; ``jax.random.key(0)`` when None.

    Returns:
      Scalar: the smallest Ritz value, in the units of ``loss_fn`` per parameter².
    """
    num_iterations = checks.integer("num_iterations", num_iterations)
    flat_params, unravel = ravel_pytree(params)
    if flat_params.size == 0:
        raise ValueError("params has no parameters; the Hessian is empty")
    if not jnp.issubdtype(flat_params.dtype, jnp.floating):
        raise ValueError(f"params must be floating point, got dtype {flat_params.dtype}")
    checks.finite_array("params (flattened)", flat_params)
    key = jax.random.key(0) if key is None else key

    def flat_loss(flat):
        return loss_fn(unravel(flat))

    def hessian_vector_product(vector):
        return jax.jvp(jax.grad(flat_loss), (flat_params,), (vector,))[1]

    start = jax.random.normal(key, flat_params.shape, flat_params.dtype)
    alphas, betas = jax.jit(lanczos_tridiagonal, static_argnums=(0, 2))(
        hessian_vector_product, start, min(num_iterations, flat_params.size)
    )
    return jnp.min(jax.scipy.linalg.eigh_tridiagonal(alphas, betas, eigvals_only=True))
