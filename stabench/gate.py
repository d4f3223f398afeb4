"""Regression gate: did a claim get worse than a baseline (another stack, tag or machine)?

A baseline is a set of stored runs: ``tag:NAME`` (runs tagged in a store), ``env:torch=2.11.0,...``
(runs made under those library versions / devices), or the path of a file written by
``stabench export`` (another machine or a CI artifact).  Runs are matched to a study by what
was trained (task, model, recipe name or content, training-set size), so a new library release
or an edited recipe of the same name is compared with its past self, seed for seed where possible.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy.cluster.hierarchy import DisjointSet

from . import stats
from .environment import ALL_KEY_FIELDS, key_fields
from .exchange import read_export
from .metrics import higher_is_better
from .recipes import HOOK_FINGERPRINT, plain_value, stored_fields, version_labels
from .report import GATE_COLUMNS, fmt, produced_by, seed_ranges, task_label
from .result import RunResult
from .store import SHORT_HASH, Store, check_tag, scored_differently

DEFAULT_LIMITS = {"max_mean_drop": 0.01, "max_std_increase": 0.01, "max_extra_failures": 0, "alpha": 0.05}


def study_key(result: RunResult) -> tuple:
    """What makes runs comparable across environments: same task, data size, model and recipe name."""
    return (result.task["name"], result.task.get("train_size"), result.model["name"], result.recipe_name)


def _in_study(run: RunResult, key: tuple, recipe_hashes: set[str]) -> bool:
    """Whether ``run`` belongs to the study ``key`` of runs with ``recipe_hashes``: same task,
    data size and model, and the recipe's name (stored or an alias) or its content."""
    return study_key(run)[:3] == key[:3] and (key[3] in run.recipe_names or run.recipe_hash in recipe_hashes)


def linked_recipe_names(runs: Iterable[RunResult]) -> dict[tuple, str]:
    """Recipe names that stand for one study: a name and its aliases, and names whose runs of
    one task, data size and model share recipe content.  Maps (task, size, model, name) to
    the study's label, its names joined by `` | ``."""
    linked = DisjointSet()

    def link(a: tuple, b: tuple) -> None:
        linked.add(a)
        linked.add(b)
        linked.merge(a, b)

    by_content: dict[tuple, tuple] = {}
    for run in runs:
        prefix = study_key(run)[:3]
        first = (*prefix, run.recipe_name)
        for name in run.recipe_names:
            link((*prefix, name), first)
        link(by_content.setdefault((*prefix, run.recipe_hash), first), first)
    return {node: " | ".join(sorted(member[3] for member in study)) for study in linked.subsets() for node in study}


def study_label(key: tuple) -> str:
    """A study key as the gate's rows name it: ``task / model / recipe`` (with the data size if set)."""
    return " / ".join(str(part) for part in key if part is not None)


def load_source(source: str, store: Store | None = None, claim: str | None = None,
                role: str = "baseline") -> list[RunResult]:
    """Runs named by a spec: ``tag:NAME``, ``env:field=value,...`` or an export file.

    With ``claim``, only runs that pytest's ``--stabench-tag`` tagged for that claim: a tag's
    own baseline for it, whatever its recipe is called now (other sources give none).
    ``role`` names the source in errors (baseline or current).  Read without traces: the gate
    weighs scores, and a months-old baseline's traces are gigabytes.
    """
    if claim is not None and not source.startswith("tag:"):
        return []
    if source.startswith("tag:"):
        try:
            check_tag(source[4:])  # "tag:" alone, or "tag:a b": no run could hold it
        except ValueError as error:
            raise ValueError(f"{role} {source!r}: {error}") from None
    if reads_store(source):
        if store is None:
            raise ValueError(f"{role} {source!r} reads the results store, but none is open")
        if source.startswith("tag:"):
            return store.query(tag=source[4:], claim=claim, traces=False)
        return store.query(env=parse_env(source[4:]), traces=False)
    path = Path(source)
    if not path.is_file():
        store_too = ", store (every stored run not in the baseline)" if role == "current" else ""
        tagged = store is not None and source in store.stored_values("tag")
        raise FileNotFoundError(f"{role} {source!r} is neither tag:NAME, env:FIELD=VALUE{store_too} nor an existing "
                                f"export file (stabench export)" + (f"; the store has a tag {source!r}: did you "
                                                                     f"mean tag:{source}?" if tagged else ""))
    with tempfile.TemporaryDirectory() as scratch, Store(Path(scratch) / "baseline.sqlite") as scratch_store:
        side = "current side" if role == "current" else role
        scratch_store.merge(read_export(path, refused=f"refused as the {side}"))
        return scratch_store.query(traces=False)


def reads_store(source: str) -> bool:
    """Whether a baseline/current spec names stored runs (tag:, env:) rather than an export file."""
    return source.startswith(("tag:", "env:"))


