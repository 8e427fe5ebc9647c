"""A small config, a compilation cache, a TensorBoard events reader and checkpoint damage shared
by the training tests."""

import os
import random
import struct
import types

import pytest
import tensorstore as ts

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


def _largest_chunk(checkpoint) -> tuple[str, int, int]:
    """(data file, offset, length) of the largest array chunk the checkpoint's state refers to.

    Read from the OCDBT database's own B+tree (`tensorstore.ocdbt.dump`), not guessed from file
    sizes: a data file can also hold bytes that nothing refers to any more, and damage there
    changes nothing a restore reads (the middle of the largest file was such bytes in 2 of 24
    runs)."""
    state = os.path.join(checkpoint, "state")
    base = ts.KvStore.open({"driver": "file", "path": state + "/"}).result()
    manifest = ts.ocdbt.dump(base).result()
    (version,) = manifest["versions"]
    assert version["root_height"] == 0, "a deeper B+tree than these tests' small states have"
    node = ts.ocdbt.dump(base, version["root"]["location"]).result()
    values = []
    for entry in node["entries"]:
        if "indirect_value" in entry:
            # "value:<base path>:<file>:<offset>:<length>"
            location, offset, length = entry["indirect_value"].rsplit(":", 2)
            _, base_path, file = location.split(":")
            values.append((os.path.join(state, base_path, file), int(offset), int(length)))
    return max(values, key=lambda value: value[2])


def _truncate(checkpoint) -> None:
    path, offset, length = _largest_chunk(checkpoint)
    os.truncate(path, offset + length // 2)


def _randomise(checkpoint) -> None:
    path, offset, length = _largest_chunk(checkpoint)
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(random.Random(path).randbytes(length))


def _flip_a_bit(checkpoint) -> None:
    # In the middle of the largest array chunk: inside its zstd frame, which has no checksum
    # of its own, so the data decode (to other numbers).
    path, offset, length = _largest_chunk(checkpoint)
    with open(path, "r+b") as file:
        file.seek(offset + length // 2)
        byte = file.read(1)[0]
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte ^ 0x10]))


@pytest.fixture
def damage():
    """Damage to a checkpoint's array data where a restore reads it (the largest chunk its
    state refers to): `damage.truncate(checkpoint)` cuts its file inside the chunk,
    `damage.randomise(checkpoint)` overwrites the chunk, `damage.flip_a_bit(checkpoint)` flips
    one bit in its middle."""
    return types.SimpleNamespace(truncate=_truncate, randomise=_randomise, flip_a_bit=_flip_a_bit)
