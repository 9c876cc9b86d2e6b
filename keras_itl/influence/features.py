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
split's images at the model's input size, batched on the fly.
"""
from __future__ import annotations

import os
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from keras_itl.datasets import Split, make_batches
from keras_itl.influence.cut import ModelCut, cut_model, uncut
from keras_itl.influence.derivatives import LossDerivatives
from keras_itl.influence.preconditioner import HeadPreconditioner, head_preconditioner
from keras_itl.influence.scope import Scope, scoped_layers, select_scope

DEFAULT_MEMORY_LIMIT_MB = 1024.0
FEATURE_BATCH_BYTES = 16 * 2 ** 20  # passes over cached activations take batches of about this size
MAX_FEATURE_BATCH = 1024
# model -> {scope variables: ModelCut}; a cut (and the tf.functions traced on it) is built once per model and scope
_CUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Examples(Protocol):
    """Inputs of the trainable part with their labels, in split order, in batches (tf.data pipelines for images
    and memory-mapped activations, slices of the tensor for activations held in memory)."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def subset(self, indices: np.ndarray | list[int]) -> Examples: ...

    def batches(self, batch_size: int) -> Iterable[tuple[tf.Tensor, tf.Tensor]]: ...


class _CachedBatches:
    """Keeps one batching per batch size: iterative solvers pass over the same data hundreds of times."""

    def batches(self, batch_size: int) -> Iterable[tuple[tf.Tensor, tf.Tensor]]:
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
    """Activations of the frozen part, one row per example in split order.

    ``features`` is a float32 tf.Tensor when held in memory (batches slice it without copying
    it), or a read-only np.memmap beyond the memory limit (batches are read from disk as needed).
    """

    features: tf.Tensor | np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.features, (np.memmap, tf.Tensor)):
            self.features = tf.constant(self.features, tf.float32)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def memory_mapped(self) -> bool:
        return isinstance(self.features, np.memmap)

    @property
    def nbytes(self) -> int:
        return 4 * int(np.prod(self.features.shape))

    def subset(self, indices) -> FeatureSet:
        """The rows at ``indices`` (a copy, in memory)."""
        indices = np.asarray(indices, dtype=np.int64)
        rows = (tf.constant(self.features[indices]) if self.memory_mapped
                else tf.gather(self.features, indices))
        return FeatureSet(rows, self.labels[indices], self.ids[indices])

    def _make_batches(self, batch_size: int) -> Iterable[tuple[tf.Tensor, tf.Tensor]]:
        features, labels = self.features, tf.constant(self.labels, tf.int64)
        if not self.memory_mapped:
            return _TensorBatches(features, labels, batch_size)
        starts = tf.data.Dataset.range(0, len(self), batch_size)

        def read(start):
            return np.asarray(features[start:start + batch_size])

        def load(start):
            rows = tf.numpy_function(read, [start], tf.float32, stateful=False)
            return tf.ensure_shape(rows, [None, *features.shape[1:]]), labels[start:start + batch_size]

        return starts.map(load).prefetch(2)


@dataclass(frozen=True)
class _TensorBatches:
    """Consecutive row slices of in-memory tensors, cut as a pass reaches them.

    Held activations need no input pipeline: a tf.data pass over them costs ~20 ms of set-up
    whatever its size, a tenth of a Gauss-Newton product on ResNet50's last block, paid on every
    cg iteration. Each batch is a slice of the held tensors; nothing else is kept.
    """

    features: tf.Tensor
    labels: tf.Tensor
    batch_size: int

    def __iter__(self) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
        for start in range(0, int(self.labels.shape[0]), self.batch_size):
            yield self.features[start:start + self.batch_size], self.labels[start:start + self.batch_size]


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

    def derivatives(self, batch_size: int) -> LossDerivatives:
        """Loss derivatives of the trainable part over the scope (traced once per cut, scope and batch size).

        Passes over images use ``batch_size``; passes over cached activations, which cost far less
        per example, take larger batches (about FEATURE_BATCH_BYTES of activations, at least
        ``batch_size``) so that per-batch overhead does not dominate hundreds of solver passes.
        """
        if self.cut.frozen is not None:
            row_bytes = 4 * int(np.prod(self.cut.frozen.output_shape[1:]))
            batch_size = max(batch_size, min(MAX_FEATURE_BATCH, FEATURE_BATCH_BYTES // row_bytes))
        key = ("derivatives", batch_size, tuple(id(v) for v in self.scope.variables))
        return self.cut.cached(key, lambda: LossDerivatives(self.trainable, self.scope, batch_size))

    def head_preconditioner(self, examples: Examples, seed: int = 0) -> HeadPreconditioner | None:
        """A cg preconditioner for the Hessian over ``examples`` when the scope is a softmax head on cached
        activations (None otherwise)."""
        if not isinstance(examples, FeatureSet):
            return None
        return head_preconditioner(self.trainable, self.scope, examples.features, seed)

    def describe(self) -> dict:
        """JSON-serialisable: where the model was cut and how the activations are held."""
        sets = [s for s in self.splits.values() if isinstance(s, FeatureSet)]
        storage = ("none" if not sets else "memory-mapped" if any(s.memory_mapped for s in sets) else "memory")
        return {**self.cut.describe(), "storage": storage, "seconds": self.seconds,
                "megabytes": sum(s.nbytes for s in sets) / 2 ** 20}


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
    forward = cut.cached("forward", lambda: tf.function(lambda images: frozen(images, training=False),
                                                         reduce_retracing=True))
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
        else:
            features = tf.constant(features)  # batches slice the tensor; the array is released
        result[name] = FeatureSet(features, np.asarray(split.labels, np.int64), np.asarray(split.ids))
    return result


def _cut(model: keras.Model, scope: Scope, freeze: bool) -> ModelCut:
    """The model's cut below ``scope`` (or uncut), built once per model, scope and choice."""
    cuts = _CUTS.setdefault(model, {})
    key = (freeze, tuple(id(variable) for variable in scope.variables))
    if key not in cuts:
        cuts[key] = cut_model(model, scoped_layers(model, scope)) if freeze else uncut(model)
    return cuts[key]


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
    cut = _cut(model, scope, freeze and scope.name != "all")
    if cut.frozen is None:
        examples: dict[str, Examples] = {name: image_examples(model, split) for name, split in splits.items()}
    else:
        examples = compute_features(cut, splits, batch_size=batch_size, cache_dir=cache_dir,
                                    memory_limit_mb=memory_limit_mb)
    return FrozenFeatures(scope=scope, cut=cut, splits=examples, seconds=time.perf_counter() - started)
