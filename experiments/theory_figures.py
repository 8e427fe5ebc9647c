r"""Figures of the infinite-width theory of training with L2: why t* ∝ 1/(λη).

  python -m experiments.theory_figures --workdir=/tmp/theory [--num_train=300] [--depth=3]

On digits with a bias-free ReLU NTK (`theory.ntk`) and the MSE loss, solved exactly by
`theory.l2_flow_mse`:

1. `collapse.png`: test accuracy and test loss against l2·lr·t for several l2: the curves of
   the network (degree = depth) collapse onto one, so the accuracy peak and the test-loss
   minimum fall at t ∝ 1/(l2·lr) (relation 1 from first principles).
2. `network_vs_linear.png`: the network against the linear model (degree 1, a kernel that
   does not decay) at the same l2: the network peaks and then declines as f → 0, the linear
   model converges to kernel ridge regression and stays there.
3. `finite_width.png`: finite networks of several widths (`theory.finite`, gradient descent
   with L2, zero output at initialization) against the infinite-width prediction.

Writes the three PNGs and `report.md` (the measured steps, fits and errors) to --workdir,
each atomically.
"""

import math
import os
import sys

import jax
import numpy as np
from absl import app, flags, logging

import theory
from l2reg import data, files, relations
from theory import finite, problems
from theory.problems import accuracy, curves, mse_loss