def stored_values_hint(source: str, store: Store | None) -> str:
    """For a ``tag:`` or ``env:`` source that holds no runs: the tags, or the values of those
    environment fields, that the store does hold, to spot a typo."""
    if store is None or not reads_store(source):
        return ""
    if source.startswith("tag:"):
        hints = store.unmatched_hints({"tag": source[4:]})
    else:
        hints = store.unmatched_hints({}, parse_env(source[4:]))
    return f" ({'; '.join(hints)})" if hints else ""


def parse_env(text: str) -> dict[str, str | None]:
    """``torch=2.13.0,cpu_threads=2`` -> fields; ``none`` stands for a field a run lacks (e.g.
    cpu_threads on a GPU), as the hints of a filter that matched nothing list it."""
    env: dict[str, str | None] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in ALL_KEY_FIELDS or not value.strip():  # "torch=" matched no run
            raise ValueError(f"environment filter {item!r} is invalid; expected FIELD=VALUE (VALUE none for a field "
                             f"a run lacks) with FIELD one of {', '.join(ALL_KEY_FIELDS)}")
        if name.strip() in env:  # a run has one value of each field: the last one would win unseen
            raise ValueError(f"environment filter {text!r} names {name.strip()} twice; expected each field once")
        env[name.strip()] = None if value.strip() == "none" else value.strip()
    return env


def parse_limits(texts: str | Sequence[str] | None) -> dict[str, float]:
    """``max_mean_drop=0.02,max_extra_failures=1`` -> limits over the defaults.  Of several texts
    (an ini file's, then each ``--stabench-gate``) a later one's limit wins."""
    given: dict[str, Any] = {}
    for text in [texts] if isinstance(texts, str) else texts or ():
        these: dict[str, str] = {}
        for item in filter(None, text.split(",")):
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"gate limit {item!r} is invalid; expected NAME=VALUE with NAME one of "
                                 f"{', '.join(DEFAULT_LIMITS)}")
            if name.strip() in these:
                raise ValueError(f"gate limits {text!r} name {name.strip()} twice; expected each limit once")
            these[name.strip()] = value.strip()
        given.update(these)
    return check_limits(given)


def check_limits(limits: Mapping[str, Any] | None) -> dict[str, float]:
    """Limits over the defaults, each checked: a misspelt name or an impossible value is an error,
    never a silently different gate.  Values may be numbers or their text; none switches a test off."""
    if limits is not None and not isinstance(limits, Mapping):
        raise ValueError(f"gate limits {limits!r} are invalid; expected a dict such as {{'alpha': 0.01}}")
    checked = dict(DEFAULT_LIMITS)
    for name, value in (limits or {}).items():
        if name not in DEFAULT_LIMITS:
            raise ValueError(f"gate limit {name!r} is unknown; expected one of {', '.join(DEFAULT_LIMITS)}")
        checked[name] = _limit_value(name, value)
    return checked


_LIMIT_RANGES = {"alpha": "a number in (0, 1)", "max_mean_drop": "a number >= 0 or none",
                 "max_std_increase": "a number >= 0 or none", "max_extra_failures": "an integer >= 0 or none"}


def _limit_value(name: str, value: Any) -> float | int | None:
    if value is None or isinstance(value, str) and value.strip().lower() == "none":
        if name == "alpha":
            raise ValueError(f"gate limit alpha={value} is invalid; expected {_LIMIT_RANGES[name]}")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    valid = (0 < number < 1 if name == "alpha" else number >= 0) and math.isfinite(number)
    if name == "max_extra_failures" and valid:
        valid = number.is_integer()
    if not valid or isinstance(value, bool):
        raise ValueError(f"gate limit {name}={value} is invalid; expected {_LIMIT_RANGES[name]}")
    return int(number) if name == "max_extra_failures" else number


