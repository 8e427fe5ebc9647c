"""The experiment configs: each names every knob, validates, and builds its optimizer."""

import jax.numpy as jnp
import pytest

from experiments.configs import cnn_cifar10, mlp_digits, mlp_mnist1d, wrn28_10_cifar10
from l2reg import train

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
    train.validate_config(config, num_devices=4)
    optimizer = train.create_optimizer(config, train.create_lr_schedule(config))
    params = {"kernel": jnp.ones((3, 2))}
    updates, _ = optimizer.update(params, optimizer.init(params), params, value=jnp.float32(1.0))
    assert updates["kernel"].shape == (3, 2)
