"""The accelerator benchmark suite (``benchmarks/suite``) at its toy ``quick`` sizes: every
family produces a measured record with the fields the results promise, the FLOP count includes
every trip of a loop, and the budget guard skips (and says so) instead of running. No timing is
asserted: these are the suite's mechanics, its numbers come from ``python -m benchmarks.suite``.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import pytest

from benchmarks import common
from benchmarks.suite import FAMILIES, Config, Stopped, results_stem, run

MEASUREMENT_FIELDS = {
    "batch",
    "compile_seconds",
    "first_call_seconds",
    "seconds",
    "repeats_seconds",
    "counterfactuals_per_second",
    "flops",
    "flops_per_counterfactual",
    "achieved_tflops",
    "share_of_f32_matmul",
    "flops_exact",
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    results = run(Config(preset="quick", out=str(out)))
    return out, results


def test_quick_suite_records_every_family(quick):
    out, results = quick
    saved = json.loads(results_stem(out, "quick").with_suffix(".json").read_text())
    assert saved["complete"] is True
    assert saved["preset"] == "quick"
    assert saved["platform"] == jax.devices()[0].platform
    assert saved["device_kind"] and saved["host"]["cpus"] >= 1
    assert saved["ceiling"]["float32_tflops"] > 0
    assert list(saved["families"]) == list(FAMILIES)
    for name, family in saved["families"].items():
        assert "error" not in family, (name, family.get("error"))
        assert family["description"] and family["work"] and family["models"], name
        rows = family["measurements"]
        assert [m["batch"] for m in rows] == family["batches"], name
        for m in rows:
            assert MEASUREMENT_FIELDS <= set(m), (name, MEASUREMENT_FIELDS - set(m))
            assert m["seconds"] > 0 and m["flops"] > 0, name
            # every loop's trip count is known (scans by their length, while loops by the
            # family's fixed work), so the count is exact, and at least XLA's own
            assert m["flops_exact"], name
            assert m["flops"] >= m["flops_xla_program"], name
    text = results_stem(out, "quick").with_suffix(".md").read_text()
    assert all(f"## {name}" in text for name in FAMILIES)


def test_search_flops_count_every_iteration(quick):
    """A search's while loop runs ``updates + 1`` steps: the count holds as many step bodies."""
    _, results = quick
    family = results["families"]["deduce"]
    (m,) = family["measurements"]
    (loop,) = [lp for lp in m["loops"] if lp["kind"] == "while"]
    steps = family["work"]["steps"]
    assert loop["trips"] == steps
    assert m["flops"] == pytest.approx(m["flops_xla_program"] + (steps - 1) * loop["body_flops"])


def test_program_flops_multiplies_loop_bodies():
    x = jnp.ones((16, 16))

    def nested(x):  # a scan of 5 whose body holds a while of 3: 15 products, and one outside
        def body(c, _):
            inner = jax.lax.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, s[1] @ x), (0, c))
            return inner[1], None

        return jax.lax.scan(body, x @ x, None, length=5)[0]

    traced = jax.jit(nested).trace(x)
    counted = common.program_flops(traced.jaxpr, traced.lower(), while_trips=(3,))
    one = 2 * 16**3
    assert counted["flops_exact"]
    assert counted["flops"] == pytest.approx(16 * one, rel=0.02)
    unknown = common.program_flops(traced.jaxpr, traced.lower())
    assert not unknown["flops_exact"] and unknown["flops"] < counted["flops"]


def test_budget_guard_skips_and_says_why(tmp_path):
    results = run(Config(preset="quick", families="fgsm", budget_s=0.0, out=str(tmp_path)))
    family = results["families"]["fgsm"]
    assert family["measurements"] == []
    assert [s["batch"] for s in family["skipped"]] == family["batches"]
    assert all("budget" in s["reason"] for s in family["skipped"])
    assert results["complete"] and math.isfinite(results["total_seconds"])


def test_a_run_stopped_part_way_keeps_what_it_measured(tmp_path, monkeypatch):
    """SIGTERM (here: the exception its handler raises) during the second batch of a sweep:
    the record on disk holds the first batch's measurement and says the run stopped."""
    measure = common.measure_call
    calls = []

    def stop_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Stopped("signal 15")
        return measure(*args, **kwargs)

    monkeypatch.setattr(common, "measure_call", stop_on_second)
    config = Config(preset="quick", families="generator_tabular", out=str(tmp_path))
    with pytest.raises(Stopped):
        run(config)
    saved = json.loads(results_stem(tmp_path, "quick").with_suffix(".json").read_text())
    assert saved["complete"] is False and "stopped" in saved
    family = saved["families"]["generator_tabular"]
    assert [m["batch"] for m in family["measurements"]] == family["batches"][:1]
    assert "Incomplete" in results_stem(tmp_path, "quick").with_suffix(".md").read_text()
