"""Models shipped with the package (compact copies; see :mod:`jaxcf.training`).

Name one as ``"bundled:<name>"`` wherever a checkpoint path is expected
(:func:`jaxcf.models.load_classifier` for a classifier,
:func:`jaxcf.models.load_attgan` for an AttGAN-like model, protocol configs); its
arrays are checked against the content digest stored beside them when loaded. ``README.md`` in
this folder lists each one with the config it was trained from and the commands that rebuild
it.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "bundled:"
_HERE = Path(__file__).resolve().parent


def names() -> tuple[str, ...]:
    """The shipped models."""
    return tuple(sorted(p.name for p in _HERE.iterdir() if (p / "metadata.json").is_file()))


def resolve(location: str | Path) -> Path:
    """``"bundled:<name>"`` -> the shipped checkpoint's directory; any other path unchanged.

    Raises:
      FileNotFoundError: no shipped model of that name.
    """
    text = str(location)
    if not text.startswith(PREFIX):
        return Path(location)
    name = text[len(PREFIX) :]
    path = _HERE / name
    if not (path / "metadata.json").is_file():
        raise FileNotFoundError(
            f"no bundled model {name!r}; shipped: {', '.join(names()) or 'none'}"
        )
    return path
