"""What each method costs against model-based fine-tuning, from one experiment's own time column.

Issue 12's target: instance[influence] wall time <= 2.5x model-based on ``digits`` and ``digits-noisy``,
measured in the same run. This script reads the ``results.json`` of one or more finished
``keras-itl experiment`` runs (or runs one small experiment itself with ``--preset``) and prints,
per results file, every other row's time over the model row's - per seed, and the median over
seeds; the last line is one JSON object with all the ratios. An experiment without a model row (the
``-unlabelled`` presets) is measured against the model row of the results file ``--model-from`` names.

Two ratios, because the model row's wall time includes pretraining the source on a dataset (cached
per seed, so the instance rows after it find it ready): ``wall`` is the experiment's own time column
as the issue defines the target; ``work`` counts only what each method does on the target - the
training phases, plus the instance method's features and ranking (influence) - the fair measure of
what instance selection adds.

    python benchmarks/instance_cost.py runs/experiment-digits/results.json runs/experiment-digits-noisy/results.json
    python benchmarks/instance_cost.py --preset digits --output /tmp/instance-cost
    python benchmarks/instance_cost.py runs/experiment-mnist-digits-unlabelled/results.json \
        --model-from runs/experiment-mnist-digits/results.json
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

TARGET_RATIO = 2.5


def _work(run: dict) -> float:
    """Seconds of target work: training phases, plus the selection's features and ranking (not their parts)."""
    stages = run["stage_seconds"]
    return sum(v for k, v in stages.items() if not k.startswith("selection-")) + \
        stages.get("selection-features", 0.0) + stages.get("selection-ranking", 0.0)


def ratios(results: dict, model_results: dict | None = None) -> dict[str, dict]:
    """Per row but model: wall and work seconds over the model run's of the same seed (from ``model_results`` when
    given), per seed and median."""
    runs = [run for run in results["runs"] if run["arch"] == results["runs"][0]["arch"]]
    model = {run["seed"]: run for run in (model_results or results)["runs"]
             if run["method"] == "model" and run["arch"] == runs[0]["arch"]}
    found: dict[str, dict] = {}
    for run in runs:
        if run["method"] != "model":
            entry = found.setdefault(run["method"], {"wall_per_seed": [], "work_per_seed": []})
            entry["wall_per_seed"].append(run["seconds"] / model[run["seed"]]["seconds"])
            entry["work_per_seed"].append(_work(run) / _work(model[run["seed"]]))
    for entry in found.values():
        entry["wall_median"] = statistics.median(entry["wall_per_seed"])
        entry["work_median"] = statistics.median(entry["work_per_seed"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path, help="results.json files of finished experiments")
    parser.add_argument("--preset", default=None, help="run this preset (1 seed, influence row only) first")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark-instance-cost"))
    parser.add_argument("--model-from", type=Path, default=None,
                        help="results.json whose model row the rows are measured against (default: each file's own)")
    args = parser.parse_args()
    files = list(args.results)
    if args.preset:
        from dataclasses import replace

        from keras_itl.experiment import run_experiment
        from keras_itl.presets import get_preset

        preset = replace(get_preset(args.preset), instance_policies=("auto",))
        run_experiment(preset, args.output, export_base=None, verbose=True)
        files.append(args.output / "results.json")
    summary = {}
    model_results = json.loads(args.model_from.read_text()) if args.model_from else None
    for path in files:
        results = json.loads(path.read_text())
        found = ratios(results, model_results)
        for method, ratio in found.items():
            wall = ", ".join(f"{r:.2f}" for r in ratio["wall_per_seed"])
            work = ", ".join(f"{r:.2f}" for r in ratio["work_per_seed"])
            target = f"; target <= {TARGET_RATIO}x" if method.startswith("instance") else ""
            print(f"{results['preset']}: {method} / model - wall {ratio['wall_median']:.2f}x median (per seed {wall}), "
                  f"target work {ratio['work_median']:.2f}x median (per seed {work}){target}")
        summary[results["preset"]] = found
    print(json.dumps({"over_model_time": summary, "instance_target": TARGET_RATIO}))


if __name__ == "__main__":
    main()
