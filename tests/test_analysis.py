"""The paper's explanatory analyses: gradient verdicts, collapse, forgetting, overfitting, loss surface."""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
import torch
import transformers

from stabench import analysis, plots
from stabench.data import collate, encode
from stabench.models import load_model, load_tokenizer, resolve
from stabench.recipes import get_recipe
from stabench.result import RunResult
from stabench.tasks import BUILTIN_PAIR_TASK, BUILTIN_SINGLE_TASK, load_task_data
from stabench.train import fine_tune, prepare

SMALL = dict(max_steps=6, trace_every=2, lr=1e-3)
STEPS = [1, *range(10, 201, 10)]  # trace every 10 steps, as in the paper's logs


def make_result(grad_norm=None, steps=STEPS, *, seed=0, failed=False, counts=(128, 128), train_loss=0.3,
                accuracy=0.8) -> RunResult:
    return RunResult(
        key=f"k{seed}", task={"name": "t"}, model={"name": "m"}, recipe={}, recipe_name="r", recipe_hash="h",
        seed=seed, environment={}, metrics={"accuracy": accuracy, "train_loss": train_loss},
        primary_metric="accuracy", majority_accuracy=0.5, failed=failed, collapsed=sum(c > 0 for c in counts) <= 1,
        diverged=False, steps=steps[-1] if steps else 0, wall_time_s=1.0, steps_per_s=1.0, started_at="",
        finished_at="", trace={"loss": [train_loss] * (steps[-1] if steps else 0), "step": list(steps),
                               "grad_norm": grad_norm or {}},
        prediction_counts={str(i): c for i, c in enumerate(counts)})


def curve(values_at: dict[int, float], steps=STEPS) -> list[float]:
    """Piecewise log-linear curve through {step: value} knots."""
    knots = sorted(values_at)
    return list(10 ** np.interp(steps, knots, np.log10([values_at[k] for k in knots])))


