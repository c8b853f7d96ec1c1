"""The docs' worked example (docs/examples/your_model) as a user runs it, at a tiny size: their
own Flax NNX network trained on Fashion-MNIST by their own script, then ``jaxcf explain`` with
three methods and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jaxcf import cli
from jaxcf.experiment import REPORT_DIR

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "your_model"


@pytest.mark.standard_promotion  # optax's Adam trains the network; Wachter runs it too
def test_the_worked_example_trains_explains_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(EXAMPLE)  # as the docs say: run from the example's folder
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import train_my_model

    checkpoint = tmp_path / "fashion_net"
    train_my_model.main(["--steps", "30", "--out", str(checkpoint)])
    assert "test accuracy" in capsys.readouterr().out
    work = tmp_path / "work"
    argv = [
        "explain",
        "my_experiment.py",
        "--workdir",
        str(work),
        f"--config.classifier.checkpoint={checkpoint}",
        "--config.data.queries=2",
        "--config.data.train_rows=2000",
        "--config.methods.0.config.max_iter=20",
        "--config.methods.1.config.max_iter=20",
        "--config.methods.2.config.max_iter=10",
        "--config.runner.chunk_size=2",
        "--config.runner.slots=2",
    ]
    assert cli.main(argv) == 0
    metrics = json.loads((work / REPORT_DIR / "metrics.json").read_text())
    assert set(metrics["summaries"]) == {"deduce", "jsma", "wachter"}
    assert metrics["rows"] == 2 and metrics["models"]["density"]["samples"] == 2000
    assert (work / REPORT_DIR / "report.md").is_file()
