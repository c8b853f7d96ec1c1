"""What ``jaxcf explain`` runs: any config with a ``run(workdir)`` method."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Experiment(Protocol):
    """An explanation experiment's config: ``run(workdir)`` finds or trains the models it needs,
    runs its methods (reusing finished runs), evaluates them and writes
    ``<workdir>/report/``; it returns the report's JSON-ready summary. An experiment may also
    offer ``report(workdir)``, which only re-evaluates finished runs (``jaxcf report``)."""

    def run(self, workdir: str | Path) -> Any: ...
