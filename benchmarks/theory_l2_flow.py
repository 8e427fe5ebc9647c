"""Speed of the exact MSE flow, and relation 1 as the infinite-width theory predicts it.

    python benchmarks/theory_l2_flow.py                        # all three parts
    python benchmarks/theory_l2_flow.py --parts=speed --num_train=2000

- `speed`: `theory.l2_flow_mse` on mnist1d with a depth-3 ReLU NTK, n = --num_train
  training and --num_test test points, 10 classes, --num_times log-spaced steps: seconds for
  the kernel, then for building the predictor (the eigendecomposition) and calling it once,
  compiled, in float64 and float32.
- `relation`: 300 digits, depth-3 kernel, l2 in {1e-3, 1e-4, 1e-5} at lr in {0.5, 1}: the
  step of the test-loss minimum and the smoothed test-accuracy peak (`relations.t_star`),
  each fitted as t ∝ (l2·lr)^slope (`relations.fit_t_star`); and the degree-1 linear model
  for contrast.
- `hessian`: smallest Hessian eigenvalue (`theory.hessian_min_eig`) divided by l2 at a
  converged minimum (L-BFGS, gradient norm printed) of a 2-layer erf network fitted to 8
  random points, for a few widths and l2.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import theory
from l2reg import relations
from theory import compat, problems


def timed(function, *args):
    """(result, seconds), the result blocked until ready."""
    start = time.perf_counter()
    result = jax.block_until_ready(function(*args))
    return result, time.perf_counter() - start


def speed(num_train: int, num_test: int, num_times: int) -> None:
    problem = problems.load_flat("mnist1d", num_train=num_train, num_test=num_test)
    (k_train_train, k_test_train), seconds = timed(
        lambda: (
            theory.ntk(problem.x_train, depth=3),
            theory.ntk(problem.x_test, problem.x_train, depth=3),
        )
    )
    print(f"kernel n={num_train} m={num_test}: {seconds:.2f} s")
    steps = np.geomspace(1, 1e6, num_times)
    for dtype in (jnp.float64, jnp.float32):
        arrays = [a.astype(dtype) for a in (k_train_train, k_test_train, problem.y_train)]

        def build_and_predict(arrays=arrays):
            predict = theory.l2_flow_mse(*arrays, l2=1e-4, degree=3)
            return predict, predict(steps)

        # The first run compiles; the second is what a user with a compiled predictor pays.
        _, cold = timed(build_and_predict)
        (predict, _), warm = timed(build_and_predict)
        _, predict_only = timed(predict, steps)
        print(
            f"l2_flow_mse {jnp.dtype(dtype).name}, {num_times} times: eigendecomposition and "
            f"predict {warm:.2f} s (first run, compiling: {cold:.2f} s); "
            f"predict alone {predict_only:.2f} s"
        )


def relation() -> None:
    problem = problems.load_flat("digits", num_train=300)
    k_train_train = theory.ntk(problem.x_train, depth=3)
    k_test_train = theory.ntk(problem.x_test, problem.x_train, depth=3)
    for name, degree in (("network, degree 3", 3), ("linear model, degree 1", 1)):
        l2s, lrs, loss_minima, peaks = [], [], [], []
        for lr in (0.5, 1.0):
            for l2 in (1e-3, 1e-4, 1e-5):
                steps = np.geomspace(1, 100 / (l2 * lr), 600)
                predict = theory.l2_flow_mse(
                    k_train_train, k_test_train, problem.y_train, l2=l2, degree=degree, lr=lr
                )
                curve, test_loss = problems.curves(predict, steps, problem)
                peak = relations.t_star(steps, curve)
                loss_minimum = steps[np.argmin(test_loss)]
                print(
                    f"{name} l2={l2:g} lr={lr:g}: test-loss minimum at t={loss_minimum:.4g} "
                    f"(l2·lr·t={l2 * lr * loss_minimum:.3f}); "
                    f"accuracy peak {peak.peak_accuracy:.4f} at t={peak.step:.4g} "
                    f"(l2·lr·t={l2 * lr * peak.step:.3f}, "
                    f"interval [{peak.low:.3g}, {peak.high:.3g}]); final accuracy {curve[-1]:.4f}"
                )
                l2s.append(l2)
                lrs.append(lr)
                loss_minima.append(loss_minimum)
                peaks.append(peak.step)
        for what, values in (("test-loss minimum", loss_minima), ("accuracy peak", peaks)):
            fit = relations.fit_t_star(np.array(l2s), np.array(lrs), np.array(values))
            print(
                f"{name}: {what} ∝ (l2·lr)^{fit.slope:.3f} ± {fit.slope_stderr:.3f}, c={fit.c:.3g}"
            )


def hessian() -> None:
    stax = compat.import_neural_tangents().stax
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 5)), rng.normal(size=(8, 1))
    for width, l2 in ((256, 1e-3), (1024, 1e-3), (256, 1e-4)):
        init_fn, apply_fn, _ = stax.serial(
            stax.Dense(width, W_std=np.sqrt(2), b_std=None, parameterization="ntk"),
            stax.Erf(),
            stax.Dense(1, b_std=None, parameterization="ntk"),
        )
        _, params = init_fn(jax.random.key(0), x.shape)

        def loss_fn(p, l2=l2, apply_fn=apply_fn):
            fit = 0.5 * jnp.mean((apply_fn(p, x) - y) ** 2)
            return fit + 0.5 * l2 * optax.tree.norm(p, squared=True)

        optimizer = optax.lbfgs(memory_size=20)
        value_and_grad = optax.value_and_grad_from_state(loss_fn)

        def step(carry, _, optimizer=optimizer, value_and_grad=value_and_grad, loss_fn=loss_fn):
            p, state = carry
            value, grad = value_and_grad(p, state=state)
            updates, state = optimizer.update(
                grad, state, p, value=value, grad=grad, value_fn=loss_fn
            )
            return (optax.apply_updates(p, updates), state), None

        (minimum, _), _ = jax.jit(lambda carry, step=step: jax.lax.scan(step, carry, length=3000))(
            (params, optimizer.init(params))
        )
        gradient_norm = optax.tree.norm(jax.grad(loss_fn)(minimum))
        min_eig = theory.hessian_min_eig(loss_fn, minimum, num_iterations=80)
        print(
            f"erf width {width} l2={l2:g}: |grad|={gradient_norm:.1e}, "
            f"min Hessian eigenvalue {min_eig:.3g} = {min_eig / l2:.3f}·l2"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="speed,relation,hessian")
    parser.add_argument("--num_train", type=int, default=2000)
    parser.add_argument("--num_test", type=int, default=1000)
    parser.add_argument("--num_times", type=int, default=100)
    args = parser.parse_args()
    parts = args.parts.split(",")
    unknown = set(parts) - {"speed", "relation", "hessian"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; allowed: speed, relation, hessian")
    jax.config.update("jax_enable_x64", True)
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}")
    if "speed" in parts:
        speed(args.num_train, args.num_test, args.num_times)
    if "relation" in parts:
        relation()
    if "hessian" in parts:
        hessian()


if __name__ == "__main__":
    main()
