"""A small config and a compilation cache shared by the training tests."""

import pytest

from experiments.configs import mlp_digits


@pytest.fixture
def small_config():
    """mlp_digits shrunk to seconds: MLP 32-32, 40 steps, reports every 10, checkpoints every 20."""
    config = mlp_digits.get_config()
    config.model_options.widths = (32, 32)
    config.steps = 40
    config.eval_every = 10
    config.checkpoint_every = 20
    return config


@pytest.fixture(autouse=True, scope="package")
def compilation_cache(tmp_path_factory):
    """A persistent XLA cache for these tests: every run builds fresh jitted steps, and most
    runs here compile the same programs (the subprocess launches reuse it through the
    environment)."""
    import jax

    directory = str(tmp_path_factory.mktemp("xla_cache"))
    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    previous = {name: getattr(jax.config, name) for name in names}
    for name, value in zip(names, (directory, 0.0, 0), strict=True):
        jax.config.update(name, value)
    yield directory
    for name, value in previous.items():
        jax.config.update(name, value)
