"""What influence scoring costs, measured side by side in one run on the same model and data.

keras-itl scores every training instance as a forward-mode directional derivative g_i . s (one
batched JVP pass) instead of forming per-example gradients, and solves s = (H + damping*I)^-1 g_val
once. This script checks the claims that design rests on:

1. the scoring pass against plain inference (model forward, inference mode, same batches, inside
   tf.function): target scoring time <= 3x inference time;
2. the same scores from per-example gradients (GradientTape.jacobian over one batch, dotted with
   s): target JVP >= 50x faster per instance, and the two must agree;
3. the one-time conjugate-gradient solve (head scope of the same model, and the all scope of a
   small-cnn trained to near-zero loss): seconds and iterations against the scoring pass (no
   target). Influence assumes a model at a minimum: a small-cnn trained for only a few epochs
   has an indefinite full Hessian, and CG refuses it unless the damping is large;
4. peak RSS of the scoring pass for N and 4N training instances, each in a fresh process: target
   growth beyond the data and the per-instance outputs < one per-example gradient of the scope.

Data are scikit-learn's real handwritten digits, stored at the model's input size; the models
have random initial weights (no network here). Steady-state timings are the best of --rounds
after a first, tracing pass; "cold" timings include tf.function tracing, as a user pays it once
per influence run.

    python benchmarks/influence_throughput.py [--arch densenet121] [--train 256] [--rounds 5] [--jacobian-batch 16]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_itl.backbones import build_model  # noqa: E402
from keras_itl.datasets import Split, make_batches  # noqa: E402
from keras_itl.datasets.embedded import load_digits  # noqa: E402
from keras_itl.influence import (  # noqa: E402
    InfluenceConfig,
    SolverError,
    SolverOptions,
    compute_influence,
    select_scope,
)
from keras_itl.influence.derivatives import LossDerivatives  # noqa: E402

NUM_CLASSES = 10
SMALL_CNN_SIZE = 28
MB = 2 ** 20


# ---------------------------------------------------------------- data, models, timing helpers

def _digits(size: int, channels: int) -> Split:
    """All 1,797 digits as uint8 images already at ``size`` x ``size`` x ``channels``."""
    pool = load_digits().train
    images, _ = next(iter(make_batches(pool, len(pool), image_size=size, channels=channels, drop_ids=True)))
    pixels = np.clip(np.rint(images.numpy()), 0, 255).astype(np.uint8)
    return Split(pixels, pool.labels, pool.ids)


def _take(pool: Split, start: int, count: int, name: str) -> Split:
    """``count`` consecutive examples from ``start``, wrapping around the pool, with fresh ids."""
    picked = pool.subset((start + np.arange(count)) % len(pool))
    return Split(picked.images, picked.labels, np.array([f"{name}/{i}" for i in range(count)], dtype=object))


def _train_val(args: argparse.Namespace, size: int, channels: int, count: int) -> tuple[Split, Split]:
    """Training instances from the front of the pool, validation from its back."""
    pool = _digits(size, channels)
    return _take(pool, 0, count, "train"), _take(pool, len(pool) - args.val, args.val, "val")


def _random_vector(size: int, seed: int) -> tf.Tensor:
    """A fixed direction s; the cost of g_i . s does not depend on its values."""
    return tf.constant(np.random.default_rng(seed).standard_normal(size), tf.float32)


def _timed(fn) -> tuple[float, object]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _model(args: argparse.Namespace) -> keras.Model:
    keras.utils.set_random_seed(args.seed)
    return build_model(args.arch, NUM_CLASSES, image_size=args.image_size, channels=3)


def _scoring_pass(derivatives: LossDerivatives, batches, vector: tf.Tensor,
                  after_batch=lambda: None) -> tuple[np.ndarray, ...]:
    """Per-instance (losses, scores, predicted classes), collected the way compute_influence does."""
    outputs = []
    for batch_outputs in derivatives.directional_derivatives(batches, vector):
        outputs.append(batch_outputs)
        after_batch()
    return tuple(np.concatenate(parts) for parts in zip(*outputs))


# ---------------------------------------------------------------- 1 and 2. scoring, inference, per-example gradients

def _jacobian_scorer(model: keras.Model, derivatives: LossDerivatives, vector: tf.Tensor):
    """g_i . s from materialised per-example gradients of the scope (the approach the JVP replaces)."""
    variables = derivatives.scope.tf_variables
    directions = [tf.reshape(part, [-1]) for part in derivatives.scope.unflatten(vector)]

    @tf.function
    def scores(images, labels):
        with tf.GradientTape() as tape:
            tape.watch(variables)
            probs = model(images, training=False)
            losses = keras.losses.sparse_categorical_crossentropy(labels, probs)
        jacobians = tape.jacobian(losses, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        count = tf.shape(images)[0]
        return tf.add_n([tf.linalg.matvec(tf.reshape(jacobian, [count, -1]), direction)
                         for jacobian, direction in zip(jacobians, directions)])

    return scores


def _pass_timings(model: keras.Model, derivatives: LossDerivatives, batches: list, vector: tf.Tensor,
                  jacobian_size: int, rounds: int) -> dict:
    """First-call and best-of-rounds seconds of an inference pass, a scoring pass and the Jacobian scorer on
    the first ``jacobian_size`` instances, interleaved so that load from other processes hits all three alike;
    and how far the JVP and Jacobian scores of those instances differ."""
    forward = tf.function(lambda images: model(images, training=False))
    few_images, few_labels = (part[:jacobian_size] for part in batches[0])
    jacobian = _jacobian_scorer(model, derivatives, vector)

    def inference() -> None:
        for images, _ in batches:
            forward(images).numpy()

    passes = {"inference": inference,
              "scoring": lambda: _scoring_pass(derivatives, batches, vector)[1],
              "jacobian": lambda: jacobian(few_images, few_labels).numpy()}
    first, results = {}, {}
    for name, run in passes.items():
        first[name], results[name] = _timed(run)
    best = {name: float("inf") for name in passes}
    for _ in range(rounds):
        for name, run in passes.items():
            best[name] = min(best[name], _timed(run)[0])
    reference = results["jacobian"]
    difference = np.max(np.abs(results["scoring"][:jacobian_size] - reference)) / np.max(np.abs(reference))
    return {"first": first, "best": best, "difference": float(difference)}


# ---------------------------------------------------------------- 3. the one-time solve

def _fitted_small_cnn(args: argparse.Namespace, train: Split) -> tuple[keras.Model, float]:
    """A small-cnn trained on ``train`` for --cnn-epochs, and its final training loss."""
    keras.utils.set_random_seed(args.seed)
    model = build_model("small-cnn", NUM_CLASSES, image_size=SMALL_CNN_SIZE, channels=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    batches = make_batches(train, args.batch_size, shuffle_seed=args.seed, drop_ids=True)
    history = model.fit(batches, epochs=args.cnn_epochs, shuffle=False, verbose=0)  # make_batches shuffled
    return model, history.history["loss"][-1]


def _hvp_seconds(model: keras.Model, scope: str, train: Split, batch_size: int, rounds: int) -> dict:
    """Seconds of one Hessian-vector product over the training split: first call (tracing) and best later one."""
    derivatives = LossDerivatives(model, select_scope(model, scope), batch_size)
    batches = list(derivatives.batches(train))
    vector = _random_vector(derivatives.scope.num_parameters, 0)
    first = _timed(lambda: derivatives.hvp(batches, len(train), vector).numpy())[0]
    steady = min(_timed(lambda: derivatives.hvp(batches, len(train), vector).numpy())[0] for _ in range(rounds))
    return {"first": first, "steady": steady}


def _solve(label: str, model: keras.Model, train: Split, val: Split, scope: str, damping: float,
           args: argparse.Namespace) -> dict:
    """A cold compute_influence run with CG, plus the steady cost of the Hessian-vector products it needs."""
    config = InfluenceConfig(scope=scope, solver=SolverOptions(solver="cg", damping=damping),
                             batch_size=args.batch_size)
    row = {"label": label, "scope": scope, "damping": damping}
    try:
        result = compute_influence(model, train, val, config, verbose=False)
    except SolverError as error:
        return {**row, "error": str(error)}
    hvp = _hvp_seconds(model, scope, train, args.batch_size, args.rounds)
    return {**row, "parameters": result.num_parameters, "iterations": result.solver.iterations,
            "residual": result.solver.residual, **result.timings, "hvp": hvp}


def _print_solve(row: dict, train_count: int) -> None:
    heading = f"  {row['label']}, {row['scope']} scope, damping {row['damping']:g}, N={train_count}"
    if "error" in row:
        print(f"{heading}: CG refused: {row['error']}")
        return
    products = row["iterations"] + 1  # the solver checks its residual with one more product
    steady = products * row["hvp"]["steady"]
    print(f"{heading} ({row['parameters']:,} parameters): {row['iterations']} CG iterations, "
          f"relative residual {row['residual']:.1e}")
    print(f"    cold, as compute_influence times it: val gradient {row['val_gradient']:.1f} s, "
          f"solve {row['solve']:.1f} s, scoring {row['scores']:.1f} s -> solve = {row['solve'] / row['scores']:.1f}x "
          "the scoring pass")
    print(f"    one Hessian-vector product over N: {row['hvp']['steady']:.2f} s warm, {row['hvp']['first']:.1f} s "
          f"first call; {products} products = {steady:.1f} s warm, so the other "
          f"~{max(row['solve'] - steady, 0):.0f} s of the cold solve is one-time tracing")


# ---------------------------------------------------------------- 4. memory, one fresh process per N

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / MB


def _memory_child(args: argparse.Namespace) -> None:
    """In a fresh process: build, load N instances, one streamed scoring pass; print RSS as JSON.

    Peak RSS (the target) includes the one-time tracing of the JVP graph. RSS sampled after every
    batch is printed too: it shows what the pass holds between batches, though it also includes the
    allocators' warm-up, which levels off only after a dozen or so batches.
    """
    model = _model(args)
    train, _ = _train_val(args, args.image_size, 3, args.memory_child)
    derivatives = LossDerivatives(model, select_scope(model, args.scope), args.batch_size)
    vector = _random_vector(derivatives.scope.num_parameters, args.seed)
    baseline = _current_rss_mb()
    samples: list[float] = []
    outputs = _scoring_pass(derivatives, derivatives.batches(train), vector, lambda: samples.append(_current_rss_mb()))
    data_bytes = train.images.nbytes + train.labels.nbytes + sum(sys.getsizeof(i) for i in train.ids)
    print(json.dumps({"n": len(train), "baseline_mb": baseline, "between_mb": max(samples), "peak_mb": _peak_rss_mb(),
                      "data_mb": data_bytes / MB, "outputs_mb": sum(part.nbytes for part in outputs) / MB}))


def _memory_run(args: argparse.Namespace, count: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", str(count), "--arch", args.arch,
               "--image-size", str(args.image_size), "--scope", args.scope, "--batch-size", str(args.batch_size),
               "--val", str(args.val), "--seed", str(args.seed)]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"memory run for N={count} failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def _memory(args: argparse.Namespace) -> dict:
    """RSS at N and factor*N, and how much of its growth the data and outputs do not explain."""
    small, large = (_memory_run(args, count) for count in (args.train, args.train * args.memory_factor))
    print(f"  {'N':>6} {'data MB':>8} {'outputs MB':>11} {'baseline MB':>12} {'max between batches MB':>23} "
          f"{'peak MB':>8}")
    for run in (small, large):
        print(f"  {run['n']:>6} {run['data_mb']:>8.2f} {run['outputs_mb']:>11.3f} {run['baseline_mb']:>12.0f} "
              f"{run['between_mb']:>23.0f} {run['peak_mb']:>8.0f}")
    explained = (large["data_mb"] - small["data_mb"]) + (large["outputs_mb"] - small["outputs_mb"])
    grown = large["peak_mb"] - small["peak_mb"]
    return {"ratio": large["peak_mb"] / small["peak_mb"], "grown_mb": grown, "explained_mb": explained,
            "excess_mb": grown - explained, "between_mb": large["between_mb"] - small["between_mb"],
            "large": large["n"]}


# ---------------------------------------------------------------- driver

def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="densenet121", help="model of sections 1, 2, 4 and the head solve")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--scope", default="all", help="scope of the scoring and Jacobian comparisons")
    parser.add_argument("--train", type=int, default=256, help="N, the training instances scored")
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--jacobian-batch", type=int, default=16, help="instances in the one per-example Jacobian")
    parser.add_argument("--rounds", type=int, default=5, help="timed repetitions after the tracing pass")
    parser.add_argument("--damping", type=float, default=0.01, help="CG damping of both solves")
    parser.add_argument("--cnn-epochs", type=int, default=30, help="training of the small-cnn before its solve")
    parser.add_argument("--memory-factor", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def _verdict(met: bool) -> str:
    return "yes" if met else "NO"


def main() -> None:
    args = _parse()
    if args.memory_child:
        _memory_child(args)
        return
    started = time.perf_counter()
    model = _model(args)
    train, val = _train_val(args, args.image_size, 3, args.train)
    derivatives = LossDerivatives(model, select_scope(model, args.scope), args.batch_size)
    scope_size = derivatives.scope.num_parameters
    vector = _random_vector(scope_size, args.seed)
    batches = list(derivatives.batches(train))  # materialised, so both passes time the model alone
    print(f"{args.arch} {args.image_size}x{args.image_size}, scope {args.scope} ({scope_size:,} parameters), "
          f"N={args.train} digits, batch {args.batch_size}, best of {args.rounds} rounds")

    print("\n1. scoring pass (batched JVP) against inference, same batches")
    timings = _pass_timings(model, derivatives, batches, vector, args.jacobian_batch, args.rounds)
    first, best = timings["first"], timings["best"]
    scoring_ratio = best["scoring"] / best["inference"]
    for name in ("inference", "scoring"):
        print(f"  {name:<9} {args.train / best[name]:8.1f} instances/s ({best[name]:.2f} s; "
              f"first pass, with tracing, {first[name]:.1f} s)")
    print(f"  scoring / inference time: {scoring_ratio:.2f} (target <= 3)")

    print(f"\n2. JVP against per-example gradients (GradientTape.jacobian, {args.jacobian_batch} instances)")
    jvp_per_instance = best["scoring"] / args.train
    jacobian_per_instance = best["jacobian"] / args.jacobian_batch
    speedup = jacobian_per_instance / jvp_per_instance
    print(f"  per-example Jacobian: {jacobian_per_instance * 1e3:.1f} ms/instance (first call, with tracing: "
          f"{first['jacobian']:.1f} s for the batch)")
    print(f"  JVP scoring pass:     {jvp_per_instance * 1e3:.1f} ms/instance (batch {args.batch_size})")
    print(f"  JVP speedup: {speedup:.1f}x (target >= 50); counting the Jacobian's first call instead: "
          f"{first['jacobian'] / args.jacobian_batch / jvp_per_instance:.0f}x")
    print(f"  max |JVP - Jacobian| / max |Jacobian| = {timings['difference']:.1e}")

    print("\n3. one-time CG solve against the scoring pass")
    head = _solve(args.arch, model, train, val, "head", args.damping, args)
    _print_solve(head, args.train)
    cnn_train, cnn_val = _train_val(args, SMALL_CNN_SIZE, 1, args.train)
    cnn_model, cnn_loss = _fitted_small_cnn(args, cnn_train)
    cnn = _solve(f"small-cnn ({args.cnn_epochs} epochs to training loss {cnn_loss:.1e})", cnn_model, cnn_train,
                 cnn_val, "all", args.damping, args)
    _print_solve(cnn, args.train)

    print(f"\n4. peak RSS of the scoring pass, fresh process per N ({args.arch}, {args.scope} scope); baseline = "
          "after model build and data load")
    memory = _memory(args)
    gradient_mb = scope_size * 4 / MB
    print(f"  peak {memory['large']} / {args.train}: {memory['ratio']:.3f}; peak grew {memory['grown_mb']:.1f} MB, "
          f"data and outputs {memory['explained_mb']:.1f} MB: excess {memory['excess_mb']:.1f} MB (target < "
          f"{gradient_mb:.1f} MB, one per-example gradient of the scope)")
    print(f"  RSS between batches grew {memory['between_mb']:.1f} MB (no target: includes allocator warm-up)")

    def solve_cell(row: dict) -> str:
        if "error" in row:
            return "CG refused"
        return f"{row['solve']:.1f} s, {row['iterations']} it, {row['solve'] / row['scores']:.1f}x scoring"

    table = [
        ("scoring / inference time", f"{scoring_ratio:.2f}", "<= 3", _verdict(scoring_ratio <= 3)),
        ("JVP speedup over per-example Jacobian", f"{speedup:.1f}x", ">= 50", _verdict(speedup >= 50)),
        ("JVP vs Jacobian max relative difference", f"{timings['difference']:.1e}", "<= 1e-3",
         _verdict(timings["difference"] <= 1e-3)),
        (f"CG solve, {args.arch} head (cold)", solve_cell(head), "-", "-"),
        ("CG solve, small-cnn all (cold)", solve_cell(cnn), "-", "-"),
        (f"peak RSS {memory['large']} / {args.train}", f"{memory['ratio']:.3f}", "-", "-"),
        ("peak RSS growth beyond data + outputs", f"{memory['excess_mb']:.1f} MB", f"< {gradient_mb:.1f} MB",
         _verdict(memory["excess_mb"] < gradient_mb)),
    ]
    print(f"\nsummary ({time.perf_counter() - started:.0f} s)")
    print(f"  {'measure':<42} {'measured':<34} {'target':<12} met")
    for name, measured, target, met in table:
        print(f"  {name:<42} {measured:<34} {target:<12} {met}")


if __name__ == "__main__":
    main()
