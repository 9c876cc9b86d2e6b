"""keras-itl: instance-based deep transfer learning for TensorFlow/Keras.

The handful of entry points a Python user needs are importable from the package itself:
``load_dataset``, ``build_model``, ``TransferConfig`` / ``InstanceOptions`` / ``run_transfer``,
``InfluenceConfig`` / ``compute_influence``, ``evaluate_model``, ``export_model``,
``get_preset`` / ``run_experiment``, ``write_report`` and ``read_decisions`` / ``apply_decisions``.
They are loaded on first use, so ``import keras_itl`` (and ``keras-itl --help``) does not pay for
TensorFlow, and a multi-worker strategy can still be created before any TensorFlow op runs.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_ENTRY_POINTS = {
    "load_dataset": "keras_itl.datasets",
    "build_model": "keras_itl.backbones",
    "TransferConfig": "keras_itl.transfer",
    "InstanceOptions": "keras_itl.transfer",
    "run_transfer": "keras_itl.transfer",
    "InfluenceConfig": "keras_itl.influence",
    "compute_influence": "keras_itl.influence",
    "evaluate_model": "keras_itl.evaluation",
    "export_model": "keras_itl.export",
    "get_preset": "keras_itl.presets",
    "run_experiment": "keras_itl.experiment",
    "write_report": "keras_itl.report",
    "read_decisions": "keras_itl.decisions",
    "apply_decisions": "keras_itl.decisions",
}
__all__ = ["__version__", *_ENTRY_POINTS]


def __getattr__(name: str):
    if name not in _ENTRY_POINTS:
        raise AttributeError(f"module 'keras_itl' has no attribute {name!r}")
    return getattr(importlib.import_module(_ENTRY_POINTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
