"""Test error of `keras-itl train` at its defaults, as a user types it, over directions, label noise, seeds and methods.

Every run is one `keras-itl train` process with no preset and no tuned flag (no --epochs, no
--fine-tune-lr-factor, ...): only the direction's source, target and ``--max-train-examples 300``, the
cell's label noise (``KIND:RATE`` adds ``--label-noise RATE --noise-kind KIND``; ``none`` adds nothing),
``--seed``, and the method:

- ``model``: ``--method model``;
- ``instance``: ``--method instance`` (its default policy, auto);
- ``loss``: ``--method instance --policy loss:P``, P the cell's noise rate (0.1 without noise);
- ``cleanlab``: ``--method instance --policy cleanlab``.

Directions: ``mnist-5k-to-digits`` (``--source mnist-5k --target digits``) and ``digits-to-folder``
(``--source digits --target folder:DIR``, DIR 1,000 mnist-5k images, 100 per class, written once as PNG
files into the work directory, one sub-folder per digit, chosen with a fixed seed). ``--onednn`` runs each
cell with TF_ENABLE_ONEDNN_OPTS=1 (on), =0 (off) or both, each its own cell.

Runs go ``--jobs`` at a time (default 2, one per core of the 2-core machine it was written for; each run
uses one TensorFlow thread) into ``WORKDIR/runs/<direction>/<noise>/seed<N>/<onednn>/<method>`` (a
noise's ``:`` becomes ``-`` there), with KERAS_ITL_CACHE=WORKDIR/cache unless it is set already, so
the runs share their pretrained sources. A source is pretrained per seed and oneDNN setting (both are
part of its cache key), so the first run of each direction, seed and oneDNN setting (first noise,
``model`` if it is run) goes first, in a warm-up phase, and pretrains it. Wall time is measured around
each process; the time ratio leaves out the warm-up runs and any run during which a new source model
appeared in the cache (it may have pretrained, or waited for one that did).

The matrix resumes: a run whose ``run.json`` exists is read back, not rerun (its wall time from the
``matrix_run.json`` written beside it); a run directory without ``run.json`` (an interrupted run) is
deleted and run again from the start. A failing run is reported (command, end of its stderr) and the
matrix goes on; the summary counts it in ``failed_runs``.

Printed: one Markdown table per direction (rows noise x oneDNN, columns methods: test error % mean ±
std over seeds, the mean dropped count in parentheses for the instance-method rows, and the best
method), then, as the last line, one JSON object with the targets (each mean over seeds, a cell
being direction x noise x oneDNN):

- ``noisy_cells_instance_best_or_within_0_5``: share of the noisy cells where ``instance`` is the
  best method or within 0.5 points of it; target >= 0.8;
- ``cells_instance_worse_than_model_by_0_5``: cells where ``instance`` is more than 0.5 points worse
  than ``model``; target 0;
- ``clean_drop_fraction_max``: largest dropped / training-set size of an ``instance`` run without
  noise; target <= 0.05;
- ``instance_vs_model_time``: mean wall time of the ``instance`` runs over the ``model`` runs'; target <= 1.5.

A figure that cannot be measured with the chosen subset is null, and so is its entry in ``targets_met``.
The tables and the JSON (with every run's command, seconds, error, dropped count and label-noise
detection) are also written to WORKDIR/defaults_matrix.md and WORKDIR/defaults_matrix.json.

    python benchmarks/defaults_matrix.py
    python benchmarks/defaults_matrix.py --directions digits-to-folder --noise pair:0.4 --seeds 0 --onednn off \\
        --methods model,instance --workdir /tmp/dm-smoke
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from keras_itl import registry

DIRECTIONS = ("mnist-5k-to-digits", "digits-to-folder")
METHODS = ("model", "instance", "loss", "cleanlab")
INSTANCE_METHODS = ("instance", "loss", "cleanlab")  # the rows run with --method instance
ONEDNN_SETTINGS = {"on": ("on",), "off": ("off",), "both": ("on", "off")}
MAX_TRAIN_EXAMPLES = 300
CLEAN_LOSS_FRACTION = 0.1  # --policy loss:P without label noise
FOLDER_PER_CLASS = 100
FOLDER_SEED = 0
FOLDER_NAME = "mnist-5k-folder"
RUN_FILE = "run.json"  # keras_itl.run_record.RUN_FILE, not imported: it loads TensorFlow
SIDECAR = "matrix_run.json"  # this benchmark's own note beside a run: wall time, command, warm-up
WITHIN_POINTS = 0.5
ROUNDING = 1e-9  # 11.5 is within 0.5 of 11.0 although 100 * 0.115 is 11.500000000000002
STDERR_TAIL = 15
TARGETS = {"noisy_cells_instance_best_or_within_0_5": ">= 0.8", "cells_instance_worse_than_model_by_0_5": "== 0",
           "clean_drop_fraction_max": "<= 0.05", "instance_vs_model_time": "<= 1.5"}


@dataclass(frozen=True)
class Noise:
    """One label-noise setting: ``none``, or ``kind`` flipping a ``rate`` fraction of the training labels."""

    kind: str | None
    rate: float

    @property
    def label(self) -> str:
        """``none`` or ``KIND:RATE``, the rate as short as it prints (0.2, not 0.20)."""
        return "none" if self.kind is None else f"{self.kind}:{self.rate:g}"

    def flags(self) -> list[str]:
        """The `keras-itl train` flags of this setting (none for ``none``)."""
        return [] if self.kind is None else ["--label-noise", f"{self.rate:g}", "--noise-kind", self.kind]


@dataclass(frozen=True)
class Run:
    """One `keras-itl train` process of the matrix."""

    direction: str
    noise: Noise
    seed: int
    onednn: str
    method: str

    def output(self, workdir: Path) -> Path:
        """The run's --output directory."""
        return (workdir / "runs" / self.direction / self.noise.label.replace(":", "-") / f"seed{self.seed}"
                / self.onednn / self.method)

    def method_flags(self) -> list[str]:
        """--method (and --policy) of the row."""
        if self.method == "model":
            return ["--method", "model"]
        if self.method == "loss":
            return ["--method", "instance", "--policy", f"loss:{self.noise.rate or CLEAN_LOSS_FRACTION:g}"]
        if self.method == "cleanlab":
            return ["--method", "instance", "--policy", "cleanlab"]
        return ["--method", "instance"]


