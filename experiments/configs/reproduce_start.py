"""AutoL2's start swept: the default preset (relation 1, the calibration setup and the two
held-out ones at their default budgets, 3 data draws × 1 seed), each setup with three more
AutoL2 schedules (the released cooldown) started at λη = 0.015, 0.15 and 0.4 besides the
default's λη = 1.5e-3. About 12 minutes on 2 idle CPU cores.

    python -m experiments.reproduce --preset=start --workdir=/tmp/reproduce_start

AutoL2 only divides λ, so a start below a setup's λ_opt is never corrected: the default start
is the calibration setup's probe λη, below the cross-entropy MLP's λ_opt at every budget. The
starts were fixed before any run: one and two decades above the default's, and the paper's
Figure 1c start (L2 = 0.1 in its notation, λ = 0.2, with lr 0.2 and momentum 0.9: λη = 0.4 at
the effective η/(1−μ) = 2). They are λη values: the same start on every setup.
"""

from ml_collections import config_dict

from experiments.configs import reproduce_default

STARTS = (0.015, 0.15, 0.4)


def get_config() -> config_dict.ConfigDict:
    config = reproduce_default.get_config()
    for setup in config.setups.values():
        setup.autol2_starts = STARTS
    return config
