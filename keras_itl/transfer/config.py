"""What one transfer run depends on: ``TransferConfig`` (saved as ``run.json``'s ``config``) and the
instance method's ``InstanceOptions``, each checked on construction with one-line errors. Every
user option is declared in keras_itl.options (flag, help, default from keras_itl.registry).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from keras_itl.backbones import get_architecture
from keras_itl.errors import UserError
from keras_itl.influence import SolverOptions
from keras_itl.methods import get_method
from keras_itl.options import TargetOptions, TrainingBudget, method_options, nested, option, per_method
from keras_itl.pretrained import IMAGENET, parse_source
from keras_itl.registry import ALIGN_LAYERS, INSTANCE_STARTS
from keras_itl.registry import AUTO_JUDGES as JUDGES
from keras_itl.selection import parse_policy
from keras_itl.training import TrainConfig
from keras_itl.transfer.target_labels import labels_per_class

RANDOM_WEIGHTS = "random"  # --weights random: run an ImageNet pipeline without the weights (offline smoke tests)


@dataclass(frozen=True)
class InstanceOptions:
    """How ``instance`` ranks, selects and refits (see keras_itl.selection), and how it solves for influence.

    Every field but ``solver`` is a declared option (keras_itl.options) with its default; ``keras-itl train
    --help`` explains each flag in full.

    Attributes:
        policy: Selection policy (``--policy``): ``auto``, ``sign``, ``fraction:P`` or a baseline such as ``loss:P``.
        judge: How ``auto`` judges a candidate drop set (``--auto-judge``): ``head`` refit or ``full`` refit.
        auto_margin: ``auto`` with ``auto_min_z`` 0: relative validation-loss margin within which fewer drops win.
        auto_min_z: ``auto`` drops only on a win beyond this many standard errors (0: the margin rule instead).
        scope: Influence parameter scope: ``head``, ``top:K`` or ``all``.
        max_drop_fraction: Never drop more than this fraction of the training instances.
        min_class_keep_fraction: Every class keeps at least this fraction of its instances (and one).
        start: What the final refit starts from (``--instance-start``): ``source`` weights or the ``warmup`` model.
        refit_epochs: Epochs of each full-judge candidate refit; None: the full ``epochs``, and the winner is final.
        solver: The inverse-Hessian-vector solve (SolverOptions: solver, hessian, damping, ...).
    """

    policy: str = option("policy")
    judge: str = option("judge")  # how auto measures a candidate: head-only refit, or full refit
    auto_margin: float = option("auto_margin")  # with auto_min_z 0: the fewest drops within this margin
    auto_min_z: float = option("auto_min_z")  # auto drops only on a win beyond this many standard errors
    scope: str = option("scope")
    max_drop_fraction: float = option("max_drop_fraction")
    min_class_keep_fraction: float = option("min_class_keep_fraction")
    start: str = option("start")
    refit_epochs: int | None = option("refit_epochs")
    solver: SolverOptions = nested(SolverOptions)

    def __post_init__(self) -> None:
        parse_policy(self.policy)
        if self.judge not in JUDGES:
            raise UserError(f"unknown auto judge {self.judge!r}; choose one of: {', '.join(JUDGES)}")
        if not 0 <= self.auto_margin < 1:
            raise UserError(f"auto margin must be in [0, 1), got {self.auto_margin}")
        if not self.auto_min_z >= 0:
            raise UserError(f"auto min z must be >= 0, got {self.auto_min_z}")
        if self.start not in INSTANCE_STARTS:
            raise UserError(f"unknown instance start {self.start!r}; choose one of: {', '.join(INSTANCE_STARTS)}")
        if self.refit_epochs is not None and self.refit_epochs <= 0:
            raise UserError(f"refit epochs must be positive, got {self.refit_epochs}")


@dataclass(frozen=True)
class TransferConfig(TrainingBudget, TargetOptions):
    """Everything one transfer run depends on; saved as ``run.json`` beside the model.

    The training budget and the target options are the keyword-only fields of TrainingBudget and
    TargetOptions. Every field but ``instance`` is a declared option (keras_itl.options) with its
    default; ``keras-itl train --help`` explains each flag in full.

    Attributes:
        target: Target dataset spec, e.g. ``digits``, ``svhn`` or ``folder:PATH`` (required).
        arch: Network architecture (``--arch``).
        method: Transfer method plug-in; None: ``model`` when ``source`` is set, else ``scratch``.
        source: Where pretrained weights come from: ``imagenet``, a dataset spec or a ``.keras`` file; None: none.
        weights: Local ImageNet no-top weights file for ``source="imagenet"``, or ``"random"``; None: Keras' own.
        image_size: Side of the square model input; None: the architecture's default.
        fine_tune_layers: Fine-tuning (``model``, ``instance``) unfreezes only the top N backbone layers; None: all.
        optimizer: ``adam`` or ``sgd`` (momentum 0.9).
        lr_schedule: Learning-rate schedule over each phase (``cosine`` or ``constant``).
        patience: Early-stopping patience in epochs; None disables early stopping.
        seed: Seed for splits, label noise, initialisation and data order.
        val_fraction: Stratified fraction of the training data held out for validation.
        data_dir: TFDS data directory; None: TFDS's default (``$TFDS_DATA_DIR`` when set).
        decisions: A decisions.csv applied to the training split before anything else; None: none.
        align_layer: ``coral``, ``mmd``, ``dann``: the layer whose output is aligned (``backbone`` or ``head``).
        instance: The ``instance`` method's options (InstanceOptions); other methods ignore them.
        method_options: The chosen method's own options by name (a plug-in method declares them); missing ones
            take their declared defaults, and another method's option set away from its default is an error.
        epochs: Epochs of target training (of the fine-tuning phase for ``model`` and ``instance``).
        head_epochs: Fine-tuning: epochs training the new head with the backbone frozen first (0 skips).
        source_epochs: Epochs of pretraining when ``source`` is a dataset.
        batch_size: Global batch size (split across replicas).
        learning_rate: Learning rate.
        fine_tune_lr_factor: Fine-tuning uses ``learning_rate`` times this; None: chosen on validation loss.
        max_train_examples: Stratified subsample of the target training split; None: all of it.
        imbalance: ``CLASS:FRACTION`` making class CLASS that share of the training split; None: as loaded.
        label_noise: Fraction of training labels flipped (seeded; the flipped ids are recorded).
        noise_kind: How a label flips: ``symmetric`` (a random other class) or ``pair`` (c -> c+1 mod K).
        target_labels: Target labels the run reads: ``all``, ``none`` or N labelled training images per class.
    """

    target: str = option("target")
    arch: str = option("arch")
    method: str | None = option("method")  # None: model with a source, else scratch
    source: str | None = option("source")
    weights: str | None = option("weights")
    image_size: int | None = option("image_size")
    fine_tune_layers: int | None = option("fine_tune_layers")
    optimizer: str = option("optimizer")
    lr_schedule: str = option("lr_schedule")
    patience: int | None = option("patience")
    seed: int = option("seed")
    val_fraction: float = option("val_fraction")
    data_dir: str | None = option("data_dir")
    decisions: str | None = option("decisions")  # a decisions.csv applied to the training split first
    align_layer: str = option("align_layer")  # coral, mmd, dann: the layer whose output is aligned
    instance: InstanceOptions = nested(InstanceOptions)
    method_options: dict = per_method()  # the chosen method's own options by name, defaults filled in

    def __post_init__(self) -> None:
        if self.method is None:
            object.__setattr__(self, "method", "model" if self.source else "scratch")
        get_architecture(self.arch)
        own = {declaration.name: declaration.default for declaration in get_method(self.method).options}
        object.__setattr__(self, "method_options", {**own, **method_options(self.method, self.method_options)})
        if get_method(self.method).uses_source and not self.source:
            raise UserError(f"--method {self.method} fine-tunes a pretrained network: pass --source "
                            "(imagenet, a dataset spec or a .keras model)")
        unlabelled = labels_per_class(self.target_labels) == 0
        if (get_method(self.method).pairs_source or unlabelled) and self.source \
                and parse_source(self.source).kind != "dataset":
            raise UserError(f"--method {self.method} with --target-labels {self.target_labels} trains on the source's "
                            f"labelled images: --source must be a dataset spec, not {self.source}")
        if unlabelled and get_method(self.method).needs_target_labels:
            raise UserError(f"--method {self.method} learns from target labels; with --target-labels none use "
                            "--method model (source-only) or a domain-adaptation method")
        if self.align_layer not in ALIGN_LAYERS:
            raise UserError(f"unknown align layer {self.align_layer!r}; choose one of: {', '.join(ALIGN_LAYERS)}")
        if self.weights is not None and self.source != IMAGENET:
            raise UserError("--weights is a local ImageNet weights file; it goes with --source imagenet")
        if self.fine_tune_layers is not None and self.fine_tune_layers <= 0:
            raise UserError(f"fine-tune layers must be positive, got {self.fine_tune_layers}")
        if self.fine_tune_lr_factor is not None and not self.fine_tune_lr_factor > 0:
            raise UserError(f"fine-tune lr factor must be positive, got {self.fine_tune_lr_factor}")
        if self.head_epochs < 0 or self.source_epochs <= 0:
            raise UserError("head epochs must be >= 0 and source epochs > 0")
        self.train_config()  # validates epochs, batch size, learning rate, optimizer, schedule

    def train_config(self, **changes) -> TrainConfig:
        """The loop settings of a phase, with ``changes`` applied (e.g. epochs, learning_rate)."""
        base = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           optimizer=self.optimizer, lr_schedule=self.lr_schedule, patience=self.patience,
                           seed=self.seed)
        return replace(base, **changes)