@dataclass(frozen=True)
class GateResult:
    """One study against its baseline, for one metric."""

    claim: str
    study: tuple
    metric: str
    current: stats.Summary
    baseline: stats.Summary | None
    reasons: list[str] = field(default_factory=list)
    too_few_seeds: str | None = None  # why the mean and failure tests could never fire
    changed: str = "-"  # what differs between the baseline's runs and the current ones
    baseline_keys: tuple[str, ...] = ()  # the runs compared
    current_keys: tuple[str, ...] = ()
    checks: tuple[dict, ...] = ()  # each check's effect, limit and p-value (see stats.regression)
    baseline_note: str = ""  # which of several baseline variants was compared, when there were several
    produced_by: dict = field(default_factory=dict)  # each side's data, model and stacks (report.produced_by)

    @property
    def regressed(self) -> bool:
        return bool(self.reasons)

    @property
    def fails(self) -> bool:
        """The gate does not pass: a regression, or a comparison too small to show one."""
        return self.regressed or self.too_few_seeds is not None

    @property
    def why(self) -> str:
        return "; ".join(self.reasons + ([self.too_few_seeds] if self.too_few_seeds else []))

    @property
    def unconfirmed(self) -> str:
        """Effects past their limit that their test did not confirm, or that were not tested: why a
        near miss passed."""
        def why(c: dict) -> str:
            if c.get("skipped"):
                return f"not tested: {c['skipped']}"
            return f"{c['test']} p={c['p']:.3g} is not significant (needs p < {c['level']:.3g})"

        return "; ".join(f"{c['check']} {c['effect']:.3g} is past its limit {c['limit']:g}, but {why(c)}"
                         for c in self.checks if (c["p"] is not None or c.get("skipped")) and not c["regressed"])

    @property
    def verdict(self) -> str:
        if self.baseline is None:
            return "no baseline"
        return "REGRESSED" if self.regressed else "TOO FEW SEEDS" if self.too_few_seeds else "ok"

    def row(self) -> dict[str, str]:
        def describe(summary: stats.Summary | None) -> str:
            if summary is None:
                return "-"
            return f"{fmt(summary.mean)} ± {fmt(summary.std)}, failed {summary.failures}/{summary.n}"

        task, train_size, model, recipe = self.study
        return dict(zip(GATE_COLUMNS, (self.claim, task_label({"name": task, "train_size": train_size}), model, recipe,
                                       self.metric, describe(self.baseline), describe(self.current), self.changed,
                                       self.verdict), strict=True))

    def entry(self) -> dict[str, Any]:
        """The gate's JSON entry, as pytest's --stabench-json and stabench compare --json write it."""
        return {**self.row(), "fails": self.fails, "why": self.why, "unconfirmed": self.unconfirmed,
                "baseline_note": self.baseline_note, "detail": self.detail()}

    def detail(self) -> dict[str, Any]:
        """The numbers behind ``row()``, for a JSON report a CI step reads without parsing text."""
        return {"study": list(self.study), "fails": self.fails, "reasons": list(self.reasons),
                "too_few_seeds": self.too_few_seeds,
                "baseline": None if self.baseline is None else self.baseline.to_dict(),
                "current": self.current.to_dict(), "checks": list(self.checks),
                "baseline_keys": list(self.baseline_keys), "current_keys": list(self.current_keys),
                "produced_by": self.produced_by}


def check(claim: str, current: Sequence[RunResult], baseline_runs: Iterable[RunResult],
          limits: Mapping[str, Any] | None = None, same_study: bool = False) -> GateResult:
    """Compare one study with the baseline runs of the same study (same seeds where available).

    ``same_study``: the baseline runs are already this study's (tagged for this claim), so
    they are not matched by task, model and recipe.
    """
    limits = check_limits(limits)
    key = study_key(current[0])
    metric = current[0].primary_metric
    hashes = {r.recipe_hash for r in current}
    candidates = [r for r in baseline_runs if (same_study or _in_study(r, key, hashes)) and metric in r.metrics]
    # Where the baseline holds this very recipe content, only those runs: a study linked to other
    # contents (versions edited under its name, recipes it once shared runs with) is compared with
    # its own past.  Without them, an edited recipe is compared with its earlier versions.  Likewise
    # for the model: two local folders of one name (checkpoint-500 of two trainings) are one study.
    own = [r for r in candidates if r.recipe_hash in hashes]
    versions = sorted({r.recipe_hash[:SHORT_HASH] for r in candidates if r.recipe_hash not in hashes} if own else ())
    candidates = own or candidates
    models = {_KEY_PARTS["model"](r) for r in current}
    matching, held, chosen = pick_variant([r for r in candidates if _KEY_PARTS["model"](r) in models] or candidates,
                                          current)
    # Said, for "same runs" against a baseline that also holds the recipe's good versions reads as a pass.
    other_versions = versions and (f"the baseline also holds runs of {len(versions)} other version(s) of this recipe "
                                   f"(recipe hash {', '.join(versions)}), not compared: a study is compared with its "
                                   f"own content's runs where the baseline has them")
    # Seed for seed where the baseline allows: its runs of the current seeds.  Every current run
    # stays, so runs on seeds the baseline lacks can still show a regression.
    seeds = {r.seed for r in current}
    same_seeds = [r for r in matching if r.seed in seeds]
    baseline = _dedupe(same_seeds if len(same_seeds) >= 2 else matching)
    now = stats.summarize_runs(current, metric)
    produced = {"baseline": produced_by(baseline), "current": produced_by(current)}
    if not baseline:
        return GateResult(claim, key, metric, now, None, current_keys=tuple(r.key for r in current),
                          produced_by=produced)
    if len(baseline) < 2 or len(current) < 2:  # no test can say anything about fewer runs: fail, not pass
        note = held and (f"{held}; the one taken, {chosen}, holds {len(baseline)} run(s), so nothing was compared"
                         if len(baseline) < 2 else held)
        note = "; ".join(filter(None, (other_versions, note)))
        too_few = (f"{len(baseline)} vs {len(current)} seeds: no test can compare fewer than 2 runs a side; "
                   f"use more seeds on each side")
        return GateResult(claim, key, metric, now, stats.summarize_runs(baseline, metric), too_few_seeds=too_few,
                          changed=what_changed(baseline, current), baseline_keys=tuple(r.key for r in baseline),
                          current_keys=tuple(r.key for r in current), baseline_note=note, produced_by=produced)
    note = "; ".join(filter(None, (other_versions, held and f"{held}; compared with {chosen}")))
    threshold = stats.Threshold(metric=metric, higher_is_better=higher_is_better(metric),
                                max_mean_drop=limits["max_mean_drop"], max_std_increase=limits["max_std_increase"],
                                max_extra_failures=limits["max_extra_failures"], alpha=limits["alpha"])
    checks: list[dict] = []
    reasons = stats.regression([r.metrics[metric] for r in baseline], [r.metrics[metric] for r in current],
                               [r.failed for r in baseline], [r.failed for r in current], threshold, checks)
    smallest_p = stats.smallest_regression_p(len(baseline), len(current))
    too_few = None
    if smallest_p >= threshold.check_alpha:
        too_few = (f"{len(baseline)} vs {len(current)} seeds: no mean or failure test can reach p < "
                   f"{threshold.level_text()} (smallest possible p {smallest_p:.3g}); use more seeds on each side")
    changed = what_changed(baseline, current)
    if reasons and (changed.startswith(ONLY_SEEDS) or changed == SAME_KEYS):  # said, not excused
        note = "; ".join(filter(None, (note, ONLY_SEEDS_NOTE if changed.startswith(ONLY_SEEDS) else SAME_KEYS_NOTE)))
    return GateResult(claim, key, metric, now, stats.summarize_runs(baseline, metric), reasons, too_few,
                      changed, tuple(r.key for r in baseline), tuple(r.key for r in current), tuple(checks), note,
                      produced)


