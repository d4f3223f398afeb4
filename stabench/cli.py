"""The stabench command: run a seed study, inspect and move stored results."""
from __future__ import annotations

import argparse
import collections
import dataclasses
import difflib
import importlib.util
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from . import report
from .claims import parse_seeds, recipe_or_stored
from .environment import ALL_KEY_FIELDS, MAX_COUNT, check_positive_count, installed_version, key_fields, resolve_device
from .exchange import read_export
from .gate import AmbiguousRecipe, compare_studies, group_studies, name_studies, parse_env, study_key, study_label
from .models import check_model_name, stored_name
from .recipes import Recipe, get_recipe, parse_overrides
from .result import MAX_SEED, RunResult
from .settings import ProjectSettings, project_settings
from .stats import smallest_split_p, summarize_runs
from .store import SHORT_HASH, SHORT_KEY, DamagedRunsLeftOut, Store, StoreError, check_tag, default_store_path
from .tasks import did_you_mean, get_task, local_task, task_names


def _task_from_args(args: argparse.Namespace):
    if args.train_file or args.eval_file:
        missing = [flag for flag, value in (("--train-file", args.train_file), ("--eval-file", args.eval_file),
                                            ("--text-columns", args.text_columns)) if not value]
        if missing:
            raise ValueError(f"a local task needs --train-file, --eval-file and --text-columns; "
                             f"missing {', '.join(missing)}")
        metrics = {"metrics": tuple(m.strip() for m in args.metrics.split(","))} if args.metrics else {}
        return local_task(args.task, args.train_file, args.eval_file, args.text_columns, args.label_column or "label",
                          **metrics)
    if args.task not in task_names():  # the library's hint, to pass a Task object, is no way out here
        raise ValueError(f"unknown task {args.task!r}{did_you_mean(args.task)}; known tasks: "
                         f"{', '.join(task_names())}; a local task needs --train-file, --eval-file and "
                         f"--text-columns, or --import of the module that registers it")
    for flag, value, own in (("--metrics", args.metrics, "metrics"), ("--text-columns", args.text_columns, "columns"),
                             ("--label-column", args.label_column, "columns")):
        if value:
            raise ValueError(f"{flag} {value} is for a local task (--train-file, --eval-file, --text-columns); "
                             f"task {args.task!r} has its own {own}")
    return get_task(args.task)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from .train import fine_tune, prepare, warn_of_other_stacks

    for given in ("recompute", "store"):
        if args.no_store and getattr(args, given):
            raise ValueError(f"--{given} does nothing with --no-store, which reads and writes no store; give one of "
                             f"them")
    task = _task_from_args(args)
    check_model_name(args.model)  # a typo of a built-in name fails before the run's header, as other bad values do
    project = project_settings()
    # a preset, a name stabench prints, a recipe file, or the name ``runs`` and ``summary`` show
    recipe = recipe_or_stored(args.recipe, task.name, args.model, None if args.no_store else
                              _store_path(args, project), args.recipe_hash, **parse_overrides(args.set or []))
    seeds = parse_seeds(args.seeds)
    if args.train_size is not None and args.train_size < 1:
        raise ValueError(f"--train-size {args.train_size} is invalid; expected a whole number of examples >= 1, or "
                         f"leave it out for the full training set")
    try:
        device = resolve_device(args.device or project.get("device") or "auto")
    except ValueError as error:
        raise ValueError(f"{project.where('device')}: {error}" if args.device is None else error) from None
    cpu_threads = args.cpu_threads if args.cpu_threads is not None else project.count("cpu_threads")
    if cpu_threads is not None:
        check_positive_count(cpu_threads, "--cpu-threads " if args.cpu_threads is not None
                             else f"{project.where('cpu_threads')}: ")
        import torch

        torch.set_num_threads(cpu_threads)
    store = None if args.no_store else Store(_store_path(args, project))
    console.print(f"[bold]{escape(task.name)}[/] · {escape(args.model)} · recipe [bold]{escape(recipe.name)}[/] "
                  f"({recipe.hash}) · "
                  f"seeds {args.seeds} · {device}" + ("" if store is None else f" · store {store.path}"),
                  highlight=False)
    if note := _one_seed_note(args.seeds):
        console.print(f"[yellow]note: {note}[/]", highlight=False)
    results = []
    previous_handler = signal.signal(signal.SIGTERM, _terminate)
    try:
        with report.progress_display(Console(stderr=True)) as progress:
            # A seed another process is training is left for a second pass, so that two commands
            # started on one store (one per GPU, say) split the study instead of queueing (not
            # under --recompute, where the second retrains what the first just stored).
            pending = {seed: None for seed in seeds}  # seed: its prepared run, once prepared
            for wait in (False, True):
                for seed in list(pending):
                    prepared = pending[seed] = pending[seed] or prepare(task, args.model, recipe, seed,
                                                                        train_size=args.train_size, device=device)
                    bar = progress.add_task(f"seed {seed}" + (" (another process is training it)" if wait else ""),
                                            total=None)

                    def train(prepared=prepared, bar=bar):
                        progress.update(bar, description=f"seed {prepared.seed}")  # waited, and trains it now
                        if store is not None and not args.recompute:
                            warn_of_other_stacks(prepared, store)
                        return fine_tune(prepared, progress=lambda step, total: progress.update(
                            bar, completed=step, total=total))

                    if store is None:
                        done = train(), True
                    else:
                        done = store.get_or_compute(prepared.key, train, recompute=args.recompute,
                                                    recipe_name=recipe.name, wait=wait, seed=seed)
                    progress.remove_task(bar)
                    if done is None:
                        continue
                    del pending[seed]
                    result, trained = done
                    results.append(result)
                    console.print(f"seed {seed}: {result.primary_metric} {report.fmt(result.score)} "
                                  f"({report.verdict_text(result)}, "
                                  + (f"trained in {result.wall_time_s:.1f} s)" if trained
                                     else f"stored{_stored_as(result, recipe)}, not retrained)"), highlight=False)
    except KeyboardInterrupt as stop:
        again = ("running it again trains every seed again, as --recompute asks (without it, seeds not retrained "
                 "yet keep their earlier runs)" if args.recompute
                 else "run the same command again to train only the missing ones")
        kept = f"finished seeds are stored, {again}" if store is not None else "nothing was stored (--no-store)"
        console.print(f"[yellow]interrupted after {len(results)} finished seed(s); {kept}[/]")
        _print_study(console, results)
        return 143 if isinstance(stop, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if store is not None:
            store.close()
    _print_study(console, results)
    return 0


def _store_path(args: argparse.Namespace, project: ProjectSettings | None = None) -> Path:
    """--store, else the store a pytest session started here uses: ``stabench_store`` in its
    configuration file (``project``, read here unless given), ``$STABENCH_STORE``, or
    ``.stabench/results.sqlite`` beside that file."""
    if args.store:
        return Path(args.store)
    project = project or project_settings()
    return project.store() or default_store_path(project.rootdir)


def _stored_as(result, recipe) -> str:
    """A run keeps the recipe name it was first trained under (other names become aliases); say
    so when this one differs."""
    return "" if result.recipe_name == recipe.name else f" as recipe {escape(repr(result.recipe_name))}"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``, a CI job's timeout), stopping a study as Ctrl-C does."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def _print_study(console: Console, results: list) -> None:
    if not results:
        return
    console.print(report.seed_table(results))
    console.print(report.rows_table([report.summary_row(summarize_runs(results))], title="summary"))


# Columns that often hold one value for every listed run; that value goes into the title instead.
_SHARED_RUN_COLUMNS = ("recipe hash", "data", "train", "torch", "transformers", "tokenizers", "datasets", "device",
                       "threads", "tags")


def cmd_runs(args: argparse.Namespace, console: Console) -> int:
    with Store(_store_path(args), must_exist=True) as store:
        if args.show:
            console.print_json(store.get(store.find_key(args.show)).to_json())
            return 0
        runs = _matching(store, *_filters(args, store), args.seeds, skip_damaged=True)
    rows = [{"key": r.key[:SHORT_KEY], "task": r.task["name"], "model": r.model["name"],
             "recipe": r.recipe_name + (f" (also {'; '.join(r.recipe_aliases)})" if r.recipe_aliases else ""),
             "recipe hash": r.recipe_hash[:SHORT_HASH], "data": (r.task.get("fingerprint") or "-")[:8],
             "train": r.task.get("train_size") or "full", "seed": r.seed,
             "metric": f"{r.primary_metric} {report.fmt(r.score)}",
             "verdict": report.verdict_text(r), "torch": r.environment.get("torch"),
             "transformers": r.environment.get("transformers"), "tokenizers": r.environment.get("tokenizers") or "none",
             "datasets": r.environment.get("datasets") or "none", "device": _device(r.environment),
             "threads": key_fields(r.environment).get("cpu_threads", "-"),
             **({"tags": ", ".join(r.tags) or "-"} if any(run.tags for run in runs) else {}),  # a baseline's runs
             "finished": r.finished_at[:16].replace("T", " ")}
            for r in sorted(runs, key=lambda r: (r.task["name"], r.recipe_name, r.recipe_hash, r.seed))]
    shared = {} if args.wide or not rows else {
        column: rows[0][column] for column in _SHARED_RUN_COLUMNS if column in rows[0]
        and len({row[column] for row in rows}) == 1}
    rows = [{column: value for column, value in row.items() if column not in shared} for row in rows]
    title = f"{len(rows)} stored run(s)" + "".join(f", {column} {value}" for column, value in shared.items())
    console.print(title, highlight=False, markup=False)
    table = report.rows_table(rows)
    if not console.is_terminal:  # piped or logged: a row stays one line however wide (--wide), its key whole
        console.width = max(console.width, console.measure(table, options=console.options.update_width(sys.maxsize))
                            .maximum)
    console.print(table)
    if args.md:  # a per-seed table for a paper's appendix
        report.write_markdown(args.md, f"## stabench runs\n\n{title}\n\n{report.markdown(rows)}\n")
    return 0


def _device(environment: dict) -> str | None:
    """What trained a run: a GPU's name, or the CPU's model (its device name is the architecture,
    ``x86_64``), which can end a chaotic run differently."""
    if environment.get("device_kind") == "cpu":
        model = environment.get("cpu_model") or environment.get("device_name")
        return f"cpu ({model})" if model else "cpu"
    return environment.get("device_name")


def cmd_summary(args: argparse.Namespace, console: Console) -> int:
    notes: list[str] = []  # printed, and written under the Markdown's tables

    def note(text: str) -> None:
        notes.append(text)
        console.print(f"[yellow]note: {escape(text)}[/]", highlight=False)

    with Store(_store_path(args), must_exist=True) as store:
        runs = _matching(store, *_filters(args, store), args.seeds, skip_damaged=True)
        if not runs:
            raise ValueError(f"the results store {store.path} holds no runs")
        against, file_hash = None if args.compare in (None, True) else store.recipe_name(args.compare), None
        if against and against.lower().endswith(".json"):  # a recipe file: the studies of its content, any name
            file_hash = get_recipe(against).hash
    studies = group_studies(name_studies(runs))
    if args.metric:  # studies of other tasks may lack it: they are left out, and named
        lacking = [name for name, study_runs in studies if any(args.metric not in r.metrics for r in study_runs)]
        studies = [(name, study_runs) for name, study_runs in studies if name not in lacking]
        if not studies:
            stored = sorted({metric for r in runs for metric in r.metrics})
            raise ValueError(f"--metric {args.metric} is not among the matching runs' metrics; they have "
                             f"{', '.join(stored)}")
        if lacking:
            note(f"left out {len(lacking)} study(ies) without {args.metric}: {'; '.join(lacking)}")
    # Names before name_studies joins them into labels; a recipe file's path names the studies of its content.
    names = {run.key: set(run.recipe_names) | ({against} if run.recipe_hash == file_hash else set()) for run in runs}
    comparisons = [] if args.compare is None else _compared(studies, args.metric, against, names)
    summaries = [summarize_runs(study_runs, args.metric) for _, study_runs in studies]
    rows = [{"study": name, "metric": args.metric or study_runs[0].primary_metric,
             "seeds": report.seed_ranges([r.seed for r in study_runs]),
             "majority acc": report.fmt(study_runs[0].majority_accuracy), **report.summary_row(summary, args.ci)}
            for (name, study_runs), summary in zip(studies, summaries)]
    console.print(report.rows_table(rows, title=f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} "
                                    f"of {sum(len(study_runs) for _, study_runs in studies)} stored run(s)"))
    if mixed := _mixed_cpu_models(studies):
        note(f"{len(mixed)} study(ies) mix CPU runs from different CPU models, which is not part of a run's key "
             f"but can end a chaotic run differently: {'; '.join(mixed)}")
    if args.seeds:
        seeds = set(parse_seeds(args.seeds))
        short = [f"{name} (lacks {report.seed_ranges(seeds - {r.seed for r in study_runs})})"
                 for name, study_runs in studies if seeds - {r.seed for r in study_runs}]
        if short:
            note(f"{len(short)} study(ies) lack some of --seeds {args.seeds}: {'; '.join(short)}")
    if args.compare is not None:
        _print_comparisons(comparisons, studies, against, console, note)
    if args.md:
        report.write_markdown(args.md, f"## stabench summary\n\n{report.markdown(rows)}\n" + (
            f"\n### Comparisons\n\n{_COMPARED}.\n\n"
            f"{report.markdown(report.comparison_rows(comparisons, 'setting'))}\n" if comparisons else "")
            + "".join(f"\n**Note:** {text}.\n" for text in notes))
    if args.json:
        report.write_json(args.json, {"studies": [
            {"study": name, "task": first.task["name"], "train_size": first.task.get("train_size"),
             "model": first.model["name"], "recipe": first.recipe_name, "recipe_hash": first.recipe_hash,
             "metric": args.metric or first.primary_metric, "majority_accuracy": first.majority_accuracy,
             "seeds": [run.seed for run in study_runs], "keys": [run.key for run in study_runs],
             "summary": summary.to_dict(), "produced_by": report.produced_by(study_runs)}
            for (name, study_runs), summary in zip(studies, summaries) for first in study_runs[:1]],
            **({"comparisons": comparisons} if args.compare is not None else {})})
    if args.plots:
        from .plots import plot_studies

        try:
            paths = plot_studies(studies, Path(args.plots), args.metric, args.plot_format)
        except OSError as error:
            raise ValueError(f"cannot write the plots to {args.plots!r}: {error.strerror or error}") from error
        for path in paths:
            console.print(f"wrote {escape(str(path))}", highlight=False)
    return 0


