"""One process of a multi-process training run on CPU, launched by test_multihost.py.

    python tests/training/multihost_worker.py --coordinator_address=localhost:PORT \
        --num_processes=2 \
        --process_id=0 --workdir=DIR --config='{"steps": 40}' [--alternate_devices]

Runs `l2reg.training.train_and_evaluate` on experiments/configs/mlp_digits.py updated with the
JSON object of `--config`, under `jax.distributed` with gloo collectives between the processes.
Each process's own CPU devices are set by the environment (JAX_PLATFORMS=cpu and
--xla_force_host_platform_device_count in XLA_FLAGS).
"""

import argparse
import json

import jax

from experiments.configs import mlp_digits
from l2reg import training


def alternating_devices() -> list[jax.Device]:
    """All devices, alternating between processes: process 0's first, process 1's first, ..."""
    by_process = [
        [device for device in jax.devices() if device.process_index == process]
        for process in range(jax.process_count())
    ]
    return [device for devices in zip(*by_process, strict=True) for device in devices]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator_address", required=True, help="host:port of process 0")
    parser.add_argument("--num_processes", type=int, required=True)
    parser.add_argument("--process_id", type=int, required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--config", default="{}", help="JSON object of config fields to update")
    parser.add_argument(
        "--alternate_devices",
        action="store_true",
        help="train on a mesh whose devices alternate between processes",
    )
    args = parser.parse_args()

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=args.coordinator_address,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )
    config = mlp_digits.get_config()
    config.update(json.loads(args.config))
    devices = alternating_devices() if args.alternate_devices else None
    training.train_and_evaluate(config, args.workdir, devices=devices)


if __name__ == "__main__":
    main()
