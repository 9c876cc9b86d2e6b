"""Every option a user sets, declared once: its flag, help, type and default.

A configuration dataclass (``TransferConfig``, ``InstanceOptions``, ``SolverOptions``, the budget and
target options below) declares a user option as ``name: type = option("name")``: the field's default
is the declaration's, and the declaration rides along as field metadata. From the same table the CLI
builds its click options, the resume guard names the flag of a changed field, and the experiment's
``--dry-run`` renders ``keras-itl train`` commands. Defaults come from ``keras_itl.registry``. Pure
Python (the CLI reads this while it declares its options, before anything heavy loads); help that
lists plug-ins (methods, selection policies) is computed when the CLI asks for it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from keras_itl import registry


@dataclass(frozen=True)
class Option:
    """One user option.

    ``kind``: "int", "float", "text", "dir" (a directory path), "file" (a file path), "existing-file", a tuple of
    choices or a function giving them (registered plug-ins).
    ``check``: "positive" or "non-negative" (numbers). ``default_text``: the ``[default: ...]`` words where
    the default is None or depends on other options. ``zero_is_none``: the CLI's 0 means the field's None
    (e.g. ``--patience 0`` disables early stopping). ``help`` may be a function (help listing plug-ins).
    """

    name: str
    flag: str
    default: Any
    help: str | Callable[[], str]
    kind: str | tuple[str, ...] | Callable[[], tuple[str, ...]] = "text"
    check: str | None = None
    metavar: str | Callable[[], str] | None = None
    default_text: str | None = None
    zero_is_none: bool = False
    required: bool = False
    method: str | None = None  # the method whose own option this is (its value in config.method_options)

    def help_text(self) -> str:
        """The help, with the default where click would not show it."""
        text = self.help() if callable(self.help) else self.help
        return f"{text} [default: {self.default_text}]" if self.default_text else text


def _method_help() -> str:
    from keras_itl.methods import all_methods

    return "; ".join(f"{m.name}: {m.help}" for m in all_methods().values()) + "."


def _method_choices() -> tuple[str, ...]:
    from keras_itl.methods import method_names

    return method_names()


def _policy_help() -> str:
    from keras_itl.selection import policy_help

    return f"--method instance: which instances to drop. {policy_help()}"


def _policy_metavar() -> str:
    from keras_itl.selection import policy_texts

    return "|".join(policy_texts())


_FACTORS = ", ".join(map(str, registry.FINE_TUNE_LR_FACTORS))

OPTIONS: dict[str, Option] = {o.name: o for o in (
    # what to train
    Option("target", "--target", None, "Target dataset spec (e.g. digits, svhn, folder:PATH).", required=True),
    Option("source", "--source", None, "Where pretrained weights come from: imagenet, a dataset spec (pretrained "
           "here on it first, then cached), or a .keras model file. Omit to train from scratch."),
    Option("arch", "--arch", registry.ARCH, "Network architecture.", kind=lambda: tuple(registry.ARCHITECTURES)),
    Option("method", "--method", None, _method_help, kind=_method_choices,
           default_text="model with --source, else scratch"),
    Option("weights", "--weights", None, "Local ImageNet no-top weights file (.h5) for --source imagenet when "
           "offline; 'random' runs the pipeline without ImageNet weights (smoke tests).", kind="file"),
    Option("image_size", "--image-size", None, "Side of the square model input; images are resized to it.",
           kind="int", check="positive", default_text="28 small-cnn, 32 others"),
    # the budget
    Option("epochs", "--epochs", registry.EPOCHS, "Epochs of target training (of each fine-tuning phase for "
           "--method model and instance).", kind="int", check="positive"),
    Option("head_epochs", "--head-epochs", registry.HEAD_EPOCHS, "--method model and instance: epochs training "
           "the new head with the backbone frozen first (0 skips).", kind="int", check="non-negative"),
    Option("source_epochs", "--source-epochs", registry.SOURCE_EPOCHS, "Epochs of pretraining when --source is a "
           "dataset.", kind="int", check="positive"),
    Option("batch_size", "--batch-size", registry.BATCH_SIZE, "Global batch size (split across replicas).",
           kind="int", check="positive"),
    Option("learning_rate", "--lr", registry.LEARNING_RATE, "Learning rate.", kind="float", check="positive"),
    Option("fine_tune_lr_factor", "--fine-tune-lr-factor", registry.FINE_TUNE_LR_FACTOR, "Fine-tuning (model and "
           "instance methods) uses lr times this factor.", kind="float", check="positive",
           default_text=f"chosen on the validation data: fine-tuned once per factor of {_FACTORS} from the same "
           "head, the lowest validation loss kept"),
    Option("fine_tune_layers", "--fine-tune-layers", None, "--method model and instance: unfreeze only the top N "
           "backbone layers.", kind="int", check="positive", default_text="all"),
    Option("optimizer", "--optimizer", registry.OPTIMIZER, "Optimizer (sgd uses momentum 0.9).",
           kind=registry.OPTIMIZERS),
    Option("lr_schedule", "--lr-schedule", registry.LR_SCHEDULE, "Learning-rate schedule over each phase.",
           kind=registry.LR_SCHEDULES),
    Option("patience", "--patience", registry.PATIENCE, "Early stopping: epochs without validation-loss "
           "improvement before stopping (0 disables).", kind="int", check="non-negative", zero_is_none=True),
    # the data
    Option("seed", "--seed", registry.SEED, "Seed for splits, label noise, initialisation and data order.",
           kind="int"),
    Option("val_fraction", "--val-fraction", registry.VAL_FRACTION, "Stratified fraction of the training data held "
           "out for validation.", kind="float"),
    Option("decisions", "--decisions", None, "A decisions.csv (id,action,label; exported from a run's report.html) "
           "applied to the training split before anything else: drop removes the instance, relabel gives it the "
           "named class, keep (and relabel) pins it so no policy drops it.", kind="existing-file"),
    Option("data_dir", "--data-dir", None, "TFDS data directory holding local copies of TFDS datasets (else "
           "$TFDS_DATA_DIR).", kind="dir"),
    Option("max_train_examples", "--max-train-examples", None, "Stratified subsample of the target training split "
           "(small-target regime).", kind="int", check="positive"),
    Option("imbalance", "--imbalance", None, "Make CLASS (index or name) this fraction of the training split, e.g. "
           "0:0.9.", metavar="CLASS:FRACTION"),
    Option("label_noise", "--label-noise", registry.LABEL_NOISE, "Fraction of training labels flipped (seeded; the "
           "flipped ids are recorded).", kind="float"),
    Option("noise_kind", "--noise-kind", registry.NOISE_KIND, "How --label-noise flips a label: symmetric to a "
           "uniformly random other class; pair from class c to c+1 mod K (structured noise).",
           kind=registry.NOISE_KINDS),
    Option("target_labels", "--target-labels", registry.TARGET_LABELS, "How many target training labels the run "
           "reads: all; N labelled images per class (seeded; the rest unlabelled, the validation split keeps its "
           "labels); none (unsupervised domain adaptation: no target training or validation label is read, early "
           "stopping and the fine-tuning rate factor use the source's validation split; --method model then "
           "trains on the source alone, the source-only baseline).", metavar="all|none|N"),
    Option("align_layer", "--align-layer", registry.ALIGN_LAYER, "--method coral, mmd and dann: the layer whose "
           "output is aligned between source and target: the backbone's features or the head's probabilities.",
           kind=registry.ALIGN_LAYERS),
    # the instance method
    Option("policy", "--policy", registry.POLICY, _policy_help, metavar=_policy_metavar),
    Option("judge", "--auto-judge", registry.AUTO_JUDGE, "--policy auto: judge each candidate by a head-only refit "
           "on cached backbone features (cheap) or by a full fine-tune (slow); only the winner is fully refit "
           "either way.", kind=registry.AUTO_JUDGES),
    Option("auto_margin", "--auto-margin", registry.AUTO_MARGIN, "--policy auto with --auto-min-z 0: keep the "
           "fewest drops among candidates within this relative margin of the lowest validation loss, so tiny "
           "differences do not decide.", kind="float"),
    Option("auto_min_z", "--auto-min-z", registry.AUTO_MIN_Z, "--policy auto: drop a candidate set only if its "
           "mean per-example win over keeping everything, on the judging validation data (head judge: both "
           "cross-fitted folds pooled), exceeds this many standard errors - raised for the number of sets tested, "
           "so a lucky win among several is as rare as one test at this z (2.53 for four at 2); of those, keep "
           "the largest set the best does not beat by more (0: no such test, the --auto-margin rule).",
           kind="float"),
    Option("scope", "--scope", registry.SCOPE, f"Influence parameter scope: {registry.SCOPE_HELP}."),
    Option("max_drop_fraction", "--max-drop-fraction", registry.MAX_DROP_FRACTION, "Never drop more than this "
           "fraction of the training instances.", kind="float"),
    Option("min_class_keep_fraction", "--min-class-keep-fraction", registry.MIN_CLASS_KEEP_FRACTION, "Per-class "
           "floor: every class keeps at least this fraction of its instances (and one).", kind="float"),
    Option("start", "--instance-start", registry.INSTANCE_START, "--method instance: fine-tune the kept instances "
           "from the source weights or continue from the warm-up model.", kind=registry.INSTANCE_STARTS),
    Option("refit_epochs", "--refit-epochs", None, "--method instance --auto-judge full: fine-tuning epochs "
           "of each candidate refit (shortened budget).", kind="int", check="positive",
           default_text="the full --epochs, and the winning refit is the final model"),
    # the influence solve
    Option("solver", "--solver", registry.SOLVER, "Inverse-Hessian-vector solver: conjugate gradient, dense exact "
           "(small scopes) or LiSSA.", kind=registry.SOLVERS),
    Option("hessian", "--hessian", registry.HESSIAN, "Curvature to invert: the loss's exact Hessian, or the "
           "Gauss-Newton matrix (positive semi-definite on any scope; equal to the exact Hessian on the head).",
           kind=registry.HESSIANS),
    Option("damping", "--damping", registry.DAMPING, "Damping added to the Hessian (H + damping*I) so the solve is "
           "well posed for deep nets.", kind="float", check="non-negative"),
    Option("damping_retries", "--damping-retries", registry.DAMPING_RETRIES, "When the solve fails (not positive "
           "definite, no convergence), retry this many times, each with 10x the damping; the damping used is "
           "reported.", kind="int", check="non-negative"),
    Option("cg_max_iterations", "--cg-max-iterations", registry.CG_MAX_ITERATIONS, "--solver cg: iterations before "
           "the solve counts as failed.", kind="int", check="positive"),
    Option("lissa_scale", "--lissa-scale", registry.LISSA_SCALE, "--solver lissa: must exceed the largest "
           "eigenvalue of H + damping*I, or LiSSA diverges.", kind="float", check="positive"),
    Option("lissa_depth", "--lissa-depth", registry.LISSA_DEPTH, "--solver lissa: recursion steps; too few and the "
           "residual check fails the solve.", kind="int", check="positive"),
    Option("lissa_batch_size", "--lissa-batch-size", None, "--solver lissa: training instances sampled per step.",
           kind="int", check="positive", default_text="all of them"),
)}

def declare_option(declaration: Option) -> None:
    """Add a plug-in's option (a method's own) to the declarations; a name or flag already taken is an error."""
    taken = [o for o in OPTIONS.values() if declaration.name == o.name or declaration.flag == o.flag]
    if taken:
        raise ValueError(f"option {declaration.name!r} ({declaration.flag}) is already declared")
    OPTIONS[declaration.name] = declaration


def train_options() -> list[str]:
    """Every option of ``keras-itl train``: the declarations above and every registered method's own."""
    from keras_itl.methods import all_methods

    all_methods()  # imports the method plug-ins, which declare their options
    return list(OPTIONS)


