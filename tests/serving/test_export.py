"""Export to TF Serving SavedModels, TFX-style blessing and push, through the Python API and the CLI."""
from __future__ import annotations

import io
import json

import keras
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
from click.testing import CliRunner
from tensorflow_serving.apis import prediction_log_pb2

from keras_itl.backbones import build_model
from keras_itl.blessing import BLESSING_FILE
from keras_itl.cli.main import main
from keras_itl.datasets import load_dataset
from keras_itl.errors import UserError
from keras_itl.export import export_model, versions
from tests.helpers import bright_quadrant_split

SIZE = 12
TOY_CLASSES = ["north-west", "north-east", "south-west", "south-east"]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_one_line_error(result, *fragments):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def _model(num_classes: int, channels: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_model("small-cnn", num_classes, image_size=SIZE, channels=channels)


def _fit(model: keras.Model, images: np.ndarray, labels: np.ndarray, epochs: int) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(images.astype("float32"), labels, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def toy():
    """A gray 12x12 model trained on bright-quadrant images (so its predicted classes vary), and test images."""
    train = bright_quadrant_split(256, size=SIZE, seed=1)
    model = _fit(_model(4, 1, seed=0), train.images, train.labels, epochs=3)
    images = bright_quadrant_split(8, size=SIZE, seed=2).images.astype("float32")
    return model, images


@pytest.fixture(scope="module")
def exported(toy, tmp_path_factory):
    model, _ = toy
    base = tmp_path_factory.mktemp("export") / "toy"
    result = export_model(model, base, class_names=TOY_CLASSES, metadata={"method": "model", "dropped_instances": 3})
    return result, tf.saved_model.load(str(result.path))


def _png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(tf.constant(image, tf.uint8)).numpy()


def test_versions_count_up_from_the_largest_integer_directory(toy, tmp_path):
    model, _ = toy
    base = tmp_path / "toy"
    first = export_model(model, base, class_names=TOY_CLASSES, metadata={})
    second = export_model(model, base, class_names=TOY_CLASSES, metadata={})
    assert (first.version, second.version) == (1, 2)
    assert first.path == base / "1" and (second.path / "saved_model.pb").is_file()
    for ignored in ("latest", "7b", ".tmp-old"):
        (base / ignored).mkdir()
    (base / "0006").mkdir()  # TF Serving reads 0006 as version 6
    assert export_model(model, base, class_names=TOY_CLASSES, metadata={}).version == 7
    assert versions(base) == [1, 2, 6, 7]
    for taken in (2, 6):
        with pytest.raises(UserError, match="already exists"):
            export_model(model, base, class_names=TOY_CLASSES, metadata={}, version=taken)
    with pytest.raises(UserError, match="class names"):
        export_model(model, base, class_names=TOY_CLASSES[:3], metadata={})


def test_export_writes_aside_and_leaves_nothing_when_it_fails(toy, tmp_path, monkeypatch):
    model, _ = toy
    base = tmp_path / "toy"
    export_model(model, base, class_names=TOY_CLASSES, metadata={})
    assert sorted(p.name for p in base.iterdir()) == ["1"]

    seen = []

    def save_then_fail(module, path, signatures):
        seen.append(path)
        real_save(module, path, signatures=signatures)
        raise OSError("disk full")

    real_save = tf.saved_model.save
    monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export_model(model, base, class_names=TOY_CLASSES, metadata={})
    assert seen and tf.io.gfile.exists(seen[0]) is False  # it was written inside the base path, then removed
    assert seen[0].startswith(str(base / ".tmp-"))
    assert sorted(p.name for p in base.iterdir()) == ["1"]


def test_serving_default_matches_the_keras_model(toy, exported):
    model, images = toy
    _, loaded = exported
    outputs = loaded.signatures["serving_default"](images=tf.constant(images))
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(outputs["classes"].numpy(), expected.argmax(axis=1))
    assert outputs["classes"].dtype == tf.int64 and len(set(outputs["classes"].numpy())) > 1


def test_a_model_built_under_a_distribution_strategy_exports_its_trained_weights(toy, tmp_path):
    _, images = toy
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        model = _model(4, 1, seed=7)
    head = model.get_layer("head").kernel
    head.assign(np.random.default_rng(0).normal(size=head.shape).astype("float32"))
    loaded = tf.saved_model.load(str(export_model(model, tmp_path / "toy", class_names=TOY_CLASSES, metadata={}).path))
    np.testing.assert_allclose(loaded.signatures["serving_default"](images=images)["probabilities"].numpy(),
                               model.predict(images, verbose=0), atol=1e-5)


def test_serving_bytes_decodes_and_resizes_like_the_float_path(toy, exported):
    model, images = toy
    _, loaded = exported
    serve_bytes = loaded.signatures["serving_bytes"]
    outputs = serve_bytes(image_bytes=tf.constant([_png(image) for image in images]))
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(outputs["classes"].numpy(), expected.argmax(axis=1))

    large = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)  # 24x24, resized back inside the graph
    resized = tf.image.resize(large, (SIZE, SIZE), method="bilinear").numpy()
    outputs = serve_bytes(image_bytes=tf.constant([_png(image) for image in large]))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), model.predict(resized, verbose=0), atol=1e-5)