def traces(bottom, top, embeddings=None, classifier=None, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    flat = [1.0] * len(STEPS)
    table = {"embeddings": embeddings or bottom, "layer.0": bottom, "layer.1": top, "pooler": top,
             "classifier": classifier or flat}
    return {name: [v * (1 + noise * rng.uniform(-1, 1)) for v in values] for name, values in table.items()}


# --------------------------------------------------------------------------------------
# Vanishing gradients
# --------------------------------------------------------------------------------------
def test_the_analyses_take_a_claims_arms_and_refuse_scores_and_runs_read_without_traces(tmp_path):
    """A StudySet is every arm's runs; scores, or runs listed without their traces, are one line saying so."""
    from types import SimpleNamespace

    from stabench import plots, stats

    failed = make_result(traces(curve({1: 1.0, 200: 1e-4}), [1.0] * len(STEPS)), seed=0, failed=True,
                         counts=(256, 0), accuracy=0.5)
    ok = make_result(traces([1.0] * len(STEPS), [1.0] * len(STEPS)), seed=1)
    arms = {"no-bc": SimpleNamespace(results=[failed]), "bc": SimpleNamespace(results=[ok])}  # as a StudySet holds
    summary = analysis.gradient_summary(arms)
    assert summary["failed"]["seeds"] == [0] and summary["successful"]["seeds"] == [1]
    from stabench.report import gradient_rows

    rows = gradient_rows(summary)  # a table to read, not a nested dict on one line
    assert [(r["run"], r["seed"], r["vanished"], r["recovered"]) for r in rows] == [("failed", "0", "yes", "no"),
                                                                                    ("successful", "1", "no", "yes")]
    assert rows[0]["drop"] == f"{summary['failed']['drop'][0]:.3g}" and rows[0]["recipe"] == failed.recipe_name
    with pytest.raises(TypeError, match=r"^gradient_summary: unknown option\(s\) 'erly'; it takes vanishing_gradients' "
                                        r"early, factor, max_ratio, recover_factor, tail$"):
        analysis.gradient_summary(arms, erly=(1, 48))
    assert set(analysis.example_runs(arms)) == {"failed", "successful"}
    with pytest.raises(TypeError, match=r"^overfitting_trend: expected runs \(a RunResult, a Study, a list of those, or "
                                        r"a StudySet\), got a float \(0.5\); scores \(numbers\) go to stabench.stats"):
        analysis.overfitting_trend([0.5, 0.6, 0.7])
    # One study's statistics never pool a claim's arms (their seeds repeat, their recipes differ).
    with pytest.raises(TypeError, match=r"^summarize_runs: takes one study's runs, got the arms 'no-bc', 'bc' of a "
                                        r"claim; pick one, e.g. study\['no-bc'\]$"):
        stats.summarize_runs(arms)
    with pytest.raises(TypeError, match=r"^compare_runs: takes one study's runs, got 2 Studies; pass one"):
        stats.compare_runs(list(arms.values()), [ok, failed])
    with pytest.raises(TypeError, match=r"^aso: A should be scores \(numbers\), not what came .*; runs and Studies go "
                                        r"to compare_runs or study.compare$"):
        stats.aso([failed, ok], [0.5, 0.6])
    listed = dataclasses.replace(failed, trace={})  # as Store.query(traces=False) reads it
    said = r"run k0 \(seed 0\) holds no trace: it was read without one \(Store.query\(..., traces=False\)\)"
    with pytest.raises(ValueError, match=f"^vanishing_gradients: {said}"):
        analysis.gradient_summary([listed, ok])
    for plot in (plots.plot_grad_norm_traces, plots.plot_training_curves):
        with pytest.raises(ValueError, match=f"^{plot.__name__}: {said}"):
            plot([listed], tmp_path / "x.png", "t")
    assert not (tmp_path / "x.png").exists()


def test_a_trace_without_layers_names_the_groups_it_has():
    """A model whose layers were not recognised when it trained has them all in 'other'."""
    flat = [1.0] * len(STEPS)
    with pytest.raises(ValueError, match=r"has no per-layer gradient-norm trace; .* found groups embeddings, other, "
                                         r"classifier \(a model whose layers stabench does not recognise"):
        analysis.vanishing_gradients(make_result({"embeddings": flat, "other": flat, "classifier": flat}))
    with pytest.raises(ValueError, match=r"has a gradient-norm trace without its steps; expected trace\['step'\]"):
        analysis.vanishing_gradients(make_result({"layer.0": [], "layer.1": []}, steps=[]))


def test_bottom_layer_falling_1000x_and_staying_low_is_vanishing():
    bottom = curve({1: 1.0, 10: 0.5, 30: 1e-3, 200: 1e-3})
    top = curve({1: 1.0, 30: 0.1, 200: 0.1})
    verdict = analysis.vanishing_gradients(make_result(traces(bottom, top, noise=0.2)))
    assert verdict.vanished and not verdict.recovered
    assert verdict.drop == pytest.approx(1e-3, rel=0.5)
    assert verdict.bottom_top_ratio < 0.1 and verdict.window == (1, 100) and verdict.n_points == 11
    assert verdict.bottom == "layer.0" and verdict.top == "layer.1"
    assert verdict.layer_drops["classifier"] > 0.5 and verdict.layer_drops["embeddings"] < 0.01


def test_the_top_of_a_twelve_layer_encoder_is_layer_11_not_layer_9():
    """Layers sort by number, not as text: with 10+ layers "layer.10" is above "layer.2", whatever
    order the trace lists them in (JSON with sorted keys lists them as text)."""
    from stabench.result import layer_order

    names = sorted(f"layer.{i}" for i in range(12))  # as text: layer.0, layer.1, layer.10, layer.11, layer.2, ...
    assert sorted(["classifier", *names, "embeddings"], key=layer_order) == [
        "embeddings", *(f"layer.{i}" for i in range(12)), "classifier"]
    flat = [1.0] * len(STEPS)
    trace = {"embeddings": flat, **{name: flat for name in names}, "classifier": flat}
    trace["layer.0"] = curve({1: 1.0, 30: 1e-3, 200: 1e-3})
    verdict = analysis.vanishing_gradients(make_result(trace))
    assert verdict.bottom == "layer.0" and verdict.top == "layer.11" and verdict.vanished


def test_flat_trace_is_not_vanishing():
    flat = [1.0] * len(STEPS)
    verdict = analysis.vanishing_gradients(make_result(traces(flat, flat, noise=0.3)))
    assert not verdict.vanished and verdict.recovered
    assert 0.3 < verdict.drop < 3 and 0.5 < verdict.bottom_top_ratio < 2
    assert all(drop > 0.1 for drop in verdict.layer_drops.values())


def test_a_fall_that_recovers_is_not_vanishing():
    bottom = curve({1: 1.0, 30: 1e-3, 100: 1e-3, 200: 0.5})
    verdict = analysis.vanishing_gradients(make_result(traces(bottom, [1.0] * len(STEPS))))
    assert verdict.drop < 1e-2 and verdict.recovered and not verdict.vanished


def test_uniform_shrinking_counts_only_without_the_bottom_top_test():
    """All layers shrinking together is what a converging run does; the default asks bottom << top."""
    falling = curve({1: 1.0, 50: 1e-3, 200: 1e-3})
    result = make_result(traces(falling, falling, classifier=[1.0] * len(STEPS)))
    default = analysis.vanishing_gradients(result)
    assert not default.vanished and default.bottom_top_ratio == pytest.approx(1.0)
    loose = analysis.vanishing_gradients(result, max_ratio=None)
    assert loose.vanished and loose.layer_drops["classifier"] > 0.1
    assert all(drop < 0.01 for name, drop in loose.layer_drops.items() if name != "classifier")


def test_factor_and_window_are_parameters():
    bottom = curve({1: 1.0, 30: 2e-2, 200: 2e-2})  # a 50x fall
    result = make_result(traces(bottom, [1.0] * len(STEPS)))
    assert not analysis.vanishing_gradients(result).vanished
    assert analysis.vanishing_gradients(result, factor=10).vanished
    late = analysis.vanishing_gradients(result, early=(50, 150), factor=10)  # measured after the fall
    assert late.window == (50, 150) and not late.vanished and late.drop == pytest.approx(1.0)
    assert analysis.vanishing_gradients(result, early=np.array([50, 150]), factor=10).drop == late.drop
    with pytest.raises(ValueError, match="trace point"):
        analysis.vanishing_gradients(result, early=(2, 9))
    with pytest.raises(ValueError, match="gradient-norm trace"):
        analysis.vanishing_gradients(make_result({}))
    for bad, message in ((dict(factor=math.nan), r"factor=nan is invalid; expected a finite number > 1"),
                         (dict(factor="100"), r"factor='100' is invalid"),
                         (dict(recover_factor=1), r"recover_factor=1 is invalid"),
                         (dict(max_ratio=math.nan), r"max_ratio=nan is invalid; expected a finite number > 0"),
                         (dict(early=5), r"early=5 is invalid; expected a window of trace steps \(first, last\)")):
        with pytest.raises(ValueError, match=rf"^{message}"):  # NaN was silently never "vanished"
            analysis.vanishing_gradients(result, **bad)


def test_a_drop_of_exactly_one_over_factor_is_vanishing():
    """The documented boundary, drop <= 1/factor, is inclusive (0.01 is exact through the log mean)."""
    bottom = [1.0] + [0.01] * (len(STEPS) - 1)
    verdict = analysis.vanishing_gradients(make_result(traces(bottom, [1.0] * len(STEPS))))
    assert verdict.drop == 1 / 100 and not verdict.recovered and verdict.vanished


def test_a_fall_after_a_rise_is_measured_from_the_peak():
    """Collapsing MiniLM runs rose 2x to 75x during warmup before falling; the fall counts from the top."""
    bottom = curve({1: 0.05, 20: 4.0, 60: 4e-3, 200: 4e-3})  # 80x up, 1000x down: only 12x below the start
    top = curve({1: 1.0, 20: 2.0, 60: 0.5, 200: 0.5})
    verdict = analysis.vanishing_gradients(make_result(traces(bottom, top)))
    assert verdict.vanished and verdict.peak == pytest.approx(4.0) and verdict.start == pytest.approx(0.05)
    assert verdict.drop == pytest.approx(1e-3, rel=0.01) and verdict.end / verdict.start > 1 / 100


def test_a_collapse_late_in_the_window_is_judged_after_it():
    """Bottom and top alike until step 70: a whole-window mean ratio would hide the collapse."""
    bottom = curve({1: 1.0, 70: 1.0, 80: 1e-4, 200: 1e-4})
    top = curve({1: 1.0, 70: 1.0, 80: 0.1, 200: 0.1})
    verdict = analysis.vanishing_gradients(make_result(traces(bottom, top)))
    assert verdict.vanished and verdict.bottom_top_ratio == pytest.approx(1e-3, rel=0.01)
    at_the_end = curve({1: 1.0, 90: 1.0, 100: 1e-4, 200: 1e-4})  # at the window's very last point
    assert analysis.vanishing_gradients(make_result(traces(at_the_end, top))).vanished


def test_one_spike_in_a_healthy_run_is_not_a_collapse():
    bottom = [150.0 if step == 40 else 1.0 for step in STEPS]
    verdict = analysis.vanishing_gradients(make_result(traces(bottom, [1.0] * len(STEPS))))
    assert verdict.drop == pytest.approx(1 / 150) and verdict.recovered and not verdict.vanished


def test_a_run_whose_window_ends_in_a_dip_and_recovers_is_not_vanishing():
    bottom = curve({1: 1.0, 70: 1.0, 90: 1e-5, 130: 1e-5, 200: 1.0})
    verdict = analysis.vanishing_gradients(make_result(traces(bottom, [1.0] * len(STEPS))))
    assert verdict.drop < 1e-2 and verdict.recovered and not verdict.vanished
    brief = curve({1: 1.0, 90: 1.0, 100: 1e-5, 110: 1.0, 200: 1.0})  # over by the next trace point
    assert analysis.vanishing_gradients(make_result(traces(brief, [1.0] * len(STEPS)))).drop > 1e-2


def test_the_tail_never_swallows_the_window_start():
    """A tail that the run's end cuts short reaches back into the window, but never to its first point."""
    bottom = curve({1: 1.0, 10: 1e-3, 200: 1e-3})
    verdict = analysis.vanishing_gradients(make_result(traces(bottom, [1.0] * len(STEPS))), early=(1, 200), tail=50)
    assert verdict.n_points == len(STEPS) and verdict.drop == pytest.approx(1e-3) and verdict.vanished
    short = make_result(traces(bottom, [1.0] * len(STEPS)), steps=STEPS[:2])
    short.trace["grad_norm"] = {name: values[:2] for name, values in short.trace["grad_norm"].items()}
    assert analysis.vanishing_gradients(short, early=(1, 10)).drop == pytest.approx(1e-3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"tail=.* is invalid; expected a number of trace points >= 1"):
            analysis.vanishing_gradients(make_result(traces(bottom, bottom)), tail=bad)


def test_a_shared_layer_group_is_judged_on_its_drop_alone():
    """ALBERT traces one 'layer.0' for all its layers: bottom and top are the same group."""
    collapsed = make_result({"embeddings": curve({1: 1.0, 200: 1e-4}), "layer.0": curve({1: 1.0, 30: 1e-4, 200: 1e-4}),
                             "classifier": [1.0] * len(STEPS)}, failed=True)
    verdict = analysis.vanishing_gradients(collapsed)
    assert verdict.bottom == verdict.top == "layer.0" and math.isnan(verdict.bottom_top_ratio)
    assert verdict.vanished and verdict.drop < 1e-3
    healthy = make_result({"layer.0": [1.0] * len(STEPS), "classifier": [1.0] * len(STEPS)}, seed=1)
    assert not analysis.vanishing_gradients(healthy).vanished
    assert analysis.gradient_summary([collapsed, healthy])["separated"] is None  # no ratios to compare


def test_gradient_summary_splits_failed_and_successful_runs():
    flat = [1.0] * len(STEPS)
    collapsed = traces(curve({1: 1.0, 30: 1e-4, 200: 1e-4}), curve({1: 1.0, 30: 0.1, 200: 0.1}))
    results = [make_result(collapsed, seed=0, failed=True), make_result(traces(flat, flat), seed=1),
               make_result(collapsed, seed=2, failed=True), make_result(traces(flat, flat, noise=0.2), seed=3)]
    summary = analysis.gradient_summary(results)
    assert summary["failed"]["seeds"] == [0, 2] and summary["successful"]["seeds"] == [1, 3]
    assert summary["failed"]["keys"] == ["k0", "k2"] and summary["successful"]["recipes"] == ["r", "r"]
    assert summary["vanished_in_failed"] == 2 and summary["vanished_in_successful"] == 0
    assert summary["separated"] and summary["max_failed_ratio"] < 0.1 < summary["min_successful_ratio"]
    summary = analysis.gradient_summary(results[:1])
    assert summary["separated"] is None and summary["n_successful"] == 0


def test_failed_and_successful_runs_with_equal_ratios_are_not_separated():
    same = traces(curve({1: 1.0, 30: 1e-4, 200: 1e-4}), curve({1: 1.0, 30: 0.1, 200: 0.1}))
    summary = analysis.gradient_summary([make_result(same, seed=0, failed=True), make_result(same, seed=1)])
    assert summary["max_failed_ratio"] == summary["min_successful_ratio"] and summary["separated"] is False


def test_failed_runs_on_both_sides_of_a_successful_run_are_not_separated():
    """One failed run below and one above the successful run's ratio overlap: not separated (the test
    must take the largest failed ratio, not the smallest)."""
    flat = [1.0] * len(STEPS)
    collapsed = traces(curve({1: 1.0, 30: 1e-4, 200: 1e-4}), curve({1: 1.0, 30: 0.1, 200: 0.1}))
    halved = traces(curve({1: 1.0, 30: 0.1, 200: 0.1}), flat)
    results = [make_result(collapsed, seed=0, failed=True), make_result(traces(flat, flat), seed=1, failed=True),
               make_result(halved, seed=2)]
    summary = analysis.gradient_summary(results)
    failed, ok = summary["failed"]["bottom_top_ratio"], summary["successful"]["bottom_top_ratio"]
    assert min(failed) < min(ok) < max(failed)  # overlapping groups
    assert summary["max_failed_ratio"] == max(failed) and summary["separated"] is False


# --------------------------------------------------------------------------------------
# Collapse to a constant predictor
# --------------------------------------------------------------------------------------
def test_collapsed_to_constant():
    assert analysis.collapsed_to_constant(make_result(counts=(256, 0), train_loss=0.70))
    assert not analysis.collapsed_to_constant(make_result(counts=(256, 0), train_loss=0.50))  # learning still
    assert not analysis.collapsed_to_constant(make_result(counts=(130, 126), train_loss=0.693))  # two classes
    assert analysis.collapsed_to_constant(make_result(counts=(0, 90, 0), train_loss=1.10))  # ln 3
    assert not analysis.collapsed_to_constant(make_result(counts=(0, 90, 0), train_loss=0.693))
    assert analysis.collapsed_to_constant(make_result(counts=(256, 0), train_loss=0.50), reference_loss=0.5)
    assert not analysis.collapsed_to_constant(make_result(counts=(256, 0), train_loss=math.nan))


# --------------------------------------------------------------------------------------
# Generalisation: no overfitting
# --------------------------------------------------------------------------------------
def _loss_accuracy_runs(accuracy_of_log_loss, n=12):
    rng = np.random.default_rng(0)
    losses = np.logspace(-1, -5, n)
    runs = [make_result(seed=i, train_loss=float(loss), accuracy=float(accuracy_of_log_loss(np.log10(loss))
                                                                       + rng.uniform(-0.01, 0.01)))
            for i, loss in enumerate(losses)]
    failed = [make_result(seed=100 + i, failed=True, train_loss=0.69, accuracy=0.5) for i in range(3)]
    return runs + failed


def test_flat_accuracy_over_four_decades_of_loss_is_not_overfitting():
    results = _loss_accuracy_runs(lambda log_loss: 0.70)
    points = analysis.generalisation_points(results)
    assert len(points) == 15 and points[-1] == (0.69, 0.5)
    assert len(analysis.generalisation_points(results, successful_only=True)) == 12
    trend = analysis.overfitting_trend(results)
    assert trend.n == 12 and trend.flat and not trend.overfits and trend.verdict == "flat"
    assert abs(trend.slope) < 0.01 and trend.loss_decades == pytest.approx(4.0)
    assert trend.log10_loss == pytest.approx((-5.0, -1.0)) and trend.intercept == pytest.approx(0.70, abs=0.02)
    assert -0.01 < trend.slope_ci[0] < trend.slope < trend.slope_ci[1] < 0.01
    # "Flat" is two one-sided tests at alpha: the slope's (1 - 2 alpha) interval within the tolerance.
    from scipy import stats as sps

    loss, accuracy = zip(*analysis.generalisation_points(results, successful_only=True))
    fit = sps.linregress(np.log10(loss), accuracy)
    half_width = sps.t.ppf(1 - trend.alpha, 12 - 2) * fit.stderr
    assert trend.slope_ci == pytest.approx((fit.slope - half_width, fit.slope + half_width), rel=1e-9)


def test_a_small_slope_from_few_noisy_runs_is_inconclusive_not_flat():
    """Five runs over half a decade of loss cannot show that accuracy stays within a point per decade."""
    accuracies = [0.70, 0.66, 0.71, 0.65, 0.70]
    runs = [make_result(seed=i, train_loss=float(loss), accuracy=acc)
            for i, (loss, acc) in enumerate(zip(np.logspace(-2, -2.5, 5), accuracies))]
    trend = analysis.overfitting_trend(runs)
    assert abs(trend.slope) < 0.01 and trend.slope_ci[1] - trend.slope_ci[0] > 0.02
    assert not trend.flat and not trend.overfits and trend.verdict == "inconclusive"
    for bad, message in ((dict(alpha=0.95), "alpha=0.95 is invalid; expected a level in (0, 0.5)"),
                         (dict(alpha=5), "alpha=5 is invalid"),
                         (dict(tolerance=math.inf), "tolerance=inf is invalid; expected a finite slope >= 0")):
        with pytest.raises(ValueError, match=f"^overfitting_trend {re.escape(message)}"):  # 0.95 made it "flat"
            analysis.overfitting_trend(runs, **bad)


def test_accuracy_falling_with_loss_is_overfitting():
    trend = analysis.overfitting_trend(_loss_accuracy_runs(lambda log_loss: 0.80 + 0.03 * log_loss))
    assert not trend.flat and trend.overfits and trend.verdict == "overfits"
    assert trend.rho > 0.8 and trend.p < 0.01 and trend.slope == pytest.approx(0.03, abs=0.005)
    assert trend.intercept == pytest.approx(0.80, abs=0.02)  # the line the Fig. 5 plot draws
    with pytest.raises(ValueError, match="at least 3"):
        analysis.overfitting_trend(_loss_accuracy_runs(lambda log_loss: 0.7, n=2))


def test_three_runs_in_order_are_no_significant_trend():
    """Three runs can be ordered six ways, two of them perfectly: the exact two-sided p is 1/3,
    where scipy's t approximation says 0 and would call three runs an overfitting trend."""
    runs = [make_result(seed=i, train_loss=loss, accuracy=acc)
            for i, (loss, acc) in enumerate([(1e-1, 0.97), (1e-3, 0.96), (1e-5, 0.95)])]
    trend = analysis.overfitting_trend(runs)
    assert trend.rho == pytest.approx(1.0) and trend.p == pytest.approx(1 / 3)
    assert not trend.overfits and trend.verdict != "overfits"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, -1), st.integers(60, 70)), min_size=3, max_size=6))
