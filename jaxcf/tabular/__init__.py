"""Tabular data: a schema of categorical and numeric columns, a reversible encoding (one-hot
categories, mode-specific normalisation of numbers), constraints that hold exactly (immutable,
increasing and fixed columns), and readable lists of what a counterfactual changed.
"""

from jaxcf.tabular._activation import Projection, activate, numeric_value, project
from jaxcf.tabular._changes import ARROW, changes, write_changes_csv
from jaxcf.tabular._constraints import INCREASING_RTOL, Constraints, enforce, fixed_mask, violations
from jaxcf.tabular._mixture import NumericFit, fit_mixture_1d
from jaxcf.tabular._schema import Block, Column, Layout, Schema, Table
from jaxcf.tabular._transform import FORMAT, TabularTransform

__all__ = [
    "ARROW",
    "FORMAT",
    "INCREASING_RTOL",
    "Block",
    "Column",
    "Constraints",
    "Layout",
    "NumericFit",
    "Projection",
    "Schema",
    "Table",
    "TabularTransform",
    "activate",
    "changes",
    "enforce",
    "fit_mixture_1d",
    "fixed_mask",
    "numeric_value",
    "project",
    "violations",
    "write_changes_csv",
]
