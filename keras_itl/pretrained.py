"""Where pretrained weights come from: ImageNet, a local .keras model, or a source dataset.

A source dataset is learned here with the same training loop and cached, keyed by everything
that changes the result, so repeated runs (and the methods of an experiment) reuse one model.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from keras_itl import registry
from keras_itl.backbones import build_model, copy_backbone
from keras_itl.datasets import TargetDataset, load_dataset
from keras_itl.determinism import kernel_settings
from keras_itl.errors import UserError, one_line
from keras_itl.training import TrainConfig, train_model

IMAGENET = "imagenet"


@dataclass(frozen=True)
class Source:
    """A parsed ``--source``: kind is ``imagenet``, ``model`` (a .keras file) or ``dataset``."""

    kind: str
    spec: str


def parse_source(spec: str) -> Source:
    """Classify a ``--source`` value; datasets are validated when they are loaded."""
    if spec == IMAGENET:
        return Source(IMAGENET, spec)
    if spec.endswith(".keras"):
        if not Path(spec).is_file():
            raise UserError(f"source model {spec} does not exist")
        return Source("model", spec)
    return Source("dataset", spec)


def cache_dir() -> Path:
    """``$KERAS_ITL_CACHE``, else ``~/.cache/keras-itl``: where pretrained source models are kept."""
    return Path(os.environ.get("KERAS_ITL_CACHE", Path.home() / ".cache" / "keras-itl"))


def _cache_key(fields: dict) -> str:
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{fields['arch']}-{fields['source']}-{fields['image_size']}px")
    kernels = "-onednn" if fields["onednn"] else ""
    return f"{readable}-seed{fields['seed']}{kernels}-{digest}"


def pretrain_on_dataset(
    source: str,
    arch: str,
    *,
    image_size: int,
    channels: int,
    config: TrainConfig,
    strategy: tf.distribute.Strategy,
    data_dir: str | None = None,
    val_fraction: float = registry.VAL_FRACTION,
    verbose: bool = True,
) -> Path:
    """Train ``arch`` from scratch on the source dataset (or reuse the cached result); return its path.

    The cache key holds every setting that changes the weights, the CPU kernel family and thread count
    included, so a run never reuses a source trained with other kernels (whose weights differ)."""
    fields = {"source": source, "arch": arch, "image_size": image_size, "channels": channels,
              "seed": config.seed, "epochs": config.epochs, "batch_size": config.batch_size,
              "learning_rate": config.learning_rate, "optimizer": config.optimizer,
              "lr_schedule": config.lr_schedule, "patience": config.patience, "val_fraction": val_fraction,
              **kernel_settings()}
    key = _cache_key(fields)
    path = cache_dir() / f"{key}.keras"
    # The workers of one cluster pretrain together (collectives): only separate processes take turns.
    together = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    with contextlib.nullcontext() if together else _pretraining_lock(cache_dir() / f"{key}.lock"):
        if path.exists():
            if verbose:
                print(f"source: reusing pretrained {path}", flush=True)
            return path
        _pretrain(source, arch, path, key, fields, image_size=image_size, channels=channels, config=config,
                  strategy=strategy, data_dir=data_dir, val_fraction=val_fraction, verbose=verbose)
    return path


@contextlib.contextmanager
def _pretraining_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` while one source is looked up or pretrained.

    Two independent processes sharing a cache (two experiments, or two test workers) that want the
    same source would otherwise both pretrain it into the same checkpoint directory and partial file;
    with the lock the second waits and then reuses the first one's model.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pretrain(source: str, arch: str, path: Path, key: str, fields: dict, *, image_size: int, channels: int,
              config: TrainConfig, strategy: tf.distribute.Strategy, data_dir: str | None, val_fraction: float,
              verbose: bool) -> None:
    """Train ``arch`` from scratch on ``source`` and save it at ``path`` (atomically), its fields beside it."""
    data: TargetDataset = load_dataset(source, seed=config.seed, val_fraction=val_fraction, data_dir=data_dir)
    if verbose:
        print(f"source: pretraining {arch} on {source} ({data.info.sizes['train']} images)", flush=True)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(arch, data.info.num_classes, image_size=image_size, channels=channels)
    run_dir = cache_dir() / "runs" / key
    train_model(model, data.split("train"), data.split("val"), config, strategy=strategy, run_dir=run_dir,
                name="source", resume=True, verbose=verbose)
    partial = path.with_suffix(".partial.keras")
    model.save(partial)
    partial.replace(path)
    (cache_dir() / f"{key}.json").write_text(json.dumps(fields, indent=2))


def load_source_into(model: keras.Model, path: str | os.PathLike) -> None:
    """Copy the backbone of a saved source model into ``model`` (built in the same strategy scope)."""
    try:
        source_model = keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for unreadable files
        raise UserError(f"cannot load source model {path}: {one_line(error)}") from None
    copy_backbone(source_model, model)

