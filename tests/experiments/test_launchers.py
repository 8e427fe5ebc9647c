"""The launchers' terminal: --help exits 0, a run shows its progress bar and a few lines of its
own, other libraries' INFO logging only with --verbosity; a full disk, or SIGTERM while a run
starts, ends it with one line."""

import os
import signal
import subprocess
import sys
import time

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = [
    "experiments.train",
    "--config=experiments/configs/mlp_digits.py",
    "--config.steps=300",
]
# A run of seconds: MLP 32-32, 40 steps, a line every 10 steps, checkpoints at 20 and 40.
TRAIN_SMALL = [
    "experiments.train",
    "--config=experiments/configs/mlp_digits.py",
    "--config.model_options.widths=(32, 32)",
    "--config.steps=40",
    "--config.eval_every=10",
    "--config.checkpoint_every=20",
]


def launch(*arguments: str) -> subprocess.CompletedProcess:
    """`python -m` with `arguments`, run in the repository, stdout and stderr in one."""
    return subprocess.run(
        [sys.executable, "-m", *arguments],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300,
    )


def terminal_lines(output: bytes) -> list[str]:
    """The lines a terminal keeps: a progress bar's carriage-return updates are one line."""
    return [line for line in output.decode().split("\n") if line.strip()]


@pytest.mark.parametrize(
    "launcher", ["experiments.train", "experiments.reproduce", "experiments.suggest_l2"]
)
def test_help_exits_0_and_describes_the_flags(launcher):
    finished = launch(launcher, "--help")
    assert finished.returncode == 0, finished.stdout.decode()
    assert "--workdir" in finished.stdout.decode()


@pytest.mark.slow
def test_a_training_run_shows_its_bar_and_its_own_lines_only(tmp_path):
    first = launch(*TRAIN, f"--workdir={tmp_path / 'quiet'}")
    assert first.returncode == 0, first.stdout.decode()
    lines = terminal_lines(first.stdout)
    # Without the filter this run printed 65 lines, nearly all orbax's INFO about checkpoints.
    assert len(lines) <= 15, "\n".join(lines)
    assert not any("orbax" in line or "checkpoint_manager" in line for line in lines)
    assert "300/300" in lines[-1]
    again = launch(*TRAIN, f"--workdir={tmp_path / 'quiet'}")
    assert again.returncode == 0
    assert any("already complete (step 300)" in line for line in terminal_lines(again.stdout))
    # --verbosity brings the libraries' INFO back: the filter is what hid it.
    verbose = launch(*TRAIN, f"--workdir={tmp_path / 'verbose'}", "--verbosity=0")
    assert verbose.returncode == 0
    assert len(terminal_lines(verbose.stdout)) > 30


@pytest.mark.parametrize(
    ("launcher", "arguments", "message"),
    [
        ("experiments.train", ["--bogus_flag"], "error: Unknown command line flag 'bogus_flag'"),
        (
            "experiments.train",
            ["--config.lrr=1"],
            """error: no config field 'lrr'; did you mean "lr" instead of "lrr"?""",
        ),
        (
            "experiments.suggest_l2",
            ["--budget_steps=100", "--config.lrr=1"],
            """suggest_l2: no config field 'lrr'; did you mean "lr" instead of "lrr"?""",
        ),
        ("experiments.reproduce", ["--seeds=x"], "reproduce: flag --seeds=x: invalid literal"),
    ],
)
def test_a_bad_flag_is_one_line_before_jax_is_imported(tmp_path, launcher, arguments, message):
    config = "--config=experiments/configs/mlp_digits.py"
    assert_one_line_before_jax(tmp_path, [launcher, config, *arguments], message)


# A config file's mistakes: (its text, or None for no file; the error after "--config=FILE").
CONFIG_FILE_MISTAKES = {
    "missing": (None, "--config: cannot load '{file}': [Errno 2] No such file or directory"),
    "no get_config": ("LR = 0.1\n", "--config: '{file}' defines no get_config()"),
    "a name error": (
        "def get_config():\n    return undefined\n",
        "NameError: name 'undefined' is not defined ({file}, line 2)",
    ),
    "a value error": (
        "def get_config():\n    raise ValueError('widths must be positive')\n",
        "ValueError: widths must be positive ({file}, line 2)",
    ),
    "a missing key": (
        "def get_config():\n    return {}['lr']\n",
        "KeyError: 'lr' ({file}, line 2)",
    ),
    "a syntax error": ("def get_config(:\n", "SyntaxError: invalid syntax (config.py, line 1)"),
}


