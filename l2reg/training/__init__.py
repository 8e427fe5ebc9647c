"""Training runs defined by one ConfigDict: the data-parallel trainer and the vmapped sweep.

    config = l2reg.training.default_config()           # or an experiments/configs file
    l2reg.training.train_and_evaluate(config, workdir)  # one run, data parallel, resumable
    curves = l2reg.training.sweep.run(config, [sweep.Run(l2=1e-3, lr=0.5, seed=0, steps=500)])

Both drivers build their steps from `recipe` (losses, schedules, the optimizer with AutoL2's
η/(1−μ) clock) and `steps`, so a sweep member trains exactly the run its config defines.
Needs the `experiments` extra (`pip install 'l2reg[experiments]'`); the core package
(`l2reg.autol2`, `l2reg.add_l2`, `l2reg.relations`) does not.
"""

try:
    import ml_collections  # noqa: F401
    import orbax.checkpoint  # noqa: F401
    import tensorboardX  # noqa: F401
    import tqdm  # noqa: F401
except ImportError as error:
    raise ImportError(
        f"l2reg.training needs the 'experiments' extra ({error.name} is missing): "
        "pip install 'l2reg[experiments]'"
    ) from error

from l2reg.training.config import default_config, validate
from l2reg.training.loop import NonFiniteLossError, train_and_evaluate
from l2reg.training.rundir import Curves, read_curves, read_metrics
from l2reg.training.trainer import Trainer, create_trainer

__all__ = [
    "Curves",
    "NonFiniteLossError",
    "Trainer",
    "create_trainer",
    "default_config",
    "read_curves",
    "read_metrics",
    "train_and_evaluate",
    "validate",
]
