"""report.html: one self-contained page per run and per experiment, to look through what a run did and
decide on its training instances (see keras_itl.report.writer)."""
from keras_itl.report.writer import write_experiment_report, write_report, write_run_report

__all__ = ["write_experiment_report", "write_report", "write_run_report"]