def gate_claim(claim: str, runs: Sequence[RunResult], recipe_name: str, source: str, store: Store,
               baseline: Callable[[], list[RunResult]], limits: Mapping[str, Any] | None = None) -> GateResult:
    """A pytest claim's gate.  Its baseline is the runs ``--stabench-tag`` tagged for this very
    claim in ``source``, however its recipe is named now (``--stabench-set`` renames it); else
    ``baseline()``'s runs of the same task, model and recipe (name, alias or content).  A stored
    run keeps the recipe name it was first trained under, so the claim's runs are gated under the
    name it uses now."""
    own = load_source(source, store, claim=claim)
    current = [dataclasses.replace(r, recipe_name=recipe_name) for r in runs]
    if not own:
        return check(claim, current, baseline(), limits)
    result = check(claim, current, own, limits, same_study=True)
    # Runs of this study under the tag that it did not give this claim (a colleague's import, a CLI
    # tag): stabench compare tag:NAME would weigh them, so the gate says it did not.
    others = unclaimed_runs(store, source.removeprefix("tag:"), current, recipe_name)  # own runs come from a tag only
    if not others:
        return result
    note = (f"the baseline also holds {len(others)} run(s) of this study that no claim holds, not compared: a claim "
            f"is compared with the runs --stabench-tag gave it, and tagging it again takes those off")
    return dataclasses.replace(result, baseline_note="; ".join(filter(None, (result.baseline_note, note))))


def unclaimed_runs(store: Store, tag: str, runs: Sequence[RunResult], recipe_name: str) -> set[str]:
    """Keys of the other runs of ``runs``' study under ``tag`` (same task, data size and model; the
    recipe by name, alias or content) that no claim holds there: an import's, a ``stabench tag``'s."""
    first = runs[0]
    study = store.query(tag=tag, task=first.task["name"], model=first.model["name"], recipe=recipe_name,
                        train_size=first.task.get("train_size") or "full", traces=False, skip_damaged=True)
    return store.unclaimed(tag) & {r.key for r in study} - {r.key for r in runs}


def tag_claim(store: Store, tag: str, claim: str, runs: Sequence[RunResult], recipe_name: str) -> tuple[int, bool]:
    """Tag a claim's runs for ``claim``, so a later gate finds them whatever the recipe is called
    then.  The study's other runs under the tag that no claim holds lose it, so that ``tag:NAME``
    is this baseline, as the pytest gate compares it.  Returns how many runs lost the tag and
    whether the claim's runs under it changed."""
    keys = [r.key for r in runs]
    strays = unclaimed_runs(store, tag, runs, recipe_name)
    changed = bool(strays) or bool({r.key for r in store.query(tag=tag, claim=claim, traces=False)} - set(keys))
    if strays:
        store.untag(strays, tag)
    store.tag(keys, tag, claim=claim)
    return len(strays), changed


