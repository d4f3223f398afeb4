"""Property and reference tests for stabench.stats."""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import warnings
from random import Random

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from stabench.stats import (
    Comparison,
    Summary,
    Threshold,
    aso,
    assert_better,
    assert_dominates,
    assert_failure_rate_below,
    assert_fewer_failures,
    assert_less_variable,
    assert_std_below,
    bootstrap_ci,
    brown_forsythe,
    clopper_pearson,
    compare,
    compare_runs,
    expected_max,
    expected_max_curve,
    failure_rate_below,
    failure_rate_upper,
    mann_whitney,
    regression,
    runs_needed_for_zero_failures,
    sample_std,
    smallest_regression_p,
    std_below,
    std_upper_bound,
    summarize,
    summarize_runs,
    violation_ratio,
)

FAST = settings(max_examples=20, deadline=None)
score_lists = st.lists(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False), min_size=1, max_size=40
)


@st.composite
def k_and_n(draw, max_n=200):
    n = draw(st.integers(min_value=1, max_value=max_n))
    return draw(st.integers(min_value=0, max_value=n)), n


# --------------------------------------------------------------------------- failures


@FAST
@given(k_and_n(), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_clopper_pearson_contains_rate_and_matches_scipy(kn, confidence):
    k, n = kn
    low, high = clopper_pearson(k, n, confidence)
    assert 0.0 <= low <= k / n <= high <= 1.0
    reference = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    assert (low, high) == pytest.approx((reference.low, reference.high), rel=0, abs=1e-9)
    one_sided = sps.binomtest(k, n, alternative="less").proportion_ci(confidence_level=confidence, method="exact")
    assert failure_rate_upper(k, n, confidence, one_sided=True) == pytest.approx(one_sided.high, rel=0, abs=1e-9)
    assert failure_rate_upper(k, n, confidence, one_sided=True) <= high + 1e-12


@pytest.mark.parametrize("k, n", [(3, 2), (-1, 5), (0, 0), (1.5, 4), (True, 4)])
def test_clopper_pearson_names_an_impossible_count(k, n):
    for bound in (lambda: clopper_pearson(k, n), lambda: failure_rate_upper(k, n, one_sided=True)):
        with pytest.raises(ValueError, match=rf"^failures k={k!r} of n={n!r} runs is invalid; expected integers"):
            bound()


def test_zero_of_25_reference_bounds():
    assert round(clopper_pearson(0, 25)[1], 3) == 0.137
    assert round(failure_rate_upper(0, 25), 3) == 0.137
    assert round(failure_rate_upper(0, 25, one_sided=True), 3) == 0.113
    assert runs_needed_for_zero_failures(0.05, one_sided=True) == 59
    assert runs_needed_for_zero_failures(1.0) == 1  # a rate the assertions accept, once a math domain error
    with pytest.raises(ValueError, match=r"^rate=0 is invalid; expected a failure rate in \(0, 1\]"):
        runs_needed_for_zero_failures(0)


@given(st.floats(1e-12, 1.0), st.sampled_from([0.9, 0.95, 0.99]), st.booleans())
def test_runs_needed_are_the_fewest_whose_bound_is_below_the_rate(rate, confidence, one_sided):
    n = runs_needed_for_zero_failures(rate, confidence, one_sided)
    assert failure_rate_upper(0, n, confidence, one_sided) < rate
    assert n == 1 or failure_rate_upper(0, n - 1, confidence, one_sided) >= rate


def test_a_rate_too_small_to_show_with_runs_is_named_not_a_crash_or_a_hang():
    for rate in (1e-17, 5e-324):  # log(1 - rate) == 0: a division by zero, then a count from 1 upwards
        with pytest.raises(ValueError, match=rf"^rate={rate!r} is too small to show with runs: it would take "):
            runs_needed_for_zero_failures(rate)


@FAST
@given(st.sampled_from([0.0, 0.1, 0.2, 0.5]), st.integers(min_value=1, max_value=8))
def test_intervals_shrink_with_n(rate, scale):
    n_small, n_large = 10 * scale, 40 * scale
    small = clopper_pearson(round(rate * n_small), n_small)
    large = clopper_pearson(round(rate * n_large), n_large)
    assert large[1] - large[0] < small[1] - small[0]


# --------------------------------------------------------------------------- spread


@FAST
@given(st.floats(min_value=0, max_value=100), st.integers(min_value=2, max_value=500), st.sampled_from([0.9, 0.95]))
def test_std_bound_at_least_observed(std, n, confidence):
    assert std_upper_bound(std, n, confidence) >= std


def test_std_bound_reference_factor_and_small_n():
    assert std_upper_bound(1.0, 25) == pytest.approx(1.316, abs=5e-4)
    assert std_upper_bound(1.0, 1) == math.inf
    with pytest.raises(ValueError, match=r"^std=-1.0 is invalid; expected a std >= 0"):
        std_upper_bound(-1.0, 5)  # a negative bound otherwise


@FAST
@given(st.floats(-1e6, 1e6, allow_nan=False), st.integers(2, 30))
def test_tied_scores_have_a_std_of_exactly_zero(score, n):
    """np.std([0.51] * 6, ddof=1) is 1.2e-16: tables printed it, and the std's bound scaled it."""
    summary = summarize([score] * n)
    assert summary.std == 0.0 and summary.std_upper == 0.0
    comparison = compare([score] * n, [score] * n, 0, 0)
    assert comparison.std_a == comparison.std_b == 0.0


def test_bootstrap_ci_covers_the_estimate():
    values = np.random.default_rng(3).normal(0.7, 0.05, 25)
    low, high = bootstrap_ci(values, "mean")
    assert low < values.mean() < high
    low, high = bootstrap_ci(values, "std")
    assert low < values.std(ddof=1) < high
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)


def test_bootstrap_ci_degenerate_samples_are_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
        assert bootstrap_ci([0.5] * 10, "std") == (0.0, 0.0)
        assert all(math.isnan(x) for x in bootstrap_ci([0.1, 0.2]))
        assert all(math.isnan(x) for x in bootstrap_ci([]))
        low, high = bootstrap_ci([0.5] * 24 + [0.6], "std")
        assert low <= high
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_ci([1, 2, 3], "median")


# --------------------------------------------------------------------------- summary


@FAST
@given(score_lists)
def test_summarize_matches_numpy(scores):
    summary = summarize(scores)
    assert summary.n == len(scores)
    assert summary.mean == pytest.approx(np.mean(scores), abs=1e-9)
    assert summary.median == pytest.approx(np.median(scores))
    assert summary.min == min(scores) and summary.max == max(scores)
    assert summary.min <= summary.mean <= summary.max  # rounding never puts the mean outside the scores
    if len(scores) >= 2:
        assert summary.std == pytest.approx(np.std(scores, ddof=1), abs=1e-9)
    else:
        assert math.isnan(summary.std) and summary.std_upper == math.inf
    assert summary.iqr == pytest.approx(summary.q75 - summary.q25)


def test_summarize_counts_flags_and_formats():
    scores = [0.47] * 3 + list(np.linspace(0.6, 0.75, 22))
    summary = summarize(scores, failed=[s <= 0.473 for s in scores], collapsed=3, diverged=None)
    assert (summary.failures, summary.collapsed, summary.diverged) == (3, 3, 0)
    assert summary.failures_text().startswith("3/25 [")
    assert summarize([0.7] * 25).failures_text() == "0/25 [0.000, 0.137]"
    as_dict = summary.to_dict()
    assert as_dict["n"] == 25 and tuple(as_dict["failure_ci"]) == summary.failure_ci
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.n = 3
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match="flags"):
        summarize([0.1, 0.2], failed=[True])
    assert summarize([0.1, 0.2, 0.3], failed=np.array([True, False, True]), collapsed=np.int64(1)).failures == 2
    assert summarize([0.1, 0.2, 0.3], failed=np.array([1.0, 0.0, 1.0])).failures == 2  # 0/1 of any number type
    for bad in (1.0, np.float64(2.0), True, np.bool_(True), "1", [True, None, False], [0, 2, 1], [[1], [0, 1], [1]],
                [[], [], []]):
        with pytest.raises(ValueError, match=r"^failed=.* is invalid; expected a count \(an integer\) or one "
                                             r"True/False flag per run$"):
            summarize([0.1, 0.2, 0.3], failed=bad)  # a float was "not iterable", True a count of one
    with pytest.raises(ValueError, match=r"^current_failures=np.True_ is invalid"):
        regression([0.5, 0.6], [0.5, 0.6], 0, np.bool_(True), Threshold("accuracy"))


# --------------------------------------------------------------------------- expected max


@FAST
@given(score_lists)
def test_expected_max_properties(scores):
    assert expected_max(scores, 1) == pytest.approx(np.mean(scores), abs=1e-9)
    curve = expected_max_curve(scores, range(1, 30))
    tolerance = 1e-9 * (1 + max(abs(s) for s in scores))
    assert all(later >= earlier - tolerance for earlier, later in zip(curve, curve[1:]))
    assert all(value <= max(scores) + tolerance for value in curve)
    assert all(min(scores) <= value <= max(scores) for value in curve)


