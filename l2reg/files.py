"""Result files written whole or not at all: a crash never leaves half a file behind."""

import io
import os
import tempfile

__all__ = ["check_folder", "pyplot", "save_figure", "write_atomic"]


def check_folder(path: str, name: str = "workdir") -> None:
    """Checks, before any work, that `path` is a folder or can be made one.

    Raises:
      ValueError: `path`, or the nearest part of it that exists, is not a folder.
    """
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        is_path = existing == os.path.abspath(path)
        where = "is a file" if is_path else f"is inside the file {existing!r}"
        raise ValueError(f"{name} {path!r} {where}: it must be a folder, new or existing")


def write_atomic(path: str, data: bytes | str) -> None:
    """Writes `data` (str as UTF-8) to `path`, replacing it only once the new file is complete.

    The data go to a temporary file in the same folder, flushed to disk, then `os.replace`d
    onto `path`; on any error the temporary file is removed and `path` is left as it was.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as file:
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
