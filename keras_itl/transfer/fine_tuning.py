"""Network-based transfer: the model before target training, and fine-tuning it on the target.

A method that uses the source starts from the source's backbone under a new head; ``model`` (and the
instance method's warm-up and refits) fine-tune it in two phases: first the head alone with the backbone frozen, then
the backbone (all of it, or its top layers) with BatchNormalization kept in inference mode, so
small target batches do not overwrite the source statistics.

The fine-tuning rate is the learning rate times a factor. Unless the user sets it, the factor is
chosen from data: each candidate of ``registry.FINE_TUNE_LR_FACTORS`` fine-tunes from the same
trained head, and the one with the lowest validation loss (on the split that early-stops the phase)
is kept - the weights of that candidate's run, not a retrain. A factor that suits an ImageNet
backbone (low, to keep its features) starves a small source network of the change a new domain needs,
and the other way round; only the target's own validation data can tell which case a run is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import tensorflow as tf

from keras_itl import registry
from keras_itl.backbones import BACKBONE_NAME, build_model, get_architecture
from keras_itl.datasets import Split
from keras_itl.methods import get_method
from keras_itl.pretrained import IMAGENET, Source, load_source_into, parse_source, pretrain_on_dataset
from keras_itl.training import Pairing, TrainResult, train_model
from keras_itl.transfer.config import RANDOM_WEIGHTS, TransferConfig


def build_initial_model(config: TransferConfig, num_classes: int, channels: int,
                        strategy: tf.distribute.Strategy, verbose: bool = True) -> keras.Model:
    """The model before target training: carrying the source's backbone when the method uses a source, else
    randomly initialised."""
    image_size = config.image_size or get_architecture(config.arch).default_image_size
    source: Source | None = parse_source(config.source) if get_method(config.method).uses_source else None
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


@dataclass(frozen=True)
class LrFactorChoice:
    """The fine-tuning rate factor a fit used, and the evidence: each candidate's best validation loss."""

    factor: float
    chosen_by: str  # "validation" (searched among the candidates) or "option" (the user's factor)
    val_losses: dict[str, float]  # candidate factor (as text) -> its phase's lowest validation loss

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One progress line, e.g. ``fine-tune: lr factor 1 chosen on validation loss (0.1: 0.52, 1: 0.31)``."""
        losses = ", ".join(f"{factor}: {loss:.4f}" for factor, loss in self.val_losses.items())
        how = "chosen on validation loss" if self.chosen_by == "validation" else "as set"
        return f"fine-tune: lr factor {self.factor:g} {how} ({losses})"


@dataclass
class FitResult:
    """The phases a fit trained, in order, and for fine-tuning the rate factor it kept."""

    phases: list[TrainResult]
    lr_factor: LrFactorChoice


def fit_target(model: keras.Model, train: Split, val: Split, config: TransferConfig, *,
               strategy: tf.distribute.Strategy, run_dir: Path, resume: bool = False, verbose: bool = True,
               prefix: str = "", pairing: Pairing | None = None) -> FitResult:
    """Fine-tune in two phases - the head alone, then the backbone - validating on ``val``.

    ``pairing`` draws its split's batches beside the training batches in every phase (the domain-adaptation
    methods' source, keras_itl.transfer.domain_adaptation). With ``config.fine_tune_lr_factor`` None the
    fine-tuning phase runs once per candidate factor from the same head weights and ``model`` ends with the
    candidate of lowest validation loss."""
    backbone = model.get_layer(BACKBONE_NAME)
    phases = []
    if config.head_epochs:
        backbone.trainable = False
        phases.append(train_model(model, train, val, config.train_config(epochs=config.head_epochs),
                                  strategy=strategy, run_dir=run_dir, name=f"{prefix}head", resume=resume,
                                  verbose=verbose, pairing=pairing))
    freeze_for_fine_tuning(backbone, config.fine_tune_layers)
    searching = config.fine_tune_lr_factor is None
    factors = registry.FINE_TUNE_LR_FACTORS if searching else (config.fine_tune_lr_factor,)
    head_weights = model.get_weights() if searching else None  # every candidate starts from the trained head
    val_losses, best, best_weights = {}, None, None  # best: (loss, factor)
    for factor in factors:
        if searching:
            model.set_weights(head_weights)
        phase = train_model(model, train, val, config.train_config(learning_rate=config.learning_rate * factor),
                            strategy=strategy, run_dir=run_dir,
                            name=f"{prefix}finetune-lr{factor:g}" if searching else f"{prefix}finetune",
                            resume=resume, verbose=verbose, pairing=pairing)
        phases.append(phase)
        loss = min((record["val_loss"] for record in phase.history if "val_loss" in record), default=float("inf"))
        val_losses[f"{factor:g}"] = loss
        if best is None or loss < best[0]:
            best = (loss, factor)
            if searching:
                best_weights = model.get_weights()
    choice = LrFactorChoice(best[1], "validation" if searching else "option", val_losses)
    if searching:
        model.set_weights(best_weights)
        if verbose:
            print(choice.describe(), flush=True)
    return FitResult(phases, choice)
