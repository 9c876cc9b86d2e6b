"""The TF Serving model layout that the exporter writes and ``keras-itl serve`` reads, defined once.

``<base path>/<model name>/<version>/`` holds a SavedModel (``saved_model.pb``) with the signatures
``serving_default`` (float images) and ``serving_bytes`` (encoded images), the class names in
``assets/class_names.txt``, and in ``assets.extra/`` keras-itl's description of the model and TF
Serving's warmup requests. Both sides import these names and the one model-name rule from here, so a
model the exporter accepts is one the server serves. The library must not import the server, hence
this module lives in ``keras_itl`` rather than ``keras_itl.serving``.
"""
from __future__ import annotations

import re
from pathlib import Path

from keras_itl.errors import UserError

DEFAULT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
ASSETS_DIR = "assets"
EXTRA_ASSETS_DIR = "assets.extra"
CLASS_NAMES_FILE = "class_names.txt"
METADATA_FILE = "keras_itl.json"
WARMUP_FILE = "tf_serving_warmup_requests"

MODEL_NAME_RULE = "use only letters, digits, '_', '-' and '.', with no '..' and not '.' alone"
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def validate_model_name(name: str) -> str:
    """Return ``name`` if it may name a model, else raise a one-line UserError stating the rule.

    A model name becomes a directory under the base path and a URL path component (``/v1/models/<name>``),
    so it is ASCII letters, digits, ``_``, ``-`` and ``.``; ``..`` anywhere and ``.`` alone are refused.
    """
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name) or ".." in name or name == ".":
        raise UserError(f"invalid model name {name!r}: {MODEL_NAME_RULE}")
    return name


def version_number(directory_name: str) -> int | None:
    """The version a child of a base path stands for (its name is an integer), or None for any other child."""
    return int(directory_name) if directory_name.isascii() and directory_name.isdigit() else None


def class_names_path(version_dir: Path) -> Path:
    """The class-names asset of a version: line i names output i."""
    return version_dir / ASSETS_DIR / CLASS_NAMES_FILE


def metadata_path(version_dir: Path) -> Path:
    """keras-itl's JSON description of a version (architecture, metrics, class names, input shape, ...)."""
    return version_dir / EXTRA_ASSETS_DIR / METADATA_FILE


def warmup_path(version_dir: Path) -> Path:
    """TF Serving's warmup file of a version: a TFRecord of PredictionLog protos replayed at load."""
    return version_dir / EXTRA_ASSETS_DIR / WARMUP_FILE
