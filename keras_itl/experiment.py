"""The paper's comparison as one run: scratch, model-based and instance-based transfer side by side.

Every method sees identical splits, seeds and training budgets (one ``TransferConfig`` per arch,
seed and method, differing only in ``method``). The instance method runs once per selection policy
of the preset - influence and the baselines (highest loss, cleanlab, random) - each its own row,
e.g. ``instance[influence]`` and ``instance[loss]``. Results are aggregated over seeds into
``results.json`` and ``results.md``; the model with the lowest *validation* loss (never test) is
exported for TF Serving.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_itl.determinism import make_deterministic
from keras_itl.export import export_model
from keras_itl.options import TargetOptions, TrainingBudget, command_words
from keras_itl.plots import plot_validation_accuracy
from keras_itl.presets import Preset
from keras_itl.report import write_experiment_report
from keras_itl.selection import parse_policy
from keras_itl.transfer import (
    InstanceOptions,
    TransferConfig,
    TransferResult,
    run_transfer,
)
from keras_itl.transfer.target_labels import NONE


def experiment_configs(preset: Preset, seeds: int, overrides: dict | None = None) -> list[TransferConfig]:
    """One config per (arch, seed, method, policy), in run order; ``overrides`` replaces TransferConfig fields.

    The methods are the preset's (all three unless it names fewer); ``instance`` runs once per policy in
    ``preset.instance_policies``, the other methods once. An ``instance`` override (InstanceOptions) sets
    every instance setting but the policy, which is the row's.
    """
    overrides = dict(overrides or {})
    instance = overrides.pop("instance", InstanceOptions())
    shared = {field.name: getattr(preset, field.name)  # the budget and target options, as the preset sets them
              for base in (TrainingBudget, TargetOptions) for field in fields(base)}
    configs = []
    for arch in preset.archs:
        for seed in range(seeds):
            for method in preset.methods:
                config = TransferConfig(target=preset.target, source=preset.source, arch=arch, method=method,
                                        image_size=preset.image_size, seed=seed, **shared)
                policies = preset.instance_policies if method == "instance" else (None,)
                for policy in policies:
                    chosen = config if policy is None else replace(config, instance=replace(instance, policy=policy))
                    configs.append(replace(chosen, **overrides))
    return configs


def row_label(config: TransferConfig) -> str:
    """The table row of a run: the method, ``source-only`` for ``model`` without target labels, or
    ``instance[<policy family>]`` for the instance method."""
    if config.method == "model" and config.target_labels == NONE:
        return "source-only"
    if config.method != "instance":
        return config.method
    return f"instance[{parse_policy(config.instance.policy).family}]"


def train_command(config: TransferConfig, output: Path) -> str:
    """The ``keras-itl train`` command line that runs ``config`` (what ``--dry-run`` prints).

    Names the source, target, arch and method (and the policy of an instance run) always, every other
    setting where it differs from the default; the flags are the options' declarations (keras_itl.options).
    """
    defaults = TransferConfig(target=config.target, source=config.source)
    always = ("source", "target", "arch", "method", *(("instance.policy",) if config.method == "instance" else ()))
    parts = ["keras-itl", "train", *command_words(config, defaults, always)]
    return shlex.join(parts + ["--output", str(output)])


def run_dir_for(output_dir: Path, config: TransferConfig) -> Path:
    """runs/<arch>-seed<N>-<method>, with the policy family for the instance method (instance-loss, ...)."""
    label = row_label(config).replace("[", "-").rstrip("]")
    return output_dir / "runs" / f"{config.arch}-seed{config.seed}-{label}"


@dataclass
class MethodRun:
    """One (arch, seed, method) run as it enters the results table."""

    arch: str
    method: str
    seed: int
    test_error: float
    test_loss: float
    val_loss: float
    dropped: int
    seconds: float
    stage_seconds: dict[str, float]
    run_dir: str
    noise_detection: dict | None = None  # dropped set vs deliberately flipped labels (instance, noisy presets)


def _method_run(result: TransferResult) -> MethodRun:
    """The run's row entry; an instance run's val loss is its ``report`` validation part's (it chose nothing)."""
    final = [p for p in result.phases if not p.name.startswith("warmup-")]
    val_losses = [r["val_loss"] for p in final for r in p.history if "val_loss" in r]
    val_loss = min(val_losses) if val_losses else float("inf")
    stages = {p.name: p.seconds for p in result.phases}
    if result.influence:
        stages.update({f"selection-{k}": v for k, v in result.influence["timings"].items()})
        val_loss = result.influence["validation"]["report_loss"]
    return MethodRun(arch=result.config.arch, method=row_label(result.config), seed=result.config.seed,
                     test_error=result.test.error_rate, test_loss=result.test.loss, val_loss=val_loss,
                     dropped=result.dropped,
                     seconds=result.seconds, stage_seconds=stages, run_dir=str(result.output_dir),
                     noise_detection=(result.influence or {}).get("label_noise_detection"))


