"""Task registry: GLUE through ``datasets``, local files, and built-in offline tasks.

A task knows its text columns, its metrics and how to load a train and an evaluation split.
``load_task_data`` adds what a run needs on top: the seeded training subsample (the paper's
1k-example study), the majority-class accuracy of the evaluation split, and a fingerprint of
the exact examples, so a stored result says which data produced it.
"""
from __future__ import annotations

import contextlib
import csv
import difflib
import functools
import hashlib
import inspect
import itertools
import json
import math
import os
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hooks import code_shape
from .metrics import known_metrics
from .result import check_seed

if TYPE_CHECKING:  # imported where data is loaded: GPU images may lack `datasets`
    import datasets

GLUE_ID = "nyu-mll/glue"


@dataclass(frozen=True)
class Task:
    """A classification task: text and label columns, metrics (the first is the headline one
    unless ``primary_metric`` says otherwise) and a ``loader`` returning its splits.

    The loader returns a ``datasets.DatasetDict`` or a mapping from split name to a
    ``datasets.Dataset``, a pandas DataFrame or a dict of columns; string labels become class
    ids in sorted order.  Tasks are equal only with the same loader, so a second task under a
    name already in use is an error, never the first one's data.  The loader is called again at
    the start of each ``stabench.study`` (its seeds share that call's data), so data a loader
    returns from a variable that now holds other data is trained as such, under another
    fingerprint; within a process its data is otherwise cached.
    """

    name: str
    text_columns: tuple[str, ...]
    loader: Callable[[], Any] = field(repr=False)
    label_column: str = "label"
    metrics: tuple[str, ...] = ("accuracy",)
    primary_metric: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"
    source: str = "custom"
    description: str = field(default="", compare=False)
    files: tuple[str, ...] = ()  # a local task's files, resolved: the data is reloaded when one changes

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"task name {self.name!r} is invalid; expected a non-empty string")
        if not callable(self.loader):
            raise ValueError(f"task {self.name!r}: loader={self.loader!r} is not callable; expected a function "
                             f"returning the splits")
        columns = _as_columns(self.text_columns)
        if self.label_column in columns:
            raise ValueError(f"label_column={self.label_column!r} is also a text column; expected the column that "
                             f"holds the labels, which the model must not read")
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        unknown = [m for m in metrics if m not in known_metrics()]
        if not metrics or unknown:
            raise ValueError(f"task {self.name!r}: metrics={self.metrics!r} is invalid; expected one or more of "
                             f"{', '.join(known_metrics())}")
        if twice := sorted({m for m in metrics if metrics.count(m) > 1}):  # one content, two keys otherwise
            raise ValueError(f"task {self.name!r}: metrics={self.metrics!r} lists {twice[0]!r} twice; expected each "
                             f"metric once")
        primary = self.primary_metric or metrics[0]
        if primary not in metrics:
            raise ValueError(f"task {self.name!r}: primary_metric={primary!r} is not among its metrics "
                             f"{', '.join(metrics)}")
        object.__setattr__(self, "text_columns", columns)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "primary_metric", primary)


@dataclass(frozen=True)
class TaskData:
    """The examples one run trains and evaluates on."""

    task: Task
    train: datasets.Dataset
    eval: datasets.Dataset
    num_labels: int
    majority_accuracy: float
    fingerprint: str
    train_size: int | None  # the subsample size asked for, None for the full set
    subsample_seed: int
    label_names: list[str] | None = None  # what each label id means, where the data says

    def describe(self) -> dict:
        """The task part of a run key and of a stored result.  A user's task with its own metrics
        records them: a run scored by accuracy alone is not one that macro-F1 can be read from."""
        described = {
            "name": self.task.name,
            "source": self.task.source,
            "eval_split": self.task.eval_split,
            "train_size": self.train_size,
            "subsample_seed": self.subsample_seed if self.train_size is not None else None,
            "fingerprint": self.fingerprint,
            "n_train": len(self.train),
            "n_eval": len(self.eval),
        }
        if self.task.source in ("local", "custom") and (self.task.metrics, self.task.primary_metric) != (
                ("accuracy",), "accuracy"):  # the default keeps the keys runs were stored under
            described.update(metrics=sorted(self.task.metrics), primary_metric=self.task.primary_metric)
        return described


