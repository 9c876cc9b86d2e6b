"""The frozen part of a model, computed once: cached activations that influence (and refits) run on.

``frozen_features(model, scope, {"train": ..., "val": ...})`` cuts the model below the scope (see
``keras_itl.influence.cut``), runs the frozen part once over each split in inference mode and
returns the trainable sub-model together with the activations entering it. Everything that later
differentiates or refits the scope - the validation gradient, every Hessian-vector product,
damping retries, the leave-one-out check, the scores, head-only candidate refits - then runs on
those activations and never touches the frozen layers again.

Activations are held in memory when all splits together fit in ``memory_limit_mb``; otherwise
they are streamed batch by batch into memory-mapped ``.npy`` files under ``cache_dir`` (the run
directory, or a temporary directory), so memory stays bounded by the page cache. The files are
unlinked as soon as they are mapped: nothing is left behind, whatever happens to the process.

For scope ``all`` (or a model that cannot be cut) nothing is frozen: the "activations" are the
split's images at the model's input size, batched on the fly as before.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from keras_itl.datasets import Split, make_batches
from keras_itl.influence.cut import ModelCut, cut_model, uncut
from keras_itl.influence.scope import Scope, scoped_layers, select_scope

DEFAULT_MEMORY_LIMIT_MB = 1024.0


class Examples(Protocol):
    """Inputs of the trainable part with their labels, in split order, as tf.data batches."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def subset(self, indices: np.ndarray | list[int]) -> Examples: ...

    def batches(self, batch_size: int) -> tf.data.Dataset: ...


class _CachedBatches:
    """Keeps one tf.data pipeline per batch size: iterative solvers pass over the same data hundreds of times."""

    def batches(self, batch_size: int) -> tf.data.Dataset:
        cache = self.__dict__.setdefault("_pipelines", {})
        if batch_size not in cache:
            cache[batch_size] = self._make_batches(batch_size)
        return cache[batch_size]


@dataclass(eq=False)
class ImageExamples(_CachedBatches):
    """A split's raw images, resized and converted to the model's input on the fly (nothing frozen)."""

    split: Split
    image_size: int
    channels: int

    @property
    def labels(self) -> np.ndarray:
        return self.split.labels

    def __len__(self) -> int:
        return len(self.split)

    def subset(self, indices) -> ImageExamples:
        return ImageExamples(self.split.subset(indices), self.image_size, self.channels)

    def _make_batches(self, batch_size: int) -> tf.data.Dataset:
        return make_batches(self.split, batch_size, image_size=self.image_size, channels=self.channels,
                            drop_ids=True)


@dataclass(eq=False)
class FeatureSet(_CachedBatches):
    """Activations of the frozen part, one row per example in split order (an array or a read-only memmap)."""

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def memory_mapped(self) -> bool:
        return isinstance(self.features, np.memmap)

    def subset(self, indices) -> FeatureSet:
        """The rows at ``indices`` (a copy in memory)."""
        indices = np.asarray(indices, dtype=np.int64)
        return FeatureSet(np.asarray(self.features[indices]), self.labels[indices], self.ids[indices])

    def _make_batches(self, batch_size: int) -> tf.data.Dataset:
        def generate():
            for start in range(0, len(self), batch_size):
                stop = start + batch_size
                yield np.asarray(self.features[start:stop]), self.labels[start:stop]

        signature = (tf.TensorSpec([None, *self.features.shape[1:]], tf.float32), tf.TensorSpec([None], tf.int64))
        return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


@dataclass
class FrozenFeatures:
    """What influence and refits run on: the scope, the trainable sub-model and per-split inputs of it."""

    scope: Scope
    cut: ModelCut
    splits: dict[str, Examples]
    seconds: float

    @property
    def trainable(self) -> keras.Model:
        return self.cut.trainable

    def describe(self) -> dict:
        """JSON-serialisable: where the model was cut and how the activations are held."""
        sets = [s for s in self.splits.values() if isinstance(s, FeatureSet)]
        storage = ("none" if not sets else "memory-mapped" if any(s.memory_mapped for s in sets) else "memory")
        return {**self.cut.describe(), "storage": storage, "seconds": self.seconds,
                "megabytes": sum(s.features.nbytes for s in sets) / 2 ** 20}


def image_examples(model: keras.Model, split: Split) -> ImageExamples:
    """``split`` as inputs of the whole model (its own input size and channels)."""
    _, size, _, channels = model.input_shape
    return ImageExamples(split, size, channels)


def _allocate(shape: tuple[int, ...], directory: Path | None, name: str) -> np.ndarray:
    """An empty float32 array, or a memory-mapped one backed by an unlinked file in ``directory``."""
    if directory is None:
        return np.empty(shape, np.float32)
    path = directory / f"features-{name}-{os.getpid()}.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    path.unlink()  # the mapping keeps the data; the file vanishes with the process
    return array


def compute_features(cut: ModelCut, splits: dict[str, Split], *, batch_size: int = 64,
                     cache_dir: str | os.PathLike | None = None,
                     memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB) -> dict[str, FeatureSet]:
    """Run ``cut.frozen`` once over each split (inference mode); in memory if all fit the limit, else memory-mapped."""
    frozen = cut.frozen
    _, size, _, channels = frozen.input_shape
    shape = tuple(frozen.output_shape[1:])
    row_bytes = 4 * int(np.prod(shape))
    total_mb = row_bytes * sum(len(s) for s in splits.values()) / 2 ** 20
    directory = None
    if total_mb > memory_limit_mb:
        directory = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir())
        directory.mkdir(parents=True, exist_ok=True)
    forward = tf.function(lambda images: frozen(images, training=False), reduce_retracing=True)
    result = {}
    for name, split in splits.items():
        features = _allocate((len(split), *shape), directory, name)
        start = 0
        for images, _ in make_batches(split, batch_size, image_size=size, channels=channels, drop_ids=True):
            activations = forward(images).numpy()
            features[start:start + len(activations)] = activations
            start += len(activations)
        if isinstance(features, np.memmap):
            features.flush()
        result[name] = FeatureSet(features, np.asarray(split.labels, np.int64), np.asarray(split.ids))
    return result


def frozen_features(model: keras.Model, scope: str | Scope, splits: dict[str, Split], *, batch_size: int = 64,
                    cache_dir: str | os.PathLike | None = None,
                    memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB, freeze: bool = True) -> FrozenFeatures:
    """Cut ``model`` below ``scope`` and compute the frozen part's activations for every split, once.

    ``scope`` is a spec (``head``, ``top:K``, ``all``) or a selected Scope. For ``all`` (or with
    ``freeze=False``, which checks and benchmarks use as the reference) nothing is frozen and the
    splits are returned as images (``ImageExamples``) of the whole model.
    """
    scope = select_scope(model, scope) if isinstance(scope, str) else scope
    started = time.perf_counter()
    if scope.name == "all" or not freeze:
        cut = uncut(model)
    else:
        cut = cut_model(model, scoped_layers(model, scope))
    if cut.frozen is None:
        examples: dict[str, Examples] = {name: image_examples(model, split) for name, split in splits.items()}
    else:
        examples = compute_features(cut, splits, batch_size=batch_size, cache_dir=cache_dir,
                                    memory_limit_mb=memory_limit_mb)
    return FrozenFeatures(scope=scope, cut=cut, splits=examples, seconds=time.perf_counter() - started)
