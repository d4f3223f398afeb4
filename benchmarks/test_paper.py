"""Mosbach, Andriushchenko & Klakow, "On the Stability of Fine-tuning BERT" (ICLR 2021), as claims.

Paper scale (the default profile) needs a CUDA GPU, Hugging Face hub access (or a filled
cache) for the models and ``nyu-mll/glue``; without them every claim skips and says what
is missing.  ``--stabench-profile=toy`` runs every claim end to end on a tiny random BERT and
the built-in tasks with 2 seeds: that checks runs, traces, statistics and reports, and
reports the paper's thresholds as xfail, since they are not expected to hold there.

Thresholds are statistical statements over 25 seeds; see each claim's docstring.
"""
import math

import pytest

import stabench
from stabench import analysis, plots, stats
from stabench.claims import Session
from stabench.models import stored_name

SEEDS = 25
BERT, ROBERTA, ALBERT = "bert-large-uncased", "roberta-large", "albert-large-v2"

# Preprint (arXiv v1) Table 1, BERT-large, 25 seeds: std / mean / median / max of the dev metric
# (RTE accuracy, MRPC F1, CoLA MCC), in percent.  The camera-ready table differs somewhat.
TABLE_1_PERCENT = {
    "rte": {"default": (7.2, 52.3, 47.3, 71.1), "mixout": (7.9, 65.3, 69.1, 74.4), "stable": (2.4, 70.1, 70.0, 75.5)},
    "mrpc": {"default": (5.9, 79.0, 74.8, 89.4), "mixout": (3.8, 87.8, 89.5, 91.8), "stable": (0.8, 89.6, 89.5, 91.4)},
    "cola": {"default": (25.6, 45.6, 59.1, 64.6), "mixout": (20.9, 51.9, 60.3, 64.0),
             "stable": (1.0, 64.6, 64.7, 66.8)},
}


def _as_in_the_table(std: float, mean: float, median: float, maximum: float) -> str:
    """The paper's percentages as the claims table shows a study: a fraction's mean ± std first."""
    return f"{mean / 100:.3f} ± {std / 100:.3f} (median {median / 100:.3f}, max {maximum / 100:.3f})"


TABLE_1 = {task: {arm: _as_in_the_table(*numbers) for arm, numbers in arms.items()}
           for task, arms in TABLE_1_PERCENT.items()}
TABLE_1_SOURCE = ("Mosbach et al. 2020, arXiv:2006.04884v1, Table 1, its percentages as fractions: mean ± std "
                  "(median, max)")

TABLE_1_ARMS = {"default": {"recipe": "bert-default"}, "mixout": {"recipe": "mixout"},
                "stable": {"recipe": "mosbach-stable"}}

# At toy scale a claim about successful runs needs some: the tiny BERT learns the built-in
# single-sentence task in 80 steps at this lr with every recipe here (the stable one too).
TOY_LEARNS = {"task_map": {"rte": "polarity", "mrpc": "polarity", "cola": "polarity"},
              "recipe_overrides": {"max_steps": 80, "lr": 1e-3}}

# At toy scale the analysis claims need both failed and successful runs to exercise their code:
# on the built-in single-sentence task the tiny BERT fails on about half the seeds with these settings.
TOY_MIXED = {"task_map": {"rte": "polarity", "mrpc": "polarity", "cola": "polarity"}, "seeds": 4,
             "recipe_overrides": {"max_steps": 40, "lr": 1e-3, "trace_every": 2}}

# The "full steps" of the 1k study: 3 epochs over the full training set at batch 16, as the paper's
# configs give them for MRPC and CoLA. CoLA's 1602 is the config's own 3 x 534 (8,551 / 16 rounded
# down), though the authors' loader, like a bert-default run on full CoLA, keeps the last partial
# batch: 1605 steps. The configs give no QNLI count: 19,641 = 3 x ceil(104,743 / 16) is derived,
# keeping the last partial batch.
FULL_DATA_STEPS = {"mrpc": 690, "cola": 1602, "qnli": 19_641}


@pytest.mark.parametrize("task", ["rte", "mrpc", "cola"])
@stabench.claim(model=BERT, seeds=SEEDS, arms=TABLE_1_ARMS, requires=["cuda"],
                reference={"source": TABLE_1_SOURCE, **TABLE_1}, toy=TOY_LEARNS)
