"""The theory figures: relation 1 at infinite width, network vs linear model, finite widths.

On a data set with a bias-free ReLU NTK (`theory.ntk`) and the MSE loss, solved exactly by
`theory.l2_flow_mse` (equation (1) of `theory.dynamics`, in time τ = η·t):

1. `relation_1` / ``collapse.png``: test accuracy and test loss of the network (degree = depth)
   against λ·η·t for several λ. The curves collapse near the accuracy peak and in the decline,
   which happen at a fixed λ·η·t (the kernel decays as exp(−2·λ·(depth − 1)·τ)), but not during
   the rise, which happens at a fixed number of steps set by the kernel's eigenvalues; so
   t* ∝ 1/(λη) holds only where the rise ends well before the decline begins.
2. ``network_vs_linear.png``: the network against the linear model (degree 1, a kernel that
   does not decay) at the same λ: the network peaks and declines as f → 0, the linear model
   converges to kernel ridge regression and stays there.
3. `finite_width` / ``finite_width.png``: finite networks (`theory.finite`, full-batch gradient
   descent with L2, zero output at initialization) against the infinite-width prediction.

`write_figures` computes everything, then writes the three PNGs and ``report.md`` as a set
(`_write_all`): a failure leaves the folder as it was.
"""

import os
import shutil
import tempfile
from typing import NamedTuple

import jax
import numpy as np

from l2reg import files, relations
from theory import dynamics, finite, kernels, problems
from theory.figure_settings import FigureSettings, check

NAMES = ("collapse.png", "network_vs_linear.png", "finite_width.png", "report.md")
_FINITE_NUM_TIMES = 40  # evaluation steps of each finite network, log-spaced
_FINITE_SEED = 0  # PRNG seed of the finite networks' initialization


class Relation1(NamedTuple):
    """Test curves of the network and the linear model for each λ (L of them, T steps each).

    Attributes:
      l2s: (L,) the L2 coefficients λ.
      lr: the learning rate η.
      steps: (L, T) steps t, log-spaced from 1 to 100/(λη).
      network_accuracy, network_loss: (L, T) test accuracy and test MSE of the network.
      linear_accuracy: (L, T) test accuracy of the linear model.
      peaks: L `relations.TStar`, the network's accuracy peaks (in steps).
      loss_minima: (L,) steps of the network's test-loss minima.
    """

    l2s: np.ndarray
    lr: float
    steps: np.ndarray
    network_accuracy: np.ndarray
    network_loss: np.ndarray
    linear_accuracy: np.ndarray
    peaks: list
    loss_minima: np.ndarray

    @property
    def scaled_time(self) -> np.ndarray:
        """(L, T) λ·η·t, the time in which the decline collapses."""
        return self.l2s[:, None] * self.lr * self.steps

    def fits(self) -> dict[str, relations.TStarFit]:
        """Power-law fits of the loss minimum's and the accuracy peak's step against λη (at
        this single η); empty with fewer than two λ."""
        if len(self.l2s) < 2:
            return {}
        peaks = np.array([peak.step for peak in self.peaks])
        return {
            "test-loss minimum": relations.fit_t_star(self.l2s, self.lr, self.loss_minima),
            "accuracy peak": relations.fit_t_star(self.l2s, self.lr, peaks),
        }


class FiniteWidth(NamedTuple):
    """Finite networks of W widths against infinite width, at S steps.

    Attributes:
      widths: (W,) hidden widths.
      l2, lr: λ and η.
      steps: (S,) integer steps, log-spaced from 1 to 10/(λη).
      theory_accuracy, theory_loss: (S,) test accuracy and MSE at infinite width.
      network_accuracy, network_loss: (W, S) the same for each width.
      errors: (W,) max over t of ‖f_w(t) − f_∞(t)‖ / max over t of ‖f_∞(t)‖, test outputs.
      late_errors: (W,) ‖f_w − f_∞‖ / ‖f_∞‖ at the last step: the error relative to the
        output's size at that time, which grows as f decays.
    """

    widths: np.ndarray
    l2: float
    lr: float
    steps: np.ndarray
    theory_accuracy: np.ndarray
    theory_loss: np.ndarray
    network_accuracy: np.ndarray
    network_loss: np.ndarray
    errors: np.ndarray
    late_errors: np.ndarray