@FAST
@given(st.floats(-1e3, 1e3, allow_nan=False), st.integers(1, 30), st.integers(2, 30))
def test_tied_scores_have_their_value_as_mean_and_expected_max(score, n, other_n):
    """Three runs at 0.1 had a mean of 0.10000000000000002; a gate with max_mean_drop=0 then saw a
    drop of 3e-17 between two such studies."""
    summary = summarize([score] * n)
    assert summary.mean == score == expected_max([score] * n, 1) == expected_max([score] * n, 5)
    if n >= 2:
        checks = []
        assert regression([score] * n, [score] * other_n, 0, 0, Threshold("accuracy", max_mean_drop=0.0), checks) == []
        assert checks[0]["effect"] == 0.0


def test_expected_max_small_example():
    # Two scores: best of 2 draws is 1 unless both draws are 0 (prob 1/4).
    assert expected_max([0.0, 1.0], 2) == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"^expected max: the study's scores hold nan \(a diverged run\?\)"):
        expected_max([0.5, math.nan, 0.9], 2)  # NaN once passed through as the expected best


# --------------------------------------------------------------------------- ASO


def test_violation_ratio_symmetry_and_tie():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 25), rng.normal(0.3, 1, 25)
    assert violation_ratio(a, a) == 0.5
    assert violation_ratio(a, b) + violation_ratio(b, a) == pytest.approx(1.0)


@FAST
@given(st.integers(min_value=0, max_value=10_000))
def test_aso_self_shifted_reversed(seed):
    rng = np.random.default_rng(seed)
    sample = rng.normal(0.65, 0.03, 25)
    shifted = sample + 0.2
    # Point estimate of a sample against itself is exactly 0.5; eps_min is an upper bound
    # on it, so it must never claim dominance (deepsig also returns ~1.0 here).
    assert violation_ratio(sample, sample) == 0.5
    assert aso(sample, sample, num_bootstrap_iterations=200, seed=seed) >= 0.5
    assert aso(shifted, sample, num_bootstrap_iterations=200, seed=seed) < 0.1
    assert aso(sample, shifted, num_bootstrap_iterations=200, seed=seed) > 0.9


def test_aso_reproduces_deepsig_readme_example():
    # deepsig README, scenario 1: np.random.seed(1234); A ~ N(0.9, 0.8), B ~ N(0, 1), 5 each;
    # "min_eps = 0.225", one bootstrap's draw.  Ours spread about +-0.02 from seed to seed, so the
    # median over seeds is held to it.
    legacy = np.random.RandomState(1234)
    a = legacy.normal(loc=0.9, scale=0.8, size=5)
    b = legacy.normal(loc=0, scale=1, size=5)
    assert np.median([aso(a, b, seed=seed) for seed in range(20)]) == pytest.approx(0.225, abs=0.01)


# --------------------------------------------------------------------------- compare


def _studies(seed=0):
    rng = np.random.default_rng(seed)
    stable = rng.normal(0.70, 0.01, 25)
    unstable = np.concatenate([rng.normal(0.66, 0.05, 19), np.full(6, 0.473)])
    return stable, unstable


def test_compare_detects_stable_recipe():
    stable, unstable = _studies()
    comparison = compare(stable, unstable, 0, 6, aso_iterations=300)
    assert isinstance(comparison, Comparison)
    assert comparison.a_less_variable and comparison.a_dominates and comparison.a_fewer_failures
    assert comparison.a_better
    assert_less_variable(comparison)
    assert_dominates(comparison)
    reverse = compare(unstable, stable, 6, 0, aso_iterations=300)
    assert not (reverse.a_less_variable or reverse.a_dominates or reverse.a_fewer_failures)
    with pytest.raises(AssertionError, match="Levene"):
        assert_less_variable(reverse)
    with pytest.raises(AssertionError, match="eps_min"):
        assert_dominates(reverse)


def test_a_comparison_given_as_an_assert_message_reads_whole_in_one_line():
    """``assert c.fisher_p_a_fewer < 0.05, c`` (the demo's pattern): pytest shows a message that is not
    text by its repr, cut at 240 characters; the dataclass's field list came out cut mid-way."""
    from _pytest._io.saferepr import saferepr

    stable, unstable = _studies()
    c = compare(stable, unstable, 0, 6, aso_iterations=50, names=("bias-correction", "no-bias-correction"),
                metric="accuracy")
    shown = saferepr(c, maxsize=240)
    assert shown == repr(c) and "\n" not in shown
    assert shown.startswith("<Comparison bias-correction vs no-bias-correction (accuracy, n=")
    assert f"fewer failures {'yes' if c.a_fewer_failures else 'no'} p={c.fisher_p_a_fewer:.3g} (0/" in shown
    assert f"better {'yes' if c.a_better else 'no'} p={c.mannwhitney_p_a_better:.3g}>" in shown


@pytest.mark.parametrize("n_a, n_b, n_comparisons, too_few", [(3, 3, 1, True), (4, 4, 1, False), (4, 4, 5, True),
                                                               (2, 4, 1, True), (2, 9, 1, False)])
def test_a_printed_comparison_says_when_its_rank_tests_could_not_pass_on_these_seeds(n_a, n_b, n_comparisons, too_few):
    """3 against 3 seeds: no split gives Mann-Whitney p below 1/20, so "better no p=0.05" was all a
    notebook showed of a comparison that could never say yes."""
    comparison = compare(np.linspace(0.9, 0.95, n_a), np.linspace(0.5, 0.6, n_b), 0, 0, n_comparisons=n_comparisons,
                         aso_iterations=20)
    assert comparison.a_better is not too_few
    assert (f"(no split of {n_a} vs {n_b} seeds gives a rank test p below" in str(comparison)) is too_few


def test_a_study_whose_runs_mostly_failed_is_not_shown_less_variable():
    """Most runs collapsed at the majority accuracy: a spread of about 0 around the median, which
    Brown-Forsythe would call stable."""
    _, unstable = _studies()
    collapsed = np.full(10, 0.46)
    comparison = compare(collapsed, unstable, 10, 6, aso_iterations=50)
    assert comparison.levene_p_a_less < comparison.alpha and not comparison.a_less_variable  # the test alone would
    assert "less variable  no   std " in str(comparison) and "(most runs of A failed)" in str(comparison)
    mostly = compare([0.5] * 7 + [0.52], [0.6, 0.7, 0.8, 0.9, 0.65, 0.75, 0.85, 0.95], 7, 0, aso_iterations=50)
    assert mostly.levene_p_a_less < mostly.alpha and not mostly.a_less_variable  # 7 of 8 failed: as good as all
    half = compare([0.5] * 4 + [0.9] * 4, [0.5, 0.6, 0.95, 0.3, 1.0, 0.05, 0.99, 0.1], 4, 4, aso_iterations=50)
    assert not half.most_of_a_failed  # half failed: the median sits between a failed and a successful run
    assert half.levene_p_a_less < half.alpha and half.a_less_variable  # so the test's verdict stands
    from stabench.report import comparison_rows
    (row,) = comparison_rows([{**comparison.to_dict(), "claim": "c"}])  # the reports' table says why too
    assert row["std"].endswith("; most of A failed)") and "less variable" not in row["A is"]
    assert comparison_rows([comparison]) == [{k: v for k, v in row.items() if k != "claim"}]  # a script's, as is
    with pytest.raises(AssertionError, match=r"most runs of A failed \(10/10\), so its small spread shows no "
                                             r"stability; compare failures first \(B failed 6/25\)"):
        assert_less_variable(comparison)


def test_compare_bonferroni_and_threshold():
    stable, unstable = _studies()
    comparison = compare(stable, unstable, 0, 6, alpha=0.05, n_comparisons=5, aso_threshold=0.0, aso_iterations=100)
    assert comparison.alpha == pytest.approx(0.01)
    assert not comparison.a_dominates


@FAST
@given(st.integers(min_value=0, max_value=10_000), st.booleans())
def test_compare_direction_awareness(seed, swap):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.70, 0.01, 12), rng.normal(0.68, 0.04, 12)
    if swap:
        a, b = b, a
    fails_a, fails_b = int(rng.integers(0, 5)), int(rng.integers(0, 5))
    higher = compare(a, b, fails_a, fails_b, higher_is_better=True, seed=seed, aso_iterations=200)
    lower = compare(-a, -b, fails_a, fails_b, higher_is_better=False, seed=seed, aso_iterations=200)
    assert lower.levene_p == pytest.approx(higher.levene_p)
    assert lower.mannwhitney_p_a_better == pytest.approx(higher.mannwhitney_p_a_better)
    assert lower.aso_eps_min == pytest.approx(higher.aso_eps_min)
    for verdict in ("a_less_variable", "a_dominates", "a_fewer_failures", "a_better"):
        assert getattr(lower, verdict) == getattr(higher, verdict)


@FAST
@given(st.integers(3, 12), st.integers(3, 12), st.data())
def test_compare_fisher_p_values_are_the_hypergeometric_tails_of_the_failures(n_a, n_b, data):
    """Counted from the hypergeometric law of A's failures given the total, not through the wrapper's
    2x2 table: one-sided, A fails no more than it did; two-sided, every split as unlikely or less."""
    from scipy.stats import hypergeom

    fails_a, fails_b = data.draw(st.integers(0, n_a)), data.draw(st.integers(0, n_b))
    rng = np.random.default_rng(0)
    c = compare(rng.normal(0.7, 0.05, n_a), rng.normal(0.7, 0.05, n_b), fails_a, fails_b, aso_iterations=50)
    law = hypergeom(n_a + n_b, fails_a + fails_b, n_a)  # A's failures among all failures, drawn without replacement
    splits = range(max(0, fails_a + fails_b - n_b), min(n_a, fails_a + fails_b) + 1)
    observed = law.pmf(fails_a)
    assert c.fisher_p_a_fewer == pytest.approx(law.cdf(fails_a), rel=1e-9)
    assert c.fisher_p == pytest.approx(min(1.0, sum(law.pmf(k) for k in splits if law.pmf(k) <= observed * (1 + 1e-7))),
                                       rel=1e-9)


