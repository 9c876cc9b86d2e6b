"""``keras-itl report``: (re)write the report.html of a run or an experiment."""
from __future__ import annotations

import click

from keras_itl.cli.options import user_errors


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@user_errors
def report(directory) -> None:
    """Write DIRECTORY/report.html: a self-contained page of a train run (settings, metrics, curves, confusion
    matrix; for instance runs the ranked training instances, to decide on and export as decisions.csv) or of an
    experiment (results table, every run's page)."""
    from keras_itl.report import write_report

    path = write_report(directory)
    click.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
