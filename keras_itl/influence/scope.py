"""Which parameters influence is computed over: the head, the top K weighted layers, or all.

Head scope is the default: it is cheap, its Hessian is small enough to form exactly, and for a
fixed feature extractor the problem is convex (multinomial logistic regression on the features).
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from keras_itl.errors import UserError
from keras_itl.registry import SCOPE_HELP


@dataclass(frozen=True)
class Scope:
    """The parameters of one influence computation, with helpers to move between them and flat vectors."""

    name: str
    variables: tuple

    @property
    def tf_variables(self) -> list[tf.Variable]:
        """The underlying tf.Variables, which autodiff tapes and accumulators track."""
        return [getattr(v, "value", v) for v in self.variables]

    @property
    def num_parameters(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.variables))

    def flatten(self, tensors) -> tf.Tensor:
        """One float32 vector from per-variable tensors (None counts as zeros)."""
        parts = [tf.zeros([int(np.prod(v.shape))]) if t is None else tf.reshape(tf.cast(t, tf.float32), [-1])
                 for t, v in zip(tensors, self.variables)]
        return tf.concat(parts, axis=0)

    def unflatten(self, vector: tf.Tensor) -> list[tf.Tensor]:
        """Per-variable tensors, shaped like the variables, from one vector."""
        sizes = [int(np.prod(v.shape)) for v in self.variables]
        return [tf.reshape(part, v.shape) for part, v in zip(tf.split(vector, sizes), self.variables)]


def _weighted_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Leaf layers that own trainable weights, in forward order, looking inside nested models."""
    children = getattr(layer, "layers", None)
    if children is not None:
        return [leaf for child in children for leaf in _weighted_layers(child)]
    return [layer] if layer.trainable_weights else []


def _head_variables(model: keras.Model) -> list:
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if not isinstance(last, keras.layers.Dense) or activation != "softmax":
        raise UserError(f"head scope needs a final Dense softmax layer, but {model.name}'s last layer is "
                        f"{type(last).__name__} '{last.name}'; use --scope all or top:K")
    return list(last.trainable_weights)


def select_scope(model: keras.Model, spec: str = "head") -> Scope:
    """Parse a scope spec against a model; one-line errors for unknown specs or empty scopes."""
    if spec == "head":
        variables = _head_variables(model)
    elif spec == "all":
        variables = [w for layer in _weighted_layers(model) for w in layer.trainable_weights]
    elif spec.startswith("top:"):
        try:
            count = int(spec.split(":", 1)[1])
        except ValueError:
            raise UserError(f"scope {spec!r}: K in top:K must be an integer") from None
        if count <= 0:
            raise UserError(f"scope {spec!r}: K must be positive")
        variables = [w for layer in _weighted_layers(model)[-count:] for w in layer.trainable_weights]
    else:
        raise UserError(f"unknown scope {spec!r}; choose {SCOPE_HELP}")
    if not variables:
        raise UserError(f"scope {spec!r} selects no trainable weights of {model.name}")
    return Scope(spec, tuple(variables))


def scoped_layers(model: keras.Model, scope: Scope) -> list[keras.layers.Layer]:
    """The leaf layers of ``model`` that own at least one of the scope's variables, in forward order."""
    owned = {id(variable) for variable in scope.variables}
    return [layer for layer in _weighted_layers(model) if any(id(w) in owned for w in layer.trainable_weights)]