# ------------------------------------------------------------------------------------------ arguments
def _comma_list(text: str) -> list[str]:
    """Non-empty, distinct comma-separated items."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}")
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"an item is listed twice in {text!r}")
    return items


def _choices(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated subset of ``allowed``, in the order given."""
    def parse(text: str) -> list[str]:
        items = _comma_list(text)
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
        return items
    return parse


def parse_noise(text: str) -> list[Noise]:
    """``none`` or ``KIND:RATE`` items (KIND symmetric or pair, 0 < RATE < 1), comma-separated."""
    settings = []
    for item in _comma_list(text):
        if item == "none":
            settings.append(Noise(None, 0.0))
            continue
        kind, _, rate_text = item.partition(":")
        if kind not in registry.NOISE_KINDS:
            raise argparse.ArgumentTypeError(f"{item!r}: expected none or KIND:RATE with KIND one of "
                                             f"{', '.join(registry.NOISE_KINDS)}")
        try:
            rate = float(rate_text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: RATE must be a number, got {rate_text!r}") from None
        if not 0 < rate < 1:
            raise argparse.ArgumentTypeError(f"{item!r}: RATE must be above 0 and below 1")
        settings.append(Noise(kind, rate))
    if len({noise.label for noise in settings}) != len(settings):
        raise argparse.ArgumentTypeError(f"a noise setting is listed twice in {text!r}")
    return settings


def parse_seeds(text: str) -> list[int]:
    """Comma-separated non-negative integers."""
    items = _comma_list(text)
    if not all(item.isdigit() for item in items):
        raise argparse.ArgumentTypeError(f"seeds must be non-negative integers, got {text!r}")
    return [int(item) for item in items]


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked (a bad one is a one-line argparse error), plus the `keras-itl` executable found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directions", type=_choices(DIRECTIONS), default=list(DIRECTIONS),
                        help=f"comma-separated, of {', '.join(DIRECTIONS)} (default: all)")
    parser.add_argument("--noise", type=parse_noise, default=parse_noise("none,symmetric:0.2,symmetric:0.4,"
                                                                         "pair:0.2,pair:0.4"),
                        help="comma-separated none or KIND:RATE (default: none,symmetric:0.2,symmetric:0.4,"
                        "pair:0.2,pair:0.4)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="comma-separated (default: 0,1,2)")
    parser.add_argument("--methods", type=_choices(METHODS), default=list(METHODS),
                        help=f"comma-separated, of {', '.join(METHODS)} (default: all)")
    parser.add_argument("--onednn", choices=tuple(ONEDNN_SETTINGS), default="both",
                        help="TF_ENABLE_ONEDNN_OPTS of the runs: 1, 0, or each cell under both (default: both)")
    parser.add_argument("--jobs", type=positive_int, default=2, help="runs at once (default: 2)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/defaults-matrix"),
                        help="runs, source cache, image folder and reports (default: runs/defaults-matrix)")
    args = parser.parse_args(argv)
    args.executable = keras_itl_executable()
    if args.executable is None:
        parser.error("no keras-itl executable beside this Python nor on PATH; pip install -e . first")
    return args