def method_options(method: str, values: dict[str, Any]) -> dict[str, Any]:
    """The options of ``method`` among ``values`` (option name -> value), every other method's left out; another
    method's option set away from its default is an error."""
    from keras_itl.errors import UserError

    chosen = {}
    for name, value in values.items():
        declaration = OPTIONS.get(name)
        if declaration is None or declaration.method is None:
            raise UserError(f"{name!r} is not an option of any method")
        if declaration.method == method:
            chosen[name] = value
        elif value != declaration.default:
            raise UserError(f"{declaration.flag} is an option of --method {declaration.method}, not {method}")
    return chosen


# The options of a solve and of a selection, shared by `keras-itl train --method instance` and `keras-itl influence`.
SOLVER_OPTIONS = ("solver", "hessian", "damping", "damping_retries", "cg_max_iterations", "lissa_scale",
                  "lissa_depth", "lissa_batch_size")
SELECTION_LIMITS = ("max_drop_fraction", "min_class_keep_fraction")


def option(name: str) -> Any:
    """The dataclass field of user option ``name``: its default (none if it is required), with the declaration
    as metadata."""
    declaration = OPTIONS[name]
    if declaration.required:
        return dataclasses.field(metadata={"option": declaration})
    return dataclasses.field(default=declaration.default, metadata={"option": declaration})


