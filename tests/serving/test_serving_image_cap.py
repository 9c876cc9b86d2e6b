"""The exported ``serving_bytes`` signature refuses images over its pixel cap, judged from the header alone."""
from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_itl.backbones import build_model
from keras_itl.export import MAX_DECODED_PIXELS, export_model

CAP = 20 * 20


@pytest.fixture(scope="module")
def serving_bytes(tmp_path_factory):
    model = build_model("small-cnn", 2, image_size=8, channels=1)
    result = export_model(model, tmp_path_factory.mktemp("export") / "capped", class_names=["a", "b"], metadata={},
                          max_decoded_pixels=CAP)
    loaded = tf.saved_model.load(str(result.path))
    return loaded, loaded.signatures["serving_bytes"]


def _encoded(size: tuple[int, int], image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 90, np.uint8)).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "BMP"])
def test_images_within_the_cap_are_served_and_bigger_ones_refused(serving_bytes, image_format):
    _, signature = serving_bytes
    ok = signature(image_bytes=tf.constant([_encoded((20, 20), image_format)]))
    assert ok["probabilities"].shape == (1, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"more than {CAP} pixels"):
        signature(image_bytes=tf.constant([_encoded((21, 20), image_format)]))


def test_default_cap_refuses_a_huge_png_without_decoding_it(tmp_path):
    # 8000 x 8000 would take ~190 MB decoded; the header says so in its first 24 bytes.
    header_only = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (8000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    model = build_model("small-cnn", 2, image_size=8, channels=1)
    loaded = tf.saved_model.load(str(export_model(model, tmp_path / "m", class_names=["a", "b"], metadata={}).path))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"more than {MAX_DECODED_PIXELS} pixels"):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([header_only]))