plt = files.pyplot()

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the PNGs and report.md.")
EMBEDDED_DATASETS = ("digits", "mnist1d")
_DATASET = flags.DEFINE_string("dataset", "digits", "An embedded l2reg data set.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 300, "Training examples of the kernel.")
_NUM_TEST = flags.DEFINE_integer("num_test", None, "Test examples (all when unset).")
_DEPTH = flags.DEFINE_integer("depth", 3, "Weight layers of the ReLU network (its degree).")
_L2S = flags.DEFINE_list("l2s", ["1e-3", "1e-4", "1e-5"], "L2 coefficients λ to compare.")
_LR = flags.DEFINE_float("lr", 1.0, "Learning rate η (time is τ = η·t).")
_NUM_TIMES = flags.DEFINE_integer("num_times", 400, "Log-spaced evaluation steps per curve.")
_WIDTHS = flags.DEFINE_list("widths", ["128", "512", "2048"], "Widths of finite networks.")
_FINITE_NUM_TRAIN = flags.DEFINE_integer(
    "finite_num_train", 64, "Training examples of the finite-width comparison."
)
_FINITE_DEPTH = flags.DEFINE_integer("finite_depth", 2, "Depth of the finite networks.")
_FINITE_L2 = flags.DEFINE_float("finite_l2", 1e-2, "λ of the finite-width comparison.")
_FINITE_LR = flags.DEFINE_float("finite_lr", 0.5, "η of the finite networks (small: flow).")
flags.mark_flags_as_required(["workdir"])


def collapse_and_linear(problem, depth, l2s, lr, num_times, workdir) -> list[str]:
    """Figures 1 and 2; returns the report's lines."""
    k_train_train = theory.ntk(problem.x_train, depth=depth)
    k_test_train = theory.ntk(problem.x_test, problem.x_train, depth=depth)
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
    compare, compare_axis = plt.subplots(figsize=(6, 4))
    lines = [
        f"## Relation 1 in the infinite-width limit ({problem.x_train.shape[0]} training "
        f"examples, depth-{depth} ReLU NTK, MSE, lr = {lr:g})",
        "",
        "| l2 | network: loss minimum l2·lr·t | network: accuracy peak l2·lr·t | peak accuracy "
        "| network final accuracy | linear model final accuracy |",
        "|---|---|---|---|---|---|",
    ]
    loss_minima, peaks = [], []
    for index, l2 in enumerate(l2s):
        steps = np.geomspace(1, 100 / (l2 * lr), num_times)
        scaled_time = l2 * lr * steps
        network = curves(
            theory.l2_flow_mse(
                k_train_train, k_test_train, problem.y_train, l2=l2, degree=depth, lr=lr
            ),
            steps,
            problem,
        )
        linear = curves(
            theory.linear_model(k_train_train, k_test_train, problem.y_train, l2=l2, lr=lr),
            steps,
            problem,
        )
        peak = relations.t_star(steps, network[0])
        loss_minimum = steps[np.argmin(network[1])]
        loss_minima.append(loss_minimum)
        peaks.append(peak.step)
        color = f"C{index}"
        accuracy_axis.semilogx(scaled_time, network[0], color=color, label=f"l2 = {l2:g}")
        accuracy_axis.axvline(l2 * lr * peak.step, color=color, linestyle=":", linewidth=0.8)
        loss_axis.semilogx(scaled_time, network[1], color=color, label=f"l2 = {l2:g}")
        loss_axis.axvline(l2 * lr * loss_minimum, color=color, linestyle=":", linewidth=0.8)
        compare_axis.semilogx(scaled_time, network[0], color=color, label=f"network, l2 = {l2:g}")
        compare_axis.semilogx(scaled_time, linear[0], color=color, linestyle="--")
        lines.append(
            f"| {l2:g} | {l2 * lr * loss_minimum:.3f} | {l2 * lr * peak.step:.3f} "
            f"[{l2 * lr * peak.low:.3f}, {l2 * lr * peak.high:.3f}] | {peak.peak_accuracy:.4f} "
            f"| {network[0][-1]:.4f} | {linear[0][-1]:.4f} |"
        )
    accuracy_axis.set(xlabel="l2·lr·t", ylabel="test accuracy", title="network (dotted: t*)")
    loss_axis.set(xlabel="l2·lr·t", ylabel="test loss", title="network (dotted: minimum)")
    accuracy_axis.legend()
    files.save_figure(figure, os.path.join(workdir, "collapse.png"))
    compare_axis.set(
        xlabel="l2·lr·t",
        ylabel="test accuracy",
        title=f"degree {depth} network (solid) vs linear model (dashed)",
    )
    compare_axis.legend(fontsize="small")
    files.save_figure(compare, os.path.join(workdir, "network_vs_linear.png"))
    lines.append("")
    if len(l2s) >= 2:
        for what, values in (("test-loss minimum", loss_minima), ("accuracy peak", peaks)):
            fit = relations.fit_t_star(np.array(l2s), lr, np.array(values))
            lines.append(
                f"- Step of the {what} ∝ (l2·lr)^{fit.slope:.3f} ± {fit.slope_stderr:.3f} "
                f"(c = {fit.c:.3g}); the paper's relation 1 is slope −1."
            )
    lines.append(
        "- The network's output decays to zero after its peak (degree > 1: the kernel decays "
        "as exp(−2·l2·(degree − 1)·τ)); the linear model converges to kernel ridge regression."
    )
    lines.append(
        "- The rise of accuracy happens at a fixed number of steps (set by the kernel's "
        "eigenvalues, independent of l2) and the decline at a fixed l2·lr·t, so the curves "
        "collapse after the peak; the peak follows t ∝ 1/(l2·lr) only where the rise ends well "
        "before the decline begins."
    )
    return lines


def finite_width(problem, depth, widths, l2, lr, workdir) -> list[str]:
    """Figure 3; returns the report's lines."""
    steps = np.unique(np.geomspace(1, 10 / (l2 * lr), 40).astype(int))
    theory_test = np.asarray(
        theory.l2_flow_mse(
            theory.ntk(problem.x_train, depth=depth),
            theory.ntk(problem.x_test, problem.x_train, depth=depth),
            problem.y_train,
            l2=l2,
            degree=depth,
            lr=lr,
        )(steps)[1]
    )
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
    scaled_time = l2 * lr * steps
    accuracy_axis.semilogx(scaled_time, accuracy(theory_test, problem.test_labels), "k", lw=2)
    loss_axis.semilogx(
        scaled_time, mse_loss(theory_test, problem.y_test), "k", lw=2, label="infinite width"
    )
    lines = [
        f"## Finite width ({problem.x_train.shape[0]} training examples, depth {depth}, "
        f"l2 = {l2:g}, lr = {lr:g}, full-batch gradient descent)",
        "",
        "| width | max over t of ‖f − f_theory‖ / max ‖f_theory‖ (test outputs) |",
        "|---|---|",
    ]
    for index, width in enumerate(widths):
        network_test = np.asarray(
            finite.train_finite_network(
                problem.x_train,
                problem.y_train,
                problem.x_test,
                depth=depth,
                width=width,
                l2=l2,
                lr=lr,
                steps=steps,
                key=jax.random.key(0),
            )[1]
        )
        error = (
            np.linalg.norm(network_test - theory_test, axis=(1, 2)).max()
            / np.linalg.norm(theory_test, axis=(1, 2)).max()
        )
        lines.append(f"| {width} | {error:.4f} |")
        color = f"C{index}"
        accuracy_axis.semilogx(scaled_time, accuracy(network_test, problem.test_labels), color)
        loss_axis.semilogx(
            scaled_time, mse_loss(network_test, problem.y_test), color, label=f"width {width}"
        )
    accuracy_axis.set(xlabel="l2·lr·t", ylabel="test accuracy")
    loss_axis.set(xlabel="l2·lr·t", ylabel="test loss")
    loss_axis.legend()
    files.save_figure(figure, os.path.join(workdir, "finite_width.png"))
    return lines


def validated_flags() -> tuple[list[float], list[int]]:
    """`--l2s` and `--widths` as numbers; a one-line ValueError for the first bad flag.

    Loads the data set (seconds at most for the embedded ones) to check the numbers of
    examples, so that a bad one fails before any figure is written.
    """
    try:
        l2s = [float(value) for value in _L2S.value]
        widths = [int(value) for value in _WIDTHS.value]
    except ValueError:
        raise ValueError(
            f"--l2s must be numbers and --widths integers, got {_L2S.value} and {_WIDTHS.value}"
        ) from None
    if not l2s or not all(math.isfinite(l2) and l2 > 0 for l2 in l2s):
        raise ValueError(f"--l2s must be finite numbers > 0, got {_L2S.value}")
    repeated = [l2 for index, l2 in enumerate(l2s) if l2 in l2s[:index]]
    if repeated:
        raise ValueError(f"--l2s must be distinct, got {repeated[0]:g} twice in {_L2S.value}")
    if not widths or min(widths) < 1:
        raise ValueError(f"--widths must be integers ≥ 1, got {_WIDTHS.value}")
    for flag in (_DEPTH, _FINITE_DEPTH):
        if flag.value < 2:
            raise ValueError(f"--{flag.name} must be ≥ 2 (a network, not a linear model)")
    for flag in (_LR, _FINITE_L2, _FINITE_LR):
        if not (math.isfinite(flag.value) and flag.value > 0):
            raise ValueError(f"--{flag.name} must be finite and > 0, got {flag.value}")
    for flag in (_NUM_TIMES, _NUM_TRAIN, _FINITE_NUM_TRAIN):
        if flag.value < 1:
            raise ValueError(f"--{flag.name} must be ≥ 1, got {flag.value}")
    if _NUM_TEST.value is not None and _NUM_TEST.value < 1:
        raise ValueError(f"--num_test must be ≥ 1 or unset, got {_NUM_TEST.value}")
    if _DATASET.value not in EMBEDDED_DATASETS:
        raise ValueError(
            f"--dataset must be one of {', '.join(EMBEDDED_DATASETS)}, got {_DATASET.value!r}"
        )
    files.check_folder(_WORKDIR.value, "--workdir")
    dataset = data.load(_DATASET.value)
    for flag, split in ((_NUM_TRAIN, "train"), (_FINITE_NUM_TRAIN, "train"), (_NUM_TEST, "test")):
        available = len(getattr(dataset, split).labels)
        if flag.value is not None and flag.value > available:
            raise ValueError(
                f"--{flag.name} must be ≤ {available}, the {split} examples of "
                f"{_DATASET.value!r}, got {flag.value}"
            )
    return l2s, widths


def main(argv) -> None:
    del argv
    try:
        l2s, widths = validated_flags()
    except ValueError as error:
        sys.exit(f"theory_figures: {error}")
    # Slow eigenmodes at small l2 need more than float32's seven digits.
    jax.config.update("jax_enable_x64", True)
    workdir = _WORKDIR.value  # made on the first write
    problem = problems.load_flat(
        _DATASET.value, num_train=_NUM_TRAIN.value, num_test=_NUM_TEST.value
    )
    lines = ["# Infinite-width theory of training with L2", ""]
    logging.info("Relation 1 and the linear model")
    lines += collapse_and_linear(problem, _DEPTH.value, l2s, _LR.value, _NUM_TIMES.value, workdir)
    logging.info("Finite widths")
    small = problems.load_flat(
        _DATASET.value, num_train=_FINITE_NUM_TRAIN.value, num_test=_NUM_TEST.value
    )
    lines.append("")
    lines += finite_width(
        small, _FINITE_DEPTH.value, widths, _FINITE_L2.value, _FINITE_LR.value, workdir
    )
    lines += ["", "Figures: collapse.png, network_vs_linear.png, finite_width.png.", ""]
    files.write_atomic(os.path.join(workdir, "report.md"), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
