"""The root README's Python quickstart runs as written, from the repository root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_python_quickstart_runs_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## Python quickstart\n\n```python\n(.*?)```", readme, re.S)
    assert match is not None, "README.md has a Python quickstart"
    code = match.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0] == "v2.2 claude-opus-4 SPLIT canary 2026-11-21.1"
    assert lines[1] == "support/v2.2"
    assert lines[2] == "answer from claude-opus-4 v2.2 ['success'] 1"
