"""stabench.plots: each figure is a real PNG, and it marks what the stored runs say."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stabench import plots
from stabench.plots import plot_grad_norm_traces, plot_study
from stabench.result import RunResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    assert path.exists()
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5_000


def _runs(scores, failed, metric="accuracy", majority=0.69):
    return [RunResult(key=f"k{i}", task={"name": "t"}, model={"name": "m"}, recipe={}, recipe_name="r",
                      recipe_hash="h", seed=i, environment={}, metrics={metric: score}, primary_metric=metric,
                      majority_accuracy=majority, failed=bad, collapsed=bad, diverged=False, steps=1, wall_time_s=1.0,
                      steps_per_s=1.0, started_at="", finished_at="", trace={})
            for i, (score, bad) in enumerate(zip(scores, failed))]


@pytest.fixture
def drawn(monkeypatch):
    """The figure plot_study drew, kept open instead of saved."""
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: figures.append(figure) or path)
    return figures


def _marked_failed(axes) -> int:
    return sum(len(c.get_offsets()) for c in axes.collections if c.get_gid() == "failed")


def test_plot_study_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    scores = list(np.concatenate([rng.normal(0.65, 0.05, 12), np.full(13, 0.473)]))
    runs = {"default": _runs(scores, [s <= 0.473 for s in scores]), "stable": _runs(rng.normal(0.7, 0.02, 25),
                                                                                   [False] * 25)}
    _assert_png(plot_study(runs, tmp_path / "nested" / "a.png", "RTE"))


def test_failed_runs_are_the_stored_ones_and_the_majority_line_is_on_accuracy_only(drawn, tmp_path):
    """On CoLA the MCC of a healthy run (0.6) is below the majority accuracy (0.69): neither may mark it failed."""
    cola = {"default": _runs([0.0, 0.55, 0.6, 0.62], [True, False, False, False], metric="mcc")}
    plot_study(cola, tmp_path / "cola.png", "CoLA")
    axes = drawn[-1].axes[0]
    assert _marked_failed(axes) == 1
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["successful run", "failed run"]  # no majority
    rte = {"default": _runs([0.47, 0.47, 0.66], [True, True, False], majority=0.473)}
    plot_study(rte, tmp_path / "rte.png", "RTE")
    axes = drawn[-1].axes[0]
    assert _marked_failed(axes) == 2
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["majority class (0.473)", "successful run",
                                                                     "failed run"]


def test_a_box_needs_five_runs_and_one_evaluation_per_run_is_said_not_drawn_as_a_curve(drawn, tmp_path):
    """Quartiles of three runs mean nothing; a dev panel of single end points looked empty."""
    few, many = _runs([0.5, 0.7, 0.9], [True, False, False]), _runs([0.6, 0.7, 0.8, 0.75, 0.72], [False] * 5)
    plot_study({"few": few, "many": many}, tmp_path / "s.png", "boxes")
    axes = drawn[-1].axes[0]
    outlines = [line.get_xdata() for line in axes.lines if len(line.get_xdata()) == 5]  # a box is 5 corners
    assert [(min(x), max(x)) for x in outlines] == [(1.75, 2.25)]  # "many"'s only
    assert [t.get_text() for t in axes.get_xticklabels()] == ["few\n(n=3)", "many\n(n=5)"]
    for run in few:
        run.trace = {"step": [1, 2], "loss": [0.7, 0.6], "eval": [{"step": 2, "accuracy": run.metrics["accuracy"]}]}
    plots.plot_training_curves(few, tmp_path / "c.png", "end points")
    assert ["one dev evaluation per run, at its end: set the recipe's eval_every for curves"] == [
        t.get_text() for t in drawn[-1].axes[0].texts]
    few[0].trace["eval"].insert(0, {"step": 1, "accuracy": 0.5})
    plots.plot_training_curves(few, tmp_path / "c.png", "a curve")
    assert not drawn[-1].axes[0].texts


def test_plot_generalisation_draws_fig_5_with_the_trend_of_the_successful_runs(drawn, tmp_path):
    from stabench.analysis import overfitting_trend

    short = _runs([0.70, 0.72, 0.5], [False, False, True], majority=0.5)
    long = [dataclasses.replace(r, seed=r.seed + 3) for r in _runs([0.71, 0.69], [False, False], majority=0.5)]
    for run, loss in zip(short + long, [1e-1, 2e-1, 0.69, 1e-4, 1e-5]):
        run.metrics["train_loss"] = loss
    plots.plot_generalisation({"3 epochs": short, "20 epochs": long}, tmp_path / "g.png", "fig 5")
    axes = drawn[-1].axes[0]
    assert axes.get_xscale() == "log" and axes.get_ylabel() == "dev accuracy"
    trend = overfitting_trend(short + long)
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend == ["3 epochs (n=3)", "20 epochs (n=2)", "failed run", "majority class (0.5)",
                      f"successful runs: {trend.slope:+.3g} per decade ({trend.verdict})"]
    (line,) = [line for line in axes.lines if line.get_label().startswith("successful runs")]
    assert tuple(line.get_xdata()) == pytest.approx((1e-5, 2e-1))  # over the successful runs' losses
    assert _marked_failed(axes) == 1
    failed = [dataclasses.replace(r, seed=r.seed + 9, failed=True) for r in long]
    plots.plot_generalisation({"3 epochs": short, "all failed": failed}, tmp_path / "f.png", "one label failed")
    assert [t.get_text() for t in drawn[-1].axes[0].get_legend().get_texts()][:3] == [
        "3 epochs (n=3)", "all failed (n=2)", "failed run"]  # the label once, on its crosses
    plots.plot_generalisation(short, tmp_path / "two.png", "two successful runs: no trend")
    assert not [line for line in drawn[-1].axes[0].lines if line.get_label().startswith("successful runs")]
    edited = [dataclasses.replace(r, recipe_name="r2", recipe_hash="e" * 16) for r in long]
    plots.plot_generalisation(short + edited, tmp_path / "all.png", "a task's runs of two recipes: one set")
    assert [t.get_text() for t in drawn[-1].axes[0].get_legend().get_texts()][0] == "runs of 2 recipes (n=5)"
    steep = _runs([0.80, 0.97, 1.0, 0.99], [False] * 4, majority=0.5)
    for run, loss in zip(steep, [1e-1, 1e-3, 1e-5, 1e-6]):
        run.metrics["train_loss"] = loss
    plots.plot_generalisation(steep, tmp_path / "steep.png", "a fit past 1.0 at its end")
    axes = drawn[-1].axes[0]
    (line,) = [line for line in axes.lines if line.get_label().startswith("successful runs")]
    assert max(line.get_ydata()) > 1.0 and 1.0 < axes.get_ylim()[1] <= 1.03  # the axis stops just above 1
    other = [dataclasses.replace(r, task={"name": "other"}) for r in long]
    with pytest.raises(ValueError, match=r"^overfitting_trend: the runs are of 2 tasks"):
        plots.plot_generalisation({"a": short, "b": other}, tmp_path / "x.png", "two tasks")


def test_a_figure_under_a_file_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "notes.txt").write_text("kept")
    for path in (tmp_path / "notes.txt" / "s.png", tmp_path / "notes.txt" / "sub" / "s.png"):
        with pytest.raises(ValueError, match=rf"^cannot write the figure '{path}': '{tmp_path / 'notes.txt'}' is a "
                                             rf"file, not a folder; name a path in a folder$"):
            plot_study(_runs([0.5, 0.9], [True, False]), path, "under a file")
    assert (tmp_path / "notes.txt").read_text() == "kept"


def test_plot_study_needs_runs(tmp_path):
    for empty in ({}, {"a": []}):
        with pytest.raises(ValueError, match="at least one label, each with runs"):
            plot_study(empty, tmp_path / "empty.png", "empty")


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
    # A stored run reads back with its layers bottom to top (its JSON sorts them by name), and the
    # plot takes runs as well as traces.
    (run,) = _runs([0.5], [True])
    stored = RunResult.from_json(dataclasses.replace(run, trace=trace(True)).to_json())
    assert list(stored.trace["grad_norm"]) == groups
    _assert_png(plot_grad_norm_traces({"seed 0": stored}, tmp_path / "from-runs.png", "runs"))


def test_a_zero_gradient_norm_is_said_not_silently_left_out_of_the_log_axis(drawn, tmp_path):
    """A group no gradient reached (a hook froze it for a while) has norm 0, which a log axis masks."""
    frozen = {"step": [1, 2, 3, 4], "grad_norm": {"embeddings": [0.0, 0.0, 0.3, 0.2], "layer.0": [1.0, 0.8, 0.7, 0.6]}}
    moving = {"step": [1, 2, 3, 4], "grad_norm": {"embeddings": [0.5, 0.4, 0.3, 0.2], "layer.0": [1.0, 0.8, 0.7, 0.6]}}
    plot_grad_norm_traces({"frozen": frozen, "moving": moving}, tmp_path / "g.png", "frozen for two steps")
    notes = [[t.get_text() for t in axes.texts] for axes in drawn[-1].axes]
    assert notes == [["norm 0, not drawn: embeddings at 2 of 4 trace points"], []]


def test_plot_training_curves_draws_each_runs_evaluations_and_smoothed_loss(drawn, tmp_path):
    def run(seed, failed):
        losses = list(np.geomspace(0.7, 1e-4, 100) if not failed else np.full(100, 0.69))
        losses[50] = 5.0  # one spike: the running median ignores it
        evaluations = [{"step": s, "accuracy": 0.5 if failed else 0.9, "prediction_counts": [1, 1]}
                       for s in (25, 50, 75, 100)]
        return RunResult(key=f"k{seed}", task={}, model={}, recipe={}, recipe_name="r", recipe_hash="h", seed=seed,
                         environment={}, metrics={"accuracy": 0.9}, primary_metric="accuracy", majority_accuracy=0.5,
                         failed=failed, collapsed=failed, diverged=False, steps=100, wall_time_s=1.0,
                         steps_per_s=1.0, started_at="", finished_at="",
                         trace={"loss": losses, "eval": evaluations})

    plots.plot_training_curves({"seed 0": run(0, False), "seed 1 (failed)": run(1, True)}, tmp_path / "c.png", "RTE")
    top, bottom = drawn[-1].axes[:2]
    assert [len(line.get_xdata()) for line in top.lines] == [4, 4, 2]  # two runs and the majority line
    healthy, failed = (line.get_color() for line in bottom.lines)
    assert healthy[2] > healthy[0] and failed[0] > failed[2]  # a blue and a red
    assert bottom.get_yscale() == "log" and max(bottom.lines[0].get_ydata()) < 1.0  # the spike is smoothed away
    assert bottom.lines[0].get_ydata()[-1] < 1e-3
    plots.plot_training_curves({"a (failed)": run(1, True), "b (failed)": run(2, True)}, tmp_path / "f.png", "RTE")
    top, bottom = drawn[-1].axes[:2]
    assert top.lines[0].get_color() != top.lines[1].get_color()  # one shade per run
    assert bottom.get_yscale() == "linear"  # 0.69 flat with one spike: no decade to span
    with pytest.raises(ValueError, match="at least one run"):
        plots.plot_training_curves({}, tmp_path / "none.png", "empty")


def test_a_figure_is_written_in_the_format_its_name_says(tmp_path):
    runs = {"a": _runs([0.7, 0.6, 0.8], [False] * 3)}
    assert plot_study(runs, tmp_path / "s.pdf", "pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in plot_study(runs, tmp_path / "s.svg", "svg").read_bytes()[:500]
    _assert_png(plot_study(runs, tmp_path / "plain", "no suffix"))
    _assert_png(plot_study(runs, tmp_path / "study-lr=0.001", "a dot, no format"))
    with pytest.raises(OSError):
        plot_study(runs, Path("/proc/stabench-test.png"), "unwritable")


def test_plotting_leaves_pyplot_and_the_backend_alone(tmp_path):
    """A notebook's inline figures keep working: stabench draws on its own canvases."""
    script = ("import matplotlib, matplotlib.pyplot as plt\n"
              "from stabench import plots\n"
              "from tests.test_plots import _runs\n"
              f"plots.plot_study({{'a': _runs([0.7, 0.6], [False, False])}}, {str(tmp_path / 's.png')!r}, 't')\n"
              "print(matplotlib.get_backend(), plt.get_fignums())\n")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={**os.environ, "MPLBACKEND": "svg"}, cwd=Path(__file__).parents[1]).stdout
    assert shown.split() == ["svg", "[]"]


