"""Label smoothing on integer labels: the targets it trains towards."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscan.train.losses import SparseSmoothedCrossentropy, training_loss


def test_no_smoothing_is_the_stock_loss() -> None:
    assert training_loss(0.0) == "sparse_categorical_crossentropy"


def test_smoothing_spreads_the_target_over_every_class() -> None:
    loss = training_loss(0.2)
    assert isinstance(loss, SparseSmoothedCrossentropy)
    labels = np.array([2, 0])
    # the smoothed target of label 2 over 4 classes: 0.05, 0.05, 0.85, 0.05
    target = np.full((2, 4), 0.05, np.float32)
    target[0, 2] = target[1, 0] = 0.85
    assert float(loss(labels, target)) < float(loss(labels, np.eye(4, dtype=np.float32)[labels]))
    predicted = np.array([[0.1, 0.2, 0.6, 0.1], [0.7, 0.1, 0.1, 0.1]], np.float32)
    expected = -np.mean(np.sum(target * np.log(predicted), axis=1))
    assert float(loss(labels, predicted)) == pytest.approx(expected, rel=1e-5)


def test_the_loss_survives_a_round_trip_through_its_config() -> None:
    loss = SparseSmoothedCrossentropy(0.1)
    assert SparseSmoothedCrossentropy.from_config(loss.get_config()).smoothing == 0.1
