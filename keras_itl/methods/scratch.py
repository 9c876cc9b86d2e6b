"""``scratch``: the target alone, from random initialisation - the baseline transfer must beat."""
from __future__ import annotations

from keras_itl.methods import Method, MethodInputs, MethodOutcome, register


def fit(inputs: MethodInputs) -> MethodOutcome:
    """Train every layer on the target, early-stopped on its validation split."""
    from keras_itl.training import train_model

    config = inputs.config
    return MethodOutcome([train_model(inputs.model, inputs.data.split("train"), inputs.data.split("val"),
                                      config.train_config(), strategy=inputs.strategy, run_dir=inputs.run_dir,
                                      name="scratch", resume=inputs.resume, verbose=inputs.verbose)])


register(Method(name="scratch", position=0, uses_source=False, fit=fit,
                help="train on the target from random initialisation"))
