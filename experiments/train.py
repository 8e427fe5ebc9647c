"""Trains a classifier with L2 regularization as a config file says.

    python -m experiments.train --config=experiments/configs/mlp_digits.py --workdir=/tmp/digits \
        [--config.lr=0.05 ...] [--overwrite] [--distributed [--coordinator_address=HOST:PORT \
        --num_processes=N --process_id=I]]

Rerunning the same command resumes from the newest checkpoint in the workdir. Other libraries'
INFO logging (orbax, JAX, TensorFlow) is hidden unless `--verbosity` is given (`-v 0`: INFO,
`-v 1`: DEBUG too). The loop itself is `l2reg.training.train_and_evaluate`; this file only
parses flags.
"""

from absl import app, flags
from ml_collections import config_flags

from experiments import _launch

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (experiments/configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Discard a previous run in the workdir, even one with another config."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() (its arguments detected from the cluster environment) "
    "to train data parallel over the devices of all hosts.",
)
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address",
    None,
    "With --distributed, where the cluster environment does not say: host:port of the "
    "coordinator, which process 0 starts (the same on every process).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "With --distributed, where the cluster does not say: processes in all."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "With --distributed, where the cluster does not say: this one's index."
)
flags.mark_flags_as_required(["config", "workdir"])


def _fail(error: Exception | str) -> None:
    _launch.fail("error", error)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])} (every setting is a --flag)")
    _launch.quiet_logging()
    config = _launch.config_file("error", _CONFIG)
    cluster = {
        "coordinator_address": _COORDINATOR_ADDRESS.value,
        "num_processes": _NUM_PROCESSES.value,
        "process_id": _PROCESS_ID.value,
    }
    given = [f"--{name}" for name, value in cluster.items() if value is not None]
    if given and not _DISTRIBUTED.value:
        verb = "applies" if len(given) == 1 else "apply"
        _fail(f"{', '.join(given)} {verb} to --distributed runs only: add --distributed")
    import jax

    from l2reg import training

    if _DISTRIBUTED.value:
        jax.distributed.initialize(**cluster)
    try:
        training.train_and_evaluate(config, _WORKDIR.value, overwrite=_OVERWRITE.value)
    # Bad input, an unusable workdir or data folder (OSError names the path), a diverged run.
    except (ValueError, TypeError, OSError, training.NonFiniteLossError) as error:
        _fail(error)


if __name__ == "__main__":
    app.run(main, flags_parser=_launch.flags_parser("error"))
