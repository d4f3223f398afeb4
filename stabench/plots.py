"""Figures for stability reports: per-seed score spreads, gradient-norm traces, training curves,
dev accuracy against train loss, loss surfaces, and a session's claims (``plot_claims``).

Plots are drawn on matplotlib's Agg canvas directly, never through pyplot, so they work on
headless CI machines and in pytest workers and leave a notebook's backend (inline figures) as it
was; each is written in the format its file's extension names (``.pdf``, ``.svg``), else PNG.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator

from .models import stored_name
from .report import task_label
from .result import (EVALUATION_FIELDS, FINAL_LOSS_STEPS, RunResult, check_metric, check_traced, data_mix,
                     final_train_loss, layer_order, runs_of, stack_mix)


_LOG_FLOOR = 1e-30  # a loss or norm of exactly 0 on a log axis, as analysis floors them


def agg_figure(**options) -> Figure:
    """A figure on its own Agg canvas: no pyplot state, nothing to close."""
    figure = Figure(**options)
    FigureCanvasAgg(figure)
    return figure


def image_format(path: str | Path) -> str:
    """The image format a figure's file name asks for (``.pdf``, ``.svg``, ...); PNG for a name
    without one, or with a dot that names no format matplotlib writes (``study-lr=0.001``)."""
    suffix = Path(path).suffix[1:].lower()
    return suffix if suffix in FigureCanvasBase.get_supported_filetypes() else "png"


def save_figure(figure: Figure, path) -> Path:
    """Write ``figure`` in the format ``path``'s extension names (PNG otherwise), making its folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file where a folder above the figure belongs
        above = next(folder for folder in path.parents if folder.exists())
        raise ValueError(f"cannot write the figure {str(path)!r}: {str(above)!r} is a file, not a folder; name a path "
                         f"in a folder") from None
    figure.savefig(path, format=image_format(path), dpi=110, bbox_inches="tight")
    return path


