"""Peers: jaxcf's networks and searches re-implemented in other frameworks, for benchmarks.

* :mod:`jaxcf.peers.torch_export`: a jaxcf classifier (eval mode) and its feature density as
  plain PyTorch modules computing the same functions.
* :mod:`jaxcf.peers.torch_pixels`: DeDUCE and JSMA in PyTorch, run the way the published code
  runs them (a batch of queries sharing one target, iterated until its slowest query finishes).

Both need the optional ``torch`` extra (``pip install -e '.[torch]'``). Nothing here imports
torch until one of those modules is imported, so ``import jaxcf`` never does.
"""

import importlib.util

__all__ = ["EXTRAS", "available", "missing_message"]

# Each optional peer: the module it needs and the extra that installs it.
EXTRAS: dict[str, tuple[str, str]] = {"dice": ("dice_ml", "dice"), "torch": ("torch", "torch")}


def available(peer: str) -> bool:
    """Whether the optional library behind ``peer`` (``"dice"``, ``"torch"``) is installed; finds
    the module without importing it."""
    module, _ = EXTRAS[peer]
    return importlib.util.find_spec(module) is not None


def missing_message(peer: str) -> str:
    """What to tell a user whose run leaves ``peer`` out because its library is missing."""
    module, extra = EXTRAS[peer]
    return (
        f"the {peer} peer is left out: its library ({module}) is not installed; add it with "
        f"`pip install -e '.[{extra}]'`"
    )
