"""The explain job end to end on a small configuration, and the protocol's pair list."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explain.deduce_protocol import ExplainConfig, protocol_pairs, run_protocol
from jaxcf.config_file import load_config
from jaxcf.methods import DeDUCEConfig, JSMAConfig, WachterConfig
from jaxcf.models import config_from_dict, config_to_dict
from jaxcf.runner import RunnerConfig, load_results
from jaxcf.training import TrainConfig


def test_protocol_pairs_cover_every_other_class():
    labels = np.arange(50) % 10
    index, target, sets = protocol_pairs(labels, n_sets=2, set_size=5, seed=3)
    assert len(index) == len(target) == len(sets) == 2 * 5 * 9
    assert np.all(labels[index] != target)
    assert len(np.unique(index)) == 10 and set(sets) == {0, 1}
    for i in np.unique(index):
        assert sorted(target[index == i]) == [c for c in range(10) if c != labels[i]]
    with pytest.raises(ValueError, match="test images"):
        protocol_pairs(labels, n_sets=6, set_size=10, seed=0)


def test_run_protocol_writes_results_metrics_and_figures(trained_dir, tmp_path, capsys):
    config = ExplainConfig(
        checkpoint=str(trained_dir / "checkpoint"),
        baseline_checkpoint=str(trained_dir / "checkpoint"),  # exercises the two-model path
        n_sets=2,
        set_size=2,
        deduce=DeDUCEConfig(max_iter=60),
        jsma=JSMAConfig(max_iter=60),
        wachter=WachterConfig(max_iter=60),
        runner=RunnerConfig(chunk_size=16, slots=8),
        grid_queries=3,
    )
    result = run_protocol(config, tmp_path)
    assert result["pairs"] == 36
    for name in ("deduce", "jsma", "wachter"):
        out = load_results(tmp_path / name)
        for key in ("queries", "targets", "counterfactuals", "success", "iterations"):
            assert len(out[key]) == 36, (name, key)
        assert out["counterfactuals"].min() >= 0 and out["counterfactuals"].max() <= 1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("deduce", "jsma", "wachter"):
        s = metrics["summaries"][name]
        assert s["n"] == 36 and s["n_sets"] == 2 and 0 <= s["failure_rate"] <= 1
        assert "l0_std_over_sets" in s and "nll" in s
    assert metrics["baseline_classifier"]["methods"] == ["jsma", "wachter"]
    # Wachter moves many pixels, the pixel searches few.
    assert metrics["summaries"]["wachter"]["l0"] > metrics["summaries"]["deduce"]["l0"]
    # L0/L1 on the pairs every method solved: the overall means agree with the per-query files.
    common = metrics["on_pairs_all_methods_solved"]
    solved = np.logical_and.reduce(
        [load_results(tmp_path / m)["success"] for m in result["summaries"]]
    )
    assert common["n"] == solved.sum() > 0
    assert sum(r["n"] for r in common["per_set"]) == common["n"]
    paired = common["paired"]["deduce_minus_jsma"]
    assert paired["n"] == common["n"]
    assert paired["l0"]["diff"] == pytest.approx(common["deduce"]["l0"] - common["jsma"]["l0"])
    assert "deduce - jsma: L0" in (tmp_path / "report.md").read_text()
    for png in ("grid.png", "l0.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "DeDUCE" in printed or "deduce" in printed
    assert "21.16" in printed  # the published DeDUCE L0 beside ours


_ROOT = Path(__file__).resolve().parent.parent
_CONFIG_FILES = sorted(
    str(p.relative_to(_ROOT))
    for d in ("train", "explain")
    for p in (_ROOT / d / "configs").glob("*.py")
    if p.name != "__init__.py"
)


@pytest.mark.parametrize("path", _CONFIG_FILES)
def test_config_files_load(path):
    """Every shipped config file builds its config, and each named model architecture exists."""
    config = load_config(_ROOT / path)
    if path.startswith("explain"):
        assert isinstance(config, ExplainConfig)
        trains = [t for t in (config.train, config.baseline_train) if t is not None]
    else:
        assert isinstance(config, TrainConfig)
        trains = [config]
    for train in trains:
        assert config_from_dict(config_to_dict(train.model)) == train.model