def _from_caller(path: Path) -> str:
    """``path`` as the calling file (a claim file) would name it: where the file exists under a
    folder above the working directory (pytest started in a subfolder of the one the path was
    written for), relative to the caller's folder; else as given."""
    here = Path(os.getcwd())
    found = next((folder / path for folder in (here, *here.parents) if (folder / path).is_file()), None)
    caller = next((frame.filename for frame in inspect.stack(0)[1:]
                   if not frame.filename.startswith(str(Path(__file__).parent))), None)
    installed = {str(Path(prefix).resolve()) for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    if (found is None or caller is None or not caller.endswith(".py") or not Path(caller).is_file()
            or any(str(Path(caller).resolve()).startswith(prefix) for prefix in installed)):  # the console script
        return str(path)
    return os.path.relpath(found, Path(caller).resolve().parent)


def _as_columns(text_columns: str | Sequence[str]) -> tuple[str, ...]:
    """One or two column names, from a list or one string of names separated by commas."""
    columns = text_columns
    if isinstance(columns, str):  # "premise,hypothesis", as the CLI's --text-columns
        columns = [column.strip() for column in columns.split(",")]
    columns = tuple(columns) if isinstance(columns, (list, tuple)) else (columns,)
    if not 1 <= len(columns) <= 2 or not all(isinstance(c, str) and c for c in columns):
        raise ValueError(f"text_columns={text_columns!r} is invalid; expected one or two column names")
    if len(columns) == 2 and columns[0] == columns[1]:  # a pair of one text with itself trains, uselessly
        raise ValueError(f"text_columns={text_columns!r} names {columns[0]!r} twice; expected the two columns of "
                         f"a sentence pair, or one column")
    return columns


class TaskDataError(ValueError):
    """A task's data cannot be trained on as given; the message names the file or split and why."""


_REGISTRY: dict[str, Task] = {}


def register_task(task: Task, replace: bool = False) -> Task:
    """Make ``task`` loadable by its name (in claims, the CLI and stored results).  The same
    definition run again (a module imported again, a notebook cell re-run) replaces its task."""
    registered = _REGISTRY.get(task.name)
    if registered is not None and registered != task and not replace and not _redefines(registered, task):
        differences = _differences(registered, task)
        raise ValueError(f"task {task.name!r} is already registered{f' ({differences})' if differences else ''}; "
                         f"pass replace=True to override it")
    _REGISTRY[task.name] = task
    return task


def _redefines(old: Task, new: Task) -> bool:
    """Whether ``new`` is ``old``'s definition run again: its other fields as they were, and its
    loader the function that made ``old``'s, defined again: the same module, name and code, and
    the same plain values (paths, names, tuples and dicts of them) closed over, so that a loader
    factory called with another file is another task.  Where it starts counts within one file
    (two loaders of one code on two lines are two tasks), not across files: a notebook cell with
    a comment added above its task is compiled as another file."""
    shape = _loader_shape(old.loader)
    if _field_differences(old, new) or shape is None or shape != _loader_shape(new.loader):
        return False
    (old_file, old_line), (new_file, new_line) = _loader_place(old.loader), _loader_place(new.loader)
    return old_file != new_file or old_line == new_line


def _loader_shape(loader) -> tuple | None:
    """What a loader function is, wherever it is defined: None for another callable."""
    code = getattr(loader, "__code__", None)
    if code is None:
        return None
    plain = []
    for cell in loader.__closure__ or ():
        with contextlib.suppress(ValueError):  # a cell not yet filled
            if _is_plain(value := cell.cell_contents):  # by repr: a NaN given again is the same; a dict sorted
                plain.append(repr(dict(sorted(value.items(), key=repr)) if isinstance(value, dict) else value))
    return loader.__module__, loader.__qualname__, code_shape(code), tuple(plain)


_NAMING_ITEMS = 16  # a tuple or dict of up to this many names a task's data; a longer one is the data


def _is_plain(value) -> bool:
    """A path, name or number, or a short tuple or dict of them (``make(("a.csv", "b.csv"))``,
    ``make({"train": "a.csv"})``): what tells a factory's loaders apart.  A list, a longer tuple
    or a DataFrame is data the loader gives, which a notebook cell run again may change."""
    if isinstance(value, dict):
        return len(value) <= _NAMING_ITEMS and all(map(_is_plain, [*value, *value.values()]))
    if isinstance(value, tuple):  # not a set: its order, and so its repr, may differ between equal ones
        return len(value) <= _NAMING_ITEMS and all(map(_is_plain, value))
    return isinstance(value, (str, int, float, Path))


def _loader_place(loader) -> tuple[str, int]:
    return loader.__code__.co_filename, loader.__code__.co_firstlineno


def registered_name(task: str | Task) -> str:
    """The registry name of a task; a Task object (e.g. from ``local_task``) is registered first."""
    if not isinstance(task, Task):
        return get_task(task).name  # an unknown name fails here, naming the known ones
    registered = _REGISTRY.get(task.name)
    if registered is None or registered is not task and _redefines(registered, task):
        register_task(task, replace=True)
    elif registered is not task and registered != task:
        told = ", with ".join(filter(None, (registered.description, _differences(registered, task))))
        raise ValueError(f"task name {task.name!r} is already used by another task in this process"
                         f"{f' ({told})' if told else ''}; give this one another name, or "
                         f"stabench.register_task(task, replace=True) to replace the first")
    return task.name


def _field_differences(old: Task, new: Task) -> list[str]:
    """A task's fields other than its loader that differ from those of the one registered."""
    return [f"{f.name} {getattr(old, f.name)!r} where this one has {getattr(new, f.name)!r}"
            for f in fields(Task) if f.compare and f.name != "loader" and getattr(old, f.name) != getattr(new, f.name)]


def _differences(old: Task, new: Task) -> str:
    """How a task differs from the one registered under its name, e.g. after a notebook cell was
    edited and run again: its columns or metrics (the same files read two ways), or its loader."""
    named = _field_differences(old, new)
    old_shape, new_shape = _loader_shape(old.loader), _loader_shape(new.loader)
    if not named and None not in (old_shape, new_shape):
        (old_file, old_line), (_, new_line) = _loader_place(old.loader), _loader_place(new.loader)
        if old_shape[:2] != new_shape[:2]:  # one file imported under two module names, say
            named.append(f"its loader {'.'.join(old_shape[:2])} where this one's is {'.'.join(new_shape[:2])}")
        elif old_shape[2] != new_shape[2]:
            named.append("a loader whose code differs")
        elif old_shape[3] != new_shape[3]:  # one code, given other files or numbers: the first that differs
            pairs = itertools.zip_longest(old_shape[3], new_shape[3], fillvalue="nothing")
            old_value, new_value = next((a, b) for a, b in pairs if a != b)
            named.append(f"its loader reading {old_value} where this one's reads {new_value}")
        else:  # one code on two lines of one file: each may read other data (its defaults, say)
            named.append(f"its loader on line {old_line} of {old_file} where this one's is on line {new_line}")
    return "; ".join(named)


def did_you_mean(name: str) -> str:
    """`` (did you mean 'rte'?)`` for a misspelt task name, else ''."""
    close = difflib.get_close_matches(name, sorted(_REGISTRY), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get_task(name: str | Task) -> Task:
    if isinstance(name, Task):
        return name
    if not isinstance(name, str):
        raise ValueError(f"task={name!r} is invalid; expected a task name ({', '.join(sorted(_REGISTRY))}) or a "
                         f"stabench.local_task(...)")
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}{did_you_mean(name)}; known tasks: {', '.join(sorted(_REGISTRY))} (a "
                         f"Task from stabench.local_task or Task(...) is known by its name once used: pass the Task "
                         f"itself)")
    return _REGISTRY[name]


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def _datasets():
    """``datasets``, imported on first load; its per-split progress bars would bury a study's own."""
    import datasets

    datasets.disable_progress_bars()
    return datasets


# --- GLUE -----------------------------------------------------------------------------------

def _glue_loader(config: str) -> Callable[[], datasets.DatasetDict]:
    def load() -> datasets.DatasetDict:
        from .profiles import dataset_reason, glue_available

        if not glue_available(config):  # fail now, not after the hub client's retries
            raise RuntimeError(f"could not load {GLUE_ID}/{config} ({dataset_reason()}); it needs the datasets "
                               f"package and Hugging Face hub access or a local datasets cache")
        datasets = _datasets()
        try:
            return datasets.load_dataset(GLUE_ID, config)
        except Exception as error:  # the hub raises many types; all mean "not available here"
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RuntimeError(
                f"could not load {GLUE_ID}/{config} ({reason}); it needs Hugging Face hub access "
                f"or a local datasets cache") from error
    return load


for _name, _columns, _metrics in [
    ("rte", ("sentence1", "sentence2"), ("accuracy",)),
    ("mrpc", ("sentence1", "sentence2"), ("f1", "accuracy")),
    ("cola", ("sentence",), ("mcc", "accuracy")),
    ("qnli", ("question", "sentence"), ("accuracy",)),
    ("sst2", ("sentence",), ("accuracy",)),
]:
    register_task(Task(name=_name, text_columns=_columns, loader=_glue_loader(_name), metrics=_metrics,
                       primary_metric=_metrics[0], source="glue",
                       description=f"GLUE {_name.upper()} ({GLUE_ID}), evaluated on the validation split"))


# --- local files ----------------------------------------------------------------------------

_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
_FORMAT_NAMES = {"csv": "CSV/TSV", "json": "JSON lines"}


def local_task(name: str, train_file: str | os.PathLike, eval_file: str | os.PathLike,
               text_columns: str | tuple[str, ...] | list[str], label_column: str = "label",
               metrics: tuple[str, ...] = ("accuracy",)) -> Task:
    """A task from CSV/TSV/JSON-lines files with named text and label columns.

    ``text_columns`` is a list of one or two names, or one string with the names separated by commas.
    """
    __tracebackhide__ = True  # at a claim file's top, pytest shows the user's line and the error
    registered = _REGISTRY.get(name)
    if registered is not None and registered.source != "local":  # its stored runs and baselines are another data's
        raise ValueError(f"task name {name!r} is taken by another task ({registered.description or registered.source})"
                         f"; give the local task another name, e.g. {name + '-local'!r}")
    given = {"train": Path(train_file), "validation": Path(eval_file)}
    for path in given.values():
        if not path.is_file():
            where = "" if path.is_absolute() else (f" (relative to {os.getcwd()}; in a claim file, Path(__file__).parent "
                                                    f"/ {_from_caller(path)!r} finds it wherever pytest starts)")
            what = "is a folder" if path.is_dir() else "does not exist"
            raise FileNotFoundError(f"task file {str(path)!r} {what}{where}; expected a CSV, TSV or "
                                    f"JSON-lines file")
        if path.suffix.lower() not in _FORMATS:
            raise ValueError(f"task file {str(path)!r} has an unsupported extension; expected one of "
                             f"{', '.join(_FORMATS)}")
    text_columns = _as_columns(text_columns)
    loader = _LocalFiles(given["train"], given["validation"], given["train"].resolve(), given["validation"].resolve(),
                         text_columns, label_column)
    task = Task(name=name, text_columns=text_columns, loader=loader, label_column=label_column, metrics=metrics,
                source="local", description=f"local files {given['train']} / {given['validation']}",
                files=(str(loader.train_resolved), str(loader.validation_resolved)))
    for path in given.values():  # a typo in a column name fails here, where the task is defined
        _check_columns(path, (*text_columns, label_column))
    return task


@dataclass(frozen=True)
class _LocalFiles:
    """A local task's loader, equal for the same files (from any directory) and columns, so the
    same ``local_task`` in a conftest and a test file is one task."""

    train: Path = field(compare=False)  # as the user gave them, for errors
    validation: Path = field(compare=False)
    train_resolved: Path
    validation_resolved: Path
    text_columns: tuple[str, ...]
    label_column: str

    def __call__(self) -> datasets.DatasetDict:
        datasets = _datasets()
        given = {"train": self.train, "validation": self.validation}
        resolved = {"train": self.train_resolved, "validation": self.validation_resolved}
        columns = (*self.text_columns, self.label_column)
        splits = {}
        for split, path in given.items():  # errors name a file as the user did
            kind = _FORMATS[path.suffix.lower()]
            kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            if kind == "csv":  # the task's cells as written: "NA" is a sentence or a class, "0.50" a text, not
                # 0.5; a blank label is missing (named below); other columns are read as pandas reads them
                header = _csv_header(resolved[split], str(path))
                kwargs.update(keep_default_na=False, converters={column: str for column in self.text_columns},
                              na_values={name: [""] if name == self.label_column else sorted(_PANDAS_MISSING)
                                         for name in header if name not in self.text_columns})
            verbosity = datasets.logging.get_verbosity()
            datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # a parse error is logged, then raised
            try:
                splits[split] = datasets.load_dataset(kind, data_files=str(resolved[split]), split="train", **kwargs)
            # the parser's, or pandas'; datasets 5.0 raises TypeError at a JSON line that is no object
            except (datasets.exceptions.DatasetGenerationError, ValueError, TypeError) as error:
                if kind == "json" and (where := _json_error(resolved[split])):  # their words name no line
                    raise TaskDataError(f"cannot read {str(path)!r} as JSON lines: {where}; expected one JSON "
                                        f"object per line") from error
                if not isinstance(error, datasets.exceptions.DatasetGenerationError):
                    raise
                cause = error.__cause__ or error.__context__ or error
                raise TaskDataError(f"cannot read {str(path)!r} as {_FORMAT_NAMES[kind]}: "
                                    f"{str(cause).splitlines()[0]}") from error
            finally:
                datasets.logging.set_verbosity(verbosity)
            _require_columns(str(path), columns, splits[split].column_names, TaskDataError)
            _require_texts(splits[split], self.text_columns, str(path))
        _check_examples(splits["train"], splits["validation"], str(self.train), str(self.validation), columns)
        return datasets.DatasetDict(_labels_to_ids(splits, self.label_column))


def _csv_header(path: Path, where: str) -> list[str]:
    """A CSV/TSV file's column names as pandas, and so datasets, names them: of ``a,a,a.1`` the
    second is ``a.2`` (Excel's "CSV UTF-8" starts with a byte-order mark, which both skip)."""
    import pandas

    try:
        return list(pandas.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", nrows=0,
                                    encoding="utf-8-sig").columns)
    except UnicodeDecodeError as error:
        raise TaskDataError(f"cannot read {where!r} as CSV/TSV: {error}; expected UTF-8 text") from None
    except pandas.errors.EmptyDataError:  # an empty file: datasets names what it lacks
        return []
    except pandas.errors.ParserError as error:  # pandas reads the first row too: an unclosed quote there
        raise TaskDataError(f"cannot read {where!r} as CSV/TSV: {str(error).splitlines()[0]}") from None


