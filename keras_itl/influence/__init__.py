"""Influence of each training instance on the validation loss, by inverse-Hessian-vector products."""
from keras_itl.influence.features import FeatureSet, FrozenFeatures, frozen_features
from keras_itl.influence.scope import SCOPE_HELP, Scope, select_scope
from keras_itl.influence.scores import (
    CSV_COLUMNS,
    InfluenceConfig,
    InfluenceResult,
    InfluenceTable,
    compute_influence,
    prepare_features,
)
from keras_itl.influence.sharding import WorkerShard
from keras_itl.influence.solvers import (
    EXACT_MAX_PARAMETERS,
    SOLVERS,
    SolverError,
    SolverOptions,
    SolverReport,
)

__all__ = [
    "CSV_COLUMNS",
    "EXACT_MAX_PARAMETERS",
    "SCOPE_HELP",
    "SOLVERS",
    "FeatureSet",
    "FrozenFeatures",
    "InfluenceConfig",
    "InfluenceResult",
    "InfluenceTable",
    "Scope",
    "SolverError",
    "SolverOptions",
    "SolverReport",
    "WorkerShard",
    "compute_influence",
    "frozen_features",
    "prepare_features",
    "select_scope",
]
