"""Tests for l2reg.files: atomic writes of a file and of a set of files, folder checks."""

import errno
import json
import os
import stat
import sys

import pytest

from l2reg import files


def test_write_atomic_creates_and_replaces(tmp_path):
    path = tmp_path / "out" / "report.md"
    files.write_atomic(str(path), "first")
    files.write_atomic(str(path), b"second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["report.md"]


def test_write_atomic_failure_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.json"
    files.write_atomic(str(path), "{}")
    with pytest.raises(TypeError):
        files.write_atomic(str(path), 42)  # neither str nor bytes: fails mid-write
    assert path.read_text() == "{}"
    assert os.listdir(tmp_path) == ["results.json"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_write_atomic_gives_a_new_file_the_mode_of_open_under_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        files.write_atomic(str(tmp_path / "results.json"), "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "results.json").st_mode) == mode


def test_write_atomic_keeps_the_mode_of_a_replaced_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{}")
    os.chmod(path, 0o640)
    files.write_atomic(str(path), '{"a": 1}')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert path.read_text() == '{"a": 1}'


def test_save_figure_writes_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    files.save_figure(figure, str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")


def test_check_folder_accepts_folders_new_or_existing(tmp_path):
    files.check_folder(str(tmp_path))
    files.check_folder(str(tmp_path / "new" / "deeper"))
    assert os.listdir(tmp_path) == []  # nothing made, nothing left behind by the check


def test_check_folder_refuses_a_folder_it_cannot_write_in():
    # Nothing can be created under /proc, not even by root.
    with pytest.raises(ValueError, match=r"^workdir '/proc' is not writable \(") as error:
        files.check_folder("/proc")
    assert "\n" not in str(error.value)
    message = r"^--out '/proc/l2reg/run' cannot be created in '/proc' \("
    with pytest.raises(ValueError, match=message):
        files.check_folder("/proc/l2reg/run", "--out")


def test_check_folder_refuses_a_file_or_a_path_through_one(tmp_path):
    (tmp_path / "results.txt").write_text("kept")
    with pytest.raises(ValueError, match=r"^workdir '.*results.txt' is a file: it must be a"):
        files.check_folder(str(tmp_path / "results.txt"))
    with pytest.raises(ValueError, match=r"^--out '.*/results.txt/run' is inside the file '"):
        files.check_folder(str(tmp_path / "results.txt" / "run"), "--out")
    assert (tmp_path / "results.txt").read_text() == "kept"


def test_write_atomic_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    files.write_atomic(str(path), "{}")

    def full_disk(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write names no file

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match=r"No space left on device: '.*results.json'$") as error:
        files.write_atomic(str(path), '{"a": 1}')
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(path)
    assert path.read_text() == "{}"
    assert os.listdir(tmp_path) == ["results.json"]


def test_errors_naming_keeps_the_kind_of_error_and_names_the_path():
    with pytest.raises(FileNotFoundError, match=r"^\[Errno 2\] .*: 'run/config.json'$"):
        with files.errors_naming("run/config.json"):
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))


def _outputs(folder, version: str) -> dict[str, str]:
    return {
        str(folder / name): f"{name} {version}" for name in ("report.md", "results.json", "a.png")
    }


def test_write_all_writes_every_file_and_leaves_no_temporary(tmp_path):
    files.write_all(_outputs(tmp_path, "old"))
    files.write_all({**_outputs(tmp_path, "new"), str(tmp_path / "plots" / "b.png"): b"\x89PNG"})
    assert sorted(os.listdir(tmp_path)) == ["a.png", "plots", "report.md", "results.json"]
    assert (tmp_path / "results.json").read_text() == "results.json new"
    assert (tmp_path / "plots" / "b.png").read_bytes() == b"\x89PNG"


@pytest.mark.parametrize("failing", [1, 2, 3])
def test_write_all_on_a_full_disk_keeps_every_old_file(tmp_path, monkeypatch, failing):
    files.write_all(_outputs(tmp_path, "old"))
    before = {name: (tmp_path / name).read_text() for name in os.listdir(tmp_path)}
    written = []
    real_fsync = os.fsync

    def fsync(descriptor):  # the k-th file's data meet a full disk (ENOSPC names no file)
        written.append(descriptor)
        if len(written) == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    failed = list(_outputs(tmp_path, "new"))[failing - 1]
    with pytest.raises(
        OSError, match=rf"^\[Errno 28\] No space left on device: '{failed}'$"
    ) as error:
        files.write_all(_outputs(tmp_path, "new"))
    assert error.value.errno == errno.ENOSPC and error.value.filename == failed
    assert {name: (tmp_path / name).read_text() for name in os.listdir(tmp_path)} == before


def test_write_all_refuses_a_folder_in_the_way_before_replacing_anything(tmp_path):
    files.write_all(_outputs(tmp_path, "old"))
    (tmp_path / "results.json").unlink()
    (tmp_path / "results.json").mkdir()
    with pytest.raises(IsADirectoryError, match=r"Is a directory: '.*/results.json'$"):
        files.write_all(_outputs(tmp_path, "new"))
    assert (tmp_path / "report.md").read_text() == "report.md old"
    assert sorted(os.listdir(tmp_path)) == ["a.png", "report.md", "results.json"]


# Run in a user and mount namespace of its own (no root needed where user namespaces are on):
# a 64 KiB tmpfs with the old outputs, then new ones of which the second does not fit.
_FULL_TMPFS = r"""
import errno, json, os, sys
from l2reg import files
folder = sys.argv[1]
names = ["report.md", "results.json", "a.png"]
files.write_all({os.path.join(folder, name): name + " old" for name in names})
new = {os.path.join(folder, name): name + " new" for name in names}
new[os.path.join(folder, "results.json")] = b"x" * 128 * 1024
try:
    files.write_all(new)
except OSError as error:
    outcome = {"errno": error.errno, "message": str(error)}
else:
    outcome = {"errno": None}
outcome["files"] = {name: open(os.path.join(folder, name)).read() for name in os.listdir(folder)}
print(json.dumps(outcome))
"""


def test_write_all_on_a_real_full_disk_keeps_every_old_file(tmp_path, on_full_tmpfs):
    folder = tmp_path / "disk"
    folder.mkdir()
    finished = on_full_tmpfs(
        folder,
        [sys.executable, "-c", _FULL_TMPFS, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    outcome = json.loads(finished.stdout)
    assert outcome["errno"] == errno.ENOSPC
    assert outcome["message"] == f"[Errno 28] No space left on device: '{folder}/results.json'"
    assert outcome["files"] == {
        name: f"{name} old" for name in ("report.md", "results.json", "a.png")
    }


def test_rendered_returns_what_was_rendered_and_leaves_no_staging_folder(tmp_path):
    folder = tmp_path / "out"

    def render(staging):
        for name, text in (("b.txt", "second"), ("a.png", "first")):
            with open(os.path.join(staging, name), "w") as file:
                file.write(text)

    assert files.rendered(str(folder), render) == {
        str(folder / "a.png"): b"first",
        str(folder / "b.txt"): b"second",
    }
    assert list(folder.iterdir()) == []


def test_rendered_removes_its_staging_folder_when_rendering_fails(tmp_path):
    (tmp_path / "kept.png").write_text("old")

    def render(staging):
        with open(os.path.join(staging, "half.png"), "w") as file:
            file.write("partial")
        raise RuntimeError("plot failed")

    with pytest.raises(RuntimeError, match="plot failed"):
        files.rendered(str(tmp_path), render)
    assert [path.name for path in tmp_path.iterdir()] == ["kept.png"]
