"""Tests for jaxcf.report.write_html without a browser: the files written for image, series and
table runs, the rows their data files hold, sprite sheets against the arrays, escaping of names
full of markup, and a 10,000-row memory-mapped run written in bounded time and memory."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxcf import report
from jaxcf.core import Results, write_record
from jaxcf.evaluation import metrics
from jaxcf.tabular import Column, Schema, TabularTransform

MARKUP = "<img src=x onerror=alert(1)></script><!-- \"q\" 'a' & \u2028"
PREFIX, SUFFIX = "JAXCF_DATA.push(", ");\n"


def read_js(path: Path) -> dict:
    """The payload of a data file (a script that registers itself)."""
    text = path.read_text(encoding="ascii")
    assert text.startswith(PREFIX) and text.endswith(SUFFIX)
    return json.loads(text[len(PREFIX) : -len(SUFFIX)])


def decode(c: dict) -> np.ndarray:
    dtype = {"u1": np.uint8, "i4": "<i4", "f4": "<f4"}[c["t"]]
    return np.frombuffer(base64.b64decode(c["b"]), dtype)


def columns(site: Path, m: int) -> dict[str, np.ndarray]:
    data = read_js(site / "data" / f"m{m}" / "rows.js")
    assert data["id"] == f"m{m}/rows"
    return {c["name"]: decode(c) for c in data["columns"]}


def record(x, x_cf, target, seed=0, **kw) -> Results:
    n = len(x)
    rng = np.random.default_rng(seed)
    return Results(
        x=x,
        target=target,
        x_cf=x_cf,
        success=rng.uniform(size=n) < 0.7,
        n_iter=rng.integers(1, 30, n).astype(np.int32),
        score=rng.uniform(size=n).astype(np.float32),
        query=kw.pop("query", np.arange(n)),
        cf=kw.pop("cf", np.zeros(n, np.int32)),
        group=np.zeros(n, np.int32),
        timings={"seconds": 2.0},
        **kw,
    )


def images(n, hw=40, c=1, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, hw, hw, c)).astype(np.float32)
    step = (rng.uniform(size=x.shape) < 0.1) * rng.choice([-0.6, 0.6], size=x.shape)
    return x, np.clip(x + step, 0, 1).astype(np.float32)


def test_image_run_writes_the_site_and_its_rows(tmp_path):
    x, x_cf = images(70)  # 40 x 40: 32 rows a sheet, 3 sheets
    a = record(x, x_cf, np.arange(70) % 3, seed=1)
    b = record(x, x_cf[::-1].copy(), (np.arange(70) + 1) % 3, seed=2)
    given = metrics.row_metrics(b)
    given["l1"] = given["l1"] + 100.0  # given metrics win over the computed ones
    given["custom"] = np.linspace(0, 1, 70)
    source = np.arange(70) % 3
    out = report.write_html(
        tmp_path / "site",
        {"a": a, "b": b},
        metrics={"b": given},
        source=source,
        class_names=["cat", "dog", "eel"],
        links={"metrics.json": "../metrics.json", "a": "runs/a dir"},
        page_size=7,
    )
    site = tmp_path / "site"
    assert out == site / "index.html" and out.is_file()
    assert sorted(p.name for p in (site / "assets").iterdir()) == [
        "gallery.js",
        "report.css",
        "report.js",
        "views.js",
    ]
    for m in (0, 1):
        names = sorted(p.name for p in (site / "data" / f"m{m}").iterdir())
        assert names == ["img-00000.png", "img-00001.png", "img-00002.png", "rows.csv", "rows.js"]
    assert not [p for p in site.iterdir() if p.name.startswith(".")]  # no staging left behind

    s = read_js(site / "data" / "site.js")
    assert [m["label"] for m in s["methods"]] == ["a", "b"]
    assert s["page_size"] == 7 and s["classes"] == ["cat", "dog", "eel"]
    assert s["links"] == [{"name": "metrics.json", "href": "../metrics.json"}]
    assert s["methods"][0]["link"] == "runs/a%20dir" and s["methods"][1]["link"] is None
    view = s["methods"][0]["view"]
    assert view == {
        "kind": "image",
        "block": 32,
        "h": 40,
        "w": 40,
        "factor": 1,
        "panels": ["query", "counterfactual", "difference"],
    }
    assert "custom" in [m["key"] for m in s["metrics"]]

    cols = columns(site, 0)
    np.testing.assert_array_equal(cols["query"], np.arange(70))
    np.testing.assert_array_equal(cols["target"], np.arange(70) % 3)
    np.testing.assert_array_equal(cols["source"], source)
    np.testing.assert_array_equal(cols["success"], a.success.astype(np.uint8))
    np.testing.assert_array_equal(cols["n_iter"], a.n_iter)
    np.testing.assert_allclose(cols["l1"], metrics.l1(x, x_cf), rtol=1e-6)
    np.testing.assert_array_equal(cols["l0"], metrics.l0(x, x_cf))
    cols = columns(site, 1)
    np.testing.assert_allclose(cols["l1"], given["l1"], rtol=1e-6)
    np.testing.assert_allclose(cols["custom"], given["custom"], rtol=1e-6)

    summary = s["methods"][0]["summary"]
    ok = a.success
    assert summary["rows"] == 70 and summary["queries"] == 70
    assert summary["success_rate"] == pytest.approx(ok.mean())
    assert summary["l1"] == pytest.approx(metrics.l1(x, x_cf)[ok].mean())
    assert summary["seconds_per_cf"] == pytest.approx(2.0 / 70)
    hist = {h["key"]: h for h in s["histograms"]}
    assert sum(hist["l1"]["counts"][0]) == ok.sum()  # distances over successful rows
    assert sum(hist["n_iter"]["counts"][0]) == 70
    mx = s["matrices"][0]
    assert mx["sources"] == [0, 1, 2] and mx["targets"] == [0, 1, 2]
    assert sum(map(sum, mx["n"])) == 70 and mx["n"][0][0] == 24  # source == target here

    csv = (site / "data" / "m0" / "rows.csv").read_text().splitlines()
    assert csv[0].startswith("row,query,cf,group,source,target,success")
    assert len(csv) == 71


@pytest.mark.parametrize("channels", [1, 3])
def test_sprite_sheets_match_the_arrays(tmp_path, channels):
    x, x_cf = images(40, c=channels, seed=channels)
    report.write_html(tmp_path, {"m": record(x, x_cf, np.zeros(40, np.int32))})
    for block, start in ((0, 0), (1, 32)):
        sheet = np.asarray(Image.open(tmp_path / "data" / "m0" / f"img-{block:05d}.png"))
        rows = min(32, 40 - start)
        assert sheet.shape == (rows * 40, 3 * 40, 3)
        tiles = sheet.reshape(rows, 40, 3, 40, 3)
        want = np.rint(x[start : start + rows] * 255).astype(np.uint8)
        want_cf = np.rint(x_cf[start : start + rows] * 255).astype(np.uint8)
        if channels == 1:
            want, want_cf = (np.repeat(w, 3, axis=-1) for w in (want, want_cf))
        np.testing.assert_array_equal(tiles[:, :, 0], want)
        np.testing.assert_array_equal(tiles[:, :, 1], want_cf)
        diff = (x_cf - x)[start : start + rows].mean(-1)
        d = tiles[:, :, 2].astype(int)
        up, down, same = diff > 0.01, diff < -0.01, diff == 0
        assert np.all(d[up][:, 0] == 255) and np.all(d[up][:, 2] < 255)  # red: larger
        assert np.all(d[down][:, 2] == 255) and np.all(d[down][:, 0] < 255)  # blue: smaller
        assert np.all(d[same] == 255)  # white: unchanged
        np.testing.assert_allclose(
            255 - d[up][:, 1], np.rint(255 * np.minimum(diff[up], 1)), atol=1
        )


def test_large_images_are_shrunk_to_thumbnails(tmp_path):
    x, x_cf = images(3, hw=200, c=3)
    report.write_html(tmp_path, {"m": record(x, x_cf, np.zeros(3, np.int32))})
    view = read_js(tmp_path / "data" / "site.js")["methods"][0]["view"]
    assert (view["factor"], view["h"], view["w"]) == (3, 66, 66)
    sheet = np.asarray(Image.open(tmp_path / "data" / "m0" / "img-00000.png"))
    assert sheet.shape == (3 * 66, 3 * 66, 3)
    tile = x[1, :198, :198].reshape(66, 3, 66, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(sheet[66:132, :66], np.rint(tile * 255), atol=1)


def test_series_blocks_hold_the_curves(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 50, 2)).astype(np.float32)
    x_cf = (x + rng.normal(scale=0.1, size=x.shape)).astype(np.float32)
    report.write_html(tmp_path, {"w": record(x, x_cf, rng.integers(0, 2, 600))})
    view = read_js(tmp_path / "data" / "site.js")["methods"][0]["view"]
    assert view == {"kind": "series", "block": 512, "steps": 50, "channels": 2, "stride": 1}
    for block, rows in ((0, slice(0, 512)), (1, slice(512, 600))):
        data = read_js(tmp_path / "data" / "m0" / f"series-{block:05d}.js")
        assert data["id"] == f"m0/series/{block}" and data["n"] == len(x[rows])
        np.testing.assert_array_equal(decode({"t": "f4", "b": data["x"]}), x[rows].ravel())
        np.testing.assert_array_equal(decode({"t": "f4", "b": data["cf"]}), x_cf[rows].ravel())


def test_long_series_are_drawn_from_every_kth_step(tmp_path):
    x = np.linspace(0, 1, 2 * 4500, dtype=np.float32).reshape(2, 4500, 1)
    report.write_html(tmp_path, {"w": record(x, x, np.zeros(2, np.int32))})
    view = read_js(tmp_path / "data" / "site.js")["methods"][0]["view"]
    assert (view["steps"], view["stride"]) == (1500, 3)
    data = read_js(tmp_path / "data" / "m0" / "series-00000.js")
    np.testing.assert_array_equal(decode({"t": "f4", "b": data["x"]}), x[:, ::3].ravel())


def adult_like() -> tuple[TabularTransform, dict]:
    schema = Schema(
        (
            Column.categorical(MARKUP, ("x</script>", 'y"q', "<b>z</b>")),
            Column.numeric("age", integer=True),
            Column.numeric("<i>weight</i>"),
        )
    )
    rng = np.random.default_rng(0)
    table = {
        MARKUP: rng.choice(["x</script>", 'y"q', "<b>z</b>"], 60).astype(object),
        "age": rng.integers(18, 80, 60),
        "<i>weight</i>": rng.uniform(40, 120, 60),
    }
    return TabularTransform.fit(schema, table, n_modes=2), table


def test_table_rows_show_the_changed_features(tmp_path):
    transform, table = adult_like()
    x = transform.encode(table)
    changed = dict(table, age=np.where(np.arange(60) % 2 == 0, table["age"] + 1, table["age"]))
    changed[MARKUP] = np.where(np.arange(60) % 3 == 0, "<b>z</b>", table[MARKUP]).astype(object)
    x_cf = transform.encode({k: np.asarray(v) for k, v in changed.items()})
    report.write_html(tmp_path, {"g": record(x, x_cf, np.ones(60, np.int32))}, transform=transform)
    view = read_js(tmp_path / "data" / "site.js")["methods"][0]["view"]
    assert view["kind"] == "table" and view["columns"] == [MARKUP, "age", "<i>weight</i>"]
    rows = read_js(tmp_path / "data" / "m0" / "table-00000.js")["rows"]
    assert len(rows) == 60
    for i, row in enumerate(rows):
        want = []
        if i % 3 == 0 and table[MARKUP][i] != "<b>z</b>":
            want.append([0, table[MARKUP][i], "<b>z</b>"])
        if i % 2 == 0:
            want.append([1, str(table["age"][i]), str(table["age"][i] + 1)])
        assert row == want
    np.testing.assert_array_equal(columns(tmp_path, 0)["changed"], [len(r) for r in rows])


def test_rows_without_a_transform_show_as_numbered_features(tmp_path):
    x = np.zeros((5, 4), np.float32)
    x_cf = x.copy()
    x_cf[2, 1] = 0.25
    report.write_html(tmp_path, {"m": record(x, x_cf, np.zeros(5, np.int32))})
    assert read_js(tmp_path / "data" / "m0" / "table-00000.js")["rows"][2] == [[1, "0", "0.25"]]


def test_names_full_of_markup_reach_the_data_only_as_escaped_text(tmp_path):
    transform, table = adult_like()
    x = transform.encode(table)
    results = {MARKUP: record(x, x, np.arange(60) % 2), "__proto__": record(x, x, np.zeros(60))}
    report.write_html(
        tmp_path,
        results,
        metrics={MARKUP: {"</script><script>alert(1)</script>": np.ones(60)}},
        transform=transform,
        class_names=[MARKUP, "</script>"],
        title=MARKUP,
        links={MARKUP: "a<b>/x.json", "<!--": "runs/<x>"},
    )
    html = (tmp_path / "index.html").read_text()
    assert "<img" not in html and "alert" not in html  # the page holds no data at all
    assert "Content-Security-Policy" in html and "script-src 'self'" in html
    for path in (tmp_path / "data").rglob("*.js"):
        text = path.read_text(encoding="ascii")  # ASCII only: U+2028 escaped too
        assert "<" not in text and ">" not in text and "&" not in text, path
    s = read_js(tmp_path / "data" / "site.js")
    assert s["title"] == MARKUP and s["classes"] == [MARKUP, "</script>"]
    assert [m["label"] for m in s["methods"]] == [MARKUP, "__proto__"]
    assert s["links"] == [{"name": "<!--", "href": "runs/%3Cx%3E"}]
    assert s["methods"][0]["link"] == "a%3Cb%3E/x.json"
    assert s["methods"][0]["view"]["columns"][0] == MARKUP
    assert "</script><script>alert(1)</script>" in [m["key"] for m in s["metrics"]]
    for js in (tmp_path / "assets").glob("*.js"):
        source = re.sub(r"/\*.*?\*/|//[^\n]*", "", js.read_text(), flags=re.S)  # code only
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, (js.name, sink)


@pytest.mark.parametrize(
    "link", ["javascript:alert(1)", "https://example.com/x", "//host/x", "/etc/passwd", ""]
)
def test_links_must_be_relative_paths(tmp_path, link):
    x, x_cf = images(2, hw=4)
    with pytest.raises(ValueError, match="relative"):
        report.write_html(tmp_path, {"m": record(x, x_cf, np.zeros(2))}, links={"f": link})


def test_bad_inputs_are_refused(tmp_path):
    x, x_cf = images(4, hw=4)
    r = record(x, x_cf, np.arange(4) % 2)
    with pytest.raises(ValueError, match="not in results"):
        report.write_html(tmp_path, {"m": r}, metrics={"other": {}})
    with pytest.raises(ValueError, match="expected \\(4,\\)"):
        report.write_html(tmp_path, {"m": r}, metrics={"m": {"l1": np.zeros(3)}})
    with pytest.raises(ValueError, match="one class per query"):
        report.write_html(tmp_path, {"m": r}, source=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="has no name"):
        report.write_html(tmp_path, {"m": r}, class_names=["only one"])
    with pytest.raises(ValueError, match="page_size"):
        report.write_html(tmp_path, {"m": r}, page_size=0)
    (tmp_path / "index.html").write_text("<p>my own page</p>")
    with pytest.raises(FileExistsError, match="index.html"):
        report.write_html(tmp_path, {"m": r})
    (tmp_path / "index.html").unlink()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("not a report's")
    with pytest.raises(FileExistsError, match="data"):
        report.write_html(tmp_path, {"m": r})
    assert (tmp_path / "data" / "mine.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_writing_again_replaces_the_previous_report(tmp_path):
    x, x_cf = images(6, hw=4)
    r = record(x, x_cf, np.arange(6) % 2)
    (tmp_path / "metrics.json").write_text("{}")
    report.write_html(tmp_path, {"a": r, "b": r, "c": r})
    assert (tmp_path / "data" / "m2").is_dir()
    report.write_html(tmp_path, {"a": r}, title="again")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["m0", "site.js"]
    assert read_js(tmp_path / "data" / "site.js")["title"] == "again"
    assert (tmp_path / "metrics.json").read_text() == "{}"  # the folder's other files stay


def test_soft_and_regression_targets_and_several_counterfactuals(tmp_path):
    x, x_cf = images(6, hw=4)
    soft = np.tile([[0.2, 0.8]], (6, 1)).astype(np.float32)
    several = record(x, x_cf, soft, query=np.arange(6) // 2, cf=np.arange(6) % 2)
    value = record(x, x_cf, np.linspace(0, 1, 6).astype(np.float32))
    source = {"soft": np.array([0, 1, 1])}  # per method: the value run has other queries
    report.write_html(tmp_path, {"soft": several, "value": value}, source=source)
    s = read_js(tmp_path / "data" / "site.js")
    assert [m["target"] for m in s["methods"]] == ["soft", "value"]
    assert s["methods"][0]["summary"]["queries"] == 3
    np.testing.assert_array_equal(columns(tmp_path, 0)["target"], np.ones(6))
    np.testing.assert_array_equal(columns(tmp_path, 0)["source"], [0, 0, 1, 1, 1, 1])
    assert s["matrices"][0]["targets"] == [1] and s["matrices"][1] is None


@pytest.mark.parametrize("shape", [(4, 6, 6, 1), (4, 20, 2)], ids=["image", "series"])
def test_rows_holding_nan_still_show(tmp_path, shape):
    x = np.zeros(shape, np.float32)
    x_cf = np.full(shape, 0.5, np.float32)
    x_cf[1].flat[3] = np.nan  # a diverged search
    report.write_html(tmp_path, {"m": record(x, x_cf, np.zeros(4, np.int32))})
    l1 = columns(tmp_path, 0)["l1"]
    assert np.isnan(l1[1]) and np.allclose(l1[[0, 2, 3]], 0.5 * np.prod(shape[1:]))


def _memory(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def test_ten_thousand_mapped_rows_write_fast_with_bounded_memory(tmp_path):
    """A memory-mapped 10,000-row MNIST-sized record (63 MB): written a block at a time, so the
    peak resident memory grows by a small part of the record (the pages of the map are dropped
    after each block)."""
    n, shape, block = 10_000, (28, 28, 1), 2_000
    grid = np.linspace(0, 1, 28, dtype=np.float32)
    digit = (np.add.outer(grid, grid)[None, :, :, None] > 0.8).astype(np.float32)

    def blocks(name):
        for start in range(0, n, block):
            rows = np.arange(start, min(n, start + block))
            if name in ("x", "x_cf"):
                shift = (rows % 7)[:, None, None, None] * (0.05 if name == "x_cf" else 0.0)
                yield np.broadcast_to(np.clip(digit + shift, 0, 1), (len(rows), *shape))
            elif name == "target":
                yield rows % 10
            elif name == "success":
                yield rows % 5 != 0
            else:
                yield rows

    fields = {k: (shape, np.float32) for k in ("x", "x_cf")}
    fields.update({k: ((), np.int64) for k in ("target", "n_iter", "query", "cf", "group")})
    fields.update(success=((), bool), score=((), np.float32))
    write_record(tmp_path / "run", n, fields, blocks, timings={"seconds": 1.0}, meta={})
    mapped = Results.load(tmp_path / "run", mmap=True)
    size = (tmp_path / "run" / "results.npz").stat().st_size

    clear = Path("/proc/self/clear_refs")
    try:
        clear.write_text("5")  # resets the peak (VmHWM) to the current resident size
    except OSError:
        pytest.skip("cannot reset the peak resident size here (/proc/self/clear_refs)")
    before = _memory("VmRSS:")
    start = time.perf_counter()
    report.write_html(tmp_path / "site", {"m": mapped}, source=np.arange(n) % 10, page_size=100)
    seconds = time.perf_counter() - start
    growth = _memory("VmHWM:") - before
    print(
        f"10,000 rows: {seconds:.2f} s, peak RSS growth {growth / 1e6:.1f} MB of {size / 1e6:.0f}"
    )
    assert seconds < 60
    assert growth < 0.25 * size, f"peak resident memory grew {growth / 1e6:.1f} MB"
    assert len(list((tmp_path / "site" / "data" / "m0").glob("img-*.png"))) == 157
