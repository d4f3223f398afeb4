"""Claims: a task, model and recipe (one or several arms) over seeds, and the study they produce.

This module is the science side of the pytest plugin; all but ``claim`` (which makes the
pytest marker) works without pytest: ``Session.run_seed`` trains (or reuses) one seed,
``Session.collect`` builds a ``Study`` from the stored seeds and trains the missing ones.
A seed that crashed or raised in this session is remembered in an attempt file, so a
verdict fails with that reason instead of passing on fewer seeds.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import inspect
import json
import os
import reprlib
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field, fields
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import stats
from .environment import key_fields, torch_threads
from .exchange import replaced_atomically
from .gate import check_limits
from .metrics import higher_is_better
from .models import check_model_name, stored_name
from .profiles import check_requirements
from .recipes import Recipe, get_recipe, unknown_field
from .report import fmt, progress_display, seed_ranges, task_label
from .result import RunResult, check_metric, check_seed, data_mix, runs_of, stack_mix
from .store import SHORT_HASH, Store, StoreError, UnreadableRun, beside_store, in_made_folder, remove_if_empty
from .tasks import Task, check_subsample_seed, check_train_size, get_task, reload_task_data, registered_name
from .warn import warn

if TYPE_CHECKING:
    import pytest


def claim(task: str | Task | None = None, model: str | None = None, recipe: str | Recipe | None = None,
          seeds: int | Sequence[int] = 5, arms: Mapping[str, Mapping[str, Any]] | None = None,
          train_size: int | None = None, toy: Mapping[str, Any] | None = None,
          requires: Sequence[str] = (), gate: Mapping[str, float] | None = None,
          reference: Mapping[str, Any] | None = None, **unknown: Any) -> pytest.MarkDecorator:
    """Mark a test as a stability claim; its ``study`` argument receives the results.

    ``task`` is a task name or a Task such as ``stabench.local_task(...)`` (registered under
    its name).  ``task``, ``model`` and ``recipe`` may also come from ``pytest.mark.parametrize``
    arguments of the same names.  ``arms`` names several configurations compared in one
    body (``study["default"]``); each arm overrides the claim's task/model/recipe.
    ``toy`` overrides apply under ``--stabench-profile=toy``; ``requires`` lists what a
    claim needs beyond the model and data ("cuda", "wikitext-2"), so a claim skips with the reason
    instead of failing after its seeds trained.  ``gate`` sets this claim's regression
    limits (see ``stabench.gate``); ``reference`` holds published numbers shown beside the
    measured ones, as ``{task: {arm: text}}`` plus an optional ``"source"``.  A misspelt keyword
    (``taks=``) is a claim error naming it, not Python's TypeError from inside the decorator.
    """
    import pytest

    try:
        _check_keywords(unknown, recipe)
        seeds = seed_spec(seeds, "claim ")
        _check_claim_options(task, model, recipe, arms, train_size, gate, toy)
        check_requirements(requires)
    except (ValueError, OSError) as error:  # OSError: a recipe file that is not there
        caller = sys._getframe(1)
        where = f"{os.path.basename(caller.f_code.co_filename)}:{caller.f_lineno}: "
        raise _claim_error()(where + str(error)) from None
    return pytest.mark.stabench(task=task, model=model, recipe=recipe, seeds=seeds, arms=dict(arms or {}),
                                train_size=train_size, toy=dict(toy or {}), requires=tuple(requires),
                                gate=dict(gate or {}), reference=dict(reference or {}))


def _check_keywords(unknown: Mapping[str, Any], recipe: Any) -> None:
    """Keywords ``claim`` lacks, each named with the option or recipe field likeliest meant."""
    if not unknown:
        return
    accepted = [name for name in inspect.signature(claim).parameters if name != "unknown"]
    recipe_fields = [f.name for f in fields(Recipe)]
    preset = recipe if isinstance(recipe, str) else "bert-default"
    said = []
    for name in sorted(unknown):
        if close := difflib.get_close_matches(name, accepted, n=1):
            said.append(f"{name!r} (did you mean {close[0]!r}?)")
        elif field := name if name in recipe_fields else next(iter(difflib.get_close_matches(name, recipe_fields,
                                                                                            n=1)), None):
            said.append(f"{name!r} (a recipe field{'' if field == name else f' like {field!r}'} goes into the "
                        f"recipe: stabench.get_recipe({preset!r}, {field}=...))")
        else:
            said.append(repr(name))
    raise ValueError(f"claim has no option {', '.join(said)}; expected {', '.join(accepted)}")


@functools.cache
def _claim_error() -> type[ValueError]:
    """The error of a misspelt name or impossible value in a claim: a ValueError, and to pytest a
    collection error of one line (where and what), not the claim file's import traceback."""
    import pytest

    return type("ClaimError", (ValueError, pytest.Collector.CollectError), {"__module__": __name__})


def _check_claim_options(task, model, recipe, arms, train_size, gate, toy=None) -> None:
    """A misspelt name or impossible value in a claim fails when pytest imports the file, naming it.

    Values that come from ``pytest.mark.parametrize`` are checked when the items are built.
    """
    check_arms(arms)
    check_toy(toy, "claim toy")
    for options in ({"task": task, "model": model, "recipe": recipe, "train_size": train_size},
                    *(arms or {}).values()):
        if options.get("task") is not None:  # a Task is registered, so later claims may name it
            registered_name(options["task"])
        if options.get("model") is not None:
            check_model_name(options["model"])
        if options.get("recipe") is not None:
            get_recipe(options["recipe"])
        check_train_size(options.get("train_size"), owner="claim ")
    check_limits(gate)


ARM_FIELDS = ("task", "model", "recipe", "train_size", "toy")
TOY_FIELDS = ("model", "seeds", "train_size", "task_map", "recipe_overrides")  # what the toy profile replaces
ARM_TOY_FIELDS = ("recipe_overrides",)


def check_toy(toy: Any, owner: str, accepted: Sequence[str] = TOY_FIELDS) -> None:
    """A claim's (or an arm's) ``toy`` options, checked when the file is imported: a misspelt key or
    a bad value would otherwise show only under --stabench-profile=toy, or never."""
    if toy is None:
        return
    if not isinstance(toy, Mapping):
        raise ValueError(f"{owner}={toy!r} is invalid; expected a dict of {', '.join(accepted)}")
    if unknown := sorted(set(toy) - set(accepted)):
        raise ValueError(f"{owner} has unknown field(s) {', '.join(map(repr, unknown))}; expected "
                         f"{', '.join(accepted)}")
    task_map, overrides = toy.get("task_map", {}), toy.get("recipe_overrides", {})
    for name, value, kind in (("task_map", task_map, "task names to built-in tasks, e.g. {'rte': 'same-number'}"),
                              ("recipe_overrides", overrides, "recipe fields, e.g. {'max_steps': 40}")):
        if not isinstance(value, Mapping):
            raise ValueError(f"{owner} {name}={value!r} is invalid; expected a dict of {kind}")
    try:
        if "seeds" in toy:
            seed_spec(toy["seeds"], "")
        if "model" in toy:
            check_model_name(toy["model"])
        if "train_size" in toy:
            check_train_size(toy["train_size"])
        for stand_in in task_map.values():
            get_task(stand_in)
        # Names only: a value is checked with the recipe it overrides, when the toy profile builds the arm.
        if unknown := sorted(set(overrides) - {f.name for f in fields(Recipe)}):
            raise ValueError(unknown_field(unknown[0]))
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None


