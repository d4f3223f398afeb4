"""What one fine-tuning run produced, in a JSON-safe form the store keeps verbatim."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any


# A run's train loss is the median of its last steps' minibatch losses: late in training most
# batches sit near 1e-3 with spikes near 1, so a mean would follow the spikes.  A fixed window,
# not trace_every, so that a logging setting cannot change a stored number.
FINAL_LOSS_STEPS = 10


# The fields of a dev evaluation in ``trace["eval"]`` that are not metrics.  The batch size is
# provenance: evaluation pads each batch, and it halves on out-of-memory.
EVALUATION_FIELDS = ("step", "prediction_counts", "batch_size")


def final_train_loss(losses: list[float]) -> float:
    """The median of the last ``FINAL_LOSS_STEPS`` step losses; NaN if one of them is not finite
    (a diverged run has no train loss) or there are none."""
    tail = losses[-FINAL_LOSS_STEPS:]
    if not tail or not all(math.isfinite(x) for x in tail):
        return math.nan
    return statistics.median(tail)


def train_loss_steps(last_step: int) -> list[int]:
    """The first and last step that :func:`final_train_loss` summarises for a run scored at ``last_step``."""
    return [max(1, last_step - FINAL_LOSS_STEPS + 1), last_step]


MAX_SEED = 2**32 - 1  # a run seeds numpy too, which takes no larger seed


def check_seed(seed: Any, where: str = "seed=") -> None:
    """A seed is an integer from 0 to MAX_SEED; ``where`` starts the error (``seeds '0-9': seed ``)."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{where}{seed!r} is invalid; expected an integer from 0 to {MAX_SEED} (2**32 - 1)")


def runs_of(results: Any, owner: str = "", one_study: bool = False) -> list[RunResult]:
    """The runs of one RunResult, a Study (anything with ``.results``), a StudySet (arm names to
    Studies) or an iterable of RunResults and Studies, as a list.  Anything else (scores, a
    trace) is a TypeError saying what came; ``owner`` starts it (``gradient_summary: ``).
    ``one_study``: a StudySet or several Studies are refused, not pooled (one study's statistics)."""
    if isinstance(results, RunResult):
        return [results]
    if isinstance(results, Mapping) and results and all(hasattr(v, "results") for v in results.values()):
        if one_study:
            raise TypeError(f"{owner}takes one study's runs, got the arms {', '.join(map(repr, results))} of a "
                            f"claim; pick one, e.g. study[{next(iter(results))!r}]")
        results = list(results.values())  # a StudySet: every arm's runs
    items = getattr(results, "results", results)
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        items = [items]
    runs, studies = [], 0
    for item in items:
        if isinstance(item, RunResult) or hasattr(item, "metrics"):  # a run, or a stand-in with its numbers
            runs.append(item)
        elif hasattr(item, "results"):
            runs.extend(item.results)
            studies += 1
        else:
            name = type(item).__name__
            scores = "; scores (numbers) go to stabench.stats' functions" if isinstance(item, (int, float)) else ""
            raise TypeError(f"{owner}expected runs (a RunResult, a Study, a list of those, or a StudySet), got "
                            f"{'an' if name[0] in 'aeiou' else 'a'} {name} {_shown(item)}{scores}")
    if one_study and studies > 1:
        raise TypeError(f"{owner}takes one study's runs, got {studies} Studies; pass one (study.compare(other) "
                        f"compares two)")
    return runs


def check_traced(run: RunResult, owner: str = "") -> None:
    """A run read without its trace (``Store.query(traces=False)``) has nothing to draw or analyse."""
    if not run.trace:
        raise ValueError(f"{owner}run {run.key} (seed {run.seed}) holds no trace: it was read without one "
                         f"(Store.query(..., traces=False)); read it with traces=True")


def _shown(value: Any) -> str:
    text = repr(value)
    return f"({text if len(text) <= 40 else text[:37] + '...'})"


