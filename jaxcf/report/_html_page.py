"""The HTML report's page and its folder: ``index.html`` (a fixed page that holds no data), the
static assets, relative links checked and escaped, and the swap of a finished site into place.

The site is built in a hidden folder inside ``out_dir`` and moved into place when complete
(``assets/``, ``data/``, then ``index.html`` atomically), so a reader never sees a half-written
report, and a report written again leaves no stale data behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from jaxcf.core import write_text_atomic

ASSETS = Path(__file__).parent / "assets"
ASSET_FILES = ("report.css", "report.js", "gallery.js", "views.js")
OWNED = ("assets", "data")  # the folders of out_dir a report replaces
_MARKERS = {"assets": "report.js", "data": "site.js"}  # what makes such a folder a report's

# Nothing loads from outside the report's folder: scripts, styles and images from 'self' (for a
# page opened from file:// that is the file scheme), everything else nowhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'"
)

INDEX_HTML = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Counterfactual report</title>
<link rel="stylesheet" href="assets/report.css">
<script defer src="assets/report.js"></script>
<script defer src="assets/views.js"></script>
<script defer src="assets/gallery.js"></script>
<script defer src="data/site.js"></script>
</head>
<body>
<header>
<h1 id="title">Counterfactual report</h1>
<nav id="views"><a id="nav-summary" href="#summary">Summary</a>
<a id="nav-gallery" href="#gallery">Gallery</a></nav>
<div id="files"></div>
</header>
<main id="main"><noscript>This report draws its tables and figures with JavaScript; the numbers
behind it are in the CSV files of data/.</noscript></main>
</body>
</html>
"""


def check_links(links: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """``(name, href)`` for each link: a relative path (no scheme, host or leading slash),
    percent-encoded so that it stays one."""
    out = []
    for name, path in (links or {}).items():
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"links[{name!r}] must be a path, got {type(path).__name__}")
        path = os.fspath(path).replace(os.sep, "/")
        parts = urllib.parse.urlsplit(path)
        if not path or parts.scheme or parts.netloc or path.startswith(("/", "\\")):
            raise ValueError(
                f"links[{name!r}] = {path!r}: give a path relative to the report's folder "
                "(the page loads nothing from outside it)"
            )
        out.append((str(name), urllib.parse.quote(path, safe="/")))
    return out


def check_folder(out_dir: Path) -> None:
    """Refuses to replace an ``index.html``, ``assets/`` or ``data/`` of ``out_dir`` that is
    not a report's."""
    for name in OWNED:
        path = out_dir / name
        if path.exists() and not (path / _MARKERS[name]).is_file():
            raise FileExistsError(
                f"{path} exists and is not a jaxcf HTML report's {name} folder; write the report "
                "into another folder"
            )
    index = out_dir / "index.html"
    if index.exists() and (not index.is_file() or _MARKERS["assets"] not in _head(index)):
        raise FileExistsError(
            f"{index} exists and is not a jaxcf HTML report's page; write the report into "
            "another folder"
        )


def _head(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(4096).decode("utf-8", "replace")


def staging(out_dir: Path) -> Path:
    """A new hidden folder inside ``out_dir`` to build the site in, with its assets."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".jaxcf-html-", dir=out_dir))
    (stage / "assets").mkdir()
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, stage / "assets" / name)
    (stage / "data").mkdir()
    return stage


def publish(stage: Path, out_dir: Path) -> Path:
    """Moves the built site into ``out_dir`` (replacing a previous report's folders) and writes
    ``index.html`` last; returns its path."""
    check_folder(out_dir)
    for name in OWNED:
        target = out_dir / name
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=out_dir))
            os.replace(target, old / name)
        os.replace(stage / name, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)
    return write_text_atomic(out_dir / "index.html", INDEX_HTML)