def _mixed_cpu_models(studies: list[tuple[str, list[RunResult]]]) -> list[str]:
    """Studies whose CPU runs came from several CPU models (seeds split over two machines), named
    with those models."""
    mixed = []
    for name, study_runs in studies:
        cpus = sorted({r.environment["cpu_model"] for r in study_runs  # runs that predate the field: unknown
                       if r.environment.get("device_kind") == "cpu" and r.environment.get("cpu_model")})
        if len(cpus) > 1:
            mixed.append(f"{name} ({', '.join(cpus)})")
    return mixed


_COMPARED = (f"{report.COMPARISON_NOTE}; A vs B and B vs A make the two-sided test, and the level is split "
             f"over the ordered pairs compared among the studies of each task, data size, model and stack")


def _compared(studies: list[tuple[str, list[RunResult]]], metric: str | None, against: str | None,
              names: dict[str, set[str]]) -> list[dict]:
    """:func:`gate.compare_studies`, its errors as --compare's (before any table is printed)."""
    try:
        return compare_studies(studies, metric, against, names)
    except AmbiguousRecipe as error:
        raise ValueError(f"--compare {against}: {error} (--recipe-hash)") from None
    except ValueError as error:
        raise ValueError(f"--compare {against}: {error}") from None


def _print_comparisons(entries: list[dict], studies: list[tuple[str, list[RunResult]]], against: str | None,
                       console: Console, note: Callable[[str], None]) -> None:
    """The comparisons' table, with a ``note`` on what --compare left out."""
    if entries:
        console.print(report.rows_table(report.comparison_rows(entries, "setting"), title=_COMPARED))
        if hopeless := [e for e in entries if smallest_split_p(e["n_a"], e["n_b"]) >= e["alpha"]]:
            worst = max(hopeless, key=lambda e: e["n_comparisons"])
            note(f"in {len(hopeless)} of the {len(entries)} comparisons no test with a p-value could pass: at level "
                 f"{worst['alpha']:.3g} ({worst['alpha'] * worst['n_comparisons']:.3g} / {worst['n_comparisons']} "
                 f"ordered pairs), for one, no outcome on {worst['n_a']} vs {worst['n_b']} seeds gives a p that small "
                 f"(at least {smallest_split_p(worst['n_a'], worst['n_b']):.3g}); {_fewer_comparisons(against)} or "
                 f"more seeds")
    else:
        note("--compare found no two studies of one task, data size, model and stack with at least 2 seeds each, "
             "so nothing was compared")
    if few := [name for name, runs in studies if len(runs) < 2]:
        note(f"--compare left out {len(few)} study(ies) with one seed: {'; '.join(few)}")