def check_metric(runs: list[RunResult], metric: str, owner: str = "") -> None:
    """Every run has ``metric``, or one line naming it and the metrics they all have; ``owner``
    starts the error (``study of bc: ``)."""
    missing = [r.seed for r in runs if metric not in r.metrics]
    if missing:
        common = set.intersection(*(set(r.metrics) for r in runs))
        which = f"all {len(runs)} seeds" if len(missing) == len(runs) else \
            f"seeds {missing[:5]}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{owner}metric {metric!r} is not among the runs' metrics ({which} lack it); "
                         f"they have {', '.join(sorted(common)) or 'none in common'}")


def stack_mix(runs: list[RunResult]) -> list[str]:
    """The key fields of the stack (library versions, device, a CPU's thread count) in which runs
    meant to be one study differ: a run's numbers depend on them, and a seed on two stacks is two runs."""
    from .environment import key_fields

    stacks = [key_fields(r.environment or {}) for r in runs]
    return sorted({name for stack in stacks for name, value in stack.items() if value != stacks[0].get(name)})


def data_mix(runs: list[RunResult]) -> str | None:
    """What tells apart the data of runs meant to share one data set (a study, a plot's box), or
    None: their tasks, or their training sets (the fingerprints of the exact examples)."""
    tasks = sorted({str((r.task or {}).get("name")) for r in runs})
    if len(tasks) > 1:
        return f"{len(tasks)} tasks ({', '.join(tasks)})"
    data = sorted({str((r.task or {}).get("fingerprint")) for r in runs})
    if len(data) == 1:
        return None
    sizes = sorted({(r.task or {}).get("train_size") or 0 for r in runs})  # 0: the full set
    shown = " and ".join(f"{n} examples" if n else "the full set" for n in sizes)
    why = (f"training sets of {shown} (select one with train_size=)" if len(sizes) > 1
           else "e.g. subsamples drawn with another subsample_seed or edited data files")
    return f"{len(data)} different data sets (fingerprints {', '.join(d[:8] for d in data)}): {why}"


def fails(accuracy: float, majority_accuracy: float, diverged: bool) -> bool:
    """The paper's failed run: dev accuracy at or below the majority class's, or a diverged one."""
    return diverged or accuracy <= majority_accuracy


