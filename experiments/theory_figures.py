r"""Figures of the infinite-width theory of training with L2: when t* ∝ 1/(λη), and why.

  python -m experiments.theory_figures --workdir=/tmp/theory [--num_train=300] [--depth=3]

On digits with a bias-free ReLU NTK and the MSE loss, solved exactly (`theory.figures`):

1. `collapse.png`: test accuracy and test loss of the network (degree = depth) against
   λ·η·t for several λ. The curves collapse near the accuracy peak and in the decline, which
   happen at a fixed λ·η·t, but not during the rise, which happens at a fixed number of steps;
   so the peak follows t* ∝ 1/(λη) only where the rise ends well before the decline begins.
2. `network_vs_linear.png`: the network against the linear model (degree 1, a kernel that
   does not decay) at the same λ: the network peaks and then declines as f → 0, the linear
   model converges to kernel ridge regression and stays there.
3. `finite_width.png`: finite networks of several widths (gradient descent with L2, zero
   output at initialization, one seed) against the infinite-width prediction; late accuracy
   falls below it at small widths (see the figure's caption and report.md).

Writes the three PNGs and `report.md` (the measured steps and fits, each with its λ and η) to
--workdir, all or none. Flags are checked, sizes that cannot fit in memory refused, before JAX
loads; this file only parses flags.
"""

from absl import app, flags

from experiments import _launch

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the PNGs and report.md.")
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


def _fail(message) -> None:
    _launch.fail("theory_figures", message)


def _numbers(flag, kind) -> tuple:
    """A list flag's entries converted by ``kind`` (float or int), or a one-line exit."""
    try:
        return tuple(kind(value) for value in flag.value)
    except ValueError:
        noun = "numbers" if kind is float else "integers"
        _fail(f"{flag.name} must be comma-separated {noun}, got {flag.value}")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])} (every setting is a --flag)")
    # theory.figure_settings imports the standard library only: bad flags fail before JAX,
    # TensorFlow and neural-tangents load (seconds).
    from theory import figure_settings

    try:
        settings = figure_settings.check(
            figure_settings.FigureSettings(
                dataset=_DATASET.value,
                num_train=_NUM_TRAIN.value,
                num_test=_NUM_TEST.value,
                depth=_DEPTH.value,
                l2s=_numbers(_L2S, float),
                lr=_LR.value,
                num_times=_NUM_TIMES.value,
                widths=_numbers(_WIDTHS, int),
                finite_num_train=_FINITE_NUM_TRAIN.value,
                finite_depth=_FINITE_DEPTH.value,
                finite_l2=_FINITE_L2.value,
                finite_lr=_FINITE_LR.value,
            )
        )
    except ValueError as error:
        _fail(error)
    from theory import figures

    try:
        print(figures.write_figures(settings, _WORKDIR.value))
    except ValueError as error:  # an unusable --workdir, named
        _fail(error)


if __name__ == "__main__":
    app.run(main, flags_parser=_launch.flags_parser("theory_figures"))
