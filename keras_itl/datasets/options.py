"""Checks and parsing of the user's split options, each failure a one-line UserError."""
from __future__ import annotations

from numbers import Integral

from keras_itl import registry
from keras_itl.errors import UserError
from keras_itl.registry import NOISE_KINDS


def check_options(
    *, seed: int, val_fraction: float, test_fraction: float, max_train_examples: int | None, label_noise: float,
    noise_kind: str = registry.NOISE_KIND,
) -> None:
    """UserError for the first option outside its valid range."""
    if not isinstance(seed, Integral) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    for option, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise UserError(f"{option} must be strictly between 0 and 1, got {value}")
    if not 0 <= label_noise < 1:
        raise UserError(f"label_noise must be at least 0 and below 1, got {label_noise}")
    if noise_kind not in NOISE_KINDS:
        raise UserError(f"unknown noise kind {noise_kind!r}; choose one of: {', '.join(NOISE_KINDS)}")
    if max_train_examples is not None and (not isinstance(max_train_examples, Integral) or max_train_examples <= 0):
        raise UserError(f"max_train_examples must be a positive integer, got {max_train_examples!r}")


def parse_imbalance(text: str, class_names: list[str] | None = None) -> tuple[int | str, float]:
    """Parse ``CLASS:FRACTION`` (e.g. ``3:0.9`` or ``cat:0.9``) as given to ``--imbalance``.

    CLASS is a class index or a class name. With ``class_names`` it is resolved to an index now;
    without (the dataset is not loaded yet), an integer stays an index and anything else stays a
    name for ``load_dataset`` to resolve.
    """
    klass, separator, fraction_text = text.rpartition(":")
    if not separator or not klass:
        raise UserError(f"imbalance must look like CLASS:FRACTION (e.g. 3:0.9), got {text!r}")
    try:
        fraction = float(fraction_text)
    except ValueError:
        raise UserError(f"imbalance fraction must be a number such as 0.9, got {fraction_text!r}") from None
    check_share(fraction)
    if class_names is not None:
        return resolve_class(klass, class_names), fraction
    return (int(klass) if _is_integer(klass) else klass), fraction


def check_share(fraction: float) -> None:
    """UserError unless the majority-class share of an imbalance is strictly between 0 and 1."""
    if not 0 < fraction < 1:
        raise UserError(f"imbalance fraction must be strictly between 0 and 1, got {fraction}")


def resolve_class(klass: int | str, class_names: list[str]) -> int:
    """The index of class ``klass`` (a name, or an index as int or digits); names win over indices."""
    if isinstance(klass, str) and klass in class_names:
        return class_names.index(klass)
    if isinstance(klass, int) or _is_integer(klass):
        index = int(klass)
        if 0 <= index < len(class_names):
            return index
    raise UserError(
        f"no class {klass!r}; give an index 0..{len(class_names) - 1} or a name: {', '.join(class_names)}"
    )


def _is_integer(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()