SAME_RUNS = "same runs"
ONLY_SEEDS = "only the seeds"
ONLY_SEEDS_NOTE = ("only the seeds differ among what the gate compares: this regression is a false alarm of "
                   "seed-to-seed variation (at most alpha of gates raise one) or a change it cannot see, such as "
                   "uncommitted code or a library outside the run's key")
SAME_KEYS = "same keys, other scores"
SAME_KEYS_NOTE = ("the current runs have the baseline's keys (stack, inputs and seeds) and scored otherwise: a "
                  "GPU's nondeterministic kernels, so possibly a false alarm, or a change no key shows, such as "
                  "uncommitted code, a library outside the run's key, or a machine that was not recorded")
# Recorded with each run but not in its key, as (field, as the changed column says it, the device
# whose runs it describes or None for every run, the characters that tell its values apart): another
# CPU can end a chaotic CPU run differently; a GPU's driver, CUDA and cuDNN choose the kernels that
# compute it; and the runs of another commit (of the project, or of a stabench clone) may differ for
# reasons no key shows.
_UNKEYED_FIELDS = (("cpu_model", "cpu_model", "cpu", None),
                   *((name, name, "gpu", None) for name in ("cuda", "cudnn", "gpu_driver")),
                   ("stabench", "stabench", None, 12), ("stabench_git_commit", "stabench commit", None, 12),
                   ("project_git_commit", "project commit", None, 12))


def _device(run: RunResult) -> str:
    return "cpu" if run.environment.get("device_kind") == "cpu" else "gpu"


def what_changed(baseline: Sequence[RunResult], current: Sequence[RunResult]) -> str:
    """What differs between two sets of runs of one study, e.g. ``transformers 5.24.0 -> 5.23.0``,
    so a gate says which stacks it compared: ``same runs`` where it compared runs with themselves
    (or with runs retrained to the same scores), never where a CI runner retrained the baseline's
    keys on another CPU, or to other scores."""
    def values(runs: Sequence[RunResult], get) -> str:
        return "/".join(sorted({str(get(r)) for r in runs}))

    changes = []
    for name, get in _KEY_PARTS.items():
        before, after = values(baseline, get), values(current, get)
        if before != after:
            changes.append(f"{name} {before} -> {after}" if name in ALL_KEY_FIELDS
                           else _recipe_change(baseline, current) if name == "recipe content"
                           else _data_change(values(baseline, _data_sizes), values(current, _data_sizes))
                           if name == "data" else name)
    for name, said, device, width in _UNKEYED_FIELDS:  # where both sides recorded it: runs stored before say nothing
        recorded = [values([r for r in runs if r.environment.get(name) and device in (None, _device(r))],
                           lambda r: str(r.environment[name])[:width]) for runs in (baseline, current)]
        if all(recorded) and recorded[0] != recorded[1]:
            changes.append(f"{said} {recorded[0]} -> {recorded[1]}")
    if changes:
        return ", ".join(changes)
    if {r.key for r in baseline} == {r.key for r in current}:
        stored = {r.key: r for r in baseline}
        return SAME_KEYS if any(scored_differently(stored[r.key], r) for r in current) else SAME_RUNS
    seeds = [seed_ranges([r.seed for r in runs]) for runs in (baseline, current)]
    if seeds[0] != seeds[1]:  # often the baseline's own study, grown by a few seeds since
        return f"{ONLY_SEEDS} ({seeds[0]} -> {seeds[1]})"
    return "nothing recorded (same stack, inputs and seeds, other runs)"


def _data_sizes(run: RunResult) -> str:
    return f"{run.task.get('n_train')} train / {run.task.get('n_eval')} dev"


def _data_change(before: str, after: str) -> str:
    """``data (200 train / 100 dev -> 200 train / 80 dev)``: the data's sizes where they changed,
    else only that the examples did."""
    return f"data ({before} -> {after})" if before != after else "data (same sizes, other examples)"


def _recipe_change(baseline: Sequence[RunResult], current: Sequence[RunResult], shown: int = 3) -> str:
    """``recipe content (lr 0.0001 -> 0.001)`` when each side holds one version of the recipe."""
    versions = [{r.recipe_hash: r.recipe for r in runs} for runs in (baseline, current)]
    if any(len(v) != 1 for v in versions):
        return "recipe content"
    before, after = (stored_fields(next(iter(v.values()))) for v in versions)
    if not (isinstance(before, Mapping) and isinstance(after, Mapping)):  # a malformed imported record
        return "recipe content"
    if (HOOK_FINGERPRINT in before) != (HOOK_FINGERPRINT in after):  # one side stored before runs recorded it
        before, after = ({k: v for k, v in side.items() if k != HOOK_FINGERPRINT} for side in (before, after))
    fields = [f"{k} {plain_value(before.get(k))} -> {plain_value(after.get(k))}"
              for k in sorted(set(before) | set(after)) if k != "name" and before.get(k) != after.get(k)]
    if not fields:  # hashed apart by the hook's code or a corrected computation (see Recipe.hash), or no fields
        if not before:
            return "recipe content"
        hook = f"hook {before['hook']!r} edited, or " if before.get("hook") else ""
        return f"recipe content (same fields; {hook}computation corrected)"
    more = f", {len(fields) - shown} more" if len(fields) > shown else ""
    return f"recipe content ({', '.join(fields[:shown])}{more})"