def _fewer_comparisons(against: str | bool | None) -> str:
    """How to compare less: one recipe against the others, unless that is already asked; fewer
    studies, old versions of an edited recipe included (each version is a study of its own)."""
    fewer = "fewer studies (filters, e.g. --recipe-hash for one version of an edited recipe)"
    return fewer if isinstance(against, str) else f"compare one recipe with the others (--compare NAME), {fewer}"


# The options add_filters adds: those a store query takes (model and recipe resolved first), then
# --seeds and --env, which are parsed on their own.
_QUERY_FILTERS = ("task", "model", "recipe", "tag", "recipe_hash", "train_size")
_FILTERS = (*_QUERY_FILTERS, "seeds", "env")


def _filters(args: argparse.Namespace, store: Store) -> tuple[dict, dict | None]:
    """The store filters a command was given (see ``add_filters``), and its --env as fields."""
    filters = {name: getattr(args, name) for name in _QUERY_FILTERS}
    if filters["model"]:  # a local folder's runs are stored under its own name
        filters["model"] = stored_name(filters["model"])
    if filters["recipe"] and filters["recipe"].lower().endswith(".json"):  # a recipe file: its content, any name
        recipe_hash = get_recipe(filters["recipe"]).hash
        if filters["recipe_hash"] and not recipe_hash.startswith(filters["recipe_hash"]):
            raise ValueError(f"--recipe {filters['recipe']} holds recipe hash {recipe_hash[:SHORT_HASH]}, not "
                             f"--recipe-hash {filters['recipe_hash']}; give one of the two")
        filters["recipe"], filters["recipe_hash"] = None, recipe_hash
    elif filters["recipe"]:
        filters["recipe"] = store.recipe_name(filters["recipe"])
    return filters, parse_env(args.env) if args.env else None


