"""Result files written whole or not at all: a crash never leaves half a file behind."""

import contextlib
import io
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from typing import TypeVar

_Created = TypeVar("_Created")

__all__ = ["check_folder", "errors_naming", "pyplot", "save_figure", "write_atomic"]


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
    """Writes `data` (str as UTF-8) to `path`, replacing it only once the new file is complete.

    The data go to a temporary file in the same folder, flushed to disk, then `os.replace`d
    onto `path`; on any error the temporary file is removed and `path` is left as it was.
    A new file gets the permissions `open(path, "w")` would give (0o666 less the umask); a
    replaced file keeps its permission bits.

    Raises:
      OSError: the file cannot be written (a full disk, a read-only folder); it names `path`
        rather than the temporary file, and `path` is left as it was.
    """
    folder = os.path.dirname(path) or "."
    # Opened with mode 0o666, which the kernel masks with the umask as it does for open(); the
    # umask cannot be read without setting it, a race with other threads creating files.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with errors_naming(path):
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
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise


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