# --------------------------------------------------------------------------- claim helpers


def test_failure_and_std_assertions_explain_numbers():
    clean = summarize(list(np.linspace(0.68, 0.72, 25)), failed=0)
    assert failure_rate_below(clean, 0.15)
    assert not failure_rate_below(summarize([0.5] * 5, failed=5), 1.0)  # every run failed: a rate of 1, not below
    assert_failure_rate_below(clean, 0.15)
    with pytest.raises(AssertionError, match=r"0/25 .*0\.113 >= 0\.050.*>= 59 runs"):
        assert_failure_rate_below(clean, 0.05, one_sided=True)
    assert std_below(clean, 0.02)
    assert_std_below(clean, 0.02)
    with pytest.raises(AssertionError, match="chi-square upper bound"):
        assert_std_below(clean, clean.std * 1.2)
    assert isinstance(clean, Summary)
    with pytest.raises(AssertionError, match=r"^std not shown below 0\.5: 1 run\(s\), and a std needs at least 2$"):
        assert_std_below(summarize([0.7], failed=0), 0.5)


def test_claim_helpers_name_a_wrong_argument_instead_of_failing_inside():
    clean = summarize(list(np.linspace(0.68, 0.72, 25)), failed=0)
    with pytest.raises(ValueError, match=r"^rate='0.5' is invalid; expected a failure rate in \(0, 1\]"):
        assert_failure_rate_below(clean, "0.5")
    with pytest.raises(ValueError, match=r"^rate=1.5 is invalid"):
        failure_rate_below(clean, 1.5)
    with pytest.raises(ValueError, match=r"^limit=0 is invalid; expected a std > 0"):
        assert_std_below(clean, 0)
    for assertion in (assert_less_variable, assert_dominates):
        with pytest.raises(TypeError, match=rf"^{assertion.__name__} takes a comparison of two studies, e.g. "
                                            r".*; got a Summary$"):
            assertion(clean)
    for call in (lambda: std_upper_bound(0.03, 4, 95), lambda: failure_rate_upper(0, 25, 1.5),
                 lambda: runs_needed_for_zero_failures(0.1, 95), lambda: bootstrap_ci([0.7, 0.8, 0.9], "mean", 95),
                 lambda: assert_std_below(clean, 0.5, confidence=0), lambda: summarize([0.7, 0.8], confidence=95)):
        with pytest.raises(ValueError, match=r"^confidence=.* is invalid; expected a level in \(0, 1\), e.g. 0.95$"):
            call()
    for n in ("2", 2.5, 0, True):
        with pytest.raises(ValueError, match=r"is invalid; expected a number of seeds \(an integer >= 1\)$"):
            expected_max([0.7, 0.8], n)
    # With failures, the note on how many clean runs would be needed is beside the point.
    failing = summarize([0.5] * 4, failed=4)
    with pytest.raises(AssertionError) as raised:
        assert_failure_rate_below(failing, 0.5)
    assert str(raised.value).startswith("failure rate not shown below 0.500: 4/4 runs failed")
    assert "zero failures" not in str(raised.value)


def test_a_claim_with_arms_says_how_to_reach_an_arm():
    from stabench.claims import StudySet

    studies = StudySet({"bc": None, "no-bc": None})
    with pytest.raises(KeyError, match=r"claim has no arm 'no_bc' \(did you mean 'no-bc'\?\); its arms: 'bc', 'no-bc'"):
        studies["no_bc"]
    with pytest.raises(KeyError, match=r"claim has no arm 'stable'; its arms: 'bc', 'no-bc'"):  # nothing close
        studies["stable"]
    with pytest.raises(AttributeError, match=r"this claim has arms \('bc', 'no-bc'\), so its study holds one Study "
                                             r"per arm: use study\['bc'\].failures"):
        studies.failures
    assert not hasattr(studies, "__array__")


# --------------------------------------------------------------------------- regression


def _split_p_values(a, b) -> tuple[float, float]:
    """Brown-Forsythe's one-sided p-values ("less", "greater") from every split of the runs, each
    study centred on its median first, enumerated here independently of scipy."""
    import itertools

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    centred = np.concatenate([a - np.median(a), b - np.median(b)])

    def spread(z):
        return np.mean(np.abs(z - np.median(z)))

    observed = spread(centred[:a.size]) - spread(centred[a.size:])
    differences = []
    for chosen in itertools.combinations(range(centred.size), a.size):
        mask = np.zeros(centred.size, dtype=bool)
        mask[list(chosen)] = True
        differences.append(spread(centred[mask]) - spread(centred[~mask]))
    differences = np.asarray(differences)
    slack = 1e-12 * max(1.0, abs(observed))
    return float(np.mean(differences <= observed + slack)), float(np.mean(differences >= observed - slack))


@FAST
@given(st.integers(0, 10_000), st.integers(2, 6), st.integers(2, 6), st.floats(0.2, 5.0),
       st.sampled_from(["normal", "integers", "accuracies"]))
def test_brown_forsythe_p_is_the_share_of_splits_as_extreme(seed, n_a, n_b, spread, scores):
    """Exact at small studies: the share of all splits of the runs whose mean-deviation difference is
    at least as extreme, so never below 1 / (ways to split).  Rounded scores bring ties, and
    accuracies on a dev set (k/200) ties that floats round apart."""
    import math

    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, spread, n_a), rng.normal(0, 1, n_b)
    if scores == "integers":
        a, b = np.round(a), np.round(b)
    elif scores == "accuracies":
        a, b = np.clip(np.round(100 + 20 * a), 0, 200) / 200, np.clip(np.round(100 + 20 * b), 0, 200) / 200
    less, greater = _split_p_values(a, b)
    assert brown_forsythe(a, b, "less") == pytest.approx(less)
    assert brown_forsythe(a, b, "greater") == pytest.approx(greater)
    assert brown_forsythe(a, b) == pytest.approx(min(1.0, 2 * min(less, greater)))
    assert brown_forsythe(b, a, "greater") == pytest.approx(less)
    assert brown_forsythe(b, a) == pytest.approx(brown_forsythe(a, b))
    assert min(less, greater) >= 1 / math.comb(n_a + n_b, n_a) - 1e-12


def test_brown_forsythe_counts_splits_tied_in_exact_arithmetic_as_ties():
    """Equal spreads in exact arithmetic (observed difference 0) differ by 1e-17 in floats; scipy's
    tie tolerance, relative to the observed 0, counted some and not others, so which study was A
    changed p (0.4 against 0.33)."""
    a, b = [0.55, 0.75, 0.2, 0.4], [0.6, 0.95]
    less, greater = _split_p_values(a, b)
    assert brown_forsythe(a, b, "less") == pytest.approx(less) == brown_forsythe(b, a, "greater")
    assert brown_forsythe(a, b, "greater") == pytest.approx(greater) == brown_forsythe(b, a, "less")
    assert brown_forsythe(a, b) == brown_forsythe(b, a)
    # Splits that differ by 1e-12 beside a deviation of 1 differ: the tolerance is float rounding's.
    # (4/7 counted in exact fractions; rounding to the largest deviation gave 0.73.)
    a, b = [1.0, -5.23e-13, -4.13e-13, -2.44e-12], [5.40e-12, 3.43e-12, -9.76e-13, 2.32e-12]
    assert brown_forsythe(a, b, "less") == pytest.approx(4 / 7)


def test_brown_forsythe_holds_its_level_between_studies_of_different_sizes():
    """Equal spreads, 3 seeds against 20: deviations permuted as they were taken rejected 15 % of
    the time at 5 % (a small study's runs sit closer to its median); re-centred splits hold it."""
    rng = np.random.default_rng(0)
    for alternative in ("less", "greater"):
        rejected = [brown_forsythe(rng.normal(0, 1, 3), rng.normal(0, 1, 20), alternative) < 0.05 for _ in range(400)]
        assert np.mean(rejected) < 0.08, alternative  # 5 % expected; one binomial standard error is 1.1 %


def test_brown_forsythe_agrees_with_levene_where_its_f_distribution_holds():
    """Normal scores, 25 seeds a side: the random-split p is within a few Monte-Carlo errors of
    scipy's Levene (at p=0.5 one error is 0.0035 with 19,999 splits)."""
    rng = np.random.default_rng(5)
    differences = []
    for spread in np.linspace(1.0, 2.0, 12):
        a, b = rng.normal(0, 1, 25), rng.normal(0, spread, 25)
        differences.append(brown_forsythe(a, b) - sps.levene(a, b, center="median").pvalue)
    assert max(np.abs(differences)) < 0.03