def keras_itl_executable() -> str | None:
    """The `keras-itl` script of this Python's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "keras-itl"
    return str(beside) if beside.is_file() else shutil.which("keras-itl")


# -------------------------------------------------------------------------------------------- data
def _write_mnist_folder(directory: str, per_class: int, seed: int) -> int:
    """Write ``per_class`` mnist-5k images of each digit as ``directory/<digit>/<index>.png``; returns the count.

    Runs in a child process: loading mnist-5k through keras_itl imports TensorFlow.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # this child's own environment only
    import numpy as np
    from PIL import Image

    from keras_itl.datasets.embedded import load_mnist_5k

    source = load_mnist_5k()
    rng = np.random.default_rng(seed)
    written = 0
    for label, name in enumerate(source.class_names):
        chosen = np.sort(rng.choice(np.flatnonzero(source.train.labels == label), per_class, replace=False))
        (Path(directory) / name).mkdir(parents=True)
        for index in chosen:
            Image.fromarray(source.train.images[index, :, :, 0]).save(Path(directory) / name / f"{index:04d}.png")
            written += 1
    return written


def ensure_mnist_folder(workdir: Path) -> Path:
    """The folder of mnist-5k PNGs the digits-to-folder direction targets, written the first time."""
    folder = (workdir / FOLDER_NAME).resolve()
    if folder.is_dir():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"writing {FOLDER_PER_CLASS * 10:,} mnist-5k PNGs (seed {FOLDER_SEED}) into {folder}", file=sys.stderr)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_write_mnist_folder, str(partial), FOLDER_PER_CLASS, FOLDER_SEED).result()
    partial.replace(folder)
    return folder


def direction_flags(direction: str, workdir: Path) -> list[str]:
    """Source, target and training-set size of a direction."""
    if direction == "mnist-5k-to-digits":
        flags = ["--source", "mnist-5k", "--target", "digits"]
    else:
        flags = ["--source", "digits", "--target", f"folder:{ensure_mnist_folder(workdir)}"]
    return [*flags, "--max-train-examples", str(MAX_TRAIN_EXAMPLES)]


# -------------------------------------------------------------------------------------------- runs
def plan(args: argparse.Namespace) -> tuple[list[Run], list[Run]]:
    """(warm-up runs, the other runs): a warm-up per direction, seed and oneDNN setting pretrains its source."""
    onednn = ONEDNN_SETTINGS[args.onednn]
    first_method = "model" if "model" in args.methods else args.methods[0]
    warmups = [Run(direction, args.noise[0], seed, setting, first_method)
               for direction in args.directions for seed in args.seeds for setting in onednn]
    others = [Run(direction, noise, seed, setting, method)
              for direction in args.directions for noise in args.noise for seed in args.seeds
              for setting in onednn for method in args.methods]
    return warmups, [run for run in others if run not in warmups]