def relation_1(
    problem: problems.Problem, *, depth: int, l2s, lr: float, num_times: int
) -> Relation1:
    """Solves equation (1) of `theory.dynamics` for the network (degree ``depth``) and the linear
    model at each λ of ``l2s``, on ``num_times`` log-spaced steps from 1 to 100/(λη).

    Memory: two (n, n) and one (m, n) kernel, and outputs of (T, n + m, k) per λ (float64 when
    64-bit floats are enabled, as the late decay needs).
    """
    k_train_train = kernels.ntk(problem.x_train, depth=depth)
    k_test_train = kernels.ntk(problem.x_test, problem.x_train, depth=depth)
    l2s = np.asarray(l2s, dtype=float)
    steps = np.stack([np.geomspace(1, 100 / (l2 * lr), num_times) for l2 in l2s])
    network, linear = [], []
    for l2, l2_steps in zip(l2s, steps, strict=True):
        options = dict(l2=l2, lr=lr)
        flow = dynamics.l2_flow_mse(
            k_train_train, k_test_train, problem.y_train, degree=depth, **options
        )
        model = dynamics.linear_model(k_train_train, k_test_train, problem.y_train, **options)
        network.append(problems.curves(flow, l2_steps, problem))
        linear.append(problems.curves(model, l2_steps, problem)[0])
    network_accuracy = np.stack([accuracy for accuracy, _ in network])
    network_loss = np.stack([loss for _, loss in network])
    return Relation1(
        l2s=l2s,
        lr=lr,
        steps=steps,
        network_accuracy=network_accuracy,
        network_loss=network_loss,
        linear_accuracy=np.stack(linear),
        peaks=[relations.t_star(s, a) for s, a in zip(steps, network_accuracy, strict=True)],
        loss_minima=steps[np.arange(len(l2s)), np.argmin(network_loss, axis=1)],
    )


def finite_width(
    problem: problems.Problem, *, depth: int, widths, l2: float, lr: float
) -> FiniteWidth:
    """Trains `theory.finite.train_finite_network` at each width (seed 0) and solves the
    infinite-width flow, both on 40 log-spaced integer steps from 1 to 10/(λη)."""
    steps = np.unique(np.geomspace(1, 10 / (l2 * lr), _FINITE_NUM_TIMES).astype(int))
    theory_test = np.asarray(
        dynamics.l2_flow_mse(
            kernels.ntk(problem.x_train, depth=depth),
            kernels.ntk(problem.x_test, problem.x_train, depth=depth),
            problem.y_train,
            l2=l2,
            degree=depth,
            lr=lr,
        )(steps)[1]
    )
    networks = np.stack(
        [
            finite.train_finite_network(
                problem.x_train,
                problem.y_train,
                problem.x_test,
                depth=depth,
                width=width,
                l2=l2,
                lr=lr,
                steps=steps,
                key=jax.random.key(_FINITE_SEED),
            )[1]
            for width in widths
        ]
    )
    distance = np.linalg.norm(networks - theory_test, axis=(2, 3))  # (W, S)
    size = np.linalg.norm(theory_test, axis=(1, 2))  # (S,)
    return FiniteWidth(
        widths=np.asarray(widths),
        l2=l2,
        lr=lr,
        steps=steps,
        theory_accuracy=problems.accuracy(theory_test, problem.test_labels),
        theory_loss=problems.mse_loss(theory_test, problem.y_test),
        network_accuracy=problems.accuracy(networks, problem.test_labels),
        network_loss=problems.mse_loss(networks, problem.y_test),
        errors=distance.max(axis=1) / size.max(),
        late_errors=distance[:, -1] / size[-1],
    )


COLLAPSE_CAPTION = (
    "The curves collapse near the peak and in the decline (both at a fixed λ·η·t), not during "
    "the rise (at a fixed number of steps)."
)
FINITE_CAPTION = (
    "Late, L2 has shrunk the weights (as exp(−λ·η·t)) while the loss gradient has not shrunk, "
    "so a finite network leaves the fixed-kernel regime: its NTK changes shape, by about "
    "1/√width, and its vanishing output, whose argmax sets the accuracy, departs from the "
    "infinite-width one, more at smaller widths."
)


