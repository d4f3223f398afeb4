"""Statistics behind stability claims: failure-rate bounds, spread bounds, dominance tests.

Everything here is a function of scores and failure counts (``summarize_runs`` and
``compare_runs`` read them off runs first), so benchmark bodies can state claims
such as "fewer than 10% of runs fail" or "recipe A is less variable than B" and get an
answer that accounts for having only a handful of seeds.

Almost Stochastic Order is implemented here rather than taken from ``deepsig``: that
package works with numpy 2.x but pulls in pandas, joblib, dill, psutil and tqdm and
bootstraps one Python-level resample at a time (seconds per call).  ``aso`` below follows
the same definition (Dror et al. 2019; Ulmer et al. 2022) with a vectorised bootstrap.
"""
from __future__ import annotations

import dataclasses
import math
import reprlib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Literal

import numpy as np
from scipy import stats

from .metrics import higher_is_better
from .result import check_metric, runs_of

Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)
# Below this many seeds a side, ASO's bootstrap hardly spreads: two draws of one normal
# distribution gave eps_min < 0.2 in 17 % of 400 pairs at 2 seeds a side, 10 % at 3, 6 % at 4
# and 5, 5 % at 6, 2-3 % at 8 and 10.
ASO_MIN_SEEDS = 6
# Brown-Forsythe's and Mann-Whitney's splits: every one is counted when there are at most this many
# (any study up to 8 seeds a side: 12,870), else this many seeded random ones.
PERMUTATIONS = 19_999


def check_number(name: str, value: object, expected: str, valid) -> None:
    """A limit given as text or out of range is an error naming it, not a comparison TypeError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not valid(value):
        raise ValueError(f"{name}={value!r} is invalid; expected {expected}")


def _check_confidence(confidence: object) -> None:
    """``confidence=95`` (a percentage) would silently give NaN bounds."""
    check_number("confidence", confidence, "a level in (0, 1), e.g. 0.95", lambda c: 0 < c < 1)


# --------------------------------------------------------------------------- failures


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Exact two-sided interval for a failure rate k/n; honest even for 0 of 25.

    The beta quantiles that ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")`` finds
    by root-finding (the same bounds within 1e-12, 30 times faster: a summary of 2,000 studies
    spent 4 s in the root-finder)."""
    _check_confidence(confidence)
    _check_failures(k, n)
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return low, high


def failure_rate_upper(k: int, n: int, confidence: float = 0.95, one_sided: bool = False) -> float:
    """Upper Clopper-Pearson bound on the failure rate.

    Two-sided by default so it matches ``clopper_pearson`` (0/25 -> 0.137); the one-sided
    bound (0/25 -> 0.113) answers "is the rate below x?" with the full error budget.
    """
    _check_confidence(confidence)
    if not one_sided:
        return clopper_pearson(k, n, confidence)[1]
    _check_failures(k, n)
    return 1.0 if k == n else float(stats.beta.ppf(confidence, k + 1, n - k))


def _check_failures(k: int, n: int) -> None:
    if isinstance(k, bool) or isinstance(n, bool) or not (isinstance(k, Integral) and isinstance(n, Integral)
                                                            and 0 <= k <= n and n >= 1):
        raise ValueError(f"failures k={k!r} of n={n!r} runs is invalid; expected integers with 0 <= k <= n and n >= 1")


def runs_needed_for_zero_failures(rate: float, confidence: float = 0.95, one_sided: bool = False) -> int:
    """How many runs, all successful, push the upper bound below ``rate``.

    With zero failures the exact bound is ``1 - tail**(1/n)``, so the answer is closed-form;
    it tells a failing claim how many seeds it would need (one-sided 5% at 95% -> 59).
    """
    _check_confidence(confidence)
    _check_rate(rate)
    tail = 1 - confidence if one_sided else (1 - confidence) / 2
    estimate = 1.0 if rate == 1 else math.log(tail) / math.log1p(-rate)  # log1p: log(1 - 1e-12) rounds
    if estimate > _MOST_RUNS:
        raise ValueError(f"rate={rate!r} is too small to show with runs: it would take {estimate:.3g} of them; "
                         f"expected a rate of at least {-math.log(tail) / _MOST_RUNS:.1e}")
    n = max(1, math.ceil(estimate))
    while n > 1 and failure_rate_upper(0, n - 1, confidence, one_sided) < rate:  # the closed form, rounded
        n -= 1
    while failure_rate_upper(0, n, confidence, one_sided) >= rate:  # the bound must be strict
        n += 1
    return n


_MOST_RUNS = 1e15  # beyond, float steps between run counts exceed 1 and the bound loses its digits


# --------------------------------------------------------------------------- spread


def std_upper_bound(std: float, n: int, confidence: float = 0.95) -> float:
    """One-sided chi-square upper bound on the population std, assuming normal scores.

    A small observed std from few seeds may be luck; this is the std we cannot rule out
    (n = 25 at 95%: 1.316 x the observed std).
    """
    _check_confidence(confidence)
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ValueError(f"std_upper_bound n={n!r} is invalid; expected a number of scores (an integer >= 1)")
    check_number("std", std, "a std >= 0 (or NaN, from one seed)", lambda x: math.isnan(x) or x >= 0)
    if n < 2 or math.isnan(std):
        return math.inf
    return float(std * math.sqrt((n - 1) / stats.chi2.ppf(1 - confidence, n - 1)))


