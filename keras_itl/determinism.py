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