def test_the_trend_p_of_few_runs_counts_every_ordering(points):
    """Up to 8 runs, p is the share of the orderings of the accuracies whose |rho| reaches the
    observed one (ties ranked by their mean rank), counted here by brute force."""
    from scipy.stats import rankdata

    assume(len({loss for loss, _ in points}) > 1 and len({acc for _, acc in points}) > 1)
    runs = [make_result(seed=i, train_loss=10.0 ** loss, accuracy=acc / 100) for i, (loss, acc) in enumerate(points)]
    trend = analysis.overfitting_trend(runs)
    x, y = rankdata([loss for loss, _ in points]), rankdata([acc for _, acc in points])

    def rho(order):
        return np.corrcoef(x, y[list(order)])[0, 1]

    observed = rho(range(len(y)))
    orderings = list(itertools.permutations(range(len(y))))
    reached = sum(abs(rho(order)) >= abs(observed) - 1e-12 for order in orderings)
    assert trend.rho == pytest.approx(observed) and trend.p == pytest.approx(reached / len(orderings))


def test_the_trend_p_of_exactly_eight_runs_is_exact():
    """Eight runs are still within the exact limit: p counts all 8! orderings, not scipy's t approximation."""
    from scipy.stats import rankdata, spearmanr

    log_loss = np.linspace(-1, -5, 8)
    accuracies = [0.70, 0.72, 0.69, 0.74, 0.73, 0.71, 0.76, 0.75]  # rising as the loss falls, with swaps
    runs = [make_result(seed=i, train_loss=float(10.0 ** loss), accuracy=acc)
            for i, (loss, acc) in enumerate(zip(log_loss, accuracies))]
    trend = analysis.overfitting_trend(runs)
    x, y = rankdata(log_loss), rankdata(accuracies)
    orderings = np.array(list(itertools.permutations(range(8))))
    xc, yc = x - x.mean(), y[orderings] - y.mean()
    rhos = (yc * xc).sum(axis=1) / np.sqrt((xc ** 2).sum() * (yc ** 2).sum(axis=1))
    observed = rhos[0]  # the identity ordering comes first
    exact = np.mean(np.abs(rhos) >= abs(observed) - 1e-12)
    approximate = spearmanr(log_loss, accuracies).pvalue
    assert exact != pytest.approx(approximate, rel=0.05)  # the two p differ on these runs
    assert trend.n == 8 and trend.rho == pytest.approx(observed) and trend.p == pytest.approx(exact)