def bootstrap_ci(
    values: Iterable[float],
    statistic: Literal["mean", "std"] = "mean",
    confidence: float = 0.95,
    seed: int = 0,
    n_resamples: int = 2000,
) -> Interval:
    """BCa bootstrap interval for the mean or std of per-seed scores (percentile where BCa's
    jackknife is degenerate, as for near-constant scores).

    Degenerate samples have no sampling spread to bootstrap: fewer than 3 values give
    (nan, nan) and identical values give the point estimate as a zero-width interval.  On few
    seeds it covers less than its level (95 % covered 82 % of true means at 5 normal seeds).
    """
    _check_confidence(confidence)
    functions = {
        "mean": lambda x, axis=-1: np.mean(x, axis=axis),
        "std": lambda x, axis=-1: np.std(x, ddof=1, axis=axis),
    }
    if statistic not in functions:
        raise ValueError(f"statistic must be 'mean' or 'std', got {statistic!r}")
    data = np.sort(np.asarray(list(values), dtype=float))  # resamples follow the scores, not the runs' order
    if data.size < 3:
        return NAN_INTERVAL
    if np.all(data == data[0]):
        point = data[0] if statistic == "mean" else 0.0
        return float(point), float(point)
    with warnings.catch_warnings():
        # BCa's jackknife can be degenerate for near-constant data; we fall back below.
        warnings.simplefilter("ignore")
        for method in ("BCa", "percentile"):
            result = stats.bootstrap(
                (data,),
                functions[statistic],
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=method,
                rng=np.random.default_rng(seed),
            )
            low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
            if not (math.isnan(low) or math.isnan(high)):
                if statistic == "mean":  # a resample of the max alone averaged 1 ulp above it: see sample_mean
                    low, high = max(low, float(data[0])), min(high, float(data[-1]))
                return low, high
    return NAN_INTERVAL


# --------------------------------------------------------------------------- summary


def _count(flags: int | Sequence[bool] | None, n: int, name: str) -> int:
    """Accept either a count or one flag per run, so callers can pass RunResult verdicts."""
    if flags is None:
        return 0
    listed = _flags(flags, name)
    if listed is None:
        count = int(flags)
    else:
        if len(listed) != n:
            raise ValueError(f"{name} has {len(listed)} flags for {n} scores")
        count = sum(listed)
    if not 0 <= count <= n:
        raise ValueError(f"{name} count {count} is outside [0, {n}]")
    return count


def _flags(failures: int | Iterable[bool] | None, name: str) -> list[bool] | None:
    """Each run's failed flag where ``failures`` gives them (read once: it may be a generator);
    None for a count.  A float, a lone bool or text is neither (``failed=True`` read as a count of
    one, 2.0 as "not iterable")."""
    if failures is None or isinstance(failures, Integral) and not isinstance(failures, (bool, np.bool_)):
        return None
    refused = ValueError(f"{name}={reprlib.repr(failures)} is invalid; expected a count (an integer) or one "
                         f"True/False flag per run")
    if isinstance(failures, (bool, np.bool_, str, bytes)) or not isinstance(failures, Iterable):
        raise refused
    try:
        flags = np.asarray(list(failures))  # bools, 0/1 of any number type (a tensor's), one per run
    except (TypeError, ValueError):  # ragged: [[1], [0, 1]]
        raise refused from None
    if flags.ndim != 1 or flags.size and (flags.dtype.kind not in "biuf" or not np.isin(flags, (0, 1)).all()):
        raise refused
    return [bool(flag) for flag in flags]


def _finite(scores: Iterable[float], owner: str, side: str) -> np.ndarray:
    """Scores a test can rank, in ascending order.

    A NaN (a diverged run's loss) compares false with everything, and made a permutation p-value
    0, so a study with a diverged run 'proved' less variable.  The order is the scores' own, not
    the order the runs were listed in, because random splits and resamples drawn with a fixed
    seed give another p for the same runs listed otherwise (another store, an export).
    """
    if callable(scores):  # study.scores, a method, given without its call
        raise TypeError(f"{owner}: {side} is {getattr(scores, '__qualname__', 'a function')}, not scores; call it "
                        f"(study.scores())")
    try:
        data = np.asarray(list(scores), dtype=float)
    except (TypeError, ValueError) as error:  # runs or a Study, where their scores belong
        raise TypeError(f"{owner}: {side} should be scores (numbers), not what came ({error}); runs and Studies "
                        f"go to compare_runs or study.compare") from None
    if not np.isfinite(data).all():
        bad = sorted({str(x) for x in data[~np.isfinite(data)]})
        raise ValueError(f"{owner}: {side}'s scores hold {', '.join(bad)} (a diverged run?); expected finite "
                         f"numbers: compare failure counts, or a metric every run has")
    return np.sort(data)


@dataclass(frozen=True)
class Summary:
    """Per-study numbers a stability claim is judged on, with their uncertainty."""

    n: int
    mean: float
    std: float
    min: float
    median: float
    max: float
    q25: float
    q75: float
    iqr: float
    failures: int
    collapsed: int
    diverged: int
    failure_ci: Interval
    std_upper: float
    mean_ci: Interval
    std_ci: Interval
    confidence: float = 0.95

    def failures_text(self) -> str:
        """E.g. "0/25 [0.000, 0.137]": the count with its exact interval, for reports."""
        low, high = self.failure_ci
        return f"{self.failures}/{self.n} [{low:.3f}, {high:.3f}]"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sample_mean(values: np.ndarray) -> float:
    """The mean, kept within the scores' range: numpy's rounded sum put three runs at 0.1 at
    0.10000000000000002, above their max, and a gate saw a 3e-17 drop between identical studies."""
    return float(np.clip(np.mean(values), np.min(values), np.max(values)))


def sample_std(values: np.ndarray) -> float:
    """The sample std (ddof=1), exactly 0 for tied scores: numpy's rounded mean leaves 1e-16
    there, which tables print and the std's upper bound scales."""
    return 0.0 if np.all(values == values[0]) else float(np.std(values, ddof=1))