@dataclass
class RunResult:
    """One (task, model, recipe, seed) run: its identity, its verdicts and its traces.

    ``failed`` follows the paper: dev accuracy at the evaluated checkpoint <= the
    majority-class accuracy of the evaluation split.  ``collapsed`` means every
    prediction fell in one class; ``diverged`` means the loss became NaN/inf (and the
    run also counts as failed).

    ``trace`` holds two time axes.  ``loss`` has one value per step (step i at index i-1).
    ``step`` lists the trace points (step 1, every ``trace_every`` steps, the last step) and
    ``lr``, ``grad_norm[layer]`` (before clipping) and ``grad_norm_total`` have one value per
    trace point; so ``plot(trace["step"], trace["grad_norm"]["layer.0"])``, not against
    ``loss``.  ``eval`` lists the dev evaluations: ``{"step", metrics..., "prediction_counts",
    "batch_size"}``.
    ``metrics["train_loss"]`` is :func:`final_train_loss` over the steps in
    ``trace["train_loss_steps"]`` (first, last).
    """

    key: str
    task: dict[str, Any]  # name, source, eval_split, fingerprint, n_train, n_eval, train_size, columns, labels
    model: dict[str, Any]  # name (id or path), hub commit or weights hash, attention, parameter count
    recipe: dict[str, Any]  # the recipe's full field dict
    recipe_name: str
    recipe_hash: str
    seed: int
    environment: dict[str, Any]
    metrics: dict[str, float]
    primary_metric: str
    majority_accuracy: float
    failed: bool
    collapsed: bool
    diverged: bool
    steps: int
    wall_time_s: float
    steps_per_s: float  # training steps per second: compilation counted, dev evaluations during training not
    started_at: str
    finished_at: str
    trace: dict[str, Any] = field(default_factory=dict)
    prediction_counts: dict[str, int] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    # Other names of this recipe content that asked for the run after it was stored under
    # ``recipe_name`` (a parametrized or --stabench-set recipe equal to a preset), so that a
    # filter or a gate finds the run under the name each user gave it.
    recipe_aliases: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """One line, not the traces: a notebook cell or a pytest assertion shows what the run is."""
        score = self.metrics.get(self.primary_metric)
        verdict = "diverged" if self.diverged else "failed" if self.failed else "ok"
        return (f"RunResult({(self.task or {}).get('name')} / {(self.model or {}).get('name')} / {self.recipe_name}, "
                f"seed {self.seed}: {self.primary_metric} {'-' if score is None else f'{score:.4g}'}, {verdict}"
                f"{', collapsed' if self.collapsed else ''}; key {self.key})")

    @property
    def recipe_names(self) -> list[str]:
        """Every name this run's recipe was asked for under: the stored one first."""
        return [self.recipe_name, *(name for name in self.recipe_aliases if name != self.recipe_name)]

    @property
    def score(self) -> float:
        """The task's headline metric (accuracy, F1 or MCC)."""
        return self.metrics[self.primary_metric]

    def to_dict(self) -> dict[str, Any]:
        return _without_empty_aliases(dataclasses.asdict(self))

    def to_json(self) -> str:
        # _json_safe copies every container, so the fields need no deep copy first (asdict's was
        # two thirds of the time, which an import or export of thousands of runs pays)
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return json.dumps(_json_safe(_without_empty_aliases(fields)), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        cls._check_fields(data)  # first: a newer stabench's record may hold what this one cannot restore
        return cls._from_fields(_json_restore(data))

    @classmethod
    def as_written(cls, data: dict[str, Any]) -> RunResult:
        """A valid record's run exactly as it was written, before reading migrates an old one (its
        model's name, its train loss): what an export's flat columns showed beside it."""
        return cls(**_json_restore(data))

    @classmethod
    def from_json(cls, text: str | bytes) -> RunResult:
        # the hook restores NaN/inf as the parser meets them: walking the parsed traces in Python
        # instead was two thirds of reading a stored run
        try:
            data = json.loads(text, object_hook=_restore_special)
        except (KeyError, TypeError):  # a marker this version does not know: a newer record's, or a damaged one
            return cls.from_dict(json.loads(text))
        cls._check_fields(data)
        return cls._from_fields(data)

    @classmethod
    def _check_fields(cls, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):  # damaged, not newer: every stabench writes an object
            raise TypeError(f"a run record is a JSON object, not {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise NewerRecord(f"unknown run result fields {sorted(unknown)}; expected {sorted(names)}")
        if missing := sorted(f.name for f in dataclasses.fields(cls) if f.name not in data
                             and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            raise ValueError(f"it lacks the run result field(s) {', '.join(missing)}")

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> RunResult:
        """A run from its record's fields, NaN and inf restored; a record from before a change of
        what is stored reads as it would be stored now."""
        result = cls(**data)
        for name in ("task", "model", "recipe", "environment", "metrics", "trace"):  # read as objects everywhere
            if not isinstance(getattr(result, name), dict):
                raise ValueError(f"its {name} is {json.dumps(getattr(result, name), default=str)[:40]}, not an object")
        if not isinstance(result.primary_metric, str):
            raise ValueError(f"its primary_metric {result.primary_metric!r} is not a metric's name")
        score = result.metrics.get(result.primary_metric)
        if isinstance(score, bool) or not isinstance(score, (int, float)):  # every summary reads it: damaged
            raise ValueError(f"its headline metric {result.primary_metric!r} is {score!r}, not a number")
        if isinstance(result.trace.get("grad_norm"), dict):  # stored JSON sorts its keys by name
            result.trace["grad_norm"] = dict(sorted(result.trace["grad_norm"].items(), key=lambda g: layer_order(g[0])))
        return _with_current_train_loss(_with_current_model_name(result))


def _without_empty_aliases(fields: dict[str, Any]) -> dict[str, Any]:
    """A record's fields, without recipe_aliases when there are none: stabench versions from
    before aliases can then import it."""
    if not fields["recipe_aliases"]:
        del fields["recipe_aliases"]
    return fields


class NewerRecord(ValueError):
    """A record with fields this version does not know: written by a newer stabench, not damaged."""


def layer_order(group: str) -> tuple[int, int]:
    """Sort key for layer groups from the bottom of the network to the top."""
    if group.startswith("layer."):
        return 1, int(group.split(".")[1])
    return {"embeddings": (0, 0), "pooler": (2, 0), "classifier": (3, 0)}.get(group, (4, 0))


def content_hash(payload: Any, length: int = 16) -> str:
    """A stable hash of JSON-able content: same content, same hash, on any machine."""
    text = json.dumps(_json_safe(payload), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_key(task: dict[str, Any], model: dict[str, Any], recipe_hash: str, seed: int,
            environment_key: dict[str, Any]) -> str:
    """Identity of a run: what was trained, on what data, how, and on which stack.

    The same run under a new transformers release gets a new key, so the old result stays
    in the store for comparison instead of being overwritten.
    """
    return content_hash({"task": task, "model": model, "recipe": recipe_hash, "seed": seed,
                         "environment": environment_key})


def keyed_fields(task: dict[str, Any], model: dict[str, Any], environment_key: dict[str, Any]) -> dict[str, list]:
    """Which fields of a run's record its key was made from, recorded with the run (as
    ``environment["keyed_fields"]``) so that :func:`key_of_record` can check the key later."""
    return {"task": sorted(task), "model": sorted(model), "environment": sorted(environment_key)}


def key_of_record(run: RunResult) -> str | None:
    """The key ``run``'s own contents make, from the fields its record says were keyed; None
    for a record made before stabench recorded them (its key cannot be recomputed).  A record
    edited after it was stored (its seed, task, model, recipe hash or stack) gives another key."""
    keyed = (run.environment or {}).get("keyed_fields")
    if keyed is None:
        return None
    try:
        return run_key({name: run.task[name] for name in keyed["task"]},
                       {name: run.model[name] for name in keyed["model"]}, run.recipe_hash, run.seed,
                       {name: run.environment.get(name) for name in keyed["environment"]})
    except (KeyError, TypeError):  # a keyed field taken out of the record
        return ""


def _with_current_model_name(result: RunResult) -> RunResult:
    """Runs of a local folder stored before 2026-12-04 (keyed by its weights alone) hold the path
    as typed (``./models/mybert``); read back under the folder's own name, as runs are stored now,
    a gate and a Study match them with the folder's newer runs."""
    model = result.model or {}
    if "weights_sha256" in model and isinstance(model.get("name"), str):
        model["name"] = folder_name(model["name"])
    return result


def folder_name(path: str) -> str:
    """A local model folder's own name, from a path as typed (``./models/mybert`` -> ``mybert``)."""
    return os.path.basename(os.path.normpath(path)) or path


def _with_current_train_loss(result: RunResult) -> RunResult:
    """Runs stored before 2026-11-27 hold the mean of their last ``trace_every`` losses.  One
    scored at its last step gets its train loss recomputed from its per-step losses, so that
    old and new runs compare; a "best"-checkpoint run keeps the stored value."""
    trace, metrics = result.trace or {}, result.metrics or {}
    last = (result.recipe or {}).get("checkpoint", "last") == "last"
    if "train_loss_steps" in trace or "train_loss" not in metrics or not trace.get("loss") or not last:
        return result
    losses = trace["loss"]
    metrics["train_loss"] = final_train_loss(losses)
    trace["train_loss_steps"] = train_loss_steps(len(losses))
    return result


# JSON has no NaN/inf; a diverged run's loss is exactly that, so encode them explicitly.
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _restore_special(obj: dict[str, Any]) -> Any:
    """``json.loads``'s object hook: a NaN/inf marker of ``_json_safe`` back as the float."""
    return _SPECIAL[obj["__float__"]] if obj.keys() == {"__float__"} else obj


def _json_restore(value: Any) -> Any:
    """A parsed record with its NaN/inf markers restored; the numbers of a trace are not
    visited one call each (a run holds thousands)."""
    if isinstance(value, dict):
        return _restore_special({k: _json_restore(v) if isinstance(v, (dict, list)) else v for k, v in value.items()})
    if isinstance(value, list):
        return [_json_restore(v) if isinstance(v, (dict, list)) else v for v in value]
    return value
