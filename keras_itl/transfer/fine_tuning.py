"""Network-based transfer: the model before target training, and fine-tuning it on the target.

``scratch`` trains from random initialisation. The other methods start from the source's backbone
under a new head and fine-tune in two phases: first the head alone with the backbone frozen, then
the backbone (all of it, or its top layers) at a lower learning rate with BatchNormalization kept
in inference mode, so small target batches do not overwrite the source statistics.
"""
from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from keras_itl.backbones import BACKBONE_NAME, build_model, get_architecture
from keras_itl.datasets import Split
from keras_itl.pretrained import IMAGENET, Source, load_source_into, parse_source, pretrain_on_dataset
from keras_itl.training import TrainResult, train_model
from keras_itl.transfer.config import RANDOM_WEIGHTS, TransferConfig


def build_initial_model(config: TransferConfig, num_classes: int, channels: int,
                        strategy: tf.distribute.Strategy, verbose: bool = True) -> keras.Model:
    """The model before target training: random for ``scratch``, else carrying the source's backbone."""
    image_size = config.image_size or get_architecture(config.arch).default_image_size
    source: Source | None = parse_source(config.source) if config.method != "scratch" else None
    pretrained = None
    if source is not None and source.kind == "dataset":
        pretrained = pretrain_on_dataset(
            source.spec, config.arch, image_size=image_size, channels=channels,
            config=config.train_config(epochs=config.source_epochs), strategy=strategy,
            data_dir=config.data_dir, val_fraction=config.val_fraction, verbose=verbose)
    elif source is not None and source.kind == "model":
        pretrained = source.spec
    keras.utils.set_random_seed(config.seed)
    weights = None
    if source is not None and source.kind == IMAGENET and config.weights != RANDOM_WEIGHTS:
        weights = config.weights or IMAGENET
    with strategy.scope():
        model = build_model(config.arch, num_classes, image_size=image_size, channels=channels, weights=weights)
        if pretrained is not None:
            load_source_into(model, pretrained)
    return model


def freeze_for_fine_tuning(backbone: keras.Model, top_layers: int | None) -> None:
    backbone.trainable = True
    frozen = backbone.layers[:-top_layers] if top_layers else []
    for layer in frozen:
        layer.trainable = False
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # Keras 3: a non-trainable BN layer runs in inference mode


def fit_target(model: keras.Model, train: Split, val: Split, config: TransferConfig, *,
               strategy: tf.distribute.Strategy, run_dir: Path, resume: bool = False, verbose: bool = True,
               prefix: str = "") -> list[TrainResult]:
    """Train from scratch (``scratch``) or fine-tune in two phases (the other methods), validating on ``val``."""
    if config.method == "scratch":
        return [train_model(model, train, val, config.train_config(), strategy=strategy, run_dir=run_dir,
                            name=f"{prefix}scratch", resume=resume, verbose=verbose)]
    backbone = model.get_layer(BACKBONE_NAME)
    phases = []
    if config.head_epochs:
        backbone.trainable = False
        phases.append(train_model(model, train, val, config.train_config(epochs=config.head_epochs),
                                  strategy=strategy, run_dir=run_dir, name=f"{prefix}head", resume=resume,
                                  verbose=verbose))
    freeze_for_fine_tuning(backbone, config.fine_tune_layers)
    fine_tune = config.train_config(learning_rate=config.learning_rate * config.fine_tune_lr_factor)
    phases.append(train_model(model, train, val, fine_tune, strategy=strategy, run_dir=run_dir,
                              name=f"{prefix}finetune", resume=resume, verbose=verbose))
    return phases