def per_method() -> Any:
    """The dataclass field holding the chosen method's own options by name (see ``method_options``)."""
    return dataclasses.field(default_factory=dict, metadata={"method_options": True})


def nested(cls: type) -> Any:
    """A dataclass field holding another options dataclass (its default: that class's defaults)."""
    return dataclasses.field(default_factory=cls, metadata={"options": cls})


def declared(cls: type, prefix: str = "") -> Iterator[tuple[str, Option]]:
    """(dotted field path, declaration) of every user option of dataclass ``cls``, nested ones included."""
    for field in dataclasses.fields(cls):
        if "option" in field.metadata:
            yield prefix + field.name, field.metadata["option"]
        elif "options" in field.metadata:
            yield from declared(field.metadata["options"], f"{prefix}{field.name}.")


def build(cls: type, values: dict[str, Any], **fixed: Any) -> Any:
    """An instance of dataclass ``cls`` from option values by field name (nested dataclasses built alike).

    Values a command did not offer keep the field's default; ``fixed`` sets fields outright.
    """
    arguments = dict(fixed)
    for field in dataclasses.fields(cls):
        if "method_options" in field.metadata and field.name not in fixed:
            arguments[field.name] = {name: value for name, value in values.items()
                                     if name in OPTIONS and OPTIONS[name].method}
        elif "options" in field.metadata and field.name not in fixed:
            arguments[field.name] = build(field.metadata["options"], values)
        elif "option" in field.metadata and field.name in values and field.name not in fixed:
            value = values[field.name]
            arguments[field.name] = None if value == 0 and field.metadata["option"].zero_is_none else value
    return cls(**arguments)