def read_outcome(output: Path) -> dict:
    """Test error, dropped count, training-set size, label-noise detection, the selection the policy chose with
    every candidate auto measured (its drops, val loss and win in standard errors, so a later change to auto's
    threshold can be judged on these runs) and the fine-tuning rate factor kept, from a run's run.json."""
    record = json.loads((output / RUN_FILE).read_text())
    influence = record.get("influence") or {}
    dropped = len(influence["selection"]["drop_ids"]) if influence else 0
    train_size = record["dataset"]["sizes"]["train"]
    return {"error": 100 * record["test"]["error_rate"], "dropped": dropped, "train_size": train_size,
            "drop_fraction": dropped / train_size, "noise_detection": influence.get("label_noise_detection"),
            "chosen": influence["selection"]["chosen"] if influence else None,
            "candidates": [{"name": c["name"], "dropped": len(c["drop_ids"]), "val_loss": c["val_loss"],
                            "win_z": c["win_z"]} for c in (influence["selection"]["candidates"] if influence else [])],
            "lr_factor": (record.get("fine_tuning") or {}).get("factor")}


def cache_dir(workdir: Path) -> Path:
    """Where the runs cache their pretrained sources: $KERAS_ITL_CACHE, else WORKDIR/cache."""
    return Path(os.environ.get("KERAS_ITL_CACHE") or workdir / "cache").resolve()


def cached_sources(cache: Path) -> set[str]:
    """The source models in the cache now (``<key>.keras`` files at its top level)."""
    return {path.name for path in cache.glob("*.keras")} if cache.is_dir() else set()


def execute(run: Run, workdir: Path, executable: str, flags: list[str], warmup: bool) -> dict:
    """Run (or read back) one run; its record: options, command, seconds, outcome or failure.

    ``new_cached_sources``: source models that appeared in the cache while the run ran (this run or
    a parallel one pretrained them); such a run is timed but left out of the time ratio.
    """
    output = run.output(workdir)
    command = [executable, "train", *flags, *run.noise.flags(), "--seed", str(run.seed), *run.method_flags(),
               "--output", str(output), "--quiet"]
    record = {"direction": run.direction, "noise": run.noise.label, "seed": run.seed, "onednn": run.onednn,
              "method": run.method, "command": shlex.join(command), "warmup": warmup, "read_back": False}
    if (output / RUN_FILE).is_file():
        sidecar = output / SIDECAR
        noted = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        return {**record, "read_back": True, "failed": False, "seconds": noted.get("seconds"),
                "warmup": noted.get("warmup", warmup), "new_cached_sources": noted.get("new_cached_sources", []),
                **read_outcome(output)}
    shutil.rmtree(output, ignore_errors=True)  # an interrupted run's checkpoints would make it refuse
    cache = cache_dir(workdir)
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if run.onednn == "on" else "0", "KERAS_ITL_CACHE": str(cache)}
    before = cached_sources(cache)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    record.update(seconds=seconds, new_cached_sources=sorted(cached_sources(cache) - before))
    if done.returncode != 0 or not (output / RUN_FILE).is_file():
        tail = done.stderr.strip().splitlines()[-STDERR_TAIL:]
        return {**record, "failed": True, "returncode": done.returncode, "stderr_tail": tail}
    noted = {key: record[key] for key in ("seconds", "command", "warmup", "new_cached_sources")}
    (output / SIDECAR).write_text(json.dumps(noted, indent=2))
    return {**record, "failed": False, **read_outcome(output)}


def timed(result: dict) -> bool:
    """Whether a run counts in the time ratio: finished, timed, not a warm-up and no source pretrained meanwhile."""
    return (not result["failed"] and result["seconds"] is not None and not result["warmup"]
            and not result.get("new_cached_sources"))