def test_plot_training_curves_writes_a_png(tmp_path):
    run = _runs([0.9], [False])[0]
    run.trace = {"loss": list(np.geomspace(0.7, 1e-3, 60)), "eval": [{"step": 30, "accuracy": 0.8},
                                                                    {"step": 60, "accuracy": 0.9}]}
    _assert_png(plots.plot_training_curves({"seed 0": run}, tmp_path / "curves.png", "curves"))


def test_a_study_or_a_list_of_runs_is_drawn_without_labelling_it_first(drawn, tmp_path):
    """One Study (or list of runs) is one box; panels and curves of runs are labelled by seed."""
    from types import SimpleNamespace

    from stabench.analysis import vanishing_gradients

    runs = _runs([0.9, 0.5, 0.88], [False, True, False])
    for run in runs:
        run.trace = {"step": [1, 10], "grad_norm": {"layer.0": [1.0, 0.5], "classifier": [1.0, 1.0]},
                     "loss": [0.7, 0.6], "eval": [{"step": 10, "accuracy": run.metrics["accuracy"]}]}
    study = SimpleNamespace(arm=SimpleNamespace(name="bc"), results=runs)  # as a Study holds them
    plot_study(study, tmp_path / "one.png", "one study")
    assert [t.get_text() for t in drawn[-1].axes[0].get_xticklabels()] == ["bc\n(n=3)"]
    assert _marked_failed(drawn[-1].axes[0]) == 1
    plot_study(runs, tmp_path / "list.png", "a list")
    assert [t.get_text() for t in drawn[-1].axes[0].get_xticklabels()] == ["r\n(n=3)"]
    assert drawn[-1].axes[0].get_ylabel() == "dev accuracy"
    for run in runs:
        run.metrics["train_loss"] = 0.1
    plot_study(runs, tmp_path / "loss.png", "a list", metric="train_loss")
    assert drawn[-1].axes[0].get_ylabel() == "train_loss"  # not scored on dev
    plot_grad_norm_traces(study, tmp_path / "g.png", "traces")
    assert [a.get_title() for a in drawn[-1].axes] == ["seed 0", "seed 1 (failed)", "seed 2"]
    plots.plot_training_curves(runs[1], tmp_path / "c.png", "one run")
    assert len(drawn[-1].axes[0].lines) == 2  # its evaluations and the majority line
    other = [dataclasses.replace(r, recipe_name="bc") for r in runs]  # two studies' runs: recipe and seed
    plots.plot_training_curves(runs + other, tmp_path / "two.png", "two studies")
    assert len(drawn[-1].axes[0].lines) == 7 and "bc seed 1 (failed)" in drawn[-1].axes[0].get_legend_handles_labels()[1]
    with pytest.raises(ValueError, match="6 runs share 3 labels"):
        plot_grad_norm_traces(runs + runs, tmp_path / "twice.png", "the same seeds twice")
    with pytest.raises(TypeError, match=r"^vanishing_gradients takes one RunResult, not list; for a study's runs "
                                        r"use gradient_summary\(study\)$"):
        vanishing_gradients(runs)