def _stack_value(run: RunResult, name: str) -> str:
    """A key field of a run's stack as text; ``none`` for one it lacks, as ``env:`` filters write it."""
    value = key_fields(run.environment).get(name)
    return "none" if value is None else str(value)


# What a run's key holds besides its seed: the stack as far as it enters the key, then the inputs.
_KEY_PARTS = {
    **{name: (lambda r, name=name: _stack_value(r, name)) for name in ALL_KEY_FIELDS},
    "recipe content": lambda r: r.recipe_hash,
    "model": lambda r: (r.model.get("name"), r.model.get("revision"),
                        r.model.get("files_sha256") or r.model.get("weights_sha256")),  # the latter before 2026-12-04
    "data": lambda r: r.task.get("fingerprint"),
    "metrics": lambda r: (r.task.get("primary_metric"), r.task.get("metrics")),  # a user task's own (else none)
}


def variant(run: RunResult) -> tuple:
    """Everything in a run's key but the seed: runs of one variant differ only by seed."""
    return tuple(str(get(run)) for get in _KEY_PARTS.values())


def setting(run: RunResult) -> tuple:
    """Everything in a run's key but the seed and the recipe: runs that recipes can be compared on."""
    return tuple(str(get(run)) for name, get in _KEY_PARTS.items() if name != "recipe content")


# The key fields that say how a run was executed rather than what it ran: a baseline variant on the
# current runs' device, precision and threads isolates the change a gate is asked about.
MACHINE_FIELDS = ("device_kind", "device_name", "precision", "cpu_threads")


def _machine(run: RunResult) -> tuple:
    return tuple(_stack_value(run, name) for name in MACHINE_FIELDS)


def pick_variant(runs: Sequence[RunResult], current: Sequence[RunResult] = ()) -> tuple[list[RunResult], str, str]:
    """The runs of the variant with the most runs (the newest on a tie): a baseline stored under
    several stacks or recipe versions is compared as one of them, never as a per-seed mix.  The
    ``current`` runs' own variant is taken only when there is no other: a baseline exported after
    the gate stored the new stack's runs would otherwise compare them with themselves.  Variants
    on the current runs' machine (:data:`MACHINE_FIELDS`) come first: with the old stack's runs
    and the new stack's on 2 threads, a 1-thread upgrade is compared with the old stack.

    With several variants, also what they were and which was taken, for the gate to say so:
    ``("the baseline holds 2 variants of this study (torch 2.11.0: 8 run(s) / ...)",
    "torch 2.11.0, the one with the most runs")``; else two empty strings."""
    variants: dict[tuple, list[RunResult]] = {}
    for run in runs:
        variants.setdefault(variant(run), []).append(run)
    if len(variants) <= 1:
        return list(runs), "", ""
    own, machines = {variant(run) for run in current}, {_machine(run) for run in current}

    def preference(group: list[RunResult]) -> tuple:  # the machine counts only for a group a test can compare
        return variant(group[0]) not in own, _machine(group[0]) in machines and len(group) >= 2

    ranked = sorted(variants.values(), reverse=True,
                    key=lambda group: (*preference(group), len(group), max(r.finished_at for r in group)))
    labels = _told_apart(ranked)
    held = " / ".join(f"{label}: {len(group)} run(s)" for label, group in zip(labels, ranked))
    tied = len(ranked[0]) == len(ranked[1]) and preference(ranked[0]) == preference(ranked[1])
    tie = " (the newest of a tie)" if tied else ""
    others = [group for group in ranked if variant(group[0]) not in own]
    on_machine = (" on the current runs' device, precision and threads"
                  if preference(ranked[0])[1] and any(not preference(group)[1] for group in others) else "")
    besides = " besides the current runs' own" if variant(ranked[0][0]) not in own and own & variants.keys() else ""
    return (ranked[0], f"the baseline holds {len(ranked)} variants of this study ({held})",
            f"{labels[0]}, the one with the most runs{on_machine}{besides}{tie}")


