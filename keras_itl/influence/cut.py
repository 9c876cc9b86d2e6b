"""Where a model splits into a frozen part, computed once, and the part influence differentiates.

Influence over ``head`` or ``top:K`` differentiates only the last layers; everything below them is
a fixed function of the input. A *cut* is a tensor through which the whole rest of the network
flows: every layer after it (in topological order, nested sub-models flattened) reads only the cut
or tensors computed after it. On a chain every layer output is a cut; on a DAG only block
boundaries are (a ResNet block's output after its shortcut is added, a DenseNet block's
concatenation), because inside a block a shortcut still carries an earlier tensor forward.

``cut_model`` picks the nearest cut below the first scoped layer and rebuilds the model as two
Keras models that share the original layers (and therefore weights): ``frozen`` maps the input to
the cut's activations, ``trainable`` maps those activations to the class probabilities. Composed,
they compute exactly what the model computes.

In the trainable part, a 2-D convolution whose input is 1x1 spatially (ResNet50's last block at
32 px, for instance) runs as the matrix product it reduces to: only the kernel's centre tap meets
the input, the other taps meet padding. Same function up to float rounding, same variables - but
TensorFlow's convolution kernel gradients at 1x1 spatial are slow: they made each Gauss-Newton
product of a top:K solve on that block 4x dearer (0.64 against 0.16 s; see ``PointwiseConv``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras


@dataclass(frozen=True)
class _Operation:
    """One call of a leaf layer in the flattened graph, with canonical ids of the tensors it reads and writes."""

    layer: Any
    node: Any
    reads: tuple[int, ...]
    writes: tuple[int, ...]


def _graph_of(model: keras.Model):
    """The functional graph behind ``model``, or None for a subclassed model (which cannot be cut)."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model if hasattr(model, "_nodes_by_depth") else None


class _FlatGraph:
    """A functional model's layer calls in topological order, nested functional sub-models inlined."""

    def __init__(self, model: keras.Model):
        graph = _graph_of(model)
        if graph is None:
            raise ValueError(f"{model.name} is not a functional model")
        self._alias: dict[int, int] = {}
        self.operations: list[_Operation] = []
        self._inline(graph)
        self.inputs = [self.canonical(id(t)) for t in graph.inputs]
        self.outputs = [self.canonical(id(t)) for t in graph.outputs]

    def canonical(self, ref: int) -> int:
        """The id of the tensor that ``ref`` stands for (a nested model's inputs and outputs are aliases)."""
        while ref in self._alias:
            ref = self._alias[ref]
        return ref

    def _inline(self, graph) -> None:
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                reads = tuple(self.canonical(id(t)) for t in node.input_tensors)
                inner = _graph_of(node.operation)
                if inner is None:
                    self.operations.append(_Operation(node.operation, node, reads, tuple(id(t) for t in node.outputs)))
                    continue
                for tensor, outer in zip(inner.inputs, reads):
                    self._alias[id(tensor)] = outer
                self._inline(inner)
                for tensor, produced in zip(node.outputs, inner.outputs):
                    self._alias[id(tensor)] = self.canonical(id(produced))

    def cut_positions(self) -> list[int]:
        """Positions whose single output carries everything later operations read."""
        producer = {ref: -1 for ref in self.inputs}
        for position, operation in enumerate(self.operations):
            producer.update({ref: position for ref in operation.writes})
        earliest_read = [min((producer[ref] for ref in op.reads), default=len(self.operations))
                         for op in self.operations]
        last_output = min(producer[ref] for ref in self.outputs)
        cuts, later_min = [], len(self.operations)
        for position in range(len(self.operations) - 1, -1, -1):
            if len(self.operations[position].writes) == 1 and later_min >= position and position < last_output:
                cuts.append(position)
            later_min = min(later_min, earliest_read[position])
        return cuts[::-1]

    def replay(self, start: dict[int, Any], operations: list[_Operation], end: int,
               substitute: Callable[[Any, tuple], Any] = lambda layer, args: layer) -> Any:
        """Call ``operations`` on new inputs (``start`` maps canonical ids to tensors); the tensor ``end``.

        ``substitute(layer, args)`` may give another callable computing the same function on those arguments.
        """
        values = _Values(self)
        values.update(start)
        for operation in operations:
            args, kwargs = operation.node.arguments.fill_in(values)
            outputs = substitute(operation.layer, args)(*args, **kwargs)
            values.update(zip(operation.writes, keras.tree.flatten(outputs)))
        return values[end]


class _Values(dict):
    """Computed tensors by canonical id; lookups by any alias (as Keras' ``fill_in`` does by raw id)."""

    def __init__(self, graph: _FlatGraph):
        super().__init__()
        self._graph = graph

    def __getitem__(self, ref: int):
        return super().__getitem__(self._graph.canonical(ref))

    def get(self, ref: int, default=None):
        return super().get(self._graph.canonical(ref), default)


