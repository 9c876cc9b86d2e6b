"""A per-layer Kronecker-factored (K-FAC) preconditioner for cg on a top:K Gauss-Newton solve.

The Gauss-Newton matrix G = mean_i J_i^T H_i J_i (see derivatives.py) is approximated block-diagonally:
one block per variable. A Dense or Conv2D kernel's block is A (x) S, with A the mean outer product of
the layer's inputs (Conv2D: of its input patches, summed over output positions) and S the mean outer
product of the vectors back-propagated to its pre-activation outputs (per position, over the number of
positions). H_i = sum_c p_ic (e_c - p_i)(e_c - p_i)^T, so back-propagating sqrt(p_ic) (p_i - e_c)
from the logits for every class c gives S exactly (for many classes, a few classes drawn from p_i
instead). A bias's block is the mean outer product of the summed back-propagated vectors;
BatchNormalization's scale and offset get their diagonal; any other variable the mean curvature of the rest.
Each block is inverted with the solve's damping in its eigenbases. It only steers cg: the solve still
stops on the true residual, so the result is the one plain cg converges to.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import keras
import numpy as np
import tensorflow as tf

from keras_itl.influence.scope import Scope, scoped_layers

if TYPE_CHECKING:
    from keras_itl.influence.features import Examples

EXACT_CLASSES = 32  # up to this many classes every class is back-propagated; beyond, SAMPLED_CLASSES drawn from p
SAMPLED_CLASSES = 8
RANGE_THRESHOLD = 1e-10  # input-factor eigenvalues below this fraction of the largest count as zero


@dataclass(frozen=True)
class _Kronecker:
    """(A (x) S + damping*I)^-1 on a [rows, columns] view of one variable, from both factors' eigenpairs."""

    input_values: np.ndarray
    input_basis: np.ndarray
    output_values: np.ndarray
    output_basis: np.ndarray

    def inverse(self, damping: float) -> Callable[[tf.Tensor], tf.Tensor]:
        # Only A's range is rotated: off it (zero-padded patch taps, fewer examples than inputs) the block is 0,
        # so (A (x) S + damping*I)^-1 is 1/damping there - exact, and far cheaper than the full eigenbasis.
        kept = self.input_values > RANGE_THRESHOLD * max(float(self.input_values.max()), 1e-300)
        scale = tf.constant(1.0 / (np.outer(self.input_values[kept], self.output_values) + damping), tf.float64)
        left = tf.constant(self.input_basis[:, kept], tf.float64)
        right = tf.constant(self.output_basis, tf.float64)

        def apply(part: tf.Tensor) -> tf.Tensor:
            matrix = tf.reshape(part, [left.shape[0], right.shape[0]])
            coefficients = tf.matmul(left, matrix, transpose_a=True)
            rest = (matrix - tf.matmul(left, coefficients)) / damping
            rotated = tf.matmul(coefficients, right) * scale
            return tf.reshape(rest + tf.matmul(left, tf.matmul(rotated, right, transpose_b=True)), [-1])

        return apply


@dataclass(frozen=True)
class _Diagonal:
    curvature: np.ndarray

    def inverse(self, damping: float) -> Callable[[tf.Tensor], tf.Tensor]:
        scale = tf.constant(1.0 / (self.curvature + damping), tf.float64)
        return lambda part: part * scale