def plot_study(runs_by_label: Mapping[str, Sequence[RunResult]] | Sequence[RunResult], path, title: str,
               metric: str | None = None) -> Path:
    """Box plot of each label's dev scores (runs, or a Study) in ``metric`` (default: the runs'
    headline metric) with every seed drawn on top, so collapsed runs stay visible.  One Study or
    list of runs is one box, and a box holds runs of one task and data set; a label with fewer
    than ``MIN_BOX_RUNS`` runs gets its points only (quartiles of three runs mean nothing).
    Each label says how many runs it has.

    Failed runs (as stored with each run: dev accuracy at or below the majority class) are red
    crosses, the legend says so. The dashed majority-class line is drawn only on an accuracy axis
    (on an F1 or MCC axis it would sit at a meaningless height): across the plot where every box
    has the same majority accuracy, else over each box at its own.
    """
    runs_by_label = _labelled_runs(runs_by_label, "plot_study", one_recipe=True)  # one Study or list: one box
    for label, runs in runs_by_label.items():
        if mix := data_mix(runs):
            raise ValueError(f"plot_study: the runs of {label!r} were trained on {mix}; a box holds runs on one "
                             f"data set, so give each its own label")
        if differ := stack_mix(runs):  # a seed on two stacks would count twice in one box
            raise ValueError(f"plot_study: the runs of {label!r} were made under different library stacks or "
                             f"devices (they differ in {', '.join(differ)}); a box holds one stack's runs, so select "
                             f"one, e.g. Store.query(..., env={{{differ[0]!r}: ...}}), or give each its own label")
    metric = metric or next(iter(runs_by_label.values()))[0].primary_metric
    check_metric([r for runs in runs_by_label.values() for r in runs], metric, "plot_study: ")
    labels = list(runs_by_label)
    positions = np.arange(1, len(labels) + 1)

    figure = agg_figure(figsize=(max(4.0, 1.4 * len(labels) + 2), 4.5))
    axes = figure.subplots()
    scores = [np.asarray([r.metrics[metric] for r in runs_by_label[label]], dtype=float) for label in labels]
    boxed = [i for i, values in enumerate(scores) if values.size >= MIN_BOX_RUNS]
    if boxed:
        axes.boxplot([scores[i] for i in boxed], positions=positions[boxed], widths=0.5, showfliers=False)
    shown = np.concatenate(scores)
    close = 0.02 * float(np.ptp(shown[np.isfinite(shown)])) if np.isfinite(shown).any() else 0.0
    for position, label, values in zip(positions, labels, scores):
        failed = np.asarray([r.failed for r in runs_by_label[label]], dtype=bool)
        x = position + _side_by_side(values, close)
        axes.scatter(x[~failed], values[~failed], s=18, alpha=0.75, color="tab:blue", zorder=3, gid="succeeded")
        axes.scatter(x[failed], values[failed], s=22, marker="x", color="tab:red", zorder=3, gid="failed")
    majorities = {position: runs_by_label[label][0].majority_accuracy for position, label in zip(positions, labels)
                  if runs_by_label[label][0].majority_accuracy is not None}
    if majorities and metric == "accuracy":
        low, high = min(majorities.values()), max(majorities.values())
        if low == high:
            axes.axhline(low, linestyle="--", color="grey", linewidth=1, label=f"majority class ({low:.3g})")
        else:  # other tasks or subsamples: each box's own
            axes.hlines(list(majorities.values()), [p - 0.35 for p in majorities], [p + 0.35 for p in majorities],
                        linestyles="--", colors="grey", linewidth=1,
                        label=f"majority class, per box ({low:.3g} to {high:.3g})")
    failed = [r.failed for runs in runs_by_label.values() for r in runs]
    for kind, marker, colour, present in (("successful run", "o", "tab:blue", not all(failed)),
                                          ("failed run", "x", "tab:red", any(failed))):
        if present:  # a legend entry of its own, not one of the boxes' points
            axes.plot([], [], linestyle="none", marker=marker, color=colour, label=kind)
    axes.legend(loc="best", fontsize="small")
    crowded = len(labels) > 4 or sum(map(len, labels)) > 60  # long recipe names would run into each other
    ticks = [f"{label}\n(n={values.size})" for label, values in zip(labels, scores)]
    axes.set_xticks(positions, ticks, rotation=20 if crowded else 0, ha="right" if crowded else "center",
                    rotation_mode="anchor")  # a slanted label ends under its box
    axes.set_ylabel(metric if metric == "train_loss" else f"dev {metric}")  # the one metric not scored on dev
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


MIN_BOX_RUNS = 5  # fewer runs are drawn as points alone


def _side_by_side(values: np.ndarray, close: float) -> np.ndarray:
    """x offsets for a box's points: scores within ``close`` of each other (runs that collapsed to
    the majority class score exactly alike) sit side by side, 0.06 apart (closer when many, within
    the box's width), so each run is seen; a score apart from the others sits on the box's centre."""
    offsets = np.zeros(values.size)
    order = np.argsort(values, kind="stable")  # ties in the runs' order
    start = 0
    for end in range(1, values.size + 1):
        with np.errstate(invalid="ignore"):  # inf - inf: a diverged score is apart from the others
            apart = end == values.size or not values[order[end]] - values[order[start]] <= close
        if apart:
            row = order[start:end]
            offsets[row] = (np.arange(row.size) - (row.size - 1) / 2) * min(0.06, 0.44 / max(row.size - 1, 1))
            start = end
    return offsets


def plot_studies(studies: Sequence[tuple[str, Sequence[RunResult]]], folder, metric: str | None = None,
                 fmt: str = "png") -> list[Path]:
    """``plot_study`` for stored studies (``gate.group_studies``' ``(label, runs)``): one figure per
    task, data size, model and metric (default: each study's headline metric), a box per recipe
    (and variant), as Mosbach et al.'s Fig. 1; named ``TASK-MODEL-METRIC-scores.png`` (or ``fmt``)."""
    from .gate import study_key, study_label

    figures: dict[tuple, dict[str, Sequence[RunResult]]] = {}
    for label, runs in studies:
        shown = (study_key(runs[0])[:3], metric or runs[0].primary_metric)  # task, data size, model; metric
        figures.setdefault(shown, {})[label.split(" / ")[-1]] = runs  # the recipe [and variant]
    paths = []
    for (trained_on, shown_metric), runs_by_recipe in figures.items():
        title = study_label(trained_on)
        stem = file_stem(f"{title}-{shown_metric}".replace(" / ", "-"))
        paths.append(plot_study(runs_by_recipe, Path(folder) / f"{stem}-scores.{fmt}", title, shown_metric))
    return paths


