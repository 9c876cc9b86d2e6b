"""Backbones: every architecture builds small, takes raw pixels, and transfers its backbone."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_itl.backbones import ARCHITECTURES, BACKBONE_NAME, HEAD_NAME, build_model, copy_backbone
from keras_itl.errors import UserError


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_builds_and_takes_raw_pixels(arch):
    channels = 3 if ARCHITECTURES[arch].needs_rgb else 1
    model = build_model(arch, 7, image_size=32, channels=channels)
    assert model.input_shape == (None, 32, 32, channels)
    assert model.get_layer(HEAD_NAME).units == 7
    assert model.get_layer(BACKBONE_NAME).count_params() > 0
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, channels)).astype("float32")
    probs = np.asarray(model(pixels))
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # Preprocessing is inside the model: scaling the input changes what the backbone sees.
    assert not np.allclose(probs, np.asarray(model(pixels / 255.0)), atol=1e-6)


def test_application_model_round_trips_through_keras_file(tmp_path):
    model = build_model("densenet121", 3, image_size=32)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(pixels)), np.asarray(model(pixels)), atol=1e-6)


def test_backbone_copies_between_different_heads():
    source = build_model("small-cnn", 10, image_size=16, channels=1)
    target = build_model("small-cnn", 3, image_size=16, channels=1)
    copy_backbone(source, target)
    for a, b in zip(source.get_layer(BACKBONE_NAME).get_weights(), target.get_layer(BACKBONE_NAME).get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match="does not match"):
        copy_backbone(source, build_model("small-cnn", 3, image_size=16, channels=3))


def test_unknown_architecture_lists_the_choices():
    with pytest.raises(UserError, match="small-cnn, vgg16, resnet50, densenet121"):
        build_model("alexnet", 3)


def test_missing_local_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--weights PATH"):
        build_model("resnet50", 3, image_size=32, weights=str(tmp_path / "missing.h5"))
