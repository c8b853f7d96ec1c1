"""Running explainers over data sets: fixed-size chunks sharded over a device mesh, refillable
slots for iterative searches, per-query keys, atomic per-chunk files and resume; queries from
arrays or from sources read a chunk at a time; several processes (hosts) through
:mod:`jaxcf.runner.distributed`.
"""

from jaxcf.runner import distributed
from jaxcf.runner._config import RunnerConfig, data_mesh
from jaxcf.runner._keys import fingerprint, query_keys
from jaxcf.runner._programs import program_cache_size
from jaxcf.runner._record import MANIFEST_FILE, load_results
from jaxcf.runner._run import run, run_source
from jaxcf.runner._sources import (
    COLUMNS,
    SAMPLE_ROWS,
    ArraySource,
    NpySource,
    QuerySource,
    QueryWriter,
    describe,
    open_source,
    save_queries,
)

__all__ = [
    "COLUMNS",
    "MANIFEST_FILE",
    "SAMPLE_ROWS",
    "ArraySource",
    "NpySource",
    "QuerySource",
    "QueryWriter",
    "RunnerConfig",
    "data_mesh",
    "describe",
    "distributed",
    "fingerprint",
    "load_results",
    "open_source",
    "program_cache_size",
    "query_keys",
    "run",
    "run_source",
    "save_queries",
]