# What pandas reads as missing by default (its STR_NA_VALUES): NA, null, N/A, nan, a blank cell, ...
_PANDAS_MISSING = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
                   "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def _require_texts(split: datasets.Dataset, columns: tuple[str, ...], where: str) -> None:
    """Text columns hold JSON strings: a number there is refused (a tokenizer takes none), not
    turned into text, since datasets may already have read a string "007" beside it as 7."""
    datasets = _datasets()
    for column in columns:
        feature = split.features[column]
        if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string", "null"):
            continue
        row, value = next(((row, value) for row, value in enumerate(split[column], start=1)
                           if value is not None and not isinstance(value, str)), (None, None))
        if row is None:  # strings, under a feature of mixed kinds
            continue
        raise TaskDataError(f"row {row} of {where!r} holds {type(value).__name__} {value!r} in column {column!r}, not "
                            f"a text; expected every text in quotes, as a JSON string")


def _json_error(path: Path) -> str | None:
    """Where a JSON-lines file (or one JSON array) stops being JSON, by line; None if it is JSON."""
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            return f"line {error.lineno} is not valid JSON ({error.msg})"
        return None
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 may sit in a JSON string
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            return f"line {number} is not valid JSON ({error.msg})"
        if not isinstance(record, dict):
            return f"line {number} is not a JSON object"
    return None


