"""What the instance method costs against model-based fine-tuning, from one experiment's own time column.

Issue 12's target: instance[influence] wall time <= 2.5x model-based on ``digits`` and ``digits-noisy``,
measured in the same run. This script reads the ``results.json`` of one or more finished
``keras-itl experiment`` runs (or runs one small experiment itself with ``--preset``) and prints,
per results file, every instance row's time over the model row's - per seed, and the median over
seeds (the first run of an experiment that pretrains the source pays for it inside the model row's
time; the median is not swayed by that one seed); the last line is one JSON object with all the
ratios.

    python benchmarks/instance_cost.py runs/experiment-digits/results.json runs/experiment-digits-noisy/results.json
    python benchmarks/instance_cost.py --preset digits --output /tmp/instance-cost
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

TARGET_RATIO = 2.5


def ratios(results: dict) -> dict[str, dict]:
    """Per instance row: its seconds over the model run's of the same seed, per seed and the median (first arch)."""
    runs = [run for run in results["runs"] if run["arch"] == results["runs"][0]["arch"]]
    model = {run["seed"]: run["seconds"] for run in runs if run["method"] == "model"}
    found: dict[str, dict] = {}
    for run in runs:
        if run["method"].startswith("instance"):
            found.setdefault(run["method"], {"per_seed": []})["per_seed"].append(run["seconds"] / model[run["seed"]])
    for entry in found.values():
        entry["median"] = statistics.median(entry["per_seed"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path, help="results.json files of finished experiments")
    parser.add_argument("--preset", default=None, help="run this preset (1 seed, influence row only) first")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark-instance-cost"))
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
    for path in files:
        results = json.loads(path.read_text())
        found = ratios(results)
        for method, ratio in found.items():
            per_seed = ", ".join(f"{r:.2f}" for r in ratio["per_seed"])
            print(f"{results['preset']}: {method} / model time = {ratio['median']:.2f}x median "
                  f"(per seed {per_seed}; target <= {TARGET_RATIO}x)")
        summary[results["preset"]] = found
    print(json.dumps({"instance_over_model_time": summary, "target": TARGET_RATIO}))


if __name__ == "__main__":
    main()
