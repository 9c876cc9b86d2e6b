"""Transfer methods end to end: load the target, build the model from its source, train, test, save.

- ``scratch``: random initialisation, trained on the target.
- ``model`` (network-based fine-tuning): the source's backbone under a new head; first the head
  alone with the backbone frozen, then the backbone (all of it, or its top layers) at a lower
  learning rate with BatchNormalization kept in inference mode, so small target batches do not
  overwrite the source statistics.
- ``instance`` (Wang et al., 2019): a model-based warm-up on all target training data, influence
  of every training instance on the validation loss with that model (or a baseline ranking:
  highest loss, cleanlab, random), a selection of instances to drop, then the model-based
  fine-tuning again - from the source weights by default - on the kept instances with the same
  budget. Each decision uses its own part of the validation split (keras_itl.validation_parts).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_itl.backbones import BACKBONE_NAME, build_model, get_architecture, model_channels
from keras_itl.datasets import Split, TargetDataset, load_dataset, parse_imbalance
from keras_itl.determinism import make_deterministic
from keras_itl.errors import UserError
from keras_itl.evaluation import Metrics, evaluate_model
from keras_itl.export import export_model, run_metadata
from keras_itl.influence import SolverOptions, WorkerShard
from keras_itl.influence_report import describe_selection
from keras_itl.instance_selection import JUDGES, rank_instances, selection_report, write_selection_files
from keras_itl.plots import plot_training_curves
from keras_itl.reports import write_evaluation
from keras_itl.selection import parse_policy, select_drops
from keras_itl.sources import IMAGENET, Source, load_source_into, parse_source, pretrain_on_dataset
from keras_itl.training import TrainConfig, TrainResult, guard_run_options, is_chief, make_strategy, train_model
from keras_itl.validation_parts import split_validation

METHODS = ("scratch", "model", "instance")
RANDOM_WEIGHTS = "random"  # --weights random: run an ImageNet pipeline without the weights (offline smoke tests)
INSTANCE_STARTS = ("source", "warmup")


@dataclass(frozen=True)
class InstanceOptions:
    """How ``instance`` scores, selects and refits (see keras_itl.influence and keras_itl.selection)."""

    policy: str = "auto"
    scope: str = "head"
    solver: str = "cg"
    damping: float = 0.1  # ~3x the head Hessian's mean eigenvalue on the digits presets (README: damping)
    max_drop_fraction: float = 0.5
    min_class_keep_fraction: float = 0.5
    start: str = "source"
    refit_epochs: int | None = None
    damping_retries: int = 3  # a failed solve after a long warm-up retries at 10x damping, not crash
    cg_max_iterations: int = 200
    lissa_scale: float = 10.0
    lissa_depth: int = 1000
    lissa_batch_size: int | None = None
    judge: str = "head"  # how auto measures a candidate: head-only refit on cached features, or full refit
    auto_margin: float = 0.05  # auto keeps the fewest drops within this relative margin of the lowest loss

    def __post_init__(self) -> None:
        parse_policy(self.policy)
        self.solver_options()
        if self.judge not in JUDGES:
            raise UserError(f"unknown auto judge {self.judge!r}; choose one of: {', '.join(JUDGES)}")
        if not 0 <= self.auto_margin < 1:
            raise UserError(f"auto margin must be in [0, 1), got {self.auto_margin}")
        if self.start not in INSTANCE_STARTS:
            raise UserError(f"unknown instance start {self.start!r}; choose one of: {', '.join(INSTANCE_STARTS)}")
        if self.refit_epochs is not None and self.refit_epochs <= 0:
            raise UserError(f"refit epochs must be positive, got {self.refit_epochs}")

    def solver_options(self, seed: int = 0) -> SolverOptions:
        """The influence solver settings these options describe."""
        return SolverOptions(solver=self.solver, damping=self.damping, damping_retries=self.damping_retries,
                             cg_max_iterations=self.cg_max_iterations, lissa_scale=self.lissa_scale,
                             lissa_depth=self.lissa_depth, lissa_batch_size=self.lissa_batch_size, seed=seed)


@dataclass(frozen=True)
class TransferConfig:
    """Everything one transfer run depends on; saved as ``run.json`` beside the model."""

    target: str
    arch: str = "small-cnn"
    method: str = "model"
    source: str | None = None
    weights: str | None = None
    image_size: int | None = None
    epochs: int = 10
    head_epochs: int = 2
    source_epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_lr_factor: float = 0.1
    fine_tune_layers: int | None = None
    optimizer: str = "adam"
    lr_schedule: str = "cosine"
    patience: int | None = 5
    seed: int = 0
    val_fraction: float = 0.1
    max_train_examples: int | None = None
    imbalance: str | None = None
    label_noise: float = 0.0
    noise_kind: str = "symmetric"
    data_dir: str | None = None
    instance: InstanceOptions = InstanceOptions()

    def __post_init__(self) -> None:
        get_architecture(self.arch)
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.method != "scratch" and not self.source:
            raise UserError(f"--method {self.method} fine-tunes a pretrained network: pass --source "
                            "(imagenet, a dataset spec or a .keras model)")
        if self.weights is not None and self.source != IMAGENET:
            raise UserError("--weights is a local ImageNet weights file; it goes with --source imagenet")
        if self.fine_tune_layers is not None and self.fine_tune_layers <= 0:
            raise UserError(f"fine-tune layers must be positive, got {self.fine_tune_layers}")
        if self.head_epochs < 0 or self.source_epochs <= 0:
            raise UserError("head epochs must be >= 0 and source epochs > 0")
        self.train_config()  # validates epochs, batch size, learning rate, optimizer, schedule

    def train_config(self, **changes) -> TrainConfig:
        """The loop settings of a phase, with ``changes`` applied (e.g. epochs, learning_rate)."""
        base = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           optimizer=self.optimizer, lr_schedule=self.lr_schedule, patience=self.patience,
                           seed=self.seed)
        return replace(base, **changes)


@dataclass
class TransferResult:
    """The outcome of a run: test metrics, phase histories and where everything was written."""

    config: TransferConfig
    test: Metrics
    phases: list[TrainResult]
    dataset: dict
    output_dir: Path
    seconds: float
    files: dict[str, str] = field(default_factory=dict)
    influence: dict | None = None

    @property
    def dropped(self) -> int:
        """How many target training instances the instance method dropped (0 for other methods)."""
        return len(self.influence["selection"]["drop_ids"]) if self.influence else 0

    def summary(self) -> str:
        """One line for the end of a run."""
        source = self.config.source if self.config.method != "scratch" else "random init"
        dropped = f", dropped {self.dropped} of {self.dataset['sizes']['train']} training instances" \
            if self.influence else ""
        return (f"{self.config.method}: {self.config.arch} from {source} on {self.config.target} - test error rate "
                f"{self.test.error_rate:.2%} (accuracy {self.test.accuracy:.2%}, loss {self.test.loss:.4f}, "
                f"{self.test.num_examples} test images){dropped} in {self.seconds:.0f}s - wrote {self.output_dir}"
                f"{' and ' + self.files['saved_model'] if 'saved_model' in self.files else ''}")

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "test": self.test.to_dict(),
                "phases": [p.to_dict() for p in self.phases], "dataset": self.dataset,
                "seconds": self.seconds, "files": self.files, "influence": self.influence}


def load_target(config: TransferConfig) -> TargetDataset:
    """The target dataset with the run's split, size, imbalance and noise options."""
    imbalance = parse_imbalance(config.imbalance) if config.imbalance else None
    return load_dataset(config.target, seed=config.seed, val_fraction=config.val_fraction,
                        max_train_examples=config.max_train_examples, imbalance=imbalance,
                        label_noise=config.label_noise, noise_kind=config.noise_kind, data_dir=config.data_dir)


