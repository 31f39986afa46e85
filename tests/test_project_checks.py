"""Checks a fresh clone must pass: lint of the code and of the Docker image recipe."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run `make test`, which installs the dev extra.")
    return found


def test_ruff_check_passes():
    result = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint():
    result = subprocess.run([_tool("hadolint"), "docker/Dockerfile"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_spin_help_lists_every_subcommand():
    result = subprocess.run([_tool("spin"), "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # Typer's help lists each command as the first word of a row ("│ fit   Run batched …"); match whole
    # words there, so "fit" is not found inside "fits".
    listed = {line.strip("│ ").split()[0] for line in result.stdout.splitlines() if line.strip("│ ")}
    for command in ("body", "data", "fit", "fits", "train", "eval", "rounds"):
        assert command in listed, result.stdout
