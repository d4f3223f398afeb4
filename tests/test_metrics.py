import math

import pytest

from stabench.metrics import compute, higher_is_better


def test_metrics_against_hand_computed_values():
    labels = [1, 1, 1, 0, 0, 0, 1, 0]
    preds = [1, 1, 0, 0, 1, 0, 1, 0]
    # TP=3 FN=1 FP=1 TN=3
    got = compute(["f1", "mcc"], labels, preds)
    assert got["accuracy"] == pytest.approx(6 / 8)
    assert got["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert got["mcc"] == pytest.approx((3 * 3 - 1 * 1) / math.sqrt(4 * 4 * 4 * 4))


def test_constant_predictions_have_zero_mcc_and_majority_accuracy():
    labels = [0, 0, 0, 1]
    got = compute(["mcc", "f1"], labels, [0, 0, 0, 0])
    assert got == {"mcc": 0.0, "f1": 0.0, "accuracy": 0.75}


def test_directions_and_unknown_metrics():
    assert higher_is_better("mcc") and not higher_is_better("train_loss")
    with pytest.raises(ValueError, match="unknown metric 'bleu'; known metrics: accuracy"):
        compute(["bleu"], [0], [0])
