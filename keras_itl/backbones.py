"""Classifier models: preprocessing -> backbone -> new softmax head.

Every model built here takes raw pixels in [0, 255], so an exported model needs no client-side
preprocessing. The backbone is a named sub-model (``"backbone"``) and the head a Dense layer
named ``"head"``, which lets transfer code copy backbone weights between models with different
class counts and lets influence code find the head.
"""
from __future__ import annotations

from collections.abc import Callable

import keras

from keras_itl.errors import UserError, network_failure, one_line
from keras_itl.registry import ARCHITECTURES, Architecture

BACKBONE_NAME = "backbone"
HEAD_NAME = "head"


def get_architecture(name: str) -> Architecture:
    """Look up an architecture by name, with a one-line error listing the choices."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UserError(
            f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}"
        ) from None


def _applications() -> dict[str, tuple[Callable, Callable]]:
    apps = keras.applications
    return {
        "vgg16": (apps.vgg16.VGG16, apps.vgg16.preprocess_input),
        "resnet50": (apps.resnet50.ResNet50, apps.resnet50.preprocess_input),
        "densenet121": (apps.densenet.DenseNet121, apps.densenet.preprocess_input),
    }


@keras.saving.register_keras_serializable(package="keras_itl")
class ApplicationPreprocessing(keras.layers.Layer):
    """The architecture's own ``preprocess_input``, as a layer so it is saved inside the model."""

    def __init__(self, arch: str, **kwargs):
        super().__init__(**kwargs)
        self.arch = arch
        self._preprocess = _applications()[arch][1]

    def call(self, inputs):
        return self._preprocess(inputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "arch": self.arch}


def _small_cnn(input_shape: tuple[int, int, int]) -> keras.Model:
    """A compact conv net for 8x8 to 32x32 handwriting-style images (CPU-trainable in seconds)."""
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, x, name=BACKBONE_NAME)


def _imagenet_weights_error(arch: str, weights: str, error: Exception) -> UserError:
    """Why the weights did not load, in one line, with the way to pass a local weights file."""
    hint = (f"download the '{arch}' no-top weights file where you have network access and pass "
            "--weights PATH, or place it under $KERAS_HOME/models/")
    cause = network_failure(error)
    if cause is not None:
        return UserError(f"ImageNet weights for {arch} could not be downloaded: the network is unreachable "
                         f"({one_line(cause)}); {hint}")
    return UserError(f"ImageNet weights for {arch} could not be loaded from {weights!r} ({one_line(error)}); {hint}")


def _application_backbone(
    arch: str, input_shape: tuple[int, int, int], weights: str | None
) -> keras.Model:
    constructor = _applications()[arch][0]
    try:
        base = constructor(include_top=False, weights=weights, input_shape=input_shape, pooling="avg")
    except Exception as error:  # urllib, h5py and Keras raise many unrelated types
        if weights is None:
            raise
        raise _imagenet_weights_error(arch, weights, error) from error
    # Re-wrap so the sub-model carries a stable name whatever Keras calls the application.
    return keras.Model(base.input, base.output, name=BACKBONE_NAME)


def build_model(
    arch: str,
    num_classes: int,
    *,
    image_size: int | None = None,
    channels: int = 3,
    weights: str | None = None,
) -> keras.Model:
    """Build a classifier taking ``[batch, size, size, channels]`` raw pixels in [0, 255].

    Only the Keras Applications (not ``small-cnn``) accept pretrained weights.

    Args:
        arch: Architecture name, one of keras_itl.registry.ARCHITECTURES (e.g. ``small-cnn``, ``resnet50``).
        num_classes: Number of output classes of the softmax head (at least 2).
        image_size: Side of the square input; None takes the architecture's default size.
        channels: Input channels; the Keras Applications take only 3.
        weights: ``None`` (random init), ``"imagenet"`` (Keras' cached or downloaded file) or a local no-top file.

    Returns:
        An uncompiled model: preprocessing, the ``"backbone"`` sub-model, then the Dense softmax ``"head"``.

    Raises:
        UserError: for an unknown architecture, too few classes, too small an image, wrong channels, or
            weights the architecture cannot take or load.
    """
    spec = get_architecture(arch)
    size = image_size or spec.default_image_size
    if num_classes < 2:
        raise UserError(f"a classifier needs at least 2 classes, got {num_classes}")
    if size < spec.min_image_size:
        raise UserError(f"{arch} needs images of at least {spec.min_image_size}x{spec.min_image_size}, got {size}")
    if spec.needs_rgb and channels != 3:
        raise UserError(f"{arch} takes 3-channel images, got {channels} channels")
    if weights is not None and not spec.supports_imagenet:
        raise UserError(f"{arch} has no pretrained weights to load; use a dataset or .keras model as --source")
    input_shape = (size, size, channels)
    inputs = keras.Input(input_shape, name="image")
    if spec.supports_imagenet:
        x = ApplicationPreprocessing(arch, name="preprocessing")(inputs)
        backbone = _application_backbone(arch, input_shape, weights)
    else:
        x = keras.layers.Rescaling(1.0 / 255.0, name="preprocessing")(inputs)
        backbone = _small_cnn(input_shape)
    features = backbone(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=HEAD_NAME)(features)
    return keras.Model(inputs, outputs, name=f"{arch.replace('-', '_')}_classifier")


def model_channels(arch: str, target_channels: int) -> int:
    """The channel count a model takes: 3 when the arch needs RGB or the target is RGB, else 1.

    The model serves the target domain, so source data is converted to this count, not vice versa.
    """
    return 3 if get_architecture(arch).needs_rgb or target_channels == 3 else 1


def copy_backbone(source: keras.Model, target: keras.Model) -> None:
    """Copy the source model's backbone weights into the target (the heads may differ)."""
    try:
        src = source.get_layer(BACKBONE_NAME)
    except ValueError:
        raise UserError(f"source model {source.name!r} has no '{BACKBONE_NAME}' sub-model to transfer") from None
    dst = target.get_layer(BACKBONE_NAME)
    src_shapes = [tuple(w.shape) for w in src.weights]
    dst_shapes = [tuple(w.shape) for w in dst.weights]
    if src_shapes != dst_shapes:
        raise UserError(
            f"source backbone does not match the target architecture ({len(src_shapes)} vs "
            f"{len(dst_shapes)} weight tensors or different shapes); use the same --arch, image size and channels"
        )
    dst.set_weights(src.get_weights())