def summarize(
    scores: Iterable[float],
    failed: int | Sequence[bool] | None = None,
    collapsed: int | Sequence[bool] | None = None,
    diverged: int | Sequence[bool] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> Summary:
    """Summarise one study (one score per seed); flags are counts or per-run booleans."""
    data = np.asarray(list(scores), dtype=float)
    n = int(data.size)
    if n == 0:
        raise ValueError("cannot summarize an empty list of scores (did every run get skipped?)")
    failures = _count(failed, n, "failed")
    std = sample_std(data) if n >= 2 else math.nan
    q25, median, q75 = (float(q) for q in np.quantile(data, [0.25, 0.5, 0.75]))
    return Summary(
        n=n,
        mean=sample_mean(data),
        std=std,
        min=float(np.min(data)),
        median=median,
        max=float(np.max(data)),
        q25=q25,
        q75=q75,
        iqr=q75 - q25,
        failures=failures,
        collapsed=_count(collapsed, n, "collapsed"),
        diverged=_count(diverged, n, "diverged"),
        failure_ci=clopper_pearson(failures, n, confidence),
        std_upper=std_upper_bound(std, n, confidence),
        mean_ci=bootstrap_ci(data, "mean", confidence, seed),
        std_ci=bootstrap_ci(data, "std", confidence, seed),
        confidence=confidence,
    )


def summarize_runs(results: Sequence, metric: str | None = None, confidence: float = 0.95) -> Summary:
    """``summarize`` over run results (anything with ``metrics`` and the failure flags).

    ``metric`` defaults to the runs' own headline metric.  ``results`` may also be a Study.
    """
    results = runs_of(results, "summarize_runs: ", one_study=True)
    if not results:
        raise ValueError("cannot summarize an empty list of runs (did every run get skipped?)")
    metric = metric or results[0].primary_metric
    check_metric(results, metric)
    return summarize([r.metrics[metric] for r in results], failed=[r.failed for r in results],
                     collapsed=[r.collapsed for r in results], diverged=[r.diverged for r in results],
                     confidence=confidence)


# --------------------------------------------------------------------------- expected max


def expected_max_curve(scores: Iterable[float], ns: Iterable[int]) -> list[float]:
    """Expected best score over n seeds, for each n (Dodge et al. 2019).

    With sorted scores v_(1..N), E[max_n] = sum_i v_(i) * ((i/N)^n - ((i-1)/N)^n):
    the chance that v_(i) is the best of n draws with replacement.
    """
    ordered = _finite(scores, "expected max", "the study")
    if ordered.size == 0:
        raise ValueError("expected max needs at least one score")
    ranks = np.arange(1, ordered.size + 1) / ordered.size
    curve = []
    for n in ns:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n={n!r} is invalid; expected a number of seeds (an integer >= 1)")
        weights = ranks**n - (ranks - 1 / ordered.size) ** n
        curve.append(float(np.clip(np.dot(weights, ordered), ordered[0], ordered[-1])))  # rounding: see sample_mean
    return curve


def expected_max(scores: Iterable[float], n: int) -> float:
    """Expected best score when picking the best of n seeds; equals the mean at n = 1."""
    return expected_max_curve(scores, [n])[0]


# --------------------------------------------------------------------------- ASO

_ASO_GRID = np.arange(0.005, 1, 0.005)  # quantile levels t in (0, 1) for the integrals


def _quantiles(samples: np.ndarray) -> np.ndarray:
    """Empirical quantile function F^-1(t) = v_(ceil(N t)) on the grid, along the last axis."""
    return np.moveaxis(np.quantile(samples, _ASO_GRID, axis=-1, method="inverted_cdf"), 0, -1)


def _violation_ratios(quantiles_a: np.ndarray, quantiles_b: np.ndarray) -> np.ndarray:
    """Share of the squared Wasserstein-2 distance where A's quantiles fall below B's.

    0 means A is above B at every quantile (A stochastically dominates B); identical
    quantile functions give 0.5 (no evidence either way).
    """
    gap = (quantiles_b - quantiles_a) ** 2
    total = gap.sum(axis=-1)
    violated = np.where(quantiles_a < quantiles_b, gap, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, violated / np.where(total > 0, total, 1.0), 0.5)


def violation_ratio(scores_a: Iterable[float], scores_b: Iterable[float]) -> float:
    """Point estimate of how far A is from stochastically dominating B (0 = fully, 0.5 = tie)."""
    a, b = _finite(scores_a, "violation_ratio", "A"), _finite(scores_b, "violation_ratio", "B")
    if a.size == 0 or b.size == 0:
        raise ValueError(f"violation_ratio needs at least one score per sample, got {a.size} and {b.size}")
    return float(_violation_ratios(_quantiles(a), _quantiles(b)))


def aso(
    scores_a: Iterable[float],
    scores_b: Iterable[float],
    confidence_level: float = 0.95,
    num_bootstrap_iterations: int = 1000,
    seed: int = 0,
) -> float:
    """Almost Stochastic Order: epsilon_min, an upper confidence bound on the violation ratio.

    Small means A is better than B (< 0.2 is the recommended threshold); higher scores are
    taken to be better, so negate both samples for lower-is-better metrics.  The bound is
    eps_hat + z * sd(bootstrap eps), i.e. Dror et al.'s eps_hat - sigma/sqrt(nm/(n+m)) *
    Phi^-1(alpha); bootstrap resamples each sample with replacement.  It is an upper bound, yet
    on a few seeds two samples of one distribution often fall below 0.2 (see ``ASO_MIN_SEEDS``):
    disjoint samples of 2 or 3 seeds give 0.0, as every resample agrees.  A sample against
    itself is a tie, 0.5 as a point estimate (:func:`violation_ratio`, the "about 0.5" said of
    ASO); its upper bound lies above that, up to 1.
    """
    check_number("aso confidence_level", confidence_level, "a level in (0, 1), e.g. 0.95", lambda c: 0 < c < 1)
    a, b = _finite(scores_a, "aso", "A"), _finite(scores_b, "aso", "B")
    if a.size == 0 or b.size == 0:
        raise ValueError("ASO needs at least one score per sample")
    estimate = _violation_ratios(_quantiles(a), _quantiles(b))
    rng = np.random.default_rng(seed)
    resampled_a = rng.choice(a, size=(num_bootstrap_iterations, a.size))
    resampled_b = rng.choice(b, size=(num_bootstrap_iterations, b.size))
    bootstrapped = _violation_ratios(_quantiles(resampled_a), _quantiles(resampled_b))
    spread = float(np.std(bootstrapped - estimate))
    return float(np.clip(estimate + stats.norm.ppf(confidence_level) * spread, 0.0, 1.0))


# --------------------------------------------------------------------------- two studies


def brown_forsythe(a: Iterable[float], b: Iterable[float], alternative: str = "two-sided") -> float:
    """p-value of the Brown-Forsythe test (Levene's, centred on medians) that A and B spread equally,
    ``"less"``: that A spreads less than B, ``"greater"``: more.

    The p-value comes from permuting the runs between the studies, not from Levene's F
    distribution: at seed-study sizes the absolute deviations are far from normal, and tied or
    near-tied ones (collapsed runs at the majority, successes at 1.000) gave absurd p-values
    (1e-90 for two tied halves at 4 seeds a side, 7e-11 for ``[.5, .5, 1, 1]`` against
    ``[.9, .9, .9, .91]``).  Each study is first centred on its median (so a shift in location is
    no difference in spread), then the centred scores are split anew and each part's mean absolute
    deviation from its own median recomputed: deviations taken once and then permuted are not
    exchangeable between studies of different sizes (a small study's sit closer to its median),
    and rejected a true null 11-15 % of the time at 3 against 20 seeds.  The test stays
    approximate: in simulations of normal scores from 3 to 8 seeds a side it rejected a true null
    0-7.5 % of the time at 5 %, and with 2 or 3 seeds a side it has little power.  Every split is
    counted where there are at most ``PERMUTATIONS`` (up to 8 seeds a side, or 3 against 25);
    beyond, that many random splits with a fixed seed, so the same scores always give the same p,
    and never below 1/20,000.
    """
    a, b = _finite(a, "brown_forsythe", "A"), _finite(b, "brown_forsythe", "B")
    if min(a.size, b.size) < 2:
        raise ValueError(f"brown_forsythe needs at least 2 scores per sample, got {a.size} and {b.size}")
    centred = a - np.median(a), b - np.median(b)
    scale = float(max(np.abs(centred[0]).max(), np.abs(centred[1]).max())) or 1.0

    def spread_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        """On the scores' scale and shifted by 4 (into [2, 6]): scipy counts a split as tied with
        the observed one within 100 float epsilons of the observed value, so a difference of 0
        (equal spreads, common) had no tolerance at all, splits tied in exact arithmetic fell either
        side by rounding, and the same scores gave p=0.4 as A "less" and 0.33 as B "greater".
        Shifted, the tolerance is about 1e-13 of the largest deviation: rounding, not data."""
        return _spread_difference(x, y, axis) / scale + 4.0

    return float(stats.permutation_test(centred, spread_difference, permutation_type="independent",
                                        vectorized=True, n_resamples=PERMUTATIONS, alternative=alternative,
                                        rng=0).pvalue)


def smallest_split_p(n_a: int, n_b: int) -> float:
    """The smallest one-sided p ``mann_whitney`` can give on these sizes, whatever the scores: one
    split in all of them where every split is counted, else one in the ``PERMUTATIONS`` drawn and
    the observed one.  For ``brown_forsythe`` it is a lower bound only: with an odd number of runs
    on a side, the median run's deviation is 0 in every split, and the smallest p is higher (at 5
    against 5 seeds a search found none below 0.024, against this bound's 0.004)."""
    return 1 / min(math.comb(n_a + n_b, n_a), PERMUTATIONS + 1)


def mann_whitney(a: Iterable[float], b: Iterable[float], alternative: str = "two-sided") -> float:
    """p-value of the Mann-Whitney U test that A and B are shifted, ``"less"``: that A's scores lie lower.

    By permutation, as ``brown_forsythe``: scipy's default turns to the normal approximation as
    soon as scores tie (collapsed runs at the majority, successes at 1.000) and there gave
    p=0.032 for three collapsed runs against three successful ones, where no split of 3 and 3
    seeds can go below 1/20.  Splits are counted or drawn as ``brown_forsythe``'s are.
    """
    a, b = _finite(a, "mann_whitney", "A"), _finite(b, "mann_whitney", "B")
    if min(a.size, b.size) < 2:  # scipy's message speaks of its own `data`
        raise ValueError(f"mann_whitney needs at least 2 scores per sample, got {a.size} and {b.size}")
    return float(stats.mannwhitneyu(a, b, alternative=alternative,
                                    method=stats.PermutationMethod(n_resamples=PERMUTATIONS, rng=0)).pvalue)


def _oriented(scores: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Scores turned so that higher is better (a loss negated), in ascending order: random splits
    and resamples then follow the scores, not the metric's direction, and a loss gives the p's its
    negation gives."""
    return np.sort(scores if higher_is_better else -scores)


def _spread_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    """Mean absolute deviation from the part's own median, A's minus B's, for each split."""
    def spread(z: np.ndarray) -> np.ndarray:
        return np.mean(np.abs(z - np.median(z, axis=axis, keepdims=True)), axis=axis)

    return spread(x) - spread(y)


def _deviations(a: Iterable[float], b: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's absolute deviations from its median: what Brown-Forsythe compares."""
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    return np.abs(a - np.median(a)), np.abs(b - np.median(b))


def _tied(*deviations: np.ndarray) -> bool:
    """Whether no sample's deviations vary (beyond float rounding): Levene's W divides by 0."""
    return all(np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())) for x in deviations)


def _levene_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Brown-Forsythe's W, or NaN where it divides by 0 (no study's deviations vary)."""
    if _tied(*_deviations(a, b)):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.levene(a, b, center="median").statistic)


def _fisher_table(failures_x: int, n_x: int, failures_y: int, n_y: int) -> list[list[int]]:
    return [[failures_x, n_x - failures_x], [failures_y, n_y - failures_y]]


@dataclass(frozen=True)
class Comparison:
    """Study A against study B: spread, failures, location and dominance, with verdicts."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    std_a: float
    std_b: float
    failures_a: int
    failures_b: int
    levene_statistic: float  # Brown-Forsythe (median-centred Levene) test of equal spread; NaN when tied
    levene_p: float  # two-sided, by permutation
    levene_p_a_less: float  # one-sided by permutation: A spreads less than B
    fisher_p: float  # two-sided, failure counts
    fisher_p_a_fewer: float  # one-sided: A fails less often than B
    mannwhitney_p: float  # two-sided
    mannwhitney_p_a_better: float  # one-sided in the metric's good direction
    aso_eps_min: float  # A dominates B when small
    alpha: float  # after Bonferroni correction
    higher_is_better: bool = True
    aso_threshold: float = 0.2
    n_comparisons: int = 1  # alpha's Bonferroni divisor
    name_a: str = "A"  # what the messages call the two studies (Study.compare: the arms' names)
    name_b: str = "B"
    metric: str = "score"
    subject: str | None = None  # what both studies ran, "task / model" (Study.compare), where they share it

    @property
    def most_of_a_failed(self) -> bool:
        """Most runs of A failed: its median is a failed run, and collapsed runs tie there, so A's
        small spread about its median shows no stability."""
        return 2 * self.failures_a > self.n_a

    @property
    def a_less_variable(self) -> bool:
        """A's scores spread less than B's (one-sided Brown-Forsythe); never when most of A failed."""
        return self.levene_p_a_less < self.alpha and not self.most_of_a_failed

    @property
    def a_dominates(self) -> bool:
        """ASO's eps_min below its threshold, on enough seeds for that to mean something (``ASO_MIN_SEEDS``)."""
        return self.aso_eps_min < self.aso_threshold and min(self.n_a, self.n_b) >= ASO_MIN_SEEDS

    @property
    def a_fewer_failures(self) -> bool:
        """A's runs fail less often than B's (one-sided Fisher exact test on the failure counts)."""
        return self.fisher_p_a_fewer < self.alpha

    @property
    def a_better(self) -> bool:
        """A's scores are shifted in the good direction (one-sided Mann-Whitney)."""
        return self.mannwhitney_p_a_better < self.alpha

    def to_dict(self) -> dict:
        """Every field, and what each test shows at the corrected level."""
        return {**dataclasses.asdict(self), "a_less_variable": self.a_less_variable,
                "a_fewer_failures": self.a_fewer_failures, "a_better": self.a_better, "a_dominates": self.a_dominates}

    def level_text(self) -> str:
        """``0.0167 (0.05 / 3 comparisons)``, or ``0.05`` for one comparison."""
        level = f"{self.alpha:.3g}"
        return level if self.n_comparisons == 1 else f"{level} ({self.alpha * self.n_comparisons:.3g} / " \
                                                      f"{self.n_comparisons} comparisons)"

    def too_few_seeds(self, smallest_p: float) -> str:
        """Why no outcome could pass, when even the most extreme split of these seeds has p >= alpha."""
        if smallest_p < self.alpha:
            return ""
        return (f"; no outcome on {self.n_a} vs {self.n_b} seeds gives p below {smallest_p:.3g}, so this cannot "
                f"pass on these seeds: use more")

    def __repr__(self) -> str:
        """One line of verdicts: what a claim's ``assert ..., comparison`` and a notebook show (pytest
        cuts a repr at 240 characters, and every field would be cut mid-way).  ``to_dict`` has them all."""
        def verdict(shown: bool, p: float) -> str:
            return f"{'yes' if shown else 'no'} p={p:.3g}"

        return (f"<Comparison {self.name_a} vs {self.name_b} ({self.metric}, n={self.n_a} vs {self.n_b}, level "
                f"{self.level_text()}): less variable {verdict(self.a_less_variable, self.levene_p_a_less)}, "
                f"fewer failures {verdict(self.a_fewer_failures, self.fisher_p_a_fewer)} ({self.failures_a}/"
                f"{self.n_a} vs {self.failures_b}/{self.n_b}), better "
                f"{verdict(self.a_better, self.mannwhitney_p_a_better)}>")

    def __str__(self) -> str:
        """What ``print(study['a'].compare(study['b']))`` shows: each test's p and verdict, not every field."""
        def verdict(shown: bool) -> str:
            return "yes" if shown else "no"

        on = f" on {self.subject}" if self.subject else ""
        return (f"{self.name_a} vs {self.name_b}{on} ({self.metric}, n={self.n_a} vs {self.n_b}, level "
                f"{self.level_text()}):\n"
                f"  less variable  {verdict(self.a_less_variable):3}  std {self.std_a:.4g} vs {self.std_b:.4g}, "
                f"one-sided Brown-Forsythe p={self.levene_p_a_less:.3g}"
                + (f" (most runs of {self.name_a} failed)" if self.most_of_a_failed else "") + "\n"
                f"  fewer failures {verdict(self.a_fewer_failures):3}  {self.failures_a}/{self.n_a} vs "
                f"{self.failures_b}/{self.n_b}, one-sided Fisher p={self.fisher_p_a_fewer:.3g}\n"
                f"  better         {verdict(self.a_better):3}  mean {self.mean_a:.4g} vs {self.mean_b:.4g}, "
                f"one-sided Mann-Whitney p={self.mannwhitney_p_a_better:.3g}\n"
                f"  dominates      {verdict(self.a_dominates):3}  ASO eps_min {self.aso_eps_min:.3f} (threshold "
                f"{self.aso_threshold:g}, at least {ASO_MIN_SEEDS} seeds a side)"
                + (f"\n  (no split of {self.n_a} vs {self.n_b} seeds gives a rank test p below {smallest:.3g}: less "
                   f"variable and better cannot be yes on these seeds; use more)"
                   if (smallest := smallest_split_p(self.n_a, self.n_b)) >= self.alpha else ""))


