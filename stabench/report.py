"""Tables for people (rich), for CI summaries (Markdown via tabulate) and for machines (JSON)."""
from __future__ import annotations

import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from tabulate import tabulate

from .result import RunResult
from .stats import Comparison, Summary
from .store import sqlite_database_of


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    number = float(value)  # numpy's and torch's scalars too
    return "-" if math.isnan(number) else f"{number:.3f}"


def verdict_text(result: RunResult) -> str:
    """The run's verdict in the paper's terms; with three or more classes, also how many of them it
    ever predicted (a run can beat the majority class while never predicting a minority one)."""
    verdict = "failed" if result.failed else "ok"
    if result.diverged or result.collapsed:  # failed too, said so: "collapsed" alone read as another outcome
        return f"{verdict}, {'diverged' if result.diverged else 'collapsed'}"
    counts = result.prediction_counts or {}
    predicted = sum(1 for count in counts.values() if count)
    return f"{verdict}, predicts {predicted} of {len(counts)} classes" if predicted < len(counts) else verdict


def seed_table(results: Sequence[RunResult]) -> Table:
    """One row per seed: the headline metric, the majority baseline and the verdict."""
    table = Table()
    for column in ("seed", "metric", "score", "accuracy", "majority acc", "verdict", "steps", "time (s)", "steps/s"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for r in sorted(results, key=lambda r: r.seed):
        style = "red" if r.failed else None
        table.add_row(str(r.seed), r.primary_metric, fmt(r.score), fmt(r.metrics.get("accuracy")),
                      fmt(r.majority_accuracy), verdict_text(r), str(r.steps), f"{r.wall_time_s:.1f}",
                      f"{r.steps_per_s:.2f}", style=style)
    return table


STD_CI_MIN_SEEDS = 10  # at 5 seeds the std's "95 %" bootstrap interval covered 67 % (README), at 10 84 %


def summary_row(summary: Summary, intervals: bool = False) -> dict[str, str]:
    """The columns every study table shares, of a Study's ``summary()`` (or the Study); with
    ``intervals``, the bootstrap intervals of the mean and std and the chi-square upper bound of the
    std (what a paper's table reports).  The std's bootstrap interval is shown from
    ``STD_CI_MIN_SEEDS`` seeds: on fewer it cannot reach past the spread the seeds show (the
    chi-square bound beside it can)."""
    if not isinstance(summary, Summary):
        if not _is_study(summary):
            raise TypeError(f"summary_row takes a Study or its summary(), not {type(summary).__name__}")
        summary = summary.summary()
    ci = f"{summary.confidence * 100:g}% CI"  # a summary(confidence=0.9) is not labelled 95 %
    row = {
        "n": str(summary.n),
        "mean ± std": f"{fmt(summary.mean)} ± {fmt(summary.std)}",
        "min / median / max": f"{fmt(summary.min)} / {fmt(summary.median)} / {fmt(summary.max)}",
        f"failed k/n [{ci}]": summary.failures_text(),
        "collapsed": str(summary.collapsed),
    }
    if intervals:
        row[f"mean [{ci}]"] = f"{fmt(summary.mean)} [{fmt(summary.mean_ci[0])}, {fmt(summary.mean_ci[1])}]"
        row[f"std [{ci}]"] = (f"{fmt(summary.std)} [{fmt(summary.std_ci[0])}, {fmt(summary.std_ci[1])}]"
                              if summary.n >= STD_CI_MIN_SEEDS else f"{fmt(summary.std)} [needs {STD_CI_MIN_SEEDS} "
                                                                    f"seeds]")
        row["std upper (chi²)"] = fmt(summary.std_upper) if summary.n >= 2 else "-"  # no std from one run
    return row


def study_rows(studies: Any, intervals: bool = False) -> list[dict[str, str]]:
    """A table's rows for Studies, for ``markdown`` or ``rows_table``: each one's name, task, model
    and recipe, then ``summary_row``'s columns.  ``studies`` is a Study, a list of them (named by
    their arms), or a mapping of names to Studies (a claim's StudySet)."""
    if _is_study(studies):
        studies = [studies]
    named = studies.items() if isinstance(studies, Mapping) else [(study.arm.name, study) for study in studies]
    return [{"study": str(name), "task": task_label(study.results[0].task), "model": study.results[0].model["name"],
             "recipe": study.arm.recipe.name, **summary_row(study, intervals)} for name, study in named]


def task_label(task: Mapping[str, Any]) -> str:
    """A run's task as tables name it: with its subsample's size, ``qnli (1000)``, so the two sides
    of the small-data study differ; the full training set is the name alone."""
    return task["name"] + (f" ({task['train_size']})" if task.get("train_size") else "")


def _is_study(value: Any) -> bool:
    """A Study, told by its ``summary()`` (report does not import claims, which imports report)."""
    return callable(getattr(value, "summary", None))


def gradient_rows(summary: Mapping[str, Any]) -> list[dict[str, str]]:
    """``analysis.gradient_summary``'s numbers as a table's rows, a run each, the failed first: a
    nested dict of lists printed on one line is no way to read Fig. 4's contrast."""
    def number(value: float) -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.3g}"

    return [{"run": label, "seed": str(seed), "recipe": recipe, "drop": number(drop),
             "bottom / top": number(ratio), "vanished": "yes" if vanished else "no",
             "recovered": "yes" if recovered else "no"}
            for label in ("failed", "successful")
            for seed, recipe, drop, ratio, vanished, recovered in zip(
                *(summary[label][column] for column in ("seeds", "recipes", "drop", "bottom_top_ratio", "vanished",
                                                        "recovered")))]


