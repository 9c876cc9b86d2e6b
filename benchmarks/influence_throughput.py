"""What influence costs, measured side by side in one run on the same models and data.

keras-itl computes the frozen part of the model once (head and top:K scopes), solves
s = (H + damping*I)^-1 g_val on those cached activations, and scores every training instance as a
forward-mode directional derivative g_i . s. This script checks the claims that design rests on:

1. end to end (frozen features + solve + scores, as ``compute_influence`` runs them, tracing
   included) against one plain inference pass over train+val (model forward in inference mode
   inside tf.function, same batches, its tracing included; the mean of one pass before and one
   after the influence runs, each on a fresh copy of the model). The ratio to the second,
   already-traced inference pass is printed too:
   - head scope: target <= 2x (``head_influence_vs_inference``);
   - top:K with K covering the last block (ResNet50 conv5_block3, DenseNet121 conv5_block16):
     target <= 4x (``top_influence_vs_inference``);
2. N -> 4N training instances, head scope end to end, each in a fresh process: time x <= 4.4
   (``scaling_time_ratio``), peak RSS while influence runs (sampled every 5 ms), excluding the
   cached features, x <= 1.3 (``scaling_rss_ratio``);
3. the scoring pass (batched JVP, scope all) against inference, best of --rounds after tracing:
   target <= 3x (``scoring_vs_inference``);
4. the same scores from per-example gradients (GradientTape.jacobian over --jacobian-batch
   instances): the JVP must be >= 50x faster per instance (``jvp_speedup_vs_jacobian``) and agree.

Solves use keras-itl's default curvature, the Gauss-Newton matrix (``--hessian``; on the head it is
the exact Hessian), head solves damping 0.01 (``--damping``) and top:K solves keras-itl's default
0.1 (``--top-damping``). oneDNN is on unless TF_ENABLE_ONEDNN_OPTS says otherwise (the summary's
``tf_onednn``): it makes convolution gradients - top:K's products, and the per-example Jacobians
of section 4 - far faster on CPUs where TensorFlow leaves it off.

Data are scikit-learn's real handwritten digits stored at the model's input size (wrapped around
when N exceeds the 1,797 of them, with fresh ids); models have random initial weights (no
network here). The machine is shared: numbers move with its load.

    python benchmarks/influence_throughput.py [--arch resnet50 densenet121] [--train 2000] [--val 500]
        [--sections e2e scaling jvp] [--scaling-factor 4] [--jvp-train 128] [--rounds 3]

Sections 1 and 2 use only ``compute_influence``, so they also run on older keras-itl versions
(``--sections e2e`` there measures the before figure).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns oneDNN on by default only on some (newer) x86 CPUs. Without it, this machine's (AVX2) convolution
# input gradients - every backward pass of top:K and all - are ~200x slower (Conv2DBackpropInput, 3x3 512->512 on
# 512 examples at 1x1: 6.2 s against 0.03 s). The summary records the setting; TF_ENABLE_ONEDNN_OPTS=0 measures without.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras
import numpy as np
import tensorflow as tf

from keras_itl.backbones import build_model
from keras_itl.datasets import Split, make_batches
from keras_itl.datasets.embedded import load_digits
from keras_itl.influence import (
    InfluenceConfig,
    SolverOptions,
    compute_influence,
    select_scope,
)

NUM_CLASSES = 10
MB = 2 ** 20
LAST_BLOCK_K = {"resnet50": 7, "densenet121": 6, "vgg16": 4, "small-cnn": 3}  # top:K covering the last block
TARGETS = {"head_influence_vs_inference": 2.0, "top_influence_vs_inference": 4.0, "scaling_time_ratio": 4.4,
           "scaling_rss_ratio": 1.3, "scoring_vs_inference": 3.0}


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


def _train_val(args: argparse.Namespace, count: int) -> tuple[Split, Split]:
    """Training instances from the front of the pool, validation from its back."""
    pool = _digits(args.image_size, 3)
    return _take(pool, 0, count, "train"), _take(pool, len(pool) - args.val, args.val, "val")


def _timed(fn) -> tuple[float, object]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _model(arch: str, args: argparse.Namespace) -> keras.Model:
    keras.utils.set_random_seed(args.seed)
    return build_model(arch, NUM_CLASSES, image_size=args.image_size, channels=3)


def _config(scope: str, args: argparse.Namespace) -> InfluenceConfig:
    knobs = {"hessian": args.hessian} if "hessian" in SolverOptions.__dataclass_fields__ else {}  # older: exact
    damping = args.damping if scope == "head" else args.top_damping
    return InfluenceConfig(scope=scope, batch_size=args.batch_size,
                           solver=SolverOptions(solver="cg", damping=damping, damping_retries=3, **knobs))


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / MB


def _peak_rss_during(fn) -> tuple[float, object]:
    """(peak RSS in MB sampled every 5 ms while ``fn`` runs, its result). The process-wide peak
    (ru_maxrss) is no use here: loading and resizing the digits peaks higher than influence does."""
    peak, done = [_current_rss_mb()], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _current_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _current_rss_mb()), result


# ---------------------------------------------------------------- 1. end to end against inference

def _inference_seconds(model: keras.Model, splits: list[Split], batch_size: int) -> tuple[float, float]:
    """(first pass with tracing, second pass) of plain inference over ``splits``."""
    forward = tf.function(lambda images: model(images, training=False))
    _, size, _, channels = model.input_shape

    def run() -> None:
        for split in splits:
            for images, _ in make_batches(split, batch_size, image_size=size, channels=channels, drop_ids=True):
                forward(images).numpy()

    return _timed(run)[0], _timed(run)[0]


def _influence_row(model: keras.Model, train: Split, val: Split, scope: str, args: argparse.Namespace) -> dict:
    seconds, result = _timed(lambda: compute_influence(model, train, val, _config(scope, args),
                                                       verbose=args.verbose))
    return {"scope": scope, "seconds": seconds, "parameters": result.num_parameters,
            "iterations": result.solver.iterations, "damping": result.solver.damping,
            "hessian": getattr(result.solver, "hessian", "exact"),  # older versions solved with the exact Hessian
            "preconditioner": getattr(result.solver, "preconditioner", None),
            "residual": result.solver.residual, "timings": result.timings,
            "frozen": getattr(result, "frozen", None)}  # older versions had no frozen part


def _end_to_end(arch: str, args: argparse.Namespace) -> dict:
    """Influence runs between two inference measurements (each on a freshly built, untraced copy of the
    model), so that load drifting over the run hits the numerator and the denominator alike."""
    train, val = _train_val(args, args.train)

    def inference() -> tuple[float, float]:
        return _inference_seconds(_model(arch, args), [train, val], args.batch_size)

    before = inference()
    model = _model(arch, args)
    rows = {}
    for name, scope in (("head", "head"), ("top", f"top:{args.top_k or LAST_BLOCK_K[arch]}")):
        if name in args.scopes:
            rows[name] = _influence_row(model, train, val, scope, args)
    after = inference()
    inference_cold, inference_warm = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    print(f"  {arch}: inference over {len(train)} + {len(val)}: first pass (with tracing) {before[0]:.1f} s before "
          f"and {after[0]:.1f} s after the influence runs, second pass {before[1]:.1f} and {after[1]:.1f} s",
          flush=True)
    for row in rows.values():
        row["vs_inference"] = row["seconds"] / inference_cold
        row["vs_warm_inference"] = row["seconds"] / inference_warm
        cut = (row["frozen"] or {}).get("after_layer")
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in row["timings"].items())
        print(f"  {arch} {row['scope']} ({row['parameters']:,} parameters, cut after {cut}): {row['seconds']:.1f} s = "
              f"{row['vs_inference']:.2f}x inference ({row['vs_warm_inference']:.2f}x its second pass); "
              f"{row['iterations']} CG iterations at damping {row['damping']:g}; {stages}", flush=True)
    return {"inference_cold": inference_cold, "inference_warm": inference_warm, "inference_before": before,
            "inference_after": after, **rows}


# ---------------------------------------------------------------- 2. N -> factor*N, fresh process each

def _scaling_child(args: argparse.Namespace) -> None:
    """In a fresh process: head-scope influence end to end on N instances; print seconds and RSS as JSON."""
    arch = args.arch[0]
    model = _model(arch, args)
    train, val = _train_val(args, args.scaling_child)
    peak_mb, row = _peak_rss_during(lambda: _influence_row(model, train, val, "head", args))
    cache_mb = (row["frozen"] or {}).get("megabytes", 0.0)
    data_mb = (train.images.nbytes + val.images.nbytes) / MB
    print(json.dumps({"n": len(train), "seconds": row["seconds"], "peak_mb": peak_mb, "cache_mb": cache_mb,
                      "data_mb": data_mb,
                      "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _scaling_run(arch: str, count: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--scaling-child", str(count), "--arch", arch,
               "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--val", str(args.val),
               "--seed", str(args.seed), "--damping", str(args.damping), "--hessian", args.hessian]
    finished = subprocess.run(command, check=False, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"scaling run for N={count} failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def _scaling(arch: str, args: argparse.Namespace) -> dict:
    small, large = (_scaling_run(arch, count, args) for count in (args.train, args.train * args.scaling_factor))
    for run in (small, large):
        print(f"  {arch} N={run['n']}: {run['seconds']:.1f} s, peak RSS {run['peak_mb']:.0f} MB of which cached "
              f"features {run['cache_mb']:.1f} MB (images {run['data_mb']:.1f} MB)", flush=True)
    return {"time_ratio": large["seconds"] / small["seconds"],
            "rss_ratio": (large["peak_mb"] - large["cache_mb"]) / (small["peak_mb"] - small["cache_mb"]),
            "small": small, "large": large}


# --------------------------------------------------------------- 3 and 4. JVP scoring, inference, per-example gradients

def _jacobian_scorer(model: keras.Model, scope, vector: tf.Tensor):
    """g_i . s from materialised per-example gradients of the scope (the approach the JVP replaces)."""
    variables = scope.tf_variables
    directions = [tf.reshape(part, [-1]) for part in scope.unflatten(vector)]

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


def _jvp_section(arch: str, args: argparse.Namespace) -> dict:
    """First-call and best-of-rounds seconds of inference, JVP scoring (scope all) and the Jacobian scorer,
    interleaved so that load from other processes hits all three alike."""
    from keras_itl.influence.derivatives import LossDerivatives
    from keras_itl.influence.features import FeatureSet

    model = _model(arch, args)
    train, _ = _train_val(args, args.jvp_train)
    scope = select_scope(model, "all")
    derivatives = LossDerivatives(model, scope, args.batch_size)
    vector = tf.constant(np.random.default_rng(args.seed).standard_normal(scope.num_parameters), tf.float32)
    examples = FeatureSet(train.images.astype(np.float32), train.labels, train.ids)  # same batches for all passes
    forward = tf.function(lambda images: model(images, training=False))
    few_images, few_labels = (tf.constant(part[:args.jacobian_batch]) for part in (examples.features, train.labels))
    jacobian = _jacobian_scorer(model, scope, vector)

    def inference() -> None:
        for images, _ in examples.batches(args.batch_size):
            forward(images).numpy()

    def scoring() -> np.ndarray:
        return np.concatenate([part[1] for part in derivatives.directional_derivatives(examples, vector)])

    passes = {"inference": inference, "scoring": scoring, "jacobian": lambda: jacobian(few_images, few_labels).numpy()}
    first, results = {}, {}
    for name, run in passes.items():
        first[name], results[name] = _timed(run)
    best = {name: float("inf") for name in passes}
    for _ in range(args.rounds):
        for name, run in passes.items():
            best[name] = min(best[name], _timed(run)[0])
    reference = results["jacobian"]
    difference = float(np.max(np.abs(results["scoring"][:args.jacobian_batch] - reference)) / np.max(np.abs(reference)))
    speedup = (best["jacobian"] / args.jacobian_batch) / (best["scoring"] / args.jvp_train)
    ratio = best["scoring"] / best["inference"]
    print(f"  {arch} scope all ({scope.num_parameters:,} parameters), N={args.jvp_train}: inference "
          f"{best['inference']:.2f} s, scoring {best['scoring']:.2f} s -> {ratio:.2f}x; per-example Jacobian "
          f"{best['jacobian'] / args.jacobian_batch * 1e3:.0f} ms/instance vs JVP "
          f"{best['scoring'] / args.jvp_train * 1e3:.1f} ms -> {speedup:.0f}x; max relative difference "
          f"{difference:.1e}", flush=True)
    return {"scoring_vs_inference": ratio, "jvp_speedup": speedup, "jvp_difference": difference,
            "first_seconds": first, "best_seconds": best}


# ---------------------------------------------------------------- driver

def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["resnet50", "densenet121"])
    parser.add_argument("--sections", nargs="+", default=["e2e", "scaling", "jvp"],
                        choices=["e2e", "scaling", "jvp"])
    parser.add_argument("--scopes", nargs="+", default=["head", "top"], choices=["head", "top"],
                        help="end-to-end scopes: head, and top:K covering the last block")
    parser.add_argument("--top-k", type=int, default=None, help="K of the top:K run [default: the last block]")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train", type=int, default=2000, help="N, the training instances")
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--damping", type=float, default=0.01, help="damping of the head solves")
    parser.add_argument("--top-damping", type=float, default=0.1,
                        help="damping of the top:K solves: keras-itl's default (at 0.01 the Gauss-Newton solve on "
                             "ResNet50's last block stalled after 78 iterations and was retried at 0.1)")
    parser.add_argument("--hessian", default="gauss-newton", choices=["exact", "gauss-newton"],
                        help="curvature of the solves (older keras-itl versions ignore it: exact)")
    parser.add_argument("--scaling-factor", type=int, default=4)
    parser.add_argument("--scaling-arch", nargs="+", default=None, help="archs of section 2 [default: --arch]")
    parser.add_argument("--jvp-train", type=int, default=128, help="instances of the scoring/Jacobian comparison")
    parser.add_argument("--jacobian-batch", type=int, default=16, help="instances in the one per-example Jacobian")
    parser.add_argument("--rounds", type=int, default=3, help="timed repetitions after the tracing pass (section 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="compute_influence's progress lines")
    parser.add_argument("--scaling-child", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def _summary(per_arch: dict) -> dict:
    """Top-level figures (the worst architecture's), the targets and whether each is met, per-arch details."""
    def worst(pick) -> float | None:
        values = [value for figures in per_arch.values() if (value := pick(figures)) is not None]
        return max(values) if values else None

    figures = {
        "head_influence_vs_inference": worst(lambda f: f.get("e2e", {}).get("head", {}).get("vs_inference")),
        "top_influence_vs_inference": worst(lambda f: f.get("e2e", {}).get("top", {}).get("vs_inference")),
        "scaling_time_ratio": worst(lambda f: f.get("scaling", {}).get("time_ratio")),
        "scaling_rss_ratio": worst(lambda f: f.get("scaling", {}).get("rss_ratio")),
        "scoring_vs_inference": worst(lambda f: f.get("jvp", {}).get("scoring_vs_inference")),
    }
    speedups = [f["jvp"]["jvp_speedup"] for f in per_arch.values() if "jvp" in f]
    figures["jvp_speedup_vs_jacobian"] = min(speedups) if speedups else None
    met = {key: value <= TARGETS[key] for key, value in figures.items() if key in TARGETS and value is not None}
    if figures["jvp_speedup_vs_jacobian"] is not None:
        met["jvp_speedup_vs_jacobian"] = figures["jvp_speedup_vs_jacobian"] >= 50
    return {**figures, "targets": {**TARGETS, "jvp_speedup_vs_jacobian": ">= 50"}, "met": met,
            "tf_onednn": os.environ["TF_ENABLE_ONEDNN_OPTS"], "per_arch": per_arch}


def main() -> None:
    args = _parse()
    if args.scaling_child:
        _scaling_child(args)
        return
    started = time.perf_counter()
    per_arch: dict[str, dict] = {arch: {} for arch in args.arch}
    print(f"influence throughput: {', '.join(args.arch)} at {args.image_size}x{args.image_size}, N={args.train} "
          f"train + {args.val} val, batch {args.batch_size}, weights=None", flush=True)
    if "e2e" in args.sections:
        print("\n1. influence end to end (features + solve + scores) against one inference pass over train+val")
        for arch in args.arch:
            per_arch[arch]["e2e"] = _end_to_end(arch, args)
    if "scaling" in args.sections:
        print(f"\n2. head influence at N and {args.scaling_factor}N, fresh process each")
        for arch in args.scaling_arch or args.arch:
            per_arch.setdefault(arch, {})["scaling"] = _scaling(arch, args)
    if "jvp" in args.sections:
        print("\n3-4. scoring pass (batched JVP) against inference and per-example Jacobians")
        for arch in args.arch:
            per_arch[arch]["jvp"] = _jvp_section(arch, args)
    summary = _summary(per_arch)
    print(f"\nsummary ({time.perf_counter() - started:.0f} s; shared machine, numbers move with its load)")
    for key, value in summary.items():
        if key in summary["targets"] and value is not None:
            print(f"  {key:<30} {value:8.2f}   target {summary['targets'][key]}   "
                  f"{'met' if summary['met'][key] else 'NOT met'}")
    print(json.dumps(summary, default=float))


if __name__ == "__main__":
    main()