def test_near_tied_deviations_get_no_absurd_p_value():
    """Levene's F gave p=7e-11 here: A's deviations tie at 0.25, B's nearly tie at 0."""
    a, b = [0.5, 0.5, 1.0, 1.0], [0.9, 0.9, 0.9, 0.91]
    assert sps.levene(a, b, center="median").pvalue < 1e-9
    assert brown_forsythe(a, b) == pytest.approx(2 / 70)  # twice the one-sided 1/70 below
    comparison = compare(b, a, 0, 0, aso_iterations=20)  # B's deviations all lie below A's: 1 split of 70
    assert comparison.levene_p_a_less == pytest.approx(1 / 70) and comparison.a_less_variable
    assert not compare(b, a, 0, 0, alpha=0.01, aso_iterations=20).a_less_variable  # 4 seeds a side: p >= 1/70


@FAST
@given(st.integers(2, 8), st.integers(2, 8), st.floats(0.01, 0.4), st.floats(0.01, 0.4))
def test_tied_deviations_get_a_permutation_p_value_never_an_infinite_w(half_a, half_b, gap_a, gap_b):
    """Two tied halves per study (collapsed runs at 0.5, the rest tied above): every run is as far
    from its median as the others, so Levene's W divides by 0 (scipy: W=2e30, p=1e-90 at 4 a side).
    The p-value is then the permutation test's: never below 1 / (ways to split the runs)."""
    import math

    a = [0.5] * half_a + [0.5 + gap_a] * half_a
    b = [0.5] * half_b + [0.5 + gap_b] * half_b
    floor = 1 / math.comb(len(a) + len(b), len(a))
    for alternative in ("two-sided", "less", "greater"):
        assert floor - 1e-12 <= brown_forsythe(a, b, alternative) <= 1.0
    comparison = compare(a, b, half_a, half_b, aso_iterations=20)
    assert math.isnan(comparison.levene_statistic) and comparison.levene_p >= floor - 1e-12
    if gap_a == gap_b:  # equal spreads: nothing near significance
        assert comparison.levene_p > 0.5


def test_equal_tied_spreads_are_far_from_significant():
    """Two tied halves a study with the same gap: Levene's W divides by 0, and spreads are equal."""
    comparison = compare([0.5] * 2 + [0.75] * 2, [0.5] * 3 + [0.75] * 3, 2, 3, aso_iterations=20)
    assert math.isnan(comparison.levene_statistic) and comparison.levene_p > 0.5


def test_tied_deviations_leave_w_undefined_in_the_assertion_message():
    comparison = compare([0.5, 0.5, 0.9, 0.9], [0.5, 0.5, 1.0, 1.0], 2, 2, aso_iterations=20)
    assert comparison.levene_p_a_less == pytest.approx(1 / 70)  # all of A's deviations below all of B's
    wider = compare([0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 0.9, 0.9], 2, 2, aso_iterations=20)
    with pytest.raises(AssertionError, match=r"Brown-Forsythe Levene with tied deviations, "
                                             r"one-sided permutation p=1 \(needs p < 0.05\)"):
        assert_less_variable(wider)


def test_a_less_variable_is_one_sided():
    """A two-sided p between 0.05 and 0.1 is under 0.05 one-sided: "A spreads less" asks one side."""
    rng = np.random.default_rng(3)
    base = rng.normal(0.7, 0.02, 25)
    for scale in np.linspace(1.0, 2.0, 200):
        wide = 0.7 + (base - 0.7) * scale
        if 0.05 < brown_forsythe(base, wide) < 0.1:
            break
    else:
        pytest.fail("no scale gives a two-sided p between 0.05 and 0.1")
    comparison = compare(base, wide, 0, 0, aso_iterations=50)
    assert comparison.levene_p > 0.05 and comparison.levene_p_a_less < 0.05 and comparison.a_less_variable
    assert not compare(wide, base, 0, 0, aso_iterations=50).a_less_variable


def test_regression_flags_worse_study_and_not_identical_one():
    rng = np.random.default_rng(11)
    baseline = rng.normal(0.70, 0.01, 25)
    worse = np.concatenate([rng.normal(0.64, 0.06, 17), np.full(8, 0.473)])
    threshold = Threshold("accuracy", max_mean_drop=0.01, max_std_increase=0.01, max_extra_failures=0)
    reasons = regression(baseline, worse, 0, 8, threshold)
    assert len(reasons) == 3
    assert any("Mann-Whitney" in r for r in reasons) and any("one-sided Brown-Forsythe" in r for r in reasons)
    assert any("Fisher" in r for r in reasons)
    assert regression(baseline, baseline, 0, 0, threshold) == []
    # Lower-is-better: the same data negated is a regression too.
    lower = Threshold("loss", higher_is_better=False, max_mean_drop=0.01, max_std_increase=0.01, max_extra_failures=0)
    assert len(regression(-baseline, -worse, 0, 8, lower)) == 3
    # Improvement in the good direction is never a regression.
    assert regression(worse, baseline, 8, 0, threshold) == []


@pytest.mark.parametrize("n", [6, 10])
def test_seed_noise_alone_fails_a_gate_at_most_alpha_of_the_time(n):
    """Three checks each at alpha failed 9-10 % of gates between two draws of one distribution;
    alpha split over the checks (Bonferroni) bounds the whole gate by alpha."""
    rng = np.random.default_rng(2026)
    threshold = Threshold("accuracy", max_mean_drop=0.01, max_std_increase=0.01, max_extra_failures=0)
    assert threshold.check_alpha == pytest.approx(0.05 / 3)
    assert threshold.level_text() == "0.0167 (alpha 0.05 / 3 checks)"
    failed = sum(bool(regression(rng.normal(0.8, 0.03, n), rng.normal(0.8, 0.03, n), 0, 0, threshold))
                 for _ in range(300))
    assert failed / 300 <= 0.05
    assert Threshold("accuracy", max_mean_drop=0.01).level_text() == "0.05"


def test_scores_a_test_cannot_rank_are_refused_in_one_line():
    """A NaN (a diverged run's train loss) made every permutation look less extreme: p = 0."""
    steady = [0.80, 0.82, 0.81, 0.83, 0.79, 0.80]
    for call in (lambda: brown_forsythe(steady[:-1] + [math.nan], steady),
                 lambda: mann_whitney(steady, steady[:-1] + [math.inf]),
                 lambda: aso(steady, steady[:-1] + [math.nan]),
                 lambda: violation_ratio([math.nan, 0.8], steady),  # it gave 0.5, a tie
                 lambda: compare(steady[:-1] + [math.nan], steady, 0, 0, higher_is_better=False),
                 lambda: regression(steady, steady[:-1] + [math.nan], 0, 0, Threshold("accuracy", max_mean_drop=0))):
        with pytest.raises(ValueError, match=r"scores hold nan|scores hold inf") as error:
            call()
        assert "\n" not in str(error.value) and "diverged run" in str(error.value)
    with pytest.raises(ValueError, match=r"^failures_a count 7 is outside \[0, 6\]$"):
        compare(steady, steady, 7, 0)
    with pytest.raises(ValueError, match=r"^current_failures count -1 is outside"):
        regression(steady, steady, 0, -1, Threshold("accuracy", max_extra_failures=0))


def test_comparison_messages_name_the_studies_the_level_and_when_the_seeds_are_too_few():
    names = {"names": ("reinit", "default"), "metric": "accuracy"}
    few = compare([0.9, 0.91, 0.92], [0.5, 0.6, 0.7], 0, 3, **names)
    with pytest.raises(AssertionError) as raised:
        assert_fewer_failures(few)
    assert str(raised.value) == ("reinit not shown to fail less often than default: failed 0/3 vs 3/3, one-sided "
                                 "Fisher exact p=0.05 (needs p < 0.05); no outcome on 3 vs 3 seeds gives p below "
                                 "0.05, so this cannot pass on these seeds: use more")
    four = compare([0.9, 0.91, 0.92, 0.93], [0.1, 0.5, 1.0, 0.2], 0, 4, n_comparisons=5, **names)
    with pytest.raises(AssertionError, match=r"^reinit not shown less variable than default \(accuracy\): .*"
                                             r"\(needs p < 0\.01 \(0\.05 / 5 comparisons\)\); no outcome on 4 vs 4 "
                                             r"seeds gives p below 0\.0143"):
        assert_less_variable(four)
    with pytest.raises(AssertionError, match=r"^reinit not shown to score better than default \(accuracy, higher "
                                             r"is better\): means 0\.915 \(n=4\) vs 0\.45 \(n=4\), one-sided "
                                             r"Mann-Whitney p=0\.171 \(needs p < 0\.01 \(0\.05 / 5 comparisons\)\); no "
                                             r"outcome"):
        assert_better(four)
    enough = compare([0.9, 0.91, 0.92, 0.93, 0.94, 0.95], [0.5, 0.6, 0.7, 0.55, 0.65, 0.75], 0, 6, **names)
    assert_fewer_failures(enough)
    assert_better(enough)
    assert not enough.too_few_seeds(1 / 924)
    lines = str(enough).splitlines()  # print(comparison): a verdict and a p per test, not the dataclass
    assert lines[0] == "reinit vs default (accuracy, n=6 vs 6, level 0.05):"
    assert lines[2].split()[:3] == ["fewer", "failures", "yes"] and "0/6 vs 6/6" in lines[2]
    assert [line.split()[0] for line in lines[1:]] == ["less", "fewer", "better", "dominates"]