def _told_apart(groups: Sequence[Sequence[RunResult]], always: Sequence[str] = ()) -> list[str]:
    """For one study under several variants, what tells each apart, e.g. ``recipe content 277c8ea3
    (lr=0.005)``: versions of a recipe name their own values of the fields that differ, so a row
    whose names include another version's (``bert-default[lr=0.001]`` renamed alike) still says
    what it ran.  The key parts named in ``always`` are shown even where they do not vary."""
    varying = [name for name, get in _KEY_PARTS.items()
               if name in always or len({str(get(g[0])) for g in groups}) > 1]
    versions = (version_labels([(g[0].recipe_hash[:SHORT_HASH], g[0].recipe) for g in groups])
                if "recipe content" in varying else [""] * len(groups))

    def shown(name: str, run: RunResult, version: str) -> str:
        value = _KEY_PARTS[name](run)
        if name == "recipe content":
            return version
        if name == "model":
            return str(value[1] or value[2] or value[0])[:12]
        if name == "metrics":
            return ",".join(value[1] or ["accuracy"])
        return str(value)[:12] if name == "data" else str(value)

    return [", ".join(f"{name} {shown(name, g[0], version)}" for name in varying)
            for g, version in zip(groups, versions)]


def _dedupe(runs: Iterable[RunResult]) -> list[RunResult]:
    """One run per seed (the latest), so a baseline stored twice does not count twice."""
    latest: dict[int, RunResult] = {}
    for run in sorted(runs, key=lambda r: r.finished_at):
        latest[run.seed] = run
    return [latest[seed] for seed in sorted(latest)]


def name_studies(runs: Iterable[RunResult], linked: Iterable[RunResult] | None = None) -> list[RunResult]:
    """Runs renamed after their study: its recipe names joined by `` | `` (see
    :func:`linked_recipe_names`), linked among ``linked`` (default: ``runs`` themselves)."""
    runs = list(runs)
    labels = linked_recipe_names(runs if linked is None else linked)
    return [dataclasses.replace(run, recipe_name=labels[study_key(run)]) for run in runs]


def _data_of(run: RunResult) -> tuple:
    """Which data a run asked for (task, subsample size and seed); its fingerprint says which
    version of that data it got."""
    return run.task["name"], run.task.get("train_size"), run.task.get("subsample_seed")


def group_studies(runs: Iterable[RunResult]) -> list[tuple[str, list[RunResult]]]:
    """Runs as studies, each ``(label, one run per seed)``: one study per task, data size, model
    and recipe name, and one row per variant of a study stored under several (library versions,
    devices, thread counts, recipe versions under one name), labelled with what tells them apart
    (``rte / bert-large-uncased / bert-default [torch 2.11.0]``); every study of a task stored on
    several versions of its data says which it holds.  Name the runs' studies first
    with :func:`name_studies`, so runs stored under two names of one recipe are one study."""
    studies: dict[tuple, dict[tuple, list[RunResult]]] = {}
    data_versions: dict[str, set[str]] = {}
    for run in runs:
        studies.setdefault(study_key(run), {}).setdefault(variant(run), []).append(run)
        data_versions.setdefault(_data_of(run), set()).add(str(_KEY_PARTS["data"](run)))
    grouped = []
    for key, variants in sorted(studies.items(), key=lambda item: str(item[0])):
        name = study_label(key)
        groups = [variants[v] for v in sorted(variants)]
        # A task whose data changed between runs: every row of it says which data it holds, not only
        # the rows of studies that hold both versions.
        always = ("data",) if len(data_versions[_data_of(groups[0][0])]) > 1 else ()
        labels = _told_apart(groups, always) if len(groups) > 1 or always else [""]
        grouped += [(f"{name} [{label}]" if label else name, _dedupe(group)) for group, label in zip(groups, labels)]
    return grouped


class AmbiguousRecipe(ValueError):
    """One recipe name for two studies of one setting (two versions of a recipe under one name):
    which is meant, its recipe hash says."""