def _study(runs, name="bc"):
    """A real Study of ``runs`` (made by ``_runs``), as stabench.study returns one."""
    from stabench.claims import Arm, Study
    from stabench.recipes import get_recipe

    recipe = get_recipe("bert-default")
    return Study(Arm(name, "t", "m", recipe), [dataclasses.replace(r, recipe_hash=recipe.hash) for r in runs])


def test_a_label_mapped_to_many_runs_or_a_path_first_is_one_type_error(tmp_path):
    """Each label of plot_grad_norm_traces and plot_training_curves is one run; a Study is drawn whole."""
    runs = _runs([0.9, 0.5, 0.88], [False, True, False])
    study = _study(runs)
    for call, message in (
            (lambda: plots.plot_training_curves({"default": study, "small": study}, tmp_path / "c.png", "t"),
             r"^plot_training_curves: label 'default' maps to a Study of 3 runs; expected one run per label: pass the "
             r"Study itself for a curve per seed, or map labels to single runs$"),
            (lambda: plot_grad_norm_traces({"a": runs}, tmp_path / "g.png", "t"),
             r"^plot_grad_norm_traces: label 'a' maps to a list of 3; expected one run or run trace per label: pass "
             r"the Study itself for a panel per seed"),
            (lambda: plot_grad_norm_traces({"a": study}, tmp_path / "g.png", "t"), r"label 'a' maps to a Study of 3"),
            (lambda: plot_study("x.png", study, "t"),
             r"^plot_study takes \(runs, path, title\), runs first; got the path 'x.png' where the runs belong$"),
            (lambda: plots.plot_training_curves(tmp_path / "c.png", study, "t"),
             r"^plot_training_curves takes \(runs, path, title\), runs first; got the path"),
            (lambda: plot_study({"a": "scores"}, tmp_path / "s.png", "t"),
             r"^plot_study: label 'a' holds a str; expected runs \(a Study, a list of RunResults or one RunResult\)$")):
        with pytest.raises(TypeError, match=message):
            call()
    assert not list(tmp_path.iterdir())


