"""Metrics against hand-computed confusion matrices."""

import math

import numpy as np
import pytest
import torch

from cocoseg.shared.confusion import confusion_matrix
from cocoseg.shared.metrics import scores


def test_hand_computed_case_with_ignore():
    labels = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    preds = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = confusion_matrix(labels, preds, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = scores(cm)
    # class 0: I=1, U=2+2-1=3; class 1: I=2, U=2+3-2=3; class 2: I=1, U=2+1-1=2
    assert s["iou"].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert s["dice"].tolist() == pytest.approx([2 / 4, 4 / 5, 2 / 3])
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)


def test_class_absent_from_labels_and_predictions_is_left_out():
    labels = torch.tensor([0, 0, 1, 1])
    preds = torch.tensor([0, 0, 1, 0])
    s = scores(confusion_matrix(labels, preds, 4))
    assert math.isnan(s["iou"][2]) and math.isnan(s["iou"][3])
    assert s["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_class_predicted_but_never_labelled_counts_as_zero():
    labels = torch.tensor([0, 0, 1, 1])
    preds = torch.tensor([0, 2, 1, 1])
    s = scores(confusion_matrix(labels, preds, 3))
    assert s["iou"][2] == 0.0
    assert s["miou"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_same_result_whatever_batch_size_or_order():
    rng = np.random.default_rng(0)
    # Images differ in the classes they hold and in how well they are predicted, as real ones do.
    labels = torch.from_numpy(np.stack([rng.choice(rng.choice(5, size=rng.integers(1, 4), replace=False),
                                                   size=(16, 16)) for _ in range(24)]))
    labels[torch.from_numpy(rng.random(labels.shape) < 0.1)] = 255
    right = torch.from_numpy(rng.random(labels.shape) < rng.uniform(0.3, 0.95, size=(24, 1, 1)))
    preds = torch.where(right, labels.clamp(max=4), torch.from_numpy(rng.integers(0, 5, size=labels.shape)))
    whole = scores(confusion_matrix(labels, preds, 5))
    per_batch_means = []
    for batch_size in (1, 5, 24):
        order = torch.from_numpy(rng.permutation(24))
        cm = sum(confusion_matrix(labels[order[i:i + batch_size]], preds[order[i:i + batch_size]], 5)
                 for i in range(0, 24, batch_size))
        s = scores(cm)
        assert s["miou"] == pytest.approx(whole["miou"], abs=1e-12)
        assert s["pixel_accuracy"] == pytest.approx(whole["pixel_accuracy"], abs=1e-12)
        per_batch_means.append(np.mean([scores(confusion_matrix(labels[order[i:i + batch_size]],
                                                                 preds[order[i:i + batch_size]], 5))["miou"]
                                        for i in range(0, 24, batch_size)]))
    assert max(per_batch_means) - min(per_batch_means) > 0.02  # what averaging per batch would do


def test_label_outside_the_classes_is_an_error():
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix(torch.tensor([7]), torch.tensor([0]), 3)