def summarise(runs: list[MethodRun], preset: Preset) -> list[dict]:
    """Rows of (arch, method): mean ± std over seeds of test error (%), test loss, drops and time."""
    rows = []
    for arch in dict.fromkeys(r.arch for r in runs):
        for method in dict.fromkeys(r.method for r in runs):
            group = [r for r in runs if r.arch == arch and r.method == method]
            if not group:
                continue
            errors = np.array([100 * r.test_error for r in group])
            rows.append({"arch": arch, "method": method, "seeds": len(group),
                         "test_error_mean": float(errors.mean()),
                         "test_error_std": float(errors.std(ddof=1)) if len(group) > 1 else 0.0,
                         "test_errors": errors.tolist(),
                         "test_loss_mean": float(np.mean([r.test_loss for r in group])),
                         "dropped_mean": float(np.mean([r.dropped for r in group])),
                         "seconds_mean": float(np.mean([r.seconds for r in group])),
                         "paper_error": preset.paper_error(arch, method)})
            detections = [r.noise_detection for r in group if r.noise_detection]
            if detections:
                rows[-1]["noise_detection"] = _noise_detection_summary(detections)
    return rows


def _noise_detection_summary(detections: list[dict]) -> dict:
    """Mean ± std over seeds of the dropped set's precision and recall, and the ranking's ROC AUC,
    against the flipped ids."""
    summary = {"flipped_mean": float(np.mean([d["flipped"] for d in detections]))}
    for key in _DETECTION_KEYS:
        values = np.array([np.nan if d.get(key) is None else d[key] for d in detections], dtype=float)
        summary[f"{key}s"] = [None if np.isnan(v) else float(v) for v in values]
        summary[f"{key}_mean"] = float(np.nanmean(values)) if not np.isnan(values).all() else None
        summary[f"{key}_std"] = float(np.nanstd(values, ddof=1)) if np.count_nonzero(~np.isnan(values)) > 1 else 0.0
    return summary


_DETECTION_KEYS = ("precision", "recall", "roc_auc")


def _noise_detection_lines(rows: list[dict]) -> list[str]:
    """Sentences under the table: how well each method's dropped set matched the flipped labels."""
    lines = []
    for row in rows:
        detection = row.get("noise_detection")
        if not detection:
            continue
        parts = []
        for key in _DETECTION_KEYS:
            mean = detection[f"{key}_mean"]
            per_seed = ", ".join("-" if v is None else f"{v:.2f}" for v in detection[f"{key}s"])
            parts.append(f"{key} {'-' if mean is None else format(mean, '.2f')} ± {detection[f'{key}_std']:.2f} "
                         f"(per seed: {per_seed})")
        lines.append(f"- {row['arch']} {row['method']}: dropped set vs the {detection['flipped_mean']:.0f} "
                     f"deliberately flipped training labels - {'; '.join(parts)}")
    return ["", "Label-noise detection:", *lines] if lines else []


def results_markdown(preset: Preset, rows: list[dict], seeds: int) -> str:
    """The results table a person reads, with the paper's numbers labelled as the paper's."""
    paper = any(row["paper_error"] is not None for row in rows)
    noisy = any("noise_detection" in row for row in rows)
    header = "| arch | method | test error % (mean ± std) | test loss | dropped | time (s) |"
    rule = "|---|---|---|---|---|---|"
    if noisy:
        header += " precision | recall | ROC AUC |"
        rule += "---|---|---|"
    if paper:
        header += " paper's error % |"
        rule += "---|"
    lines = [f"# {preset.name}: {preset.description}", "",
             (f"{seeds} seed(s); identical splits, seeds and budgets for every method. Test errors per seed are "
              "in results.json. Precision and recall are the dropped set's, ROC AUC the ranking's, against the "
              "deliberately flipped training labels."), "", header, rule]
    for row in rows:
        line = (f"| {row['arch']} | {row['method']} | {row['test_error_mean']:.2f} ± {row['test_error_std']:.2f} | "
                f"{row['test_loss_mean']:.4f} | {row['dropped_mean']:.1f} | {row['seconds_mean']:.0f} |")
        if noisy:
            detection = row.get("noise_detection", {})
            line += "".join(f" {_mean_std(detection, key)} |" for key in _DETECTION_KEYS)
        if paper:
            line += f" {'' if row['paper_error'] is None else format(row['paper_error'], '.2f')} |"
        lines.append(line)
    return "\n".join(lines + _noise_detection_lines(rows)) + "\n"


