"""Export a trained classifier as a TF Serving SavedModel version: ``<model_base_path>/<version>/``.

A version is written into a hidden, non-integer-named directory inside the base path and renamed
into place, so a server polling the base path never sees a half-written version. Each version has:

- ``serving_default``: ``images`` float32 ``[batch, H, W, C]`` raw pixels in [0, 255];
- ``serving_bytes``: ``image_bytes`` string ``[batch]`` of encoded PNG/JPEG/GIF/BMP images, decoded,
  converted to the model's channel count and resized to H x W inside the graph (REST clients send
  ``{"b64": ...}``); an undecodable image fails the whole request with InvalidArgument, and so does
  an image of more than ``max_decoded_pixels`` pixels (default ``MAX_DECODED_PIXELS``, 4096 x 4096),
  judged from its header before it is decoded, so a small file cannot make the server decode gigabytes;

both returning ``probabilities`` float32 ``[batch, classes]`` and ``classes`` int64 ``[batch]``.
``assets/class_names.txt`` lists the class names (line i names class i),
``assets.extra/keras_itl.json`` describes the model, and ``assets.extra/tf_serving_warmup_requests``
holds one PredictRequest that TF Serving replays before serving the version. These names and the
model-name rule come from ``keras_itl.serving_layout``, which ``keras-itl serve`` reads them from too.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

import keras_itl
from keras_itl.datasets import load_dataset
from keras_itl.errors import UserError
from keras_itl.evaluation import forward_function, load_trained_model
from keras_itl.run_record import RunRecord, restore_checkpoint
from keras_itl.serving_layout import (
    BYTES_SIGNATURE,
    CLASS_NAMES_FILE,
    DEFAULT_SIGNATURE,
    metadata_path,
    validate_model_name,
    version_number,
    warmup_path,
)

_TEMP_PREFIX = ".tmp-"
MAX_DECODED_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ExportResult:
    """Where a version was written and its number."""

    path: Path
    version: int


def versions(model_base_path: str | os.PathLike) -> list[int]:
    """The version numbers under a base path, ascending; children not named by an integer are ignored."""
    base = Path(model_base_path)
    if not base.is_dir():
        return []
    return sorted(number for child in base.iterdir()
                  if (number := version_number(child.name)) is not None and child.is_dir())


def latest_version(model_base_path: str | os.PathLike) -> int | None:
    """The largest version under the base path, or None when it has none."""
    found = versions(model_base_path)
    return found[-1] if found else None


def _image_shape(model: keras.Model) -> tuple[int, int, int]:
    """(H, W, C) of a model taking one batch of images of a fixed size with 1 or 3 channels."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or None in shape[1:] or shape[3] not in (1, 3):
        raise UserError(f"only models taking [batch, H, W, 1 or 3] images of a fixed size can be exported, "
                        f"this one takes {model.input_shape}")
    return shape[1], shape[2], shape[3]