def _check_examples(train: datasets.Dataset, evaluation: datasets.Dataset, train_name: str, eval_name: str,
                    columns: tuple[str, ...]) -> None:
    """Data a user brings: every example has its texts and a label, and every dev label is
    learnable.  Each error names the file (or task split) as the user would."""
    for name, split in ((train_name, train), (eval_name, evaluation)):
        if not len(split):
            raise TaskDataError(f"{name!r} has no examples; expected at least one per class")
        for column in columns:
            _require_values(name, column, split[column])
    label = columns[-1]
    for name, split in ((train_name, train), (eval_name, evaluation)):
        texts = {_label_text(v) for v in split[label]}
        numbers = sorted((v for v in texts if _INTEGER.fullmatch(v)), key=int)
        if numbers and len(numbers) < len(texts):  # "1" and "yes": two codings, not four classes
            names = sorted(texts - set(numbers))
            raise TaskDataError(f"the labels of {name!r} mix numbers ({', '.join(numbers[:3])}) and names "
                                f"({', '.join(names[:3])}); expected one kind, each class written one way")
    written: dict[str, dict[str, str]] = {}  # "praise" and "praise ": one class written two ways, not two classes
    for name, split in ((train_name, train), (eval_name, evaluation)):
        for text in sorted({_label_text(v) for v in split[label]}):
            written.setdefault(text.strip().lower(), {}).setdefault(text, name)
    for forms in written.values():
        if len(forms) > 1:
            shown = " and ".join(f"{text!r} (in {where!r})" for text, where in sorted(forms.items()))
            raise TaskDataError(f"labels {shown} differ only in spaces or case; expected each class written one way")
    trained = {_label_text(v) for v in train[label]}
    unseen = {_label_text(v) for v in evaluation[label]} - trained
    if unseen:
        raise TaskDataError(f"labels {', '.join(sorted(unseen))} of {eval_name!r} never occur in {train_name!r} "
                            f"(its labels: {', '.join(sorted(trained))}); no model can learn them")