def test_runs_given_as_a_generator_make_the_same_trend():
    runs = _loss_accuracy_runs(lambda log_loss: 0.70)
    for run in runs:
        run.task["n_eval"] = 277  # the rounding floor of the slope's error reads the runs again
    assert analysis.overfitting_trend(run for run in runs) == analysis.overfitting_trend(runs)


def test_runs_of_two_tasks_make_no_trend():
    """RTE's accuracies near 0.7 and MRPC's near 0.85 would make a trend of the tasks, not of the loss."""
    rte = _loss_accuracy_runs(lambda log_loss: 0.70)
    mrpc = [dataclasses.replace(run, task={"name": "mrpc"}) for run in _loss_accuracy_runs(lambda log_loss: 0.85)]
    with pytest.raises(ValueError, match=r"^overfitting_trend: the runs are of 2 tasks \(mrpc, t\)"):
        analysis.overfitting_trend(rte + mrpc)


# --------------------------------------------------------------------------------------
# Real (tiny) runs: forgetting curve and loss surface
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(tiny_model):
    """The pretrained classifier of seed 0 and two 6-step fine-tuned models (seeds 0 and 1)."""
    recipe = get_recipe("bert-default", **SMALL)
    first, first_model = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0), return_model=True)
    second, second_model = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default-bc", **SMALL),
                                             seed=1), return_model=True)
    transformers.set_seed(0)  # the head fine_tune(seed=0) started from
    pretrained = load_model(resolve(tiny_model), 2, recipe.dropout).eval()
    return {"pretrained": pretrained, "failed": first_model, "successful": second_model, "result": first}


