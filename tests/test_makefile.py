"""The two-command set-up: `make quickstart` and `make test` install only when needed.

Checked with `make --dry-run` in a copy of the Makefile, so nothing is installed.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def outside_make() -> dict[str, str]:
    """The environment without what a calling make passes down (CI runs pytest inside `make test`)."""
    return {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")
    }


def dry_run(folder: Path, target: str) -> str:
    out = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", target],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        env=outside_make(),
    )
    # the PostgreSQL check runs on every `make test` (it installs nothing when the binaries are there)
    return "\n".join(line for line in out.stdout.splitlines() if "need-postgresql" not in line) + "\n"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def installed(folder: Path) -> None:
    """What the set-up leaves behind: a venv and a stamp newer than the requirements."""
    (folder / ".venv" / "bin").mkdir(parents=True)
    (folder / ".venv" / "bin" / "python").touch()
    stamp = folder / ".venv" / ".installed"
    stamp.touch()
    later = time.time() + 10
    os.utime(stamp, (later, later))


@pytest.mark.parametrize(
    ("target", "command"),
    [("quickstart", ".venv/bin/incentive run recipes/quickstart.yaml"), ("test", ".venv/bin/pytest -n 2")],
)
def test_fresh_clone_creates_the_venv_installs_then_runs(clone: Path, target: str, command: str):
    lines = dry_run(clone, target).splitlines()
    assert lines[0] == "python3 -m venv .venv"
    assert "pip install" in lines[1] and "-r requirements.txt" in lines[1]
    assert lines[-1] == command


@pytest.mark.parametrize("target", ["quickstart", "test"])
def test_second_call_does_not_reinstall(clone: Path, target: str):
    installed(clone)
    lines = dry_run(clone, target).splitlines()
    assert len(lines) == 1 and "pip" not in lines[0] and "-m venv" not in lines[0]


@pytest.mark.parametrize("changed", ["requirements.txt", "pyproject.toml"])
def test_changed_requirements_reinstall_without_a_new_venv(clone: Path, changed: str):
    installed(clone)
    later = time.time() + 20
    os.utime(clone / changed, (later, later))
    lines = dry_run(clone, "test").splitlines()
    assert "pip install" in lines[0] and not any(line.startswith("python3 -m venv") for line in lines)
    assert lines[-1] == ".venv/bin/pytest -n 2"


def test_ci_runs_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    assert script.strip().splitlines()[-1] == "make test"


def test_make_test_checks_for_postgresql_first():
    lines = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=outside_make(),
    ).stdout
    assert "sh .ci/need-postgresql" in lines.splitlines()[-2]