def _matching(store: Store, filters: dict, env: dict | None, seeds: str | None,
              skip_damaged: bool = False) -> list[RunResult]:
    """The runs a command's filters and ``--seeds`` select, read from the store on those seeds
    only and without their traces (no listing shows them).  None, where a filter was given, is an
    error naming the stored values that would have matched (or the seeds the matching runs have).
    ``skip_damaged``: a listing goes on without damaged records, warning of them (a gate does not)."""
    runs = store.query(**filters, env=env, seed=parse_seeds(seeds) if seeds else None, traces=False,
                       skip_damaged=skip_damaged)
    if runs:
        return runs
    on_any_seed = store.query(**filters, env=env, traces=False, skip_damaged=skip_damaged) if seeds else []
    if on_any_seed:
        raise ValueError(f"no matching run has a seed in --seeds {seeds}; they have seeds "
                         f"{report.seed_ranges([r.seed for r in on_any_seed])}")
    if env or any(filters.values()):
        raise ValueError(store.nothing_matches(filters, env))
    return []


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    with Store(_store_path(args), must_exist=True) as store:
        filters, env = _filters(args, store)
        if args.format is None and Path(args.path).suffix.lower() not in (".json", ".csv"):
            raise ValueError(f"cannot tell the format of {args.path!r} from its extension; expected a .json or .csv "
                             f"file, or --format json|csv")
        if not store.count():  # a CI job would upload an empty baseline, and fail only at the compare
            raise ValueError(f"the results store {store.path} holds no runs; nothing was exported to {args.path}")
        try:
            count = store.export(args.path, fmt=args.format, env=env, **filters,
                                 seed=parse_seeds(args.seeds) if args.seeds else None)
        except StoreError:
            if args.seeds:  # nothing on those seeds: the error names the seeds the matching runs have
                try:
                    _matching(store, filters, env, args.seeds)
                except ValueError as error:
                    raise ValueError(f"{error}; nothing was exported to {args.path}") from None
            raise
    console.print(f"exported {count} run(s) to {escape(args.path)}", highlight=False)
    return 0


def cmd_import(args: argparse.Namespace, console: Console) -> int:
    runs = read_export(args.path)  # before the store opens: a bad file leaves no new empty store behind
    if args.no_tags:
        runs = [dataclasses.replace(run, tags=[]) for run in runs]
    tags = sorted({tag for run in runs for tag in run.tags})
    with Store(_store_path(args)) as store, warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedRunsLeftOut)  # a damaged stored run is not this import's business

        def tagged(tag: str) -> list[RunResult]:
            return store.query(tag=tag, traces=False, skip_damaged=True)

        held = {tag: {r.key for r in tagged(tag)} for tag in tags}
        stored_keys = set(store.keys())
        before = store.count()
        try:
            added, skipped = store.merge(runs)
        except KeyboardInterrupt:  # one transaction: rolled back, unless the stop came as it committed
            done = "nothing was imported" if store.count() == before else "the import was stored whole"
            console.print(f"[yellow]interrupted: {done}; running the same command again imports only what is "
                          f"missing[/]", highlight=False)
            return 130
        now = {tag: tagged(tag) for tag in tags}
        studies_apart = _studies_apart(store, [run for run in runs if run.key not in stored_keys])
    merged = f" (kept; the file's {'recipe names' if args.no_tags else 'tags and recipe names'} are added to them)"
    twice = sum(count > 1 for count in collections.Counter(run.key for run in runs).values())
    again = f"; the file holds {twice} of them more than once" if twice else ""
    console.print(f"imported {added} run(s) from {escape(args.path)}; {skipped} already stored"
                  f"{merged if skipped else ''}{again}", highlight=False)
    for note in studies_apart:
        console.print(f"[yellow]note: {escape(note)}[/]", highlight=False)
    for tag in tags:  # a colleague's baseline joins a tag of one's own of the same name: said, never silent
        count = sum(tag in run.tags for run in runs)
        before = f"; it held {len(held[tag])} run(s) here before" if held[tag] else " (new here)"
        console.print(f"tag {escape(repr(tag))}: {count} run(s) of the file{before}", highlight=False)
        try:  # an export from before tags were checked may hold any text: kept, and said
            check_tag(tag)
        except ValueError as error:
            console.print(f"[yellow]note: {escape(str(error))}: tag:NAME and --stabench-tag cannot name it; "
                          f"`stabench untag` takes it off, and `stabench import --no-tags` imports runs without "
                          f"their tags[/]", highlight=False)
        if not {r.key for r in now[tag]} - held[tag]:  # imported again: said before
            continue
        if held[tag]:
            console.print(f"[yellow]note: tag {escape(repr(tag))} now holds runs of the file beside the "
                          f"{len(held[tag])} it held here; `stabench untag` takes runs off, and "
                          f"`stabench import --no-tags` imports runs without their tags[/]", highlight=False)
        _note_versions(console, now[tag], tag)
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    try:
        return _compare(args, console)
    except (ValueError, OSError, RuntimeError, StoreError) as error:
        if args.json:  # a CI step reading the file must not find an earlier run's numbers
            report.write_json(args.json, {"baseline": args.baseline, "current": args.current, "exit_status": 2,
                                          "error": str(error), "nothing_compared": None, "gate": []})
        if args.md:
            report.write_markdown(args.md, f"{_md_title(args)}\n\nerror: {error}\n")
        raise


