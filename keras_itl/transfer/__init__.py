"""Transfer methods end to end: load the target, build the model from its source, train, test, save.

- ``scratch``: random initialisation, trained on the target.
- ``model`` (network-based fine-tuning): the source's backbone under a new head; first the head
  alone with the backbone frozen, then the backbone (all of it, or its top layers) at the learning
  rate times a factor chosen on validation loss (or set), with BatchNormalization kept in inference
  mode, so small target batches do not overwrite the source statistics.
- ``instance`` (Wang et al., 2019): a model-based warm-up on all target training data, influence
  of every training instance on the validation loss with that model (or a baseline ranking:
  highest loss, cleanlab, random), a selection of instances to drop, then the model-based
  fine-tuning again - from the source weights by default - on the kept instances with the same
  budget. Each decision uses its own part of the validation split (keras_itl.selection.validation_parts).

- ``coral``, ``mmd``, ``dann`` (domain adaptation): the model-based fine-tuning with a batch of the
  labelled source beside every target batch, adding the source's cross-entropy and a weighted
  distance between the two batches' features (``alignment``, ``domain_adaptation``).

By stage: ``config`` (TransferConfig, InstanceOptions), ``target_labels`` (what ``--target-labels``
lets a method see), ``fine_tuning`` (the model before target training, and scratch / model-based
training), ``instance_method`` (warm-up -> score -> select -> refit), ``alignment`` and
``domain_adaptation`` (the domain-adaptation terms and fit) and ``run`` (one run end to end, writing
the run directory).
"""
from keras_itl.transfer.config import RANDOM_WEIGHTS, InstanceOptions, TransferConfig
from keras_itl.transfer.fine_tuning import (
    FitResult,
    LrFactorChoice,
    build_initial_model,
    fit_target,
    freeze_for_fine_tuning,
)
from keras_itl.transfer.instance_method import InstanceMethod, run_instance_method
from keras_itl.transfer.run import TransferResult, load_target, run_transfer

__all__ = [
    "RANDOM_WEIGHTS",
    "FitResult",
    "InstanceMethod",
    "InstanceOptions",
    "LrFactorChoice",
    "TransferConfig",
    "TransferResult",
    "build_initial_model",
    "fit_target",
    "freeze_for_fine_tuning",
    "load_target",
    "run_instance_method",
    "run_transfer",
]