def seed_spec(seeds: Any, owner: str) -> int | list[int]:
    """A claim's or a study's ``seeds=``, checked and read once (a generator too): a count >= 1,
    distinct seeds >= 0, or text as on the command line ("5", "0-4", "1,3,7")."""
    if isinstance(seeds, str):
        return seed_spec(seeds_from_text(seeds), owner)
    given = f"{owner}seeds={reprlib.repr(seeds)}"
    if isinstance(seeds, Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"{given} is invalid; expected a count >= 1 or a list of seeds >= 0")
        _check_seed_count(int(seeds), given)
        return int(seeds)
    if isinstance(seeds, Sized):  # before listing range(10**9)
        _check_seed_count(len(seeds), given)
    listed = list(seeds) if isinstance(seeds, Iterable) else None
    if not listed or any(not isinstance(s, Integral) or isinstance(s, bool) or s < 0 for s in listed) \
            or len(set(listed)) != len(listed):
        raise ValueError(f"{owner}seeds={reprlib.repr(seeds if listed is None else listed)} is invalid; expected a "
                         f"count >= 1 or a list of distinct seeds >= 0")
    _check_seed_count(len(listed), given)
    check_seed(max(listed), f"{owner}seeds={reprlib.repr(listed)}: seed ")
    return [int(s) for s in listed]


def check_arms(arms: Any) -> None:
    """``arms`` maps each arm's name to its options."""
    if arms is not None and not isinstance(arms, Mapping):
        raise ValueError(f"claim arms={arms!r} is invalid; expected a dict of arm names to options, e.g. "
                         f"{{'bc': {{'recipe': 'bert-default-bc'}}, 'no-bc': {{'recipe': 'bert-default'}}}}")
    for name, options in (arms or {}).items():
        check_arm(name, options)


def check_arm(name: str, options: Any) -> None:
    """An arm is a mapping of claim fields; a misspelt field would otherwise fall back to the claim's."""
    if not isinstance(options, Mapping):
        raise ValueError(f"claim arm {name!r} is {options!r}; expected a dict of {', '.join(ARM_FIELDS)}")
    unknown = sorted(set(options) - set(ARM_FIELDS))
    if unknown:
        recipe_fields = {f.name for f in fields(Recipe)}
        hint = (f" (a recipe field goes into the arm's recipe: \"recipe\": stabench.get_recipe(\"bert-default\", "
                f"{unknown[0]}=...))" if unknown[0] in recipe_fields else "")
        raise ValueError(f"claim arm {name!r} has unknown field(s) {', '.join(map(repr, unknown))}; expected "
                         f"{', '.join(ARM_FIELDS)}{hint}")
    check_toy(options.get("toy"), f"claim arm {name!r} toy", ARM_TOY_FIELDS)


@dataclass(frozen=True)
class Arm:
    """One configuration of a claim: what is trained, with which recipe, on how much data."""

    name: str
    task: str
    model: str
    recipe: Recipe
    train_size: int | None = None
    subsample_seed: int = 0  # which subsample of train_size examples (stabench.study's subsample_seed=)

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, Recipe):  # a preset name, as everywhere else
            object.__setattr__(self, "recipe", get_recipe(self.recipe))


@dataclass(frozen=True)
class ClaimSpec:
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    requires: tuple[str, ...] = ()

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"claim has no arm {name!r}; arms: {', '.join(a.name for a in self.arms)}")


MAX_SEEDS = 10_000  # per study: far past any stability study (the paper's has 25), short of a typo's 0-100000000


def _check_seed_count(count: int, given: str) -> None:
    """At most MAX_SEEDS seeds; ``given`` names them as the user wrote them."""
    if count > MAX_SEEDS:
        raise ValueError(f"{given} are {count} seeds; expected at most {MAX_SEEDS}")


