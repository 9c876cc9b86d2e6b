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
from keras_itl.options import TargetOptions, TrainingBudget, nested, option
from keras_itl.pretrained import IMAGENET
from keras_itl.registry import AUTO_JUDGES as JUDGES
from keras_itl.registry import INSTANCE_STARTS
from keras_itl.selection import parse_policy
from keras_itl.training import TrainConfig

RANDOM_WEIGHTS = "random"  # --weights random: run an ImageNet pipeline without the weights (offline smoke tests)


@dataclass(frozen=True)
class InstanceOptions:
    """How ``instance`` ranks, selects and refits (see keras_itl.selection), and how it solves for influence."""

    policy: str = option("policy")
    judge: str = option("judge")  # how auto measures a candidate: head-only refit, or full refit
    auto_margin: float = option("auto_margin")  # auto keeps the fewest drops within this margin of the lowest
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
    TargetOptions."""

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
    instance: InstanceOptions = nested(InstanceOptions)

    def __post_init__(self) -> None:
        if self.method is None:
            object.__setattr__(self, "method", "model" if self.source else "scratch")
        get_architecture(self.arch)
        if get_method(self.method).uses_source and not self.source:
            raise UserError(f"--method {self.method} fine-tunes a pretrained network: pass --source "
                            "(imagenet, a dataset spec or a .keras model)")
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