def progress_display(console: Console | None = None) -> Progress:
    """The progress bars of a study (seeds, and the steps of the seed in training), gone when done.
    Descriptions are plain text: a recipe's ``[lr=0.0002]`` is not markup."""
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def seed_ranges(seeds: Sequence[int]) -> str:
    """Seeds as ``stabench run --seeds`` takes them: ``0-4,7``."""
    parts: list[str] = []
    ordered = sorted(set(seeds))
    start = 0
    for i, seed in enumerate(ordered):
        if i + 1 == len(ordered) or ordered[i + 1] != seed + 1:
            first = ordered[start]
            parts.append(str(first) if first == seed else f"{first}-{seed}")
            start = i + 1
    return ",".join(parts)


def rows_table(rows: Sequence[dict[str, Any]], title: str | None = None, styles: Sequence[str | None] = (),
               fold: Sequence[str] = (), width: int = 120) -> Table:
    """A rich table of ``rows``.  Long cells wrap, folding long ids rather than cutting them.  With
    ``fold``, where a ``width`` leaves those columns room (``FOLDED_MIN_WIDTH`` each), only they
    wrap and the others keep their numbers on one line; on a narrower terminal everything wraps,
    as rich would otherwise cut the numbers to fit."""
    table = Table(title=title, title_justify="left")
    if not rows:
        return table
    columns = list(rows[0])
    kept = [c for c in columns if c not in fold]
    needed = sum(max(len(c), *(len(str(row[c])) for row in rows)) + 3 for c in kept) + 1
    room = bool(fold) and width - needed >= FOLDED_MIN_WIDTH * (len(columns) - len(kept))
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=room and column in kept)
    for i, row in enumerate(rows):
        # Text, not markup: claim ids and recipe names contain brackets.
        table.add_row(*[Text(str(v)) for v in row.values()], style=styles[i] if i < len(styles) else None)
    return table


FOLDED_MIN_WIDTH = 16  # a folded name column narrower than this reads as noise


