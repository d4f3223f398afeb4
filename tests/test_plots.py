"""Smoke tests for stabench.plots: each figure is written as a real PNG."""
from __future__ import annotations

import numpy as np
import pytest

from stabench.plots import plot_comparison, plot_grad_norm_traces, plot_study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    assert path.exists()
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5_000


def test_plot_study(tmp_path):
    rng = np.random.default_rng(0)
    scores = {
        "default": list(np.concatenate([rng.normal(0.65, 0.05, 12), np.full(13, 0.473)])),
        "stable": list(rng.normal(0.70, 0.02, 25)),
    }
    path = plot_study(scores, majority=0.473, metric="accuracy", title="RTE", path=tmp_path / "nested" / "rte.png")
    _assert_png(path)


def test_plot_study_without_majority_and_empty_input(tmp_path):
    _assert_png(plot_study({"only": [0.1, 0.2, 0.3]}, None, "mcc", "CoLA", tmp_path / "cola.png"))
    with pytest.raises(ValueError):
        plot_study({}, None, "mcc", "empty", tmp_path / "empty.png")


def test_plot_comparison(tmp_path):
    rng = np.random.default_rng(1)
    path = plot_comparison(
        rng.normal(0.7, 0.01, 25), rng.normal(0.68, 0.03, 25), "f1", "MRPC", tmp_path / "cmp.png", labels=("main", "pr")
    )
    _assert_png(path)


def test_plot_grad_norm_traces(tmp_path):
    steps = list(range(0, 500, 10))
    groups = ["embeddings"] + [f"layer.{i}" for i in range(24)] + ["pooler", "classifier"]
    rng = np.random.default_rng(2)

    def trace(vanishing: bool):
        decay = np.exp(-np.arange(len(steps)) / 5) if vanishing else np.ones(len(steps))
        return {
            "step": steps,
            "grad_norm": {
                group: list((0.1 + depth / len(groups)) * decay * rng.uniform(0.8, 1.2, len(steps)))
                for depth, group in enumerate(groups)
            },
        }

    path = plot_grad_norm_traces(
        {"seed 3 (failed)": trace(True), "seed 4": trace(False)}, tmp_path / "grads.png", "RTE gradient norms"
    )
    _assert_png(path)
