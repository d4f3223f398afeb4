import math

import pytest

from stabench.metrics import check_metrics, compute, higher_is_better


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


def test_macro_f1_is_the_unweighted_mean_of_per_class_f1():
    # Imbalanced three classes, so the macro and the support-weighted mean differ.
    labels = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    preds = [0, 0, 0, 0, 0, 1, 1, 2, 2, 0]
    # class 0: TP=5 FP=1 FN=1 -> F1 = 10/12; class 1: TP=1 FP=1 FN=1 -> 1/2; class 2: TP=1 FP=1 FN=1 -> 1/2
    per_class = [10 / 12, 1 / 2, 1 / 2]
    got = compute(["macro_f1"], labels, preds)
    assert got["macro_f1"] == pytest.approx(sum(per_class) / 3)
    assert got["macro_f1"] != pytest.approx((6 * per_class[0] + 2 * per_class[1] + 2 * per_class[2]) / 10)
    assert got["accuracy"] == pytest.approx(7 / 10)


def test_f1_without_any_positive_is_zero_not_one():
    # No positive label and no positive prediction: precision and recall are 0/0, scored as 0.
    got = compute(["f1", "macro_f1"], [0, 0, 0], [0, 0, 0])
    assert got["f1"] == 0.0
    assert got["accuracy"] == 1.0


def test_binary_f1_is_refused_for_more_than_two_classes_before_training():
    check_metrics(["accuracy", "f1"], 2, "pairs")
    check_metrics(["macro_f1"], 3, "nli")
    with pytest.raises(ValueError, match=r"^task 'nli' has 3 classes, but its metric 'f1' is binary F1"):
        check_metrics(["accuracy", "f1"], 3, "nli")