def render(renderable: Any, width: int = 120, color: bool = False) -> str:
    """Render rich output to a string, so callers (pytest's terminal writer) control where it goes."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, color_system="standard" if color else None,
                      soft_wrap=False)
    console.print(renderable)
    return buffer.getvalue()


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A GitHub Markdown table; a ``|`` inside a cell (linked recipe names, a test id) is escaped,
    or it would split the row into extra columns, and a line break (an arm's or task's name may
    hold one) is ``<br>``, or it would start a row of its own."""
    def cell(value: Any) -> Any:
        return re.sub(r"\r\n|\r|\n", "<br>", value.replace("|", "\\|")) if isinstance(value, str) else value

    return tabulate([[cell(v) for v in r.values()] for r in rows], headers=[cell(h) for h in rows[0]] if rows else [],
                    tablefmt="github", disable_numparse=True)  # cells are formatted already: 0.500 stays 0.500


# A gate entry's (``GateResult.entry()``) table columns, in order: a JSON report sorts its keys.
# Its other fields are the text below the table, or the numbers for a JSON reader.
GATE_COLUMNS = ("claim", "task", "model", "recipe", "metric", "baseline", "current", "changed", "gate")


def gate_table_rows(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{column: entry[column] for column in GATE_COLUMNS} for entry in entries]


def gate_markdown_rows(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gate entries as Markdown rows: the table's columns, then one "why" column holding what the
    terminal says below its table (``gate_messages``): a failure's reasons, a near miss (on a
    failed study too) and a note on the baseline's variants."""
    return [{**row, "why": " · ".join(filter(None, (
        entry["why"], entry["unconfirmed"] and f"{'note: ' if entry['why'] else ''}{entry['unconfirmed']}",
        entry["baseline_note"] and f"note: {entry['baseline_note']}")))}
        for row, entry in zip(gate_table_rows(entries), entries)]


