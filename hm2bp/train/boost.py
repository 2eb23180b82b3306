"""Boosting of misclassified training samples (`docs/algorithm.md` §3.10).

Every training sample has a weight (initially 1) that multiplies its output error delta, hence its whole data
gradient. After each epoch, with `correct[i]` the correctness of sample i's forward pass during that epoch:
for each class c, `err_c = sum(w_i, i in c and wrong) / sum(w_i, i in c)`, and every wrong sample of c gets
`w_i <- w_i * exp(err_c / 20)`. Correct samples keep their weight; there is no renormalisation.
Weights are indexed by sample index (they follow the samples through any shuffle).
"""

from __future__ import annotations

import numpy as np

BOOST_DIVISOR = 20.0


def initial_weights(n_samples: int) -> np.ndarray:
    """All-ones float64 [n_samples]."""
    return np.ones(n_samples, dtype=np.float64)


def class_error_rates(weights: np.ndarray, labels: np.ndarray, correct: np.ndarray, n_classes: int) -> np.ndarray:
    """Weighted error rate err_c per class, float64 [n_classes] (0 for a class without samples)."""
    labels = np.asarray(labels, dtype=np.int64)
    total = np.bincount(labels, weights=weights, minlength=n_classes)
    wrong = np.bincount(labels, weights=np.where(correct, 0.0, weights), minlength=n_classes)
    return np.divide(wrong, total, out=np.zeros(n_classes), where=total > 0)


def update_boost(weights: np.ndarray, labels: np.ndarray, correct: np.ndarray, n_classes: int) -> np.ndarray:
    """New sample weights after one epoch (a new array; float64 [n]).

    `weights` float [n], `labels` int [n] in [0, n_classes), `correct` bool [n].
    """
    weights = np.asarray(weights, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if not (len(weights) == len(labels) == len(correct)):
        raise ValueError(f"boost: {len(weights)} weights, {len(labels)} labels, {len(correct)} correctness flags")
    err = class_error_rates(weights, labels, correct, n_classes)
    factor = np.exp(err / BOOST_DIVISOR)[np.asarray(labels, dtype=np.int64)]
    return np.where(correct, weights, weights * factor)
