"""Baseline rankers (loss, cleanlab, random), head-only refits, validation parts and pair noise, on tiny data."""
from __future__ import annotations

import numpy as np
import pytest

from keras_itl.datasets import load_dataset
from keras_itl.datasets.containers import Split
from keras_itl.datasets.sampling import flip_labels
from keras_itl.errors import UserError
from keras_itl.selection import all_rankers, select_drops
from keras_itl.selection.head_refit import cross_entropy, head_val_losses, out_of_fold_probabilities
from keras_itl.selection.report import ranking_auc
from keras_itl.selection.validation_parts import PART_NAMES, split_validation, warm_up_part
from tests.helpers import ranking_inputs

NAMES = ["a", "b", "c"]


def clusters(seed=0, per_class=20, flipped=(3, 25, 47)):
    """Three well-separated Gaussian clusters (features) with the labels of ``flipped`` rows moved to c+1."""
    rng = np.random.default_rng(seed)
    clean = np.repeat(np.arange(3), per_class)
    features = np.eye(3)[clean] * 10 + rng.normal(0, 0.5, size=(len(clean), 3))
    labels = clean.copy()
    labels[list(flipped)] = (clean[list(flipped)] + 1) % 3
    return features, labels, np.array([f"i{k:02d}" for k in range(len(clean))])


def test_loss_policy_on_a_hand_made_probability_table():
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 1, 0, 2])  # losses: -log .9, -log .8, -log .2, -log .2, -log .1
    ranking = all_rankers()["loss"].rank(ranking_inputs(labels, probabilities=probs))
    np.testing.assert_allclose(ranking.suspicion, -np.log([0.9, 0.8, 0.2, 0.2, 0.1]))
    result = select_drops(["p", "q", "r", "s", "t"], labels, ranking.order_scores, policy="loss:0.6",
                          class_names=NAMES, max_drop_fraction=0.9, min_class_keep_fraction=0.0, min_per_class=0)
    assert result.drop_ids == ["t", "r", "s"]  # highest loss first; the tie r/s by id


def test_random_ranking_is_reproducible_by_seed_and_differs_across_seeds():
    def scores(seed):
        return all_rankers()["random"].rank(ranking_inputs(np.zeros(50, int), seed=seed)).order_scores

    assert np.array_equal(scores(3), scores(3))
    assert not np.array_equal(scores(3), scores(4))


def test_cleanlab_flags_exactly_the_flipped_labels_of_separable_clusters():
    features, labels, ids = clusters()
    ranking = all_rankers()["cleanlab"].rank(ranking_inputs(labels, features=features, num_classes=3))
    assert sorted(ids[ranking.eligible]) == ["i03", "i25", "i47"]
    result = select_drops(ids, labels, ranking.order_scores, policy="cleanlab", eligible=ranking.eligible,
                          class_names=NAMES)
    assert sorted(result.drop_ids) == ["i03", "i25", "i47"]
    assert ranking_auc(ranking.suspicion, ids, ["i03", "i25", "i47"]) == 1.0


def test_ranking_auc_is_none_without_both_kinds_and_half_for_a_constant():
    ids = np.array(["a", "b", "c", "d"])
    assert ranking_auc(np.arange(4.0), ids, []) is None
    assert ranking_auc(np.zeros(4), ids, ["a"]) == 0.5