def _eigen(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, basis = np.linalg.eigh((matrix + matrix.T) / 2)
    return np.maximum(values, 0.0), basis


@dataclass(frozen=True)
class KroneckerPreconditioner:
    """One block per scope variable, in the scope's flat order; ``inverse(damping)`` applies them all."""

    name: ClassVar[str] = "k-fac"

    sizes: tuple[int, ...]
    blocks: tuple

    def inverse(self, damping: float) -> Callable[[tf.Tensor], tf.Tensor]:
        appliers = [block.inverse(damping) for block in self.blocks]

        def apply(vector: tf.Tensor) -> tf.Tensor:
            parts = tf.split(tf.cast(vector, tf.float64), list(self.sizes))  # float64 factors, any float vector
            return tf.cast(tf.concat([a(p) for a, p in zip(appliers, parts)], axis=0), vector.dtype)

        return apply


class _Recorder:
    """Patches the scoped layers' ``call`` and ``activation`` for one eager pass: records inputs and pre-activations."""

    def __init__(self, layers: list[keras.layers.Layer]):
        self.layers = layers
        self.inputs: dict[int, tf.Tensor] = {}
        self.outputs: dict[int, tf.Tensor] = {}
        self._activations: dict[int, Callable] = {}

    def __enter__(self) -> _Recorder:
        for layer in self.layers:
            call, activation = layer.call, getattr(layer, "activation", None)

            def recorded_call(inputs, *args, _layer=layer, _call=call, **kwargs):
                self.inputs[id(_layer)] = inputs
                output = _call(inputs, *args, **kwargs)
                self.outputs.setdefault(id(_layer), output)  # BatchNormalization (no activation): its output
                return output

            layer.call = recorded_call
            if activation is not None:
                self._activations[id(layer)] = activation

                def recorded_activation(x, _layer=layer, _activation=activation):
                    self.outputs[id(_layer)] = x
                    return _activation(x)

                layer.activation = recorded_activation
        return self

    def __exit__(self, *_) -> None:
        for layer in self.layers:
            del layer.call  # the instance attribute; the class's method shows through again
            if id(layer) in self._activations:
                layer.activation = self._activations[id(layer)]


def _class_weights(probs: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Logit-space vectors w with sum_w w w^T = (or, sampled, in expectation) diag(p) - p p^T per example."""
    classes = probs.shape[1]
    if classes <= EXACT_CLASSES:
        return [np.sqrt(probs[:, [c]]) * (probs - np.eye(classes)[c]) for c in range(classes)]
    weights = []
    for _ in range(SAMPLED_CLASSES):
        drawn = np.array([rng.choice(classes, p=row / row.sum()) for row in probs])
        weights.append((probs - np.eye(classes)[drawn]) / np.sqrt(SAMPLED_CLASSES))
    return weights


def _patches(layer: keras.layers.Layer, inputs: tf.Tensor) -> tf.Tensor:
    """[batch, positions, kh*kw*channels] input patches of a Conv2D, in its kernel's row-major order."""
    kh, kw = layer.kernel_size
    patches = tf.image.extract_patches(inputs, sizes=[1, kh, kw, 1], strides=[1, *layer.strides, 1],
                                       rates=[1, *layer.dilation_rate, 1], padding=layer.padding.upper())
    return tf.reshape(patches, [tf.shape(patches)[0], -1, patches.shape[-1]])


def _supported(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.Dense):
        return True
    return (type(layer) is keras.layers.Conv2D and layer.data_format == "channels_last" and layer.groups == 1) \
        or isinstance(layer, keras.layers.BatchNormalization)


class _Sums:
    """Running sums of one layer's factor statistics over batches and back-propagated classes."""

    def __init__(self):
        self.values: dict[str, np.ndarray] = {}

    def add(self, key: str, value: tf.Tensor) -> None:
        value = np.asarray(value, np.float64)
        self.values[key] = self.values.get(key, 0.0) + value


def _accumulate(layer: keras.layers.Layer, inputs: tf.Tensor, outputs: tf.Tensor, backs: list[tf.Tensor],
                sums: _Sums) -> None:
    if isinstance(layer, keras.layers.BatchNormalization):
        normalised = (inputs - layer.moving_mean) * tf.math.rsqrt(layer.moving_variance + layer.epsilon)
        axes = list(range(1, len(inputs.shape) - 1))
        for back in backs:
            sums.add("gamma", tf.reduce_sum(tf.square(tf.reduce_sum(back * normalised, axis=axes)), axis=0))
            sums.add("beta", tf.reduce_sum(tf.square(tf.reduce_sum(back, axis=axes)), axis=0))
        return
    rows = _patches(layer, inputs) if isinstance(layer, keras.layers.Conv2D) else tf.reshape(
        inputs, [tf.shape(inputs)[0], -1, inputs.shape[-1]])
    positions = rows.shape[1]
    sums.add("input", tf.einsum("bpi,bpj->ij", rows, rows))
    for back in backs:
        back = tf.reshape(back, [tf.shape(back)[0], -1, back.shape[-1]])
        sums.add("output", tf.einsum("bpi,bpj->ij", back, back) / positions)
        summed = tf.reduce_sum(back, axis=1)
        sums.add("bias", tf.matmul(summed, summed, transpose_a=True))


def kfac_preconditioner(trainable: keras.Model, scope: Scope, examples: Examples, batch_size: int = 64,
                        seed: int = 0) -> KroneckerPreconditioner | None:
    """The K-FAC preconditioner of the Gauss-Newton matrix of ``trainable``'s mean loss over ``examples``,
    or None when the scope has no Dense/Conv2D kernel to factor."""
    layers = scoped_layers(trainable, scope)
    factored = [layer for layer in layers if _supported(layer)]
    if not any(isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) for layer in factored):
        return None
    rng = np.random.default_rng(seed)
    sums = {id(layer): _Sums() for layer in factored}
    count = 0
    for inputs, _ in examples.batches(batch_size):
        with _Recorder(factored) as recorder, tf.GradientTape(persistent=True) as tape:
            probs = trainable(inputs, training=False)
            logits = getattr(probs, "_keras_logits", None)
            logits = tf.math.log(probs) if logits is None else logits
        outputs = [recorder.outputs[id(layer)] for layer in factored]
        backs = [tape.gradient(logits, outputs, output_gradients=tf.constant(weights, logits.dtype))
                 for weights in _class_weights(probs.numpy().astype(np.float64), rng)]
        del tape
        for index, layer in enumerate(factored):
            _accumulate(layer, recorder.inputs[id(layer)], outputs[index], [b[index] for b in backs],
                        sums[id(layer)])
        count += int(probs.shape[0])
    return _assemble(scope, layers, sums, count)


def _assemble(scope: Scope, layers: list[keras.layers.Layer], sums: dict[int, _Sums],
              count: int) -> KroneckerPreconditioner:
    """Eigendecomposed blocks in the scope's variable order; unfactored variables get the mean curvature."""
    owner = {id(w): layer for layer in layers for w in layer.trainable_weights}
    blocks: list = []
    for variable in scope.variables:
        layer = owner[id(variable)]
        stats = {k: v / count for k, v in sums[id(layer)].values.items()} if id(layer) in sums else None
        if stats is None:
            blocks.append(None)
        elif isinstance(layer, keras.layers.BatchNormalization):
            blocks.append(_Diagonal(stats["gamma" if variable is layer.gamma else "beta"]))
        elif variable is layer.kernel:
            blocks.append(_Kronecker(*_eigen(stats["input"]), *_eigen(stats["output"])))
        else:  # the bias
            values, basis = _eigen(stats["bias"])
            blocks.append(_Kronecker(np.ones(1), np.ones((1, 1)), values, basis))
    known = [np.mean(np.outer(b.input_values, b.output_values)) if isinstance(b, _Kronecker) else
             float(np.mean(b.curvature)) for b in blocks if b is not None]
    fallback = float(np.mean(known))
    sizes = tuple(int(np.prod(v.shape)) for v in scope.variables)
    blocks = [block if block is not None else _Diagonal(np.full(size, fallback)) for block, size in zip(blocks, sizes)]
    return KroneckerPreconditioner(sizes=sizes, blocks=tuple(blocks))
