"""Export files: the JSON and CSV in which runs travel between stores and machines, and into pandas.

An export holds each run's full record, so an import elsewhere stores exactly the run that was
trained.  Every record of a file is validated before anything is stored: a record edited after
it was stored, one of a newer stabench, or one run twice with different results is refused, and
the store is left as it was.  JSON lists one run a line; CSV has a flat column for each key
field, metric and recipe field (for a spreadsheet) plus the record in ``result_json``.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .recipes import HOOK_FINGERPRINT
from .result import NewerRecord, RunResult, check_seed, fails, key_of_record
from .store import (COLUMNS, StoreError, both_scores, check_storable, collection_paused, column_values,
                    is_sqlite_file, record_of, scored_differently, sqlite_database_of)
from .warn import warn


def read_export(path: str | os.PathLike[str], refused: str = "nothing imported") -> list[RunResult]:
    """The runs of an ``export`` file, each validated; StoreError says what is wrong with it, and
    ``refused`` what came of it (a gate's baseline file is read, not imported)."""
    path = Path(path)
    if is_sqlite_file(path):  # a results store copied from another machine, the natural first try
        raise StoreError(f"{path}: is an SQLite database (a results store?), not an export file; export its runs "
                         f"(stabench export runs.json --store {path}) and give that file")
    try:
        # newline="": a CSV's quoted fields keep their own line endings.
        with open(path, encoding="utf-8-sig", newline="") as fh:  # -sig: a spreadsheet's "CSV UTF-8" starts with a BOM
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read the file: {exc}") from exc
    try:
        with collection_paused():
            if text.lstrip()[:1] in ("[", "{"):
                runs, edited = _parse_json(text), []
            else:
                runs, edited = _parse_csv(text)
    except _Refused as exc:
        raise StoreError(f"{path}: {refused}: {exc}") from exc
    except ValueError as exc:
        raise StoreError(f"{path}: not a stabench export: {exc}") from exc
    if not runs:  # a placeholder, or an export of a store whose runs are damaged: never a CI step's pass
        raise StoreError(f"{path}: holds no runs; expected a `stabench export` file of one or more")
    if edited:  # a spreadsheet's edits: the record is what was trained, and all that is read
        warn(f"{path}: {len(edited)} CSV row(s) show values their record (result_json) does not hold ({edited[0]}); "
             f"only each run's record is read, so those edits count for nothing")
    # key_of_record's None, without computing each key again: a run kept so far matches its own key or has none
    if unchecked := sum(run.environment.get("keyed_fields") is None for run in runs):
        warn(f"{path}: {unchecked} of its {len(runs)} run(s) do not record which fields made their keys "
             f"(stored before 2026-12-05, or the field was taken out), so their keys were not checked "
             f"against their contents")
    first: dict[str, RunResult] = {}
    for run in runs:  # two exports joined: the same run twice is fine, two results under one key are not
        if (seen := first.setdefault(run.key, run)) is not run and scored_differently(seen, run):
            raise StoreError(f"{path}: {refused}: it holds run {run.key} twice with different results "
                             f"({both_scores(seen, run)}); keep one of them")
    return runs


class _Refused(ValueError):
    """A well-formed record that cannot be read as what produced it."""


# Outer type of each RunResult annotation, for checking imported records.
_KINDS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float),
                                       "bool": (bool,), "dict": (dict,), "list": (list,)}


