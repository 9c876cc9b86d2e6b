"""Influence of each training instance on the validation loss, by inverse-Hessian-vector products."""
from keras_itl.influence.scope import SCOPE_HELP, Scope, select_scope
from keras_itl.influence.scores import (
    CSV_COLUMNS,
    InfluenceConfig,
    InfluenceResult,
    InfluenceTable,
    compute_influence,
)
from keras_itl.influence.solvers import EXACT_MAX_PARAMETERS, SOLVERS, SolverError, SolverOptions, SolverReport

__all__ = [
    "CSV_COLUMNS", "EXACT_MAX_PARAMETERS", "InfluenceConfig", "InfluenceResult", "InfluenceTable", "SCOPE_HELP",
    "SOLVERS", "Scope", "SolverError", "SolverOptions", "SolverReport", "compute_influence", "select_scope",
]
