"""``instance``: instance-based transfer (Wang et al., 2019) - drop the target training instances a ranking
(influence on the validation loss by default) finds harmful, then fine-tune on the rest."""
from __future__ import annotations

from keras_itl.methods import Method, MethodInputs, MethodOutcome, register


def fit(inputs: MethodInputs) -> MethodOutcome:
    """Warm up -> rank -> select -> refit (see ``keras_itl.transfer.instance_method``)."""
    from keras_itl.transfer.instance_method import run_instance_method

    phases, report, files = run_instance_method(inputs.model, inputs.data, inputs.config, strategy=inputs.strategy,
                                                run_dir=inputs.run_dir, resume=inputs.resume, verbose=inputs.verbose)
    return MethodOutcome(phases, fine_tuning=report["fine_tune_lr_factor"], influence=report, files=files)


register(Method(name="instance", position=2, fit=fit,
                help="drop the training instances a ranking finds harmful (--policy), then fine-tune on the rest"))
