"""TFX-style gating: bless a candidate model against the version being served, and check it before a push.

A candidate is *blessed* when its error rate on a split is at most the latest served version's
error rate on the same images plus a threshold; with no served version it is blessed outright.
The verdict is written as ``blessing.json`` beside the candidate's metrics. ``check_blessing``
then refuses a push whose blessing is missing, negative, made against another base path or an
older latest version, or made for a model file that has changed since.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_itl.datasets import TargetDataset, make_batches
from keras_itl.errors import UserError, one_line
from keras_itl.export import latest_version
from keras_itl.serving_layout import DEFAULT_SIGNATURE, class_names_path

BLESSING_FILE = "blessing.json"


@dataclass(frozen=True)
class Blessing:
    """The verdict on one candidate against one base path (the fields of blessing.json)."""

    blessed: bool
    candidate_error: float
    baseline_error: float | None
    baseline_version: int | None
    baseline_path: str
    threshold: float
    split: str
    candidate_model: str
    candidate_sha256: str
    evaluated_at: str

    def describe(self) -> str:
        """One line: the verdict and the numbers behind it."""
        if self.baseline_version is None:
            return f"blessed: no version under {self.baseline_path} to compare with"
        verdict = "blessed" if self.blessed else "NOT blessed"
        relation = "<=" if self.blessed else ">"
        return (f"{verdict}: candidate {self.split} error {self.candidate_error:.2%} {relation} baseline version "
                f"{self.baseline_version} error {self.baseline_error:.2%} + threshold {self.threshold:.2%}")

    def write(self, directory: str | os.PathLike) -> Path:
        """Save as ``<directory>/blessing.json``."""
        path = Path(directory) / BLESSING_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def candidate_file(model_path: str | os.PathLike) -> Path:
    """The model file a candidate path stands for: the file itself, or a run directory's model.keras."""
    path = Path(model_path)
    return path / "model.keras" if path.is_dir() else path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def saved_model_error(version_dir: str | os.PathLike, data: TargetDataset, split: str,
                      batch_size: int = 256) -> float:
    """Error rate of a served SavedModel version (its serving_default ``classes``) on a split of ``data``.

    The images are resized and converted to the SavedModel's own input shape, as for a Keras model.
    """
    version_dir = Path(version_dir)
    names_file = class_names_path(version_dir)
    if names_file.is_file() and names_file.read_text().splitlines() != data.info.class_names:
        raise UserError(f"the baseline {version_dir} predicts other classes than {data.info.spec}: "
                        f"{', '.join(names_file.read_text().splitlines())}")
    try:
        signature = tf.saved_model.load(str(version_dir)).signatures.get(DEFAULT_SIGNATURE)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise UserError(f"cannot load the baseline {version_dir}: {one_line(error)}") from None
    inputs = signature.structured_input_signature[1] if signature is not None else {}
    if len(inputs) != 1 or "classes" not in signature.structured_outputs:
        raise UserError(f"the baseline {version_dir} has no {DEFAULT_SIGNATURE} signature taking images and "
                        "returning classes")
    (name, spec), = inputs.items()
    _, height, width, channels = spec.shape
    if height != width:
        raise UserError(f"the baseline {version_dir} takes {height}x{width} images; only square inputs are supported")
    selected = data.split(split)
    batches = make_batches(selected, batch_size, image_size=height, channels=channels, drop_ids=True)
    predicted = np.concatenate([signature(**{name: images})["classes"].numpy() for images, _ in batches])
    return 1.0 - float(np.mean(predicted == selected.labels))  # the same formula as Metrics.error_rate


def bless_candidate(model_path: str | os.PathLike, candidate_error: float, base_path: str | os.PathLike,
                    data: TargetDataset, *, split: str = "test", threshold: float = 0.0) -> Blessing:
    """Compare a candidate's error on ``split`` of ``data`` with the latest version under ``base_path``."""
    version = latest_version(base_path)
    baseline_error = None if version is None else saved_model_error(Path(base_path) / str(version), data, split)
    blessed = baseline_error is None or candidate_error <= baseline_error + threshold
    model_file = candidate_file(model_path)
    return Blessing(blessed=blessed, candidate_error=candidate_error, baseline_error=baseline_error,
                    baseline_version=version, baseline_path=str(Path(base_path).resolve()), threshold=threshold,
                    split=split, candidate_model=str(model_file.resolve()), candidate_sha256=_sha256(model_file),
                    evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"))


def check_blessing(model_path: str | os.PathLike, serving_dir: str | os.PathLike,
                   blessing_file: str | os.PathLike | None = None) -> Blessing:
    """The candidate's blessing if it allows a push to ``serving_dir`` now, else a UserError saying why.

    ``blessing_file`` defaults to blessing.json beside the candidate (in a run directory, or beside
    a .keras file).
    """
    model_file = candidate_file(model_path)
    path = Path(blessing_file) if blessing_file else model_file.parent / BLESSING_FILE
    if not path.is_file():
        raise UserError(f"no blessing at {path}: run `keras-itl evaluate --model {model_path} --baseline "
                        f"{serving_dir}` first, or pass --force")
    try:
        blessing = Blessing(**json.loads(path.read_text()))
    except (ValueError, TypeError) as error:
        raise UserError(f"unreadable blessing {path}: {error}") from None
    if not blessing.blessed:
        raise UserError(f"not pushed: the candidate is not blessed ({blessing.describe()}); "
                        "pass --force to push anyway")
    if Path(blessing.baseline_path) != Path(serving_dir).resolve():
        raise UserError(f"the blessing compared the candidate with {blessing.baseline_path}, not {serving_dir}: "
                        f"run `keras-itl evaluate --model {model_path} --baseline {serving_dir}` first")
    if latest_version(serving_dir) != blessing.baseline_version:
        raise UserError(f"stale blessing: the latest version under {serving_dir} is now {latest_version(serving_dir)}, "
                        f"the candidate was compared with {blessing.baseline_version}; run evaluate --baseline again")
    if not model_file.is_file() or _sha256(model_file) != blessing.candidate_sha256:
        raise UserError(f"{model_file} changed since it was blessed; run evaluate --baseline again")
    return blessing
