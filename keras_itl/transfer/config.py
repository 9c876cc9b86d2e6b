"""What one transfer run depends on: ``TransferConfig`` (saved as ``run.json``'s ``config``) and the
instance method's ``InstanceOptions``, each checked on construction with one-line errors. Defaults
and choices come from keras_itl.registry.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from keras_itl import registry
from keras_itl.backbones import get_architecture
from keras_itl.errors import UserError
from keras_itl.influence import SolverOptions
from keras_itl.pretrained import IMAGENET
from keras_itl.registry import AUTO_JUDGES as JUDGES
from keras_itl.registry import INSTANCE_STARTS
from keras_itl.selection import parse_policy
from keras_itl.training import TrainConfig

RANDOM_WEIGHTS = "random"  # --weights random: run an ImageNet pipeline without the weights (offline smoke tests)


@dataclass(frozen=True)
class InstanceOptions:
    """How ``instance`` scores, selects and refits (see keras_itl.influence and keras_itl.selection)."""

    policy: str = registry.POLICY
    scope: str = registry.SCOPE
    solver: str = registry.SOLVER
    hessian: str = registry.HESSIAN
    damping: float = registry.DAMPING
    max_drop_fraction: float = registry.MAX_DROP_FRACTION
    min_class_keep_fraction: float = registry.MIN_CLASS_KEEP_FRACTION
    start: str = registry.INSTANCE_START
    refit_epochs: int | None = None
    damping_retries: int = registry.DAMPING_RETRIES  # a failed solve after a long warm-up retries, not crash
    cg_max_iterations: int = registry.CG_MAX_ITERATIONS
    lissa_scale: float = registry.LISSA_SCALE
    lissa_depth: int = registry.LISSA_DEPTH
    lissa_batch_size: int | None = None
    judge: str = registry.AUTO_JUDGE  # how auto measures a candidate: head-only refit, or full refit
    auto_margin: float = registry.AUTO_MARGIN  # auto keeps the fewest drops within this margin of the lowest
    auto_min_z: float = registry.AUTO_MIN_Z  # auto drops only on a win beyond this many standard errors

    def __post_init__(self) -> None:
        parse_policy(self.policy)
        self.solver_options()
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

    def solver_options(self, seed: int = 0) -> SolverOptions:
        """The influence solver settings these options describe."""
        return SolverOptions(solver=self.solver, hessian=self.hessian, damping=self.damping,
                             damping_retries=self.damping_retries, cg_max_iterations=self.cg_max_iterations,
                             lissa_scale=self.lissa_scale, lissa_depth=self.lissa_depth,
                             lissa_batch_size=self.lissa_batch_size, seed=seed)


@dataclass(frozen=True)
class TransferConfig(registry.TrainingBudget, registry.TargetOptions):
    """Everything one transfer run depends on; saved as ``run.json`` beside the model.

    The training budget and the target options are the keyword-only fields of TrainingBudget and
    TargetOptions."""

    target: str
    arch: str = registry.ARCH
    method: str = "model"
    source: str | None = None
    weights: str | None = None
    image_size: int | None = None
    fine_tune_layers: int | None = None
    optimizer: str = registry.OPTIMIZER
    lr_schedule: str = registry.LR_SCHEDULE
    patience: int | None = registry.PATIENCE
    seed: int = registry.SEED
    val_fraction: float = registry.VAL_FRACTION
    data_dir: str | None = None
    decisions: str | None = None  # a decisions.csv applied to the training split first (keras_itl.decisions)
    instance: InstanceOptions = InstanceOptions()

    def __post_init__(self) -> None:
        get_architecture(self.arch)
        if self.method not in registry.METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of: {', '.join(registry.METHODS)}")
        if self.method != "scratch" and not self.source:
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
