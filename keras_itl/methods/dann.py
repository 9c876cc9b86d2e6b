"""``dann``: adversarial transfer (DANN, Ganin et al. 2016) - fine-tune like ``model`` while a domain classifier
behind a gradient reversal layer learns to tell source from target features and the features learn to fool it."""
from __future__ import annotations

from keras_itl import registry
from keras_itl.methods import Method, MethodInputs, MethodOutcome, register
from keras_itl.options import Option


def fit(inputs: MethodInputs) -> MethodOutcome:
    """The model-based schedule with the source beside the target and DANN's domain loss, its reversed gradient
    scaled by --dann-weight times the scheduled coefficient; the domain classifier is checkpointed with the model."""
    from keras_itl.training.pairing import feature_width
    from keras_itl.transfer.alignment import DomainConfusion, domain_classifier
    from keras_itl.transfer.domain_adaptation import fit_aligned

    config = inputs.config
    with inputs.strategy.scope():
        classifier = domain_classifier(feature_width(inputs.model, config.align_layer), config.seed)
    return fit_aligned(inputs, DomainConfusion(classifier), config.method_options["dann_weight"], state=classifier)


register(Method(name="dann", position=5, fit=fit, pairs_source=True, unlabelled_target=True,
                needs_target_labels=False,
                help="fine-tune with the source beside the target and a domain classifier behind a gradient "
                     "reversal layer (DANN)",
                options=(Option("dann_weight", "--dann-weight", registry.DANN_WEIGHT, "--method dann: weight of "
                                "the domain classifier's loss; the features get its gradient reversed and scaled "
                                "by 2/(1+exp(-10p))-1 over each phase's progress p.", kind="float",
                                check="non-negative"),)))
