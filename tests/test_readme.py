"""Every Python example in the README runs as written (so the README cannot rot)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _needs_torch(code: str) -> bool:
    return "dataprobes.lm" in code or "dataprobes.attribution" in code or "import torch" in code


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    code = BLOCKS[index]
    if _needs_torch(code):
        pytest.importorskip("torch")
    # Each block is complete: it runs on its own in a fresh interpreter, in an
    # empty directory (examples may write files).
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, MPLBACKEND="Agg")
    # as a user runs them: the test session's Triton interpreter switch is not theirs
    env.pop("TRITON_INTERPRET", None)
    res = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, f"README example {index} failed:\n{code}\n--- stderr ---\n{res.stderr[-4000:]}"


def test_readme_code_fences_are_closed() -> None:
    """An opening fence inside a code block means the block before it was never
    closed: everything up to the next bare fence renders as code."""
    inside = False
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("```"):
            continue
        info = line[3:].strip()
        if inside:
            assert not info, f"README.md line {number}: {line!r} opens a block inside an unclosed one"
            inside = False
        else:
            inside = True
    assert not inside, "README.md ends inside a code block"
