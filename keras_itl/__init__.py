"""keras-itl: instance-based deep transfer learning for TensorFlow/Keras."""

__version__ = "0.1.0"
