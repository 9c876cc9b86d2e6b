"""``coral``: mapping-based transfer (Deep CORAL, Sun & Saenko 2016) - fine-tune like ``model`` while the
distance between the source and target feature covariances is added to the loss."""
from __future__ import annotations

from keras_itl import registry
from keras_itl.methods import Method, MethodInputs, MethodOutcome, register
from keras_itl.options import Option


def fit(inputs: MethodInputs) -> MethodOutcome:
    """The model-based schedule with the source beside the target and the CORAL distance weighted by --coral-weight."""
    from keras_itl.transfer.alignment import coral_distance
    from keras_itl.transfer.domain_adaptation import fit_aligned

    return fit_aligned(inputs, lambda source, target, progress: coral_distance(source, target),
                       inputs.config.method_options["coral_weight"])


register(Method(name="coral", position=3, fit=fit, pairs_source=True, unlabelled_target=True,
                needs_target_labels=False,
                help="fine-tune with the source beside the target, aligning their feature covariances (Deep CORAL)",
                options=(Option("coral_weight", "--coral-weight", registry.CORAL_WEIGHT, "--method coral: weight of "
                                "the CORAL distance in the loss.", kind="float", check="non-negative"),)))