def _check_columns(path: Path, columns: tuple[str, ...]) -> None:
    """The header of a CSV/TSV file, or the first record of a JSON-lines file, has every column.
    (Excel's "CSV UTF-8" starts with a byte-order mark, which datasets skips too.)"""
    __tracebackhide__ = True
    with path.open(newline="", encoding="utf-8-sig") as handle:
        if _FORMATS[path.suffix.lower()] == "json":
            first = next((line for line in handle if line.strip()), None)
            if first is None:
                raise ValueError(f"task file {str(path)!r} is empty; expected one JSON object per line")
            if first.lstrip().startswith("["):
                return  # one JSON array: datasets reads it whole, and checks the columns then
            try:
                record = json.loads(first)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                raise ValueError(f"task file {str(path)!r} is not JSON lines: its first line is not a JSON object")
            header = list(record)
        else:
            tabs = path.suffix.lower() == ".tsv"
            rows = csv.reader(handle, delimiter="\t" if tabs else ",")
            header = next(rows, None)
            if not header or not any(cell.strip() for cell in header):
                raise ValueError(f"task file {str(path)!r} is empty; expected a header row naming the columns, then "
                                 f"one row per example")
            if len(header) == 1 and any(c not in header for c in columns):
                _refuse_other_separator(path, header[0], tabs)
            if not any(any(cell.strip() for cell in row) for row in rows):
                raise ValueError(f"task file {str(path)!r} has no examples, only its header; expected one row "
                                 f"per example below it")
    _require_columns(str(path), columns, header)


def _refuse_other_separator(path: Path, header: str, tabs: bool) -> None:
    """A header read as one column that another separator would split: the file's name says one
    format and its rows another (a spreadsheet's semicolons, in some locales, say)."""
    expected = f"expected {path.suffix} columns separated by {'tabs' if tabs else 'commas'}"
    if ("," if tabs else "\t") in header:
        raise ValueError(f"task file {str(path)!r} has one column, {header!r}, which looks "
                         f"{'comma' if tabs else 'tab'}-separated; {expected}, or name the file "
                         f"{'.csv' if tabs else '.tsv'}")
    if ";" in header:
        fix = "save it tab-separated, or comma-separated named .csv" if tabs else "save it as comma-separated CSV"
        raise ValueError(f"task file {str(path)!r} has one column, {header!r}, which looks semicolon-separated "
                         f"(a spreadsheet's CSV in some locales); {expected}: {fix}")


def _require_columns(where: str, columns: tuple[str, ...], header: list[str],
                     error: type[ValueError] = ValueError) -> None:
    """``where``: the file, or the task split, as the user knows it."""
    __tracebackhide__ = True
    missing = [c for c in columns if c not in header]
    if missing:
        spaced = [name for name in header if name != name.strip() and name.strip() in missing]
        cased = [name for name in header if name.casefold() == missing[0].casefold()]
        close = difflib.get_close_matches(missing[0], header, n=1)
        hint = (f" ({', '.join(map(repr, spaced))} with spaces: write the header without them)" if spaced else
                f" (names are case-sensitive: did you mean {cased[0]!r}?)" if cased else
                f" (did you mean {close[0]!r}?)" if close else "")
        raise error(f"column {missing[0]!r} is missing from {where!r}; it has columns {', '.join(header)}{hint}")


def _require_values(where: str, column: str, values: list) -> None:
    """An empty cell would become None or NaN (or a blank text): named here, not as a label that
    "never occurs" or an example without words."""
    for row, value in enumerate(values, start=1):
        blank = isinstance(value, str) and not value.strip()
        if value is None or isinstance(value, float) and math.isnan(value) or blank:
            raise TaskDataError(f"row {row} of {where!r} has no value in column {column!r} (rows counted "
                                f"from 1, header not counted); every example needs its texts and a label")