def _compare(args: argparse.Namespace, console: Console) -> int:
    from .gate import (SAME_RUNS, compare_sources, load_source, parse_limits, reads_store, stored_values_hint,
                       unmatched_baseline_studies)

    if args.current == args.baseline or _same_file(args.current, args.baseline):
        raise ValueError(f"the baseline and the current side are both {args.current!r}, so the runs would be compared "
                         f"with themselves; name the runs to gate as current (e.g. tag:NAME for runs pytest tagged "
                         f"with --stabench-tag=NAME, env:transformers=VERSION for a newer stack's, or store)")
    needs_store = args.current == "store" or reads_store(args.baseline) or reads_store(args.current)
    # Two export files need no store, and a misspelt store path is an error rather than a new store.
    with Store(_store_path(args), must_exist=True) if needs_store else nullcontext() as store:
        baseline = load_source(args.baseline, store)
        filtered = [f"--{name.replace('_', '-')}" for name in _FILTERS if getattr(args, name)]
        if filtered and args.current != "store":
            raise ValueError(f"filters ({', '.join(filtered)}) narrow only the current side 'store'; {args.current!r} "
                             f"names its runs already")
        current = (_matching(store, *_filters(args, store), args.seeds) if args.current == "store"
                   else load_source(args.current, store, role="current"))
        for role, source, runs in (("baseline", args.baseline, baseline), ("current", args.current, current)):
            if not runs:
                raise ValueError(f"{role} {source!r} holds no runs{stored_values_hint(source, store)}")
    results = compare_sources(baseline, current, parse_limits(args.limits), current_is_store=args.current == "store")
    entries = [result.entry() for result in results]
    styles = ["red" if r.fails else "green" if r.verdict == "ok" else "yellow" for r in results]
    console.print(report.rows_table(_as_studies(report.gate_table_rows(entries)), title=f"{args.current} against "
                                    f"baseline {args.baseline}", styles=styles))
    for colour, line in report.gate_messages(entries):
        console.print(f"[{colour}]{escape(line)}[/]", highlight=False)
    if stacks := report.stacks_line(entries):
        console.print(escape(stacks), highlight=False)
    status = 1 if any(r.fails for r in results) else 0
    if same := sum(r.changed == SAME_RUNS for r in results):
        console.print(f"[yellow]note: {same} study(ies) hold only the baseline's own runs (`{SAME_RUNS}`: the same "
                      f"inputs, stack, seeds and scores), so nothing changed since the baseline[/]", highlight=False)
    compared = any(r.baseline for r in results)
    unmatched = sorted({study_label(r.study) for r in results if not r.baseline_keys})
    others = unmatched_baseline_studies(baseline, current, results) if unmatched or not compared else []
    # An unchanged study has no runs outside the baseline, so with the store as the current side it is unmatched.
    unchanged = (" (the store's current side leaves out the baseline's own runs, so studies unchanged since are "
                 "listed too)") if others and args.current == "store" else ""
    if unmatched and compared:
        console.print(f"[yellow]note: {len(unmatched)} current study(ies) found no baseline "
                      f"({escape(', '.join(unmatched))})"
                      + (f"; the baseline's studies that none matched: {escape(', '.join(others))}{unchanged}"
                         if others else "")
                      + "[/]", highlight=False)
    nothing = "" if compared else (f"no study of the current runs has a matching baseline (same task, model and "
                                   f"recipe name or content), so nothing was compared; the baseline's studies that "
                                   f"none matched: {', '.join(others) or 'none'}{unchanged}")
    if nothing:
        console.print(f"[red]{escape(nothing)}[/]", highlight=False)
        status = 2
    if args.json:  # nothing_compared as in pytest's --stabench-json
        report.write_json(args.json, {"baseline": args.baseline, "current": args.current, "exit_status": status,
                                      "nothing_compared": nothing or None, "gate": entries})
    if args.md:
        report.write_markdown(args.md, f"{_md_title(args)}\n\n"
                              f"{report.markdown(_as_studies(report.gate_markdown_rows(entries)))}\n"
                              + report.stacks_markdown(entries) + (f"\n{nothing}\n" if nothing else ""))
    return status


def _same_file(a: str, b: str) -> bool:
    """Two export-file sources that name one file (``e.json`` and ``./e.json``)."""
    return Path(a).is_file() and Path(b).is_file() and Path(a).resolve() == Path(b).resolve()


def _as_studies(rows: list[dict]) -> list[dict]:
    """Gate rows as ``compare`` shows them: what pytest's gate calls the claim is a stored study here."""
    return [{("study" if name == "claim" else name): value for name, value in row.items()} for row in rows]


def _md_title(args: argparse.Namespace) -> str:
    return f"## stabench compare: {args.current} against baseline {args.baseline}"


def cmd_tag(args: argparse.Namespace, console: Console) -> int:
    check_tag(args.name)
    with Store(_store_path(args), must_exist=True) as store:
        filters, env = _filters(args, store)
        try:
            runs = _matching(store, filters, env, args.seeds)
        except ValueError as error:
            raise ValueError(f"{error}; nothing was tagged {args.name!r}") from None
        if not runs:  # an empty store, and no filter
            raise ValueError(f"the results store {store.path} holds no runs; nothing was tagged {args.name!r}")
        added = store.tag([r.key for r in runs], args.name)
    had = f" ({len(runs) - added} had it already)" if added < len(runs) else ""
    console.print(f"tagged {added} of {len(runs)} matching run(s) as {escape(repr(args.name))}{had}", highlight=False)
    _note_versions(console, runs, args.name)
    return 0


def _studies_apart(store: Store, added: list[RunResult]) -> list[str]:
    """For each study where imported runs of a recipe name began a variant of their own (another
    recipe version under the name, other data, another stack) beside a variant that held runs of
    that name before: a line naming the variants.  A verdict reads the runs of its own variant and
    trains the seeds they lack, so runs merged from a box whose data or recipe differed would
    otherwise be found out only by hours of training."""
    imported, notes = {run.key for run in added}, []
    for task, model in sorted({(run.task["name"], run.model["name"]) for run in added}):
        stored = store.query(task=task, model=model, traces=False, skip_damaged=True)
        names = {run.key: set(run.recipe_names) for run in stored}  # before name_studies renames them
        studies: dict[tuple, list[tuple[str, list[RunResult]]]] = {}
        for label, runs in group_studies(name_studies(stored)):
            studies.setdefault(study_key(runs[0]), []).append((label, runs))
        for key, variants in studies.items():
            held = [{n for run in runs if run.key not in imported for n in names[run.key]} for _, runs in variants]
            began = [{n for run in runs if run.key in imported for n in names[run.key]} - before
                     for (_, runs), before in zip(variants, held)]
            if not any(new & before for i, new in enumerate(began) for j, before in enumerate(held) if i != j):
                continue  # joined the variants their names held, or the store held none of their names
            name, counts = study_label(key), []
            for label, runs in variants:
                count = sum(run.key in imported for run in runs)
                counts.append(f"{label.removeprefix(f'{name} [').removesuffix(']')}: {len(runs)} seed(s)"
                              + (f", {count} imported" if count else ""))
            notes.append(f"{name} is stored as {len(variants)} studies ({'; '.join(counts)}); a verdict reads the "
                         f"one of its own recipe, data and stack and trains the seeds it lacks (`stabench "
                         f"summary` lists them)")
    return notes


