"""Split influence passes across the workers of a multi-worker run and reduce their parts.

Under a ``MultiWorkerMirroredStrategy`` each worker takes one contiguous shard of the validation
and training examples, sums its share of the validation gradient and of every Hessian-vector
product, and scores only its own training examples. The partial sums are all-reduced, and the
per-shard scores gathered, with tf.distribute's own collectives, so every worker ends with the
same solution and the same full score vector; ``from_chief`` makes the chief's decision (the drop
set) the one every worker acts on. A single process is one shard holding everything, and nothing
is reduced: results are those of an unsharded run.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_itl.training.strategy import is_chief


def _workers(strategy: tf.distribute.Strategy | None) -> tuple[int, int]:
    """(this worker's index, number of workers): the chief first, then the workers in TF_CONFIG order."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None \
            or not resolver.task_type:
        return 0, 1
    spec = resolver.cluster_spec().as_dict()
    chiefs = len(spec.get("chief", []))
    count = chiefs + len(spec.get("worker", []))
    if is_chief(strategy):
        return 0, count
    return chiefs + resolver.task_id, count


class WorkerShard:
    """This worker's part of the examples, and the collectives that put the parts back together."""

    def __init__(self, strategy: tf.distribute.Strategy | None = None):
        self.strategy = strategy
        self.index, self.count = _workers(strategy)
        self._all_reduce = tf.function(self._replica_sum) if self.count > 1 else None

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def bounds(self, total: int) -> tuple[int, int]:
        """[start, stop) of this worker's contiguous share of ``total`` examples."""
        return total * self.index // self.count, total * (self.index + 1) // self.count

    def take(self, examples):
        """This worker's shard of ``examples`` (all of them in a single process)."""
        if not self.sharded:
            return examples
        return examples.subset(np.arange(*self.bounds(len(examples))))

    def _replica_sum(self, value: tf.Tensor) -> tf.Tensor:
        # Only each worker's first local replica contributes, so a worker with several devices counts once.
        first_local = self.index * len(self.strategy.extended.worker_devices)

        def contribute(tensor):
            context = tf.distribute.get_replica_context()
            own = tf.cast(tf.equal(context.replica_id_in_sync_group, first_local), tensor.dtype)
            return context.all_reduce(tf.distribute.ReduceOp.SUM, tensor * own)

        return self.strategy.experimental_local_results(self.strategy.run(contribute, args=(value,)))[0]

    def sum(self, value):
        """The sum of every worker's ``value`` (tensor or array), on every worker; ``value`` itself in a single
        process."""
        if not self.sharded:
            return value
        reduced = self._all_reduce(tf.convert_to_tensor(value))
        return reduced.numpy() if isinstance(value, np.ndarray) else reduced

    def gather(self, rows: np.ndarray, total: int) -> np.ndarray:
        """Every worker's ``rows`` (its shard's values, first axis) placed at its shard's indices: the full array."""
        if not self.sharded:
            return rows
        padded = np.zeros((total, *rows.shape[1:]), rows.dtype)
        start, stop = self.bounds(total)
        padded[start:stop] = rows
        return self.sum(padded)  # each index is one worker's value plus zeros: exact

    def from_chief(self, value: np.ndarray) -> np.ndarray:
        """The chief's ``value`` on every worker (numeric or boolean arrays)."""
        if not self.sharded:
            return value
        own = np.asarray(value, np.float64) * (self.index == 0)
        return self.sum(own).astype(np.asarray(value).dtype)


UNSHARDED = WorkerShard()
"""A single process: one shard holding every example, nothing reduced."""