def compare(
    scores_a: Iterable[float],
    scores_b: Iterable[float],
    failures_a: int,
    failures_b: int,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    n_comparisons: int = 1,
    seed: int = 0,
    aso_threshold: float = 0.2,
    aso_iterations: int = 1000,
    names: tuple[str, str] = ("A", "B"),
    metric: str = "score",
    subject: str | None = None,
) -> Comparison:
    """Compare two studies; "A better" follows ``higher_is_better``.

    Runs the one- and two-sided Brown-Forsythe test of spread, Fisher's exact test of failure
    counts and the Mann-Whitney test of location (each p by permutation or exactly), and
    Almost Stochastic Order.  ``alpha`` is Bonferroni-corrected by ``n_comparisons``, and ASO
    runs at the matching confidence level, as deepsig does for multiple comparisons.
    ``names`` and ``metric`` are what the assertions' messages call the studies and scores, and
    ``subject`` what both studies ran (their task and model), where comparisons of several tasks
    would otherwise read alike.
    """
    check_number("compare alpha", alpha, "a number in (0, 1), e.g. 0.05", lambda x: 0 < x < 1)
    if isinstance(n_comparisons, bool) or not isinstance(n_comparisons, Integral) or n_comparisons < 1:
        raise ValueError(f"compare n_comparisons={n_comparisons!r} is invalid; expected an integer >= 1")
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != 2 \
            or not all(isinstance(name, str) for name in names):
        raise ValueError(f"compare names={names!r} is invalid; expected the two studies' names, e.g. ('bc', 'no-bc')")
    alpha, n_comparisons = float(alpha), int(n_comparisons)  # a numpy value would not go into the reports' JSON
    a, b = _finite(scores_a, "compare", "A"), _finite(scores_b, "compare", "B")
    if a.size < 2 or b.size < 2:
        raise ValueError(f"compare needs at least 2 scores per study, got {a.size} and {b.size}")
    failures_a, failures_b = _count(failures_a, a.size, "failures_a"), _count(failures_b, b.size, "failures_b")
    corrected_alpha = alpha / n_comparisons
    better_a, better_b = _oriented(a, higher_is_better), _oriented(b, higher_is_better)
    table = _fisher_table(failures_a, a.size, failures_b, b.size)
    return Comparison(
        n_a=int(a.size),
        n_b=int(b.size),
        mean_a=sample_mean(a),
        mean_b=sample_mean(b),
        std_a=sample_std(a),
        std_b=sample_std(b),
        failures_a=int(failures_a),
        failures_b=int(failures_b),
        levene_statistic=_levene_statistic(a, b),
        levene_p=brown_forsythe(better_a, better_b),
        levene_p_a_less=brown_forsythe(better_a, better_b, alternative="less"),
        fisher_p=float(stats.fisher_exact(table).pvalue),
        fisher_p_a_fewer=float(stats.fisher_exact(table, alternative="less").pvalue),
        mannwhitney_p=mann_whitney(better_a, better_b),
        mannwhitney_p_a_better=mann_whitney(better_a, better_b, alternative="greater"),
        aso_eps_min=aso(better_a, better_b, 1 - corrected_alpha, aso_iterations, seed),
        alpha=corrected_alpha,
        higher_is_better=higher_is_better,
        aso_threshold=aso_threshold,
        n_comparisons=n_comparisons,
        name_a=names[0],
        name_b=names[1],
        metric=metric,
        subject=subject,
    )


