"""The contracts every part of jaxcf keeps: explainers and their results, targets of every kind,
the classifier protocol and its pure wrappers, input checks, config validation, precision, the
results record and atomic file writes.

Nothing here knows a method, a network or a data set; every other package builds on it.
"""

from jaxcf.core import checks, targets, validation
from jaxcf.core._classifier import (
    Classifier,
    FunctionClassifier,
    NNXClassifier,
    as_pure,
    classifier_digest,
)
from jaxcf.core._compiler import compiler_options_for, explain_compiler_options, explain_jit
from jaxcf.core._explainer import (
    CFResult,
    Explainer,
    Retry,
    check_explainer,
    explain_batch,
    per_query_keys,
    tree_where,
)
from jaxcf.core._files import (
    CHECKSUM_MEMBER,
    DamagedFileError,
    npz_problem,
    read_npy_header,
    to_jsonable,
    write_atomic,
    write_json_atomic,
    write_npz,
    write_text_atomic,
)
from jaxcf.core._precision import (
    PRECISIONS,
    MixedPrecision,
    check_precision,
    decision_classifier,
    with_precision,
)
from jaxcf.core._pure import PureModule, PureObject, as_pytree, is_pytree_of_arrays, plain_leaf
from jaxcf.core._results import ARRAY_FIELDS, RESULT_FILE, Results, write_record
from jaxcf.core.config_file import load_config, override, override_all

__all__ = [
    "ARRAY_FIELDS",
    "CHECKSUM_MEMBER",
    "PRECISIONS",
    "RESULT_FILE",
    "CFResult",
    "Classifier",
    "DamagedFileError",
    "Explainer",
    "FunctionClassifier",
    "MixedPrecision",
    "NNXClassifier",
    "PureModule",
    "PureObject",
    "Results",
    "Retry",
    "as_pure",
    "as_pytree",
    "check_explainer",
    "check_precision",
    "checks",
    "classifier_digest",
    "compiler_options_for",
    "decision_classifier",
    "explain_batch",
    "explain_compiler_options",
    "explain_jit",
    "is_pytree_of_arrays",
    "load_config",
    "npz_problem",
    "override",
    "override_all",
    "per_query_keys",
    "plain_leaf",
    "read_npy_header",
    "targets",
    "to_jsonable",
    "tree_where",
    "validation",
    "with_precision",
    "write_atomic",
    "write_json_atomic",
    "write_npz",
    "write_record",
    "write_text_atomic",
]