def test_training_curves_of_a_metric_no_evaluation_has_is_an_error(drawn, tmp_path):
    runs = _runs([0.9, 0.5], [False, True])
    for run in runs:
        run.trace = {"loss": [0.7, 0.6], "eval": [{"step": 2, "accuracy": run.metrics["accuracy"],
                                                   "prediction_counts": [1, 1]}]}
    with pytest.raises(ValueError, match=r"^metric 'mcc' is not among the runs' dev evaluations \(trace\['eval'\]\); "
                                         r"they have accuracy$"):
        plots.plot_training_curves(runs, tmp_path / "c.png", "t", metric="mcc")
    unevaluated = _runs([0.9], [False])[0]  # no evaluation at all: nothing to draw, no error
    unevaluated.trace = {"loss": [0.7, 0.6]}
    plots.plot_training_curves([unevaluated], tmp_path / "c.png", "t", metric="mcc")
    assert [len(line.get_xdata()) for line in drawn[-1].axes[0].lines] == [0]


def test_boxes_of_other_majority_accuracies_get_their_own_majority_line(drawn, tmp_path):
    from matplotlib.collections import LineCollection

    polarity = [dataclasses.replace(r, task={"name": "polarity", "fingerprint": "a" * 16})
                for r in _runs([0.5, 0.9], [True, False], majority=0.5)]
    reviews = [dataclasses.replace(r, task={"name": "reviews", "fingerprint": "b" * 16})
               for r in _runs([0.7, 0.8], [False, False], majority=0.69)]
    plot_study({"polarity": polarity, "reviews": reviews}, tmp_path / "s.png", "two tasks")
    axes = drawn[-1].axes[0]
    (segments,) = [c.get_segments() for c in axes.collections if isinstance(c, LineCollection)]
    assert [(tuple(x), tuple(y)) for (x, y) in (zip(*segment) for segment in segments)] == [
        ((0.65, 1.35), (0.5, 0.5)), ((1.65, 2.35), (0.69, 0.69))]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["majority class, per box (0.5 to 0.69)",
                                                                     "successful run", "failed run"]
    mixed = polarity + [dataclasses.replace(r, seed=r.seed + 2) for r in reviews]
    with pytest.raises(ValueError, match=r"^plot_study: the runs of 'r' were trained on 2 tasks \(polarity, reviews\); "
                                         r"a box holds runs on one data set, so give each its own label$"):
        plot_study(mixed, tmp_path / "m.png", "one box")
    subsample = [dataclasses.replace(r, task={"name": "polarity", "fingerprint": "c" * 16, "train_size": 64})
                 for r in polarity]
    with pytest.raises(ValueError, match=r"of 'small' were trained on 2 different data sets \(fingerprints aaaaaaaa, "
                                         r"cccccccc\): training sets of the full set and 64 examples"):
        plot_study({"small": polarity + subsample}, tmp_path / "m.png", "one box")
    edited = [dataclasses.replace(r, seed=r.seed + 2, recipe_name="r2", recipe_hash="e" * 16) for r in polarity]
    with pytest.raises(ValueError, match=r"^plot_study: the runs hold 2 recipes \(r \(h\), r2 \(eeeeeeee\)\); one list "
                                         r"of runs is one label, so give each recipe its own: \{name: runs, ...\}$"):
        plot_study(polarity + edited, tmp_path / "m.png", "one box")  # one box under 'r' held both before
    versions = [dataclasses.replace(r, seed=r.seed + 2 * n, recipe_name=f"v{n}", recipe_hash=f"{n}" * 16)
                for n in range(1, 6) for r in polarity]
    with pytest.raises(ValueError, match=r"^plot_study: the runs hold 6 recipes \(r \(h\), v1 \(11111111\), "
                                         r"v2 \(22222222\), v3 \(33333333\), and 2 more\); one list"):
        plot_study(polarity + versions, tmp_path / "m.png", "one box")
    threads = [dataclasses.replace(r, environment={**r.environment, "device_kind": "cpu", "cpu_threads": n})
               for n, r in ((1, polarity[0]), (1, polarity[1]), (2, polarity[0]))]  # seed 0 again, on 2 threads
    with pytest.raises(ValueError, match=r"^plot_study: the runs of 'r' were made under different library stacks or "
                                         r"devices \(they differ in cpu_threads\); a box holds one stack's runs"):
        plot_study(threads, tmp_path / "m.png", "one box")
    plot_study(threads[:2], tmp_path / "m.png", "one box")