def parse_seeds(text: str, accepted: str = "a range like 0-4, a list like 1,3,7, or both") -> list[int]:
    """``0-4``, ``1,3,7`` or a mix such as ``0-2,10``, in the order given; a repeated seed is an
    error, as in a claim's ``seeds=``, since it would count one run twice.  ``accepted``: what the
    error says the caller takes."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        try:
            values = range(int(first), int(last) + 1) if dash else [int(first)]
        except ValueError:
            raise ValueError(f"seeds {text!r} are invalid; expected {accepted}") from None
        if dash and int(last) < int(first):  # a negative seed ("-3") fails int("") above
            raise ValueError(f"seeds {text!r} are invalid; ranges go low-high over integers >= 0")
        _check_seed_count(len(seeds) + len(values), f"seeds {text!r}")
        check_seed(values[-1], f"seeds {text!r}: seed ")
        if repeated := sorted(set(values) & set(seeds)):
            raise ValueError(f"seeds {text!r} are invalid; seed {repeated[0]} is listed twice")
        seeds.extend(values)
    return seeds


def seeds_from_text(text: str) -> int | list[int]:
    """``5`` is a count (seeds 0-4), as ``seeds=5`` in a claim; ``0-4`` and ``1,3,7`` list seeds."""
    if text.strip().isdecimal():
        if int(text) == 0:
            raise ValueError(f"seeds {text!r} select no seed; expected a count >= 1 like 5, a range like 0-4 or a "
                             f"list like 1,3,7")
        _check_seed_count(int(text), f"seeds {text!r}")
        return int(text)
    return parse_seeds(text, accepted="a count like 5, a range like 0-4, a list like 1,3,7, or a mix")


def seeds_of(seeds: int | Sequence[int], override: Sequence[int] | None = None) -> tuple[int, ...]:
    """A seed count means seeds 0..n-1; ``override`` (the command line) wins over the claim."""
    if override is not None:
        return tuple(override)
    return tuple(range(seeds)) if isinstance(seeds, Integral) else tuple(int(s) for s in seeds)


def _toy_options(defaults: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**defaults, **own}
    for name in ("recipe_overrides", "task_map"):
        merged[name] = {**defaults.get(name, {}), **own.get(name, {})}
    return merged


def build_spec(options: Mapping[str, Any], params: Mapping[str, Any], seed_override: Sequence[int] | None = None,
               toy: bool = False, toy_defaults: Mapping[str, Any] | None = None,
               recipe_overrides: Mapping[str, Any] | None = None) -> ClaimSpec:
    """A claim's arms and seeds from its marker options and the test's parametrize values.

    Under the toy profile, ``toy_defaults`` and then the claim's own ``toy`` options replace
    the model, the seeds and the data (GLUE tasks map to built-in ones) and shorten the recipe;
    the claim's ``recipe_overrides`` and ``task_map`` add to the defaults' key by key (a claim's
    own lr keeps the toy step count).  ``recipe_overrides`` (the user's, e.g. a faster
    precision) apply last, to every arm.
    """
    base = {name: params.get(name, options.get(name)) for name in ("task", "model", "recipe", "train_size")}
    toy_options = _toy_options(toy_defaults or {}, options.get("toy", {})) if toy else {}
    default_arm = base["recipe"].name if isinstance(base["recipe"], Recipe) else str(base["recipe"])
    arms = []
    # Arms may come from a parametrize argument named "arms" (e.g. recipes that depend on another parameter).
    given_arms = params.get("arms") or options.get("arms") or {default_arm: {}}
    check_arms(given_arms)
    for name, arm_options in given_arms.items():
        merged = {**base, **{k: v for k, v in arm_options.items() if k != "toy"}}
        for required in ("task", "model", "recipe"):
            if merged.get(required) is None:
                owner = "claim" if given_arms == {default_arm: {}} else f"claim arm {name!r}"  # one arm: no name
                raise ValueError(f"{owner} has no {required}; give {required}= in stabench.claim "
                                 f"or a parametrize argument named {required!r}")
        recipe, task = get_recipe(merged["recipe"]), registered_name(merged["task"])
        model, train_size = merged["model"], check_train_size(merged.get("train_size"), owner=f"claim arm {name!r}: ")
        check_model_name(model)  # a parametrized typo too: offline it would only skip the claim
        if toy:
            model = toy_options.get("model", model)
            task = toy_options.get("task_map", {}).get(task, task)
            # a claim that subsamples (the 1k-example study) keeps a subsample, at the toy size
            train_size = toy_options.get("train_size") if train_size is not None else None
            try:
                recipe = recipe.replace(**{**toy_options.get("recipe_overrides", {}),
                                           **arm_options.get("toy", {}).get("recipe_overrides", {})})
            except ValueError as error:
                raise ValueError(f"claim arm {name!r}: its toy recipe_overrides: {error}") from None
        try:
            recipe = recipe.replace(**(recipe_overrides or {}))
        except ValueError as error:  # dropout over a Mixout arm, say: the command line's, not the claim's
            given = ",".join(f"{k}={v}" for k, v in recipe_overrides.items())
            raise ValueError(f"claim arm {name!r} (recipe {recipe.name}): the recipe overrides {given} "
                             f"(--stabench-set) do not apply: {error}") from None
        arms.append(Arm(name=name, task=task, model=model, recipe=recipe, train_size=train_size))
    if not toy:  # the toy profile may shorten two arms alike; it runs end to end, not the science
        _check_distinct(arms, recipe_overrides)
    requires = () if toy else tuple(options.get("requires", ()))  # the toy scale is made for a CPU
    return ClaimSpec(arms=tuple(arms), seeds=claim_seeds(options, seed_override, toy, toy_defaults),
                     requires=requires)


def _check_distinct(arms: Sequence[Arm], recipe_overrides: Mapping[str, Any] | None) -> None:
    """Two arms of one task, model, data size and recipe content read the same runs: a comparison
    of a study with itself, whatever the arms are called."""
    seen: dict[tuple, str] = {}
    for arm in arms:
        model = os.path.realpath(os.path.expanduser(arm.model)) if os.path.isdir(os.path.expanduser(arm.model)) \
            else arm.model  # two checkpoint-500 folders of one name are two models
        trained = (arm.task, model, arm.recipe.hash, arm.train_size)
        if trained in seen:
            given = ",".join(f"{k}={v}" for k, v in (recipe_overrides or {}).items())
            after = f" once the recipe overrides ({given}) apply" if given else ""
            raise ValueError(f"claim arms {seen[trained]!r} and {arm.name!r} train the same runs{after} (recipe "
                             f"content {arm.recipe.hash[:SHORT_HASH]} on {arm.task} / {arm.model}); give them "
                             f"recipes, tasks, models or data sizes that differ")
        seen[trained] = arm.name


def claim_seeds(options: Mapping[str, Any], seed_override: Sequence[int] | None = None, toy: bool = False,
                toy_defaults: Mapping[str, Any] | None = None) -> tuple[int, ...]:
    """A claim's seeds: the command line's, else the toy profile's, else the claim's own."""
    seeds = options.get("seeds", 5)
    if toy:
        seeds = {**(toy_defaults or {}), **options.get("toy", {})}.get("seeds", seeds)
    return seeds_of(seeds, seed_override)


def clear_attempts(store_path: str | os.PathLike[str], session_id: str) -> None:
    """Remove a finished session's attempt files: they tell its own verdicts which seeds crashed
    or were recomputed, and a later session (another id) ignores them, so they only piled up."""
    folder = beside_store(store_path, "attempts")
    for path in folder.glob("*.json"):
        try:
            if json.loads(path.read_text()).get("session") == session_id:
                path.unlink()
        except (OSError, ValueError):  # gone already, or another session's being written
            continue
    remove_if_empty(folder)


def _write_attempt(path: Path, record: dict) -> None:
    """Replaced whole, since other processes read it without the run's lock."""
    def write() -> None:
        with replaced_atomically(path) as handle:
            handle.write(json.dumps(record))

    in_made_folder(path.parent, write)  # a session clearing its notes may remove the emptied folder


class RunSetupError(ValueError):
    """A run that cannot be set up as asked (an unknown name, an impossible value, unusable data
    or model, a store it could not be written to); the message says it all, so pytest shows it as
    one line."""


class RetrainMismatch(RuntimeError):
    """A run trained again for its model ended on the other side of the failure line."""


class RetrainUnchecked(UserWarning):
    """A model retrained for an analysis that no stored run can be held to: the store lacks the
    run (another store, device or thread count), or its record is unreadable."""


class SeedNotRun(Exception):
    """A seed of this session crashed or raised before its result was stored."""


