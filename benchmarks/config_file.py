"""Loading a config file by path, as the launchers' `--config` flag does, for the benchmarks
(which take their configs from the command line rather than importing `experiments`)."""

import importlib.util
import os

CONFIGS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments", "configs"
)


def load(path: str):
    """The ConfigDict of the config file at `path` (its `get_config()`)."""
    spec = importlib.util.spec_from_file_location("benchmark_config", path)
    if spec is None or not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} does not exist")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
