"""``mmd``: mapping-based transfer (DAN, Long et al. 2015) - fine-tune like ``model`` while a multi-kernel
maximum mean discrepancy between the source and target features is added to the loss."""
from __future__ import annotations

from keras_itl import registry
from keras_itl.methods import Method, MethodInputs, MethodOutcome, register
from keras_itl.options import Option


def fit(inputs: MethodInputs) -> MethodOutcome:
    """The model-based schedule with the source beside the target and the MK-MMD weighted by --mmd-weight."""
    from keras_itl.transfer.alignment import mmd_distance
    from keras_itl.transfer.domain_adaptation import fit_aligned

    return fit_aligned(inputs, lambda source, target, progress: mmd_distance(source, target),
                       inputs.config.method_options["mmd_weight"])


register(Method(name="mmd", position=4, fit=fit, pairs_source=True, unlabelled_target=True,
                needs_target_labels=False,
                help="fine-tune with the source beside the target, minimising a multi-kernel MMD of their features "
                     "(DAN)",
                options=(Option("mmd_weight", "--mmd-weight", registry.MMD_WEIGHT, "--method mmd: weight of the "
                                "MMD in the loss.", kind="float", check="non-negative"),)))