def build_initial_model(config: TransferConfig, num_classes: int, channels: int,
                        strategy: tf.distribute.Strategy, verbose: bool = True) -> keras.Model:
    """The model before target training: random for ``scratch``, else carrying the source's backbone."""
    image_size = config.image_size or get_architecture(config.arch).default_image_size
    source: Source | None = parse_source(config.source) if config.method != "scratch" else None
    pretrained = None
    if source is not None and source.kind == "dataset":
        pretrained = pretrain_on_dataset(
            source.spec, config.arch, image_size=image_size, channels=channels,
            config=config.train_config(epochs=config.source_epochs), strategy=strategy,
            data_dir=config.data_dir, val_fraction=config.val_fraction, verbose=verbose)
    elif source is not None and source.kind == "model":
        pretrained = source.spec
    keras.utils.set_random_seed(config.seed)
    weights = None
    if source is not None and source.kind == IMAGENET and config.weights != RANDOM_WEIGHTS:
        weights = config.weights or IMAGENET
    with strategy.scope():
        model = build_model(config.arch, num_classes, image_size=image_size, channels=channels, weights=weights)
        if pretrained is not None:
            load_source_into(model, pretrained)
    return model


def _freeze_for_fine_tuning(backbone: keras.Model, top_layers: int | None) -> None:
    backbone.trainable = True
    frozen = backbone.layers[:-top_layers] if top_layers else []
    for layer in frozen:
        layer.trainable = False
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # Keras 3: a non-trainable BN layer runs in inference mode