def test_table1_stable_baseline_never_fails_and_varies_less(study, task):
    """Table 1: the stable baseline has no failed run and a significantly smaller std than the
    default recipe and than Mixout (the paper's 2.4 / 0.8 / 1.0 against 7.2 / 5.9 / 25.6 and
    7.9 / 3.8 / 20.9).

    0/25 failures bounds the failure rate below 13.7% (two-sided 95% Clopper-Pearson); each std
    comparison is a Levene test (Brown-Forsythe variant, the paper's test of spread), at 5% split
    over the two (Bonferroni). The comparisons run first, so the reports hold their p-values
    whatever fails.
    """
    stable = study["stable"]
    against_default, against_mixout = (stable.compare(study[arm], n_comparisons=2) for arm in ("default", "mixout"))
    assert stable.failures == 0, f"{stable.failures} of {stable.n} runs of the stable recipe failed"
    assert stable.failure_rate_upper() < 0.14, (
        f"the failure rate's upper 95% bound is {stable.failure_rate_upper():.3f} on {stable.n} seeds; the claim asks "
        f"< 0.14 (0 of 25 gives 0.137)")
    stats.assert_less_variable(against_default)
    stats.assert_less_variable(against_mixout)


@stabench.claim(task="rte", model=BERT, seeds=SEEDS, recipe="bert-default", requires=["cuda"])
def test_table1_default_recipe_fails_often_on_rte(study):
    """RTE with the default recipe: a substantial share of runs fails (the paper's median, 47.3, is the
    accuracy of predicting the minority class throughout: over half its runs collapsed).

    Claimed as: the lower 95% Clopper-Pearson bound of the failure rate is above 20%.
    """
    low, _ = stats.clopper_pearson(study.failures, study.n)
    assert low > 0.2, f"{study.failures}/{study.n} failed, 95% CI lower bound {low:.3f}"


LEARNING_RATES = (1e-5, 2e-5, 3e-5)
BIAS_CORRECTION_ARMS = {f"{arm}-lr{lr:g}": {} for lr in LEARNING_RATES for arm in ("no-bc", "bc")}
BIAS_CORRECTION = [
    pytest.param(model, {f"{arm}-lr{lr:g}": {"recipe": stabench.get_recipe(preset, lr=lr)}
                         for lr in LEARNING_RATES for arm, preset in (("no-bc", without), ("bc", with_))}, id=name)
    for name, model, without, with_ in [("bert", BERT, "bert-default", "bert-default-bc"),
                                        ("roberta", ROBERTA, "roberta-default", "roberta-default-bc"),
                                        ("albert", ALBERT, "albert-default", "albert-default-bc")]
]


@pytest.mark.parametrize("model, arms", BIAS_CORRECTION)
@stabench.claim(task="rte", seeds=SEEDS, requires=["cuda"], arms=BIAS_CORRECTION_ARMS)
def test_bias_correction_reduces_failed_runs(study, model, arms):
    """On RTE, 3 epochs, at learning rates 1e-5, 2e-5 and 3e-5: bias correction gives fewer failed
    runs than the original BERT Adam.

    Claimed as: over the three learning rates together (75 runs a side), significantly fewer
    failures with bias correction (one-sided Fisher exact test at 5%), and at no learning rate
    significantly more (Fisher, 5% split over the three). The reference gives no count per
    learning rate; at 1e-5 both may have none, so "fewer" at each rate is not the paper's claim,
    and 3 against 4 would not show it. The comparisons run first, so the reports hold their
    p-values whatever fails. RoBERTa-large uses weight decay 0.1, beta2 0.98 and no clipping;
    ALBERT-large-v2 no dropout and no weight decay (the paper's settings, as presets).
    """
    with_bc = [study[f"bc-lr{lr:g}"] for lr in LEARNING_RATES]
    without = [study[f"no-bc-lr{lr:g}"] for lr in LEARNING_RATES]
    per_rate = [no_bc.compare(bc, n_comparisons=len(LEARNING_RATES)) for bc, no_bc in zip(with_bc, without)]
    pooled = stats.compare_runs([r for s in with_bc for r in s.results], [r for s in without for r in s.results],
                                names=("bias correction", "no bias correction"))
    with_bc[0].comparisons.append(pooled)  # reported beside the claim's other p-values
    stats.assert_fewer_failures(pooled)
    for lr, more in zip(LEARNING_RATES, per_rate):  # A is the study without bias correction
        assert not more.a_fewer_failures, (
            f"lr {lr:g}: bias correction failed significantly more often ({more.failures_b}/{more.n_b} against "
            f"{more.failures_a}/{more.n_a}, one-sided Fisher p={more.fisher_p_a_fewer:.3g})")