def _run_from_record(record: Any, where: str) -> RunResult:
    """A validated run from one record of an import file; ValueError says what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a run object, got {type(record).__name__}")
    try:
        run = RunResult.from_dict(record)
    except NewerRecord as exc:
        raise _Refused(f"{where}: {exc}: it was written by a newer stabench; upgrade stabench to read it") from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"{where}: invalid run record: {exc}") from exc
    for spec in dataclasses.fields(RunResult):
        kinds = _KINDS.get(str(spec.type).split("[")[0])
        value = getattr(run, spec.name)
        if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise ValueError(f"{where}: field {spec.name!r} should be {spec.type}, "
                             f"got {type(value).__name__}")
        if str(spec.type) == "list[str]" and not all(isinstance(item, str) for item in value):
            raise ValueError(f"{where}: field {spec.name!r} should be {spec.type}, got {value!r}")
    try:  # read from JSON, it can be written as JSON: its key and its text are what a store could refuse
        check_storable(run)
    except StoreError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    _check_text(run, where)
    _check_consistent(run, where)
    return run


def _check_text(run: RunResult, where: str) -> None:
    """The names and tags a store keeps in columns of their own are UTF-8 text; a JSON escape can
    make a lone surrogate, which none of them takes."""
    texts = {**dict(zip(COLUMNS, column_values(run))),
             **{f"tag #{i}": tag for i, tag in enumerate(run.tags)},
             **{f"recipe alias #{i}": alias for i, alias in enumerate(run.recipe_aliases)}}
    for name, text in texts.items():
        try:
            if isinstance(text, str):
                text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Refused(f"{where}: its {name} {text!r} is not UTF-8 text (a lone surrogate, from a JSON "
                           f"escape such as \\udc80)") from None


def _check_consistent(run: RunResult, where: str) -> None:
    """A record whose seed or verdict contradicts its own numbers (hand-edited, or damaged) would
    be read as what produced it; it is refused."""
    check_seed(run.seed, f"{where}: seed ")
    if (own_key := key_of_record(run)) not in (None, run.key):
        made = own_key or "a keyed field is missing"
        raise _Refused(f"{where}: its key {run.key} is not the key of its contents ({made}): the record was "
                       f"edited after it was stored (its seed, task, model, recipe hash or stack), so it cannot be "
                       f"read as what produced it")
    recipe = run.recipe or {}
    if own_key is not None and (not recipe.get("hook") or HOOK_FINGERPRINT in recipe):
        if unknown := sorted(set(recipe) - _recipe_fields() - {HOOK_FINGERPRINT}):
            raise _Refused(f"{where}: its recipe has field(s) {', '.join(unknown)}, which this stabench's recipes "
                           f"lack: it was written by a newer stabench; upgrade stabench to read it")
        if run.recipe_hash not in _recipe_hashes(recipe):
            raise _Refused(f"{where}: its recipe fields do not make its recipe hash {run.recipe_hash}: the record "
                           f"was edited after it was stored (a recipe field), so it cannot be read as what "
                           f"produced it")
    for name in dict.fromkeys([run.primary_metric, "accuracy"]):  # what summaries and the failure test read
        score = run.metrics.get(name, 0.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise _Refused(f"{where}: its {name} is {score!r}; a run's scores are finite numbers")
    accuracy = run.metrics.get("accuracy")
    if accuracy is not None and isinstance(run.majority_accuracy, (int, float)):
        if run.failed != fails(accuracy, run.majority_accuracy, run.diverged):
            raise _Refused(f"{where}: failed={run.failed} contradicts its accuracy {accuracy:g} and majority "
                           f"accuracy {run.majority_accuracy:g} (a run fails at or below the majority)")


def _recipe_fields() -> set[str]:
    from .recipes import Recipe

    return {field.name for field in dataclasses.fields(Recipe)}


def _recipe_hashes(fields: Any) -> set[str]:
    """The hashes a record's recipe fields make now, or made when an earlier version stored it;
    none for fields no recipe takes.  A recipe with a hook also hashes the hook's code: a record
    holds its fingerprint (one stored before 2026-12-06 does not, and is not checked)."""
    from .recipes import Recipe

    try:
        recipe = Recipe(**{k: v for k, v in fields.items() if k != HOOK_FINGERPRINT})
    except (TypeError, ValueError):
        return set()
    if recipe.hook is not None and not isinstance(fields.get(HOOK_FINGERPRINT), str):  # not the hook's code now
        return set()
    negative_zeros = [name for name, value in fields.items()  # as a record stored before 2026-12-07 may hold
                      if isinstance(value, float) and value == 0 and math.copysign(1.0, value) < 0]
    return recipe.recorded_hashes(fields.get(HOOK_FINGERPRINT), negative_zeros)


_EXPORT_CSV_COLUMNS = {"key", "result_json"}  # what makes a CSV an export: the key and the full record


def replaceable_export(path: Path) -> bool:
    """An export may replace nothing, an empty file or an earlier export, never a user's data
    file given as the export's path by mistake.  Only the start is read: an export's JSON opens
    with one run per line, its CSV with a header naming ``key`` and ``result_json``.  A file SQLite
    keeps beside a store (``-wal``, even empty) is refused: the export would lose the store's runs."""
    if (database := sqlite_database_of(path)) is not None:
        raise StoreError(f"cannot export to {path}: it is a file SQLite keeps beside the database {database} (a "
                         f"results store?), so writing it would damage that; name another file")
    if not path.exists():
        return True
    if not path.is_file():
        raise StoreError(f"cannot export to {path}: it is a {'folder' if path.is_dir() else 'special file'}; "
                         f"expected the path of a .json or .csv file")
    if path.stat().st_size == 0:
        return True
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
            if first.strip() != "[":
                return _EXPORT_CSV_COLUMNS <= set(next(csv.reader([first]), []))
            second = handle.readline().strip().rstrip(",")
            if not second:  # an export of no runs, as versions before 2026-12-05 wrote it
                second = handle.readline().strip()
    except UnicodeDecodeError:
        return False
    except OSError as error:
        raise StoreError(f"cannot export to {path}: cannot read the file already there: {error.strerror}") from error
    if second == "]":
        return True
    try:
        record = json.loads(second)
    except ValueError:
        return False
    return isinstance(record, dict) and {"key", "recipe_hash"} <= set(record)


