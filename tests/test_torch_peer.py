"""The PyTorch peer's tests (``tests/torch_peer_cases.py``), run in an interpreter of their own.

With PyTorch imported in the same process as XLA, two full suite runs lost an xdist worker to a
segfault inside XLA (compiling, or serialising an executable for the compilation cache). The
peer's cases are kept out of the workers: this test runs them with pytest in a subprocess and
fails with their output when any of them fails.
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