def gate_messages(entries: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(colour, line) below a gate table, as the terminal shows it: why a study failed, which
    effects were past their limit without being significant (why a near miss passed, or what
    else changed in a failed study), and which variant of a baseline was compared."""
    lines = []
    for entry in entries:
        if entry["fails"]:
            lines.append(("red", f"{entry['gate']} {entry['claim']}: {entry['why']}"))
        if entry["unconfirmed"]:  # on a failed gate, beside its reasons: a note, not one more
            lines.append(("yellow", f"{'note' if entry['fails'] else entry['gate']} {entry['claim']}: "
                                    f"{entry['unconfirmed']}"))
        if entry["baseline_note"]:
            lines.append(("yellow", f"note {entry['claim']}: {entry['baseline_note']}"))
    return lines


def stack_text(stack: Mapping[str, Any]) -> str:
    """A stack as a reader checks it: ``torch 2.13.0, transformers 5.25.0, tokenizers 0.23.3,
    datasets 5.2.0, cpu Intel Xeon (1 thread), fp32``, or on a GPU ``cuda NVIDIA H100 (CUDA 12.8,
    cuDNN 91000, driver 570.1)``; what a run did not record is left out."""
    parts = [f"{name} {stack[name]}" for name in ("torch", "transformers", "tokenizers", "datasets") if stack.get(name)]
    if stack.get("device_kind") == "cpu":
        threads = stack.get("cpu_threads")
        details = [f"{threads} thread{'s' * (threads != 1)}"] if threads else []
        device = ["cpu", stack.get("cpu_model")]
    else:
        details = [f"{label} {stack[name]}" for name, label in (("cuda", "CUDA"), ("cudnn", "cuDNN"),
                                                                  ("gpu_driver", "driver")) if stack.get(name)]
        device = [stack.get("device_kind"), stack.get("device_name")]
    if device := " ".join(filter(None, device)):
        parts.append(device + (f" ({', '.join(details)})" if details else ""))
    if stack.get("precision"):
        parts.append(stack["precision"])
    return ", ".join(parts) or "not recorded"


def stacks_line(entries: Sequence[dict[str, Any]]) -> str | None:
    """Which stacks a gate compared, each side's once, for the reader of a CI log who asks what was
    tested (the changed column gives only the difference): ``current the same`` where every study
    ran on its baseline's stacks; None where nothing was compared."""
    sides: dict[str, list[str]] = {"baseline": [], "current": []}
    same = True
    for entry in entries:
        detail = entry.get("detail") or {}  # a JSON report kept from before 2026-12-06 has no produced_by
        produced = detail.get("produced_by") or {}
        if detail.get("baseline") is None:  # no baseline: no comparison to describe
            continue
        shown = {side: [stack_text(stack) for stack in (produced.get(side) or {}).get("stacks", [])] for side in sides}
        same = same and set(shown["baseline"]) == set(shown["current"])
        for side, texts in shown.items():
            sides[side] += [text for text in dict.fromkeys(texts) if text not in sides[side]]
    if not sides["baseline"]:
        return None
    before, after = (" | ".join(texts) for texts in sides.values())
    return f"stacks: baseline {before}; current {'the same' if same else after}"


def stacks_markdown(entries: Sequence[dict[str, Any]]) -> str:
    """The stacks line as a Markdown report's paragraph under its gate table; empty without one."""
    stacks = stacks_line(entries)
    return f"\n{stacks[0].upper()}{stacks[1:]}.\n" if stacks else ""


PLOT_FORMATS = ("png", "pdf", "svg")


def check_plot_format(text: str | None) -> str:
    """The figures' file format: png (the default), or pdf / svg for a paper."""
    if text is None:
        return "png"
    if text.lower() not in PLOT_FORMATS:
        raise ValueError(f"plot format {text!r} is invalid; expected {', '.join(PLOT_FORMATS[:-1])} or "
                         f"{PLOT_FORMATS[-1]}")
    return text.lower()


def check_output(path: str | Path, what: str, kind: str, format_option: str) -> None:
    """A report's path (``kind`` md, json or plots), checked before the work that fills it (a pytest
    session's training): one line naming it when it cannot be written, or when a file there is
    no earlier report of that kind (the results store or a data file, named by mistake, would be
    lost).  Missing folders above it are made when it is.  ``format_option`` is how the figures'
    format is given (``--plot-format``), for a plots folder named like a figure."""
    text, path, folder = str(path), Path(path), kind == "plots"
    named = f"{what} {text!r}"
    if not folder and (text.endswith(("/", os.sep)) or path.is_dir()):
        raise ValueError(f"{named} is a folder; expected a file name, e.g. {path / 'report'}")
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{named} is a file; expected a folder for the figures")
    if folder and not path.exists() and path.suffix[1:].lower() in PLOT_FORMATS:
        raise ValueError(f"{named} looks like a figure's file name; expected a folder for the figures (their format: "
                         f"{format_option} {path.suffix[1:].lower()})")
    if not folder and (database := sqlite_database_of(path)) is not None:
        raise ValueError(f"{named} is a file SQLite keeps beside the database {str(database)!r} (a results store?), "
                         f"so writing it would damage that; name another file")
    if not folder and path.exists():
        if not os.access(path, os.W_OK):
            raise ValueError(f"{named} cannot be written: permission denied")
        if not _replaceable(path, kind):
            raise ValueError(f"{named} exists and is not a stabench {'Markdown' if kind == 'md' else 'JSON'} report, "
                             f"so it is left as it is; name a new file, or move it away first")
        if _written_in_place(path):  # only it must be writable
            return
    existing = path.absolute() if folder else path.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{named} cannot be written: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{named} cannot be written: permission denied")


# How the reports written below begin: a Markdown title, and JSON's first (sorted) key.
_MARKDOWN_START = "## stabench "
_JSON_STARTS = tuple(f'  "{key}": ' for key in ("baseline", "claims", "comparisons", "studies"))


def _replaceable(path: Path, kind: str) -> bool:
    """Empty, not a plain file (``/dev/stdout``), or an earlier report of this kind.  Only the start
    is read."""
    if not path.is_file() or path.stat().st_size == 0:
        return True
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline(4096)
            if kind == "md":
                return first.startswith(_MARKDOWN_START)
            return first.strip() == "{" and handle.readline(4096).startswith(_JSON_STARTS)
    except (OSError, UnicodeDecodeError):
        return False


# The stack a JSON report names for each study: what changes a run's numbers, and what ran it.
REPORTED_STACK = ("python", "torch", "transformers", "tokenizers", "datasets", "cuda", "cudnn", "device_kind",
                  "device_name", "gpu_driver", "cpu_model", "cpu_threads", "precision", "stabench",
                  "stabench_git_commit", "stabench_git_dirty", "project_git_commit", "project_git_dirty")


def produced_by(runs: Sequence[RunResult]) -> dict[str, Any] | None:
    """What produced a study's runs, for a JSON report that a CI job keeps without the store: the
    data and model they trained on (one per study: both are in a run's key) and each distinct stack
    they ran under (runs read from the store may come from another).  None without runs."""
    if not runs:
        return None
    stacks: list[dict[str, Any]] = []
    for run in runs:
        stack = {name: run.environment.get(name) for name in REPORTED_STACK}
        if stack not in stacks:
            stacks.append(stack)
    first = runs[0]
    return {"task": {name: first.task.get(name) for name in ("name", "source", "fingerprint", "n_train", "n_eval")},
            "model": {name: first.model.get(name) for name in ("name", "revision", "files_sha256")},
            "stacks": stacks}


def claim_rows(claims: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The claims table from the plugin's claim entries: one row per claim arm (skipped claims
    have their own table), and a "paper" column when claims carry published reference numbers."""
    with_reference = any(c.get("reference") for c in claims)
    arms = Counter(c["claim"] for c in claims)
    rows = []
    for c in sorted(claims, key=lambda c: (c["claim"], c.get("arm", ""))):
        if c["verdict"] != "skipped":
            s = c["summary"] or {}  # none for a claim whose study could not be gathered
            row = {"claim": c["claim"] + (f" ({c['arm']})" if arms[c["claim"]] > 1 else ""),
                   "task": task_label({"name": c["task"], "train_size": c.get("train_size")}),
                   "recipe": c["recipe"], "model": Path(c["model"]).name, "metric": c["metric"] or "-",
                   "n": str(s.get("n", "-")), "mean ± std": f"{fmt(s['mean'])} ± {fmt(s['std'])}" if s else "-",
                   "min / median / max": f"{fmt(s['min'])} / {fmt(s['median'])} / {fmt(s['max'])}" if s else "-",
                   "majority acc": fmt(c["majority"]), "failed k/n [95% CI]": c["failures_text"],
                   "claim verdict": c["verdict"]}  # one per claim, on each of its arms' rows
            if with_reference:
                row["paper"] = c.get("reference") or ""
            rows.append(row)
    return rows


def shared_columns(rows: list[dict[str, str]], names: Sequence[str] = ("task", "model", "metric")
                   ) -> tuple[list[dict], str]:
    """``rows`` without the ``names`` columns every row has the same value in, and those values
    as text for the table's title (``task same-number · model minilm-l6``): a terminal's width
    goes to the claims' names instead.  One row keeps its columns."""
    shared = [name for name in names if len(rows) > 1 and len({row.get(name) for row in rows}) == 1
              and rows[0].get(name) not in (None, "", "-")]  # "metric -": claims that gathered no study
    return ([{k: v for k, v in row.items() if k not in shared} for row in rows],
            " · ".join(f"{name} {rows[0][name]}" for name in shared))


# What a comparison row's "A is" column names, by the Comparison property that shows it.
_SHOWN = (("a_better", "better"), ("a_less_variable", "less variable"), ("a_fewer_failures", "fewer failures"),
          ("a_dominates", "dominant (ASO)"))

COMPARISON_NOTE = ("each p is one-sided, in A's favour: Mann-Whitney for the mean, Brown-Forsythe for the std, "
                   "Fisher for the failures")


def comparison_rows(entries: Sequence[dict[str, Any] | Comparison], owner: str = "claim") -> list[dict[str, str]]:
    """A row per comparison: ``Comparison.to_dict()`` entries, each with what made it under ``owner``
    (the claim whose body called ``Study.compare``, or the studies ``stabench summary --compare`` paired),
    or a script's Comparisons (what ``Study.compare`` returns), which have no such column."""
    comparisons = [entry if isinstance(entry, Comparison) else Comparison(
        **{name: value for name, value in entry.items() if name in Comparison.__dataclass_fields__})
        for entry in entries]
    on = any(c.subject for c in comparisons)  # a column where the comparisons name what they ran
    rows = []
    for entry, c in zip(entries, comparisons):
        made_by = {} if isinstance(entry, Comparison) else {owner: entry[owner]}
        rows.append({**made_by, "A vs B": f"{c.name_a} vs {c.name_b}", **({"on": c.subject or "-"} if on else {}),
                     "metric": c.metric,
                     "mean": f"{fmt(c.mean_a)} vs {fmt(c.mean_b)} (p={c.mannwhitney_p_a_better:.3g})",
                     "std": f"{fmt(c.std_a)} vs {fmt(c.std_b)} (p={c.levene_p_a_less:.3g}"
                            + ("; most of A failed" if c.most_of_a_failed else "") + ")",
                     "failed": f"{c.failures_a}/{c.n_a} vs {c.failures_b}/{c.n_b} (p={c.fisher_p_a_fewer:.3g})",
                     "ASO eps_min": f"{c.aso_eps_min:.3f}", "level": c.level_text(),
                     "A is": ", ".join(text for shown, text in _SHOWN if getattr(c, shown)) or "-"})
    return rows


def skipped_rows(claims: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per missing requirement, with the claims that need it: a suite skipped on a
    laptop needs the same GPU for every claim, and that should read as one line."""
    needed_by: dict[str, list[str]] = {}
    for c in sorted(claims, key=lambda c: c["claim"]):
        if c["verdict"] == "skipped":
            for requirement in c["missing"]:
                needed_by.setdefault(requirement, []).append(c["claim"])
    total = sum(1 for c in claims if c["verdict"] == "skipped")
    return [{"why skipped": requirement,
             "claims": f"all {total}" if len(names) == total else f"{len(names)}: {compact_names(names)}"}
            for requirement, names in sorted(needed_by.items(), key=lambda kv: -len(kv[1]))]


def skipped_title(claims: Sequence[dict[str, Any]]) -> str:
    """The title over :func:`skipped_rows`, in the terminal and the Markdown report."""
    return f"{sum(c['verdict'] == 'skipped' for c in claims)} claim(s) skipped"


def compact_names(claims: list[str]) -> str:
    """``f.py::test_x[rte]``, ``f.py::test_x[mrpc]`` -> ``test_x[rte, mrpc]``."""
    params: dict[str, list[str]] = {}
    for claim in claims:
        name, _, param = claim.rpartition("::")[2].partition("[")
        params.setdefault(name, [])
        if param:
            params[name].append(param.removesuffix("]"))
    return ", ".join(f"{name}[{', '.join(ps)}]" if ps else name for name, ps in params.items())


def check_outputs(given: Callable[[str], Any], named: Callable[[str], str]) -> None:
    """The ``md``, ``json`` and ``plots`` outputs a command was given (``given(name)``, called
    ``named(name)`` in errors: ``--md``, or an ini file's key), checked as :func:`check_output` does."""
    for name in ("md", "json", "plots"):
        if path := given(name):
            check_output(path, named(name), name, named("plot-format"))
    if given("md") and given("json") and Path(given("md")).resolve() == Path(given("json")).resolve():
        raise ValueError(f"{named('md')} and {named('json')} both name {given('md')!r}: the JSON would replace "
                         f"the Markdown; name two files")


def reference_sources(claims: Sequence[dict[str, Any]]) -> list[str]:
    """Where the published numbers beside the measured ones come from, and what they are."""
    return sorted({c["reference_source"] for c in claims if c.get("reference")})


def runs_line(record: dict[str, Any]) -> str:
    """How many runs a pytest session trained, and by what, and how many it read, from its JSON
    record (``Reporter.record``)."""
    trained = record["trained"]
    by_seeds, by_verdicts = trained["by_seed_items"], trained["by_verdicts"]
    judged = {key for c in record["claims"] for key in c.get("keys", ())} | {s["key"] for s in record["seeds"]}
    read = len(judged - set(by_seeds) - set(by_verdicts))
    store = f" ({record['store']})" if record.get("store") else ""
    return (f"runs: {len(by_seeds) + len(by_verdicts)} trained this session ({len(by_seeds)} by seed items, "
            f"{len(by_verdicts)} by verdicts); {read} read from the store{store}")


def session_markdown(record: dict[str, Any]) -> str:
    """A pytest session's Markdown report (a CI job's summary page), from its JSON record alone:
    what stopped it, what it was asked for and did not do, the claims, why some did not pass, the
    comparisons their bodies made, and the regression gate."""
    claims = record["claims"]
    text = "## stabench claims\n\n"
    if record.get("interrupted"):  # first: "No claim ran" alone read as an empty session
        text += f"**The session was {record['interrupted']}.**\n\n"
    text += "".join(f"**Note:** {note}.\n\n" for note in record.get("notes", ()))  # none before 2026-12-07
    if rows := claim_rows(claims):
        text += markdown(rows) + "\n"
    elif record.get("interrupted"):
        text += "No claim's verdict ran.\n"
    elif record["seeds"]:
        text += (f"No claim's verdict ran: only seed items were selected ({runs_line(record)}; the JSON report "
                 f"lists them).\n")
    else:
        text += "No claim ran.\n"
    text += "".join(f"\nPaper column: {source}.\n" for source in reference_sources(claims))
    if failed := sorted({(c["claim"], c["message"]) for c in claims if c.get("message")}):
        text += "\n### Why claims did not pass\n\n" + "".join(
            f"- `{claim}`: {message}\n" for claim, message in failed)  # an arm's gate has its own message
    if skipped := skipped_rows(claims):
        text += f"\n### {skipped_title(claims)}\n\n{markdown(skipped)}\n"
    if record.get("comparisons"):
        text += (f"\n### Comparisons in claims\n\n{COMPARISON_NOTE[0].upper()}{COMPARISON_NOTE[1:]}.\n\n"
                 f"{markdown(comparison_rows(record['comparisons']))}\n")
    if record.get("gate"):
        text += (f"\n## Regression gate against {record.get('baseline') or 'the baseline'}\n\n"
                 f"{markdown(gate_markdown_rows(record['gate']))}\n")
        text += stacks_markdown(record["gate"])
    if record.get("nothing_compared"):
        text += f"\n**The gate failed:** {record['nothing_compared']}.\n"
    return text


def write_markdown(path: str | Path, text: str) -> Path:
    return _write(path, text)


def write_json(path: str | Path, payload: Any) -> Path:
    """Strict JSON (NaN and infinities become null), so any JSON reader takes the file."""
    return _write(path, json.dumps(_strict(payload), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n")


def _written_in_place(path: Path) -> bool:
    """``/dev/stdout``, a pipe or a link: replacing it would replace the link, or need a folder it
    does not have; a missing path or a plain file is replaced whole."""
    return path.is_symlink() or path.exists() and not path.is_file()


def _write(path: str | Path, text: str) -> Path:
    """A file is replaced whole or not at all (a full disk keeps the last report, not an empty
    file); ``/dev/stdout``, a pipe or a link is written through, in place."""
    from .exchange import replaced_atomically

    path = Path(path)
    try:
        if _written_in_place(path):
            path.write_text(text)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(path) as handle:
            handle.write(text)
    except OSError as error:
        raise ValueError(f"cannot write {str(path)!r}: {error.strerror or error}") from None
    return path


def _strict(value: Any) -> Any:
    if isinstance(value, np.generic):  # a numpy scalar: as the Python one
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