def _labels_to_ids(splits: dict[str, datasets.Dataset], column: str) -> dict[str, datasets.Dataset]:
    """Labels become class ids 0 to k-1 in sorted order (numbers by value), the same for both
    splits; the names stay in the column's ClassLabel feature, so a stored run says which id
    meant what."""
    raw = [v for split in splits.values() for v in split[column]]
    values = {_label_text(v) for v in raw}
    named = any(hasattr(split.features.get(column), "names") for split in splits.values())  # GLUE's (its -1 too)
    class_ids = {str(i) for i in range(len(values))}
    if not raw or named or (all(isinstance(v, int) for v in raw) and values == class_ids):
        return splits  # class ids already: 0 to k-1, or a ClassLabel's
    numbers = all(_INTEGER.fullmatch(v) for v in values)  # Yelp's 1/2 are 0/1, not a phantom class 0
    names = sorted(values, key=int if numbers else str)
    ids = {name: i for i, name in enumerate(names)}
    labels = _datasets().ClassLabel(names=names)
    return {name: split.remove_columns(column).add_column(column, [ids[_label_text(v)] for v in split[column]],
                                                          feature=labels)
            for name, split in splits.items()}


_INTEGER = re.compile(r"[-+]?[0-9]+")  # -1/+1 too


def _label_text(value) -> str:
    """A label as one text whatever type a file gave it: 1, 1.0 and "1" are one class."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def label_names(data: datasets.Dataset, column: str) -> list[str] | None:
    """The class names behind the label ids (GLUE's and string-labelled files'), None for bare ids."""
    feature = data.features.get(column)
    return list(feature.names) if hasattr(feature, "names") else None


# --- built-in offline tasks -----------------------------------------------------------------

_NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
_OBJECTS = ["dogs", "apples", "chairs", "books", "cars", "birds", "cups", "boxes", "trees", "shoes", "coins",
            "lamps"]
_NUMBER_TEMPLATES = [
    "we saw {n} {o} yesterday.", "he owns {n} {o}.", "she bought {n} {o} at the market.",
    "there are {n} {o} in the garden.", "they painted {n} {o} last week.", "i counted {n} {o} on the table.",
    "the shop sold {n} {o} today.", "my friend found {n} {o} near the river.",
]


def _same_number_examples(n: int, seed: int) -> dict[str, list]:
    """Pairs of sentences that do (1) or do not (0) mention the same number; labels balanced."""
    rng = random.Random(seed)
    rows = {"sentence1": [], "sentence2": [], "label": []}
    for i in range(n):
        label = i % 2
        first = rng.choice(_NUMBERS)
        second = first if label else rng.choice([w for w in _NUMBERS if w != first])
        obj1, obj2 = rng.sample(_OBJECTS, 2)
        rows["sentence1"].append(rng.choice(_NUMBER_TEMPLATES).format(n=first, o=obj1))
        rows["sentence2"].append(rng.choice(_NUMBER_TEMPLATES).format(n=second, o=obj2))
        rows["label"].append(label)
    order = list(range(n))
    rng.shuffle(order)
    return {column: [values[i] for i in order] for column, values in rows.items()}


_POSITIVE = ["good", "great", "excellent", "wonderful", "lovely", "pleasant", "superb", "delightful",
             "charming", "brilliant"]
_NEGATIVE = ["bad", "awful", "terrible", "poor", "horrible", "dreadful", "boring", "dull", "nasty",
             "disappointing"]
_NOUNS = ["movie", "meal", "concert", "book", "hotel", "trip", "game", "show", "lecture", "party"]
_POLARITY_TEMPLATES = [
    "the {noun} was {adj}.", "honestly, the {noun} felt {adj} to me.", "what a {adj} {noun} that was.",
    "my sister said the {noun} was {adj}.", "everyone agreed the {noun} seemed {adj}.",
    "i found the {noun} rather {adj}.",
]


def _polarity_examples(n: int, seed: int) -> dict[str, list]:
    """Single sentences judging a thing with a positive (1) or negative (0) adjective; balanced."""
    rng = random.Random(seed)
    rows = {"sentence": [], "label": []}
    for i in range(n):
        label = i % 2
        adjective = rng.choice(_POSITIVE if label else _NEGATIVE)
        rows["sentence"].append(rng.choice(_POLARITY_TEMPLATES).format(noun=rng.choice(_NOUNS), adj=adjective))
        rows["label"].append(label)
    order = list(range(n))
    rng.shuffle(order)
    return {column: [values[i] for i in order] for column, values in rows.items()}


def _builtin_loader(make: Callable[[int, int], dict], n_train: int, n_eval: int) -> Callable:
    def load() -> datasets.DatasetDict:
        datasets = _datasets()
        return datasets.DatasetDict({
            "train": datasets.Dataset.from_dict(make(n_train, 1)),
            "validation": datasets.Dataset.from_dict(make(n_eval, 2)),
        })
    return load


BUILTIN_PAIR_TASK = "same-number"
BUILTIN_SINGLE_TASK = "polarity"

register_task(Task(name=BUILTIN_PAIR_TASK, text_columns=("sentence1", "sentence2"),
                   loader=_builtin_loader(_same_number_examples, 256, 256), source="builtin",
                   description="built-in: do both sentences mention the same number? (256 train / 256 dev, "
                               "balanced)"))
register_task(Task(name=BUILTIN_SINGLE_TASK, text_columns=("sentence",),
                   loader=_builtin_loader(_polarity_examples, 256, 256), source="builtin",
                   description="built-in: is the sentence's judgement positive? (256 train / 256 dev, balanced)"))


# --- loading --------------------------------------------------------------------------------

def load_task_data(task: str | Task, train_size: int | None = None, subsample_seed: int = 0) -> TaskData:
    """Load a task's splits, subsample the training set, fingerprint it.  Cached per process (a
    file task's by its files' size and time); another loader's data can change unseen (a
    notebook's DataFrame), so ``stabench.study`` calls :func:`reload_task_data` first."""
    task = get_task(task)
    train_size, subsample_seed = check_train_size(train_size), check_subsample_seed(subsample_seed)
    if train_size is None and subsample_seed != 0:
        raise ValueError(f"subsample_seed={subsample_seed!r} draws a training subsample, so it needs train_size= "
                         f"(e.g. train_size=1000); without it every run trains on the whole set")
    return _load_cached(task, train_size, subsample_seed, (_file_stamps(task), _loads.get(task, 0)))