def test_aso_gives_no_dominance_verdict_on_too_few_seeds():
    """Disjoint samples of 3 seeds give eps_min 0.0 (every resample agrees): noise would 'dominate'."""
    small = compare([0.9, 0.91, 0.92], [0.5, 0.6, 0.7], 0, 0)
    assert small.aso_eps_min < small.aso_threshold and not small.a_dominates
    with pytest.raises(AssertionError, match="^A not shown to almost stochastically dominate B: 3 vs 3 seeds, "
                                             "and ASO needs at least 6 a side"):
        assert_dominates(small)
    enough = compare([0.9, 0.91, 0.92, 0.93, 0.94, 0.95], [0.5, 0.6, 0.7, 0.55, 0.65, 0.75], 0, 0)
    assert enough.a_dominates


def test_regression_needs_significance_not_just_effect():
    rng = np.random.default_rng(5)
    baseline, current = rng.normal(0.70, 0.05, 4), rng.normal(0.68, 0.05, 4)
    threshold = Threshold("accuracy", max_mean_drop=0.0, max_extra_failures=0)
    # A drop from four noisy seeds and one extra failure are not significant.
    checks = []
    assert regression(baseline, current - 0.01, 0, 1, threshold, checks) == []
    # ... and the checks say so, with the effect, the limit and the p-value that was not small enough.
    by_name = {c["check"]: c for c in checks}
    assert set(by_name) == {"mean drop", "extra failures"}  # no std limit, no std check
    mean = by_name["mean drop"]
    assert mean["effect"] == pytest.approx(baseline.mean() - current.mean() + 0.01) and mean["limit"] == 0.0
    assert mean["p"] >= 0.05 and mean["regressed"] is False and by_name["extra failures"]["effect"] == 1
    assert all(type(check["regressed"]) is bool for check in checks)  # not numpy's bool, which JSON writes as 0.0
    within = []
    regression(baseline, baseline, 0, 0, Threshold("accuracy", max_mean_drop=0.01), within)
    assert within == [{"check": "mean drop", "test": "one-sided Mann-Whitney", "effect": 0.0, "limit": 0.01,
                       "p": None, "level": 0.05, "regressed": False,
                       "skipped": None}]  # within the limit: not tested


def test_failed_runs_recovering_is_no_std_regression_but_a_wider_spread_of_successes_is():
    """Collapsed runs tie at the majority class, so a baseline that failed has little spread: some
    runs recovering widens it, which is the opposite of a regression.  Where the failure rate fell,
    the std check therefore judges the successful runs alone."""
    threshold = Threshold("accuracy", max_mean_drop=0.01, max_std_increase=0.01, max_extra_failures=0)
    collapsed, half_fixed = [0.5] * 8, [0.5] * 4 + [0.98, 0.982, 0.984, 0.986]
    checks = []
    assert regression(collapsed, half_fixed, 8, 4, threshold, checks) == []
    std = next(c for c in checks if c["check"] == "std increase")
    assert std["effect"] > 0.25 and std["p"] is None
    assert std["skipped"] == ("a lower failure rate (8/8 -> 4/8) and no drop in the mean, with too few successful runs "
                              "to compare their spread (0 vs 4): the spread grew as failed runs recovered")
    # One failed run fewer, but the successful runs spread far wider: a regression all the same
    # (a first version skipped every std check where fewer runs failed).
    steady = [0.5] + [0.9 + 0.001 * (i % 12) for i in range(24)]
    wild = [0.79 if i % 2 else 0.99 for i in range(25)]
    flags = ([True] + [False] * 24, [False] * 25)  # each run's failed flag, in place of the counts 1 and 0
    checks = []
    (reason,) = regression(steady, wild, *flags, threshold, checks)
    assert reason.startswith("accuracy: std of the successful runs grew by 0.09")
    assert checks[1]["test"] == "one-sided Brown-Forsythe on the successful runs" and checks[1]["regressed"]
    # Recovered runs with successes as tight as the baseline's: no regression, judged on the successes.
    healed = [0.9 + 0.001 * (i % 12) for i in range(25)]
    checks = []
    assert regression(steady, healed, *flags, threshold, checks) == []
    assert checks[1]["test"] == "one-sided Brown-Forsythe on the successful runs" and checks[1]["effect"] < 0.01
    # Fewer failures narrow the spread of all runs, while the successes spread far wider: still judged.
    few = [0.5] * 3 + [0.95 + 0.001 * i for i in range(7)]
    many = [0.5] + [0.78, 0.99, 0.8, 0.97, 0.82, 0.95, 0.85, 0.99, 0.79]
    assert np.std(many, ddof=1) < np.std(few, ddof=1)
    (reason,) = regression(few, many, [True] * 3 + [False] * 7, [True] + [False] * 9, threshold)
    assert reason.startswith("accuracy: std of the successful runs grew by")
    with pytest.raises(ValueError, match=r"^current_failures has 24 flags for 25 scores$"):
        regression(steady, wild, flags[0], [False] * 24, threshold)
    # As many failures, or fewer but a lower mean: the spread of all runs is tested.
    for baseline, current, failures in (([0.5] * 4 + [0.76, 0.761, 0.762, 0.763], [0.5] * 4 + [0.6, 0.7, 0.8, 0.99],
                                         (4, 4)),
                                        ([0.5] + [0.9] * 9, [0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99],
                                         (1, 0))):
        checks = []
        regression(baseline, current, *failures, threshold, checks)
        std = next(c for c in checks if c["check"] == "std increase")
        assert std["effect"] > 0.01 and std["skipped"] is None and std["p"] is not None
        assert std["test"] == "one-sided Brown-Forsythe"
    # The same failure rate is no recovery, flags or counts: failed runs that moved are judged too.
    checks = []
    regression([0.5] * 3 + [0.8, 0.81, 0.8, 0.79, 0.8, 0.81, 0.79], [0.3] * 3 + [0.9, 0.91, 0.9, 0.89, 0.9, 0.91, 0.89],
               [True] * 3 + [False] * 7, [True] * 3 + [False] * 7, threshold, checks)
    assert next(c for c in checks if c["check"] == "std increase")["test"] == "one-sided Brown-Forsythe"
    # A growth exactly at the limit is allowed, untested, as a mean drop at its limit is.
    checks = []
    growth = sample_std(np.array([0.0, 2.0])) - sample_std(np.array([0.0, 1.0]))
    at_limit = Threshold("accuracy", max_std_increase=float(growth))
    assert regression([0.0, 1.0], [0.0, 2.0], 0, 0, at_limit, checks) == [] and checks[0]["p"] is None
    # The rate, not the count, fell: 3 of 4 failed, then 5 of 10.
    checks = []
    regression([0.5] * 3 + [0.9], [0.5] * 5 + [0.9] * 5, 3, 5, Threshold("accuracy", max_std_increase=0.0), checks)
    assert checks[0]["skipped"].startswith("a lower failure rate (3/4 -> 5/10)")


def test_extra_failures_are_counted_beyond_the_baseline_rate_when_the_sides_differ_in_size():
    """10/25 failed in the baseline, 6/6 now: the rate went from 40 % to 100 %, though the count fell."""
    threshold = Threshold("accuracy", max_extra_failures=0)
    baseline = [0.5] * 10 + [0.9 + 0.001 * i for i in range(15)]
    checks = []
    reasons = regression(baseline, [0.5] * 6, 10, 6, threshold, checks)
    assert checks[0]["effect"] == pytest.approx(6 - 10 * 6 / 25)
    assert reasons == [f"accuracy: 3.6 more failed runs than the baseline's rate gives for 6 runs (10/25 -> 6/6; "
                       f"allowed 0), one-sided Fisher exact p={checks[0]['p']:.3g} < 0.05"]
    same_rate = []
    regression([0.5] * 1 + [0.9, 0.91, 0.92, 0.93], [0.5] * 5 + [0.9] * 20, 1, 5, threshold, same_rate)
    assert same_rate[0]["effect"] == pytest.approx(0) and same_rate[0]["p"] is None  # 1/5 -> 5/25: no extra


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=4, max_size=12, unique=True), st.data())
def test_mann_whitney_is_the_exact_test_on_small_untied_studies(scores, data):
    split = data.draw(st.integers(2, len(scores) - 2))
    a, b = scores[:split], scores[split:]
    for alternative in ("less", "greater", "two-sided"):
        exact = sps.mannwhitneyu(a, b, alternative=alternative, method="exact").pvalue
        assert mann_whitney(a, b, alternative) == pytest.approx(exact)


def test_mann_whitney_counts_splits_where_scores_tie():
    """Three collapsed runs against three successes: 1 split in 20, not the normal approximation's 0.032."""
    assert mann_whitney([0.5, 0.5, 0.5], [0.9, 0.91, 0.92], "less") == pytest.approx(1 / 20)
    assert sps.mannwhitneyu([0.5, 0.5, 0.5], [0.9, 0.91, 0.92], alternative="less").pvalue < 0.05
    assert mann_whitney([0.98, 0.98], [0.99, 0.992, 0.995, 0.993], "less") == pytest.approx(1 / 15)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.5, 0.6, 0.75, 0.9, 1.0]), min_size=2, max_size=7),
       st.lists(st.sampled_from([0.5, 0.6, 0.75, 0.9, 1.0]), min_size=2, max_size=7))