def test_runs_that_scored_alike_are_each_seen_side_by_side(drawn, tmp_path):
    """Collapsed runs score exactly the majority accuracy: every one of them is a cross of its own."""
    runs = _runs([0.5] * 6 + [0.81, 0.9, 0.5005], [True] * 6 + [False, False, True], majority=0.5)
    for _ in range(2):  # the same data, the same picture
        plot_study({"default": runs}, tmp_path / "ties.png", "RTE")
    first, again = ([c.get_offsets() for c in figure.axes[0].collections if c.get_gid() == "failed"][0]
                    for figure in drawn)
    assert len(first) == 7 and np.array_equal(first, again)
    x = np.sort(np.asarray(first)[:, 0])
    assert np.min(np.diff(x)) >= 0.05 and np.all(np.abs(x - 1) <= 0.25)  # apart, within the box


def test_a_legend_of_long_recipe_names_widens_the_figure_instead_of_squeezing_the_plots(drawn, tmp_path):
    runs = _runs([0.9, 0.5], [False, True])
    for run in runs:
        run.trace = {"loss": [0.7, 0.6], "step": [1, 2], "eval": [{"step": 2, "accuracy": run.metrics["accuracy"]}],
                     "grad_norm": {"layer.0": [1.0, 0.5], "classifier": [1.0, 1.0]}}
    named = [dataclasses.replace(run, recipe_name=f"bert-default[epochs=12,eval_every=4,lr=0.0002,trace_every=2,v={i}]")
             for i, run in enumerate(runs)]
    plots.plot_training_curves(named, tmp_path / "c.png", "long names")
    plot_grad_norm_traces({"a seed with a label as long as a recipe variant's name": named[0]}, tmp_path / "g.png", "g")
    for figure in drawn:
        figure.canvas.draw()  # lays the figure out, as saving it does
        assert all(axes.get_position().width * figure.get_figwidth() > 6.5 for axes in figure.axes)


