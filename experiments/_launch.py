"""What the launchers share: absl flag parsing that fails in one line and lets --help exit 0, a
clean exit on SIGTERM outside the training loop, and a quiet terminal.

SIGTERM (a scheduler's preemption, `kill`) would end a launcher that is still importing JAX,
TensorFlow or orbax (seconds) with status 143 and no word. From the moment its flags are
about to be parsed (`flags_parser`), SIGTERM ends it instead with status 0, as the training
loop does after its preemption checkpoint, and one line on stderr: "train: stopped by
SIGTERM; nothing was written" while the workdir does not exist, else that no result in it is
half-written. The training loop replaces the handler with its own while it trains.

A training run's terminal is its progress bar and a few lines of its own ("resuming from the
checkpoint of step 300", "wrote report.md"). The libraries under it log far more at INFO:
orbax about every checkpoint it writes (≈ 130 lines in a 10-second run), JAX about the
backends it did not find, TensorFlow's C++ runtime about its devices. `quiet_logging` hides
INFO records that do not come from l2reg or experiments, by a filter on absl's handler (every
Python logger reaches it: absl's, orbax's and JAX's alike), so that their warnings and errors
still show and the launchers keep logging through absl as the library does. Giving
`--verbosity` (`-v`) brings everything back: `-v 0` absl's INFO, `-v 1` DEBUG as well.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import sys
import traceback

from absl import flags
from absl import logging as absl_logging

# Our own INFO lines are printed without absl's "I1203 10:06:35.347 139686 loop.py:105]"
# prefix, as a program's messages; warnings and errors keep it (--showprefixforinfo restores it).
flags.FLAGS.set_default("showprefixforinfo", False)


def fail(program: str, error: Exception | str) -> None:
    """Exits with status 1 and `program: message` on one line."""
    message = " ".join(str(error).split())
    sys.exit(f"{program}: {message}")


def config_file(program: str, holder: flags.FlagHolder):
    """The ConfigDict of a `config_flags.DEFINE_config_file` flag (None when not given), or an
    exit in one line naming the file when it could not be read: ml_collections keeps that
    error until the config is first used, with the paths it tried on lines of their own."""
    config = holder.value
    try:
        if config is not None:
            config.keys()
    except OSError as error:
        cause = error.__cause__ or error
        reason = [line.strip() for line in str(cause).splitlines() if line.strip()][-1]
        filename = flags.FLAGS[holder.name].config_filename
        fail(program, f"--{holder.name}: cannot load {filename!r}: {reason}")
    return config


def stopped(program: str, error: Exception) -> None:
    """Exits with status 0 and `program: message` on one line: a run stopped by SIGTERM after
    saving, as the training loop itself exits after a preemption."""
    print(f"{program}: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(0)


def flags_parser(program: str):
    """An absl `flags_parser` for `app.run`: a bad flag or `--config.key=value` override is a
    one-line error, and a help flag exits 0. Calling it makes SIGTERM a clean exit from then on
    (`_StopOnSigterm`), before the flags are parsed and the heavy modules imported.

    absl's help flags (--help, --helpshort, --helpfull, --helpxml) print the help and then call
    sys.exit(1) from inside the parser, while bad flags raise flags.Error; so an exit with
    status 1 during parsing is a help request that succeeded. A bad override raises from
    ml_collections (KeyError or AttributeError for an unknown field, TypeError or ValueError
    for a bad value). An error raised by a config file's own code is its innermost error, with
    the file and line; a file without get_config() is named.
    """

    on_sigterm = _StopOnSigterm()
    signal.signal(signal.SIGTERM, on_sigterm)

    def parse(argv: list[str]) -> list[str]:
        try:
            arguments = flags.FLAGS(argv)
            if "workdir" in flags.FLAGS:
                on_sigterm.workdir = flags.FLAGS.workdir
            return arguments
        except SystemExit as exit_:
            sys.exit(0 if exit_.code == 1 else exit_.code)
        except (KeyError, AttributeError) as error:
            config = _config_argument(argv)
            if isinstance(error, AttributeError) and "'get_config'" in str(error):
                fail(program, f"--config: {config!r} defines no get_config()")
            frames = traceback.extract_tb(error.__traceback__)
            if config and os.path.abspath(frames[-1].filename) == os.path.abspath(config):
                fail(program, _one_line(error))  # raised by the config file's own code
            # ml_collections' message (an AttributeError may wrap the KeyError): the field,
            # quoted, then perhaps "Did you mean ...?" on a line of its own.
            while error.args and isinstance(error.args[0], Exception):
                error = error.args[0]
            text = str(error.args[0]) if error.args else str(error)
            field, _, hint = text.partition("\n")
            hint = f"; {hint.strip()[0].lower()}{hint.strip()[1:]}" if hint.strip() else ""
            fail(program, f"no config field {field.strip(chr(34) + chr(39))!r}{hint}")
        except Exception as error:  # flags.Error, or raised by a config file's own code
            fail(program, _one_line(error))

    return parse


def _one_line(error: Exception) -> str:
    """A flag's error; one raised by a config file's code (which ml_collections passes on with
    its traceback in the message, or not at all) as its innermost error and where it was
    raised."""
    innermost = error
    while innermost.__cause__ or innermost.__context__:
        innermost = innermost.__cause__ or innermost.__context__
    if isinstance(error, flags.Error) and "Error whilst parsing config file" not in str(error):
        return str(error)
    if isinstance(innermost, SyntaxError):  # its message names the file and line
        return f"SyntaxError: {innermost}"
    frames = traceback.extract_tb(innermost.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(innermost).__name__}: {innermost}{where}"


def _config_argument(argv: list[str]) -> str | None:
    """The value given to --config in `argv` (`--config=FILE` or `--config FILE`)."""
    for i, argument in enumerate(argv):
        if argument.startswith("--config="):
            return argument.split("=", 1)[1]
        if argument == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


class _StopOnSigterm:
    """A SIGTERM handler for the launcher's own time (the training loop has its own): one line on
    stderr, exit status 0.

    The process ends at once (`os._exit`): raised as SystemExit, the exit can be lost, as when
    the handler runs inside a garbage collector's callback (JAX has one) and Python ignores it.
    Nothing needs unwinding: outside the training loop the library writes each file to a
    temporary one and renames it once complete, so that no result is ever half-written.
    """

    def __init__(self):
        self.program = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        self.workdir: str | None = None  # known once the flags are parsed

    def __call__(self, signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not cut it short
        if self.workdir is None or not os.path.exists(self.workdir):
            line = f"{self.program}: stopped by SIGTERM; nothing was written"
        else:
            line = (
                f"{self.program}: stopped by SIGTERM; no result in {self.workdir!r} is "
                "half-written: rerun the same command to go on"
            )
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # it may be in the middle of a write itself
                stream.flush()
        os.write(2, f"{line}\n".encode())
        os._exit(0)


def _package_folders() -> tuple[str, ...]:
    """The folders of the l2reg and experiments packages, found without importing l2reg."""
    folders = [os.path.dirname(os.path.abspath(__file__))]
    spec = importlib.util.find_spec("l2reg")
    if spec is not None and spec.submodule_search_locations:
        folders += [os.path.abspath(folder) for folder in spec.submodule_search_locations]
    return tuple(os.path.join(folder, "") for folder in folders)


class OwnInfoOnly(logging.Filter):
    """Passes warnings and worse from anywhere, and records below WARNING only from the source
    files under `folders` (absl logs every caller's records as the one 'absl' logger, so the
    logger's name cannot tell them apart; the calling file can)."""

    def __init__(self, folders: tuple[str, ...]):
        super().__init__()
        self.folders = folders

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.pathname.startswith(self.folders)


def quiet_logging() -> None:
    """Unless --verbosity (-v) was given: hides other libraries' INFO logging (an `OwnInfoOnly`
    filter on absl's handler) and TensorFlow's C++ INFO lines (TF_CPP_MIN_LOG_LEVEL=1, where
    it is not set). Call at the start of `main`, after absl has parsed the flags."""
    if flags.FLAGS["verbosity"].present:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    handler = absl_logging.get_absl_handler()
    if not any(isinstance(existing, OwnInfoOnly) for existing in handler.filters):
        handler.addFilter(OwnInfoOnly(_package_folders()))