def test_smallest_regression_p_bounds_every_mean_and_failure_test(baseline, current):
    """No scores (ties included) give the gate's tests a smaller p than the bound it reports."""
    floor = smallest_regression_p(len(baseline), len(current))
    shifted = mann_whitney(current, baseline, alternative="less")
    failed_now, failed_before = sum(x <= 0.5 for x in current), sum(x <= 0.5 for x in baseline)
    fisher = sps.fisher_exact([[failed_now, len(current) - failed_now],
                                       [failed_before, len(baseline) - failed_before]], alternative="greater").pvalue
    assert shifted >= floor * (1 - 1e-9) and fisher >= floor * (1 - 1e-9)


def test_a_loss_regresses_as_its_negation_does_past_the_splits_counted_whole():
    """Past 8 seeds a side the splits are drawn at random: a loss's draws were not its negation's."""
    rng = np.random.default_rng(3)
    base, current = rng.normal(0.30, 0.02, 12), rng.normal(0.33, 0.05, 12)
    limits = dict(max_mean_drop=0.0, max_std_increase=0.0)
    loss_checks, negated_checks = [], []
    regression(base, current, 0, 0, Threshold("loss", higher_is_better=False, **limits), loss_checks)
    regression(-base, -current, 0, 0, Threshold("neg", **limits), negated_checks)
    assert [check["p"] for check in loss_checks] == [check["p"] for check in negated_checks]
    assert all(check["p"] is not None for check in loss_checks)


def test_smallest_regression_p_says_when_a_gate_can_fire():
    assert smallest_regression_p(2, 2) > 0.05  # 2 seeds a side can never show a regression at 5 %
    assert smallest_regression_p(3, 3) == pytest.approx(1 / 20)  # nor can 3: p < 0.05 is out of reach
    assert smallest_regression_p(4, 3) == pytest.approx(1 / 35)
    assert smallest_regression_p(4, 4) < 0.05
    assert smallest_regression_p(10, 10) < smallest_regression_p(5, 5)
    with pytest.raises(ValueError, match="at least 2 runs"):
        smallest_regression_p(1, 5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=2), r"compare alpha=2 is invalid; expected a number in \(0, 1\)"),
    (dict(alpha=0), r"compare alpha=0 is invalid"),
    (dict(alpha="0.05"), r"compare alpha='0.05' is invalid; expected a number"),
    (dict(n_comparisons=np.int64(0)), r"compare n_comparisons=np.int64\(0\) is invalid"),
    (dict(n_comparisons=0), r"compare n_comparisons=0 is invalid; expected an integer >= 1"),
    (dict(names=("x",)), r"compare names=\('x',\) is invalid; expected the two studies' names"),
])
def test_compare_refuses_impossible_test_settings_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare([0.9, 0.8, 0.85], [0.5, 0.6, 0.7], 0, 1, **kwargs)


@pytest.mark.parametrize("call, message", [
    (lambda: mann_whitney([0.5], [0.6]), "mann_whitney needs at least 2 scores per sample, got 1 and 1"),
    (lambda: mann_whitney([], [0.6, 0.7]), "mann_whitney needs at least 2 scores per sample, got 0 and 2"),  # NaN
    (lambda: violation_ratio([], [0.6, 0.7]), "violation_ratio needs at least one score per sample, got 0 and 2"),
    (lambda: aso([0.5, 0.6], [0.6, 0.7], confidence_level=95), "aso confidence_level=95 is invalid; expected a "
                                                               "level in (0, 1)"),  # NaN before
    (lambda: std_upper_bound(0.1, "5"), "std_upper_bound n='5' is invalid; expected a number of scores"),
])
def test_the_tests_refuse_samples_and_settings_they_cannot_use_in_one_line(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        call()


def test_compare_takes_numpy_settings_and_its_record_still_goes_into_json():
    comparison = compare([0.9, 0.8, 0.85], [0.5, 0.6, 0.7], 0, 1, alpha=np.float32(0.1), n_comparisons=np.int64(2),
                         aso_iterations=10)
    record = json.loads(json.dumps(comparison.to_dict()))
    assert record["n_comparisons"] == 2 and record["alpha"] == pytest.approx(0.05)


def test_compare_runs_is_compare_over_the_runs_scores_and_failures_in_the_metrics_direction():
    from types import SimpleNamespace

    def runs(losses, accuracies):
        return [SimpleNamespace(seed=seed, metrics={"train_loss": loss, "accuracy": acc}, failed=acc <= 0.5,
                                primary_metric="accuracy") for seed, (loss, acc) in enumerate(zip(losses, accuracies))]

    a, b = runs([0.1, 0.2, 0.15], [0.9, 0.5, 0.8]), runs([0.4, 0.5, 0.45], [0.5, 0.5, 0.6])
    by_loss = compare_runs(a, b, "train_loss", names=("x", "y"))
    assert by_loss == compare([0.1, 0.2, 0.15], [0.4, 0.5, 0.45], 1, 2, higher_is_better=False, names=("x", "y"),
                              metric="train_loss")
    # Every loss of A below every loss of B: the smallest one-sided p on 3 vs 3 seeds (1/20) for A, 1 for B.
    assert by_loss.mannwhitney_p_a_better == pytest.approx(0.05)
    assert compare_runs(b, a, "train_loss").mannwhitney_p_a_better == 1
    assert compare_runs(a, b).metric == "accuracy" and compare_runs(a, b).failures_b == 2
    with pytest.raises(ValueError, match="compare_runs needs runs on both sides, got 3 and 0"):
        compare_runs(a, [])
    with pytest.raises(ValueError, match="^z: metric 'f1' is not among the runs' metrics"):
        compare_runs(a, b, "f1", names=("z", "y"))


# --------------------------------------------------------------------------- boundaries (mutation audit)


def test_aso_in_compare_runs_at_the_bonferroni_corrected_confidence():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.70, 0.03, 8), rng.normal(0.69, 0.03, 8)  # overlapping: eps_min strictly inside (0, 1)
    comparison = compare(a, b, 0, 0, alpha=0.05, n_comparisons=3, aso_iterations=1000, seed=0)
    corrected = aso(a, b, confidence_level=1 - 0.05 / 3, num_bootstrap_iterations=1000, seed=0)
    uncorrected = aso(a, b, confidence_level=0.95, num_bootstrap_iterations=1000, seed=0)
    assert corrected != pytest.approx(uncorrected)  # the data tell the two levels apart
    assert comparison.aso_eps_min == pytest.approx(corrected)
    # Lower-is-better flips both samples, at the same corrected level.
    lower = compare(a, b, 0, 0, higher_is_better=False, n_comparisons=3, aso_iterations=1000, seed=0)
    assert lower.aso_eps_min == pytest.approx(aso(-a, -b, 1 - 0.05 / 3, 1000, 0))


def test_compare_reports_sample_stds_with_bessels_correction():
    a, b = [1.0, 2.0, 4.0], [0.0, 0.0, 3.0, 5.0]
    comparison = compare(a, b, 0, 0, aso_iterations=50)
    # By hand: a has mean 7/3, squared deviations 16/9 + 1/9 + 25/9 = 42/9; b has mean 2, 4 + 4 + 1 + 9 = 18.
    assert comparison.std_a == pytest.approx(math.sqrt(42 / 9 / 2))
    assert comparison.std_b == pytest.approx(math.sqrt(18 / 3))
    assert comparison.std_a == pytest.approx(np.std(a, ddof=1)) and comparison.std_b == pytest.approx(np.std(b, ddof=1))


@pytest.mark.parametrize("n", [3, 5, 12])
def test_bootstrap_std_interval_is_of_the_sample_std(n):
    values = np.random.default_rng(n).normal(0.7, 0.05, n)
    # scipy's BCa over the scores in ascending order, the order stabench resamples them in
    reference = sps.bootstrap((np.sort(values),), lambda x, axis=-1: np.std(x, ddof=1, axis=axis), confidence_level=0.95,
                              n_resamples=2000, method="BCa", random_state=np.random.default_rng(0))
    expected = (reference.confidence_interval.low, reference.confidence_interval.high)
    assert all(math.isfinite(x) for x in expected)
    assert bootstrap_ci(values, "std", seed=0) == pytest.approx(expected, rel=1e-9)
    assert summarize(values).std_ci == pytest.approx(expected, rel=1e-9)


def test_a_less_variable_needs_p_strictly_below_alpha():
    fields = dict(n_a=4, n_b=4, mean_a=0.7, mean_b=0.7, std_a=0.01, std_b=0.1, failures_a=0, failures_b=0,
                  levene_statistic=5.0, levene_p=0.1, fisher_p=1.0, fisher_p_a_fewer=1.0, mannwhitney_p=1.0,
                  mannwhitney_p_a_better=1.0, aso_eps_min=0.5)
    assert not Comparison(**fields, levene_p_a_less=0.05, alpha=0.05).a_less_variable
    assert Comparison(**fields, levene_p_a_less=0.049, alpha=0.05).a_less_variable
    # Through compare: 4 tight seeds against 4 wide ones is the most extreme of the C(8, 4) = 70 splits,
    # so the one-sided p is 1/70 and at alpha = 1/70 A is not shown less variable.
    tight, wide = [0.700, 0.701, 0.703, 0.706], [0.5, 0.62, 0.8, 0.95]
    assert _split_p_values(tight, wide)[0] == pytest.approx(1 / 70)
    at_level = compare(tight, wide, 0, 0, alpha=1 / 70, aso_iterations=50)
    assert at_level.levene_p_a_less == pytest.approx(1 / 70) and not at_level.a_less_variable
    assert compare(tight, wide, 0, 0, alpha=1.5 / 70, aso_iterations=50).a_less_variable