def test_runs_of_several_data_sizes_are_labelled_by_their_size(drawn, tmp_path):
    full = _runs([0.9, 0.5], [False, True])
    small = [dataclasses.replace(run, task={"name": "t", "train_size": 64}) for run in full]
    for run in full + small:
        run.trace = {"loss": [0.7, 0.6], "eval": [{"step": 2, "accuracy": run.metrics["accuracy"]}]}
    plots.plot_training_curves(full + small, tmp_path / "sizes.png", "sizes")
    assert drawn[-1].axes[0].get_legend_handles_labels()[1][:4] == [
        "full data seed 0", "full data seed 1 (failed)", "64 examples seed 0", "64 examples seed 1 (failed)"]
    with pytest.raises(ValueError, match=r"4 runs share 2 labels \(one seed twice with the same task, recipe and data"):
        plots.plot_training_curves(full + full, tmp_path / "twice.png", "twice")


@pytest.mark.parametrize("failed, said", [
    ([True, False, False], "each arm's failed run whose bottom layer lost the most gradient norm, and its successful "
                           "run whose bottom layer lost the least"),
    ([False, False, False], "each arm's successful run whose bottom layer lost the least (no run failed)"),
    ([True, True, True], "each arm's failed run whose bottom layer lost the most gradient norm (every run failed)"),
])
def test_a_session_s_figures_say_which_runs_they_show(monkeypatch, tmp_path, failed, said):
    """A claim whose runs all succeeded was titled with "each arm's failed run" all the same."""
    runs = {run.key: run for run in _runs([0.9 if not bad else 0.5 for bad in failed], failed)}
    titles = []
    for name in ("plot_study", "plot_grad_norm_traces", "plot_training_curves"):
        monkeypatch.setattr(plots, name, lambda runs, path, title: titles.append(title) or path)
    claim = {"claim": "test_x.py::test_x", "arm": "r", "recipe": "r", "task": "t", "model": "m", "keys": list(runs)}
    store = type("Store", (), {"get": staticmethod(runs.get)})
    assert plots.plot_claims([claim], store, tmp_path, "png") == 3
    assert titles[0] == "test_x.py::test_x\nt / m: r; 3 seeds"
    assert titles[1] == titles[2] == f"{titles[0]}\n{said}"
    titles.clear()  # one seed, on a subsample of the task's training set
    plots.plot_claims([{**claim, "keys": list(runs)[:1], "train_size": 64}], store, tmp_path, "png")
    assert titles[0] == "test_x.py::test_x\nt (64) / m: r; 1 seed"
    # Two arms, one failing throughout and one never (the paper's default and stable recipes).
    one_kind = [{**claim, "arm": arm, "keys": [key for key, run in runs.items() if run.failed == bad]}
                for arm, bad in (("default", True), ("stable", False))]
    titles.clear()
    if all(any(run.failed == bad for run in runs.values()) for bad in (True, False)):
        plots.plot_claims(one_kind, store, tmp_path, "png")
        assert titles[1].endswith("and its successful run whose bottom layer lost the least, where it has one")