@pytest.mark.parametrize("mistake", list(CONFIG_FILE_MISTAKES))
@pytest.mark.parametrize(
    ("launcher", "prefix", "arguments"),
    [
        ("experiments.train", "error", []),
        ("experiments.suggest_l2", "suggest_l2", ["--budget_steps=100"]),
        ("experiments.reproduce", "reproduce", []),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it_before_jax_is_imported(
    tmp_path, launcher, prefix, arguments, mistake
):
    # Before: a missing file was ml_collections' 3-line message in train, "config must be a
    # ConfigDict, got <..._ErrorConfig object at 0x...>" in suggest_l2 and a 40-line traceback
    # after the heavy imports in reproduce; no get_config() was "no config field"; an error in
    # get_config() was its whole traceback on one line, or its message without the file.
    text, message = CONFIG_FILE_MISTAKES[mistake]
    config = tmp_path / "config.py"
    if text is not None:
        config.write_text(text)
    message = f"{prefix}: " + message.format(file=config)
    assert_one_line_before_jax(tmp_path, [launcher, f"--config={config}", *arguments], message)


def assert_one_line_before_jax(tmp_path, command: list[str], message: str) -> None:
    """`python -m *command` exits 1 printing one line that starts with `message` (or ends the
    line), before JAX, TensorFlow, orbax or neural-tangents are imported, and creates no
    workdir."""
    # Structural rather than timed: the config file and the flags are read with ml_collections
    # and absl alone, so the error comes before JAX, TensorFlow or orbax would load.
    launcher, *arguments = command
    finished = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            launcher,
            f"--workdir={tmp_path / 'run'}",
            *arguments,
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 1
    imported = [line.rsplit("|", 1)[-1].strip() for line in finished.stderr.splitlines()]
    assert not {"jax", "tensorflow", "orbax.checkpoint", "neural_tangents"} & set(imported)
    lines = [line for line in finished.stderr.splitlines() if not line.startswith("import time")]
    assert len(lines) == 1 and (lines[0].startswith(message) or message in lines[0]), lines
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_full_disk_during_training_ends_with_one_error_line(tmp_path, on_full_tmpfs):
    # On a 64 KiB tmpfs of its own there is room for the config and the first lines, not for
    # the first checkpoint, whose array data meet the full disk in orbax's and tensorstore's
    # threads.
    disk = tmp_path / "disk"
    disk.mkdir()
    finished = on_full_tmpfs(
        disk,
        [sys.executable, "-m", *TRAIN_SMALL, f"--workdir={disk / 'run'}"],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300,
    )
    output = finished.stdout.decode()
    assert finished.returncode == 1, output
    lines = terminal_lines(finished.stdout)
    # Before: five ERROR records from orbax's threads with their tracebacks (60 lines), and
    # tensorstore's "RuntimeError: Event loop is closed" tracebacks.
    assert "Traceback" not in output and "E1" not in output, output
    assert all("step/s" in line for line in lines[:-1]), output  # the progress bar
    assert (
        lines[-1]
        == (
            f"error: a checkpoint could not be written in '{disk}/run/checkpoints' (OSError: "
            f"[Errno 28] No space left on device: '{disk}/run/checkpoints/20.orbax-checkpoint-tmp"
        )
        + lines[-1].split("20.orbax-checkpoint-tmp", 1)[1]
    ), output
    assert lines[-1].endswith(
        "); none was complete before it: rerun the same command once the cause is fixed"
    ), output


def _catches_sigterm(pid: int) -> bool:
    """Whether process `pid` has a handler for SIGTERM (Linux: its SigCgt mask)."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(line for line in status if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


def _has_loaded(pid: int, library: str) -> bool:
    """Whether process `pid` has mapped a shared library whose path contains `library`."""
    with open(f"/proc/{pid}/maps") as maps:
        return library in maps.read()


# Moments of the start-up, told from outside without timing: the launcher's handler is in place
# (before the flags are parsed), and JAX's compiled library is loaded (JAX is being imported,
# seconds before the training loop takes SIGTERM over).
MOMENTS = {
    "handler installed": _catches_sigterm,
    "importing JAX": lambda pid: _has_loaded(pid, "jaxlib"),
}


def terminate_at(moment: str, workdir) -> subprocess.Popen:
    """Starts a training run in `workdir` and sends it SIGTERM at `moment` of its start-up."""
    process = subprocess.Popen(
        [sys.executable, "-m", *TRAIN_SMALL, f"--workdir={workdir}"],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not MOMENTS[moment](process.pid):
            assert process.poll() is None, process.communicate()
            time.sleep(0.002)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc")
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigterm_while_starting_exits_0_in_one_line_and_writes_nothing(tmp_path, moment):
    # Before: killed by the signal (status 143 from a shell), without a word.
    process = terminate_at(moment, tmp_path / "run")
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert stderr == "train: stopped by SIGTERM; nothing was written\n"
    assert stdout == ""
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc")
def test_sigterm_while_resuming_says_its_workdir_is_whole_and_leaves_it_as_it_was(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("kept")
    process = terminate_at("importing JAX", workdir)
    stderr = process.communicate()[1]
    assert process.returncode == 0, stderr
    assert stderr == (
        f"train: stopped by SIGTERM; no result in '{workdir}' is half-written: rerun the same "
        "command to go on\n"
    )
    assert os.listdir(workdir) == ["notes.txt"]
