"""The PyTorch peer's tests (``tests/torch_peer_cases.py``), run in an interpreter of their own.

The cases are kept out of the xdist workers, so that no worker carries PyTorch's libraries and
thread pools beside XLA's: this test runs them with pytest in a subprocess and fails with their
output when any of them fails. (They were moved here while the workers' segfaults inside XLA
were blamed on PyTorch; the cause was the workers running out of memory mappings, see
``conftest.py``.)
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("torch_peer")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the torch extra")
def test_the_torch_peer_cases_pass_in_their_own_interpreter():
    here = Path(__file__).resolve().parent
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(here / "torch_peer_cases.py"),
        ],
        cwd=here.parent,
        env={**os.environ, "PYTHONPATH": str(here.parent)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"torch peer cases failed (exit {proc.returncode}):\n{tail}"
    assert " passed" in proc.stdout, tail
