"""Python config files, in the style of the Flax examples: a file defining ``get_config()``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


def load_config(path: str | Path) -> Any:
    """Executes the config file at ``path`` and returns its ``get_config()``.

    Raises:
      FileNotFoundError: no such file.
      AttributeError: the file defines no ``get_config``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    spec = importlib.util.spec_from_file_location(f"jaxcf_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"config file {path} defines no get_config()")
    return module.get_config()