def progress(k: int, total: int, result: dict) -> None:
    """One stderr line per finished run; a failure's command and the end of its stderr."""
    where = f"[{k}/{total}] {result['direction']} {result['noise']} {result['seed']} {result['onednn']} " \
            f"{result['method']}"
    seconds = "?" if result["seconds"] is None else f"{result['seconds']:.0f}"
    if result["failed"]:
        print(f"{where}: FAILED (exit {result['returncode']}) in {seconds} s\n  {result['command']}\n    "
              + "\n    ".join(result["stderr_tail"]), file=sys.stderr, flush=True)
        return
    note = " (read back)" if result["read_back"] else ""
    if result.get("new_cached_sources"):
        note += f" (new cached source: {', '.join(result['new_cached_sources'])})"
    print(f"{where}: error {result['error']:.2f}% dropped {result['dropped']} in {seconds} s{note}",
          file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace) -> list[dict]:
    """The warm-up runs, then the rest, ``--jobs`` at a time; every run's record, in plan order."""
    warmups, others = plan(args)
    flags = {direction: direction_flags(direction, args.workdir) for direction in args.directions}
    total, finished, results = len(warmups) + len(others), 0, {}
    with ThreadPoolExecutor(args.jobs) as pool:
        for phase, warmup in ((warmups, True), (others, False)):
            futures = {pool.submit(execute, run, args.workdir, args.executable, flags[run.direction], warmup): run
                       for run in phase}
            for future in as_completed(futures):
                finished += 1
                results[futures[future]] = future.result()
                progress(finished, total, results[futures[future]])
    order = {run: index for index, run in enumerate([*warmups, *others])}
    return [results[run] for run in sorted(results, key=order.__getitem__)]


# ----------------------------------------------------------------------------------------- summary
def _mean(values: list[float]) -> float | None:
    """The mean, None for no values."""
    return statistics.fmean(values) if values else None


def cells(results: list[dict], methods: list[str]) -> dict[tuple[str, str, str], dict[str, dict]]:
    """Per (direction, noise, onednn) and method: the seeds' errors and dropped counts, their mean and std."""
    found: dict[tuple[str, str, str], dict[str, dict]] = {}
    for result in results:
        cell = found.setdefault((result["direction"], result["noise"], result["onednn"]),
                                {method: {"errors": [], "dropped": [], "failed": 0} for method in methods})
        entry = cell[result["method"]]
        if result["failed"]:
            entry["failed"] += 1
        else:
            entry["errors"].append(result["error"])
            entry["dropped"].append(result["dropped"])
    for cell in found.values():
        for entry in cell.values():
            entry["mean"] = _mean(entry["errors"])
            entry["std"] = statistics.stdev(entry["errors"]) if len(entry["errors"]) > 1 else None
            entry["dropped_mean"] = _mean(entry["dropped"])
    return found


def best_methods(cell: dict[str, dict]) -> list[str]:
    """The methods with the lowest mean error in a cell (ties all listed)."""
    means = {method: entry["mean"] for method, entry in cell.items() if entry["mean"] is not None}
    return [method for method, mean in means.items() if mean == min(means.values())] if means else []


def _cell_text(method: str, entry: dict, seeds: int) -> str:
    """``mean ± std (dropped)``, the seeds that finished when some failed, or ``failed``."""
    if entry["mean"] is None:
        return "failed" if entry["failed"] else "-"
    text = f"{entry['mean']:.2f}" + ("" if entry["std"] is None else f" ± {entry['std']:.2f}")
    if method in INSTANCE_METHODS:
        text += f" ({entry['dropped_mean']:.1f})"
    if len(entry["errors"]) < seeds:
        text += f" [{len(entry['errors'])}/{seeds} seeds]"
    return text


def tables(found: dict[tuple[str, str, str], dict[str, dict]], args: argparse.Namespace) -> str:
    """One Markdown table per direction: rows noise x oneDNN, columns the methods and the best one."""
    parts = []
    for direction in args.directions:
        parts += [f"### {direction}", "",
                  "test error % (mean ± std over seeds; instance-method rows: mean dropped count in parentheses)", "",
                  f"| noise | onednn | {' | '.join(args.methods)} | best |",
                  f"|---|---|{'---|' * len(args.methods)}---|"]
        for (cell_direction, noise, onednn), cell in found.items():
            if cell_direction == direction:
                texts = [_cell_text(method, cell[method], len(args.seeds)) for method in args.methods]
                parts.append(f"| {noise} | {onednn} | {' | '.join(texts)} | {', '.join(best_methods(cell)) or '-'} |")
        parts.append("")
    return "\n".join(parts)