def test_four_runs_are_points_and_many_alike_runs_stay_within_their_box(drawn, tmp_path):
    plot_study({"four": _runs([0.6, 0.7, 0.8, 0.75], [False] * 4)}, tmp_path / "four.png", "four")
    assert not [line for line in drawn[-1].axes[0].lines if len(line.get_xdata()) == 5]  # no box outline
    plot_study({"collapsed": _runs([0.5] * 20, [True] * 20, majority=0.5)}, tmp_path / "twenty.png", "twenty")
    (crosses,) = [c.get_offsets() for c in drawn[-1].axes[0].collections if c.get_gid() == "failed"]
    x = np.sort(np.asarray(crosses)[:, 0])
    assert len(set(x)) == 20 and x.min() >= 1 - 0.25 and x.max() <= 1 + 0.25  # each seen, inside the box's width


def test_grad_norm_panels_draw_layers_bottom_to_top_and_the_other_groups_dashed(drawn, tmp_path):
    norms = {group: [1.0, 0.5] for group in ("pooler", "layer.10", "classifier", "layer.2", "embeddings")}
    plot_grad_norm_traces({"seed 0": {"step": [1, 2], "grad_norm": norms}}, tmp_path / "g.png", "order")
    lines = drawn[-1].axes[0].lines
    assert [line.get_label() for line in lines] == ["embeddings", "layer.2", "layer.10", "pooler", "classifier"]
    assert [line.get_linestyle() for line in lines] == ["--", "-", "-", "--", "--"]


