"""``model``: network-based transfer - the source's backbone under a new head, fine-tuned on the target."""
from __future__ import annotations

from keras_itl.methods import Method, MethodInputs, MethodOutcome, register


def fit(inputs: MethodInputs) -> MethodOutcome:
    """The head alone first, then the backbone at the fine-tuning rate (see ``keras_itl.transfer.fine_tuning``)."""
    from keras_itl.transfer.fine_tuning import fit_target

    fitted = fit_target(inputs.model, inputs.data.split("train"), inputs.data.split("val"), inputs.config,
                        strategy=inputs.strategy, run_dir=inputs.run_dir, resume=inputs.resume,
                        verbose=inputs.verbose)
    return MethodOutcome(fitted.phases, fine_tuning=fitted.lr_factor.to_dict())


register(Method(name="model", position=1, fit=fit,
                help="fine-tune the source's backbone under a new head (network-based transfer)"))
