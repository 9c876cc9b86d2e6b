"""TF Serving's BatchingParameters for ``--enable_batching``: read and checked without TensorFlow, so
``keras-itl serve`` refuses a bad ``--batching_parameters_file`` before it imports TensorFlow."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from keras_itl.errors import UserError
from keras_itl.serving.config_protos import parse_config


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters (all but ``pad_variable_length_inputs``, which is refused)."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 100
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    thread_pool_name: str = "batch_threads"  # TF Serving's default name

    def __post_init__(self):
        if min(self.max_batch_size, self.max_enqueued_batches, self.num_batch_threads) < 1 or \
                self.batch_timeout_micros < 0:
            raise UserError("batching parameters: max_batch_size, max_enqueued_batches and num_batch_threads must "
                            "be positive, batch_timeout_micros not negative")
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[0] < 1 or sizes[-1] != self.max_batch_size):
            raise UserError("batching parameters: allowed_batch_sizes must increase and end at max_batch_size")

    def padded_size(self, rows: int) -> int:
        """The batch size ``rows`` rows are padded to."""
        return next((size for size in self.allowed_batch_sizes if size >= rows), rows)


def load_batching_parameters(path: str | Path | None) -> BatchingOptions:
    """Options from a text BatchingParameters file (as ``--batching_parameters_file``); defaults without one."""
    if path is None:
        return BatchingOptions()
    config = parse_config(path, "BatchingParameters")
    if config.pad_variable_length_inputs:
        raise UserError(f"batching parameters {path}: pad_variable_length_inputs is not supported by keras-itl serve "
                        "(requests are batched only when their inputs agree beyond the first dimension)")
    given = {name: getattr(config, name).value for name in
             ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
              "thread_pool_name") if config.HasField(name)}
    return BatchingOptions(**given, allowed_batch_sizes=tuple(config.allowed_batch_sizes))