def instance_vs_model_time(results: list[dict]) -> float | None:
    """Mean wall time of ``instance`` runs over ``model`` runs', of the runs that count (``timed``)."""
    instance = _mean([r["seconds"] for r in results if r["method"] == "instance" and timed(r)])
    model = _mean([r["seconds"] for r in results if r["method"] == "model" and timed(r)])
    return instance / model if instance is not None and model is not None else None


def summary(results: list[dict], found: dict[tuple[str, str, str], dict[str, dict]],
            args: argparse.Namespace) -> dict:
    """The target figures, whether each is met (None: not measurable with this subset), counts and options."""
    noisy_shares = [cell["instance"]["mean"] <= min(e["mean"] for e in cell.values() if e["mean"] is not None)
                    + WITHIN_POINTS + ROUNDING for (_, noise, _), cell in found.items()
                    if noise != "none" and "instance" in cell and cell["instance"]["mean"] is not None]
    worse = [cell["instance"]["mean"] > cell["model"]["mean"] + WITHIN_POINTS + ROUNDING for cell in found.values()
             if "instance" in cell and "model" in cell
             and cell["instance"]["mean"] is not None and cell["model"]["mean"] is not None]
    clean_drops = [r["drop_fraction"] for r in results
                   if r["method"] == "instance" and r["noise"] == "none" and not r["failed"]]
    figures = {
        "noisy_cells_instance_best_or_within_0_5": _mean([float(share) for share in noisy_shares]),
        "cells_instance_worse_than_model_by_0_5": sum(worse) if worse else None,
        "clean_drop_fraction_max": max(clean_drops) if clean_drops else None,
        "instance_vs_model_time": instance_vs_model_time(results),
    }
    checks = {"noisy_cells_instance_best_or_within_0_5": lambda v: v >= 0.8,
              "cells_instance_worse_than_model_by_0_5": lambda v: v == 0,
              "clean_drop_fraction_max": lambda v: v <= 0.05,
              "instance_vs_model_time": lambda v: v <= 1.5}
    return {**figures,
            "targets_met": {name: None if figures[name] is None else checks[name](figures[name]) for name in checks},
            "targets": TARGETS,
            "failed_runs": sum(r["failed"] for r in results), "runs": len(results), "cells": len(found),
            "time_ratio_runs": {method: sum(r["method"] == method and timed(r) for r in results)
                                for method in ("instance", "model")},
            "options": {"directions": args.directions, "noise": [noise.label for noise in args.noise],
                        "seeds": args.seeds, "methods": args.methods, "onednn": args.onednn, "jobs": args.jobs,
                        "workdir": str(args.workdir),
                        "keras_itl_cache": str(cache_dir(args.workdir))}}


def mean_times(results: list[dict], methods: list[str]) -> str:
    """A line of mean wall seconds per method, over the runs the time ratio counts (``timed``)."""
    parts = []
    for method in methods:
        seconds = [r["seconds"] for r in results if r["method"] == method and timed(r)]
        parts.append(f"{method} {f'{statistics.fmean(seconds):.0f} ({len(seconds)} runs)' if seconds else '-'}")
    return "mean wall seconds per run (no warm-up runs, none that pretrained a source): " + ", ".join(parts)


def main() -> None:
    """Run the matrix, print the tables and the summary line, write both into the work directory."""
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = run_all(args)
    found = cells(results, args.methods)
    outcome = summary(results, found, args)
    report = f"{tables(found, args)}\n{mean_times(results, args.methods)}\n"
    line = json.dumps(outcome)
    (args.workdir / "defaults_matrix.md").write_text(f"{report}\n```json\n{json.dumps(outcome, indent=2)}\n```\n")
    (args.workdir / "defaults_matrix.json").write_text(json.dumps({"summary": outcome, "runs": results}, indent=2))
    print(report)
    print(line)


if __name__ == "__main__":
    main()