def test_vanishing_gradients_reads_a_real_trace(tiny_runs):
    verdict = analysis.vanishing_gradients(tiny_runs["result"])
    assert verdict.window == (1, 6) and verdict.n_points == 4
    assert math.isfinite(verdict.drop) and math.isfinite(verdict.bottom_top_ratio)
    assert set(verdict.layer_drops) == {"embeddings", "layer.0", "layer.1", "pooler", "classifier"}


def _texts():
    data = load_task_data(BUILTIN_SINGLE_TASK)
    return list(data.eval["sentence"][:48])


@pytest.mark.filterwarnings("ignore::stabench.analysis.RandomMaskedLMWeights")  # the tiny BERT has no MLM head
def test_forgetting_curve_resets_top_layers_to_pretrained(tiny_model, tiny_runs):
    tokenizer = load_tokenizer(resolve(tiny_model))
    finetuned = tiny_runs["failed"]
    before = {k: v.clone() for k, v in finetuned.state_dict().items()}
    texts = _texts()
    points = analysis.forgetting_curve(tiny_model, finetuned, texts, tokenizer, ks=[0, 1, 2, 3])
    assert [k for k, _ in points] == [0, 1, 2, 3]
    ppl = dict(points)
    assert all(math.isfinite(p) and p > 1 for p in ppl.values())
    assert all(torch.equal(before[k], v) for k, v in finetuned.state_dict().items())  # not modified

    def direct(load_from_finetuned):
        model = analysis.load_masked_lm(tiny_model)
        state = {k: v for k, v in finetuned.base_model.state_dict().items() if load_from_finetuned(k)}
        model.base_model.load_state_dict(state, strict=False)
        return analysis.masked_lm_perplexity(model, texts, tokenizer)

    pretrained = direct(lambda name: False)
    assert ppl[3] == pytest.approx(pretrained, rel=1e-6)  # k = L+1: the pretrained model itself
    assert ppl[2] == pytest.approx(direct(lambda name: name.startswith("embeddings.")), rel=1e-6)  # k = L
    assert ppl[1] == pytest.approx(direct(lambda name: not name.startswith("encoder.layer.1.")), rel=1e-6)
    assert ppl[0] == pytest.approx(direct(lambda name: True), rel=1e-6)  # the fine-tuned encoder
    assert ppl[0] != pytest.approx(pretrained, rel=1e-3)  # fine-tuning moved the encoder
    with pytest.raises(ValueError, match="out of range"):
        analysis.forgetting_curve(tiny_model, finetuned, texts, tokenizer, ks=[4])