_loads: dict[Task, int] = {}  # how often each in-memory task's data was asked for afresh


def reload_task_data(task: str | Task) -> None:
    """Call an in-memory task's loader again at its next load (a GLUE, built-in or file task
    cannot change unseen): once per study, so that its seeds train on one call's data."""
    task = get_task(task)
    if task.source not in ("glue", "builtin", "local"):
        _loads[task] = _loads.get(task, 0) + 1


def on_current_data(task: Task, runs: list) -> list:
    """The runs (of ``task``'s name) trained on its data as it is now, by fingerprint: on its
    training set, or on the subsample of it their train_size and subsample_seed draw now.  Loads
    the data; a subsample that cannot be drawn from it any more matches no run."""
    load_task_data(task)  # a task whose data cannot be read is an error, not "no runs"
    fingerprints: dict[tuple, str | None] = {}

    def now(train_size: int | None, subsample_seed: int) -> str | None:
        if (train_size, subsample_seed) not in fingerprints:
            try:
                fingerprints[train_size, subsample_seed] = load_task_data(task, train_size, subsample_seed).fingerprint
            except TaskDataError:  # larger than the data now, or leaving a class out
                fingerprints[train_size, subsample_seed] = None
        return fingerprints[train_size, subsample_seed]

    return [run for run in runs if (run.task or {}).get("fingerprint") == now(
        (run.task or {}).get("train_size"), (run.task or {}).get("subsample_seed") or 0)]


def _file_stamps(task: Task) -> tuple:
    """Size and modification time of a local task's files, so an edited file is loaded again."""
    stamps = []
    for name in task.files:
        try:
            stat = os.stat(name)
        except OSError as error:
            raise TaskDataError(f"task {task.name!r}: cannot read {name!r}: {error.strerror}") from error
        stamps.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


def check_train_size(train_size: int | None, owner: str = "") -> int | None:
    """A training-set subsample is a number of examples, returned as an int (a numpy integer from a
    sweep too); ``owner`` prefixes the error (e.g. "claim ")."""
    if train_size is None:
        return None
    if isinstance(train_size, bool) or not isinstance(train_size, Integral) or train_size < 1:
        raise ValueError(f"{owner}train_size={train_size!r} is invalid; expected a whole number of examples >= 1 "
                         f"(or None for the full set)")
    return int(train_size)


def check_subsample_seed(subsample_seed: int, owner: str = "") -> int:
    """Which subsample of ``train_size`` examples: a seed, returned as an int (a numpy integer from
    a sweep too: it enters the run's key)."""
    check_seed(subsample_seed, f"{owner}subsample_seed=")
    return int(subsample_seed)