def test_a_training_loss_within_a_decade_is_on_a_linear_axis(drawn, tmp_path):
    (run,) = _runs([0.9], [False])
    run.trace = {"loss": list(np.linspace(0.6, 0.1, 40)), "eval": [{"step": 40, "accuracy": 0.9}]}
    plots.plot_training_curves([run], tmp_path / "c.png", "less than a decade")
    assert drawn[-1].axes[1].get_yscale() == "linear"
    run.trace["loss"] = list(np.geomspace(0.6, 1e-3, 40))
    plots.plot_training_curves([run], tmp_path / "c.png", "more than a decade")
    assert drawn[-1].axes[1].get_yscale() == "log"


def test_a_loss_surface_draws_its_gradient_norms_where_they_were_computed(drawn, tmp_path):
    grid = np.linspace(-1, 1, 5)
    surface = {"alpha": grid, "beta": grid, "loss": np.add.outer(grid ** 2, grid ** 2) + 0.1,
               "points": {"pretrained": {"coords": (0.0, 0.0)}, "failed": {"coords": (1.0, 0.0)}}}
    plots.plot_loss_surface(surface, tmp_path / "one.png", "loss only")
    assert [axes.get_title() for axes in drawn[-1].axes if axes.get_title()] == ["training loss"]
    plots.plot_loss_surface({**surface, "grad_norm": surface["loss"] * 10}, tmp_path / "two.png", "with norms")
    assert [axes.get_title() for axes in drawn[-1].axes if axes.get_title()] == ["training loss",
                                                                                 "log10 gradient norm"]


def test_fig_5_draws_no_single_majority_line_across_tasks_of_other_majorities(drawn, tmp_path):
    runs = _runs([0.7, 0.72, 0.71], [False] * 3, majority=0.5) + [
        dataclasses.replace(r, seed=r.seed + 3) for r in _runs([0.8, 0.82], [False] * 2, majority=0.6)]
    for i, run in enumerate(runs):
        run.metrics["train_loss"] = 0.1 * (i + 1)
    plots.plot_generalisation({"a": runs[:3], "b": runs[3:]}, tmp_path / "g.png", "two majorities")
    assert not [line for line in drawn[-1].axes[0].lines if line.get_label().startswith("majority class")]



def test_stored_studies_are_drawn_one_figure_per_setting_with_a_box_per_recipe(monkeypatch, tmp_path):
    """stabench summary --plots: boxes named by the recipe and its variant, not the whole study label."""
    drawn_boxes = {}
    monkeypatch.setattr(plots, "plot_study", lambda runs, path, title, metric: drawn_boxes.update(
        {(title, Path(path).name): list(runs)}) or path)
    default, stable = _runs([0.9, 0.5], [False, True]), _runs([0.9, 0.8], [False, False])
    stable = [dataclasses.replace(run, recipe_name="s") for run in stable]
    paths = plots.plot_studies([("t / m / r", default), ("t / m / s [torch 2.11.0]", stable)], tmp_path)
    assert paths == [tmp_path / "t-m-accuracy-scores.png"]
    assert drawn_boxes == {("t / m", "t-m-accuracy-scores.png"): ["r", "s [torch 2.11.0]"]}


def test_a_session_s_figures_leave_out_claims_without_runs(monkeypatch, tmp_path):
    """A skipped claim's entry has no keys (a study not gathered, an empty list): no figure of it."""
    runs = {run.key: run for run in _runs([0.9, 0.5], [False, True])}
    for name in ("plot_study", "plot_grad_norm_traces", "plot_training_curves"):
        monkeypatch.setattr(plots, name, lambda runs, path, title: path)
    claim = {"claim": "test_x.py::test_x", "arm": "r", "recipe": "r", "task": "t", "model": "m", "keys": list(runs)}
    skipped = [{**claim, "claim": "test_y.py::test_y", "keys": None}, {**claim, "claim": "test_z.py::test_z"}]
    del skipped[1]["keys"]
    store = type("Store", (), {"get": staticmethod(runs.get)})
    assert plots.plot_claims([claim, *skipped], store, tmp_path, "png") == 3
