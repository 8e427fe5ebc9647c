"""The calibration setup at the protocol's size, 3 data draws × 5 seeds: relation 1 and λ
selection on `mlp_digits_noisy` (digits, bias-free NTK MLP, MSE, 20% label noise) with the
default preset's grids, a λ grid in thirds of a decade (the default's: halves), and 5 seeds per
draw. About 35 minutes on 2 idle CPU cores. The held-out
setups run in the default preset (3 data draws × 1 seed), where the correction κ they are
measured with is fitted.

    python -m experiments.reproduce --preset=study --workdir=/tmp/reproduce_study
"""

from ml_collections import config_dict

from experiments.configs import reproduce_default


def get_config() -> config_dict.ConfigDict:
    config = reproduce_default.get_config()
    # A denser λ grid than the default's: thirds of a decade.
    digits = reproduce_default.digits_setup(l2s=tuple(reproduce_default.THIRDS.tolist()))
    config.setups = config_dict.ConfigDict({"digits_mse": digits})
    config.seeds = 5
    return config