def plot_collapse(result: Relation1):
    """``collapse.png``: accuracy and loss of the network against λ·η·t, t* and minima dotted."""
    plt = files.pyplot()
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4.4))
    for index, l2 in enumerate(result.l2s):
        color, x = f"C{index}", result.scaled_time[index]
        scale = l2 * result.lr
        accuracy_axis.semilogx(x, result.network_accuracy[index], color=color, label=f"λ = {l2:g}")
        accuracy_axis.axvline(scale * result.peaks[index].step, color=color, ls=":", lw=0.8)
        loss_axis.semilogx(x, result.network_loss[index], color=color, label=f"λ = {l2:g}")
        loss_axis.axvline(scale * result.loss_minima[index], color=color, ls=":", lw=0.8)
    accuracy_axis.set(xlabel="λ·η·t", ylabel="test accuracy", title="network (dotted: t*)")
    loss_axis.set(xlabel="λ·η·t", ylabel="test loss", title="network (dotted: minimum)")
    accuracy_axis.legend()
    figure.suptitle(f"Infinite-width network, η = {result.lr:g}. {COLLAPSE_CAPTION}", fontsize=9)
    return figure


def plot_network_vs_linear(result: Relation1, depth: int):
    """``network_vs_linear.png``: the network's accuracy (solid) and the linear model's
    (dashed) against λ·η·t."""
    plt = files.pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for index, l2 in enumerate(result.l2s):
        color, x = f"C{index}", result.scaled_time[index]
        axis.semilogx(x, result.network_accuracy[index], color=color, label=f"network, λ = {l2:g}")
        axis.semilogx(x, result.linear_accuracy[index], color=color, linestyle="--")
    axis.set(
        xlabel="λ·η·t",
        ylabel="test accuracy",
        title=f"degree {depth} network (solid) vs linear model (dashed), η = {result.lr:g}",
    )
    axis.legend(fontsize="small")
    return figure


def plot_finite_width(result: FiniteWidth):
    """``finite_width.png``: test accuracy and loss of each width and of infinite width."""
    plt = files.pyplot()
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4.6))
    x = result.l2 * result.lr * result.steps
    accuracy_axis.semilogx(x, result.theory_accuracy, "k", lw=2)
    loss_axis.semilogx(x, result.theory_loss, "k", lw=2, label="infinite width")
    for index, width in enumerate(result.widths):
        accuracy_axis.semilogx(x, result.network_accuracy[index], f"C{index}")
        loss_axis.semilogx(x, result.network_loss[index], f"C{index}", label=f"width {width}")
    accuracy_axis.set(xlabel="λ·η·t", ylabel="test accuracy")
    loss_axis.set(xlabel="λ·η·t", ylabel="test loss")
    loss_axis.legend()
    figure.suptitle(
        f"λ = {result.l2:g}, η = {result.lr:g}, one initialization (seed {_FINITE_SEED}). "
        f"{FINITE_CAPTION}",
        fontsize=9,
        wrap=True,
    )
    return figure