def test_pngs_of_the_models_size_decode_as_in_any_other_batch(toy, exported):
    """A batch of PNGs of the model's size skips the per-image JPEG check and resize; one larger image in
    the batch takes every image through them, with the same answers."""
    _, images = toy
    serve_bytes = exported[1].signatures["serving_bytes"]
    rgba = np.concatenate([images, np.repeat(images, 2, axis=-1), np.full_like(images, 255.0)], axis=-1)
    pngs = [_png(image) for image in images] + [_png(image) for image in rgba]
    alone = serve_bytes(image_bytes=tf.constant(pngs))["probabilities"].numpy()
    larger = _png(np.repeat(np.repeat(images[0], 2, axis=0), 2, axis=1))
    mixed = serve_bytes(image_bytes=tf.constant([*pngs, larger]))["probabilities"].numpy()
    np.testing.assert_allclose(mixed[:-1], alone, atol=1e-6)
    np.testing.assert_allclose(alone[:len(images)], alone[len(images):], atol=1e-6)  # RGBA of gray pixels: gray


def test_serving_bytes_converts_gray_and_colour_images(toy, exported, tmp_path):
    gray_model, gray_images = toy
    rgb_images = np.random.default_rng(3).integers(0, 256, (4, SIZE, SIZE, 3)).astype("float32")
    # RGB (and RGBA, JPEG) into the gray model: converted with the same formula as training data.
    rgba = np.concatenate([rgb_images, np.full((4, SIZE, SIZE, 1), 255.0, np.float32)], axis=-1)
    outputs = exported[1].signatures["serving_bytes"](image_bytes=tf.constant([_png(i) for i in rgba]))
    expected = gray_model.predict(tf.image.rgb_to_grayscale(rgb_images).numpy(), verbose=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-4)
    jpeg = tf.io.encode_jpeg(tf.constant(rgb_images[0], tf.uint8)).numpy()
    assert exported[1].signatures["serving_bytes"](image_bytes=tf.constant([jpeg]))["probabilities"].shape == (1, 4)

    # Gray into an RGB model: tiled to three channels.
    rgb_model = _model(4, 3, seed=5)
    loaded = tf.saved_model.load(str(export_model(rgb_model, tmp_path / "rgb", class_names=TOY_CLASSES,
                                                  metadata={}).path))
    outputs = loaded.signatures["serving_bytes"](image_bytes=tf.constant([_png(i) for i in gray_images]))
    expected = rgb_model.predict(np.repeat(gray_images, 3, axis=-1), verbose=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(outputs["classes"].numpy(), expected.argmax(axis=1))


def test_serving_bytes_reads_gif_and_bmp(toy, exported):
    model, images = toy
    expected = model.predict(images, verbose=0)
    for image_format in ("GIF", "BMP"):  # GIF decodes to RGB: converted back to gray in the graph
        encoded = []
        for image in images.astype(np.uint8):
            stream = io.BytesIO()
            PIL.Image.fromarray(image[..., 0], "L").save(stream, image_format)
            encoded.append(stream.getvalue())
        outputs = exported[1].signatures["serving_bytes"](image_bytes=tf.constant(encoded))
        np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-3, err_msg=image_format)


def test_an_undecodable_image_fails_the_request(toy, exported):
    _, images = toy
    batch = tf.constant([_png(images[0]), b"definitely not an image"])
    with pytest.raises(tf.errors.InvalidArgumentError):
        exported[1].signatures["serving_bytes"](image_bytes=batch)


def test_class_names_metadata_and_warmup_requests_are_written(toy, exported):
    model, _ = toy
    result, loaded = exported
    assert (result.path / "assets" / "class_names.txt").read_text().splitlines() == TOY_CLASSES
    assert loaded.class_names.asset_path.numpy().decode().startswith(str(result.path))
    metadata = json.loads((result.path / "assets.extra" / "keras_itl.json").read_text())
    assert metadata["method"] == "model" and metadata["dropped_instances"] == 3
    assert metadata["class_names"] == TOY_CLASSES and metadata["input_shape"] == [SIZE, SIZE, 1]
    assert metadata["version"] == 1 and metadata["exported_at"] and metadata["keras_itl_version"]

    records = list(tf.data.TFRecordDataset(str(result.path / "assets.extra" / "tf_serving_warmup_requests")))
    assert len(records) == 1
    request = prediction_log_pb2.PredictionLog.FromString(records[0].numpy()).predict_log.request
    assert request.model_spec.name == "toy" and request.model_spec.signature_name == "serving_default"
    images = tf.make_ndarray(request.inputs["images"])
    assert images.dtype == np.float32 and images.shape[1:] == (SIZE, SIZE, 1)
    np.testing.assert_allclose(loaded.signatures["serving_default"](images=images)["probabilities"].numpy(),
                               model.predict(images, verbose=0), atol=1e-5)


