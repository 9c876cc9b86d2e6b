"""Cheap refits of the classification head alone, on backbone features computed once.

Judging a candidate drop set by a full fine-tune costs a whole training run; judging it by refitting
only the head (a multinomial logistic regression, which is what a softmax Dense layer on frozen
features is) on cached features costs milliseconds. ``auto`` uses it to compare candidates and
``cleanlab`` to get out-of-fold predicted probabilities. The fits are L-BFGS on fixed data with no
randomness, so the same features always give the same numbers.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

_EPSILON = 1e-7  # the probability clip Keras applies in its cross-entropy
HEAD_L2 = 1.0  # inverse L2 strength (sklearn's C) of every head refit


def fit_head(features: np.ndarray, labels: np.ndarray) -> LogisticRegression:
    """A softmax head fit to ``features`` -> ``labels`` (L2-regularised, deterministic L-BFGS)."""
    head = LogisticRegression(C=HEAD_L2, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return head.fit(features, labels)


def head_probabilities(head: LogisticRegression, features: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) probabilities; a class the head never saw gets probability 0."""
    probs = np.zeros((len(features), num_classes))
    probs[:, head.classes_] = head.predict_proba(features)
    return probs


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example cross-entropy of integer ``labels`` under ``probs``, clipped as Keras clips it."""
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], _EPSILON, 1.0))


def head_val_losses(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
                    val_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-example validation cross-entropy of a head refit on the given training features."""
    head = fit_head(train_features, train_labels)
    return cross_entropy(head_probabilities(head, val_features, num_classes), val_labels)


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = 5,
                              seed: int = 0) -> np.ndarray:
    """Predicted probabilities of every example from a head that never saw it (stratified K-fold refits)."""
    folds = max(2, min(folds, int(np.bincount(labels).max())))
    probs = np.zeros((len(labels), num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a class smaller than the fold count
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(features, labels))
    for fit_rows, held_rows in splits:
        head = fit_head(features[fit_rows], labels[fit_rows])
        probs[held_rows] = head_probabilities(head, features[held_rows], num_classes)
    return probs