def from_record(cls: type, record: dict[str, Any]) -> Any:
    """A dataclass of options from its ``dataclasses.asdict`` record (e.g. ``run.json``'s config), nested
    options dataclasses rebuilt."""
    values = dict(record)
    for field in dataclasses.fields(cls):
        if "options" in field.metadata and isinstance(values.get(field.name), dict):
            values[field.name] = from_record(field.metadata["options"], values[field.name])
    return cls(**values)


def flag_of(field_path: str) -> str:
    """The command-line flag of a (possibly dotted) configuration field (else its name, dashed)."""
    name = field_path.rsplit(".", 1)[-1]
    return OPTIONS[name].flag if name in OPTIONS else "--" + name.replace("_", "-")


def command_words(config: Any, defaults: Any, always: tuple[str, ...] = ()) -> list[str]:
    """The flags and values that give ``config`` on the command line: every option that differs from
    ``defaults`` (both instances of one options dataclass), and the ``always`` ones whatever their value."""
    words = []
    for path, declaration in declared(type(config)):
        value, default = _get(config, path), _get(defaults, path)
        if path in always or (value != default and (value is not None or declaration.zero_is_none)):
            words += [declaration.flag, str(0 if value is None and declaration.zero_is_none else value)]
    for name, value in getattr(config, "method_options", {}).items():
        if value != OPTIONS[name].default:
            words += [OPTIONS[name].flag, str(value)]
    return words


def _get(config: Any, path: str) -> Any:
    for name in path.split("."):
        config = getattr(config, name)
    return config


@dataclass(frozen=True, kw_only=True)
class TrainingBudget:
    """The budget a run trains with; TransferConfig and Preset both carry it (keyword-only fields)."""

    epochs: int = option("epochs")
    head_epochs: int = option("head_epochs")
    source_epochs: int = option("source_epochs")
    batch_size: int = option("batch_size")
    learning_rate: float = option("learning_rate")
    fine_tune_lr_factor: float | None = option("fine_tune_lr_factor")


@dataclass(frozen=True, kw_only=True)
class TargetOptions:
    """How the target's training data is cut down and perturbed; TransferConfig and Preset both carry it."""

    max_train_examples: int | None = option("max_train_examples")
    imbalance: str | None = option("imbalance")  # CLASS:FRACTION
    label_noise: float = option("label_noise")
    noise_kind: str = option("noise_kind")
    target_labels: str = option("target_labels")  # all | none | N labelled training images per class