def _note_versions(console: Console, runs: list[RunResult], tag: str) -> None:
    """A tag holding several versions of one recipe is a baseline that compares only one of them."""
    versions: dict[tuple, set[str]] = {}
    for run in name_studies(runs):  # a recipe's runs under its other names (aliases) are its versions too
        versions.setdefault(study_key(run), set()).add(run.recipe_hash[:SHORT_HASH])
    for (*trained_on, recipe), hashes in sorted(versions.items(), key=lambda item: str(item[0])):
        if len(hashes) > 1:
            console.print(f"[yellow]note: the tag holds {len(hashes)} versions of recipe {escape(repr(recipe))} on "
                          f"{escape(study_label(tuple(trained_on)))} (recipe hashes {', '.join(sorted(hashes))}); "
                          f"as a baseline, each study is compared with its version with the most runs; "
                          f"`stabench untag {escape(tag)} --recipe-hash HASH` takes one version off[/]",
                          highlight=False)


def cmd_untag(args: argparse.Namespace, console: Console) -> int:
    if args.tag not in (None, args.name):
        raise ValueError(f"--tag {args.tag!r} selects runs of another tag than {args.name!r}; untag takes the "
                         f"tag off the runs that hold it, so leave --tag out")
    with Store(_store_path(args), must_exist=True) as store:
        filters, env = _filters(args, store)
        filters["tag"] = args.name
        try:
            runs = _matching(store, filters, env, args.seeds)  # the tag is a filter: none is an error
        except ValueError as error:
            raise ValueError(f"{error}; no run lost the tag {args.name!r}") from None
        removed, claims = store.untag([r.key for r in runs], args.name)
    console.print(f"took the tag {escape(repr(args.name))} off {removed} run(s); the runs stay stored",
                  highlight=False)
    if claims:
        console.print(f"[yellow]note: {len(claims)} pytest claim(s) lost runs of their baseline under "
                      f"{escape(repr(args.name))} ({escape(', '.join(claims))}); `stabench tag` does not give them "
                      f"back, a pytest session with --stabench-tag={escape(args.name)} does[/]", highlight=False)
    return 0


def _text(value: str) -> str:
    """An option's text: an empty one (an unset shell variable, say) would select every run or none."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"{value!r} is empty; expected a value, or leave the option out")
    return value


def _count(value: str) -> int:
    """A count of threads, named as pytest's --stabench-cpu-threads names it, not as int()."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is invalid; expected an integer from 1 to {MAX_COUNT}") from None


