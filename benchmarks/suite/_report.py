"""The suite's markdown: a summary row per family, then each family's sweep."""

from __future__ import annotations

_DASH = "\u2014"


def markdown(r: dict) -> str:
    """The results of :func:`benchmarks.suite.run` (complete or not) as markdown."""
    host = r["host"]
    lines = [
        f"# Benchmark suite on {r['device']} ({r['device_count']} device(s), {host['cpus']} "
        f"host CPUs, jax {r['jax']})",
        "",
        f"Preset `{r['preset']}`, budget {r['budget_seconds']:.0f} s, started {r['started']}"
        + (
            f", {r['total_seconds']:.0f} s in all."
            if "total_seconds" in r
            else " (still running when written)."
        ),
    ]
    if not r.get("complete"):
        lines.append(
            "**Incomplete**: "
            + (r.get("stopped") or "the run ended before every family was measured")
            + "; what is here was measured."
        )
    c = r.get("ceiling")
    if c:
        lines += [
            "",
            f"Ceiling, a {c['n']}x{c['n']} matrix product in the same run: "
            f"{c['float32_tflops']:.3g} TFLOP/s in float32 (default precision, as the models "
            f"run), {c['bfloat16_tflops']:.3g} in bfloat16.",
        ]
    lines += [
        "",
        "Every model has random weights: each family does a fixed amount of work per query "
        "(stated below), so its cost is the same whether or not a query succeeds. Compilation "
        "is timed apart; a call's steady-state time is the median of the timed calls after a "
        "warm-up, each ended by `jax.block_until_ready`. FLOPs are XLA's count of the lowered "
        "program with every loop body counted as many times as it runs; achieved FLOP/s is "
        "that count over the steady-state time.",
        "",
        "| family | best CF/s | at batch | TFLOP/s there | of float32 ceiling | GFLOP / CF | "
        "compile s (first batch) |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, f in r["families"].items():
        rows = f.get("measurements", [])
        if not rows:
            why = f.get("error") or (f["skipped"][0]["reason"] if f.get("skipped") else "")
            lines.append(f"| {name} | {_DASH} | | | | | {_cell(why)} |")
            continue
        best = max(rows, key=lambda m: m["counterfactuals_per_second"])
        lines.append(
            f"| {name} | {rate_text(best['counterfactuals_per_second'])} | {best['batch']} | "
            f"{best['achieved_tflops']:.3g} | {100 * best['share_of_f32_matmul']:.1f}% | "
            f"{best['flops_per_counterfactual'] / 1e9:,.3g} | {rows[0]['compile_seconds']:.1f} |"
        )
    missing = [n for n in r.get("families_requested", []) if n not in r["families"]]
    if missing:
        lines += ["", f"Not reached: {', '.join(missing)}."]
    for name, f in r["families"].items():
        lines += ["", f"## {name}", ""]
        if "description" in f:
            lines.append(f["description"])
        if "setup_seconds" in f:
            lines.append(f"Models built in {f['setup_seconds']:.1f} s.")
        if "error" in f:
            lines.append(f"Not measured: {f['error']}")
        rows = f.get("measurements", [])
        if rows:
            rate = next(
                (
                    k
                    for k in ("denoiser_calls_per_second", "query_steps_per_second")
                    if k in rows[0]
                ),
                None,
            )
            label = {"query_steps_per_second": "query-steps/s"}.get(rate, "denoiser calls/s")
            lines += [
                "",
                "| batch | compile s | s / call | CF/s | "
                + (f"{label} | " if rate else "")
                + "GFLOP / CF | TFLOP/s | of float32 ceiling |",
                "| ---: | ---: | ---: | ---: | "
                + ("---: | " if rate else "")
                + "---: | ---: | ---: |",
            ]
            for m in rows:
                exact = "" if m["flops_exact"] else " (a lower bound)"
                lines.append(
                    f"| {m['batch']} | {m['compile_seconds']:.1f} | {m['seconds']:.4g} | "
                    f"{rate_text(m['counterfactuals_per_second'])} | "
                    + (f"{rate_text(m[rate])} | " if rate else "")
                    + f"{m['flops_per_counterfactual'] / 1e9:,.3g}{exact} | "
                    f"{m['achieved_tflops']:.3g} | {100 * m['share_of_f32_matmul']:.1f}% |"
                )
        for s in f.get("skipped", []):
            lines.append(
                f"\nBatch {s['batch']} not measured: {_cell(s.get('error') or s['reason'])}."
            )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """``text`` safe inside a table cell: one line, no pipes."""
    return " ".join(str(text).split()).replace("|", "/")


def rate_text(value: float) -> str:
    """A rate as it reads best: whole numbers with thousands separators from 100 on, three
    significant digits below."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