@functools.lru_cache(maxsize=16)
def _load_cached(task: Task, train_size: int | None, subsample_seed: int, stamps: tuple) -> TaskData:
    """``stamps`` is only the cache's key: a data file that changed, or a task reloaded, loads again."""
    train, evaluation = _splits(task)
    if train_size is not None and train_size > len(train):
        raise TaskDataError(f"train_size={train_size} is larger than {task.name}'s training set ({len(train)} "
                            f"examples); expected at most {len(train)}, or None for the full set")
    if train_size == len(train):  # the whole set, as train_size=None: the same data, order and runs
        train_size = None
    if train_size is not None:
        classes = set(train[task.label_column])
        train = train.shuffle(seed=subsample_seed).select(range(train_size))
        if left_out := sorted(classes - set(train[task.label_column])):
            names = label_names(train, task.label_column)
            raise TaskDataError(f"train_size={train_size} (subsample_seed={subsample_seed}) leaves class(es) "
                                f"{', '.join(str(names[c] if names else c) for c in left_out)} of {task.name}'s "
                                f"training set out: the subsample is not stratified; use a larger train_size or "
                                f"another subsample_seed")
    labels = evaluation[task.label_column]
    if not labels or not len(train):
        empty = task.eval_split if not labels else task.train_split
        raise TaskDataError(f"task {task.name!r} split {empty!r} has no examples; expected at least one per class")
    names = label_names(evaluation, task.label_column)
    if any(label < 0 for label in labels):
        raise TaskDataError(f"task {task.name!r} split {task.eval_split!r} has unlabelled examples (label -1); "
                            f"evaluate on a labelled split")
    if len(set(labels)) < 2:
        raise TaskDataError(f"task {task.name!r} split {task.eval_split!r} holds one class only (label "
                            f"{names[labels[0]] if names else labels[0]!r}), "
                            f"so its majority accuracy is 1 and every run would count as failed; evaluate on examples "
                            f"of at least two classes")
    num_labels = max(max(train[task.label_column]), max(labels)) + 1
    majority = Counter(labels).most_common(1)[0][1] / len(labels)
    return TaskData(task=task, train=train, eval=evaluation, num_labels=num_labels, majority_accuracy=majority,
                    fingerprint=_fingerprint(task, train, evaluation), train_size=train_size,
                    subsample_seed=subsample_seed, label_names=names)


def _splits(task: Task) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The training and evaluation splits the task's loader returns, as Datasets with class-id labels."""
    splits = task.loader()
    if not isinstance(splits, Mapping):
        raise TaskDataError(f"task {task.name!r}: its loader returned {type(splits).__name__}; expected a "
                            f"datasets.DatasetDict or a dict of splits")
    datasets = _datasets()
    chosen = {}
    for split in (task.train_split, task.eval_split):
        if split not in splits:
            raise TaskDataError(f"task {task.name!r} has no split {split!r}; it has {', '.join(map(str, splits))}")
        data = splits[split]
        if type(data).__name__ == "DataFrame" or isinstance(data, Mapping):  # pandas, without importing it
            data = _in_memory(data, task, f"{task.name}:{split}")  # its columns checked there
        elif isinstance(data, datasets.Dataset):
            _require_columns(f"{task.name}:{split}", (*task.text_columns, task.label_column), data.column_names,
                             TaskDataError)
        else:
            raise TaskDataError(f"task {task.name!r}: split {split!r} is a {type(data).__name__}; expected a "
                                f"datasets.Dataset, a pandas DataFrame or a dict of columns")
        chosen[split] = data
    if task.source == "custom":  # in-memory data, unchecked so far (files are checked as they load)
        _check_examples(chosen[task.train_split], chosen[task.eval_split], f"{task.name}:{task.train_split}",
                        f"{task.name}:{task.eval_split}", (*task.text_columns, task.label_column))
    chosen = _labels_to_ids(chosen, task.label_column)
    return chosen[task.train_split], chosen[task.eval_split]


def _in_memory(data, task: Task, where: str) -> datasets.Dataset:
    """The columns a task reads from a DataFrame or a dict of columns, as a Dataset: texts as
    strings (a file's are), and labels that mix numbers and names as text, so that the checks name
    them as a file's rather than Arrow failing to make one type of them."""
    columns = (*task.text_columns, task.label_column)
    names = {str(name): name for name in data}  # a DataFrame's column 0 is the text column "0"
    _require_columns(where, columns, list(names), TaskDataError)
    if repeated := sorted(name for name, count in Counter(str(name) for name in data).items() if count > 1):
        raise TaskDataError(f"{where!r} names the columns {', '.join(repeated)} more than once; expected each "
                            f"column once")
    table = {}
    for column in columns:
        cells = data[names[column]]
        values = [None if _missing(value) else value for value in (cells.tolist() if hasattr(cells, "tolist")
                                                                   else list(cells))]
        if column in task.text_columns or len({isinstance(v, str) for v in values if v is not None}) > 1:
            values = [_text(value, row, column, where) for row, value in enumerate(values, start=1)]
        table[column] = values
    return _datasets().Dataset.from_dict(table)


def _text(value: Any, row: int, column: str, where: str) -> str | None:
    """A cell of an in-memory text column as text: numbers and booleans as JSON writes them (7 is
    "7"); a list or an object is named."""
    if isinstance(value, (list, dict, tuple, set, frozenset)) or getattr(value, "ndim", 0) > 0:  # not one value
        raise TaskDataError(f"row {row} of {where!r} holds a {type(value).__name__} in column {column!r}; "
                            f"expected a text")
    if value is None or isinstance(value, str):
        return value
    value = value.item() if hasattr(value, "item") else value  # a numpy scalar
    return json.dumps(value) if isinstance(value, (bool, int, float)) else str(value)


def _missing(value: Any) -> bool:
    """None, NaN, or pandas' own missing values (pd.NA, pd.NaT), which a DataFrame cell can hold."""
    return (value is None or isinstance(value, float) and math.isnan(value)
            or type(value).__name__ in ("NAType", "NaTType"))


def _fingerprint(task: Task, *splits: datasets.Dataset) -> str:
    """A hash of the exact examples (texts and labels, in order) of both splits."""
    digest = hashlib.sha256()
    for split in splits:
        for column in (*task.text_columns, task.label_column):
            for value in split[column]:
                digest.update(str(value).encode())
                digest.update(b"\x1f")
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]