def test_out_of_fold_probabilities_never_saw_their_example():
    features, labels, _ = clusters()
    probs = out_of_fold_probabilities(features, labels, 3, folds=5, seed=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # a flipped example's own (wrong) label gets a low probability only because its head never saw it
    assert (probs[[3, 25, 47], labels[[3, 25, 47]]] < 0.5).all()


def test_head_refit_judges_dropping_the_flipped_labels_better():
    features, labels, _ = clusters()
    val_features, val_labels, _ = clusters(seed=1, flipped=())
    keep = np.ones(len(labels), bool)
    everything = head_val_losses(features, labels, val_features, val_labels, 3)
    assert everything.shape == val_labels.shape  # one loss per validation example, for auto's paired test
    keep[[3, 25, 47]] = False
    cleaned = head_val_losses(features[keep], labels[keep], val_features, val_labels, 3)
    assert cleaned.mean() < everything.mean()
    np.testing.assert_array_equal(head_val_losses(features, labels, val_features, val_labels, 3),
                                  everything)  # deterministic


def test_cross_entropy_clips_like_keras():
    assert cross_entropy(np.array([[1.0, 0.0]]), np.array([1]))[0] == pytest.approx(-np.log(1e-7))


# --- validation parts ----------------------------------------------------------------------------------------


def _val_split(per_class=12, classes=4):
    labels = np.repeat(np.arange(classes), per_class)
    return Split(np.zeros((len(labels), 2, 2, 1), np.uint8), labels, np.array([f"v{k}" for k in range(len(labels))]))


def test_validation_parts_are_disjoint_cover_the_split_and_are_stratified():
    val = _val_split()
    parts = split_validation(val, 4, seed=0)
    assert tuple(parts) == PART_NAMES
    ids = [set(parts[name].ids) for name in PART_NAMES]
    assert all(not (a & b) for k, a in enumerate(ids) for b in ids[k + 1:])
    assert set().union(*ids) == set(val.ids)
    assert [len(parts[name]) for name in PART_NAMES] == [19, 19, 10]
    for name in PART_NAMES:
        assert set(parts[name].labels) == {0, 1, 2, 3}
    again = split_validation(val, 4, seed=0)
    assert all(list(again[n].ids) == list(parts[n].ids) for n in PART_NAMES)
    assert list(split_validation(val, 4, seed=1)["report"].ids) != list(parts["report"].ids)
    warm = warm_up_part(parts)  # what the warm-up validates on: everything but the report part, rows intact
    assert sorted(warm.ids) == sorted(set(val.ids) - set(parts["report"].ids))
    rows = {i: k for k, i in enumerate(val.ids)}
    assert all(warm.labels[k] == val.labels[rows[i]] for k, i in enumerate(warm.ids))


def test_one_example_per_class_is_divided_at_random():
    val = _val_split(per_class=1, classes=10)
    parts = split_validation(val, 10, seed=0)
    assert [len(parts[name]) for name in PART_NAMES] == [4, 4, 2]
    assert set().union(*(set(parts[name].ids) for name in PART_NAMES)) == set(val.ids)


def test_a_validation_split_too_small_to_divide_is_a_user_error():
    with pytest.raises(UserError, match="raise --val-fraction"):
        split_validation(_val_split(per_class=1, classes=2), 2, seed=0)


# --- pair noise ----------------------------------------------------------------------------------------------


def test_pair_noise_moves_each_flipped_label_to_the_next_class():
    labels = np.repeat(np.arange(5), 8)
    noisy, flipped = flip_labels(labels, 0.25, 5, np.random.default_rng(0), "pair")
    assert len(flipped) == 10
    assert np.array_equal(noisy[flipped], (labels[flipped] + 1) % 5)
    unflipped = np.setdiff1d(np.arange(len(labels)), flipped)
    assert np.array_equal(noisy[unflipped], labels[unflipped])


def test_pair_noise_on_digits_is_reproducible_by_seed():
    first = load_dataset("digits", seed=4, max_train_examples=100, label_noise=0.3, noise_kind="pair")
    again = load_dataset("digits", seed=4, max_train_examples=100, label_noise=0.3, noise_kind="pair")
    other = load_dataset("digits", seed=5, max_train_examples=100, label_noise=0.3, noise_kind="pair")
    assert first.info.flipped_ids == again.info.flipped_ids and len(first.info.flipped_ids) == 30
    assert np.array_equal(first.split("train").labels, again.split("train").labels)
    assert first.info.flipped_ids != other.info.flipped_ids
    clean = load_dataset("digits", seed=4, max_train_examples=100)
    flipped = np.isin(first.split("train").ids, first.info.flipped_ids)
    assert np.array_equal(first.split("train").labels[flipped], (clean.split("train").labels[flipped] + 1) % 10)


def test_unknown_noise_kind_is_a_user_error():
    with pytest.raises(UserError, match="noise kind"):
        load_dataset("digits", label_noise=0.1, noise_kind="asymmetric")