def _parse_json(text: str) -> list[RunResult]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    if isinstance(data, dict) and {"claims", "seeds"} <= set(data):  # --stabench-json's, which names runs only
        raise ValueError("it is a --stabench-json report (claims and seeds), not the runs themselves; `stabench "
                         "export` writes them")
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON list of runs, got {type(data).__name__}")
    return [_run_from_record(record, f"run {i} of {len(data)}") for i, record in enumerate(data, start=1)]


def write_export(path: Path, runs: Iterable[RunResult], fmt: str, listed: Sequence[RunResult] | None = None) -> int:
    """An export file (JSON: a list of full run dicts; CSV: flat rows plus the full record),
    written a run at a time, so ``runs`` may read each from the store as it goes; a CSV takes its
    columns from ``listed`` (the same runs without traces), else from ``runs``, so a run left out
    once its trace proves damaged may leave a metric's column empty.  Returns how many runs it
    wrote."""
    written = 0
    with replaced_atomically(path) as fh:
        if fmt == "json":
            fh.write("[")
            for run in runs:  # one run a line: ``replaceable_export`` reads the first
                fh.write(f"{',' if written else ''}\n{run.to_json()}")
                written += 1
            fh.write("\n]\n")
        else:  # run_table's columns, for pandas or a spreadsheet, and each run's full record, for import
            runs = runs if listed is not None else list(runs)
            columns = _columns(runs if listed is None else listed)
            writer = csv.writer(fh)
            writer.writerow([*map(_cell, columns), "result_json"])
            for run in runs:
                writer.writerow([*map(_cell, _row(run, columns)), record_of(run)])
                written += 1
    return written


@contextlib.contextmanager
def replaced_atomically(path: Path) -> Iterator[Any]:
    """A text file written under a name of its own, then renamed over ``path``: a reader, or a
    process killed mid-write, never leaves half a file, and two writers never share one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as handle:  # the umask's mode, as a plain open
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a read-only folder: the error that matters is the one raised
            tmp.unlink(missing_ok=True)
        raise


def run_table(runs: Iterable[RunResult]) -> list[dict[str, Any]]:
    """A flat row per run: key fields, verdicts, every metric (``metric.accuracy``) and every
    recipe field (``recipe.lr``), the columns of a CSV export without its full record; in a
    notebook, ``pandas.DataFrame(run_table(study.results))``.  Group runs by ``recipe_hash``: a
    study's seeds may be stored under several ``recipe_name``s of one recipe (``recipe_aliases``
    lists the others)."""
    return _table(list(runs))[1]


_FIXED_COLUMNS = [*COLUMNS, "majority_accuracy", "tokenizers", "cpu_threads", "cpu_model", "train_size",
                  "data_fingerprint", "recipe_aliases", "tags"]


def _table(runs: list[RunResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and a row per run (no record: serialising the traces is most of a CSV's work)."""
    columns = _columns(runs)
    return columns, [dict(zip(columns, _row(run, columns))) for run in runs]


