"""Result files written whole or not at all, and sets of them all new or all as they were: a
crash never leaves half a file behind, nor does a full disk leave new files beside old ones."""

import contextlib
import errno
import io
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

_Created = TypeVar("_Created")

__all__ = [
    "check_folder",
    "errors_naming",
    "pyplot",
    "rendered",
    "save_figure",
    "write_all",
    "write_atomic",
]


def check_folder(path: str, name: str = "workdir") -> None:
    """Checks, before any work, that `path` is a writable folder or can be made one.

    The nearest part of `path` that exists must be a folder in which this process can create
    files: a folder is made there and removed again (permissions alone do not tell, for root or
    on a read-only or virtual file system such as /proc). Nothing else is created.

    Raises:
      ValueError: `path`, or the nearest part of it that exists, is not a folder, or that
        folder is not writable.
    """
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    is_path = existing == os.path.abspath(path)
    if not os.path.isdir(existing):
        where = "is a file" if is_path else f"is inside the file {existing!r}"
        raise ValueError(f"{name} {path!r} {where}: it must be a folder, new or existing")
    try:
        probe, _ = _create_unique(existing, "", os.mkdir)
        os.rmdir(probe)
    except OSError as error:
        what = "is not writable" if is_path else f"cannot be created in {existing!r}"
        raise ValueError(
            f"{name} {path!r} {what} ({error.strerror}): choose a folder this process may write to"
        ) from None


def _create_unique(
    folder: str, suffix: str, create: Callable[[str], _Created]
) -> tuple[str, _Created]:
    # `create(path)` on a fresh hidden name in `folder`, retried in the unlikely event it exists.
    while True:
        path = os.path.join(folder, f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            return path, create(path)
        except FileExistsError:
            continue


@contextlib.contextmanager
def errors_naming(path: str) -> Iterator[None]:
    """Re-raises an OSError of the block as one naming `path` (same errno and subclass).

    A failed write or flush (ENOSPC: a full disk) raises an OSError naming no file, or naming
    a temporary one: the message then says which file could not be written.
    """
    try:
        yield
    except OSError as error:
        raise OSError(error.errno, error.strerror, path) from error


def write_atomic(path: str, data: bytes | str) -> None:
    """Writes `data` (str as UTF-8) to `path`, replacing it only once the new file is complete:
    `write_all({path: data})`.

    A new file gets the permissions `open(path, "w")` would give (0o666 less the umask); a
    replaced file keeps its permission bits.

    Raises:
      OSError: the file cannot be written (a full disk, a read-only folder); it names `path`
        rather than the temporary file, and `path` is left as it was.
    """
    write_all({path: data})


def write_all(files: Mapping[str, bytes | str]) -> None:
    """Writes every file of `files` (path → contents, str as UTF-8), replacing none of them until
    all are complete: a run's outputs are all new or all as they were.

    Each file's contents go to a temporary file in the path's own folder (made if missing),
    flushed to disk; only once every one is written are they `os.replace`d onto their paths, in
    order. On any error before that the temporary files are removed and every path is left as
    it was. The replacements are renames within a folder, which a full disk does not stop; a
    process killed during them (microseconds) can leave the first of the files new and the rest
    old. Permissions are those of `write_atomic`.

    Raises:
      OSError: a file cannot be written (a full disk, a read-only folder); one line naming its
        path (not the temporary file's) and the cause, with the original errno.
    """
    temporaries = {}  # path → its complete temporary file, until replaced
    try:
        for path, data in files.items():
            temporaries[path] = _write_temporary(path, data)
        for path in list(temporaries):
            with errors_naming(path):
                os.replace(temporaries[path], path)
            del temporaries[path]
    finally:
        for temporary in temporaries.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def rendered(folder: str, render: Callable[[str], None]) -> dict[str, bytes]:
    """The files that `render(staging)` writes into a new staging folder inside `folder` (made if
    missing), as {path in `folder`: contents}, for `write_all`; the staging folder is removed
    whatever happens, so a failed rendering leaves `folder`'s files as they were."""
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".outputs-", dir=folder)
    try:
        render(staging)
        outputs = {}
        for name in sorted(os.listdir(staging)):
            with open(os.path.join(staging, name), "rb") as file:
                outputs[os.path.join(folder, name)] = file.read()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return outputs


def _write_temporary(path: str, data: bytes | str) -> str:
    """Writes `data` to a new temporary file beside `path`, flushed to disk; returns its name.
    On an error the temporary file is removed and the OSError names `path`."""
    folder = os.path.dirname(path) or "."
    # Opened with mode 0o666, which the kernel masks with the umask as it does for open(); the
    # umask cannot be read without setting it, a race with other threads creating files.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with errors_naming(path):
        if os.path.isdir(path):  # found now, rather than once the files before it are replaced
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        os.makedirs(folder, exist_ok=True)
        temporary, handle = _create_unique(
            folder, "-" + os.path.basename(path), lambda name: os.open(name, flags, 0o666)
        )
        try:
            with os.fdopen(handle, "wb") as file:
                with contextlib.suppress(FileNotFoundError):
                    os.fchmod(file.fileno(), stat.S_IMODE(os.stat(path).st_mode))
                file.write(data.encode() if isinstance(data, str) else data)
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            os.unlink(temporary)
            raise
    return temporary


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported on first use: matplotlib is an
    optional dependency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str, *, dpi: int = 110) -> None:
    """Saves a matplotlib figure as a PNG with `write_atomic`, then closes it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    write_atomic(path, buffer.getvalue())