def compare_runs(runs_a: Sequence, runs_b: Sequence, metric: str | None = None, alpha: float = 0.05,
                 n_comparisons: int = 1, names: tuple[str, str] = ("A", "B")) -> Comparison:
    """``compare`` over run results (or Studies): their scores and failures, in the metric's own
    direction; ``metric`` defaults to A's headline metric."""
    a, b = runs_of(runs_a, "compare_runs: ", one_study=True), runs_of(runs_b, "compare_runs: ", one_study=True)
    if not a or not b:
        raise ValueError(f"compare_runs needs runs on both sides, got {len(a)} and {len(b)}")
    metric = metric or a[0].primary_metric
    for runs, name in ((a, names[0]), (b, names[1])):
        check_metric(runs, metric, f"{name}: ")
    return compare([r.metrics[metric] for r in a], [r.metrics[metric] for r in b], sum(r.failed for r in a),
                   sum(r.failed for r in b), higher_is_better=higher_is_better(metric), alpha=alpha,
                   n_comparisons=n_comparisons, names=names, metric=metric)


# --------------------------------------------------------------------------- claim helpers
# Each assert_* sets __tracebackhide__: a failed claim's traceback then shows the claim's own line
# and the message, not the helper's body.


def _check_rate(rate: object) -> None:
    check_number("rate", rate, "a failure rate in (0, 1], e.g. 0.2", lambda r: 0 < r <= 1)


