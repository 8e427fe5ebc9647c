"""Tests for l2reg.files: atomic writes, folder checks."""

import errno
import os
import stat

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
