"""Transfer methods as plug-ins: what a method is, and the registry of methods by name.

Every module in this package (but this one) is one method and registers itself: ``scratch``,
``model`` (network-based fine-tuning), ``instance`` (influence-based instance selection, then
fine-tuning), and the domain-adaptation methods ``coral``, ``mmd`` (mapping-based) and ``dann``
(adversarial), which fine-tune like ``model`` with the labelled source drawn beside the target.
``run_transfer``, the CLI's ``--method`` choices, the presets and the experiment's rows all read the
registry, so adding a method is adding a file here; an unknown name is an error.

A method gets the model built for it (from the source's backbone when ``uses_source``, else random)
and the target data as ``--target-labels`` lets it see them, trains the model in place through
``keras_itl.training.train_model`` (whose ``loss_term`` hook adds a term to the training loss, and whose
``pairing`` draws another split's batches beside the target's with a term on both, as the
domain-adaptation methods do), and returns what it trained and what it wants recorded. Method modules
keep TensorFlow imports inside ``fit``: the CLI lists the methods while it declares its options.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from keras_itl.errors import UserError
from keras_itl.options import Option, declare_option
from keras_itl.plugins import import_plugins

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from keras_itl.datasets import TargetDataset
    from keras_itl.training import TrainResult
    from keras_itl.transfer.config import TransferConfig


@dataclass
class MethodInputs:
    """What a method trains: the initial ``model`` (built under ``strategy``), the target data and the run's
    config, with where to checkpoint (``run_dir``), whether to ``resume`` and whether to print progress."""

    model: keras.Model
    data: TargetDataset
    config: TransferConfig
    strategy: tf.distribute.Strategy
    run_dir: Path
    resume: bool = False
    verbose: bool = True


@dataclass
class MethodOutcome:
    """What a method did: its training phases in order, and what ``run.json`` records of it.

    ``fine_tuning``: the fine-tuning rate factor kept and its evidence; ``influence``: the selection report
    of a method that selects instances; ``files``: extra files it wrote into the run directory.
    """

    phases: list[TrainResult]
    fine_tuning: dict | None = None
    influence: dict | None = None
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """One registered transfer method.

    ``position`` orders the methods in ``--method``'s choices and an experiment's table (lower first);
    ``uses_source``: the model it gets carries the source's backbone (else it is randomly initialised).
    ``options``: the method's own user options (declared like every other, see ``keras_itl.options``); a
    run's values are in ``config.method_options`` by option name.
    ``pairs_source``: trains on the source's labelled images beside the target's (needs a dataset ``--source``;
    the paper's presets leave such methods out). ``unlabelled_target``: gets the target's unlabelled training
    images too (label -1) under ``--target-labels N`` or ``none``, else only the labelled ones.
    ``needs_target_labels``: refused with ``--target-labels none``.
    """

    name: str
    help: str
    fit: Callable[[MethodInputs], MethodOutcome]
    uses_source: bool = True
    position: int = 100
    options: tuple[Option, ...] = ()
    pairs_source: bool = False
    unlabelled_target: bool = False
    needs_target_labels: bool = True


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` and its options to the registries (its module calls this when imported); a second method
    of a name, or an option name already declared, is an error."""
    if method.name in _METHODS:
        raise ValueError(f"a method named {method.name!r} is already registered")
    for declaration in method.options:
        declare_option(replace(declaration, method=method.name))
    _METHODS[method.name] = method
    return method


def all_methods() -> dict[str, Method]:
    """Every method by name, in ``position`` order: the modules of this package, then any registered since."""
    import_plugins(__name__)
    return dict(sorted(_METHODS.items(), key=lambda item: (item[1].position, item[0])))


def method_names() -> tuple[str, ...]:
    """The registered methods' names, in table order."""
    return tuple(all_methods())


def get_method(name: str) -> Method:
    """The method called ``name``, or a one-line error listing the ones there are."""
    methods = all_methods()
    if name not in methods:
        raise UserError(f"unknown method {name!r}; choose one of: {', '.join(methods)}")
    return methods[name]
