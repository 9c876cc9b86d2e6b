"""Choose the tf.distribute strategy the training loop runs under.

One loop serves every case: MirroredStrategy over the local devices by default, and
MultiWorkerMirroredStrategy when ``TF_CONFIG`` names more than one worker.
"""
from __future__ import annotations

import functools
import json
import os

import tensorflow as tf

from keras_itl.determinism import make_deterministic
from keras_itl.errors import UserError


def _cluster_workers() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 1
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG is not valid JSON: {error}") from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy for a multi-worker TF_CONFIG, else MirroredStrategy(devices).

    One strategy per device set and process: two strategies over the same devices would reuse the
    same collective-op keys, and their gradient reductions would collide. Listing devices starts
    TensorFlow's runtime, after which its thread pools cannot change: the deterministic settings come
    first, so a run computes the same numbers whichever command created its strategy.
    """
    make_deterministic()
    if _cluster_workers() > 1:
        return _multi_worker_strategy()
    local = devices or [d.name for d in tf.config.list_logical_devices("GPU")] or \
        [d.name for d in tf.config.list_logical_devices("CPU")]
    return _mirrored_strategy(tuple(tf.DeviceSpec.from_string(d).to_string() for d in local))


@functools.cache
def _multi_worker_strategy() -> tf.distribute.Strategy:
    return tf.distribute.MultiWorkerMirroredStrategy()


@functools.cache
def _mirrored_strategy(devices: tuple[str, ...]) -> tf.distribute.Strategy:
    return tf.distribute.MirroredStrategy(list(devices))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True where checkpoints and logs should be written (every single-machine run)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


def check_workers_agree(strategy: tf.distribute.Strategy, value: int, what: str) -> None:
    """Refuse to go on when the workers of a multi-worker run hold different ``value``s.

    Every worker must resume from the same checkpoint, or the replicas' gradients would be averaged
    across different models; workers that cannot see the chief's run directory are caught here.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return

    def gather():
        return tf.distribute.get_replica_context().all_gather(tf.constant([float(value)]), axis=0)

    values = strategy.experimental_local_results(tf.function(lambda: strategy.run(gather))())[0].numpy()
    lowest, highest = values.min(), values.max()
    if highest != lowest:
        raise UserError(f"{what} differs between workers ({lowest:.0f} to {highest:.0f}): every worker must "
                        "see the chief's --output directory (shared storage)")