def test_load_masked_lm_warns_when_the_head_is_drawn_at_random(tiny_model, tmp_path):
    """The tiny BERT is a classifier's save: its MLM head is random, and a forgetting curve on it
    would measure that head.  Saved with its head, the same encoder loads without the warning."""
    with pytest.warns(analysis.RandomMaskedLMWeights, match=r"has no weights for cls\.predictions\..*"
                                                            r"measure a random head"):
        model = analysis.load_masked_lm(tiny_model)
    model.save_pretrained(tmp_path / "with-head")
    with warnings.catch_warnings():
        warnings.simplefilter("error", analysis.RandomMaskedLMWeights)
        reloaded = analysis.load_masked_lm(str(tmp_path / "with-head"), seed=1)  # another seed: nothing drawn
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))


@pytest.mark.filterwarnings("ignore::stabench.analysis.RandomMaskedLMWeights")  # the tiny BERT has no MLM head
def test_masked_lm_perplexity_is_seeded(tiny_model):
    tokenizer = load_tokenizer(resolve(tiny_model))
    model = analysis.load_masked_lm(tiny_model)
    texts = _texts()
    a, b = (analysis.masked_lm_perplexity(model, texts, tokenizer, seed=3) for _ in range(2))
    assert a == b and a != analysis.masked_lm_perplexity(model, texts, tokenizer, seed=4)
    assert analysis.masked_lm_perplexity(analysis.load_masked_lm(tiny_model), texts, tokenizer, seed=3) == a


@pytest.mark.filterwarnings("ignore::stabench.analysis.RandomMaskedLMWeights")  # the tiny BERT has no MLM head
def test_every_text_contributes_a_masked_token_even_at_a_tiny_mask_prob(tiny_model):
    """At a mask_prob that draws no token of a short text, one of its tokens is still masked, as documented."""
    tokenizer = load_tokenizer(resolve(tiny_model))
    texts = _texts()[:8]
    plan = analysis._mask_plan(tokenizer, texts, mask_prob=1e-9, seed=0, max_length=128)
    assert len(plan) == len(texts)
    for ids, positions in plan:
        special = set(tokenizer.all_special_ids)
        assert len(positions) == 1 and int(ids[positions[0]]) not in special
    perplexity = analysis.masked_lm_perplexity(analysis.load_masked_lm(tiny_model), texts, tokenizer, mask_prob=1e-9)
    assert math.isfinite(perplexity)


def test_wikitext2_texts_raises_a_clear_error_when_unavailable(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="WikiText-2 is unavailable"):
        analysis.wikitext2_texts(10)


def _batches(tiny_model):
    tokenizer = load_tokenizer(resolve(tiny_model))
    train, _ = encode(load_task_data(BUILTIN_PAIR_TASK), tokenizer, 128)
    pad = tokenizer.pad_token_id
    return [collate(train, range(0, 16), pad), collate(train, range(16, 40), pad)]  # unequal sizes


def _direct_loss_and_norm(model, batches):
    model.eval()
    model.zero_grad(set_to_none=True)
    n = sum(len(b["labels"]) for b in batches)
    loss = sum(model(**b).loss * len(b["labels"]) / n for b in batches)
    loss.backward()
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), float(norm)


def test_loss_surface_plane_through_the_three_models(tiny_model, tiny_runs, tmp_path):
    models = [tiny_runs[name] for name in ("pretrained", "failed", "successful")]
    batches = _batches(tiny_model)
    before = [p.clone() for p in models[0].parameters()]
    surface = analysis.loss_surface(*models, batches, grid=(5, 4), margin=0.2)
    assert surface["alpha"].shape == (5,) and surface["beta"].shape == (4,)
    assert surface["loss"].shape == (4, 5) and surface["grad_norm"].shape == (4, 5)
    assert np.isfinite(surface["loss"]).all() and (surface["grad_norm"] > 0).all()
    assert surface["n_examples"] == 40
    for name, model in zip(("pretrained", "failed", "successful"), models):
        point = surface["points"][name]
        loss, norm = _direct_loss_and_norm(model, batches)
        assert point["loss"] == pytest.approx(loss, abs=1e-5), name
        assert point["grad_norm"] == pytest.approx(norm, rel=1e-3, abs=1e-6), name
    coords = {name: np.asarray(p["coords"]) for name, p in surface["points"].items()}
    assert tuple(coords["pretrained"]) == (0.0, 0.0) and coords["failed"][1] == 0.0
    assert coords["failed"][0] == pytest.approx(surface["distances"]["failed"])
    assert np.linalg.norm(coords["successful"]) == pytest.approx(surface["distances"]["successful"], rel=1e-6)
    xs, ys = [c[0] for c in coords.values()], [c[1] for c in coords.values()]
    span = max(xs) - min(xs)
    assert surface["alpha"][0] == pytest.approx(min(xs) - 0.2 * span)
    assert surface["alpha"][-1] == pytest.approx(max(xs) + 0.2 * span)
    assert surface["beta"][0] < min(ys) and surface["beta"][-1] > max(ys)
    assert all(torch.equal(a, b) for a, b in zip(before, models[0].parameters()))  # scratch copy only

    path = plots.plot_loss_surface(surface, tmp_path / "plots" / "surface.png", "tiny BERT")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    for bad, got in (({}, "keys none"), ({"alpha": [0, 1], "beta": [0, 1]}, "keys 'alpha', 'beta'"),
                     (list(surface), "a list")):
        with pytest.raises(ValueError, match=rf"^plot_loss_surface needs what analysis.loss_surface returns \(alpha, "
                                             rf"beta, loss, points\); got {got}$"):  # a bare KeyError: 'alpha'
            plots.plot_loss_surface(bad, tmp_path / "bad.png", "nothing")
    assert not (tmp_path / "bad.png").exists()


