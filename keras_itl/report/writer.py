"""Write report.html into a run or experiment directory, from what the directory holds.

A run's page needs its ``run.json``; an instance run's gallery also needs its training images and
the final model's predictions: ``keras-itl train`` hands over the ones it holds in memory, ``keras-itl
report`` reloads the data as the run split it (decisions reapplied from the record) and the model
from ``model.keras``. An experiment's page needs its ``results.json``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import keras

from keras_itl.datasets import TargetDataset, load_dataset
from keras_itl.decisions import Decisions, apply_decisions
from keras_itl.errors import UserError
from keras_itl.evaluation import load_trained_model, predict_probabilities
from keras_itl.report.experiment_page import REPORT_FILE, RESULTS_FILE, experiment_page
from keras_itl.report.gallery import build_gallery
from keras_itl.report.run_page import run_page
from keras_itl.run_record import RUN_FILE, RunRecord


def write_report(directory: str | os.PathLike) -> Path:
    """The page of a run directory, or of an experiment directory and each of its runs; returns its path.

    Args:
        directory: A ``keras-itl train`` run directory (holding run.json) or a ``keras-itl experiment``
            directory (holding results.json).

    Returns:
        The path of the ``report.html`` written into ``directory``.

    Raises:
        UserError: when ``directory`` holds neither run.json nor results.json, or results.json is unreadable.
    """
    directory = Path(directory)
    if (directory / RESULTS_FILE).is_file():
        return write_experiment_report(directory, with_runs=True)
    if (directory / RUN_FILE).is_file():
        return write_run_report(directory)
    raise UserError(f"{directory} holds neither {RUN_FILE} (a keras-itl train run) nor {RESULTS_FILE} "
                    "(a keras-itl experiment)")


def write_run_report(run_dir: str | os.PathLike, *, model: keras.Model | None = None,
                     data: TargetDataset | None = None) -> Path:
    """Write ``report.html`` for the run in ``run_dir``; ``model`` and ``data`` are the run's final model and
    (decided) dataset when the caller holds them, else they are loaded."""
    run_dir = Path(run_dir)
    record = RunRecord.read(run_dir)
    if record is None:
        raise UserError(f"no {RUN_FILE} in {run_dir}: not a keras-itl train run")
    gallery = None
    if record.influence is not None:
        train = (data or _run_data(record)).split("train")
        probabilities = predict_probabilities(model or load_trained_model(run_dir), train)
        gallery = build_gallery(run_dir, record, train, probabilities)
    storage_key = f"keras-itl-decisions:{run_dir.resolve()}"
    return _write(run_dir, run_page(run_dir, record, gallery, storage_key))


def write_experiment_report(directory: str | os.PathLike, *, with_runs: bool = False) -> Path:
    """Write ``report.html`` for the experiment in ``directory``; with ``with_runs`` each run's page too."""
    directory = Path(directory)
    try:
        results = json.loads((directory / RESULTS_FILE).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {directory / RESULTS_FILE}: {error}") from None
    if with_runs:
        for run in results["runs"]:
            write_run_report(directory / "runs" / Path(run["run_dir"]).name)
            keras.backend.clear_session()  # each run's model and traced graphs go before the next is loaded
    return _write(directory, experiment_page(directory, results))


def _run_data(record: RunRecord) -> TargetDataset:
    """The run's dataset as it trained on it: its split options, then the decisions it recorded."""
    data = load_dataset(record.target, **record.dataset_options())
    decisions = record.dataset.get("decisions")
    return apply_decisions(data, Decisions.from_dict(decisions)) if decisions else data


def _write(directory: Path, text: str) -> Path:
    """Write the page whole or not at all: a reader never sees half of it."""
    path = directory / REPORT_FILE
    partial = path.with_name(REPORT_FILE + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path
