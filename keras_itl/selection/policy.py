"""Selection policies as written on the command line: ``kind`` or ``kind:P`` (P a fraction).

The kinds are those of the registered rankers (``keras_itl.selection.ranker``): ``sign``,
``fraction:P`` and ``auto`` rank by influence; every other kind is a baseline ranker of its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from keras_itl.errors import UserError
from keras_itl.selection.ranker import Ranker, all_rankers, ranker_for


def policy_texts() -> list[str]:
    """Every policy form: ['sign', 'fraction:P', 'auto', 'cleanlab', 'loss:P', ...] (P strictly between 0 and 1)."""
    return [f"{kind}:P" if kind in ranker.fraction_kinds else kind
            for ranker in all_rankers().values() for kind in ranker.kinds]


def policy_forms() -> str:
    """Every policy form in words, e.g. 'sign, fraction:P, auto, cleanlab, loss:P or random:P'."""
    forms = policy_texts()
    return f"{', '.join(forms[:-1])} or {forms[-1]} (0 < P < 1)"


def policy_help() -> str:
    """What each ranker's policies do, for --policy's help."""
    influence, *baselines = all_rankers().values()
    return f"{influence.help}. Baselines: {'; '.join(ranker.help for ranker in baselines)}."


@dataclass(frozen=True)
class Policy:
    """A parsed selection policy; ``str(policy)`` gives back its text form, e.g. ``fraction:0.1``."""

    kind: str
    fraction: float | None = None

    def __post_init__(self) -> None:
        ranker = ranker_for(self.kind)
        if ranker is None or (self.kind in ranker.fraction_kinds) != (self.fraction is not None):
            raise UserError(f"unknown selection policy {str(self)!r}; use {policy_forms()}")
        if self.fraction is not None and not 0 < self.fraction < 1:
            raise UserError(f"selection policy {str(self)!r}: the fraction must be strictly between 0 and 1")

    def __str__(self) -> str:
        return self.kind if self.fraction is None else f"{self.kind}:{float(self.fraction)!r}"

    @property
    def ranker(self) -> Ranker:
        """The ranker whose order this policy walks."""
        return ranker_for(self.kind)

    @property
    def family(self) -> str:
        """The ranker's name: 'influence' for sign, fraction and auto, else the baseline's own kind."""
        return self.ranker.name


def parse_policy(text: str) -> Policy:
    """The policy written as ``kind`` or ``kind:P`` (see ``policy_forms``); case and surrounding spaces are ignored."""
    text = text.strip().lower()
    kind, colon, value = text.partition(":")
    ranker = ranker_for(kind)
    if ranker is not None and kind in ranker.fraction_kinds and colon:
        try:
            fraction = float(value)
        except ValueError:
            raise UserError(f"selection policy {text!r}: {value!r} is not a number; use {policy_forms()}") from None
        return Policy(kind, fraction)
    if ranker is not None and kind not in ranker.fraction_kinds and not colon:
        return Policy(kind)
    raise UserError(f"unknown selection policy {text!r}; use {policy_forms()}")