def _columns(runs: Sequence[RunResult]) -> list[str]:
    """The fixed columns, then every metric (``metric.accuracy``) and recipe field (``recipe.lr``) of ``runs``."""
    metrics = sorted({name for run in runs for name in run.metrics})
    fields = sorted({name for run in runs for name in (run.recipe or {})})
    return [*_FIXED_COLUMNS, *(f"metric.{name}" for name in metrics), *(f"recipe.{name}" for name in fields)]


def _row(run: RunResult, columns: list[str]) -> list[Any]:
    check_storable(run)
    named = columns[len(_FIXED_COLUMNS):]
    return [*column_values(run), run.majority_accuracy, run.environment.get("tokenizers"),
            run.environment.get("cpu_threads"), run.environment.get("cpu_model"), run.task.get("train_size") or "full",
            run.task.get("fingerprint"), ";".join(run.recipe_aliases), ";".join(run.tags),
            *(run.metrics.get(column.removeprefix("metric.")) if column.startswith("metric.")
              else (run.recipe or {}).get(column.removeprefix("recipe.")) for column in named)]


_NOT_WRITABLE = re.compile("[\x00\ud800-\udfff]")  # in a CSV cell: a NUL, a lone surrogate


def _cell(value: Any) -> Any:
    """A CSV cell.  A NUL (in a user's metric name, say) becomes U+FFFD: Python 3.10's csv cannot
    write one; so does a lone surrogate (an imported JSON escape), which UTF-8 cannot.  The record,
    which ``import`` reads, is JSON, where both are escaped."""
    value = "" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else value
    return _NOT_WRITABLE.sub("\ufffd", value) if isinstance(value, str) else value


def _parse_csv(text: str) -> tuple[list[RunResult], list[str]]:
    """Runs from an exported CSV, and its rows whose columns show what their record does not
    hold, each as its first such cell; only ``result_json`` matters, ``key`` is cross-checked."""
    # A run's traces easily exceed csv's default 128 KiB field limit.
    old_limit = csv.field_size_limit(2**31 - 1)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ValueError(f"invalid CSV: {exc}") from exc
    finally:
        csv.field_size_limit(old_limit)
    if not rows or not _EXPORT_CSV_COLUMNS <= set(rows[0]):
        raise ValueError("expected a JSON list of runs or a CSV with 'key' and 'result_json' columns")
    header = rows[0]
    key_at, json_at = header.index("key"), header.index("result_json")
    runs, edited = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"CSV row {line}: {len(row)} fields, header has {len(header)}")
        try:
            record = json.loads(row[json_at])
        except json.JSONDecodeError as exc:
            raise ValueError(f"CSV row {line}: result_json is not JSON: {exc}") from exc
        run = _run_from_record(record, f"CSV row {line}")
        if run.key != row[key_at]:
            raise ValueError(f"CSV row {line}: key column {row[key_at]!r} does not match the "
                             f"record's key {run.key!r}")
        runs.append(run)
        # The columns beside an old record show it unmigrated; they hold no trace, so none is walked.
        written = RunResult.as_written({**record, "trace": {}})
        cells, columns = dict(zip(header, row)), _columns([written])
        for column, value in zip(columns, _row(written, columns)):
            if (cell := cells.get(_cell(column))) is not None and not _shows(cell, value):
                edited.append(f"row {line}: {_cell(column)} {cell!r}, the record {_cell(value)!r}")
                break
    return runs, edited


def _shows(cell: str, value: Any) -> bool:
    """Whether a CSV cell shows ``value`` as export wrote it, or as a spreadsheet or pandas saves
    it again (``1.00E-05``, ``TRUE``, ``2.0`` or a tag ``2024.0``, a NaN as an empty cell)."""
    written = str(_cell(value))
    if cell == written or isinstance(value, bool) and cell.lower() == written.lower():
        return True
    if isinstance(value, float) and math.isnan(value):
        return cell in ("", "NaN", "nan")
    try:
        return math.isclose(float(cell), float(written), rel_tol=1e-12)
    except (TypeError, ValueError):
        return False
