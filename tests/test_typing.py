"""The type stubs match the built extension, and the package type-checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT)


def test_stub_matches_extension() -> None:
    pytest.importorskip("mypy")
    res = _run("mypy.stubtest", "dataprobes._core")
    assert res.returncode == 0, res.stdout + res.stderr


def test_package_type_checks() -> None:
    pytest.importorskip("mypy")
    res = _run("mypy", "--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "python" / "dataprobes"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_return_flags_have_literal_overloads() -> None:
    pytest.importorskip("mypy")
    env = {**os.environ, "MYPYPATH": str(ROOT / "python")}
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "tests/typing_return_flags.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