def _mean_std(detection: dict, key: str) -> str:
    """'0.83 ± 0.05' for a detection summary's key, '-' where there is none."""
    mean = detection.get(f"{key}_mean")
    return "-" if mean is None else f"{mean:.2f} ± {detection[f'{key}_std']:.2f}"


@dataclass
class ExperimentResult:
    """The aggregated table, every run, and where the outputs went."""

    preset: str
    seeds: int
    rows: list[dict]
    runs: list[MethodRun]
    output_dir: Path
    exported: str | None
    seconds: float

    def to_dict(self) -> dict:
        return {"preset": self.preset, "seeds": self.seeds, "rows": self.rows,
                "runs": [asdict(r) for r in self.runs], "exported": self.exported, "seconds": self.seconds}


def _curves(result: TransferResult) -> list[float]:
    return [r["val_accuracy"] for p in result.phases if not p.name.startswith("warmup-")
            for r in p.history if "val_accuracy" in r]


def run_experiment(preset: Preset, output_dir: str | os.PathLike, *, seeds: int = 1, overrides: dict | None = None,
                   export_base: str | os.PathLike | None = "saved_models", resume: bool = False,
                   strategy: tf.distribute.Strategy | None = None, verbose: bool = True) -> ExperimentResult:
    """Run every (arch, seed, method) of the preset and write results, plots and the best model.

    ``resume`` continues an interrupted experiment: finished runs are reused, the interrupted one
    continues from its checkpoint. ``strategy`` is the distribution strategy of every run (default:
    ``make_strategy()``, all local GPUs or CPUs, or the TF_CONFIG cluster).

    Args:
        preset: The comparison to run (``get_preset``).
        output_dir: Where results.json, results.md, the plots, report.html and ``runs/<run>`` go (created).
        seeds: How many seeds each (arch, method, policy) runs with: 0 to ``seeds - 1``.
        overrides: TransferConfig fields set in every run (an ``instance`` InstanceOptions keeps each row's policy).
        export_base: TF Serving base directory; the run of lowest validation loss is exported to
            ``<export_base>/<preset name>``; None: no export.
        resume: Reuse finished runs and continue the interrupted one from its checkpoint.
        strategy: Distribution strategy of every run; None: ``make_strategy()``.
        verbose: Print a line before and after each run (the runs themselves are quiet).

    Returns:
        The aggregated table rows, every run, the output directory, the exported version's path and the time taken.
    """
    make_deterministic()
    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    configs = experiment_configs(preset, seeds, overrides)
    runs, curves, best = [], {}, None
    for number, config in enumerate(configs, start=1):
        if verbose:
            print(f"[{number}/{len(configs)}] {config.arch} seed {config.seed}: {row_label(config)}", flush=True)
        result = run_transfer(config, run_dir_for(output_dir, config), resume=resume, strategy=strategy,
                              verbose=False)
        run = _method_run(result)
        runs.append(run)
        if verbose:
            print(f"[{number}/{len(configs)}] {result.summary()}", flush=True)
        if config.seed == 0 and config.arch == preset.archs[0]:
            curves[run.method] = _curves(result)
            for name in ("harmful_grid.png", "influence_histogram.png"):
                if name in result.files:
                    shutil.copy(result.files[name], output_dir / name)
        if best is None or run.val_loss < best[0].val_loss:
            best = (run, result)
    plot_validation_accuracy(curves, output_dir / "validation_accuracy.png")
    exported = None
    if export_base is not None and best is not None:
        run, result = best
        # the trained model still in memory (its traced forward pass is reused), the same as run.run_dir's model.keras
        version = export_model(result.model, Path(export_base) / preset.name,
                               class_names=result.dataset["class_names"],
                               metadata={**result.record().export_metadata(), "experiment": preset.name})
        exported = str(version.path)
    rows = summarise(runs, preset)
    experiment = ExperimentResult(preset=preset.name, seeds=seeds, rows=rows, runs=runs, output_dir=output_dir,
                                  exported=exported, seconds=time.perf_counter() - started)
    (output_dir / "results.json").write_text(json.dumps(experiment.to_dict(), indent=2))
    (output_dir / "results.md").write_text(results_markdown(preset, rows, seeds))
    write_experiment_report(output_dir)  # every run wrote its own page as it finished
    return experiment