def file_stem(text: str) -> str:
    """``text`` as a file name: letters, digits, ``-``, ``_`` and ``.`` kept, anything else ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def plot_grad_norm_traces(traces: Mapping[str, Mapping | RunResult] | Sequence[RunResult], path, title: str) -> Path:
    """Per-layer gradient norms over training, one panel per run or run trace (Mosbach et al., Fig. 4);
    ``traces`` maps labels to them, or is runs (a Study) drawn a panel per seed.

    Colours run from the embeddings (dark) to the classifier (bright), so vanishing
    gradients in the lower layers of failed runs stand out on the log scale; the groups that
    are not encoder layers (embeddings, pooler, classifier) are dashed, to tell them from the
    layers of nearly the same colour.
    """
    traces = {label: getattr(trace, "trace", trace)
              for label, trace in _by_seed(traces, "plot_grad_norm_traces", "run or run trace", "panel").items()}
    if not traces:
        raise ValueError("plot_grad_norm_traces needs at least one trace")
    figure = agg_figure(figsize=(8, 2.8 * len(traces)), layout="constrained")  # keeps the title off the first panel's
    panels = figure.subplots(len(traces), 1, sharex=True, sharey=True, squeeze=False)
    for axes, (label, trace) in zip(panels[:, 0], traces.items()):
        groups = trace["grad_norm"]
        colours = colormaps["viridis"](np.linspace(0, 0.95, max(len(groups), 1)))
        for colour, group in zip(colours, sorted(groups, key=layer_order)):  # bottom to top, in any trace
            axes.plot(trace["step"], groups[group], color=colour, linewidth=1, label=group,
                      linestyle="-" if group.startswith("layer.") else "--")
        axes.set_yscale("log", nonpositive="mask")
        if zero := [f"{group} at {sum(v == 0 for v in groups[group])} of {len(groups[group])}"
                    for group in sorted(groups, key=layer_order) if any(v == 0 for v in groups[group])]:
            # No gradient reached them (frozen, detached): a log axis cannot draw it, so it is said.
            axes.text(0.01, 0.03, f"norm 0, not drawn: {'; '.join(zero)} trace points", transform=axes.transAxes,
                      fontsize="x-small", color="dimgray")
        axes.set_ylabel("grad norm")
        axes.set_title(label, fontsize="medium")
        axes.grid(alpha=0.3)
    first = panels[0, 0]
    if first.get_legend_handles_labels()[0]:
        _widened_for(figure, first.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small",
                                          ncol=2 if len(first.lines) > 14 else 1))
    panels[-1, 0].set_xlabel("step")
    figure.suptitle(title)
    return save_figure(figure, path)


def _widened_for(figure: Figure, legend) -> None:
    """The figure grows by the width of a legend beside the plots, rather than the plots
    shrinking to make room for it (long recipe names took half the width)."""
    width = legend.get_window_extent(figure.canvas.get_renderer()).width / figure.dpi
    figure.set_size_inches(figure.get_figwidth() + width, figure.get_figheight())


def _by_seed(runs, function: str, single: str, unit: str) -> Mapping:
    """Labelled panels or curves (``unit``): a mapping as given, each label to one ``single``; one
    run, a list of runs or a Study as one per seed."""
    _check_not_a_path(runs, function)
    if isinstance(runs, Mapping):
        for label, value in runs.items():
            traced = isinstance(value, Mapping) and "grad_norm" in value
            if not (isinstance(value, RunResult) or traced and single != "run"):
                given = "a run's trace" if traced else _described(value)  # training curves need the run's verdict
                raise TypeError(f"{function}: label {label!r} maps to {given}; expected one {single} per "
                                f"label: pass the Study itself for a {unit} per seed, or map labels to single runs")
        for value in runs.values():
            if isinstance(value, RunResult):
                check_traced(value, f"{function}: ")
        return runs
    runs = _runs_in(runs, function)
    for run in runs:
        check_traced(run, f"{function}: ")
    # runs of several studies: what tells them apart (task, recipe, data size) starts each label
    parts = [lambda r: (r.task or {}).get("name"), lambda r: r.recipe_name, _data_size]
    telling = [part for part in parts if len({part(r) for r in runs}) > 1]
    labelled = {" ".join([*(str(part(r)) for part in telling), f"seed {r.seed}"]) + (" (failed)" if r.failed else ""): r
                for r in runs}
    if len(labelled) < len(runs):
        raise ValueError(f"{len(runs)} runs share {len(labelled)} labels (one seed twice with the same task, recipe "
                         f"and data size); pass a mapping of labels to runs")
    return labelled


def _data_size(run: RunResult) -> str:
    size = (run.task or {}).get("train_size")
    return f"{size} examples" if size else "full data"


def _labelled_runs(runs_by_label, function: str, one_recipe: bool = False) -> dict[str, list[RunResult]]:
    """Labels to runs, as ``function`` takes them: a mapping, or one Study or list of runs under the
    Study's arm name or the runs' recipe; each label with runs.  A list of several recipes is
    labelled so, or refused where a label must be ``one_recipe`` (a box)."""
    _check_not_a_path(runs_by_label, function)
    if not isinstance(runs_by_label, Mapping):
        runs = _runs_in(runs_by_label, function)
        label = getattr(getattr(runs_by_label, "arm", None), "name", None)
        recipes = {r.recipe_hash: r.recipe_name for r in runs}  # a Study's: one recipe, in one or more versions
        if label is None and len(recipes) > 1:  # not under the first run's recipe name, which hid the others
            if one_recipe:
                named = ", ".join(f"{name} ({digest[:8]})" for digest, name in list(recipes.items())[:4]) + (
                    f", and {len(recipes) - 4} more" if len(recipes) > 4 else "")
                raise ValueError(f"{function}: the runs hold {len(recipes)} recipes ({named}); one list of runs is "
                                 f"one label, so give each recipe its own: {{name: runs, ...}}")
            label = f"runs of {len(recipes)} recipes"
        runs_by_label = {label or (runs[0].recipe_name if runs else "runs"): runs}
    labelled = {label: _runs_in(runs, function, label) for label, runs in runs_by_label.items()}
    if not labelled or not all(labelled.values()):
        raise ValueError(f"{function} needs at least one label, each with runs")
    return labelled


def _check_not_a_path(runs, function: str) -> None:
    """A path where the runs belong: the arguments came in another order."""
    if isinstance(runs, (str, os.PathLike)):
        raise TypeError(f"{function} takes (runs, path, title), runs first; got the path {str(runs)!r} where the "
                        f"runs belong")


def _runs_in(runs, function: str, label: str | None = None) -> list[RunResult]:
    """``runs_of(runs)``, each of them a RunResult."""
    try:
        listed = runs_of(runs)
    except TypeError:  # not even iterable: a number, say
        listed = [runs]
    if not all(isinstance(r, RunResult) for r in listed):
        where = f"label {label!r} holds" if label is not None else "got"
        raise TypeError(f"{function}: {where} {_described(runs)}; expected runs (a Study, a list of RunResults or "
                        f"one RunResult)")
    return listed


def _described(value) -> str:
    """What a user passed, in words: ``a Study of 5 runs``, ``a list of 3``, ``a str``."""
    if hasattr(value, "results"):
        return f"a {type(value).__name__} of {len(runs_of(value))} runs"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, Mapping):  # a run's trace is a mapping with per-layer gradient norms
        return f"a {type(value).__name__} without 'grad_norm' (not a run's trace)"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def plot_generalisation(runs_by_label: Mapping[str, Sequence[RunResult]] | Sequence[RunResult], path,
                        title: str) -> Path:
    """Dev accuracy against the final train loss (log axis), a point per run, as Mosbach et al.'s
    Fig. 5: ``runs_by_label`` maps labels (say training lengths) to runs of one task, or is one
    Study or list of runs.  Failed runs are crosses; the majority class is a dashed line; the
    least-squares line of ``analysis.overfitting_trend`` over the successful runs, with its
    verdict, is drawn where it has at least 3 of them at more than one loss.
    """
    from .analysis import overfitting_trend

    runs_by_label = _labelled_runs(runs_by_label, "plot_generalisation")
    every = [run for runs in runs_by_label.values() for run in runs]
    try:
        trend = overfitting_trend(every)  # one task, and enough successful runs: else no line
    except ValueError as error:
        if "tasks" in str(error):
            raise
        trend = None
    figure = agg_figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    colours = colormaps["tab10"](np.arange(len(runs_by_label)) % 10)
    for colour, (label, runs) in zip(colours, runs_by_label.items()):
        loss = np.maximum([r.metrics["train_loss"] for r in runs], _LOG_FLOOR)
        accuracy = np.asarray([r.metrics["accuracy"] for r in runs], dtype=float)
        failed = np.asarray([r.failed for r in runs], dtype=bool)
        named = f"{label} (n={len(runs)})"  # on the successful runs' dots, or the crosses where every run failed
        axes.scatter(loss[~failed], accuracy[~failed], s=22, color=colour, gid="succeeded",
                     label=named if (~failed).any() else None)
        axes.scatter(loss[failed], accuracy[failed], s=26, marker="x", color=colour, gid="failed",
                     label=None if (~failed).any() else named)
    if any(r.failed for r in every):
        axes.plot([], [], linestyle="none", marker="x", color="grey", label="failed run")
    majorities = sorted({r.majority_accuracy for r in every if r.majority_accuracy is not None})
    if len(majorities) == 1:
        axes.axhline(majorities[0], linestyle="--", color="grey", linewidth=1,
                     label=f"majority class ({majorities[0]:.3g})")
    if trend is not None:  # the trend's own line, over the losses it rests on
        ends = np.asarray(trend.log10_loss)
        axes.plot(10.0 ** ends, trend.intercept + trend.slope * ends, color="black", linewidth=1,
                  label=f"successful runs: {trend.slope:+.3g} per decade ({trend.verdict})")
        low, high = axes.get_ylim()
        if high > 1.0:  # a steep fit ends past 1; an accuracy axis stops just above it
            axes.set_ylim(low, 1.0 + 0.03 * (1.0 - low))
    axes.set_xscale("log")
    axes.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # 2x10^-1, 3x10^-1, 4x10^-1 ran into each other
    axes.set_xlabel(f"final train loss (median of the last {FINAL_LOSS_STEPS} steps)")
    axes.set_ylabel("dev accuracy")
    axes.grid(alpha=0.3)
    _widened_for(figure, axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small"))
    axes.set_title(title)
    return save_figure(figure, path)


def plot_training_curves(runs: Mapping[str, RunResult] | Sequence[RunResult] | RunResult, path, title: str,
                         metric: str = "accuracy") -> Path:
    """Dev ``metric`` at each evaluation (top) and the train loss (bottom) per run (a mapping of
    labels to runs, or runs such as a Study, labelled by seed).

    The picture behind "no overfitting" (Mosbach et al., Fig. 5 and Sec. 5.2): dev scores stay
    flat while the train loss keeps falling.  The loss is the running median of the last
    ``FINAL_LOSS_STEPS`` step losses, the same summary as a run's stored ``train_loss``, on a
    log axis when it spans more than a decade.  Evaluations come from ``trace["eval"]``: set the
    recipe's ``eval_every`` for more than the final one.  Failed runs are drawn in shades of
    red and the others in shades of blue, one shade and marker per run; on accuracy the
    majority class is a dashed line.
    """
    runs = _by_seed(runs, "plot_training_curves", "run", "curve")
    if not runs:
        raise ValueError("plot_training_curves needs at least one run")
    evaluated = {name for run in runs.values() for evaluation in (run.trace or {}).get("eval", [])
                 for name in evaluation if name not in EVALUATION_FIELDS}
    if evaluated and metric not in evaluated:  # runs without evaluations have nothing to draw
        raise ValueError(f"metric {metric!r} is not among the runs' dev evaluations (trace['eval']); they have "
                         f"{', '.join(sorted(evaluated))}")
    figure = agg_figure(figsize=(8, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    groups = {failed: [label for label, run in runs.items() if run.failed == failed] for failed in (True, False)}
    markers = "osD^vP*X"
    lowest, highest = math.inf, 0.0
    for label, run in runs.items():
        members = groups[run.failed]
        index = members.index(label)
        colour = colormaps["Reds" if run.failed else "Blues"](0.45 + 0.5 * index / max(len(members) - 1, 1))
        evaluations = [e for e in (run.trace or {}).get("eval", []) if metric in e]
        top.plot([e["step"] for e in evaluations], [e[metric] for e in evaluations], marker=markers[index % 8],
                 markersize=4, color=colour, linewidth=1, label=label)
        losses = list((run.trace or {}).get("loss", []))
        smoothed = np.asarray([final_train_loss(losses[max(0, step - FINAL_LOSS_STEPS):step])
                               for step in range(1, len(losses) + 1)])
        bottom.plot(np.arange(1, len(losses) + 1), smoothed, color=colour, linewidth=1, label=label)
        finite = smoothed[np.isfinite(smoothed) & (smoothed > 0)]
        if finite.size:
            lowest, highest = min(lowest, float(finite.min())), max(highest, float(finite.max()))
    majorities = sorted({run.majority_accuracy for run in runs.values() if run.majority_accuracy is not None})
    for majority in majorities if metric == "accuracy" else ():  # runs of other tasks: one line each
        top.axhline(majority, linestyle="--", color="grey", linewidth=1, label=f"majority class ({majority:.3g})")
    top.set_ylabel(f"dev {metric}")
    top.grid(alpha=0.3)
    if all(len([e for e in (run.trace or {}).get("eval", []) if metric in e]) <= 1 for run in runs.values()):
        top.text(0.02, 0.5, "one dev evaluation per run, at its end: set the recipe's eval_every for curves",
                 transform=top.transAxes, fontsize="small", color="dimgray", va="center",
                 bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.85, "lw": 0})  # over a majority line
    _widened_for(figure, top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small"))
    if highest > 10 * lowest:
        bottom.set_yscale("log", nonpositive="mask")
        bottom.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    bottom.set_ylabel(f"train loss (median of {FINAL_LOSS_STEPS} steps)")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_loss_surface(surface: Mapping[str, Any], path, title: str) -> Path:
    """Contours of the loss and of log10 gradient norm on the plane, the three models marked; the
    file's format follows its extension (PNG, PDF or SVG).

    Draws with the Agg canvas directly (no pyplot), so it changes no global backend.
    """
    needed = ("alpha", "beta", "loss", "points")
    if not isinstance(surface, Mapping) or any(key not in surface for key in needed):
        got = f"keys {', '.join(map(repr, surface)) or 'none'}" if isinstance(surface, Mapping) else \
            f"a {type(surface).__name__}"
        raise ValueError(f"plot_loss_surface needs what analysis.loss_surface returns ({', '.join(needed)}); got {got}")
    alpha, beta = np.asarray(surface["alpha"]), np.asarray(surface["beta"])
    panels = [("training loss", np.asarray(surface["loss"], dtype=float))]
    norms = np.asarray(surface.get("grad_norm", np.full_like(panels[0][1], np.nan)), dtype=float)
    if np.isfinite(norms).any():
        panels.append(("log10 gradient norm", np.log10(np.maximum(norms, _LOG_FLOOR))))
    figure = agg_figure(figsize=(5.6 * len(panels), 4.6), layout="constrained")
    markers = {"pretrained": ("o", "white"), "failed": ("X", "tab:red"), "successful": ("*", "tab:green")}
    for index, (label, values) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        finite = np.where(np.isfinite(values), values, np.nanmax(values[np.isfinite(values)]))
        filled = axes.contourf(alpha, beta, finite, levels=20, cmap="viridis")
        axes.contour(alpha, beta, finite, levels=10, colors="k", linewidths=0.4, alpha=0.5)
        figure.colorbar(filled, ax=axes)
        for name, point in surface["points"].items():
            marker, colour = markers.get(name, ("s", "tab:orange"))
            a, b = point["coords"]
            axes.scatter([a], [b], marker=marker, s=110, c=colour, edgecolors="black", zorder=3)
            axes.annotate(name, (a, b), textcoords="offset points", xytext=(6, 6), fontsize="small",
                          bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.7, "lw": 0})
        axes.set_xlabel("α: along θ_failed − θ_pre")
        axes.set_ylabel("β: θ_success − θ_pre, orthogonalised")
        axes.set_title(label, fontsize="medium")
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_claims(claims: Sequence[Mapping[str, Any]], store, folder: Path, fmt: str) -> int:
    """A pytest session's figures, per claim (its JSON report's ``claims`` entries, runs read from
    ``store``): scores per seed and arm; gradient-norm traces and training curves of a failed and a
    healthy run of each arm.  Returns how many files it wrote."""
    from .analysis import example_runs  # imports torch, which the other figures do without

    by_claim: dict[str, list[Mapping[str, Any]]] = {}
    for entry in claims:
        if entry.get("keys"):  # not skipped, nor a study that could not be gathered
            by_claim.setdefault(entry["claim"], []).append(entry)
    written = set()
    for claim, arms in by_claim.items():
        # the file's path too, always: a name that depended on what else ran would move
        name = file_stem(claim.replace(".py::", "-").replace("::", "-"))
        runs = {arm["arm"]: [store.get(key) for key in arm["keys"]] for arm in arms}
        title = f"{claim}\n{_studied(arms)}"
        written.add(plot_study(runs, folder / f"{name}-scores.{fmt}", title))
        labelled, shown = {}, []  # each arm's own examples: an intervention's traces beside the default's
        for arm in arms:
            who = arm["arm"] if len(arms) > 1 else arm["recipe"]  # as the claim names it
            examples = example_runs(runs[arm["arm"]])
            shown.append(set(examples))
            labelled.update({f"seed {r.seed} {who} ({label}, {r.primary_metric} {r.score:.3f})": r
                             for label, r in examples.items()})
        picked = "each arm's " + ", and its ".join(_PICKED[label] for label in _PICKED if label in set().union(*shown))
        if all(kinds == {"successful"} for kinds in shown):
            picked += " (no run failed)"
        elif all(kinds == {"failed"} for kinds in shown):
            picked += " (every run failed)"
        elif any(len(kinds) < 2 for kinds in shown):  # the default arm failed throughout, the stable one never
            picked += ", where it has one"
        written.add(plot_grad_norm_traces(labelled, folder / f"{name}-grad-norms.{fmt}", f"{title}\n{picked}"))
        written.add(plot_training_curves(labelled, folder / f"{name}-training.{fmt}", f"{title}\n{picked}"))
    return len(written)


# How plot_claims' figures say which runs they show (analysis.example_runs picks them).
_PICKED = {"failed": "failed run whose bottom layer lost the most gradient norm",
           "successful": "successful run whose bottom layer lost the least"}


def _studied(arms: Sequence[Mapping[str, Any]]) -> str:
    """What a claim's figures show, under its name: task / model, and each arm's recipe and seeds."""
    tasks = sorted({task_label({"name": str(arm["task"]), "train_size": arm.get("train_size")}) for arm in arms})
    what = " / ".join(tasks + sorted({stored_name(arm["model"]) for arm in arms}))
    recipes = ", ".join(f"{arm['arm']} = {arm['recipe']}" if arm["arm"] != arm["recipe"] else arm["recipe"]
                        for arm in arms)
    seeds = sorted({len(arm["keys"]) for arm in arms})
    return (f"{what}: {recipes}; {' or '.join(map(str, seeds))} seed{'s' if seeds != [1] else ''}"
            f"{' per arm' if len(arms) > 1 else ''}")