def compare_studies(studies: Sequence[tuple[str, Sequence[RunResult]]], metric: str | None = None,
                    against: str | None = None, names: Mapping[str, Iterable[str]] | None = None) -> list[dict]:
    """Every ordered pair of :func:`group_studies`' studies made on one task, data size, model,
    data and library stack (a recipe against itself on another stack is the gate's job), or each
    study both ways against the one of recipe ``against``; as report entries (``setting`` and
    :meth:`stats.Comparison.to_dict`), each group's level split over its ordered pairs.

    ``against`` is any name a study's runs were stored or asked for under: ``names`` maps a run's
    key to those names, for studies whose runs :func:`name_studies` renamed (default: the runs'
    own ``recipe_names``).  Studies with one seed are left out, since no test can use them.
    """

    def named(runs: Sequence[RunResult]) -> set[str]:
        return {name for run in runs for name in (names[run.key] if names is not None else run.recipe_names)}

    groups: dict[tuple, list[tuple[str, Sequence[RunResult]]]] = {}
    for name, runs in studies:
        if len(runs) >= 2:  # a test needs two scores a side
            groups.setdefault((study_key(runs[0])[:3], setting(runs[0])), []).append((name, runs))
    entries, found = [], False
    for (trained_on, _), members in groups.items():
        prefix = f"{study_label(trained_on)} / "
        if against is None:
            pairs = list(itertools.permutations(members, 2))
        else:
            bases = [member for member in members if against in named(member[1])]
            if len(bases) > 1:  # one name for two recipe versions (or for another study's content too)
                raise AmbiguousRecipe(f"recipe {against!r} names {len(bases)} studies of {study_label(trained_on)} "
                                      f"({'; '.join(name for name, _ in bases)}); pick one by its recipe hash")
            found = found or bool(bases)
            pairs = [pair for base in bases for other in members if other is not base
                     for pair in ((other, base), (base, other))]
        for (name_a, runs_a), (name_b, runs_b) in pairs:
            comparison = stats.compare_runs(runs_a, runs_b, metric, n_comparisons=len(pairs),
                                            names=(name_a.removeprefix(prefix), name_b.removeprefix(prefix)))
            entries.append({"setting": study_label(trained_on), **comparison.to_dict()})
    if against is not None and not found:
        raise ValueError(f"no study with 2 or more seeds is of recipe {against!r}; their recipes: "
                         f"{', '.join(sorted({n for _, runs in studies for n in named(runs)}))}")
    return entries


def compare_sources(baseline: Sequence[RunResult], current: Sequence[RunResult],
                    limits: Mapping[str, Any] | None = None, current_is_store: bool = False) -> list[GateResult]:
    """Every study present in ``current`` (see :func:`group_studies`) against the same study in
    ``baseline``.  A named current source is all its runs; the whole store is its runs outside the
    baseline, or all of them when there are none.  Runs that are the baseline's own (an unchanged
    stack reproduces its keys) are compared with themselves: ``same runs``, as in the pytest gate.
    Where the current side holds the whole baseline (the store holds nothing else), each of its
    variants is compared with those stored before it, the first with itself: never an old stack
    judged against a newer one.  Its own recipe content is in the baseline, so a recipe version
    is compared only with its own content's runs, as :func:`check` does."""
    linked = [*baseline, *current]
    baseline_keys = {r.key for r in baseline}
    fresh = [r for r in current if r.key not in baseline_keys] if current_is_store else current
    news = name_studies(fresh or current, linked)
    baseline = name_studies(baseline, linked)
    if not baseline_keys <= {r.key for r in news}:
        return [check(name, runs, baseline, limits) for name, runs in group_studies(news)]
    # The current side holds the whole baseline: each variant against those that began before it.
    variant_of = {r.key: variant(r) for r in baseline}
    began: dict[tuple, str] = {}  # each variant's first run, as it finished
    for run in baseline:
        began[variant_of[run.key]] = min(began.get(variant_of[run.key], run.finished_at), run.finished_at)

    def baseline_of(runs: list[RunResult]) -> list[RunResult]:
        start = began.get(variant(runs[0]))
        if start is None:  # runs new to the baseline: compared with it all
            return baseline
        key, hashes = study_key(runs[0]), {run.recipe_hash for run in runs}
        earlier = [r for r in baseline if began[variant_of[r.key]] < start and r.recipe_hash in hashes
                   and _in_study(r, key, hashes)]
        return earlier or [r for r in baseline if r.key in {run.key for run in runs}]

    return [check(name, runs, baseline_of(runs), limits) for name, runs in group_studies(news)]


def unmatched_baseline_studies(baseline: Sequence[RunResult], current: Sequence[RunResult],
                               results: Sequence[GateResult]) -> list[str]:
    """The baseline's studies that no current study matched, for a gate to name when some current
    study found no baseline: often one recipe renamed and edited since."""
    matched = {r.study for r in results if r.baseline_keys}
    return sorted(study_label(study) for study in _studies(baseline, current) - matched)


def uncompared_studies(baseline: Sequence[RunResult], compared: set[str], trained_on: set[tuple]) -> list[str]:
    """The baseline's studies of a task, data size and model in ``trained_on`` none of whose runs
    (keys) were ``compared``, as study labels."""
    labels = linked_recipe_names(baseline)
    keys: dict[tuple, set[str]] = {}
    for run in baseline:
        if study_key(run)[:3] in trained_on:
            keys.setdefault((*study_key(run)[:3], labels[study_key(run)]), set()).add(run.key)
    return sorted(study_label(study) for study, held in keys.items() if not held & compared)


def baseline_studies(baseline: Sequence[RunResult]) -> list[str]:
    """What a baseline holds, as study labels, for a gate that matched none of it to say so."""
    return sorted(study_label(study) for study in _studies(baseline))


def _studies(baseline: Sequence[RunResult], current: Sequence[RunResult] = ()) -> set[tuple]:
    labels = linked_recipe_names([*baseline, *current])
    return {(*study_key(run)[:3], labels[study_key(run)]) for run in baseline}
