"""The files a person reads after a leave-one-out check of influence: JSON and a scatter plot."""
from __future__ import annotations

import json
import os
from pathlib import Path

from keras_itl.influence.loo import LooReport
from keras_itl.plots import plot_loo_scatter


def write_loo_report(report: LooReport, directory: str | os.PathLike) -> dict[str, str]:
    """Write loo.json and loo_scatter.png for a leave-one-out check."""
    directory = Path(directory)
    paths = {"loo.json": directory / "loo.json", "loo_scatter.png": directory / "loo_scatter.png"}
    paths["loo.json"].write_text(json.dumps(report.to_dict(), indent=2))
    plot_loo_scatter(report.predicted, report.actual, report.pearson, report.spearman, paths["loo_scatter.png"])
    return {name: str(path) for name, path in paths.items()}
