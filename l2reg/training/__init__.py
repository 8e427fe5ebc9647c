"""Training runs defined by one ConfigDict: the data-parallel trainer and the vmapped sweep.

    config = l2reg.training.default_config()           # or an experiments/configs file
    l2reg.training.train_and_evaluate(config, workdir)  # one run, data parallel, resumable
    curves = l2reg.training.sweep.run(config, [sweep.Run(l2=1e-3, lr=0.5, seed=0, steps=500)])

Both drivers build their steps from `recipe` (losses, schedules, the optimizer with AutoL2's
η/(1−μ) clock) and `steps`, so a sweep member trains exactly the run its config defines.
Needs the `experiments` extra (`pip install 'l2reg[experiments]'`); the core package
(`l2reg.autol2`, `l2reg.add_l2`, `l2reg.relations`) does not.
"""

import importlib.util

from l2reg import lazy

# The extra's packages, looked up without importing them (orbax alone imports JAX).
for _package in ("ml_collections", "orbax.checkpoint", "tensorboardX", "tqdm"):
    try:
        _found = importlib.util.find_spec(_package) is not None
    except ImportError:  # a missing parent package (orbax for orbax.checkpoint)
        _found = False
    if not _found:
        raise ImportError(
            f"l2reg.training needs the 'experiments' extra ({_package} is missing): "
            "pip install 'l2reg[experiments]'",
            name=_package,
        )

# The public names and their modules, imported on first use (`l2reg.lazy`): a config file
# imports `l2reg.training.defaults` without loading JAX.
_EXPORTS = {
    "default_config": "l2reg.training.defaults",
    "validate": "l2reg.training.config",
    "NonFiniteLossError": "l2reg.training.loop",
    "train_and_evaluate": "l2reg.training.loop",
    "Curves": "l2reg.training.rundir",
    "read_curves": "l2reg.training.rundir",
    "read_metrics": "l2reg.training.rundir",
    "Trainer": "l2reg.training.trainer",
    "create_trainer": "l2reg.training.trainer",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy.exports("l2reg.training", _EXPORTS)
