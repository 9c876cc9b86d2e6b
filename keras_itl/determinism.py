"""Same seed, same numbers: TensorFlow settings that make a rerun reproduce a run whatever the machine's load.

TensorFlow's CPU kernels split large reductions and matrix products over the intra-op thread pool;
how the partial sums are combined may depend on how many threads are free, so a busier machine can
give results that differ in the last bits - and after ten epochs of training, in the third decimal
of a validation loss. Op determinism makes every kernel pick a deterministic implementation (and
tf.data keep its order), and fixed thread pools remove the dependence on the pool's size. Keras'
random state is seeded per run from ``--seed`` (``keras.utils.set_random_seed``) and data order from
``make_batches``' NumPy permutation, so these settings are the missing part.
"""
from __future__ import annotations

import os

import tensorflow as tf

try:  # oneDNN's on/off state as the runtime decided it (the default depends on the CPU)
    from tensorflow.python.util._pywrap_util_port import IsMklEnabled as _onednn_enabled
except ImportError:  # a TensorFlow without that binding: the documented switch says what was asked for
    def _onednn_enabled() -> bool:
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "0").strip().lower() in ("1", "true")

THREADS_ENV = "KERAS_ITL_THREADS"  # intra-op threads (default 1: reductions in one fixed order)


def make_deterministic() -> dict:
    """Turn on op determinism and, if TensorFlow's runtime has not started yet, fix its thread pools.

    The intra-op pool gets ``$KERAS_ITL_THREADS`` threads (default 1) and the inter-op pool 1. Safe
    to call more than once; returns what was set (``threads`` None when the runtime had already started
    and the pools could no longer change).
    """
    tf.config.experimental.enable_op_determinism()
    threads = int(os.environ.get(THREADS_ENV, "1"))
    try:
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        if tf.config.threading.get_inter_op_parallelism_threads() != 1:
            tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime is initialised: the pools keep their sizes
        return {"op_determinism": True, "threads": None}
    return {"op_determinism": True, "threads": threads}


def kernel_settings() -> dict:
    """What picks the CPU kernels a run computes with and so changes its numbers in the last bits: whether
    oneDNN is on (TensorFlow turns it on by itself on some CPUs, ``TF_ENABLE_ONEDNN_OPTS`` overrides) and
    the intra-op pool size. Part of what a cached result is keyed by."""
    return {"onednn": bool(_onednn_enabled()),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}