def test_a_mean_drop_exactly_at_the_limit_is_not_tested():
    checks = []
    # Means 0.875 and 0.375: exact in binary floating point, so the drop is exactly 0.5.
    assert regression([0.75, 1.0, 0.875, 0.875], [0.25, 0.5, 0.375, 0.375], 0, 0,
                      Threshold("accuracy", max_mean_drop=0.5), checks) == []
    assert checks == [{"check": "mean drop", "test": "one-sided Mann-Whitney", "effect": 0.5, "limit": 0.5,
                       "p": None, "level": 0.05, "regressed": False,
                       "skipped": None}]
    # Just past the limit the test runs (and 4 vs 4 disjoint seeds are significant: p = 1/70).
    past = []
    assert len(regression([0.75, 1.0, 0.875, 0.875], [0.25, 0.5, 0.375, 0.375], 0, 0,
                          Threshold("accuracy", max_mean_drop=0.25), past)) == 1
    assert past[0]["p"] == pytest.approx(1 / 70) and past[0]["regressed"] is True


def test_a_std_that_shrinks_is_no_std_increase_to_test():
    wide, tight = [0.5, 0.6, 0.8, 0.9], [0.70, 0.705, 0.71, 0.72]
    checks = []
    assert regression(wide, tight, 0, 0, Threshold("accuracy", max_std_increase=0.01), checks) == []
    (check,) = checks
    assert check["check"] == "std increase" and check["effect"] == pytest.approx(
        np.std(tight, ddof=1) - np.std(wide, ddof=1))
    assert check["effect"] < -0.01 and check["p"] is None and check["regressed"] is False


def test_the_std_check_is_one_sided_brown_forsythe():
    rng = np.random.default_rng(4)
    base, current = rng.normal(0.7, 0.01, 5), rng.normal(0.7, 0.06, 5)
    less, greater = _split_p_values(current, base)  # every split enumerated, independently of scipy
    assert greater < 0.5  # the one-sided p is not the two-sided one, min(1, 2 * min(less, greater))
    checks = []
    regression(base, current, 0, 0, Threshold("accuracy", max_std_increase=0.01), checks)
    (check,) = checks
    assert check["effect"] > 0.01
    assert check["p"] == pytest.approx(greater)
    assert check["regressed"] is (greater < 0.05)


def test_a_p_value_equal_to_alpha_is_no_regression():
    """Three collapsed runs against three successes: the most extreme of C(6, 3) = 20 splits, p = 1/20 = alpha."""
    checks = []
    assert regression([0.9, 0.91, 0.92], [0.5, 0.5, 0.5], 0, 0, Threshold("accuracy", max_mean_drop=0.01,
                                                                             alpha=0.05), checks) == []
    assert checks[0]["p"] == pytest.approx(1 / 20) and checks[0]["regressed"] is False
    # Just above, the same p is a regression.
    assert len(regression([0.9, 0.91, 0.92], [0.5, 0.5, 0.5], 0, 0,
                          Threshold("accuracy", max_mean_drop=0.01, alpha=0.051))) == 1


@pytest.mark.parametrize("n_baseline, n_current", [(10, 10), (9, 12), (12, 9)])
def test_smallest_regression_p_is_the_fisher_bound_where_splits_are_sampled(n_baseline, n_current):
    """Past PERMUTATIONS splits, the permutation tests stop at 1 / 20,000, but Fisher's exact p for every
    current run failing and no baseline run failing is 1 / C(n_b + n_c, n_c) (hypergeometric, by hand)."""
    ways = math.comb(n_baseline + n_current, n_current)
    assert ways > 20_000
    assert smallest_regression_p(n_baseline, n_current) == pytest.approx(1 / ways, rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0.4, 1.0), min_size=9, max_size=14),
       st.lists(st.floats(0.4, 1.0), min_size=9, max_size=14), st.randoms(use_true_random=False))
def test_comparisons_do_not_depend_on_the_order_the_runs_are_listed_in(scores_a, scores_b, random):
    """Past 8 seeds a side the splits and ASO's resamples are drawn at random (with a fixed seed):
    the same runs listed in another order (another store, an export's order) gave other p's."""
    shuffled_a, shuffled_b = random.sample(scores_a, len(scores_a)), random.sample(scores_b, len(scores_b))
    assert brown_forsythe(shuffled_a, shuffled_b) == brown_forsythe(scores_a, scores_b)
    assert mann_whitney(shuffled_a, shuffled_b, "less") == mann_whitney(scores_a, scores_b, "less")
    assert aso(shuffled_a, shuffled_b, num_bootstrap_iterations=200) == aso(scores_a, scores_b,
                                                                             num_bootstrap_iterations=200)
    assert bootstrap_ci(shuffled_a, n_resamples=200) == bootstrap_ci(scores_a, n_resamples=200)


# --------------------------------------------------------------------------- properties of the two-sample tests

small_ints = st.lists(st.integers(-5, 5), min_size=2, max_size=5)


def _brute_mann_whitney_greater(a, b) -> float:
    """Share of the splits of the pooled scores whose U (A over B, ties half) is as large or larger."""
    pooled, n_a = list(a) + list(b), len(a)

    def u(x, y):
        return sum((xi > yi) + 0.5 * (xi == yi) for xi in x for yi in y)

    observed = u(a, b)
    splits = [u([pooled[i] for i in idx], [pooled[i] for i in range(len(pooled)) if i not in idx])
              for idx in itertools.combinations(range(len(pooled)), n_a)]
    return sum(s >= observed - 1e-9 for s in splits) / len(splits)


@FAST
@given(small_ints, small_ints)
def test_mann_whitney_with_ties_is_the_exact_permutation_p(a, b):
    assert mann_whitney(a, b, alternative="greater") == pytest.approx(_brute_mann_whitney_greater(a, b), abs=1e-12)


@FAST
@given(small_ints, small_ints)
def test_one_sided_permutation_ps_cover_every_split(a, b):
    """P(T >= t) + P(T <= t) >= 1 for a permutation distribution; each p in (0, 1]."""
    for test in (mann_whitney, brown_forsythe):
        less, greater = test(a, b, alternative="less"), test(a, b, alternative="greater")
        two = test(a, b)
        assert 0 < less <= 1 and 0 < greater <= 1 and 0 < two <= 1
        assert less + greater >= 1 - 1e-9


@FAST
@given(small_ints, small_ints, st.integers(-1000, 1000), st.sampled_from([1, 2, 4, 0.5, 1024]))
def test_tests_of_two_samples_are_invariant_under_exact_shifts_and_scalings(a, b, shift, scale):
    """Integer scores shifted by an integer and scaled by a power of 2 stay exact in floats."""
    moved_a, moved_b = [x * scale + shift for x in a], [x * scale + shift for x in b]
    for alternative in ("less", "greater", "two-sided"):
        assert mann_whitney(moved_a, moved_b, alternative) == pytest.approx(mann_whitney(a, b, alternative))
        assert brown_forsythe(moved_a, moved_b, alternative) == pytest.approx(brown_forsythe(a, b, alternative))
    # a shift of one study alone does not change its spread
    assert brown_forsythe([x + shift for x in a], b) == pytest.approx(brown_forsythe(a, b))


@FAST
@given(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=12), st.sampled_from(["mean", "std"]),
       st.sampled_from([2.0, 0.5, 8.0]), st.randoms(use_true_random=False))
@example([0.0, 0.0, 683.1808082554019], "mean", 2.0, Random(0))  # its upper bound was 1 ulp above the max
def test_bootstrap_ci_is_ordered_equivariant_and_order_free(values, statistic, scale, random):
    low, high = bootstrap_ci(values, statistic, n_resamples=200)
    assume(not math.isnan(low))
    assert low <= high
    if statistic == "mean":
        assert min(values) <= low and high <= max(values)
    else:
        assert 0 <= low
    shuffled = list(values)
    random.shuffle(shuffled)
    assert bootstrap_ci(shuffled, statistic, n_resamples=200) == (low, high)
    scaled = bootstrap_ci([v * scale for v in values], statistic, n_resamples=200)
    assert scaled == pytest.approx((low * scale, high * scale), rel=1e-9, abs=1e-300)


@FAST
@given(st.lists(st.floats(0, 1), min_size=2, max_size=8), st.data())
def test_a_study_never_regresses_from_itself(scores, data):
    failures = data.draw(st.integers(0, len(scores)))
    assert regression(scores, list(reversed(scores)), failures, failures,
                      Threshold("m", max_mean_drop=0.0, max_std_increase=0.0, max_extra_failures=0)) == []


@FAST
@given(st.integers(1, 500), st.sampled_from([0.9, 0.95, 0.99]), st.booleans())
def test_a_rate_equal_to_the_bound_of_n_clean_runs_needs_one_run_more(n, confidence, one_sided):
    """The bound must fall strictly below the rate: at a rate that n clean runs bound exactly, n runs
    have not shown it, and n + 1 have (the bound falls with every run)."""
    rate = failure_rate_upper(0, n, confidence, one_sided)
    assert runs_needed_for_zero_failures(rate, confidence, one_sided) == n + 1