def fit_target(model: keras.Model, train: Split, val: Split, config: TransferConfig, *,
               strategy: tf.distribute.Strategy, run_dir: Path, resume: bool = False, verbose: bool = True,
               prefix: str = "") -> list[TrainResult]:
    """Train from scratch (``scratch``) or fine-tune in two phases (the other methods), validating on ``val``."""
    if config.method == "scratch":
        return [train_model(model, train, val, config.train_config(), strategy=strategy, run_dir=run_dir,
                            name=f"{prefix}scratch", resume=resume, verbose=verbose)]
    backbone = model.get_layer(BACKBONE_NAME)
    phases = []
    if config.head_epochs:
        backbone.trainable = False
        phases.append(train_model(model, train, val, config.train_config(epochs=config.head_epochs),
                                  strategy=strategy, run_dir=run_dir, name=f"{prefix}head", resume=resume,
                                  verbose=verbose))
    _freeze_for_fine_tuning(backbone, config.fine_tune_layers)
    fine_tune = config.train_config(learning_rate=config.learning_rate * config.fine_tune_lr_factor)
    phases.append(train_model(model, train, val, fine_tune, strategy=strategy, run_dir=run_dir,
                              name=f"{prefix}finetune", resume=resume, verbose=verbose))
    return phases


def _instance_transfer(model: keras.Model, data: TargetDataset, config: TransferConfig, *,
                       strategy: tf.distribute.Strategy, run_dir: Path, resume: bool, verbose: bool
                       ) -> tuple[list[TrainResult], dict, dict[str, str]]:
    """Warm up, rank, select, refit on the kept instances; leaves the final weights in ``model``.

    The validation split is divided so no data judges a choice it made: the warm-up and influence use
    the ``influence`` part, candidate judging and the final refit the ``selection`` part, and the
    reported validation numbers come from the ``report`` part (see keras_itl.validation_parts).
    """
    options = config.instance
    policy = parse_policy(options.policy)
    train = data.split("train")
    parts = split_validation(data.split("val"), data.info.num_classes, config.seed)
    source_weights = model.get_weights()
    with strategy.scope():
        blank = keras.models.clone_model(model)
    phases = fit_target(model, train, parts["influence"], config, strategy=strategy, run_dir=run_dir, resume=resume,
                        verbose=verbose, prefix="warmup-")
    ranked = rank_instances(model, train, parts, policy, num_classes=data.info.num_classes, seed=config.seed,
                            scope=options.scope, solver=options.solver_options(seed=config.seed),
                            batch_size=max(config.batch_size, 64), cache_dir=str(run_dir), strategy=strategy,
                            verbose=verbose)
    start_weights = source_weights if options.start == "source" else model.get_weights()
    refits: dict[bytes, tuple[list, list[TrainResult]]] = {}
    refit_config = replace(config, epochs=options.refit_epochs or config.epochs)

    def refit(keep: np.ndarray, budget: TransferConfig, name: str) -> float:
        blank.set_weights(start_weights)
        history = fit_target(blank, train.subset(np.flatnonzero(keep)), parts["selection"], budget,
                             strategy=strategy, run_dir=run_dir / "refits" / name, resume=resume, verbose=verbose)
        refits[keep.tobytes()] = (blank.get_weights(), history)
        return evaluate_model(blank, parts["selection"]).loss

    def measure(keep: np.ndarray) -> float:
        if options.judge == "head":
            loss = ranked.head_loss(keep)
        else:
            loss = refit(keep, refit_config, f"candidate-{len(refits) + 1}")
        if verbose:
            print(f"selection: {options.judge} refit without {int((~keep).sum())} instances - "
                  f"selection-part val_loss {loss:.4f}", flush=True)
        return loss

    selection = select_drops(train.ids, train.labels, ranked.ranking.order_scores, policy=policy,
                             class_names=data.info.class_names, max_drop_fraction=options.max_drop_fraction,
                             min_class_keep_fraction=options.min_class_keep_fraction,
                             auto_margin=options.auto_margin, measure=measure, eligible=ranked.ranking.eligible)
    if verbose:
        print(describe_selection(selection, len(train)), flush=True)
    keep = WorkerShard(strategy).from_chief(selection.keep_mask(train.ids))  # decided once, by the chief
    if options.refit_epochs is not None or keep.tobytes() not in refits:
        refit(keep, config, "final")
    weights, history = refits[keep.tobytes()]
    model.set_weights(weights)
    report = {**selection_report(ranked, selection, parts, model, data.info.flipped_ids, options.judge),
              "refit_epochs": refit_config.epochs}
    files = (write_selection_files(ranked, selection, report, data.info.class_names, run_dir)
             if is_chief(strategy) else {})
    return phases + history, report, files


