"""The solved vector s = (H + damping*I)^-1 g_val, saved with the run so re-scoring skips the solve.

s depends on the model's weights, the scope, the solver settings and the exact training and
validation data; the file records a fingerprint of each (``solution_key``) and is reused only when
all of them match. Scores, selections and reports are cheap to recompute from s; the solve is not.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_itl.datasets import Split
from keras_itl.influence.solvers import SolverOptions, SolverReport

SOLUTION_FILE = "influence-solution.npz"


def model_fingerprint(model: keras.Model) -> str:
    """SHA-256 of every weight's name, shape and values (trainable or not)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def split_fingerprint(split: Split) -> str:
    """SHA-256 of a split's ids, labels and pixels, in order."""
    digest = hashlib.sha256()
    digest.update("\n".join(map(str, split.ids)).encode())
    digest.update(np.ascontiguousarray(split.labels, np.int64).tobytes())
    digest.update(np.ascontiguousarray(split.images).tobytes())
    return digest.hexdigest()


def solution_key(model: keras.Model, scope: str, options: SolverOptions, hessian_max_examples: int | None,
                 train: Split, val: Split) -> dict:
    """Everything s was solved for: model hash, scope, requested solver settings, data fingerprints."""
    return {"model": model_fingerprint(model), "scope": scope, "solver": {**vars(options)},
            "hessian_max_examples": hessian_max_examples, "train": split_fingerprint(train),
            "val": split_fingerprint(val), "num_train": len(train), "num_val": len(val)}


def save_solution(path: str | os.PathLike, solution: tf.Tensor, report: SolverReport, key: dict) -> None:
    """Write s with its key and solver report (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        np.savez(handle, solution=np.asarray(solution, np.float32),
                 metadata=np.array(json.dumps({"key": key, "report": report.to_dict()})))
    partial.replace(path)


def load_solution(path: str | os.PathLike, key: dict) -> tuple[tf.Tensor, SolverReport] | None:
    """The saved s and its report when ``path`` holds one solved for exactly ``key``; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            metadata = json.loads(str(stored["metadata"]))
            solution = stored["solution"]
    except (OSError, ValueError, KeyError):
        return None  # unreadable or from another version: solve again and overwrite
    if metadata.get("key") != key:
        return None
    report = SolverReport(**{**metadata["report"], "reused": True})
    return tf.constant(solution, tf.float32), report
