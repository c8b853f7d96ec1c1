"""Tests of the HTML report (jaxcf.report.write_html) in headless Chromium, driven by Playwright,
on the written page opened from ``file://``: it renders without console errors under its
Content-Security-Policy, its gallery sorts, filters and pages, its pictures load, names full of
markup show as text and run nothing, and the pages of a 10,000-row report load in under 2 s.

They need Playwright's Python package (``pip install -e '.[browser]'``) and a Chromium
(``apt-get install chromium``; never ``playwright install``) and skip without them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from jaxcf import report
from jaxcf.core import Results
from jaxcf.evaluation import metrics
from jaxcf.tabular import Column, Schema, TabularTransform

pytestmark = pytest.mark.xdist_group("browser")  # one worker starts the browser

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MARKUP = '<img src=x onerror="window.PWNED=1"><script>window.PWNED=2</script></script><!-- "q" \'s'


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[browser]')"
    )
    path = _chromium()
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=ARGS)
        yield b
        b.close()


class Tab:
    """A page of the report, with what it logged, requested and raised."""

    def __init__(self, browser, site: Path, *, bypass_csp: bool = False):
        self.site = site.resolve()
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def js(self, expression: str):
        return self.page.evaluate(expression)

    def wait(self, expression: str, timeout: float = 10.0) -> None:
        # Polls from outside: Playwright's wait_for_function evaluates strings in the page,
        # which the page's CSP (no 'unsafe-eval') refuses.
        end = time.monotonic() + timeout
        while not self.js(expression):
            if time.monotonic() > end:
                raise TimeoutError(f"{expression} (errors: {self.errors})")
            time.sleep(0.01)

    def open(self, view: str = "summary") -> float:
        start = time.perf_counter()
        self.page.goto(f"{self.site.as_uri()}/index.html#{view}")
        self.wait("document.documentElement.dataset.state === 'ready'")
        return time.perf_counter() - start

    def go(self, view: str, action=None) -> float:
        """Shows a gallery state (set through the address, or by ``action``); seconds taken."""
        renders = self.js("JAXCF.renders")
        start = time.perf_counter()
        if action is None:
            self.js(f"location.hash = {json.dumps(view)}")
        else:
            action()
        self.wait(
            f"JAXCF.renders > {renders} && document.documentElement.dataset.state === 'ready'"
        )
        return time.perf_counter() - start

    def cards(self) -> list[tuple[int, int]]:
        return [
            tuple(x)
            for x in self.page.eval_on_selector_all(
                "article.card", "els => els.map(e => [+e.dataset.method, +e.dataset.row])"
            )
        ]

    def status(self) -> str:
        return self.page.text_content(".pager.top .status")

    def close(self) -> None:
        prefix = self.site.as_uri() + "/"
        outside = [u for u in self.requests if not u.startswith(prefix)]
        self.context.close()
        assert not self.errors, self.errors
        assert not self.dialogs, self.dialogs
        assert not outside, f"the page loaded from outside its folder: {outside}"


def _record(x, x_cf, target, seed) -> Results:
    n = len(x)
    rng = np.random.default_rng(seed)
    return Results(
        x=x,
        target=target,
        x_cf=x_cf,
        success=rng.uniform(size=n) < 0.7,
        n_iter=rng.integers(1, 30, n).astype(np.int32),
        score=rng.uniform(size=n).astype(np.float32),
        query=np.arange(n),
        cf=np.zeros(n, np.int32),
        group=np.zeros(n, np.int32),
        timings={"seconds": 1.5},
    )


def _images(n, seed, hw=8):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, hw, hw, 1)).astype(np.float32)
    x_cf = np.clip(x + (rng.uniform(size=x.shape) < 0.2) * 0.5, 0, 1).astype(np.float32)
    return x, x_cf


@pytest.fixture(scope="module")
def image_site(tmp_path_factory):
    """25 queries, two methods, classes 0-2, 10 rows a page."""
    site = tmp_path_factory.mktemp("image") / "report"
    x, x_cf = _images(25, 0)
    runs = {
        "alpha": _record(x, x_cf, np.arange(25) % 3, 1),
        "beta": _record(x, _images(25, 2)[1], (np.arange(25) + 1) % 3, 2),
    }
    source = np.arange(25) % 3
    report.write_html(
        site,
        runs,
        source=source,
        class_names=["zero", "one", "two"],
        page_size=10,
        links={"metrics.json": "../metrics.json", "alpha": "runs/alpha"},
    )
    rows = {label: metrics.row_metrics(r) for label, r in runs.items()}
    return site, runs, rows, source


def test_summary_renders_under_its_csp(browser, image_site):
    site, runs, _, _ = image_site
    tab = Tab(browser, site)
    tab.open("summary")
    csp = tab.js("document.querySelector('meta[http-equiv=Content-Security-Policy]').content")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert tab.js("document.querySelectorAll('table.summary tbody tr').length") == 2
    headers = tab.page.eval_on_selector_all(
        "table.summary th", "els => els.map(e => e.textContent)"
    )
    assert headers[:5] == ["method", "rows", "queries", "success", "L0"]
    histograms = tab.js("document.querySelectorAll('table.hists svg').length")
    assert histograms == 2 * 5  # L0, L1, L2, score, iterations for each method
    assert tab.js("document.querySelectorAll('table.matrix').length") == 2
    success = f"{100 * runs['alpha'].success.mean():.1f}%"
    assert success in tab.page.text_content("table.summary tbody tr:first-child")
    number = tab.page.get_attribute("table.summary tbody tr:first-child td a", "href")
    assert number == "runs/alpha"  # every number links to the files behind it
    assert tab.page.get_attribute("table.summary tbody tr:nth-child(2) td a", "href") == (
        "data/m1/rows.csv"
    )
    tab.close()


def test_gallery_sorts_filters_and_pages(browser, image_site):
    site, runs, rows, source = image_site
    tab = Tab(browser, site)
    tab.open("gallery")
    shown = tab.cards()
    assert shown == [(m, r) for r in range(5) for m in (0, 1)]  # row order, methods together
    assert tab.status() == "page 1 of 5 \u00b7 rows 1\u201310 of 50"
    widths = tab.page.eval_on_selector_all(
        "article.card img", "els => els.map(e => e.complete ? e.naturalWidth : 0)"
    )
    assert len(widths) == 30 and min(widths) == 3 * 8  # query, counterfactual, difference

    tab.go("", lambda: tab.page.click(".pager.top .next"))
    assert tab.cards() == [(m, r) for r in range(5, 10) for m in (0, 1)]

    tab.go("", lambda: tab.page.select_option("select[name=sort]", "l1"))
    tab.go("", lambda: tab.page.select_option("select[name=desc]", "1"))
    l1 = [
        (-float(np.float32(rows[m]["l1"][r])), r, i) for i, m in enumerate(rows) for r in range(25)
    ]
    want = [(i, r) for _, r, i in sorted(l1)]
    assert tab.cards() == want[:10] and tab.status().startswith("page 1 of 5")
    tab.go("", lambda: tab.page.click(".pager.bottom .next"))
    assert tab.cards() == want[10:20]

    tab.go("", lambda: tab.page.select_option("select[name=m]", "1"))
    assert {m for m, _ in tab.cards()} == {1} and tab.status().endswith("of 25")

    tab.go("gallery?src=1&tgt=2&ok=1")
    beta, alpha = runs["beta"], runs["alpha"]
    want = [
        (i, r)
        for r in range(25)
        for i, run in enumerate((alpha, beta))
        if source[r] == 1 and run.target[r] == 2 and run.success[r]
    ]
    assert tab.cards() == want and tab.status().endswith(f"of {len(want)}")
    assert tab.js("document.querySelector('select[name=src]').value") == "1"
    tab.go("gallery?ok=0&p=99")  # past the last page: the last one
    failed = sum(int((~r.success).sum()) for r in runs.values())
    assert tab.status().startswith(f"page {(failed + 9) // 10} of {(failed + 9) // 10}")
    tab.close()


def test_series_and_table_views_draw(browser, tmp_path):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 6, 60, dtype=np.float32)
    x = np.sin(t + rng.uniform(0, 3, (12, 1)))[..., None].astype(np.float32)
    series = tmp_path / "series"
    report.write_html(series, {"s": _record(x, x * 1.5, np.arange(12) % 2, 0)})
    tab = Tab(browser, series)
    tab.open("gallery")
    assert tab.js("document.querySelectorAll('article.card canvas.series').length") == 12
    ink = tab.js(
        "Array.from(document.querySelectorAll('canvas.series')).map(c => {"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] < 200 || d[i + 2] < 200;"
        " return n; })"
    )
    assert min(ink) > 100  # two curves drawn on each
    tab.close()

    schema = Schema(
        (Column.categorical("colour", ("red", "blue")), Column.numeric("age", integer=True))
    )
    table = {"colour": np.array(["red", "blue"] * 5, object), "age": np.arange(20, 30)}
    transform = TabularTransform.fit(schema, table, n_modes=1)
    changed = {"colour": np.array(["blue"] * 10, object), "age": np.arange(20, 30)}
    site = tmp_path / "table"
    xs, cfs = transform.encode(table), transform.encode(changed)
    report.write_html(site, {"t": _record(xs, cfs, np.ones(10, np.int32), 0)}, transform=transform)
    tab = Tab(browser, site)
    tab.open("gallery")
    cells = tab.page.eval_on_selector_all(
        "article.card table.changes tbody tr",
        "els => els.map(e => Array.from(e.children).map(c => c.textContent))",
    )
    assert cells == [["colour", "red", "blue"]] * 5
    assert tab.js("document.querySelectorAll('article.card p.note').length") == 5  # unchanged
    tab.close()


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["csp", "without-csp"])
def test_names_full_of_markup_show_as_text_and_run_nothing(browser, tmp_path, bypass_csp):
    """Names reach the page as text, so nothing runs even where the CSP is bypassed."""
    schema = Schema((Column.categorical(MARKUP, (MARKUP, "</script>")),))
    table = {MARKUP: np.array([MARKUP, "</script>"] * 3, object)}
    transform = TabularTransform.fit(schema, table)
    x = transform.encode(table)
    x_cf = x[:, ::-1].copy()
    site = tmp_path / "site"
    report.write_html(
        site,
        {MARKUP: _record(x, x_cf, np.arange(6) % 2, 0)},
        metrics={MARKUP: {MARKUP: np.arange(6.0)}},
        transform=transform,
        class_names=[MARKUP, "</script>"],
        source=np.arange(6) % 2,
        title=MARKUP,
        links={MARKUP: "a b/c.json", "<!--": "runs/<x>"},
    )
    tab = Tab(browser, site, bypass_csp=bypass_csp)
    tab.open("summary")
    assert tab.js("document.title") == MARKUP
    assert tab.page.text_content("h1") == MARKUP
    assert tab.page.text_content("table.summary tbody th") == MARKUP
    assert MARKUP in tab.page.text_content("table.matrix")
    assert MARKUP in tab.page.text_content("table.hists thead")  # the metric's name
    tab.go("gallery", lambda: tab.js("location.hash = 'gallery'"))
    assert tab.page.text_content("article.card .method") == MARKUP
    assert tab.page.text_content("article.card table.changes tbody th") == MARKUP
    options = tab.page.eval_on_selector_all("select option", "els => els.map(e => e.textContent)")
    assert MARKUP in options and "</script>" in options
    assert tab.js("document.querySelectorAll('img, script:not([src])').length") == 0
    assert tab.js("window.PWNED === undefined")
    tab.close()


def test_ten_thousand_rows_pages_load_fast(browser, tmp_path):
    """Each page of a 10,000-row MNIST-sized report (two methods) loads in under 2 s."""
    n = 10_000
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 28, dtype=np.float32)
    digits = (np.add.outer(grid, grid)[None] > rng.uniform(0.5, 1.5, (n, 1, 1)))[..., None]
    x = digits.astype(np.float32)
    runs = {
        f"method {i}": _record(
            x, np.clip(x + 0.3 * (i + 1) * (x == 0), 0, 1), rng.integers(0, 10, n), i
        )
        for i in range(2)
    }
    site = tmp_path / "report"
    report.write_html(site, runs, source=rng.integers(0, 10, n), page_size=100)
    tab = Tab(browser, site)
    times = {"first page": tab.open("gallery")}
    for name, view in [
        ("sorted by L1", "gallery?sort=l1&desc=1"),
        ("sorted, page 40", "gallery?sort=l1&desc=1&p=39"),
        ("one method, sorted by score", "gallery?m=1&sort=score"),
        ("filtered", "gallery?src=3&tgt=7&ok=1&sort=l2"),
        ("last page", "gallery?p=199"),
    ]:
        times[name] = tab.go(view)
    tab.close()
    fresh = Tab(browser, site)
    times["summary"] = fresh.open("summary")
    fresh.close()
    print("page load seconds:", {k: round(v, 3) for k, v in times.items()})
    assert max(times.values()) < 2.0, times