def run_transfer(config: TransferConfig, output_dir: str | os.PathLike, *, resume: bool = False,
                 strategy: tf.distribute.Strategy | None = None, verbose: bool = True,
                 export_to: str | os.PathLike | None = None) -> TransferResult:
    """Run one method end to end and write model, histories, test metrics and plots to ``output_dir``.

    With ``export_to`` (a TF Serving model base path such as ``saved_models/<name>``) the final model
    is also published there as the next SavedModel version.
    """
    make_deterministic()
    started = time.perf_counter()
    output_dir = Path(output_dir)
    strategy = strategy or make_strategy()  # first: a multi-worker strategy must precede other TF ops
    chief = is_chief(strategy)  # only the chief writes outputs; other workers only scratch checkpoints
    guard_run_options(output_dir, asdict(config), resume=resume, chief=chief)
    data = load_target(config)
    if verbose:
        sizes = ", ".join(f"{k} {v}" for k, v in data.info.sizes.items())
        skipped = f", skipped {len(data.info.skipped_files)} unreadable files" if data.info.skipped_files else ""
        print(f"target: {data.info.name}, {data.info.num_classes} classes ({sizes}){skipped}", flush=True)
    channels = model_channels(config.arch, data.info.image_shape[2])
    model = build_initial_model(config, data.info.num_classes, channels, strategy, verbose)
    influence, files = None, {}
    if config.method == "instance":
        phases, influence, files = _instance_transfer(model, data, config, strategy=strategy, run_dir=output_dir,
                                                      resume=resume, verbose=verbose)
    else:
        phases = fit_target(model, data.split("train"), data.split("val"), config, strategy=strategy,
                            run_dir=output_dir, resume=resume, verbose=verbose)
    test = evaluate_model(model, data.split("test"), class_names=data.info.class_names)
    result = TransferResult(config=config, test=test, phases=phases, dataset=data.info.to_dict(),
                            output_dir=output_dir, seconds=time.perf_counter() - started, files=files,
                            influence=influence)
    if not chief:
        return result
    files.update({name: str(path) for name, path in
                  write_evaluation(test, data.info.class_names, output_dir, "test").items()})
    model.save(output_dir / "model.keras")
    files["model"] = str(output_dir / "model.keras")
    plot_training_curves({p.name: p.history for p in phases}, output_dir / "training_curves.png")
    files["training_curves"] = str(output_dir / "training_curves.png")
    if export_to is not None:
        exported = export_model(model, export_to, class_names=data.info.class_names,
                                metadata=run_metadata(result.to_dict()))
        files["saved_model"] = str(exported.path)
        if verbose:
            print(f"exported {exported.path} (version {exported.version})", flush=True)
    (output_dir / "run.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return result