def _check_std_limit(limit: object) -> None:
    check_number("limit", limit, "a std > 0, e.g. 0.03", lambda x: x > 0)


def failure_rate_below(summary: Summary, rate: float, confidence: float = 0.95, one_sided: bool = False) -> bool:
    """True when the upper Clopper-Pearson bound on the failure rate is below ``rate``."""
    _check_rate(rate)
    return failure_rate_upper(summary.failures, summary.n, confidence, one_sided) < rate


def std_below(summary: Summary, limit: float, confidence: float = 0.95) -> bool:
    """True when the chi-square upper bound on the std is below ``limit``."""
    _check_std_limit(limit)
    return std_upper_bound(summary.std, summary.n, confidence) < limit


def assert_failure_rate_below(
    summary: Summary, rate: float, confidence: float = 0.95, one_sided: bool = False
) -> None:
    """``summary`` may also be a claim's study (it has ``failures`` and ``n``)."""
    __tracebackhide__ = True
    _check_rate(rate)
    upper = failure_rate_upper(summary.failures, summary.n, confidence, one_sided)
    if upper < rate:
        return
    kind = "one-sided" if one_sided else "two-sided"
    needed = ("" if summary.failures else f" (even with zero failures this needs >= "
              f"{runs_needed_for_zero_failures(rate, confidence, one_sided)} runs)")
    raise AssertionError(
        f"failure rate not shown below {rate:.3f}: {summary.failures}/{summary.n} runs failed, "
        f"{confidence:.0%} {kind} Clopper-Pearson upper bound {upper:.3f} >= {rate:.3f}{needed}"
    )


def assert_std_below(summary: Summary, limit: float, confidence: float = 0.95) -> None:
    """``summary`` may also be a claim's study (it has ``std`` and ``n``)."""
    __tracebackhide__ = True
    _check_std_limit(limit)
    if summary.n < 2:
        raise AssertionError(f"std not shown below {limit:.4g}: {summary.n} run(s), and a std needs at least 2")
    upper = std_upper_bound(summary.std, summary.n, confidence)
    if upper < limit:
        return
    raise AssertionError(
        f"std not shown below {limit:.4g}: observed std {summary.std:.4g} over {summary.n} runs, "
        f"{confidence:.0%} chi-square upper bound {upper:.4g} >= {limit:.4g}"
    )


def _check_comparison(comparison: object, assertion: str) -> None:
    if not isinstance(comparison, Comparison):
        raise TypeError(f"{assertion} takes a comparison of two studies, e.g. {assertion}(study['a'].compare("
                        f"study['b'])); got a {type(comparison).__name__}")


