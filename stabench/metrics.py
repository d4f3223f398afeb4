"""Task metrics (scikit-learn) and the direction in which each one is better."""
from __future__ import annotations

from collections.abc import Sequence

# scikit-learn's function and arguments per metric; imported when scoring, so that defining a
# task (tasks imports this module) does not pay for scikit-learn.
_METRICS = {
    "accuracy": ("accuracy_score", {}),
    "f1": ("f1_score", {"zero_division": 0.0}),  # of class 1: binary tasks
    "macro_f1": ("f1_score", {"average": "macro", "zero_division": 0.0}),
    "mcc": ("matthews_corrcoef", {}),
}

# Whether a larger value is better; comparisons and regression gates read this.
HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "macro_f1": True, "mcc": True, "train_loss": False}

# Metrics defined for two classes only.
BINARY_ONLY = ("f1",)


def known_metrics() -> tuple[str, ...]:
    """The metric names a task may list."""
    return tuple(_METRICS)


def check_metrics(metric_names: Sequence[str], num_labels: int, task: str) -> None:
    """Before training: a binary metric on a task with more classes would fail only after it."""
    binary = [name for name in metric_names if name in BINARY_ONLY]
    if binary and num_labels > 2:
        raise ValueError(f"task {task!r} has {num_labels} classes, but its metric {binary[0]!r} is binary F1 (of "
                         f"class 1); use 'macro_f1' for more classes")


def higher_is_better(metric: str) -> bool:
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(HIGHER_IS_BETTER)}")
    return HIGHER_IS_BETTER[metric]


def compute(metric_names: Sequence[str], labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """Each named metric; accuracy is always included, since the failure test is on accuracy."""
    names = dict.fromkeys([*metric_names, "accuracy"])
    for name in names:
        if name not in _METRICS:
            raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(_METRICS)}")
    from sklearn import metrics as sklearn_metrics

    scores = {}
    for name in names:
        function, kwargs = _METRICS[name]
        scores[name] = float(getattr(sklearn_metrics, function)(labels, predictions, **kwargs))
    return scores