class _ServingModule(tf.Module):
    """The exported object: the model's variables, its class-names asset and the two signature functions.

    The signatures are all TF Serving (and ``keras-itl serve``) call. Tracking the Keras model object
    itself would make ``tf.saved_model.save`` walk and retrace every layer for its own functions - four
    more traces of the whole network, most of a large backbone's export time (docs/results.md) -
    for nothing any server uses; the model is held outside the tracked attributes, its variables are not.
    """

    def __init__(self, model: keras.Model, class_names_file: Path, max_decoded_pixels: int):
        super().__init__()
        self.image_shape = _image_shape(model)  # first: a model that cannot be exported is refused untraced
        forward = forward_function(model).get_concrete_function()  # the evaluations' trace, if it was evaluated
        self._forward = lambda images: forward(images)  # a plain callable: not tracked
        self.model_variables = [variable.value for variable in model.variables]  # the tf.Variables the signatures read
        self.max_decoded_pixels = max_decoded_pixels
        self.class_names = tf.saved_model.Asset(str(class_names_file))
        height, width, channels = self.image_shape
        self.serve_images = tf.function(
            self._predict, input_signature=[tf.TensorSpec([None, height, width, channels], tf.float32, name="images")])
        self.serve_bytes = tf.function(
            self._predict_encoded, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])

    def _predict(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(self._forward(images), tf.float32)
        return {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=1, output_type=tf.int64)}

    def _predict_encoded(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        height, width, channels = self.image_shape
        headers = _Headers(image_bytes)
        with tf.control_dependencies([self._pixel_check(headers.pixels())]):
            # PNGs of the model's size, the common case, need neither the JPEG check nor a resize per image.
            rgb = tf.cond(headers.all_png_of_size(height, width),
                          lambda: tf.cast(tf.map_fn(self._decode_png, image_bytes, fn_output_signature=tf.TensorSpec(
                              [height, width, 3], tf.uint8)), tf.float32),
                          lambda: tf.map_fn(self._decode, image_bytes,
                                            fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32)))
        # The colour conversion runs once on the batch, not per image in the loop (a third of its time).
        images = rgb if channels == 3 else tf.image.rgb_to_grayscale(rgb)
        return self.serve_images(images)  # a call of the traced images signature: the network is traced once

    def _pixel_check(self, pixels: tf.Tensor) -> tf.Operation:
        """An InvalidArgument when an image's header promises more pixels than the cap, before it is decoded."""
        return tf.debugging.assert_less_equal(
            pixels, tf.constant(self.max_decoded_pixels, tf.int64),
            message=f"image has more than {self.max_decoded_pixels} pixels, the limit of this model's serving_bytes")

    def _decode_png(self, encoded: tf.Tensor) -> tf.Tensor:
        """One PNG whose header gives the model's size as RGB bytes (gray tiled, alpha dropped)."""
        height, width, _ = self.image_shape
        return tf.ensure_shape(tf.io.decode_png(encoded, channels=3), [height, width, 3])

    def _decode(self, encoded: tf.Tensor) -> tf.Tensor:
        """One encoded image as float32 RGB pixels of the model's size (gray tiled, alpha dropped by the decoder)."""
        height, width, _ = self.image_shape
        jpeg_pixels = tf.cond(tf.equal(tf.strings.substr(encoded, 0, 2), b"\xff\xd8"),
                              lambda: tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64)),
                              lambda: tf.constant(0, tf.int64))
        with tf.control_dependencies([self._pixel_check(jpeg_pixels)]):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
        return tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")


class _Headers:
    """What the headers of a batch of encoded images tell before they are decoded."""

    def __init__(self, image_bytes: tf.Tensor):
        self._padded = tf.strings.join([image_bytes, tf.fill(tf.shape(image_bytes), b"\0" * 32)])
        self._prefix = tf.strings.substr(self._padded, 0, 4)
        self._png = tf.equal(self._prefix, b"\x89PNG")
        self._png_width, self._png_height = self._int(16, 4, False), self._int(20, 4, False)

    def _int(self, offset: int, size: int, little_endian: bool) -> tf.Tensor:
        """The unsigned integer of ``size`` bytes at ``offset`` of each image."""
        digits = tf.cast(tf.io.decode_raw(tf.strings.substr(self._padded, offset, size), tf.uint8), tf.int64)
        weights = tf.constant([256**k for k in (range(size) if little_endian else reversed(range(size)))], tf.int64)
        return tf.reduce_sum(digits * weights, axis=-1)

    def pixels(self) -> tf.Tensor:
        """Width x height of each PNG, GIF or BMP image (0 for other data; JPEG headers need a parser and
        are read per image in ``_ServingModule._decode``)."""
        gif = self._int(6, 2, True) * self._int(8, 2, True)
        bmp_height = self._int(22, 4, True)  # negative (two's complement) for top-down bitmaps
        bmp = self._int(18, 4, True) * tf.where(bmp_height >= 2**31, 2**32 - bmp_height, bmp_height)
        other = tf.where(tf.equal(self._prefix, b"GIF8"), gif,
                         tf.where(tf.equal(tf.strings.substr(self._padded, 0, 2), b"BM"), bmp, tf.zeros_like(gif)))
        return tf.where(self._png, self._png_width * self._png_height, other)

    def all_png_of_size(self, height: int, width: int) -> tf.Tensor:
        """Whether every image is a PNG of ``height`` x ``width`` pixels."""
        return tf.reduce_all(self._png & tf.equal(self._png_width, width) & tf.equal(self._png_height, height))