def test_loss_surface_rejects_other_architectures_and_degenerate_planes(tiny_model, tiny_runs):
    batches = _batches(tiny_model)[:1]
    three_way = copy.deepcopy(tiny_runs["successful"])
    three_way.classifier = torch.nn.Linear(three_way.classifier.in_features, 3)
    with pytest.raises(ValueError, match="differ"):
        analysis.loss_surface(tiny_runs["pretrained"], three_way, tiny_runs["successful"], batches)
    with pytest.raises(ValueError, match="equals the pretrained"):
        analysis.loss_surface(tiny_runs["pretrained"], tiny_runs["pretrained"], tiny_runs["successful"], batches)


def test_example_runs_are_the_failed_run_that_lost_most_and_the_success_that_lost_least():
    falls = {seed: curve({1: 1.0, 200: drop}) for seed, drop in enumerate([1e-2, 1e-4, 0.5, 0.9, float("nan")])}
    runs = [make_result(traces(falls[s], falls[s]), seed=s, failed=s < 2) for s in range(5)]
    examples = analysis.example_runs(runs)
    assert examples["failed"].seed == 1 and examples["successful"].seed == 3  # a NaN trace is never chosen
    assert list(analysis.example_runs(runs[2:])) == ["successful"]


def test_accuracy_that_never_moves_is_flat_and_rising_accuracy_is_not_overfitting():
    """Every run at the same accuracy is exactly flat; lower loss with higher accuracy is its own verdict."""
    import dataclasses

    def tied(losses, accuracy=0.7):
        return analysis.overfitting_trend([dataclasses.replace(make_result(seed=i, train_loss=float(loss),
                                                                           accuracy=accuracy),
                                                               task={"name": "t", "n_eval": 277})
                                           for i, loss in enumerate(losses)])

    wide = tied(np.logspace(-1, -2.5, 6))  # six runs over 1.5 decades: known flat to a fraction of a point
    assert wide.flat and wide.verdict == "flat" and 0 < wide.slope_ci[1] < 0.01 and abs(wide.slope) < 1e-12
    ceiling = tied(np.logspace(-1, -2.5, 6), accuracy=1.0)  # exactly tied (0.7's float noise hid scipy's NaN stderr)
    assert ceiling.verdict == "flat" and ceiling.slope_ci == pytest.approx(wide.slope_ci, abs=1e-12)
    narrow = tied(np.logspace(-1, -1.1, 3))  # three runs over 0.1 decade: one dev example could tilt it
    assert not narrow.flat and narrow.verdict == "inconclusive" and narrow.slope_ci[1] > 0.05
    unknown = analysis.overfitting_trend([make_result(seed=i, train_loss=float(loss), accuracy=0.7)
                                          for i, loss in enumerate(np.logspace(-1, -2.5, 6))])
    assert unknown.verdict == "inconclusive"  # no n_eval: a tie says nothing about the slope
    rising = analysis.overfitting_trend(_loss_accuracy_runs(lambda log_loss: 0.80 - 0.03 * log_loss))
    assert rising.improves and not rising.overfits and not rising.flat and rising.verdict == "improves"
    assert str(rising).startswith("improves: dev accuracy")
    # Rising by a fraction of the tolerance: the equivalence test's "flat", and the message says both.
    slightly = analysis.overfitting_trend(_loss_accuracy_runs(lambda log_loss: 0.80 - 0.0045 * log_loss))
    assert slightly.flat and slightly.improves and slightly.verdict == "flat"
    assert str(slightly).startswith(f"flat, improving within the tolerance: dev accuracy {slightly.slope:+.3g} per "
                                    f"decade")
    assert str(wide).startswith("flat: dev accuracy")
    falling = analysis.overfitting_trend(_loss_accuracy_runs(lambda log_loss: 0.80 + 0.007 * log_loss))
    assert falling.flat and falling.overfits and falling.verdict == "overfits"  # a significant fall wins
    assert str(falling).startswith("overfits, within the tolerance: dev accuracy +")


def test_encoder_gradients_at_exactly_zero_vanished_only_if_the_classifier_still_gets_gradient():
    """A huge lr can saturate the pooler: every encoder layer at exactly 0 is no bottom/top ratio
    of 1.  With gradient still at the classifier it vanished below it; with the classifier at 0
    too, the loss itself went to zero.  A top layer at 0 with a live bottom layer is no vanishing."""
    dead = [0.0 if v < 1e-35 else v for v in curve({1: 1.0, 10: 1e-3, 11: 1e-40, 200: 1e-40})]
    alive = curve({1: 1.0, 200: 0.5})
    below_head = analysis.vanishing_gradients(make_result(traces(dead, dead, classifier=alive)))
    assert below_head.vanished and math.isnan(below_head.bottom_top_ratio) and below_head.drop <= 1e-20
    loss_gone = analysis.vanishing_gradients(make_result(traces(dead, dead, classifier=dead)))
    assert not loss_gone.vanished and math.isnan(loss_gone.bottom_top_ratio)
    fallen = curve({1: 1.0, 30: 5e-3, 200: 5e-3})  # 200x down, but far above a dead top layer
    top_dead = analysis.vanishing_gradients(make_result(traces(fallen, dead)))
    assert not top_dead.vanished and top_dead.bottom_top_ratio > 1e20


def test_the_recovery_and_bottom_top_boundaries_are_inclusive():
    """Back to exactly start / recover_factor is recovered; a bottom/top ratio of exactly max_ratio
    is a contrast (all of it exact through the log means)."""
    n = len(STEPS)
    back = analysis.vanishing_gradients(make_result(traces([1.0] + [1e-3] * (n - 4) + [0.1] * 3, [1.0] * n)))
    assert back.final == back.start / 10 and back.recovered and not back.vanished
    verdict = analysis.vanishing_gradients(make_result(traces([1.0] + [1e-3] * (n - 1), [1.0] + [1e-2] * (n - 1))))
    assert verdict.bottom_top_ratio == 0.1 and verdict.vanished