class _Once(argparse.Action):
    """A filter given twice would keep only its last value, silently selecting less than asked."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        if getattr(namespace, self.dest) is not self.default:
            remedy = ("give one comma list, e.g. --seeds 0-4,7 or --env torch=2.13.0+cpu,cpu_threads=1"
                      if self.dest in ("seeds", "env") else
                      f"to select several, tag their runs (stabench tag NAME {option_string} A, again with B) and "
                      f"filter --tag NAME")
            raise argparse.ArgumentError(self, f"given twice ({getattr(namespace, self.dest)!r} and {value!r}); a "
                                               f"filter takes one value: {remedy}")
        setattr(namespace, self.dest, value)


def add_filters(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The same run filters (``_FILTERS``) for every command that selects stored runs."""
    for name in ("task", "model", "recipe", "tag"):
        parser.add_argument(f"--{name}", type=_text, action=_Once, help=f"only runs with this {name}")
    parser.add_argument("--recipe-hash", type=_text, action=_Once,
                        help="only runs of this version of a recipe (a start of the hash in stabench runs)")
    parser.add_argument("--train-size", type=_text, action=_Once,
                        help="only runs on a training subsample of this many examples (e.g. 1000), or 'full'")
    parser.add_argument("--seeds", type=_text, action=_Once,
                        help="only runs on these seeds, e.g. 0-24 or 1,3,7 (default: every stored seed)")
    parser.add_argument("--env", type=_text, action=_Once, metavar="FIELD=VALUE,...",
                        help="only runs made under these library versions or devices, as stabench runs shows them, "
                             "e.g. torch=2.13.0+cpu,cpu_threads=2 (fields: " + ", ".join(ALL_KEY_FIELDS) + ")")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stabench", description=__doc__)
    parser.add_argument("--version", action="version", version=_version(),
                        help="print stabench's version and the library versions that key a run, then exit")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--store", type=_text,
                       help="results store (default: the one pytest uses here: --stabench-store in $PYTEST_ADDOPTS or "
                            "addopts, or stabench_store, in pytest.ini, pyproject.toml, ...; else $STABENCH_STORE, "
                            "else .stabench/results.sqlite in pytest's rootdir)")
        p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import a module (a name, or a .py file such as a claim file or conftest.py) first, for "
                            "the tasks and hooks it registers; repeat it for several")
        return p

    run = with_common(sub.add_parser("run", help="fine-tune one task/model/recipe over seeds and summarise"))
    run.add_argument("--task", required=True, help="registered task (same-number, polarity, rte, mrpc, cola, "
                                                   "qnli, sst2) or a name for a local task")
    run.add_argument("--model", default="minilm-l6", help="hub id, local folder, minilm-l6 (the default) or "
                                                         "tiny-bert")
    run.add_argument("--recipe", default="bert-default", help="preset name (default bert-default; mosbach-stable, "
                                                              "...) or a recipe JSON file")
    run.add_argument("--recipe-hash", type=_text, help="with a recipe name the store holds several versions of: "
                                                       "the one whose hash starts so (stabench runs shows them)")
    run.add_argument("--seeds", default="0-4", help="which seeds, e.g. 0-24, 1,3,7 or 0-2,10 (default 0-4); one "
                                                    "number is that one seed, unlike a claim's seeds=N")
    run.add_argument("--set", action="append", metavar="FIELD=VALUE",
                     help="override recipe fields: repeat it or separate them by commas, e.g. lr=1e-3,epochs=1")
    run.add_argument("--train-size", type=int, help="seeded subsample of the training set (e.g. 1000)")
    run.add_argument("--device", help="auto (the default, unless pytest's configuration file sets stabench_device), "
                                      "cpu, cuda or cuda:N")
    run.add_argument("--cpu-threads", type=_count, help="torch threads on a CPU (default: stabench_cpu_threads in "
                                                     "pytest's configuration file, else torch's); part of a CPU "
                                                     "run's key, as pytest's --stabench-cpu-threads")
    run.add_argument("--recompute", action="store_true", help="train again even when a result is stored")
    run.add_argument("--no-store", action="store_true", help="do not read or write the results store")
    run.add_argument("--train-file", help="local task: training file (CSV, TSV or JSON lines)")
    run.add_argument("--eval-file", help="local task: evaluation file")
    run.add_argument("--text-columns", help="local task: one or two comma-separated text columns")
    run.add_argument("--label-column", help="local task: label column (default: label)")
    run.add_argument("--metrics", help="local task: its metrics, the headline one first, e.g. macro_f1,accuracy "
                                       "(default: accuracy)")
    run.set_defaults(handler=cmd_run, command_parser=run)

    runs = with_common(sub.add_parser("runs", help="list stored runs, or show one with --show KEY"))
    add_filters(runs)
    runs.add_argument("--show", type=_text, metavar="KEY",
                      help="print one stored run as JSON (a unique start of its key will do)")
    runs.add_argument("--wide", action="store_true",
                      help="a column for every field, even one that all listed runs share")
    runs.add_argument("--md", metavar="PATH", help="also write the table as Markdown (a row per run)")
    runs.set_defaults(handler=cmd_runs, command_parser=runs)

    summary = with_common(sub.add_parser(
        "summary", help="summarise stored studies: a row per task, model and recipe (mean ± std, failed runs)"))
    add_filters(summary)
    summary.add_argument("--metric", help="summarise this metric (e.g. accuracy next to a task's macro_f1; "
                                          "default: each task's headline metric)")
    summary.add_argument("--md", metavar="PATH", help="also write the table as Markdown")
    summary.add_argument("--json", metavar="PATH", help="also write each study's summary, seeds and run keys as JSON")
    summary.add_argument("--ci", action="store_true",
                         help="also show the 95%% bootstrap intervals of the mean and std and the std's chi-square "
                              "upper bound (--json always has them)")
    summary.add_argument("--compare", nargs="?", const=True, type=_text, metavar="RECIPE",
                         help="also compare each pair of studies of one task, data size, model and stack, both ways "
                              "(Mann-Whitney, Brown-Forsythe, Fisher and ASO, as a claim's compare); with RECIPE (a "
                              "stored name or alias, or a recipe file), only each study against that recipe's")
    summary.add_argument("--plots", metavar="DIR", help="also write a box plot of the scores per task and model, "
                                                         "a box per recipe")
    summary.add_argument("--plot-format", type=str.lower, choices=report.PLOT_FORMATS, default="png",
                         help="the figures' format: png (the default), pdf or svg")
    summary.set_defaults(handler=cmd_summary, command_parser=summary)

    export = with_common(sub.add_parser("export", help="write stored runs to a JSON or CSV file"))
    export.add_argument("path", help="file to write: .json (full records) or .csv (a row per run)")
    export.add_argument("--format", choices=("json", "csv"), help="json or csv (default: from the file's extension)")
    add_filters(export)
    export.set_defaults(handler=cmd_export, command_parser=export)

    imp = with_common(sub.add_parser("import", help="merge runs from an exported file (duplicates skipped)"))
    imp.add_argument("path", help="a .json or .csv file written by stabench export")
    imp.add_argument("--no-tags", action="store_true",
                     help="leave out the file's tags, so its runs join no tag of this store")
    imp.set_defaults(handler=cmd_import, command_parser=imp)

    compare = with_common(sub.add_parser(
        "compare", help="regression gate: exit 1 when a study got significantly worse than its baseline",
        epilog="exit status: 0 no study regressed; 1 a study regressed, or has too few seeds to tell; 2 bad input, "
               "or nothing could be compared. To gate exactly the runs of one pytest session, tag them there "
               "(--stabench-tag=NAME) and compare tag:BASELINE tag:NAME."))
    compare.add_argument("baseline", help="tag:NAME, env:FIELD=VALUE,... or a file written by stabench export")
    compare.add_argument("current", help="same forms, or 'store' for every stored run not in the baseline (the "
                                         "filters below narrow it)")
    add_filters(compare.add_argument_group(
        "filters of the current side 'store'", "e.g. --recipe recipes/mine.json: only the runs of the file's content "
                                               "now, not an earlier experiment stored under its name"))
    compare.add_argument("--gate", "--limits", dest="limits", metavar="LIMITS",
                         help="the limits, as pytest's --stabench-gate: e.g. max_mean_drop=0.01,"
                              "max_std_increase=0.01,max_extra_failures=0,alpha=0.05 (these are the defaults)")
    compare.add_argument("--json", metavar="PATH", help="also write each row with its numbers (summaries, every "
                                                        "check's effect, limit and p-value, run keys) as JSON, as "
                                                        "pytest's --stabench-json does")
    compare.add_argument("--md", metavar="PATH", help="also write the table as Markdown (e.g. for a CI job summary), "
                                                      "as pytest's --stabench-md does")
    compare.set_defaults(handler=cmd_compare, command_parser=compare)

    tag = with_common(sub.add_parser("tag", help="tag stored runs (e.g. as a baseline)"))
    tag.add_argument("name", help="the tag, e.g. baseline (a run can hold several tags)")
    add_filters(tag)
    tag.set_defaults(handler=cmd_tag, command_parser=tag)

    untag = with_common(sub.add_parser("untag", help="take a tag off stored runs (the runs stay)"))
    untag.add_argument("name", help="the tag to take off")
    add_filters(untag)
    untag.set_defaults(handler=cmd_untag, command_parser=untag)
    parser.commands = tuple(sub.choices)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the bad value and where to look, not the usage block."""

    commands: tuple[str, ...] = ()  # the top level's subcommands

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _unrecognized(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """The unknown arguments, with what each was probably meant as: the nearest option or, for
    fields given as options, the one argument that takes them all (``--lr 1e-3 --epochs 1`` on
    ``run`` is ``--set lr=1e-3,epochs=1``; ``--torch 2.13 --cpu-threads 1`` is ``--env
    torch=2.13,cpu_threads=1`` on a command that filters runs and an ``env:`` side of ``compare``)."""
    options = [option for action in parser._actions for option in action.option_strings]
    takes = {"--set ": _RECIPE_FIELDS if "--set" in options else (),  # env: first: compare's --env only narrows
             "env:": ALL_KEY_FIELDS if any(action.dest == "baseline" for action in parser._actions) else (),
             "--env ": ALL_KEY_FIELDS if "--env" in options else ()}
    hints, grouped, notes = {}, {}, []
    for i, word in enumerate(unknown):
        if not word.startswith("--"):
            continue
        name, sep, value = word[2:].partition("=")
        field = name.replace("-", "_")
        if form := next((form for form, fields in takes.items() if field in fields), None):
            following = unknown[i + 1] if i + 1 < len(unknown) and not unknown[i + 1].startswith("--") else None
            grouped.setdefault(form, {})[word] = f"{field}={value if sep else following or 'VALUE'}"
        elif "--set" in options and field in _INSTALLED:
            installed = installed_version(field) or "not installed"
            notes.append(f"a run trains under the {field} installed here ({installed})")
        elif match := difflib.get_close_matches(word.split("=")[0], options, n=1):
            hints[word] = match[0]
    for form, fields in grouped.items():  # given once, with every field
        side = " as the baseline or the current side" if form == "env:" else ""
        hints = {" ".join(fields): f"{form}{','.join(fields.values())}{side}", **hints}
    meant = (next(iter(hints.values())) if len(hints) == 1
             else ", ".join(f"{option} for {word}" for word, option in hints.items()))
    return "; ".join([f"unrecognized arguments: {' '.join(unknown)}", *([f"did you mean {meant}?"] if hints else []),
                      *notes])


_RECIPE_FIELDS = {field.name for field in dataclasses.fields(Recipe)} - {"name"}
_INSTALLED = ("torch", "transformers", "tokenizers", "datasets")  # stack fields no option of ``run`` sets


def _version() -> str:
    """stabench's version and the installed libraries that enter a run's key, for a bug report."""
    stack = ", ".join(f"{dist} {installed_version(dist) or 'not installed'}" for dist in _INSTALLED)
    return f"stabench {installed_version('stabench') or 'not installed'} (python {sys.version.split()[0]}; {stack})"


def import_user_code(names: Sequence[str]) -> None:
    """``--import``: the modules that register a user's tasks and hooks, imported as pytest's
    default import mode imports a claim file (under its package's dotted name, with the folder
    above the package on the path), so a hook hashes as it does under pytest and the CLI reads
    the same runs."""
    for name in names:
        file = Path(name).resolve() if name.endswith(".py") else None
        if file is not None and not file.is_file():
            raise ValueError(f"--import {name}: no such file (relative to {Path.cwd()}); expected a module name or a "
                             f".py file")
        # A file by its package's dotted name; a name from the current folder, which the stabench script lacks.
        folder, module_name = _module_name(file) if file else (Path.cwd(), name)
        try:
            if file and (taken := _origin(module_name)) not in (None, file):
                raise _Taken(taken)
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            module = importlib.import_module(module_name)
            if file and _origin(module_name) != file:  # a built-in module: time, gc
                raise _Taken(getattr(module, "__file__", None) or "a built-in module")
        except KeyboardInterrupt:
            raise
        except _Taken as taken:
            raise ValueError(f"--import {name}: its module name {module_name!r} is taken by {taken}; rename the "
                             f"file") from None
        except ModuleNotFoundError as error:
            if error.name is None or not f"{module_name}.".startswith(f"{error.name}."):  # one the module imports
                raise ValueError(f"--import {name} failed: {error}") from None
            raise ValueError(f"--import {name}: {error} (from {Path.cwd()}); expected a module name or a .py "
                             f"file") from None
        except BaseException as error:  # its own code failed, exited or skipped: one line, as any error here
            raise ValueError(f"--import {name} failed: {type(error).__name__}: {error}") from None


class _Taken(Exception):
    """A file's module name is another module's."""


def _module_name(path: Path) -> tuple[Path, str]:
    """The folder to put on the path and the dotted name to import a file (a resolved path) by: its
    package's folders (those with an ``__init__.py``) lead the name."""
    folder, parts = path.parent, [] if path.stem == "__init__" else [path.stem]  # a package's own file: the package
    while (folder / "__init__.py").is_file():
        folder, parts = folder.parent, [folder.name, *parts]
    return folder, ".".join(parts)