def _warmup_log(model_name: str, image_shape: tuple[int, int, int]) -> prediction_log_pb2.PredictionLog:
    """One PredictRequest for serving_default: a batch of two mid-grey images."""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=DEFAULT_SIGNATURE))
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.full((2, *image_shape), 128.0, np.float32)))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def _write_extras(directory: Path, model_name: str, image_shape: tuple[int, int, int], class_names: list[str],
                  metadata: dict, version: int) -> None:
    metadata_path(directory).parent.mkdir()
    described = {**metadata, "class_names": class_names, "input_shape": list(image_shape), "version": version,
                 "signatures": [DEFAULT_SIGNATURE, BYTES_SIGNATURE],
                 "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                 "keras_itl_version": keras_itl.__version__}
    metadata_path(directory).write_text(json.dumps(described, indent=2, default=str))
    with tf.io.TFRecordWriter(str(warmup_path(directory))) as writer:
        writer.write(_warmup_log(model_name, image_shape).SerializeToString())


def export_model(model: keras.Model, model_base_path: str | os.PathLike, *, class_names: list[str],
                 metadata: dict, version: int | None = None, max_decoded_pixels: int = MAX_DECODED_PIXELS
                 ) -> ExportResult:
    """Write ``model`` as version ``version`` (default: one above the latest) under ``model_base_path``.

    ``class_names[i]`` names output i; ``metadata`` (JSON-serialisable; architecture, source, target,
    method, metrics, ...) goes into ``assets.extra/keras_itl.json`` with the class names, input shape,
    export time and keras-itl version. Refuses to overwrite an existing version. ``serving_bytes``
    refuses images of more than ``max_decoded_pixels`` pixels.

    Args:
        model: The trained classifier to export (raw pixels in, class probabilities out).
        model_base_path: TF Serving model base path; its last component is the model name.
        class_names: The name of each output, in output order.
        metadata: JSON-serialisable description of the model, written to ``assets.extra/keras_itl.json``.
        version: Version number to write; None: one above the latest under ``model_base_path`` (1 if none).
        max_decoded_pixels: Largest image (width x height) the ``serving_bytes`` signature decodes.

    Returns:
        The path of the new version directory and its number.

    Raises:
        UserError: for a bad model name, class names that do not fit the model, or a version that is not
            positive, exists already or was taken by another exporter meanwhile.
    """
    base = Path(model_base_path)
    model_name = validate_model_name(base.name)
    num_classes = model.output_shape[-1]
    if len(class_names) != num_classes:
        raise UserError(f"the model predicts {num_classes} classes but {len(class_names)} class names were given")
    if any("\n" in name for name in class_names):
        raise UserError("class names must not contain line breaks (class_names.txt holds one per line)")
    if version is None:
        version = (latest_version(base) or 0) + 1
    elif version <= 0:
        raise UserError(f"a version must be a positive integer, got {version}")
    final = base / str(version)
    if version in versions(base) or final.exists():  # "0006" is version 6 as well
        raise UserError(f"version {version} already exists at {final}; versions are never overwritten")
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        names_file = staging / CLASS_NAMES_FILE
        names_file.write_text("".join(f"{name}\n" for name in class_names))
        module = _ServingModule(model, names_file, max_decoded_pixels)
        exported = staging / "savedmodel"
        tf.saved_model.save(module, str(exported), signatures={
            DEFAULT_SIGNATURE: module.serve_images.get_concrete_function(),
            BYTES_SIGNATURE: module.serve_bytes.get_concrete_function()})
        _write_extras(exported, model_name, module.image_shape, list(class_names), metadata, version)
        try:
            os.rename(exported, final)
        except OSError as error:  # another exporter took this version meanwhile
            raise UserError(f"cannot publish version {version} at {final}: {error.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(path=final, version=version)


@dataclass
class Exportable:
    """A trained model with what an export needs besides its weights."""

    model: keras.Model
    class_names: list[str]
    metadata: dict


def load_exportable(path: str | os.PathLike, *, target: str | None = None) -> Exportable:
    """A ``.keras`` file, a ``keras-itl train`` run directory, or a run's ``checkpoints/<phase>`` directory.

    Class names come from ``target`` (a dataset spec) when given, else from the run, else "0".."K-1";
    metadata comes from the run's run.json when there is one. A checkpoint directory is restored
    (latest checkpoint) into a model rebuilt from the run's configuration.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"no model at {path}; pass a .keras file, a keras-itl train run directory or a "
                        "run's checkpoints/<phase> directory")
    checkpoint = tf.train.latest_checkpoint(str(path)) if path.is_dir() else None
    if checkpoint is not None:
        model, run = restore_checkpoint(path, checkpoint)
        metadata = {**run.export_metadata(), "metrics": None, "checkpoint": checkpoint}
    else:
        model = load_trained_model(path)
        run = RunRecord.read(path if path.is_dir() else path.parent)
        metadata = run.export_metadata() if run else {"architecture": model.name, "model_file": str(path)}
    num_classes = model.output_shape[-1]
    if target is not None:
        class_names = load_dataset(target).info.class_names
        metadata["target"] = target
    elif run is not None:
        class_names = run.class_names
    else:
        class_names = [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise UserError(f"the model predicts {num_classes} classes but its target has {len(class_names)}")
    return Exportable(model=model, class_names=list(class_names), metadata=metadata)
