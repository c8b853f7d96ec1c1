"""Tests for jaxcf.report: PNG figures, tables with published numbers given explicitly, and the
atomic writers of jaxcf.core that it re-exports."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from explain.deduce import PUBLISHED
from jaxcf import report
from jaxcf.core import CFResult, Results
from jaxcf.core import _files as io
from jaxcf.evaluation.metrics import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def _sane(fig):
    w, h = fig.get_size_inches()
    return 2 <= w <= 40 and 2 <= h <= 40


def _images(b, c, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(b, 12, 12, c)).astype(np.float32)
    up = np.clip(x + (rng.uniform(size=x.shape) < 0.1) * 0.5, 0, 1).astype(np.float32)
    down = np.clip(x - (rng.uniform(size=x.shape) < 0.1) * 0.5, 0, 1).astype(np.float32)
    return x, up, down


def test_import_leaves_matplotlib_global_state_alone():
    code = (
        "import sys, matplotlib; before = matplotlib.rcParams._get_backend_or_none(); "
        "import jaxcf.report; "
        "assert 'matplotlib.pyplot' not in sys.modules; "
        "assert matplotlib.rcParams._get_backend_or_none() == before"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("channels", [1, 3])
def test_counterfactual_grid_writes_png(tmp_path, channels):
    x, up, down = _images(10, channels)
    b = len(x)
    target = np.arange(b) % 10
    fgsm = CFResult(
        x_cf=down,
        success=np.ones(b, bool),
        n_iter=np.ones(b, np.int32),
        score=np.full(b, 0.55, np.float32),
        extras={},
    )
    results = {
        "deduce": CFResult(
            x_cf=up,
            success=np.arange(b) % 3 != 0,
            n_iter=np.ones(b, np.int32),
            score=np.linspace(0, 1, b, dtype=np.float32),
            extras={},
        ),
        "jsma": down,
        "fgsm": Results.from_batch(fgsm, x, target),  # the runner's record works too
    }
    extras = {"jsma": {"success": np.ones(b, bool), "score": np.full(b, 0.7)}}
    path = tmp_path / "sub" / "grid.png"
    fig = report.counterfactual_grid(
        path,
        x,
        results,
        target,
        pred=(np.arange(b) + 1) % 10,
        n=4,
        title="t",
        extras=extras,
    )
    assert _is_png(path) and _sane(fig)
    assert len(fig.axes) == 4 * 7 + 1  # 4 rows x (original + 3 x (cf, diff)) + colorbar
    titles = [ax.get_title() for ax in fig.axes]
    text = " ".join(titles)
    assert "deduce" in text and "jsma" in text and "fgsm" in text and "pred 2" in text
    assert titles[3].endswith("s=0.70") and titles[5].endswith("s=0.55")  # jsma, fgsm in row 0
    assert "\u2717 failed s=0.00" in titles[1]  # deduce fails query 0 with score 0
    assert not list(tmp_path.glob("sub/.*tmp"))  # no temporary file left behind


def test_counterfactual_grid_rejects_bad_shapes(tmp_path):
    x, up, _ = _images(3, 1)
    with pytest.raises(ValueError):
        report.counterfactual_grid(tmp_path / "a.png", x, {"m": up[:2]}, 0)
    with pytest.raises(ValueError):
        report.counterfactual_grid(tmp_path / "a.png", x[..., 0], {"m": up[..., 0]}, 0)
    with pytest.raises(ValueError):
        report.counterfactual_grid(tmp_path / "a.png", x, {}, 0)
    assert not (tmp_path / "a.png").exists()


def test_l0_plot(tmp_path):
    rng = np.random.default_rng(0)
    l0s = {
        "DeDUCE": rng.integers(5, 40, size=50),
        "JSMA": rng.integers(5, 60, size=50),
        "REVISE": rng.integers(300, 784, size=20),
        "wachter": np.array([], int),
    }
    path = tmp_path / "l0.png"
    flat = {m: PUBLISHED[m]["l0"] for m in ("deduce", "revise")}
    fig = report.l0_plot(path, l0s, published=flat)
    assert _is_png(path) and _sane(fig)
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_ylabel().startswith("L0")
    # The nested PUBLISHED dict works too, and a narrow spread stays linear.
    fig = report.l0_plot(path, {"deduce": np.array([20, 22, 25])}, published=PUBLISHED)
    assert _is_png(path) and fig.axes[0].get_yscale() == "linear"


def _summaries():
    sets = np.repeat(np.arange(5), 4)
    rng = np.random.default_rng(1)
    out = {}
    for name, scale in (("DeDUCE", 20), ("JSMA", 25), ("wachter", 300)):
        pq = {
            "l0": rng.integers(1, 2 * scale, size=20),
            "l1": rng.uniform(0, scale, size=20),
            "n_iter": rng.integers(1, 100, size=20),
            "nll": rng.normal(100, 5, size=20),
            "success": rng.uniform(size=20) < 0.9,
        }
        out[name] = summarize(pq, sets=sets)
    out["no_sets"] = summarize({"l0": np.array([4]), "success": np.array([True])})
    return out


def _published_cells(method):
    """A method's published cells as the tables print them: L0 and L1 as given (format "g"),
    the failure rate in percent."""
    p = PUBLISHED[method]
    return (f"{p['l0']:g}", f"{p['l1']:g}", f"{100 * p['failure_rate']:.2f}")


def test_format_table_contains_methods_and_published():
    summaries = _summaries()
    text = report.format_table(summaries, PUBLISHED)
    lines = text.splitlines()
    assert len(lines) == 2 + len(summaries)
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule align
    for name in summaries:
        assert any(line.startswith(name) for line in lines)
    deduce = next(line for line in lines if line.startswith("DeDUCE"))
    assert all(c in deduce for c in _published_cells("deduce")) and "\u00b1" in deduce
    jsma = next(line for line in lines if line.startswith("JSMA"))
    assert all(c in jsma for c in _published_cells("jsma"))
    wachter = next(line for line in lines if line.startswith("wachter"))
    assert wachter.rstrip().endswith("\u2014")  # no published number
    assert f"{summaries['DeDUCE']['l0']:.2f}" in deduce
    for header in ("L0", "L1", "failure %", "iterations", "NLL", "paper L0", "paper failure %"):
        assert header in lines[0]
    nosets = next(line for line in lines if line.startswith("no_sets"))
    assert "4.00" in nosets and "\u00b1" not in nosets
    # Without published numbers there are no published columns and no published values.
    plain = report.format_table(summaries)
    assert "paper" not in plain and _published_cells("deduce")[0] not in plain
    assert len(plain.splitlines()[0]) < len(lines[0])
    labelled = report.format_table(summaries, PUBLISHED, published_label="Höltgen et al.")
    assert "Höltgen et al. L0" in labelled.splitlines()[0] and "paper" not in labelled


def test_markdown_table():
    summaries = {**_summaries(), "REVISE": summarize({"success": np.array([False, True])})}
    md = report.markdown_table(summaries, PUBLISHED)
    lines = md.splitlines()
    assert lines[0].startswith("| method") and lines[1].startswith("| :---")
    assert len(lines) == 2 + len(summaries)
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    revise = next(line for line in lines if line.startswith("| REVISE"))
    pub = PUBLISHED["revise"]
    assert f"| {pub['l0']:g} | {pub['l1']:g} | {100 * pub['failure_rate']:.2f} |" in revise
    assert "50.00" in revise  # its own failure rate: one of two
    assert f"{PUBLISHED['deduce']['l0']:g}" not in report.markdown_table(summaries, published=None)
    # Any mapping of published numbers works, names matched ignoring case and punctuation.
    other = report.markdown_table(summaries, {"de-duce": {"l0": 7.5}}, published_label="ref")
    deduce = next(line for line in other.splitlines() if line.startswith("| DeDUCE"))
    assert "| 7.5 |" in deduce and "ref L0" in other.splitlines()[0]


def test_published_for_matches_names_loosely():
    table = {"DeDUCE": 1, "cf_proto": 2}
    assert report.published_for("deduce", table) == 1
    assert report.published_for("CF-Proto", table) == 2
    assert report.published_for("jsma", table) is None
    assert report.published_for("deduce", None) is None
    assert report.published_for("deduce", {}) is None


def test_atomic_writers(tmp_path):
    # The writers live in jaxcf.core alone; the report does not re-export them.
    for name in ("to_jsonable", "write_atomic", "write_json_atomic", "write_text_atomic"):
        assert not hasattr(report, name) and hasattr(io, name)
    path = tmp_path / "deep" / "s.json"
    io.write_json_atomic(path, {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    io.write_text_atomic(tmp_path / "t.md", "h\u00e9llo\n")
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == "h\u00e9llo\n"
    assert io.to_jsonable({1: (np.int64(2), np.inf)}) == {"1": [2, None]}

    class Boom:
        pass

    with pytest.raises(TypeError):
        io.write_json_atomic(path, {"x": Boom()})
    assert json.loads(path.read_text())["a"] == 1.5  # the old file survives a failed write

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.write_atomic(path, fail)
    assert json.loads(path.read_text())["a"] == 1.5
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.json"]