def _fake_run(run_dir, model, class_names, drop_ids):
    """A keras-itl train run directory as run_transfer writes it: model.keras, a checkpoint and run.json."""
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), run_dir / "checkpoints" / "finetune", 2).save()
    run = {"config": {"target": "toy", "arch": "small-cnn", "method": "instance", "source": "mnist-5k",
                      "image_size": SIZE, "seed": 0},
           "test": {"loss": 0.3, "accuracy": 0.9, "error_rate": 0.1, "num_examples": 40},
           "dataset": {"num_classes": len(class_names), "class_names": class_names, "image_shape": [8, 8, 1]},
           "influence": {"selection": {"drop_ids": drop_ids}}}
    (run_dir / "run.json").write_text(json.dumps(run))


def test_cli_exports_a_run_directory_a_checkpoint_and_a_bare_keras_file(toy, tmp_path):
    model, images = toy
    _fake_run(tmp_path / "run", model, TOY_CLASSES, ["toy/1", "toy/5"])
    base = tmp_path / "models"

    result = _invoke("export", "--model", tmp_path / "run", "--name", "toy", "--base-path", base)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"exported {base / 'toy' / '1'} (version 1)"
    metadata = json.loads((base / "toy" / "1" / "assets.extra" / "keras_itl.json").read_text())
    assert (metadata["architecture"], metadata["method"], metadata["source"]) == ("small-cnn", "instance", "mnist-5k")
    assert metadata["dropped_instances"] == 2 and metadata["metrics"]["error_rate"] == 0.1
    assert metadata["class_names"] == TOY_CLASSES and metadata["training_options"]["image_size"] == SIZE

    result = _invoke("export", "--model", tmp_path / "run" / "checkpoints" / "finetune", "--name", "toy",
                     "--base-path", base)
    assert result.exit_code == 0, result.output
    assert "(version 2)" in result.output
    restored = tf.saved_model.load(str(base / "toy" / "2")).signatures["serving_default"](images=images)
    np.testing.assert_allclose(restored["probabilities"].numpy(), model.predict(images, verbose=0), atol=1e-5)

    result = _invoke("export", "--model", tmp_path / "run" / "model.keras", "--name", "bare", "--base-path", base)
    assert result.exit_code == 0, result.output
    (tmp_path / "loose").mkdir()
    model.save(tmp_path / "loose" / "toy.keras")
    result = _invoke("export", "--model", tmp_path / "loose" / "toy.keras", "--name", "bare", "--base-path", base)
    assert "(version 2)" in result.output, result.output
    assert (base / "bare" / "2" / "assets" / "class_names.txt").read_text().splitlines() == ["0", "1", "2", "3"]
    result = _invoke("export", "--model", tmp_path / "loose" / "toy.keras", "--name", "bare", "--base-path", base,
                     "--target", "digits")
    _assert_one_line_error(result, "4 classes", "10")


def test_cli_rejects_bad_names_and_missing_models_in_one_line(toy, tmp_path):
    model, _ = toy
    model.save(tmp_path / "toy.keras")
    for name in ("a/b", "..", "x..y", "a\\b"):
        result = _invoke("export", "--model", tmp_path / "toy.keras", "--name", name, "--base-path", tmp_path / "m")
        _assert_one_line_error(result, "invalid model name")
    result = _invoke("push", "--model", tmp_path / "toy.keras", "--serving-dir", tmp_path / "..", "--force")
    _assert_one_line_error(result, "invalid model name")
    result = _invoke("export", "--model", tmp_path / "missing.keras", "--name", "toy", "--base-path", tmp_path / "m")
    _assert_one_line_error(result, "no model at")
    result = _invoke("push", "--model", tmp_path / "toy.keras", "--serving-dir", tmp_path / "m" / "toy")
    _assert_one_line_error(result, "no blessing", "evaluate")
    assert not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def digits_models(tmp_path_factory):
    """Three digits classifiers at 12x12 in their own directories: one trained, two untrained (worse)."""
    root = tmp_path_factory.mktemp("digits")
    train = load_dataset("digits").split("train")
    images = tf.image.resize(train.images.astype("float32"), (SIZE, SIZE)).numpy()
    models = {"good": _fit(_model(10, 1, seed=0), images, train.labels, epochs=4),
              "bad": _model(10, 1, seed=1), "worse": _model(10, 1, seed=2)}
    for name, model in models.items():
        (root / name).mkdir()
        model.save(root / name / "model.keras")
    return {name: root / name / "model.keras" for name in models}


