"""One custom training loop under tf.distribute, with checkpoints, early stopping and history."""
from keras_itl.training.compiled_step import LossTerm
from keras_itl.training.loop import TrainConfig, TrainingDiverged, TrainResult, train_model
from keras_itl.training.pairing import PairedBatch, PairedTerm, Pairing
from keras_itl.training.run_options import guard_run_options
from keras_itl.training.strategy import is_chief, make_strategy

__all__ = ["LossTerm", "PairedBatch", "PairedTerm", "Pairing", "TrainConfig", "TrainResult", "TrainingDiverged",
           "guard_run_options", "is_chief", "make_strategy", "train_model"]
