"""The page of one ``keras-itl experiment``: the results table with every seed's value, every run with a link
to its own page, and the experiment's plots - all read from ``results.json`` and the PNGs beside it."""
from __future__ import annotations

from pathlib import Path

from keras_itl.report.html import figure, link, number, page, section, table
from keras_itl.report.images import file_data_url
from keras_itl.report.run_page import DETECTION_KEYS

RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"


def run_link(run_dir: str) -> str:
    """The run's page relative to the experiment's: runs live in ``<experiment>/runs/<name>``."""
    return f"runs/{Path(run_dir).name}/{REPORT_FILE}"


def experiment_page(directory: Path, results: dict) -> str:
    """The HTML of the experiment's page from its ``results.json`` content."""
    rows, runs = results["rows"], results["runs"]
    subtitle = (f"{results['seeds']} seed(s), {len(runs)} runs in {number(results['seconds'], '.0f')} s; "
                f"the model with the lowest validation loss exported to {results['exported'] or 'nowhere'}")
    figures = "".join(figure(file_data_url(directory / name), caption) for name, caption in (
        ("validation_accuracy.png", "validation accuracy per epoch, seed 0"),
        ("influence_histogram.png", "influence of the training instances, seed 0"),
        ("harmful_grid.png", "the most harmful training images, seed 0")))
    sections = [section("results", "Results", _results_table(rows)),
                section("runs", "Runs", _runs_table(runs)),
                section("plots", "Plots", figures)]
    return page(f"experiment {results['preset']}", subtitle, sections)


def _results_table(rows: list[dict]) -> str:
    """One row per (arch, method): test error mean ± std and per seed, loss, drops, time, noise detection."""
    noisy = any("noise_detection" in row for row in rows)
    paper = any(row.get("paper_error") is not None for row in rows)
    headers = ["arch", "method", "seeds", "test error % (mean ± std)", "test error % per seed", "test loss", "dropped",
               "time (s)"]
    if noisy:
        headers += [f"{key} (per seed)" for key in DETECTION_KEYS]
    if paper:
        headers.append("paper's error %")
    body = []
    for row in rows:
        cells = [row["arch"], row["method"], row["seeds"],
                 f"{row['test_error_mean']:.2f} ± {row['test_error_std']:.2f}",
                 ", ".join(f"{error:.2f}" for error in row["test_errors"]), number(row["test_loss_mean"], ".4f"),
                 number(row["dropped_mean"], ".1f"), number(row["seconds_mean"], ".0f")]
        if noisy:
            detection = row.get("noise_detection", {})
            cells += [_per_seed(detection, key) for key in DETECTION_KEYS]
        if paper:
            cells.append(number(row.get("paper_error"), ".2f"))
        body.append(cells)
    return table(headers, body, table_id="results-table", numeric_from=2)


def _per_seed(detection: dict, key: str) -> str:
    """'0.83 (0.80, 0.86)': the mean over seeds, then each seed's value; '–' where there is none."""
    values = detection.get(f"{key}s")
    if values is None:
        return number(None)
    return f"{number(detection[f'{key}_mean'], '.2f')} ({', '.join(number(v, '.2f') for v in values)})"


def _runs_table(runs: list[dict]) -> str:
    """Every run of the experiment, with a link to its page."""
    body = [[run["arch"], run["method"], run["seed"], number(100 * run["test_error"], ".2f"),
             number(run["test_loss"], ".4f"), number(run["val_loss"], ".4f"), run["dropped"],
             number(run["seconds"], ".0f"), link(run_link(run["run_dir"]), Path(run["run_dir"]).name)]
            for run in runs]
    return table(["arch", "method", "seed", "test error %", "test loss", "val loss", "dropped", "time (s)", "page"],
                 body, table_id="runs-table", numeric_from=2)
