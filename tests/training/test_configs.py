"""The experiment configs: each names every knob, validates, and builds its optimizer."""

import os

import jax.numpy as jnp
import pytest
from absl import flags
from ml_collections import config_dict, config_flags

from experiments.configs import cnn_cifar10, mlp_digits, mlp_mnist1d, wrn28_10_cifar10
from l2reg import data, training
from l2reg.training import recipe

CONFIGS = {
    "mlp_digits": mlp_digits,
    "mlp_mnist1d": mlp_mnist1d,
    "cnn_cifar10": cnn_cifar10,
    "wrn28_10_cifar10": wrn28_10_cifar10,
}


def _knobs(config) -> set[str]:
    return {key for key in config.keys() if key not in ("model_options", "data_options")}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_names_every_knob_and_is_valid(name):
    config = CONFIGS[name].get_config()
    assert _knobs(config) == _knobs(mlp_digits.get_config())
    training.validate(config, num_devices=4)
    optimizer = recipe.create_optimizer(config, recipe.Hyperparameters.of(config))
    params = {"kernel": jnp.ones((3, 2))}
    updates, _ = optimizer.update(params, optimizer.init(params), params, value=jnp.float32(1.0))
    assert updates["kernel"].shape == (3, 2)


def test_wrn_config_is_the_authors_setup_its_docstring_states():
    # Docstring: momentum SGD η = 0.2, batch 128, 200 epochs of CIFAR-10's 50,000 images,
    # η × 0.2 at 30/60/90%, L2 = 5e-4 in their Σθ² convention, i.e. λ = 1e-3 in ours.
    config = wrn28_10_cifar10.get_config()
    assert (config.optimizer, config.lr) == ("momentum", 0.2)
    assert config.batch_size == 128 and config.steps == 200 * 50_000 // 128
    assert config.lr_schedule == "step"
    assert tuple(config.lr_step_boundaries) == (0.3, 0.6, 0.9) and config.lr_step_factor == 0.2
    assert (config.l2_mode, config.l2) == ("fixed", 2 * 5e-4)
    assert config.model_options.normalization == "batch" and config.augment


def test_data_options_are_set_from_the_command_line():
    # Every data option is a declared field, so a launcher's `--config.data_options.x=...`
    # overrides it (an undeclared field is refused by config_flags).
    path = os.path.join(os.path.dirname(mlp_digits.__file__), "mlp_digits.py")
    argv = [
        "train",
        f"--config={path}",
        "--config.dataset=mnist1d",
        "--config.data_options.test_size=500",
        "--config.data_options.label_noise=0.1",
        "--config.data_options.validation_size=400",
        "--config.data_options.validation_seed=3",
    ]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", path, flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    config = flag_values.config
    training.validate(config)
    dataset = data.load(config.dataset, data_dir=config.data_dir, **config.data_options)
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (3600, 400, 500)


def test_default_data_options_load_the_standard_splits():
    # A None test_size (a placeholder) passes through ** and to_dict as None.
    config = training.default_config()
    assert config.data_options.to_dict() == {
        "test_size": None,
        "label_noise": 0.0,
        "label_noise_seed": 0,
        "validation_size": 0,
        "validation_seed": 0,
    }
    dataset = data.load(config.dataset, **config.data_options)
    assert dataset.validation is None and len(dataset.train) == 1500
    # A config may hold only some of them: the others take load's defaults.
    config.data_options = config_dict.ConfigDict({"label_noise": 0.2})
    training.validate(config)
