"""Import TensorFlow for the server without the Keras code TensorFlow would import with it.

``import tensorflow`` ends by importing ``keras.src.optimizers``, which loads all of Keras 3 and, through
it, scikit-learn and matplotlib: about 2.5 of the 6.5 CPU seconds TensorFlow takes to import here. Its
purpose (TensorFlow's comment on it) is to register Keras optimizers in the SavedModel registry; Keras 3
registers nothing there, and the server loads SavedModels (keras-itl's exports and any other) with
``tf.saved_model.load``, which never calls Keras. So the server makes that one import fail, which
TensorFlow tolerates, and every start of ``keras-itl serve`` is that much quicker and smaller. The
legacy ``tf_keras`` path (``TF_USE_LEGACY_KERAS=1``), whose SavedModels do need their registrations,
is left as it is.
"""
from __future__ import annotations

import sys

KERAS_EAGER_IMPORT = "keras.src.optimizers"  # the module tensorflow/__init__.py imports last


def import_tensorflow_without_keras() -> None:
    """Import ``tensorflow`` (a no-op if it already is) without the eager import of Keras."""
    if "tensorflow" in sys.modules or KERAS_EAGER_IMPORT in sys.modules:
        return
    sys.modules[KERAS_EAGER_IMPORT] = None  # importing a module mapped to None raises ImportError
    try:
        import tensorflow  # noqa: F401
    finally:
        del sys.modules[KERAS_EAGER_IMPORT]  # a later ``import keras`` works as usual
