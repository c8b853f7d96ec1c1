"""Running explainers over data sets: fixed-size chunks sharded over a device mesh, refillable
slots for iterative searches, per-query keys, atomic per-chunk files and resume; queries from
arrays or from sources read a chunk at a time; several processes (hosts) through
:mod:`jaxcf.runner.distributed`.
"""

from jaxcf.runner import distributed
from jaxcf.runner._run import (
    MANIFEST_FILE,
    RunnerConfig,
    data_mesh,
    fingerprint,
    load_results,
    program_cache_size,
    query_keys,
    run,
    run_source,
)
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