class PointwiseConv(keras.layers.Layer):
    """A Conv2D on 1x1-spatial inputs computed as the matrix product it reduces to, with the Conv2D's own variables.

    With "same" padding (or a 1x1 kernel) a kernel meets a 1x1 input only at its tap
    ((kh - 1) // 2, (kw - 1) // 2) - the other taps multiply padding zeros - whatever the strides;
    so the output is input @ kernel[tap] + bias, and the gradient of every other tap is exactly
    zero either way.
    """

    def __init__(self, conv: keras.layers.Conv2D, **kwargs):
        super().__init__(name=f"{conv.name}_pointwise", **kwargs)
        self.conv = conv
        self.tap = tuple((size - 1) // 2 for size in conv.kernel_size)

    def call(self, inputs):
        conv = self.conv
        outputs = keras.ops.matmul(keras.ops.reshape(inputs, (-1, inputs.shape[-1])), conv.kernel[self.tap])
        if conv.use_bias:
            outputs = outputs + conv.bias
        outputs = keras.ops.reshape(outputs, (-1, 1, 1, conv.filters))
        return outputs if conv.activation is None else conv.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, self.conv.filters)


def _pointwise(layer: Any, args: tuple) -> Any:
    """``PointwiseConv(layer)`` where ``layer`` is a plain Conv2D about to be called on a 1x1-spatial input."""
    if type(layer) is not keras.layers.Conv2D or len(args) != 1:
        return layer
    shape = tuple(getattr(args[0], "shape", ()))
    plain = (layer.data_format == "channels_last" and layer.groups == 1 and tuple(layer.dilation_rate) == (1, 1)
             and (layer.padding == "same" or tuple(layer.kernel_size) == (1, 1)))
    return PointwiseConv(layer) if plain and len(shape) == 4 and shape[1:3] == (1, 1) else layer


@dataclass(frozen=True)
class ModelCut:
    """A model split at a cut: ``frozen`` (input -> activations, None when nothing is frozen) and ``trainable``.

    ``trainable`` shares its layers, and so its weights, with the original model: training it
    trains the model. ``after_layer`` names the layer whose output is the cut; ``exact`` says
    whether the cut is the input of the first scoped layer (else it is the nearest cut below,
    and ``recomputed_layers`` layers outside the scope run in the trainable part too).
    """

    frozen: keras.Model | None
    trainable: keras.Model
    after_layer: str | None
    exact: bool
    recomputed_layers: tuple[str, ...]
    _built: dict = field(default_factory=dict, compare=False, repr=False)

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` once per key (traced tf.functions): later runs on the same cut skip the tracing."""
        if key not in self._built:
            self._built[key] = make()
        return self._built[key]

    def describe(self) -> dict:
        """JSON-serialisable: where the model was cut and why (for influence.json)."""
        return {"after_layer": self.after_layer, "at_scope_boundary": self.exact,
                "recomputed_layers": list(self.recomputed_layers),
                "frozen_output_shape": list(self.frozen.output_shape[1:]) if self.frozen is not None else None}


def uncut(model: keras.Model) -> ModelCut:
    """The whole model as the trainable part: nothing frozen."""
    return ModelCut(frozen=None, trainable=model, after_layer=None, exact=True, recomputed_layers=())


def cut_model(model: keras.Model, scoped_layers: list[keras.layers.Layer]) -> ModelCut:
    """Split ``model`` at the nearest cut below the first call of any of ``scoped_layers``.

    A subclassed model, or one with no cut below its scope, is returned uncut.
    """
    if _graph_of(model) is None or len(model.inputs) != 1 or len(model.outputs) != 1:
        return uncut(model)
    graph = _FlatGraph(model)
    scoped = {id(layer) for layer in scoped_layers}
    first = min((i for i, op in enumerate(graph.operations) if id(op.layer) in scoped), default=None)
    below = [position for position in graph.cut_positions() if first is not None and position < first]
    if not below:
        return uncut(model)
    position = below[-1]
    (cut_ref,) = graph.operations[position].writes
    source = graph.operations[position].layer
    frozen_input = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype)
    frozen_output = graph.replay({graph.inputs[0]: frozen_input}, graph.operations[:position + 1], cut_ref)
    frozen = keras.Model(frozen_input, frozen_output, name=f"{model.name}_frozen")
    cut_input = keras.Input(frozen_output.shape[1:], dtype=frozen_output.dtype)
    later = graph.operations[position + 1:]
    output = graph.replay({cut_ref: cut_input}, later, graph.outputs[0], substitute=_pointwise)
    trainable = keras.Model(cut_input, output, name=f"{model.name}_trainable")
    recomputed = tuple(op.layer.name for op in later[:first - position - 1])
    exact = not recomputed and cut_ref in graph.operations[first].reads
    return ModelCut(frozen=frozen, trainable=trainable, after_layer=source.name, exact=exact,
                    recomputed_layers=recomputed)