def _blessing(model_file):
    return json.loads((model_file.parent / BLESSING_FILE).read_text())


def test_bless_and_push_publish_only_models_not_worse_than_the_served_one(digits_models, tmp_path):
    base = tmp_path / "saved_models" / "digits"
    result = _invoke("evaluate", "--model", digits_models["bad"], "--target", "digits", "--baseline", base)
    assert result.exit_code == 0, result.output
    assert "blessed: no version under" in result.output
    assert _blessing(digits_models["bad"])["blessed"] is True
    result = _invoke("push", "--model", digits_models["bad"], "--serving-dir", base, "--target", "digits")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"pushed {base / '1'} as version 1"

    result = _invoke("evaluate", "--model", digits_models["good"], "--target", "digits", "--baseline", base)
    assert result.exit_code == 0, result.output
    good = _blessing(digits_models["good"])
    assert good["blessed"] is True and good["baseline_version"] == 1 and good["split"] == "test"
    assert good["candidate_error"] < good["baseline_error"] and good["threshold"] == 0.0
    assert "blessed: candidate test error" in result.output
    printed = json.loads((digits_models["good"].parent / "metrics-test.json").read_text())["error_rate"]
    assert good["candidate_error"] == printed
    result = _invoke("push", "--model", digits_models["good"], "--serving-dir", base, "--target", "digits")
    assert result.exit_code == 0, result.output
    assert "as version 2" in result.output and versions(base) == [1, 2]
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]  # no staging directory left behind

    result = _invoke("evaluate", "--model", digits_models["worse"], "--target", "digits", "--baseline", base)
    assert result.exit_code == 0, result.output
    worse = _blessing(digits_models["worse"])
    assert worse["blessed"] is False and worse["baseline_version"] == 2
    assert worse["baseline_error"] == pytest.approx(good["candidate_error"])  # the SavedModel scores as the .keras
    assert "NOT blessed" in result.output
    result = _invoke("push", "--model", digits_models["worse"], "--serving-dir", base)
    _assert_one_line_error(result, "not blessed", "--force")
    assert versions(base) == [1, 2]

    result = _invoke("evaluate", "--model", digits_models["worse"], "--target", "digits", "--baseline", base,
                     "--threshold", 1.0)
    assert _blessing(digits_models["worse"])["blessed"] is True, result.output
    result = _invoke("push", "--model", digits_models["good"], "--serving-dir", base)  # blessed against version 1
    _assert_one_line_error(result, "stale blessing")
    result = _invoke("push", "--model", digits_models["good"], "--serving-dir", tmp_path / "other" / "digits")
    _assert_one_line_error(result, "not", "other")
    result = _invoke("push", "--model", digits_models["bad"], "--serving-dir", base, "--force")
    assert result.exit_code == 0 and "as version 3" in result.output, result.output
    assert versions(base) == [1, 2, 3]


def test_a_real_training_run_exports_from_its_directory_and_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    trained = _invoke("train", "--target", "digits", "--image-size", SIZE, "--max-train-examples", 60, "--epochs", 1,
                      "--quiet", "--output", run)
    assert trained.exit_code == 0, trained.output
    base = tmp_path / "models"
    for model_path in (run, run / "checkpoints" / "scratch"):
        result = _invoke("export", "--model", model_path, "--name", "digits", "--base-path", base)
        assert result.exit_code == 0, result.output
    images = tf.image.resize(load_dataset("digits").split("test").images[:16].astype("float32"), (SIZE, SIZE))
    expected = keras.saving.load_model(run / "model.keras").predict(images, verbose=0)
    for version in (1, 2):  # one epoch: the final model is the last checkpoint
        served = tf.saved_model.load(str(base / "digits" / str(version))).signatures["serving_default"]
        np.testing.assert_allclose(served(images=images)["probabilities"].numpy(), expected, atol=1e-5)
        metadata = json.loads((base / "digits" / str(version) / "assets.extra" / "keras_itl.json").read_text())
        assert metadata["method"] == "scratch" and metadata["class_names"] == [str(i) for i in range(10)]
    (base / "digits" / "3").mkdir()  # an integer directory that is not a SavedModel
    result = _invoke("evaluate", "--model", run, "--baseline", base / "digits")
    assert result.exit_code == 1 and "Error: cannot load the baseline" in result.output.splitlines()[-1]
    assert "Traceback" not in result.output
