"""Tabular data: a schema of categorical and numeric columns, a reversible encoding (one-hot
categories, mode-specific normalisation of numbers), constraints that hold exactly (immutable,
increasing and fixed columns), and readable lists of what a counterfactual changed.
"""

from jaxcf.tabular._constraints import INCREASING_RTOL, Constraints, enforce, fixed_mask, violations
from jaxcf.tabular._transform import (
    ARROW,
    FORMAT,
    Block,
    Column,
    Layout,
    NumericFit,
    Schema,
    Table,
    TabularTransform,
    activate,
    changes,
    fit_mixture_1d,
    numeric_value,
    write_changes_csv,
)

__all__ = [
    "ARROW",
    "FORMAT",
    "INCREASING_RTOL",
    "Block",
    "Column",
    "Constraints",
    "Layout",
    "NumericFit",
    "Schema",
    "Table",
    "TabularTransform",
    "activate",
    "changes",
    "enforce",
    "fit_mixture_1d",
    "fixed_mask",
    "numeric_value",
    "violations",
    "write_changes_csv",
]