def assert_less_variable(comparison: Comparison) -> None:
    """A's scores spread less than B's: one-sided Brown-Forsythe, p by permutation."""
    __tracebackhide__ = True
    _check_comparison(comparison, "assert_less_variable")
    c = comparison
    if c.most_of_a_failed:  # collapsed runs tie at the majority: no spread, no stability
        raise AssertionError(f"{c.name_a} not shown less variable than {c.name_b}: most runs of {c.name_a} failed "
                             f"({c.failures_a}/{c.n_a}), so its small spread shows no stability; compare failures "
                             f"first ({c.name_b} failed {c.failures_b}/{c.n_b})")
    if c.a_less_variable:
        return
    raise AssertionError(
        f"{c.name_a} not shown less variable than {c.name_b} ({c.metric}): std {c.std_a:.4g} (n={c.n_a}) vs "
        f"{c.std_b:.4g} (n={c.n_b}), Brown-Forsythe Levene "
        + ("with tied deviations" if math.isnan(c.levene_statistic) else f"W={c.levene_statistic:.3g}")
        + f", one-sided permutation p={c.levene_p_a_less:.3g} (needs p < {c.level_text()})"
        + c.too_few_seeds(smallest_split_p(c.n_a, c.n_b))
    )


def assert_fewer_failures(comparison: Comparison) -> None:
    """A's runs fail less often than B's: one-sided Fisher exact test on the failure counts."""
    __tracebackhide__ = True
    _check_comparison(comparison, "assert_fewer_failures")
    c = comparison
    if c.a_fewer_failures:
        return
    best = stats.fisher_exact(_fisher_table(0, c.n_a, c.n_b, c.n_b), alternative="less").pvalue  # none vs all
    raise AssertionError(
        f"{c.name_a} not shown to fail less often than {c.name_b}: failed {c.failures_a}/{c.n_a} vs "
        f"{c.failures_b}/{c.n_b}, one-sided Fisher exact p={c.fisher_p_a_fewer:.3g} (needs p < {c.level_text()})"
        + c.too_few_seeds(float(best))
    )


def assert_better(comparison: Comparison) -> None:
    """A scores better than B (in the metric's own direction): one-sided Mann-Whitney, p by permutation."""
    __tracebackhide__ = True
    _check_comparison(comparison, "assert_better")
    c = comparison
    if c.a_better:
        return
    direction = "higher" if c.higher_is_better else "lower"
    raise AssertionError(
        f"{c.name_a} not shown to score better than {c.name_b} ({c.metric}, {direction} is better): means "
        f"{c.mean_a:.4g} (n={c.n_a}) vs {c.mean_b:.4g} (n={c.n_b}), one-sided Mann-Whitney p="
        f"{c.mannwhitney_p_a_better:.3g} (needs p < {c.level_text()})"
        + c.too_few_seeds(smallest_split_p(c.n_a, c.n_b))
    )


def assert_dominates(comparison: Comparison) -> None:
    """A almost stochastically dominates B: ASO's eps_min below its threshold, on at least
    ``ASO_MIN_SEEDS`` seeds a side."""
    __tracebackhide__ = True
    _check_comparison(comparison, "assert_dominates")
    c = comparison
    if c.a_dominates:
        return
    if min(c.n_a, c.n_b) < ASO_MIN_SEEDS:
        raise AssertionError(f"{c.name_a} not shown to almost stochastically dominate {c.name_b}: {c.n_a} vs "
                             f"{c.n_b} seeds, and ASO needs at least {ASO_MIN_SEEDS} a side (on fewer, noise passes "
                             f"its threshold too often)")
    direction = "higher" if c.higher_is_better else "lower"
    raise AssertionError(
        f"{c.name_a} not shown to almost stochastically dominate {c.name_b} ({c.metric}, {direction} is better): "
        f"ASO eps_min {c.aso_eps_min:.3f} >= threshold {c.aso_threshold:.3f} at {1 - c.alpha:.3g} confidence "
        f"(n={c.n_a} vs {c.n_b}; means {c.mean_a:.4g} vs {c.mean_b:.4g})"
    )


# --------------------------------------------------------------------------- regressions


@dataclass(frozen=True)
class Threshold:
    """How much worse a metric may get before a change counts as a regression.

    ``max_mean_drop`` and ``max_std_increase`` are absolute, in the metric's units;
    ``max_extra_failures`` is a number of runs (beyond the baseline's failure rate); ``alpha`` is
    each check's significance level.  None switches that check off.
    """

    metric: str
    higher_is_better: bool = True
    max_mean_drop: float | None = None
    max_std_increase: float | None = None
    max_extra_failures: int | None = None
    alpha: float = 0.05

    @property
    def checks_on(self) -> int:
        return sum(limit is not None for limit in (self.max_mean_drop, self.max_std_increase, self.max_extra_failures))

    @property
    def check_alpha(self) -> float:
        """Each check's level: alpha split over the checks that are on (Bonferroni), so that alpha
        bounds how often seed noise alone fails a claim's gate.  Each check at alpha failed 9-10 %
        of gates between two draws of one normal distribution (6 and 10 seeds a side)."""
        return self.alpha / max(1, self.checks_on)

    def level_text(self) -> str:
        """``0.0167 (alpha 0.05 / 3 checks)``, or ``0.05`` with one check on."""
        level = f"{self.check_alpha:.3g}"
        return level if self.checks_on <= 1 else f"{level} (alpha {self.alpha:g} / {self.checks_on} checks)"