def report(settings: FigureSettings, relation: Relation1, widths: FiniteWidth) -> str:
    """``report.md``: the tables and fits behind the figures, each stating its λ and η."""
    lr = relation.lr
    lines = [
        "# Infinite-width theory of training with L2",
        "",
        f"## Relation 1 in the infinite-width limit ({settings.sizes()[0]} training examples, "
        f"depth-{settings.depth} ReLU NTK, MSE, η = lr = {lr:g})",
        "",
        "| λ | network: loss minimum λ·η·t | network: accuracy peak λ·η·t | peak accuracy "
        "| network final accuracy | linear model final accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for index, l2 in enumerate(relation.l2s):
        peak, scale = relation.peaks[index], l2 * lr
        lines.append(
            f"| {l2:g} | {scale * relation.loss_minima[index]:.3f} | {scale * peak.step:.3f} "
            f"[{scale * peak.low:.3f}, {scale * peak.high:.3f}] | {peak.peak_accuracy:.4f} "
            f"| {relation.network_accuracy[index, -1]:.4f} "
            f"| {relation.linear_accuracy[index, -1]:.4f} |"
        )
    lines.append("")
    for what, fit in relation.fits().items():
        lines.append(
            f"- At η = {lr:g}, λ ∈ {{{', '.join(f'{l2:g}' for l2 in relation.l2s)}}}: step of the "
            f"{what} ∝ (λη)^{fit.slope:.3f} ± {fit.slope_stderr:.3f} (c = {fit.c:.3g}); the "
            "paper's relation 1 is slope −1."
        )
    lines += [
        "- The network's output decays to zero after its peak (degree > 1: the kernel decays "
        "as exp(−2·λ·(degree − 1)·τ)); the linear model converges to kernel ridge regression.",
        f"- {COLLAPSE_CAPTION} So the peak follows t ∝ 1/(λη) only where the rise ends well "
        "before the decline begins.",
        "",
        f"## Finite width ({settings.finite_num_train} training examples, depth "
        f"{settings.finite_depth}, λ = {widths.l2:g}, η = {widths.lr:g}, full-batch gradient "
        f"descent, seed {_FINITE_SEED})",
        "",
        "| width | max over t of ‖f − f_∞‖ / max ‖f_∞‖ | ‖f − f_∞‖ / ‖f_∞‖ at the last step "
        "| final accuracy (infinite width: "
        f"{widths.theory_accuracy[-1]:.4f}) |",
        "|---|---|---|---|",
    ]
    for index, width in enumerate(widths.widths):
        lines.append(
            f"| {width} | {widths.errors[index]:.4f} | {widths.late_errors[index]:.3f} "
            f"| {widths.network_accuracy[index, -1]:.4f} |"
        )
    lines += ["", f"- {FINITE_CAPTION}", "", f"Figures: {', '.join(NAMES[:3])}.", ""]
    return "\n".join(lines)


def write_figures(settings: FigureSettings, workdir: str) -> str:
    """Checks ``settings`` and ``workdir``, computes the three figures and their report, and
    writes ``NAMES`` into ``workdir`` as a set; returns the report (Markdown).

    Every check runs before any work: a ValueError in one line names the bad setting. The
    flow runs in 64-bit floats (slow eigenmodes at small λ need more than float32's seven
    digits) whatever the global setting.
    """
    settings = check(settings)
    files.check_folder(workdir, "workdir")
    with jax.enable_x64(True):
        relation = relation_1(
            problems.load_flat(
                settings.dataset, num_train=settings.num_train, num_test=settings.num_test
            ),
            depth=settings.depth,
            l2s=settings.l2s,
            lr=settings.lr,
            num_times=settings.num_times,
        )
        widths = finite_width(
            problems.load_flat(
                settings.dataset, num_train=settings.finite_num_train, num_test=settings.num_test
            ),
            depth=settings.finite_depth,
            widths=settings.widths,
            l2=settings.finite_l2,
            lr=settings.finite_lr,
        )
    text = report(settings, relation, widths)
    _write_all(
        workdir,
        {
            "collapse.png": plot_collapse(relation),
            "network_vs_linear.png": plot_network_vs_linear(relation, settings.depth),
            "finite_width.png": plot_finite_width(widths),
            "report.md": text,
        },
    )
    return text


def _write_all(workdir: str, contents: dict) -> None:
    """Writes each figure (as PNG) or text of ``contents`` to ``workdir``/name, all or none.

    Each file is first written whole into a temporary folder inside ``workdir``; only when all
    are written are they renamed into place (renames in one folder need no space and do not
    fail half-way like a write on a full disk). On failure the temporary folder is removed,
    and so is ``workdir`` if this call made it, so no folder mixes new files with old ones.
    """
    made = not os.path.exists(workdir)
    os.makedirs(workdir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-theory-figures-", dir=workdir)
    try:
        for name, content in contents.items():
            path = os.path.join(staging, name)
            if isinstance(content, str):
                files.write_atomic(path, content)
            else:
                files.save_figure(content, path)
        for name in contents:
            os.replace(os.path.join(staging, name), os.path.join(workdir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made and not os.listdir(workdir):
            os.rmdir(workdir)


__all__ = [
    "NAMES",
    "FiniteWidth",
    "Relation1",
    "finite_width",
    "plot_collapse",
    "plot_finite_width",
    "plot_network_vs_linear",
    "relation_1",
    "report",
    "write_figures",
]
