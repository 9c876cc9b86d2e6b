"""``model``: network-based transfer - the source's backbone under a new head, fine-tuned on the target.

With ``--target-labels none`` there is no target label to fine-tune on: the same schedule trains on the
source's labelled images and validates on the source's validation split - the source-only baseline the
domain-adaptation methods are measured against."""
from __future__ import annotations

from keras_itl.methods import Method, MethodInputs, MethodOutcome, register


def fit(inputs: MethodInputs) -> MethodOutcome:
    """The head alone first, then the backbone at the fine-tuning rate (see ``keras_itl.transfer.fine_tuning``)."""
    from keras_itl.transfer.domain_adaptation import load_source_data
    from keras_itl.transfer.fine_tuning import fit_target
    from keras_itl.transfer.target_labels import NONE

    data, validated_on = inputs.data, "target val"
    if inputs.config.target_labels == NONE:
        data, validated_on = load_source_data(inputs.config, inputs.data.info.num_classes), "source val"
    fitted = fit_target(inputs.model, data.split("train"), data.split("val"), inputs.config,
                        strategy=inputs.strategy, run_dir=inputs.run_dir, resume=inputs.resume,
                        verbose=inputs.verbose)
    return MethodOutcome(fitted.phases, fine_tuning={**fitted.lr_factor.to_dict(), "validation": validated_on})


register(Method(name="model", position=1, fit=fit, needs_target_labels=False,
                help="fine-tune the source's backbone under a new head (network-based transfer); with "
                     "--target-labels none, on the source alone (source-only)"))