def regression(
    baseline_scores: Iterable[float],
    current_scores: Iterable[float],
    baseline_failures: int | Sequence[bool],
    current_failures: int | Sequence[bool],
    threshold: Threshold,
    checks: list[dict] | None = None,
) -> list[str]:
    """Reasons the current study regressed from the baseline; empty when it did not.

    A reason needs both an effect past the threshold in the bad direction and a
    significant one-sided test, so seed noise alone does not fail a build.  ``checks``, when
    given, receives one record per check (effect, limit, and the p-value where the effect was
    past the limit and the test ran), so a passed gate can say why it passed.

    The failures of each side are a count, or each run's failed flag in the order of its scores.
    Flags let the std check judge the successful runs alone where the failure rate fell and the
    mean did not drop: failed runs tie at the majority class, so runs recovering widen the spread
    of all runs with no loss of stability.  With counts it judges all runs.  Either way, where a
    side has fewer than 2 successful runs, a wider spread there is not tested, and the check's
    record says why.
    """
    baseline_scores, current_scores = list(baseline_scores), list(current_scores)
    base = _finite(baseline_scores, "regression", "baseline")
    current = _finite(current_scores, "regression", "current")
    if base.size < 2 or current.size < 2:
        raise ValueError(f"regression needs at least 2 scores per study, got {base.size} and {current.size}")
    baseline_flags = _flags(baseline_failures, "baseline_failures")
    current_flags = _flags(current_failures, "current_failures")
    baseline_failures = _count(baseline_failures if baseline_flags is None else baseline_flags, base.size,
                               "baseline_failures")
    current_failures = _count(current_failures if current_flags is None else current_flags, current.size,
                              "current_failures")
    metric, alpha, level = threshold.metric, threshold.check_alpha, threshold.level_text()
    better_base = _oriented(base, threshold.higher_is_better)
    better_current = _oriented(current, threshold.higher_is_better)
    reasons = []
    checks = [] if checks is None else checks

    def record(check: str, test: str, effect: float, limit: float, p: float | None, skipped: str | None = None
               ) -> bool:
        """Note one check; whether it found a regression (an effect past the limit, significant).
        ``skipped``: why an effect past its limit was not tested."""
        regressed = p is not None and float(p) < alpha  # a Python bool, which JSON writes as true/false
        checks.append({"check": check, "test": test, "effect": float(effect), "limit": limit,
                       "p": None if p is None else float(p), "level": alpha, "regressed": regressed,
                       "skipped": skipped})
        return regressed

    mean_base, mean_current = sample_mean(base), sample_mean(current)
    drop = mean_base - mean_current
    if not threshold.higher_is_better:
        drop = -drop
    if threshold.max_mean_drop is not None:
        p = None
        if drop > threshold.max_mean_drop:
            p = mann_whitney(better_current, better_base, alternative="less")
        if record("mean drop", "one-sided Mann-Whitney", drop, threshold.max_mean_drop, p):
            reasons.append(
                f"{metric}: mean got worse by {drop:.4g} ({mean_base:.4g} -> {mean_current:.4g}; "
                f"allowed {threshold.max_mean_drop:.4g}), one-sided Mann-Whitney p={p:.3g} < {level}"
            )

    if threshold.max_std_increase is not None:
        limit, spread, test = threshold.max_std_increase, "std", "one-sided Brown-Forsythe"
        sides = (base, current)
        p, skipped = None, None
        recovered = current_failures / current.size < baseline_failures / base.size and drop <= 0
        growth = sample_std(current) - sample_std(base)  # of all runs
        if recovered:  # whether or not the spread of all runs grew: fewer failures can hide wider successes
            successes = (base.size - baseline_failures, current.size - current_failures)
            if min(successes) < 2:
                if growth > limit:
                    skipped = (f"a lower failure rate ({baseline_failures}/{base.size} -> {current_failures}/"
                               f"{current.size}) and no drop in the mean, with too few successful runs to compare "
                               f"their spread ({successes[0]} vs {successes[1]}): the spread grew as failed runs "
                               f"recovered")
            elif baseline_flags is not None and current_flags is not None:
                sides = (_succeeded(baseline_scores, baseline_flags), _succeeded(current_scores, current_flags))
                spread, test = "std of the successful runs", "one-sided Brown-Forsythe on the successful runs"
        std_base, std_current = sample_std(sides[0]), sample_std(sides[1])
        if skipped is None and std_current - std_base > limit:
            p = brown_forsythe(_oriented(sides[1], threshold.higher_is_better),
                               _oriented(sides[0], threshold.higher_is_better), alternative="greater")
        effect = growth if skipped else std_current - std_base
        if record("std increase", test, effect, limit, p, skipped):
            reasons.append(
                f"{metric}: {spread} grew by {std_current - std_base:.4g} ({std_base:.4g} -> "
                f"{std_current:.4g}; allowed {limit:.4g}), {test} p={p:.3g} < {level}"
            )

    if threshold.max_extra_failures is not None:
        # Beyond what the baseline's failure rate gives for as many runs: the sides may differ in size.
        extra = current_failures - baseline_failures * current.size / base.size
        p = None
        if extra > threshold.max_extra_failures:
            table = _fisher_table(current_failures, current.size, baseline_failures, base.size)
            p = stats.fisher_exact(table, alternative="greater").pvalue
        if record("extra failures", "one-sided Fisher exact", extra, threshold.max_extra_failures, p):
            beyond = "" if current.size == base.size else f" than the baseline's rate gives for {current.size} runs"
            reasons.append(
                f"{metric}: {extra:.3g} more failed runs{beyond} ({baseline_failures}/{base.size} -> "
                f"{current_failures}/{current.size}; allowed {threshold.max_extra_failures}), "
                f"one-sided Fisher exact p={p:.3g} < {level}"
            )
    return reasons


def _succeeded(scores: list[float], failed: list[bool]) -> np.ndarray:
    """The scores of the successful runs, ``failed`` holding each run's flag in the scores' order
    (``_count`` checked that there is one per score)."""
    return np.sort(np.asarray([score for score, flag in zip(scores, failed) if not flag], dtype=float))


def smallest_regression_p(n_baseline: int, n_current: int) -> float:
    """The smallest p-value ``regression``'s mean and failure tests can give at these sample
    sizes, whatever the scores.  At or above alpha, those tests can never fire: with 2 seeds
    a side, even every run collapsing from 0.98 to 0.50 is not significant at 5 %.
    """
    if n_baseline < 2 or n_current < 2:
        raise ValueError(f"needs at least 2 runs per side, got {n_baseline} and {n_current}")
    failures = stats.fisher_exact(_fisher_table(n_current, n_current, 0, n_baseline), alternative="greater").pvalue
    return float(min(smallest_split_p(n_current, n_baseline), failures))