def test_summarize_runs_counts_collapsed_and_diverged_runs_apart_from_failed_ones():
    """A run below the majority that still predicts both classes failed without collapsing; a
    diverged run failed too.  Each count is read off its own flag."""
    from types import SimpleNamespace

    flags = [(False, False, False), (True, False, False), (True, True, False), (True, False, True), (False, False, False)]
    runs = [SimpleNamespace(seed=seed, metrics={"accuracy": 0.6 + 0.01 * seed}, primary_metric="accuracy",
                            failed=failed, collapsed=collapsed, diverged=diverged)
            for seed, (failed, collapsed, diverged) in enumerate(flags)]
    summary = summarize_runs(runs)
    assert (summary.failures, summary.collapsed, summary.diverged) == (3, 1, 1)


def test_past_the_splits_counted_whole_the_smallest_p_is_one_in_the_splits_drawn_and_the_observed_one():
    """12 vs 12 seeds have C(24, 12) = 2,704,156 splits, so PERMUTATIONS of them are drawn; with every
    score of A below every score of B, none is as extreme as the observed split but itself."""
    from stabench.stats import PERMUTATIONS, smallest_split_p

    assert math.comb(24, 12) > PERMUTATIONS + 1
    assert smallest_split_p(12, 12) == 1 / (PERMUTATIONS + 1)
    assert mann_whitney(range(12), range(12, 24), "less") == pytest.approx(smallest_split_p(12, 12), rel=1e-12)


def test_a_better_and_fewer_failures_need_p_strictly_below_alpha():
    """3 vs 3 seeds, A's all above B's and B's all failed: the most extreme of C(6, 3) = 20 splits, so
    each one-sided p is 1/20 (Fisher's as scipy rounds it).  At alpha equal to that p, A is not shown
    better or to fail less often; just above it, it is."""
    scores = [0.9, 0.91, 0.92], [0.5, 0.6, 0.7]
    c = compare(*scores, 0, 3, aso_iterations=50)
    assert c.mannwhitney_p_a_better == pytest.approx(1 / 20) and c.fisher_p_a_fewer == pytest.approx(1 / 20)
    for p, verdict in ((c.mannwhitney_p_a_better, "a_better"), (c.fisher_p_a_fewer, "a_fewer_failures")):
        assert not getattr(compare(*scores, 0, 3, alpha=p, aso_iterations=50), verdict)
        assert getattr(compare(*scores, 0, 3, alpha=p * 1.01, aso_iterations=50), verdict)


def test_a_std_bound_equal_to_the_limit_is_not_below_it():
    """The chi-square bound must fall strictly below the limit, as the failure-rate bound must."""
    summary = summarize([0.70, 0.72, 0.71, 0.69, 0.73, 0.70])
    bound = std_upper_bound(summary.std, summary.n)
    assert not std_below(summary, bound)
    with pytest.raises(AssertionError, match=r"chi-square upper bound .* >= "):
        assert_std_below(summary, bound)
    assert std_below(summary, bound * (1 + 1e-9))
    assert_std_below(summary, bound * (1 + 1e-9))


def test_a_failure_rate_bound_equal_to_the_rate_is_not_below_it():
    summary = summarize([0.7] * 25, failed=0)
    for one_sided in (False, True):
        bound = failure_rate_upper(0, 25, one_sided=one_sided)
        assert not failure_rate_below(summary, bound, one_sided=one_sided)
        with pytest.raises(AssertionError, match=r"failure rate not shown below"):
            assert_failure_rate_below(summary, bound, one_sided=one_sided)


def test_a_limit_of_zero_is_a_check_that_is_on_and_takes_its_share_of_alpha():
    """max_mean_drop=0.0 (no drop allowed) switches the check on, as any number does; only None is off."""
    threshold = Threshold("accuracy", max_mean_drop=0.0, max_std_increase=0.0, max_extra_failures=0)
    assert threshold.checks_on == 3 and threshold.check_alpha == pytest.approx(0.05 / 3)
    checks = []
    regression([0.7, 0.71, 0.72], [0.7, 0.71, 0.72], 0, 0, threshold, checks)
    assert [check["level"] for check in checks] == [pytest.approx(0.05 / 3)] * 3


@FAST
@given(st.integers(2, 12), st.integers(2, 12), st.data())
def test_extra_failures_p_is_the_upper_hypergeometric_tail_of_the_current_failures(n_base, n_current, data):
    """One-sided: the chance that the current study fails at least as often, given the failures of both
    (Fisher's exact test, counted from the hypergeometric law by hand)."""
    from scipy.stats import hypergeom

    base_failures, current_failures = data.draw(st.integers(0, n_base)), data.draw(st.integers(0, n_current))
    assume(current_failures - base_failures * n_current / n_base > 0)  # past the limit of 0: the test runs
    checks = []
    regression([0.7 + 0.01 * i for i in range(n_base)], [0.7 + 0.01 * i for i in range(n_current)],
               base_failures, current_failures, Threshold("accuracy", max_extra_failures=0), checks)
    law = hypergeom(n_base + n_current, base_failures + current_failures, n_current)
    assert checks[0]["p"] == pytest.approx(law.sf(current_failures - 1), rel=1e-9)


def test_w_is_left_undefined_only_where_no_study_s_deviations_vary():
    """Collapsed runs tie at one score, so one study's deviations may all be 0 while the other's vary:
    Levene's W is then an ordinary number (the within-study variance comes from the other study), and
    only with every study's deviations tied does it divide by 0."""
    collapsed, varied = [0.5] * 4, [0.4, 0.45, 0.6, 0.7]
    one_tied = compare(collapsed, varied, 4, 0, aso_iterations=50)
    assert math.isfinite(one_tied.levene_statistic)
    assert one_tied.levene_statistic == pytest.approx(sps.levene(collapsed, varied, center="median").statistic)
    both_tied = compare(collapsed, [0.4, 0.4, 0.6, 0.6], 4, 0, aso_iterations=50)  # deviations all 0.1
    assert math.isnan(both_tied.levene_statistic)


def test_seeds_whose_smallest_p_is_alpha_itself_are_said_to_be_too_few():
    """3 vs 3 seeds: the most extreme split is one of C(6, 3) = 20, p = 1/20, which is not below alpha
    0.05 = 1/20; no outcome can pass, and the message says so."""
    from stabench.stats import smallest_split_p

    few = compare([0.9, 0.91, 0.92], [0.5, 0.6, 0.7], 0, 0, aso_iterations=50)
    assert smallest_split_p(3, 3) == few.alpha == 1 / 20
    with pytest.raises(AssertionError, match=r"needs p < 0\.05\); no outcome on 3 vs 3 seeds gives p below 0\.05, "
                                             r"so this cannot pass on these seeds: use more$"):
        assert_better(few)


def test_failed_runs_recovering_with_the_mean_exactly_unchanged_is_no_std_regression():
    """No drop in the mean (a drop of exactly 0 too) and a lower failure rate: the wider spread is
    the failed runs recovering.  Means 0.5 and (0.25 + 0.25 + 0.75 + 0.75) / 4 = 0.5, exact in binary."""
    checks = []
    assert regression([0.5] * 4, [0.25, 0.25, 0.75, 0.75], 4, 2, Threshold("accuracy", max_std_increase=0.01),
                      checks) == []
    (std,) = checks
    assert std["p"] is None and std["skipped"].startswith("a lower failure rate (4/4 -> 2/4) and no drop in the mean")


def test_two_successful_runs_a_side_are_enough_to_judge_the_spread_of_the_successes():
    """Fewer than 2 successful runs on a side leave their spread untested; 2 are a spread."""
    threshold = Threshold("accuracy", max_std_increase=0.01)
    checks = []
    regression([0.5, 0.5, 0.9, 0.91], [0.8, 0.85, 0.9, 0.95], [True, True, False, False], [False] * 4, threshold,
               checks)
    (std,) = checks
    assert std["test"] == "one-sided Brown-Forsythe on the successful runs" and std["skipped"] is None
    assert std["effect"] == pytest.approx(np.std([0.8, 0.85, 0.9, 0.95], ddof=1) - np.std([0.9, 0.91], ddof=1))
    assert std["p"] is not None


def test_a_threshold_with_every_check_off_finds_no_regression_at_its_own_level():
    """A gate whose limits are all none tests nothing, and says its level as alpha itself."""
    off = Threshold("accuracy", alpha=0.05)
    assert off.checks_on == 0 and off.check_alpha == 0.05 and off.level_text() == "0.05"
    checks = []
    assert regression([0.9, 0.91, 0.92], [0.5, 0.5, 0.5], 0, 3, off, checks) == [] and checks == []


@pytest.mark.parametrize("call, message", [
    (lambda: brown_forsythe([0.5], [0.6, 0.7]), "brown_forsythe needs at least 2 scores per sample, got 1 and 2"),
    (lambda: aso([], [0.6, 0.7]), "ASO needs at least one score per sample"),
    (lambda: aso([0.6, 0.7], []), "ASO needs at least one score per sample"),
])
def test_spread_and_dominance_tests_refuse_too_small_a_sample_in_one_line(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()