@dataclass(frozen=True)
class Session:
    """Where runs are stored and how they are trained in this pytest (or script) session.

    ``cpu_threads`` runs its seeds with that many torch threads (None: as this process has them;
    the plugin sets them per worker), as ``stabench.study(..., cpu_threads=)``: on a CPU the count
    is part of a run's key, so a script that retrains a stored run for its weights
    (:meth:`trained_model`) needs the count it was stored with.
    """

    store: Store
    device: str = "cpu"
    session_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}")
    recompute: bool = False
    cpu_threads: int | None = None
    trained: list[str] = field(default_factory=list, init=False, compare=False, repr=False)  # keys it trained, stored

    def __post_init__(self) -> None:
        if not isinstance(self.store, Store):
            path = self.store if isinstance(self.store, (str, os.PathLike)) else "results.sqlite"
            raise ValueError(f"Session(store={self.store!r}) is invalid; expected a stabench Store, e.g. "
                             f"Session(stabench.Store({str(path)!r}))")

    def _attempt_path(self, key: str) -> Path:
        return beside_store(self.store.path, "attempts") / f"{key}.json"

    def _prepare(self, arm: Arm, seed: int):
        from .train import prepare

        try:
            return prepare(arm.task, arm.model, arm.recipe, seed, train_size=arm.train_size,
                           subsample_seed=arm.subsample_seed, device=self.device)
        except (ValueError, OSError, RuntimeError) as error:  # names, values, files, models: no training yet
            raise RunSetupError(str(error)) from error

    def run_seed(self, arm: Arm, seed: int) -> tuple[RunResult, bool]:
        """The stored result for (arm, seed), or train and store it: (result, trained?)."""
        with torch_threads(self.cpu_threads):
            return self._run_seed(arm, seed)

    def _run_seed(self, arm: Arm, seed: int) -> tuple[RunResult, bool]:
        prepared = self._prepare(arm, seed)
        if (stored := self._usable(prepared)) is not None:
            return self.store.add_recipe_alias(stored, arm.recipe.name), False
        with self.store.lock(prepared.key):
            if (stored := self._usable(prepared, claimed=True)) is not None:
                return self.store.add_recipe_alias(stored, arm.recipe.name), False
            return self._train_holding_lock(prepared), True

    def _usable(self, prepared, claimed: bool = False) -> RunResult | None:
        """The stored result of the ``prepared`` run if this session may use it (``claimed``: the
        second look, under the run's claim, as ``Store.reusable``).

        Under recompute only a result trained in this session counts, or a verdict that runs
        before its seed items would judge, tag and gate on the old results.
        """
        if not self.recompute:
            return self.store.reusable(prepared.key, claimed, seed=prepared.seed)
        # The attempt file first: read after the store, it could say "stored" of a result newer
        # than the row already read.
        attempt = self._attempt(prepared.key)
        if attempt.get("session") == self.session_id and attempt.get("stored"):
            return self.store.get(prepared.key)
        return None

    def _attempt(self, key: str) -> dict:
        """A run's attempt note; none for a note cut short (a power loss can leave it empty), as
        for an old one: it only ever tells a verdict what this session's processes did."""
        try:
            note = json.loads(self._attempt_path(key).read_text())
        except (OSError, ValueError):  # missing, unreadable, or not JSON
            return {}
        return note if isinstance(note, dict) else {}

    def _train_holding_lock(self, prepared) -> RunResult:
        """Train and store a run whose claim this process holds, leaving an attempt file meanwhile.

        The attempt file outlives a crash (and records an exception), so a verdict in this
        session can tell "crashed" from "not run yet".  Under recompute it stays after the run
        is stored, marked as such, so the session's other processes know the result is new.
        """
        from .train import fine_tune, warn_of_other_stacks

        try:
            self.store.check_writable()
        except StoreError as error:
            raise RunSetupError(str(error)) from None
        attempt = self._attempt_path(prepared.key)
        record = {"session": self.session_id, "pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.time(), "error": None}
        try:
            _write_attempt(attempt, record)
        except OSError as error:  # "-attempts" is a file, or the disk is full
            raise RunSetupError(f"{self.store.path}: cannot write the attempt file {attempt} beside the store "
                                f"({error.strerror or error}), so no run is trained") from None
        try:
            if not self.recompute:
                warn_of_other_stacks(prepared, self.store)
            result = self.store.store_trained(fine_tune(prepared), replace=self.recompute)
        except BaseException as error:
            with contextlib.suppress(OSError):  # a full disk: the run's own error is the one to tell
                _write_attempt(attempt, {**record, "error": f"{type(error).__name__}: {error}"})
            raise
        self.trained.append(result.key)
        if self.recompute:
            _write_attempt(attempt, {**record, "stored": True})
        else:
            attempt.unlink()
        return result

    def trained_model(self, arm: Arm, seed: int):
        """Fine-tune (arm, seed) again and return (result, model): the store keeps numbers, not weights.

        An analysis of "a failed run" must get a model that failed, so a retrained run that
        disagrees with the stored one on failing (nondeterministic kernels on a GPU can do that
        to a chaotic run) is an error, not a silently different model.  A run the store lacks (another
        store, device or thread count) is retrained unchecked, with a RetrainUnchecked warning.
        """
        from .train import fine_tune, stack_label

        with torch_threads(self.cpu_threads):
            prepared = self._prepare(arm, seed)
            try:  # before hours of training
                stored = self.store.get(prepared.key)
            except UnreadableRun as error:  # a run lost: nothing to hold the model to (and this one is not stored)
                warn(f"{self.store.path}: stored run {prepared.key} is unreadable ({error.reason}); the "
                     f"model trained for the analysis is not checked against it", RetrainUnchecked)
                stored = None
            else:
                if stored is None:  # the wrong store, device or thread count: a model of some other run
                    warn(f"{self.store.path} does not hold seed {seed} of {prepared.task_info['name']} / "
                         f"{prepared.model_info['name']} / {prepared.recipe.name}: "
                         f"{not_stored_reason(self.store, prepared, stack_label(prepared))}; the model "
                         f"trained for the analysis is not checked against a stored run",
                         RetrainUnchecked)
            result, model = fine_tune(prepared, return_model=True)
        if stored is not None and stored.failed != result.failed:
            def verdict(run: RunResult) -> str:
                return f"{fmt(run.score)} ({'failed' if run.failed else 'ok'})"
            raise RetrainMismatch(
                f"retraining {result.task['name']} / {result.model['name']} / {result.recipe_name} seed {seed} "
                f"scored {verdict(result)} but the stored run scored {verdict(stored)}: training is not "
                f"reproducible on {self.device}, so the analysis would not see the stored run's model")
        return result, model

    def pretrained_model(self, arm: Arm, seed: int = 0):
        """The model ``seed``'s run starts fine-tuning from (θ_p of ``analysis.loss_surface``):
        the pretrained encoder with the head ``seed`` draws, and with the recipe's re-init,
        Mixout and hook applied, so a re-initialised arm's plane goes through its real start."""
        from .train import initial_model

        return initial_model(self._prepare(arm, seed)).to(self.device)

    def training_batches(self, arm: Arm, n_batches: int) -> list[dict]:
        """The first training batches of ``arm``'s data, for loss-surface evaluations."""
        from . import data as data_lib
        from .models import load_tokenizer, resolve
        from .tasks import load_task_data

        source = resolve(arm.model)
        tokenizer = load_tokenizer(source)
        train, _ = data_lib.encode(load_task_data(arm.task, train_size=arm.train_size,
                                                  subsample_seed=arm.subsample_seed), tokenizer,
                                   arm.recipe.max_length, arm.recipe.token_types)
        size = arm.recipe.batch_size
        return [data_lib.collate(train, list(range(i * size, min((i + 1) * size, len(train)))),
                                 tokenizer.pad_token_id or 0) for i in range(min(n_batches, -(-len(train) // size)))]

    def collect(self, arm: Arm, seeds: Iterable[int]) -> Study:
        """Every seed's result: stored ones are read, missing ones trained here.

        A first pass trains only seeds nobody else holds, so a verdict works beside the seed
        items of other workers instead of queueing behind them; a second pass waits for the
        seeds that were being trained elsewhere.  A seed attempted in this session that left
        no result (its worker died or it raised) is not retrained: the claim must not pass
        on a seed that could not run.
        """
        with torch_threads(self.cpu_threads):
            return self._collect(arm, seeds)

    def _collect(self, arm: Arm, seeds: Iterable[int]) -> Study:
        prepared = {seed: self._prepare(arm, seed) for seed in seeds}
        results: dict[int, RunResult] = {}
        trained_here = []
        for blocking in (False, True):
            for seed, run in prepared.items():
                if seed in results:
                    continue
                if (stored := self._usable(run)) is not None:
                    results[seed] = stored
                    continue
                with self.store.lock(run.key, blocking=blocking) as held:
                    if not held:
                        continue  # another worker is training it right now
                    stored = self._usable(run, claimed=True)
                    if stored is None:
                        self._raise_if_attempted(arm, seed, run.key)
                        stored = self._train_holding_lock(run)
                        trained_here.append(seed)
                    results[seed] = stored
        return Study(arm, [results[seed] for seed in prepared], trained_here)

    def _raise_if_attempted(self, arm: Arm, seed: int, key: str) -> None:
        info = self._attempt(key)
        if info.get("session") == self.session_id and not info.get("stored"):
            alive = info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()
            how = info["error"] or (  # the error could not be written down (a full disk): this process is alive
                "it raised an error in this process, which its seed item reports" if alive
                else f"its process (pid {info['pid']} on {info['host']}) died")
            # Named as the claims table names it, where the arm is a recipe file's path.
            named = arm.name if arm.name == arm.recipe.name else f"{arm.name} (recipe {arm.recipe.name})"
            raise SeedNotRun(f"seed {seed} of {named} did not finish in this session: {how}")


class StudyNotStored(UserWarning):
    """A script's study without a store: hours of training kept nowhere."""


def study(task: str | Task, model: str, recipe: str | Recipe, seeds: int | Sequence[int] | str = 5, *,
          train_size: int | None = None, subsample_seed: int = 0, store=None, device: str = "auto",
          cpu_threads: int | None = None, recompute: bool = False, train: bool = True,
          progress: bool = False) -> Study:
    """A seed study from a script: each seed's run (read from ``store`` when stored, else
    trained, see ``stabench.run``) as the Study a claim's test gets.  ``seeds`` is a count
    (seeds 0..n-1), a list or text ("0-4"), as in a claim.  ``train=False`` only reads (to redraw a table
    without a chance of training): seeds not stored are one error naming them.  ``progress=True``
    shows a progress bar (seeds done, and the steps of the seed in training), in a terminal or a
    notebook.  Without ``store=``, ``$STABENCH_STORE`` where it is set; with neither, the runs are
    kept nowhere and a :class:`StudyNotStored` warning says so."""
    from .train import RunNotStored, run_or_read, script_store

    store = script_store(store)
    name = registered_name(task)  # a clash of task names fails before any training
    recipe = recipe_or_stored(recipe, name, model, store)
    seeds = seed_spec(seeds, "study ")
    train_size, subsample_seed = check_train_size(train_size, "study "), check_subsample_seed(subsample_seed, "study ")
    if store is None and train:
        warn("stabench.study was given no store (store= or $STABENCH_STORE): its runs are trained "
             "again on every call and kept nowhere; pass store=\"study.sqlite\" to keep them",
             StudyNotStored)
    reload_task_data(task)  # an in-memory task's data as its loader gives it now, one call for every seed
    runs, missing, trained_here = [], [], []
    with _progress_bar(progress, f"{name} / {recipe.name}", len(seeds_of(seeds))) as seed_progress:
        for seed in seeds_of(seeds):
            try:
                result, trained = run_or_read(task, model, recipe, seed, train_size=train_size,
                                              subsample_seed=subsample_seed, store=store, device=device,
                                              cpu_threads=cpu_threads, recompute=recompute, train=train,
                                              progress=seed_progress(seed))
            except RunNotStored as error:
                missing.append(seed)
                not_stored = error
                continue
            runs.append(result)
            if trained:
                trained_here.append(seed)
    if missing:
        with contextlib.ExitStack() as opened:
            if not isinstance(store, Store):  # a path: run opened it per seed
                store = opened.enter_context(Store(store, must_exist=True))
            why = not_stored_reason(store, not_stored.prepared, not_stored.stack)
        raise ValueError(f"seeds {seed_ranges(missing)} of {name} / {model} / {recipe.name} are not stored: {why}; "
                         f"or train=True trains them")
    return Study(Arm(recipe.name, name, model, recipe, train_size, subsample_seed), runs, trained_here)


def recipe_or_stored(recipe: str | Recipe, task: str, model: str, store, recipe_hash: str | None = None,
                     **overrides: Any) -> Recipe:
    """``recipe`` as get_recipe takes it, or the name of a recipe whose runs ``store`` (a Store or
    its path; None: none) holds, as they recorded it: a claim file's own name,
    ``get_recipe(..., name="mine@2e-4")``, as ``stabench.study`` and the CLI's ``--recipe`` take it.
    Its runs on ``task`` and ``model`` count first; ``recipe_hash`` (a start of it) picks one stored
    version of the name, even a preset's; ``overrides`` change either."""
    unknown = None
    if recipe_hash is None:
        try:
            return get_recipe(recipe, **overrides)
        except ValueError as error:
            unknown = error
            if not (isinstance(recipe, str) and str(error).startswith("unknown recipe") and store is not None):
                raise
    if isinstance(store, Store):
        stored = store.recipe_named(recipe, task, stored_name(model), recipe_hash)
    elif store is not None and Path(store).is_file():
        with Store(store, must_exist=True) as opened:
            stored = opened.recipe_named(recipe, task, stored_name(model), recipe_hash)
    else:
        stored = None
    if stored is None and unknown is None:
        holds = "no store was given" if store is None else f"the store holds no run named {recipe!r}"
        raise ValueError(f"recipe hash {recipe_hash!r} picks a stored version of recipe {recipe!r}, but {holds}; "
                         f"expected a recipe name `stabench runs` shows")
    if stored is None:
        raise unknown
    return stored.replace(**overrides)


def check_claim(test: Callable[..., Any], *, store=None, seeds: int | Sequence[int] | str | None = None,
                device: str = "auto", cpu_threads: int | None = None, recompute: bool = False,
                **params: Any) -> Study | StudySet:
    """A claim judged from a script or notebook, as its pytest verdict judges it: each arm's seeds
    read from the store or trained into it, then ``test`` (a function under ``@stabench.claim``)
    called with the study.  The claim fails as its body does, with an AssertionError; it returns
    the study it judged.  ``params`` give what a ``parametrize`` of the claim would: ``task=``,
    ``recipe=``, ``arms=`` and any other argument of the body.  ``seeds`` replaces the claim's
    own, as ``--stabench-seeds`` does.  The store is ``store=``, else ``$STABENCH_STORE``; with
    neither, the runs are kept nowhere (a :class:`StudyNotStored` warning says so)."""
    from .profiles import missing_requirements
    from .train import opened_store, script_store

    marks = [mark for mark in getattr(test, "pytestmark", []) if getattr(mark, "name", None) == "stabench"]
    name = getattr(test, "__name__", repr(test))
    if not marks:
        raise ValueError(f"{name} is not a stabench claim; expected a function under @stabench.claim(...)")
    if "study" in params:
        raise ValueError(f"check_claim({name}, study=...): the study is what check_claim gathers and passes to "
                         f"{name}; leave study out")
    arguments = inspect.signature(test).parameters
    given = {arg: value for arg, value in params.items() if arg in arguments}
    if unknown := sorted(set(params) - set(given) - {"task", "model", "recipe", "train_size", "arms"}):
        if unknown[0] in inspect.signature(study).parameters:  # train=False, say: study's, not check_claim's
            raise ValueError(f"check_claim({name}, {unknown[0]}=...): {unknown[0]} is an option of stabench.study, "
                             f"not of check_claim, which takes store, seeds, device, cpu_threads, recompute and what "
                             f"a parametrize of {name} would give")
        raise ValueError(f"check_claim({name}, {unknown[0]}=...): {name} takes no argument {unknown[0]!r}; it takes "
                         f"{', '.join(arguments)}")
    if lacking := [arg for arg, spec in arguments.items()
                   if arg != "study" and arg not in given and spec.default is inspect.Parameter.empty]:
        raise ValueError(f"{name} takes {', '.join(lacking)}, which a parametrize or fixture gives it under "
                         f"pytest; pass it: check_claim({name}, {lacking[0]}=...)")
    override = None if seeds is None else seeds_of(seed_spec(seeds, "check_claim "))
    spec = build_spec(marks[0].kwargs, params, seed_override=override)
    if missing := missing_requirements(spec, toy_option=None):
        raise ValueError(f"{name} needs what this machine lacks: {'; '.join(missing)}")
    with contextlib.ExitStack() as opened:
        if script_store(store) is None:
            warn(f"check_claim({name}) was given no store (store= or $STABENCH_STORE): its runs are kept "
                 f"nowhere; pass store=\"study.sqlite\" to keep them", StudyNotStored)
            store = Path(opened.enter_context(tempfile.TemporaryDirectory())) / "runs.sqlite"
        session = Session(store=opened.enter_context(opened_store(store, must_exist=False)), device=device,
                          cpu_threads=cpu_threads, recompute=recompute)
        for task in dict.fromkeys(arm.task for arm in spec.arms):  # an in-memory task's data as it is now
            reload_task_data(task)
        try:
            studies = StudySet((arm.name, session.collect(arm, spec.seeds)) for arm in spec.arms)
        finally:  # the notes tell this call's verdict about crashed seeds, and no later one
            clear_attempts(session.store.path, session.session_id)
    judged = studies if len(studies) > 1 else next(iter(studies.values()))
    test(study=judged, **given)
    return judged


@contextlib.contextmanager
def _progress_bar(shown: bool, title: str, n_seeds: int):
    """For each seed in turn, the ``(step, total)`` callback of its run: a rich display of the
    seeds done and the current seed's steps, gone when the study is (None each when not shown)."""
    if not shown:
        yield lambda seed: None
        return
    with progress_display() as bar:
        seeds_done = bar.add_task(f"{title}: seeds", total=n_seeds)
        current = []

        def of_seed(seed: int) -> Callable[[int, int], None]:
            if current:  # the previous seed is over, trained, read or missing
                bar.remove_task(current.pop())
                bar.advance(seeds_done)
            current.append(bar.add_task(f"seed {seed}: steps", total=None))
            return lambda step, total: bar.update(current[-1], completed=step, total=total)

        yield of_seed


_DATA_FIELDS = ("fingerprint", "train_size", "subsample_seed")  # which examples a run trained and was scored on


def not_stored_reason(store: Store, prepared, stack: str) -> str:
    """Why ``store`` lacks the run ``prepared`` (a ``train.PreparedRun``) describes: no run of its
    recipe on its task and model, runs of it only on other data or another version of the model,
    or runs of these very inputs under another library stack or thread count (``stack`` is this
    one, in words).  A recipe that was never trained must not pass for a missing thread count."""
    task, model, recipe = prepared.task_info["name"], prepared.model_info["name"], prepared.recipe
    runs = store.query(task=task, model=model, traces=False)  # what they are, not how they trained
    if not runs:
        return f"the store holds no run of {task} / {model}"
    of_recipe = [r for r in runs if r.recipe_hash == prepared.recipe_hash]
    if not of_recipe:
        stored = sorted({f"{r.recipe_name} ({r.recipe_hash[:SHORT_HASH]})" for r in runs})
        return (f"the store holds no run of recipe {recipe.name} ({prepared.recipe_hash[:SHORT_HASH]}) on {task} / "
                f"{model}, under any stack; recipes stored for them: {', '.join(stored)}")
    on_data = [r for r in of_recipe if all((r.task or {}).get(k) == v for k, v in prepared.task_info.items())]
    same_data = [r for r in of_recipe if all((r.task or {}).get(k) == prepared.task_info.get(k) for k in _DATA_FIELDS)]
    if not on_data and same_data:  # the same examples, another definition: its metrics, columns or labels
        field = next(k for k, v in prepared.task_info.items() if any((r.task or {}).get(k) != v for r in same_data))
        stored = sorted({str((r.task or {}).get(field)) for r in same_data})
        return (f"runs of this recipe on these data of {task} are stored for another definition of the task: its "
                f"{field} {' or '.join(stored)}, not {prepared.task_info.get(field)}")
    if not on_data:
        def data(info: Mapping[str, Any]) -> str:
            size = info.get("train_size")
            subsample = f"train_size={size}, subsample_seed={info.get('subsample_seed')}" if size else "the full set"
            return f"{subsample} (data {str(info.get('fingerprint'))[:SHORT_HASH]})"

        stored = sorted({data(r.task or {}) for r in of_recipe})
        return (f"runs of this recipe on {task} are stored for other data: {'; '.join(stored)}, not "
                f"{data(prepared.task_info)}")
    same = [r for r in on_data if all((r.model or {}).get(k) == v for k, v in prepared.model_info.items())]
    if not same:
        return f"runs of this recipe on this data are stored for another version of {model} (its files or commit)"
    here = key_fields(prepared.environment)
    if any(key_fields(r.environment or {}) == here for r in same):
        stored = sorted(r.seed for r in same if key_fields(r.environment or {}) == here)
        return f"only seeds {seed_ranges(stored)} of these inputs are stored for this stack ({stack})"
    others = {tuple((k, v) for k, v in key_fields(r.environment or {}).items() if v != here.get(k)) for r in same}
    how = ("give the cpu_threads= and device= they were trained with"
           if {name for other in others for name, _ in other} <= {"cpu_threads", "device_kind", "device_name"}
           else "a run is read back only under the library versions it was trained with")
    shown = sorted(", ".join(f"{k}={v}" for k, v in other) for other in others)
    return f"runs of these inputs are stored for another stack ({'; '.join(shown)}), not this one ({stack}); {how}"


class Study:
    """The results of one arm over its seeds, with the summary the claim asserts on."""

    def __init__(self, arm: Arm, results: Sequence[RunResult], trained_here: Sequence[int] = (), *,
                 recipe_hash: str | None = None):
        """``recipe_hash``: the hash the runs were stored under, where the arm's recipe hashes
        otherwise now (its hook edited since, or stored by an earlier version): :meth:`from_runs`."""
        recipe_hash = recipe_hash or arm.recipe.hash
        results = runs_of(results, f"study of {arm.name}: ", one_study=True)
        if not results:
            raise ValueError(f"study of {arm.name} has no results")
        if mix := data_mix(results):  # every seed of a study trains on the same data (the paper's fixed subsample)
            raise ValueError(f"study of {arm.name}: its runs were trained on {mix}; a study holds runs on one")
        headlines = sorted({r.primary_metric for r in results})
        if len({str((r.task or {}).get("metrics")) for r in results}) > 1 or len(headlines) > 1:
            raise ValueError(f"study of {arm.name}: its runs were scored with different metrics (headline "
                             f"{' and '.join(headlines)}): the task's metrics changed between them; select one "
                             f"definition's runs")
        if differ := stack_mix(results):  # a run's numbers depend on its stack (a CPU's thread count too)
            raise ValueError(f"study of {arm.name}: its runs were made under different library stacks or devices "
                             f"(they differ in {', '.join(differ)}); select one, e.g. Store.query(..., "
                             f"env={{{differ[0]!r}: ...}})")
        task, model = getattr(arm.task, "name", arm.task), stored_name(arm.model)
        for r in results:  # a study built by hand (outside pytest) must describe the runs it holds
            if (r.task or {}).get("name") != task:
                raise ValueError(f"study of {arm.name}: run {r.key} (seed {r.seed}) is of task "
                                 f"{(r.task or {}).get('name')!r}, not {task!r}")
            if (r.model or {}).get("name") != model:
                raise ValueError(f"study of {arm.name}: run {r.key} (seed {r.seed}) is of model "
                                 f"{(r.model or {}).get('name')!r}, not {model!r}")
            size = (r.task or {}).get("train_size")  # the whole training set asked for by its size is the full set
            if r.recipe_hash != recipe_hash or size != arm.train_size and not (
                    size is None and arm.train_size == (r.task or {}).get("n_train")):
                raise ValueError(
                    f"study of {arm.name}: run {r.key} (seed {r.seed}) was trained with recipe {r.recipe_name!r} "
                    f"({r.recipe_hash[:SHORT_HASH]}) on train_size={(r.task or {}).get('train_size')}, not with "
                    f"{arm.recipe.name!r} ({recipe_hash[:SHORT_HASH]}) on train_size={arm.train_size}")
        seeds = [r.seed for r in results]  # after the runs' own checks: two recipe versions repeat seeds
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"study of {arm.name}: seeds {sorted(s for s in set(seeds) if seeds.count(s) > 1)} "
                             f"appear more than once; each seed is one run")
        self.arm = arm
        self.trained_here = list(trained_here)  # seeds the verdict had to train itself
        self.comparisons: list[stats.Comparison] = []  # what compare() gave, for the claim's reports
        self.results = sorted(results, key=lambda r: r.seed)
        self.metric = self.results[0].primary_metric
        self.majority = self.results[0].majority_accuracy

    @classmethod
    def from_runs(cls, runs: Sequence[RunResult], name: str | None = None) -> Study:
        """Runs read back (``Store.query``, an import) as a Study of their own task, model, data
        size and recipe, named ``name`` (default: the recipe's name as the runs hold it)."""
        runs = runs_of(runs, "Study.from_runs: ", one_study=True)
        if not runs:
            raise ValueError("Study.from_runs was given no runs; expected the runs of one study, e.g. "
                             "store.query(task=..., recipe=...)")
        if len(hashes := {r.recipe_hash for r in runs}) > 1:
            raise ValueError(f"Study.from_runs: the runs hold {len(hashes)} recipes (hashes "
                             f"{', '.join(sorted(h[:SHORT_HASH] for h in hashes))}); a study holds one: select it, "
                             f"e.g. store.query(..., recipe_hash=...)")
        first = runs[0]
        try:  # a field this version does not know (a later stabench stored it), say
            recipe = dataclasses.replace(Recipe.from_dict(first.recipe), name=first.recipe_name)
        except ValueError as error:
            raise ValueError(f"Study.from_runs: the runs' recipe {first.recipe_name!r} cannot be made here: "
                             f"{error}") from None
        arm = Arm(name or first.recipe_name, first.task["name"], first.model["name"], recipe,
                  first.task.get("train_size"), first.task.get("subsample_seed") or 0)
        return cls(arm, runs, recipe_hash=first.recipe_hash)  # the runs' own: a hook edited since hashes anew

    def scores(self, metric: str | None = None) -> list[float]:
        metric = metric or self.metric
        check_metric(self.results, metric, f"study of {self.arm.name}: ")
        return [r.metrics[metric] for r in self.results]

    def summary(self, metric: str | None = None, confidence: float = 0.95) -> stats.Summary:
        if metric in (None, self.metric) and confidence == 0.95:
            return self._headline
        check_metric(self.results, metric or self.metric, f"study of {self.arm.name}: ")
        return stats.summarize_runs(self.results, metric or self.metric, confidence)

    @functools.cached_property
    def _headline(self) -> stats.Summary:
        """The default summary, computed once: its bootstrap intervals are not free."""
        return stats.summarize_runs(self.results, self.metric)

    n = property(lambda self: len(self.results))
    mean = property(lambda self: self._headline.mean)
    std = property(lambda self: self._headline.std)
    min = property(lambda self: self._headline.min)
    median = property(lambda self: self._headline.median)
    max = property(lambda self: self._headline.max)
    failures = property(lambda self: sum(r.failed for r in self.results))
    collapsed = property(lambda self: sum(r.collapsed for r in self.results))
    diverged = property(lambda self: sum(r.diverged for r in self.results))

    def failure_rate_upper(self, confidence: float = 0.95, one_sided: bool = False) -> float:
        """Upper Clopper-Pearson bound of the failure rate: 0/25 only bounds it below 13.7%."""
        return stats.failure_rate_upper(self.failures, self.n, confidence, one_sided)

    def std_upper(self, confidence: float = 0.95) -> float:
        """Chi-square upper bound of the std under normality."""
        return stats.std_upper_bound(self.std, self.n, confidence)

    def __iter__(self):
        """Not a list: ``list(study)`` (and functions that list their argument, as stats' do) would
        otherwise index it by 0, 1, ..."""
        raise TypeError("a Study is not a list of scores or runs: its scores are study.scores(), its runs "
                        "study.results")

    def __getitem__(self, name: str) -> Study:
        """``study[arm]`` works on a one-arm claim too, so code written for arms reads either."""
        if not isinstance(name, str):  # also what iterating a Study meets
            raise TypeError(f"a Study is indexed by arm name, not {name!r}; its runs are study.results")
        if name != self.arm.name:
            raise KeyError(f"claim has no arm {name!r}; its one arm: {self.arm.name!r}")
        return self

    def expected_max(self, n: int, metric: str | None = None) -> float:
        """The expected best score of ``n`` seeds (Dodge et al. 2019): the lowest for a metric
        where lower is better, such as ``train_loss``."""
        scores = self.scores(metric)
        if higher_is_better(metric or self.metric):
            return stats.expected_max(scores, n)
        return -stats.expected_max([-score for score in scores], n)

    def compare(self, other: Study, metric: str | None = None, alpha: float = 0.05,
                n_comparisons: int = 1) -> stats.Comparison:
        """This study (A) against another (B), in the metric's own direction.  Kept in
        ``comparisons``, so a claim's reports show every p-value its body computed, passed or not."""
        if not isinstance(other, Study):
            raise TypeError(f"compare takes another Study, e.g. study['bc'].compare(study['no-bc']); got a "
                            f"{type(other).__name__}")
        if metric is None and other.metric != self.metric:  # e.g. RTE (accuracy) against MRPC (F1)
            raise ValueError(f"compare: {self.arm.name} is scored by {self.metric} ({self.results[0].task['name']}), "
                             f"{other.arm.name} by {other.metric} ({other.results[0].task['name']}); pass metric= one "
                             f"that both studies' runs have, e.g. metric='accuracy'")
        metric = metric or self.metric
        if min(self.n, other.n) < 2:  # said here, where the arms have names, not deep in stats
            raise ValueError(f"compare: {self.arm.name} has {self.n} run(s) and {other.arm.name} {other.n}; a "
                             f"comparison needs at least 2 seeds a side (seeds= in the claim, or --stabench-seeds)")
        comparison = stats.compare(self.scores(metric), other.scores(metric), self.failures, other.failures,
                                   higher_is_better=higher_is_better(metric), alpha=alpha,
                                   n_comparisons=n_comparisons, names=_names(self, other), metric=metric,
                                   subject=_subject(self, other))
        self.comparisons.append(comparison)
        return comparison

    def __repr__(self) -> str:
        s = self.summary()
        return (f"Study({task_label(self.results[0].task)}, {self.arm.recipe.name}, {self.arm.model}, n={s.n}: "
                f"{self.metric} {fmt(s.mean)} ± {fmt(s.std)}, failed {s.failures_text()})")


def _names(a: Study, b: Study) -> tuple[str, str]:
    """The two studies as a comparison's messages name them: their arms, with the task where the
    tasks differ, and A / B where that still tells them apart no better."""
    names, tasks = [study.arm.name for study in (a, b)], [study.results[0].task for study in (a, b)]
    sizes = [f"{task['train_size']} examples" if task.get("train_size") else "full" for task in tasks]
    if tasks[0]["name"] != tasks[1]["name"]:
        names = [f"{name} ({task['name']}{', ' + size if size != 'full' else ''})"
                 for name, task, size in zip(names, tasks, sizes)]
    elif sizes[0] != sizes[1]:  # the small-data study: one task, two training sets
        names = [f"{name} ({size})" for name, size in zip(names, sizes)]
    return (names[0], names[1]) if names[0] != names[1] else (f"A ({names[0]})", f"B ({names[1]})")


def _subject(a: Study, b: Study) -> str | None:
    """What both studies ran, "task / model", where they share it (else the names say it); the
    subsample's size too where both trained on one of that size."""
    ran = {(task_label(study.results[0].task), study.results[0].model["name"]) for study in (a, b)}
    if len(ran) > 1:  # another size of one task's data: the names say which
        ran = {(study.results[0].task["name"], study.results[0].model["name"]) for study in (a, b)}
    return " / ".join(ran.pop()) if len(ran) == 1 else None


class StudySet(dict):
    """Studies of a claim with several arms, by arm name."""

    def __repr__(self) -> str:
        return "StudySet(" + ", ".join(f"{k}={v!r}" for k, v in self.items()) + ")"

    def __missing__(self, name: Any) -> Study:
        close = difflib.get_close_matches(name, list(self), n=1) if isinstance(name, str) else []
        meant = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"claim has no arm {name!r}{meant}; its arms: {', '.join(map(repr, self))}")

    def __getattr__(self, name: str) -> Any:
        """``study.failures`` on a claim with arms: say to pick an arm first."""
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(f"this claim has arms ({', '.join(map(repr, self))}), so its study holds one Study per "
                             f"arm: use study[{next(iter(self), 'ARM')!r}].{name}")