SMALL_DATA = [
    pytest.param(task, {"3-epochs": {"recipe": "bert-default"},
                        "full-steps": {"recipe": stabench.get_recipe("bert-default", max_steps=steps,
                                                                     name="bert-default-full-steps"),
                                       "toy": {"recipe_overrides": {"max_steps": 80}}}}, id=task)
    for task, steps in FULL_DATA_STEPS.items()
]


@pytest.mark.parametrize("task, arms", SMALL_DATA)
@stabench.claim(model=BERT, seeds=SEEDS, train_size=1000, requires=["cuda"], arms={"3-epochs": {}, "full-steps": {}},
                toy={"recipe_overrides": {"lr": 1e-3}})  # the full-steps arm trains 10x the 3-epochs arm's steps
def test_small_data_fails_from_too_few_iterations(study, task, arms):
    """Fig. 3 (arXiv v1): 1k examples fail often in 3 epochs, not when trained for the full-data steps.

    Paper: 0 failed runs on MRPC and QNLI, 1 on CoLA with the full number of iterations, and a
    variance difference significant by Levene's test (p < 0.001). The claim allows one failed run
    on every task (25 other seeds can show one where the paper saw none), asks for fewer than in
    3 epochs, and tests the spread with Brown-Forsythe (Levene on medians) at 5% unless every
    3-epoch run failed. The comparison runs first, so the reports hold its p-values whatever fails.
    """
    short, full = study["3-epochs"], study["full-steps"]
    spread = full.compare(short)
    assert full.failures <= 1
    assert full.failures < short.failures
    if short.failures < short.n:  # 3-epoch runs that all failed alike have no spread, and the counts showed it
        stats.assert_less_variable(spread)


@stabench.claim(task="rte", model=BERT, seeds=SEEDS, recipe="bert-default", requires=["cuda"], toy=TOY_MIXED)
def test_failed_runs_have_vanishing_gradients(study):
    """Fig. 4: in failed runs the gradients of all but the top layers vanish early and stay low.

    Verdict on the stored per-layer gradient-norm traces: at least half the failed runs are
    "vanished" (layer-0 norm down >= 100x from its peak within the first 100 steps, no recovery,
    bottom/top ratio <= 0.1 at the end of that window) and no successful run is.  Not every: a run
    that ends just under the majority class (RTE's is 0.527) has failed without collapsing, and the
    paper shows the mechanism on examples, not on every failed run.
    """
    summary = analysis.gradient_summary(study)
    assert summary["n_failed"] > 0, "no failed run to explain"
    assert 2 * summary["vanished_in_failed"] >= summary["n_failed"], (
        f"gradients vanished in {summary['vanished_in_failed']} of {summary['n_failed']} failed runs; the claim asks "
        f"at least half")
    assert summary["vanished_in_successful"] == 0, (
        f"gradients vanished in {summary['vanished_in_successful']} of {summary['n_successful']} successful runs")


@stabench.claim(task="rte", model=BERT, seeds=SEEDS, recipe="bert-default", requires=["cuda", "wikitext-2"],
                toy=TOY_MIXED)
def test_failure_is_optimisation_not_forgetting(study, stabench_session):
    """Sec. 4.1: failed runs sit at the loss of a constant predictor (at least half of them: a run
    can fail just under the majority class without collapsing); forgetting stays in the top layers.

    The forgetting curve (MLM perplexity on WikiText-2 test with the top-k layers reset to
    the pretrained ones) is computed for one collapsed failed and one successful seed, retrained here.
    """
    failed = [r for r in study.results if r.failed]
    successful = [r for r in study.results if not r.failed]
    assert failed and successful, "needs a failed and a successful run"
    collapsed = [r for r in failed if analysis.collapsed_to_constant(r)]
    assert 2 * len(collapsed) >= len(failed), (
        f"{len(collapsed)} of {len(failed)} failed runs sit at a constant predictor's loss; the claim asks at least half")

    session: Session = stabench_session
    _, failed_model = session.trained_model(study.arm, collapsed[0].seed)
    _, good_model = session.trained_model(study.arm, successful[0].seed)
    tokenizer = stabench.models.load_tokenizer(stabench.models.resolve(study.arm.model))
    texts = _mlm_texts(study.arm)
    path = stabench.models.resolve(study.arm.model).path
    num_layers = failed_model.config.num_hidden_layers
    ks = range(num_layers + 1)
    curve_failed = dict(analysis.forgetting_curve(path, failed_model, texts, tokenizer, ks))
    curve_good = dict(analysis.forgetting_curve(path, good_model, texts, tokenizer, ks))
    pretrained = analysis.forgetting_curve(path, failed_model, texts, tokenizer, [num_layers + 1])[0][1]
    assert curve_failed[0] > curve_good[0], "failed runs should forget more"
    top = max(1, round(num_layers * 10 / 24))  # "the top ~10 layers" of BERT-large's 24
    assert curve_failed[top] < 2 * pretrained, (
        f"MLM perplexity with the top {top} layers reset: {curve_failed[top]:.3g}, pretrained {pretrained:.3g}")