def test_dead_encoder_gradients_without_a_traced_classifier_are_not_called_vanishing():
    """With no classifier trace there is no sign that gradient still reached the head."""
    dead = [0.0 if v < 1e-35 else v for v in curve({1: 1.0, 10: 1e-3, 11: 1e-40, 200: 1e-40})]
    verdict = analysis.vanishing_gradients(make_result({"embeddings": dead, "layer.0": dead, "layer.1": dead}))
    assert math.isnan(verdict.bottom_top_ratio) and not verdict.vanished
    with_head = {"embeddings": dead, "layer.0": dead, "layer.1": dead, "classifier": [1.0] * len(STEPS)}
    assert analysis.vanishing_gradients(make_result(with_head)).vanished


def test_example_runs_fall_back_to_an_untraced_run_and_never_divide_by_a_zero_start():
    """A group whose runs have no usable trace (none, NaN, or a bottom layer starting at 0) still gets
    its example: the first run."""
    untraced = make_result(seed=0, failed=True)
    zero_start = make_result(traces([0.0] + [1.0] * (len(STEPS) - 1), [1.0] * len(STEPS)), seed=1, failed=True)
    assert analysis.example_runs([untraced, zero_start])["failed"] is untraced
    assert analysis.example_runs([zero_start, untraced])["failed"] is zero_start
    traced = make_result(traces(curve({1: 1.0, 200: 0.5}), [1.0] * len(STEPS)), seed=2, failed=True)
    assert analysis.example_runs([zero_start, traced])["failed"] is traced


def test_a_train_loss_exactly_tolerance_from_the_reference_is_at_chance():
    assert analysis.collapsed_to_constant(make_result(counts=(256, 0), train_loss=0.75), tolerance=0.25,
                                          reference_loss=0.5)
    assert not analysis.collapsed_to_constant(make_result(counts=(256, 0), train_loss=0.76), tolerance=0.25,
                                              reference_loss=0.5)


def test_a_run_without_a_recorded_train_loss_is_judged_on_its_last_step_loss():
    """Records made before metrics['train_loss'] existed: the loss the run ended at, not the one it began at."""
    run = make_result(counts=(256, 0))
    del run.metrics["train_loss"]
    run.trace["loss"] = [0.2] * 5 + [0.69]
    assert analysis.collapsed_to_constant(run)
    run.trace["loss"] = [0.69] * 5 + [0.2]
    assert not analysis.collapsed_to_constant(run)


def test_a_mask_prob_of_one_masks_every_non_special_token(tiny_model):
    """mask_prob is in (0, 1]: 1 masks them all, as documented; above 1 is refused."""
    tokenizer = load_tokenizer(resolve(tiny_model))
    texts = _texts()[:4]
    plan = analysis._mask_plan(tokenizer, texts, mask_prob=1.0, seed=0, max_length=128)
    special = set(tokenizer.all_special_ids)
    for ids, positions in plan:
        assert sorted(positions.tolist()) == [i for i, token in enumerate(ids.tolist()) if token not in special]
    with pytest.raises(ValueError, match=r"mask_prob=1\.5 must be in \(0, 1\]"):
        analysis._mask_plan(tokenizer, texts, mask_prob=1.5, seed=0, max_length=128)


def test_the_tie_floor_comes_from_the_coarsest_dev_split():
    """Accuracies known to 1/100 are no flatter for one run scored on 1000 examples."""
    import dataclasses

    losses = np.logspace(-1, -2.5, 6)

    def tied(n_evals):
        return analysis.overfitting_trend([dataclasses.replace(make_result(seed=i, train_loss=float(loss),
                                                                           accuracy=0.7),
                                                               task={"name": "t", "n_eval": n_eval})
                                           for i, (loss, n_eval) in enumerate(zip(losses, n_evals))])

    coarse, fine = tied([100] * 6), tied([1000] * 6)
    assert fine.slope_ci[1] < coarse.slope_ci[1]
    assert tied([100] + [1000] * 5).slope_ci == pytest.approx(coarse.slope_ci, abs=1e-12)


def test_the_flat_and_improves_boundaries():
    """A slope interval reaching exactly -tolerance is within it (flat); p exactly alpha is not significant."""
    runs = _loss_accuracy_runs(lambda log_loss: 0.80 - 0.001 * log_loss)
    first = analysis.overfitting_trend(runs)
    assert first.slope < 0
    edge = analysis.overfitting_trend(runs, tolerance=-first.slope_ci[0])
    assert edge.slope_ci == first.slope_ci and edge.flat
    few = [make_result(seed=i, train_loss=float(loss), accuracy=acc)
           for i, (loss, acc) in enumerate([(1e-1, 0.70), (1e-2, 0.72), (1e-3, 0.74), (1e-4, 0.76)])]
    trend = analysis.overfitting_trend(few)
    assert trend.rho == -1 and 0 < trend.p < 0.5  # exact over the 24 orderings
    assert analysis.overfitting_trend(few, alpha=trend.p).improves is False
    assert analysis.overfitting_trend(few, alpha=min(0.49, trend.p * 1.01)).improves is True


def test_a_dead_bottom_layer_under_a_live_top_layer_is_a_contrast_not_dead_encoder():
    """Only bottom *and* top at exactly zero lose the ratio; a bottom layer dead under a live top layer
    is the sharpest bottom/top contrast there is, whatever the classifier's gradient did."""
    dead = [0.0 if v < 1e-35 else v for v in curve({1: 1.0, 10: 1e-3, 11: 1e-40, 200: 1e-40})]
    alive = curve({1: 1.0, 200: 0.5})
    for classifier in (alive, dead):
        verdict = analysis.vanishing_gradients(make_result(traces(dead, alive, classifier=classifier)))
        assert verdict.bottom_top_ratio < 1e-25 and verdict.vanished