def _origin(module_name: str) -> Path | None:
    """The file a module name imports now, if any: a file named like an installed module
    (``datasets.py``) would shadow it for the rest of the command."""
    module = sys.modules.get(module_name)
    try:
        origin = getattr(module, "__file__", None) if module else getattr(
            importlib.util.find_spec(module_name), "origin", None)
    except (ImportError, ValueError):  # its package is not importable yet, so nothing by that name is
        return None
    return Path(origin).resolve() if origin else None


def _one_seed_note(seeds: str | None) -> str | None:
    """``--seeds 5`` is seed 5 alone here, where pytest's ``--stabench-seeds=5`` is seeds 0-4 (and
    ``--stabench-seeds=1`` seed 0).  Not for a number no seed can be: its error says so."""
    if not (seeds and seeds.strip().isdecimal() and 1 <= int(seeds) <= MAX_SEED):
        return None
    count = int(seeds)
    if count == 1:
        return "--seeds 1 is seed 1 alone; for one seed from 0 (pytest's --stabench-seeds=1) write --seeds 0"
    return f"--seeds {count} is seed {count} alone; for {count} seeds write --seeds 0-{count - 1}"


def main(argv: Sequence[str] | None = None) -> int:
    parser, words = build_parser(), list(sys.argv[1:] if argv is None else argv)
    if words and words[0].startswith("-") and words[0] not in ("-h", "--help", "--version"):
        # argparse said "the following arguments are required: command", or took the option's value for one
        command, rest = next((word for word in words if word in parser.commands), None), list(words)
        if command:
            rest.remove(command)  # the first one: the command moved to the front
        parser.error(f"{words[0]}: options come after the command, as in stabench {command or 'COMMAND'} "
                     f"{' '.join(rest)}; commands: {', '.join(parser.commands)}")
    args, unknown = parser.parse_known_args(words)
    if unknown:  # named by the command's own parser, not the top level's
        args.command_parser.error(_unrecognized(args.command_parser, unknown))
    # Piped or in a CI log, rich would squeeze tables to 80 columns and break words.
    console, stderr = Console() if sys.stdout.isatty() else Console(width=200), Console(stderr=True)
    try:
        import_user_code(args.imports)
        report.check_outputs(lambda name: getattr(args, name, None), lambda name: f"--{name}")  # before any work
        if args.command != "run" and (note := _one_seed_note(getattr(args, "seeds", None))):  # run's is in its header
            stderr.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        shown = set()

        def show(message, *_):
            """One line each, as errors are, not Python's file:line and source; and once: Python's
            own once-per-place forgets what it showed whenever a library touches the filters."""
            if str(message) not in shown:
                shown.add(str(message))
                stderr.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)

        with warnings.catch_warnings():
            warnings.showwarning = show
            return args.handler(args, console)
    except (ValueError, OSError, RuntimeError, StoreError) as error:  # OSError: a read-only or full disk, say
        stderr.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:  # before a command's own handling (while importing torch, say): nothing done yet
        stderr.print("[yellow]interrupted[/]", highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
