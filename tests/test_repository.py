"""The README's promises about the repository: its commands, CI, and lint."""

import math
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands():
    """The shell commands in the README's set-up section, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", setup, flags=re.S)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert "experiments." in main_job
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests.strip() in ci.splitlines(), "CI must run the README's test command verbatim"


def test_readme_snippet_runs():
    """The optax snippet in the README trains and reports λ."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)\n```", readme, flags=re.S).group(1)
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    # It trains: from zero weights (loss log 10 on 10 classes) the loss goes down.
    assert float(namespace["loss_fn"](namespace["params"])) < 0.5 * math.log(10)
    # λ = 1e-2 and η = 0.1 give a cooldown of 0.1/(λη) = 100 steps: the first check that
    # may decay is n = 110, after the snippet's 100 steps, so λ is still l2_init.
    assert float(namespace["l2reg"].current_l2(namespace["opt_state"])) == pytest.approx(1e-2)


def test_code_passes_ruff():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
