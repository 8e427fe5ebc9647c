"""A small config, a compilation cache and a TensorBoard events reader shared by the training
tests."""

import os
import struct

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


@pytest.fixture
def tensorboard_scalars():
    """`scalars(directory, tag)`: the values of `tag` by step that TensorBoard shows."""
    return _tensorboard_scalars


def _tensorboard_scalars(directory, tag: str) -> dict[int, float]:
    """The values of `tag` by step that TensorBoard shows: the event files read in order, a
    session START event at step T hiding the events of steps >= T read before it."""
    from tensorboardX.proto import event_pb2

    shown = {}
    for name in sorted(os.listdir(directory)):
        records = (directory / name).read_bytes()
        offset = 0
        while offset < len(records):  # TFRecords: length, its CRC, the data, their CRC
            (length,) = struct.unpack("<Q", records[offset : offset + 8])
            event = event_pb2.Event.FromString(records[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            if event.session_log.status == event_pb2.SessionLog.START:
                shown = {step: value for step, value in shown.items() if step < event.step}
            for value in event.summary.value:
                if value.tag == tag:
                    shown[event.step] = value.simple_value
    return shown
