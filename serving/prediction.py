"""Protocol-independent prediction: pick a signature, check inputs against it, run it, filter outputs.

REST and gRPC both end here, so a request is judged by the same rules whichever protocol carried it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from keras_itl.serving.errors import InvalidArgument, ServingError, SignatureNotFound
from keras_itl.serving.metrics import record_runtime
from keras_itl.serving.signatures import Signature, dtype_name
from keras_itl.serving_layout import DEFAULT_SIGNATURE

if TYPE_CHECKING:  # the manager loads versions through the warmup, which runs predictions
    from keras_itl.serving.model_manager import LoadedVersion

# How the front ends run a checked signature: run_prediction, or a Batcher's predict.
Predict = Callable[[Signature, dict[str, np.ndarray], Iterable[str], str | None], dict[str, np.ndarray]]


def get_signature(loaded: LoadedVersion, name: str | None) -> Signature:
    """The signature ``name`` (``serving_default`` when empty) of a loaded version."""
    name = name or DEFAULT_SIGNATURE
    signature = loaded.signatures.get(name)
    if signature is None:
        raise SignatureNotFound(f"Serving signature name: \"{name}\" not found in signature def")
    return signature


def _compatible(shape: tuple[int, ...], spec: tf.TensorSpec) -> bool:
    return spec.shape.is_compatible_with(tf.TensorShape(shape))


def check_inputs(signature: Signature, inputs: dict[str, np.ndarray]) -> None:
    """Reject inputs whose names, dtypes or shapes do not match the signature."""
    if set(inputs) != set(signature.inputs):
        raise InvalidArgument(f"inputs {sorted(inputs)} do not match the signature's inputs "
                              f"{sorted(signature.inputs)}")
    for name, value in inputs.items():
        spec = signature.inputs[name]
        given = tf.as_dtype(value.dtype)
        if given != spec.dtype:
            raise InvalidArgument(f"input '{name}' expects {dtype_name(spec.dtype)} but {dtype_name(given)} "
                                  "was provided")
        if not _compatible(value.shape, spec):
            expected = [-1 if size is None else size for size in spec.shape.as_list()]
            raise InvalidArgument(f"input '{name}' has shape {list(value.shape)}, incompatible with the "
                                  f"signature's {expected}")


def _op_error_text(error: tf.errors.OpError) -> str:
    """The cause of a TF runtime error on one line, without the graph-tracing traceback TF appends."""
    lines = [line for line in error.message.splitlines()
             if line and not line[0].isspace() and not line.startswith(("Graph execution error", "Detected at node"))]
    return " ".join(lines) or error.message


def check_output_filter(signature: Signature, output_filter: Iterable[str]) -> list[str]:
    """The names of ``output_filter`` as a list; refuses names the signature does not output."""
    wanted = list(output_filter)
    unknown = [name for name in wanted if name not in signature.outputs]
    if unknown:
        raise InvalidArgument(f"output_filter names unknown outputs {unknown}; the signature's outputs are "
                              f"{sorted(signature.outputs)}")
    return wanted


def call_signature(signature: Signature, inputs: dict[str, np.ndarray],
                   model_name: str | None = None) -> dict[str, np.ndarray]:
    """Call a signature on inputs already checked; TF errors become ServingErrors.

    With a ``model_name``, the call's time is recorded as that model's runtime latency.
    """
    started = time.perf_counter()
    try:
        outputs = signature(inputs)
    except tf.errors.InvalidArgumentError as error:
        raise InvalidArgument(_op_error_text(error)) from None
    except tf.errors.OpError as error:
        raise ServingError(_op_error_text(error)) from None
    if model_name is not None:
        record_runtime(model_name, time.perf_counter() - started)
    return outputs


def select_outputs(outputs: dict[str, np.ndarray], wanted: list[str]) -> dict[str, np.ndarray]:
    """The outputs named in ``wanted``, or all of them when it is empty."""
    return {name: outputs[name] for name in wanted} if wanted else outputs


def run_prediction(signature: Signature, inputs: dict[str, np.ndarray], output_filter: Iterable[str] = (),
                   model_name: str | None = None) -> dict[str, np.ndarray]:
    """Run a signature on checked inputs; ``output_filter`` (if not empty) selects outputs by name."""
    check_inputs(signature, inputs)
    wanted = check_output_filter(signature, output_filter)
    return select_outputs(call_signature(signature, inputs, model_name), wanted)