# Runs of one length end at about one training loss; 3 and 20 epochs of the bias-corrected recipe
# reach from about 1e-1 to 1e-5, the range over which the paper finds dev accuracy flat.
LOSS_RANGE_ARMS = {"3 epochs": {"recipe": "bert-default-bc", "toy": {"recipe_overrides": {"max_steps": 80}}},
                   "20 epochs": {"recipe": "mosbach-stable", "toy": {"recipe_overrides": {"max_steps": 400}}}}


@stabench.claim(task="rte", model=BERT, seeds=SEEDS, arms=LOSS_RANGE_ARMS, requires=["cuda"],
                toy={**TOY_LEARNS, "seeds": 4})
def test_no_overfitting_dev_accuracy_flat_as_train_loss_falls(study, stabench_figure):
    """Fig. 5b: across the successful runs of 3 and 20 epochs, dev accuracy does not fall as the
    final training loss falls from about 1e-1 to 1e-5 (the figure in --stabench-plots' folder and
    format, else .stabench/plots as PNG).

    Claimed as: no significant fall, and the upper confidence bound of the slope (dev accuracy per
    decade of train loss) at most one point: a lower loss costs at most a point per decade.  Not
    "flat" both ways: the longer runs may well score higher (Zhang et al. 2021), which is no
    overfitting, and with two clusters of losses the slope carries any difference between the arms.
    """
    runs = study["3 epochs"].results + study["20 epochs"].results
    arm = study["3 epochs"].arm  # the task and model the profile trained (the toy profile's own)
    plots.plot_generalisation({name: study[name] for name in LOSS_RANGE_ARMS},
                              stabench_figure(f"generalisation-{arm.task}"),
                              f"{arm.task} / {stored_name(arm.model)}: dev accuracy against final train loss")
    assert sum(not r.failed for r in runs) >= 3, "needs at least 3 successful runs"
    trend = analysis.overfitting_trend(runs)
    assert not trend.overfits, trend
    assert trend.slope_ci[1] <= trend.tolerance, trend


@pytest.mark.parametrize("task", ["rte", "mrpc", "cola"])
@stabench.claim(model=BERT, seeds=SEEDS, recipe="bert-default", requires=["cuda"], toy=TOY_MIXED)
def test_loss_surface_separates_failed_from_successful(study, task, stabench_session, stabench_figure):
    """Fig. 6: on the plane through the pretrained, a failed and a successful model, the failed
    model sits at a higher training loss than the successful one (a figure per task, in
    --stabench-plots' folder and format, else .stabench/plots as PNG)."""
    failed = [r for r in study.results if r.failed]
    successful = [r for r in study.results if not r.failed]
    assert failed and successful, "needs a failed and a successful run"
    session: Session = stabench_session
    _, failed_model = session.trained_model(study.arm, failed[0].seed)
    _, good_model = session.trained_model(study.arm, successful[0].seed)
    surface = analysis.loss_surface(session.pretrained_model(study.arm, failed[0].seed), failed_model, good_model,
                                    session.training_batches(study.arm, 4), grid=(9, 9))
    plots.plot_loss_surface(surface, stabench_figure(f"loss-surface-{task}"), f"{task}: {study.arm.task}")
    points = surface["points"]
    assert points["failed"]["loss"] > points["successful"]["loss"]
    assert all(math.isfinite(points[name]["loss"]) for name in points)


def _mlm_texts(arm) -> list[str]:
    """WikiText-2 test (the paper's choice); the toy profile has only the built-in task's sentences."""
    if arm.task in ("rte", "mrpc", "cola", "qnli", "sst2"):
        return analysis.wikitext2_texts(limit=512)
    data = stabench.load_task_data(arm.task)
    return list(data.eval[data.task.text_columns[0]])[:64]
