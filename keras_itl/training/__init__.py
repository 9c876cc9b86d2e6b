"""One custom training loop under tf.distribute, with checkpoints, early stopping and history."""
from keras_itl.training.loop import TrainConfig, TrainingDiverged, TrainResult, train_model
from keras_itl.training.strategy import make_strategy

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "make_strategy", "train_model"]
