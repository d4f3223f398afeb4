"""pytest plugin: each (claim, seed) is a test item, the claim's verdict is one more.

The plugin only parametrises, schedules and reports: claims and studies live in
``stabench.claims``, training in ``train``, statistics in ``stats``, the gate in ``gate`` and
tables in ``report``.  Seed items are spread over xdist workers (each pinned to a GPU before
CUDA starts); the verdict item reads the stored seeds, trains whatever is still missing under
the store's per-run lock, and then runs the claim's body on the study.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import os
import shlex
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

STUDY_FIXTURE = "study"
UNIT_FIXTURE = "stabench_unit"
VERDICT = "verdict"
VERDICT_MARK = "stabench_verdict"  # on every verdict item, for -m

_OPTIONS = [
    # name, help, kind
    ("store", "results store (SQLite); default $STABENCH_STORE or <rootdir>/.stabench/results.sqlite", "path"),
    ("seeds", "run every claim on these seeds instead of its own: N (seeds 0..N-1), a range 8-15 or a list 1,3,7",
     "str"),
    ("recompute", "train every seed again even when a result is stored", "bool"),
    ("device", "auto (default), cpu, cuda or cuda:N (cuda:N puts every worker on GPU N, unpinned)", "str"),
    ("gpus", "comma-separated GPU ids to spread workers over (default: CUDA_VISIBLE_DEVICES or all)", "str"),
    ("workers-per-gpu", "xdist workers sharing one GPU (default 1)", "int"),
    ("cpu-threads", "torch threads per process on CPU (default: torch's count / workers)", "int"),
    ("set", "override recipe fields in every claim's arms, e.g. precision=bf16,compile=reduce-overhead,"
            "pad_to_multiple_of=32 (stored under the changed recipe, beside the original's runs)", "str"),
    ("profile", "paper (default: the claims' own settings) or toy (tiny model, built-in data, 2 seeds)", "str"),
    ("baseline", "gate on a baseline: tag:NAME, env:FIELD=VALUE,... or a file from `stabench export`; "
                 "the session fails when a claim regresses significantly", "str"),
    ("gate", "regression limits, e.g. max_mean_drop=0.01,max_std_increase=0.01,max_extra_failures=0,alpha=0.05",
     "str"),
    ("tag", "tag every run this session's claims use (e.g. to make them a baseline later)", "str"),
    ("plots", "write per-claim plots (scores per seed, gradient-norm traces, training curves) into this folder",
     "path"),
    ("plot-format", "the plots' format: png (the default), pdf or svg", "str"),
    ("md", "write the claims table, the claims' comparisons and the gate as Markdown to this file (e.g. for a CI "
           "job summary)", "path"),
    ("json", "write every claim, seed, comparison and gate row as JSON to this file", "path"),
]


OPTION_KEYS = tuple(f"stabench_{name.replace('-', '_')}" for name, _, _ in _OPTIONS)  # as the ini file writes them

_METAVAR_BY_KIND = {"path": "PATH", "int": "N", "str": "TEXT"}
_METAVAR_BY_OPTION = {"seeds": "SEEDS", "device": "DEVICE", "gpus": "IDS", "set": "FIELD=VALUE,...",
                      "profile": "NAME", "baseline": "SOURCE", "gate": "LIMIT=VALUE,...", "tag": "NAME",
                      "plots": "DIR", "plot-format": "FORMAT"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stabench", "stabench: fine-tuning stability claims")
    for name, help_text, kind in _OPTIONS:
        dest = "stabench_" + name.replace("-", "_")
        if kind == "bool":
            group.addoption(f"--stabench-{name}", action="store_true", default=None, dest=dest, help=help_text)
            parser.addini(dest, help_text, type="bool", default=False)
        else:
            metavar = _METAVAR_BY_OPTION.get(name, _METAVAR_BY_KIND[kind])
            group.addoption(f"--stabench-{name}", dest=dest, metavar=metavar, help=help_text,
                            type=str,  # an int's text is checked by option(): one line, not argparse's usage
                            action="append" if name in _KEY_VALUE_LISTS else "store")
            parser.addini(dest, help_text, type="int" if kind == "int" else "string", default=None)


# Options of NAME=VALUE lists: each --stabench-NAME adds to the ini file's, a name given again wins.
_KEY_VALUE_LISTS = ("set", "gate")


def option(config: pytest.Config, name: str) -> Any:
    """Command line first, then the ini file ([tool.pytest.ini_options] / pytest.ini); a path
    from the ini file is relative to that file, as pytest's own paths are.  A NAME=VALUE list
    (``--stabench-set``, ``--stabench-gate``) is the list of its texts, the ini file's first."""
    if name in _KEY_VALUE_LISTS:
        return [text for _, text in _list_texts(config, name)] or None
    value = config.getoption("stabench_" + name.replace("-", "_"))
    if value is None:
        return _ini_option(config, name)
    if next(kind for n, _, kind in _OPTIONS if n == name) == "int":
        try:
            return int(value)
        except ValueError:
            from .environment import MAX_COUNT

            raise pytest.UsageError(f"--stabench-{name}: {value!r} is invalid; expected an integer from 1 to "
                                    f"{MAX_COUNT}") from None
    return value


def _list_texts(config: pytest.Config, name: str) -> list[tuple[str, str]]:
    """A NAME=VALUE list option's texts, each with where it was given: the config file's (or
    ``-o``'s), then each ``--stabench-NAME``; an empty ``--stabench-NAME=`` drops those before it."""
    key = "stabench_" + name.replace("-", "_")
    given = config.getoption(key) or []
    if "" in given:
        given = given[len(given) - given[::-1].index(""):]
        texts = []
    elif ini := _ini_option(config, name):  # from the file, or -o
        texts = [(f"-o {key}" if key in _set_by_o(config) else f"{key} in {config.inipath.name}", ini)]
    else:
        texts = []
    return texts + [(f"--stabench-{name}", text) for text in given if text]


def _ini_option(config: pytest.Config, name: str) -> Any:
    """An option's value in the ini file (or ``-o``), checked; None where it has none."""
    dest = "stabench_" + name.replace("-", "_")
    kind = next(k for n, _, k in _OPTIONS if n == name)
    try:
        value = config.getini(dest)
    except (TypeError, ValueError, pytest.UsageError) as error:  # "two" threads, or a TOML number for text
        from .environment import MAX_COUNT

        expected = {"int": f"an integer from 1 to {MAX_COUNT}", "bool": "true or false"}.get(
            kind, f'text in quotes, e.g. {dest} = "..."')
        if (written := _written_ini_value(config, dest)) is not None:
            if isinstance(written, str) and kind in ("int", "bool") and _reads_as(kind, written):
                raise pytest.UsageError(
                    f"{_named(config, name)}: {written!r} is text, where [tool.pytest] takes a TOML "
                    f"{'number' if kind == 'int' else 'boolean'}; write it without quotes: {dest} = "
                    f"{written.strip().lower()}") from None
            raise pytest.UsageError(f"{_named(config, name)}: {written!r} is invalid; expected {expected}") from None
        cause = error.__cause__ or error  # pytest 9.2 wraps the error in a UsageError naming only the file
        raise pytest.UsageError(f"{_named(config, name)} is invalid ({str(cause).splitlines()[0]}); "
                                f"expected {expected}") from None
    if value == "":
        return None
    is_path = kind == "path" or name == "baseline" and not str(value).startswith(("tag:", "env:"))  # an export file
    if is_path and value is not None and config.inipath is not None:
        value = str(config.inipath.parent / os.path.expanduser(value))  # an absolute path stays as it is
    return value


def _given_by(config: pytest.Config, name: str) -> str:
    """Where an option's value comes from: "option" (--stabench-NAME, or nowhere: its default),
    "-o" (pytest's -o/--override-ini) or "ini" (the ini file)."""
    key = "stabench_" + name.replace("-", "_")
    if config.getoption(key) is not None:
        return "option"
    if key in _set_by_o(config):
        return "-o"
    if config.inipath is None:
        return "option"
    try:
        return "ini" if config.getini(key) not in ("", None) else "option"
    except (TypeError, ValueError, pytest.UsageError):  # a value of the wrong type is there
        return "ini"


def _reads_as(kind: str, text: str) -> bool:
    """Whether ``text`` is an integer (``kind`` "int") or a boolean ("bool") as an ini file writes one."""
    if kind == "bool":
        return text.strip().lower() in ("true", "false")
    try:
        int(text)
    except ValueError:
        return False
    return True


def _check_option_keys(config: pytest.Config) -> None:
    """A misspelt ``stabench_*`` key is refused: pytest only warns, and its option keeps its
    default (runs keyed by another thread count, a store elsewhere).  A key that a conftest or
    another plugin registers is theirs; and ``--help``, which lists the right names, still shows."""
    from .settings import check_option_keys

    if config.option.help:
        return

    def registered(key: str) -> bool:
        try:
            config.getini(key)
        except ValueError as error:
            return not str(error).startswith("unknown configuration value")
        except Exception:  # registered, with a value of the wrong kind: its owner's to say
            return True
        return True

    try:
        check_option_keys(_written_ini_keys(config), lambda key: f"{key} in {config.inipath.name}", registered)
        check_option_keys(_set_by_o(config), "-o {!r}".format, registered)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def _written_ini_keys(config: pytest.Config) -> dict[str, object]:
    """The keys and values of the ini file's pytest section as written; none where pytest read
    none (or the file is one only pytest reads)."""
    from .settings import pytest_section

    try:
        return (pytest_section(config.inipath) or {}) if config.inipath is not None else {}
    except ValueError:
        return {}


def _written_ini_value(config: pytest.Config, key: str) -> object | None:
    """The ini key ``key`` as -o or the file wrote it, for an error naming the value pytest could
    not read (pytest's own error is int()'s); None where it cannot be read back."""
    overrides = _set_by_o(config)
    return overrides[key] if key in overrides else _written_ini_keys(config).get(key)


def _set_by_o(config: pytest.Config) -> dict[str, str]:
    """The ini keys this session's -o/--override-ini sets, with their values."""
    from .settings import override_ini

    return override_ini(config.getoption("override_ini") or ())


def _from_ini(config: pytest.Config, name: str) -> bool:
    """Whether an option's value comes from the ini file, not the command line."""
    return _given_by(config, name) == "ini"


def _named(config: pytest.Config, name: str, value: str | None = None) -> str:
    """How an option was given, for its messages: ``--stabench-gate``, ``-o stabench_gate`` or the
    ini file's ``stabench_gate``; with ``value``, ``--stabench-tag=base`` or ``stabench_tag=base in
    tox.ini``."""
    given, key = "" if value is None else f"={value}", f"stabench_{name.replace('-', '_')}"
    by = _given_by(config, name)
    if by == "ini":
        return f"{key}{given} in {config.inipath.name}"
    return f"-o {key}{given}" if by == "-o" else f"--stabench-{name}{given}"


def _recipe_overrides(config: pytest.Config) -> dict:
    """--stabench-set as typed recipe fields."""
    texts = _list_texts(config, "set")
    if not texts:
        return {}
    from .recipes import Recipe, parse_overrides

    try:
        overrides = parse_overrides([text for _, text in texts])
        Recipe().replace(**overrides)  # validates the values too, together (schedule=constant beside warmup=0)
    except ValueError as error:
        where = _named(config, "set")
        for given, text in texts:  # named where it was given, where one text fails alone
            try:
                Recipe().replace(**parse_overrides([text]))
            except ValueError as alone:
                where, error = given, alone
                break
        raise pytest.UsageError(f"{where}: {error}") from None
    return overrides


def _check_options(config: pytest.Config) -> list | None:
    """Bad option values, paths and baselines stop the session with one line, before any item runs.

    Returns the baseline's runs where this process loaded them (the controller), else None.
    """
    _check_values(config)
    if _is_worker(config):
        return None
    _check_spaced_paths(config)
    _check_worker_count(config)  # pinning, and a bad store or report path, fail now, not after the training
    _check_paths(config)
    return _load_baseline(config)


def _check_spaced_paths(config: pytest.Config) -> None:
    """``--stabench-store /elsewhere/s.sqlite``, with a space: pytest picks its rootdir and config
    file before plugins' options are known, taking the value for a test path, so a path outside
    the project can make it miss the project's ini file (thread count, store, gate) and rename
    every claim (node ids are relative to the rootdir).  Stopped where pytest chose what the
    values give and they changed it."""
    from _pytest.config.findpaths import determine_setup
    from _pytest.pathlib import safe_exists

    args = [*shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *config.invocation_params.args]
    options = {f"--stabench-{name}" for name, _, kind in _OPTIONS if kind != "bool"}
    spaced = [(name, value) for name, value in zip(args, args[1:])
              if name in options and safe_exists(Path(value.split("::")[0]))]  # as pytest tells a path
    if not spaced:
        return
    known = config.known_args_namespace  # parsed again once plugins loaded: the values are theirs
    paths = [arg for arg in known.file_or_dir if arg in args]  # not the ini's addopts, read after pytest chose

    def setup(extra: list[str]) -> tuple[Path, Path | None]:
        return determine_setup(inifile=known.inifilename, override_ini=known.override_ini, args=[*paths, *extra],
                               rootdir_cmd_arg=known.rootdir or None, invocation_dir=config.invocation_params.dir)[:2]

    meant, taken = setup([]), setup([value for _, value in spaced])
    if (config.rootpath, config.inipath) == taken != meant:  # else pytest knew the options, or they moved nothing
        name, value = spaced[0]
        raise pytest.UsageError(f"{name} {value}: given after a space, pytest took {value!r} for a test path while "
                                f"choosing its rootdir and config file (before stabench's options are known), and "
                                f"chose {taken[0]} and {taken[1] or 'no config file'} instead of {meant[0]} and "
                                f"{meant[1] or 'no config file'}; write {name}={value}")


def _check_values(config: pytest.Config) -> None:
    """Each option's value, named where it was given; and options that contradict each other."""
    _check_option_keys(config)
    checks = [("device", _checker("environment", "resolve_device", empty="auto")),
              ("cpu-threads", _checker("environment", "check_positive_count")),
              ("workers-per-gpu", _checker("environment", "check_positive_count")),
              ("tag", _checker("store", "check_tag")),
              ("plot-format", _checker("report", "check_plot_format"))]
    option(config, "recompute")  # read once now: a bad ini value is refused before any item runs
    if not _is_worker(config):  # a worker sees only the GPU it was pinned to
        checks.append(("gpus", _checker("environment", "check_gpu_ids")))
    if _names_one_gpu(option(config, "device")):
        for name in ("gpus", "workers-per-gpu"):
            if option(config, name):
                raise pytest.UsageError(
                    f"--stabench-device={option(config, 'device')} names one GPU while --stabench-{name}="
                    f"{option(config, name)} spreads workers over GPUs; give one of them (--stabench-device=cuda "
                    f"with --stabench-{name})")
    for name, check in checks:
        try:
            check(option(config, name))
        except ValueError as error:
            raise pytest.UsageError(f"{_named(config, name)}: {error}") from None
    for where, text in _list_texts(config, "gate"):  # each named where it was given
        try:
            _checker("gate", "parse_limits")(text)
        except ValueError as error:
            raise pytest.UsageError(f"{where}: {error}") from None
    baseline = option(config, "baseline")
    if baseline and baseline == f"tag:{option(config, 'tag')}":
        where = (f" (set by {_named(config, 'baseline')}; --stabench-baseline= turns it off)"
                 if _from_ini(config, "baseline") else "")
        raise pytest.UsageError(
            f"--stabench-tag={option(config, 'tag')} is also the baseline {baseline}{where}: the gate would compare "
            f"this session's runs with themselves and pass; tag them under another name, or tag them as "
            f"{option(config, 'tag')!r} in a later session once the gate passes (stored runs are reused)")


def _check_paths(config: pytest.Config) -> None:
    """The store and the reports' paths.  A store named for this session (not the default, which
    every pytest run in the project would open) that is no store stops it now; a missing one is
    made when a run is stored, and one that cannot be written fails each run before it trains
    (stored runs still read)."""
    from .store import SQLITE_SIDE_FILES, Store, StoreError, check_folder_possible

    path = store_path(config)
    if (option(config, "store") or os.environ.get("STABENCH_STORE")) and Path(path).exists():
        try:
            Store(path, must_exist=True).close()
        except (OSError, StoreError) as error:
            raise pytest.UsageError(f"{_store_named(config)}: {error}") from None
    elif option(config, "store") or os.environ.get("STABENCH_STORE"):  # its folder must be possible to make
        try:
            check_folder_possible(Path(path).parent)
        except StoreError as error:
            raise pytest.UsageError(f"{_store_named(config)}: {error}") from None
    if any(option(config, name) for name in ("md", "json", "plots")):
        from .report import check_outputs

        try:
            check_outputs(lambda name: option(config, name), lambda name: _named(config, name))
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None
    store_files = {Path(f"{Path(path).resolve()}{side}"): side for side in ("", *SQLITE_SIDE_FILES)}
    for name in ("md", "json"):  # a store made during this session would be written over at its end
        if (report := option(config, name)) and (side := store_files.get(Path(report).resolve())) is not None:
            what = f"SQLite's {side[1:]} file beside the results store" if side else "the results store"
            raise pytest.UsageError(f"{_named(config, name)} {report!r} is {what}; name another file")


def _load_baseline(config: pytest.Config) -> list | None:
    """The baseline's runs, loaded once by the controller: a gate with nothing to compare stops
    the session now.  None without a baseline."""
    baseline, path = option(config, "baseline"), store_path(config)
    if not baseline:
        return None
    from .gate import load_source, reads_store, stored_values_hint
    from .store import Store, StoreError

    try:
        if reads_store(baseline):
            if not Path(path).is_file():
                raise pytest.UsageError(
                    f"{_named(config, 'baseline')}: {baseline!r} reads the results store, and there is no store "
                    f"at {path} ({_store_named(config)}); store and tag a baseline first, or give an export "
                    f"file (stabench export)")
            with Store(path, must_exist=True) as store:
                runs = load_source(baseline, store)
                hint = "" if runs else stored_values_hint(baseline, store)
        elif not Path(baseline).is_file() and Path(path).is_file():  # a tag's name without tag:, say
            with Store(path, must_exist=True) as store:
                runs, hint = load_source(baseline, store), ""
        else:  # an export file: no store is opened, so a bad file leaves no new empty one behind
            runs, hint = load_source(baseline), ""
    except (ValueError, OSError, StoreError) as error:
        raise pytest.UsageError(f"{_named(config, 'baseline')}: {error}") from None
    if not runs:
        where, advice = f" in {path}{hint}", "tag a baseline first (--stabench-tag or stabench tag)"
        if baseline.startswith("env:"):
            advice = "name values that stored runs hold together (stabench runs --wide lists them)"
        elif not reads_store(baseline):  # an export file
            where, advice = "", "export runs into it (stabench export)"
        raise pytest.UsageError(f"{_named(config, 'baseline')}: {baseline!r} holds no runs{where}; {advice}")
    return runs


def _checker(module: str, check: str, empty: str | None = None) -> Callable[..., Any]:
    """``stabench.<module>.<check>``, imported when an option is given: the plugin loads in every
    pytest session of the environment, and torch and scipy take seconds to import.  An empty
    value (``--stabench-device=``) is checked as ``empty`` where one is given: the default."""
    def run(value: Any) -> Any:
        if value is None:
            return None
        return getattr(importlib.import_module(f"stabench.{module}"), check)(empty if value == "" and empty else value)

    return run


def store_path(config: pytest.Config) -> Path:
    """The session's results store as given (for messages): --stabench-store (or its ini key), else
    $STABENCH_STORE, else ``.stabench/results.sqlite`` under the rootdir."""
    from .store import default_store_path

    return Path(option(config, "store") or default_store_path(config.rootpath))


def store_file(config: pytest.Config) -> Path:
    """The store's path to open: a relative one taken from the folder pytest started in.  The
    store opens in the first claim item, after its fixtures ran, and a fixture's
    ``monkeypatch.chdir(tmp_path)`` put each seed's runs in a temporary folder."""
    return config.invocation_params.dir / store_path(config)


def _store_named(config: pytest.Config) -> str:
    """Where the store's path came from, for its errors."""
    if option(config, "store"):
        return _named(config, "store")
    if os.environ.get("STABENCH_STORE"):
        return "$STABENCH_STORE"
    return "the default; --stabench-store or stabench_store names another"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stabench(task, model, recipe, seeds, arms, train_size, toy, requires, gate, "
                                       "reference): a fine-tuning stability claim (use stabench.claim)")
    config.addinivalue_line("markers", f"{VERDICT_MARK}: a claim's verdict item (set by stabench); -m 'not "
                                       f"{VERDICT_MARK}' selects seed items only")
    profile = option(config, "profile") or "paper"
    if profile not in ("paper", "toy"):
        raise pytest.UsageError(f"{_named(config, 'profile')}: profile {profile!r} is invalid; expected paper or toy")
    if _is_worker(config):
        session_id = config.workerinput.get("stabench_session") or uuid.uuid4().hex
        workers = int(config.workerinput.get("workercount", 1))
    else:
        session_id = uuid.uuid4().hex
        workers = 1
        config.pluginmanager.register(Reporter(config), "stabench-reporter")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(GpuPool(config, session_id), "stabench-gpu-pool")
    config.stash[_STATE] = State(config, session_id, workers, baseline=_check_options(config))


_STATE = pytest.StashKey["State"]()
_BAD_CLAIM = pytest.StashKey[str]()


class State:
    """Per-process settings, parsed once; the store and the torch set-up are made on first use."""

    def __init__(self, config: pytest.Config, session_id: str, workers: int, baseline: list | None = None):
        self.config, self.session_id, self.workers = config, session_id, workers
        self.toy = (option(config, "profile") or "paper") == "toy"
        self.seed_override = _seed_override(config)
        self.recipe_overrides = _recipe_overrides(config)
        self._session = None
        self._baseline = baseline

    def baseline(self):
        """The baseline runs named by --stabench-baseline, loaded once per process."""
        if self._baseline is None:
            from .gate import load_source, reads_store

            source = option(self.config, "baseline")  # an export file's path as the store's: see store_file
            if not reads_store(source):
                source = str(self.config.invocation_params.dir / source)
            self._baseline = load_source(source, self.session().store)
        return self._baseline

    def session(self):
        if self._session is None:
            import torch

            from .claims import Session
            from .environment import resolve_device
            from .store import Store

            device = resolve_device(option(self.config, "device") or "auto")
            # torch's own count (OMP_NUM_THREADS, the CPUs this process may use), shared by the workers:
            # a session without workers then trains under the keys of the CLI and of a script.
            threads = option(self.config, "cpu-threads") or max(1, torch.get_num_threads() // self.workers)
            if device == "cpu":
                previous = torch.get_num_threads()  # an in-process session (pytester) gives it back
                torch.set_num_threads(threads)
                self.config.add_cleanup(lambda: torch.set_num_threads(previous))
            store = Store(store_file(self.config))
            self.config.add_cleanup(store.close)
            self._session = Session(store=store, device=device, session_id=self.session_id,
                                    recompute=bool(option(self.config, "recompute")))
        return self._session

    def trained(self) -> list[str]:
        """The keys of the runs this process trained and stored so far."""
        return [] if self._session is None else self._session.trained

    def spec(self, item: pytest.Item):
        from .claims import build_spec
        from .profiles import TOY

        marker = item.get_closest_marker("stabench")
        params = getattr(item, "callspec", None).params if hasattr(item, "callspec") else {}
        return build_spec(marker.kwargs, params, seed_override=self.seed_override, toy=self.toy,
                          toy_defaults=TOY, recipe_overrides=self.recipe_overrides)


class GpuPool:
    """Controller side of GPU pinning: workers are spread evenly over the GPUs, each pinned by
    ``CUDA_VISIBLE_DEVICES`` in its environment from its start.

    ``--stabench-device=cuda:N`` turns pinning off: N counts the GPUs the controller sees, and a
    worker pinned to one GPU would see no cuda:N.
    """

    def __init__(self, config: pytest.Config, session_id: str):
        self.config, self.session_id = config, session_id

    @functools.cached_property
    def gpus(self) -> list[str]:
        """Counted when the first worker starts: counting imports torch, which a session without
        workers need not pay for."""
        pinned = not _names_one_gpu(option(self.config, "device"))
        return _gpu_ids(option(self.config, "gpus")) if pinned else []

    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: list) -> None:
        """Pins each worker through its execnet spec, which sets the variable before the worker
        imports anything: CUDA reads it once, and a conftest that touches CUDA at import (``"cuda" if
        torch.cuda.is_available() ...``) would otherwise start it with every GPU visible.  A dead
        worker's replacement starts from the same spec, on the same GPU."""
        import execnet

        local = [i for i, spec in enumerate(specs) if _pinnable(spec)]
        for n, i in enumerate(local if self.gpus else []):
            pinned = execnet.XSpec(f"{specs[i]}//env:CUDA_VISIBLE_DEVICES={self.gpus[n % len(self.gpus)]}")
            pinned.id = specs[i].id
            specs[i] = pinned

    def pytest_configure_node(self, node) -> None:
        node.workerinput["stabench_session"] = self.session_id

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        """Work stealing instead of xdist's default "load" chunks.

        "load" hands each worker a long run of consecutive items up front, so one worker can
        end up with every seed of a suite while the other only skips; idle workers steal here.
        An explicit ``--dist`` other than load is left alone.
        """
        if config.getoption("dist") != "load":
            return None
        from xdist.scheduler import WorkStealingScheduling

        return WorkStealingScheduling(config, log)


def _pinnable(spec) -> bool:
    """A worker the plugin pins: a local one (a remote one's GPUs are not those counted here) whose
    ``--tx`` spec does not name its GPU already."""
    return bool(spec.popen) and "CUDA_VISIBLE_DEVICES" not in spec.env


def _own_workers(config: pytest.Config) -> bool:
    """Whether the session runs the user's ``--tx`` workers (with ``--dist``; xdist ignores ``--tx``
    without one)."""
    return bool(config.getoption("tx", None)) and config.getoption("dist", "no") != "no"


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config):
    """``--stabench-gpus`` or ``--stabench-workers-per-gpu`` without ``-n`` (or ``--tx`` workers)
    start the workers they describe (GPUs x workers per GPU); a wrapper, so xdist sees the count.
    Not in a worker, whose own options come without ``-n``: it would start workers of its own."""
    if (config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None) is None
            and not _own_workers(config)  # -n would replace them
            and not _is_worker(config) and not config.getoption("usepdb", False)):  # xdist refuses --pdb
        try:
            wanted = option(config, "gpus") or option(config, "workers-per-gpu")
            if wanted and not _names_one_gpu(option(config, "device")):
                count = len(_gpu_ids(option(config, "gpus"))) * (option(config, "workers-per-gpu") or 1)
                config.option.numprocesses = count or None  # no GPU: nothing to pin
        except (ValueError, AttributeError, pytest.UsageError):
            pass  # pytest_configure reports the bad value in one line
    return (yield)


def _check_worker_count(config: pytest.Config) -> None:
    """Pinning asked for (``--stabench-gpus`` / ``--stabench-workers-per-gpu``) needs no more
    workers than the GPUs take (``-n`` above GPUs x workers per GPU would
    crowd a GPU the user capped; without the cap, workers are spread evenly).  GPUs named for
    pinning need workers too.  Without those options nothing is refused: the plugin loads in
    every pytest session, stabench's or not."""
    per_gpu, gpus = option(config, "workers-per-gpu"), option(config, "gpus")
    if _names_one_gpu(option(config, "device")) or not (per_gpu or gpus):
        return
    workers = config.getoption("numprocesses", None)
    if workers and config.getoption("maxprocesses", None):
        workers = min(workers, config.getoption("maxprocesses"))
    asked = f"-n {workers}"
    if not workers and _own_workers(config):
        import execnet
        from xdist.workermanage import parse_tx_spec_config

        workers = sum(_pinnable(execnet.XSpec(spec)) for spec in parse_tx_spec_config(config))
        asked = f"--tx ({workers} local worker(s) naming no GPU)"
    if gpus and not workers:
        raise pytest.UsageError(f"{_named(config, 'gpus')} pins xdist workers to GPUs, but this session starts none "
                                f"(-n 0, no pytest-xdist, or --tx workers that are remote or name their GPUs); leave "
                                f"-n and --tx out (a worker per GPU is started), or use --stabench-device=cuda:N for "
                                f"one GPU in this process")
    ids = _gpu_ids(gpus) if workers else []  # no GPU (a CPU machine): workers per GPU have nothing to pin
    if per_gpu and ids and workers > len(ids) * per_gpu:
        raise pytest.UsageError(f"{asked} starts more workers than {_named(config, 'workers-per-gpu')}="
                                f"{per_gpu} on {len(ids)} GPU(s) ({', '.join(ids)}) allows; use -n "
                                f"{len(ids) * per_gpu}, leave -n out, or allow more workers per GPU")


def _names_one_gpu(device: str | None) -> bool:
    """A ``cuda:N`` device (pinning is off then), not auto, cpu, cuda or text the device check refuses."""
    kind, _, index = (device or "").partition(":")
    return kind == "cuda" and index.isdecimal()


def _gpu_ids(requested: str | None) -> list[str]:
    """GPU ids to spread workers over (``--stabench-gpus``, or every visible one), without
    initialising CUDA in the controller."""
    from .environment import check_gpu_ids, visible_gpu_ids

    return check_gpu_ids(requested) if requested else visible_gpu_ids()


def _seed_override(config: pytest.Config) -> tuple[int, ...] | None:
    text = option(config, "seeds")
    if text is None:
        return None
    from .claims import seeds_from_text, seeds_of

    try:
        return seeds_of(seeds_from_text(text))
    except ValueError as error:
        raise pytest.UsageError(f"{_named(config, 'seeds')}: {error}") from None


def _typed(config: pytest.Config, name: str) -> bool:
    """Whether the command line as typed gives the option (``--stabench-NAME``, or ``-o``): not
    the ini file, ``addopts`` or ``$PYTEST_ADDOPTS``, which pytest adds to what it parses."""
    flag, key, args = f"--stabench-{name}", f"stabench_{name.replace('-', '_')}=", list(config.invocation_params.args)
    for arg, after in zip(args, [*args[1:], ""]):
        arg, after = str(arg), str(after)
        if arg == flag or arg.startswith(f"{flag}="):
            return True
        if arg in ("-o", "--override-ini") and after.startswith(key) \
                or arg.startswith((f"-o{key}", f"--override-ini={key}")):
            return True
    return False


def _seed_count_note(config: pytest.Config) -> str | None:
    """``--stabench-seeds 30`` is 30 seeds, where the CLI's ``--seeds 30`` is seed 30: said as the
    session starts, before a slip trains for hours, and again at its end (``-q`` shows no header).
    Not for a count written once on purpose and read by every session: the ini file's key, or
    ``addopts`` and ``$PYTEST_ADDOPTS``, which the command line as typed does not hold."""
    text = (option(config, "seeds") or "").strip()
    if not text.isdecimal() or int(text) < 1 or not _typed(config, "seeds"):
        return None
    count = int(text)
    seeds = "seed 0" if count == 1 else f"seeds 0-{count - 1}"
    return f"{_named(config, 'seeds', text)} is a count: {seeds} (seed {count} alone is {count}-{count})"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("stabench")
    if marker is None:
        return
    if STUDY_FIXTURE not in metafunc.fixturenames:
        pytest.fail(f"{metafunc.definition.name}: a stabench claim must take a 'study' argument, e.g. "
                    f"def {metafunc.definition.name}(study): ...", pytrace=False)  # a one-line collection error
    if UNIT_FIXTURE not in metafunc.fixturenames:  # pytest's words: "function uses no argument 'stabench_unit'"
        pytest.fail(f"{metafunc.definition.name}: a fixture named 'study' of your own (in a conftest or the test "
                    f"file) hides stabench's, which a claim takes; rename yours", pytrace=False)
    _warn_of_untrained_parameters(metafunc)
    arms = list(marker.kwargs.get("arms") or {})
    from .claims import claim_seeds
    from .profiles import TOY

    state = metafunc.config.stash[_STATE]
    seeds = claim_seeds(marker.kwargs, state.seed_override, state.toy, TOY)
    units = [(arm, seed) for arm in (arms or [None]) for seed in seeds] + [VERDICT]
    # A mark, not only the id: ``-k "not verdict"`` would also drop every item of a claim named test_verdict_...
    metafunc.parametrize(UNIT_FIXTURE, [
        pytest.param(u, id=VERDICT, marks=getattr(pytest.mark, VERDICT_MARK)) if u == VERDICT else
        pytest.param(u, id=f"{u[0]}-seed{u[1]}" if u[0] else f"seed{u[1]}") for u in units])


def _warn_of_untrained_parameters(metafunc: pytest.Metafunc) -> None:
    """A parametrized recipe field or seed count reaches the test body only: every value reads the
    same runs, which looks like a sweep and is not one."""
    from .recipes import Recipe

    fields = {field.name for field in dataclasses.fields(Recipe)} - {"name"}
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        for name in names:
            if name in ("seed", "seeds"):
                way = "set seeds= in stabench.claim, or --stabench-seeds"
            elif name in fields:
                way = f"parametrize recipe with stabench.get_recipe(..., {name}=...) instead"
            else:
                continue
            metafunc.definition.warn(pytest.PytestCollectionWarning(
                f"{metafunc.definition.name}: parametrize argument {name!r} only reaches the test body, so every "
                f"value reads the same runs; to train with each, {way}"))


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """A parametrized recipe or task is named in test ids and by -k as its name says, not ``recipe0``."""
    from .recipes import Recipe
    from .tasks import Task

    return val.name if isinstance(val, (Recipe, Task)) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make claims selectable by name and, under xdist, interleave their seeds.

    Task, recipe and model names become keywords, so ``-k "rte and mosbach"`` selects claims
    (a seed item only its own arm's names).
    On xdist workers, claim items are reordered among themselves (other tests keep their
    places): every claim's first seed, then every claim's second seed, ..., verdicts last.
    xdist hands workers contiguous runs of items, so this spreads each claim's seeds over the
    workers, and the verdicts start when most seeds are done.  The order is deterministic, as
    xdist requires.  One process keeps pytest's order (each claim's seeds, then its verdict),
    so a module's items stay together and its module-scoped fixtures are set up once.
    """
    state = config.stash[_STATE]
    positions, claim_items = [], []
    for index, item in enumerate(items):
        unit = _unit(item)
        if unit is None:
            continue
        try:
            spec = state.spec(item)
            _check_parametrized_arms(item)
        except ValueError as error:  # e.g. a misspelt recipe among parametrize values
            item.stash[_BAD_CLAIM] = str(error)
            continue
        for arm in spec.arms:  # a seed item is one arm's; the verdict reads them all
            if unit == VERDICT or unit[0] in (None, arm.name):
                item.extra_keyword_matches.update({arm.task, arm.recipe.name, arm.model, arm.name})
        rank = 0 if unit == VERDICT else spec.seeds.index(unit[1])
        positions.append(index)
        claim_items.append(((unit == VERDICT, rank, index), item))
    if _is_worker(config):
        for position, (_, item) in zip(positions, sorted(claim_items, key=lambda pair: pair[0])):
            items[position] = item
    if claim_items and (reporter := config.pluginmanager.get_plugin("stabench-reporter")):
        reporter.watch()


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Import the training stack before the first claim item runs: a per-item time limit
    (pytest-timeout) then times training, and cannot cut an import short, which would leave a
    half-imported module that fails every later item.  An import that fails is left to the items,
    which then report it."""
    if not session.config.option.collectonly and any(_unit(item) is not None for item in session.items):
        with contextlib.suppress(Exception):
            for module in ("datasets", "stabench.train"):  # the second brings torch and transformers
                importlib.import_module(module)


def _check_parametrized_arms(item: pytest.Item) -> None:
    """Seed items are made for the arms named in the marker (parametrize values come later), so
    arms given by parametrize must carry the same names, or all but one arm would be trained by
    the verdict alone, one seed after another."""
    given = item.callspec.params.get("arms")
    named = list(item.get_closest_marker("stabench").kwargs.get("arms") or {})
    if given is not None and sorted(given) != sorted(named):
        raise ValueError(f"the arms parametrize gives ({', '.join(given)}) are not the arms named in "
                         f"stabench.claim(arms=...) ({', '.join(named) or 'none'}); name the same arms there, "
                         f"with empty options if parametrize fills them in")


CLAIM_ITEM = "stabench_item"  # in a claim item's setup report

# What an attempt reports of its outcome.  The runs it trained stay counted, and so does a retag: the
# next attempt finds the runs tagged already, and would not say the claim's baseline moved.
_ATTEMPT_ROWS = ("stabench_claim", "stabench_seed", "stabench_gate", "stabench_comparison")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A claim whose options are unusable fails each of its items with the one-line reason.  An item
    run again (pytest-rerunfailures) keeps its properties: the rows of its earlier attempt go, and
    the runs it trained stay counted."""
    item.user_properties[:] = [(name, value) for name, value in item.user_properties if name not in _ATTEMPT_ROWS]
    if error := item.stash.get(_BAD_CLAIM, None):
        pytest.fail(error, pytrace=False)


@pytest.fixture
def stabench_unit() -> Any:
    """Which unit of a claim an item runs: an (arm, seed) pair or the verdict (set by parametrize)."""
    return VERDICT


@pytest.fixture
def stabench_session(request):
    """The session's store and device, for claims that retrain a seed to get its weights."""
    return request.config.stash[_STATE].session()


@pytest.fixture
def stabench_figure(request) -> Callable[[str], Path]:
    """Where a claim writes a figure of its own: ``stabench_figure("loss-surface-rte")`` is that
    name in --stabench-plots' folder and format (else .stabench/plots under the rootdir, as PNG
    unless --stabench-plot-format says otherwise), its folder made; the session's summary and
    JSON report list each such file written during the session."""
    from .plots import file_stem
    from .report import check_plot_format

    folder, suffix = figure_folder(request.config).resolve(), check_plot_format(option(request.config, "plot-format"))

    def path(name: str) -> Path:
        figure = folder / f"{file_stem(name)}.{suffix}"
        folder.mkdir(parents=True, exist_ok=True)  # for matplotlib's own savefig too
        request.node.user_properties.append(("stabench_figure", str(figure)))
        return figure

    return path


def figure_folder(config: pytest.Config) -> Path:
    """--stabench-plots' folder, else .stabench/plots under the rootdir: where claims' figures go."""
    return Path(option(config, "plots") or Path(config.rootpath) / ".stabench" / "plots")


@pytest.fixture
def study(stabench_unit, request):
    """The claim's study; filled in by the plugin when the verdict item runs."""
    if request.node.get_closest_marker("stabench") is None:  # else the test would get None
        pytest.fail(f"{request.node.name} takes 'study', which stabench gives to claims only; put "
                    f"@stabench.claim(...) above it", pytrace=False)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """A seed item trains (or reads) its run instead of calling the claim's body."""
    unit = _unit(pyfuncitem)
    if unit is None or unit == VERDICT:
        return None
    state = pyfuncitem.config.stash[_STATE]
    spec = state.spec(pyfuncitem)
    _skip_unless_available(pyfuncitem, spec)
    arm = spec.arm(unit[0]) if unit[0] else spec.arms[0]
    with _one_line_setup_errors():
        result, trained = state.session().run_seed(arm, unit[1])
    pyfuncitem.user_properties.append(("stabench_seed", json.dumps(_seed_row(pyfuncitem, arm, result, trained))))
    return True  # the claim's body runs once, in the verdict item


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """A claim's item records the runs it trained, also when it fails or stops halfway (a timeout),
    so the session's count of runs trained is whole; the verdict item judges the claim."""
    unit = _unit(item)
    if unit is None:
        return (yield)
    state = item.config.stash[_STATE]
    before = len(state.trained())
    try:
        if unit != VERDICT:
            return (yield)
        return (yield from _judge(item, state))
    finally:
        if trained := state.trained()[before:]:
            item.user_properties.append(("stabench_trained", json.dumps({"verdict": unit == VERDICT,
                                                                         "keys": trained})))


def _judge(item: pytest.Item, state: State):
    """The verdict item's call: gather every seed, hand the study to the body, record the outcome."""
    from .claims import StudySet

    spec = state.spec(item)
    _skip_unless_available(item, spec)
    try:
        with _one_line_setup_errors():
            studies = StudySet((arm.name, state.session().collect(arm, spec.seeds)) for arm in spec.arms)
    except (Exception, pytest.fail.Exception) as error:  # a seed that crashed, or raised as the verdict trained it
        _record_unrun_claim(item, spec, error)
        raise
    item.funcargs[STUDY_FIXTURE] = studies if len(studies) > 1 else next(iter(studies.values()))
    if tag := option(item.config, "tag"):
        from .gate import tag_claim

        for name, study in studies.items():
            label = _arm_label(item, name, studies)
            untagged, changed = tag_claim(state.session().store, tag, label, study.results, study.arm.recipe.name)
            if changed:
                item.user_properties.append(("stabench_retagged", json.dumps({"claim": label, "untagged": untagged})))
    gates = _record_gate(item, state, studies) if option(item.config, "baseline") else {}
    try:
        outcome = yield
    except pytest.xfail.Exception as error:  # pytest.xfail() in the body (a subclass of pytest.fail's)
        _record_claim(item, studies, "xfailed", _first_line(error, "xfailed"))
        raise
    except pytest.skip.Exception as error:
        item.user_properties.append(("stabench_claim", json.dumps(_skipped_row(item, _first_line(error, "skipped")))))
        raise
    except (AssertionError, pytest.fail.Exception) as error:  # a failed claim, by assert or pytest.fail()
        message = _first_line(error, "assertion failed")
        _record_claim(item, studies, "xfailed (toy)" if state.toy else "failed", message)
        if state.toy:
            pytest.xfail(f"toy profile: stopped at an assertion not expected to hold at toy scale ({message})")
        if failed := _gate_failures(gates):
            note = f"the gate failed too: {failed}"
            if isinstance(error, pytest.fail.Exception) and not error.pytrace:  # pytest shows its message alone
                error.msg = f"{error.msg}\n{note}"
            elif hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(note)
        raise
    except BaseException as error:
        _record_claim(item, studies, "error", _first_line(error, type(error).__name__))
        raise
    finally:
        _record_comparisons(item, studies)
    _record_claim(item, studies, "passed (toy)" if state.toy else "passed", gates=gates)
    if failed := _gate_failures(gates):
        # The verdict item fails, so JUnit reports, --lf and pytest's summary all see a regression.
        pytest.fail(failed, pytrace=False)
    return outcome


@contextlib.contextmanager
def _one_line_setup_errors():
    """A run that cannot be set up (unusable data, a recipe value the model cannot take), a store
    that fails, or a seed whose worker died in this session, fails the claim's items with its
    one-line reason, not a traceback."""
    from .claims import RunSetupError, SeedNotRun
    from .store import StoreError

    try:
        yield
    except (RunSetupError, SeedNotRun, StoreError) as error:  # prepare's errors (unusable data too), a store it
        # cannot write, lock or read (a full disk, a damaged file): each says which file and why
        raise pytest.fail.Exception(str(error), pytrace=False) from None  # no chained errors below the line


def _unit(item: pytest.Item):
    callspec = getattr(item, "callspec", None)
    if callspec is None or item.get_closest_marker("stabench") is None:
        return None
    return callspec.params.get(UNIT_FIXTURE)


def _record_gate(item: pytest.Item, state: State, studies) -> dict[str, dict]:
    """Each arm against the baseline: the gate's entry per arm, also recorded for the report."""
    from .gate import check_limits, gate_claim, parse_limits

    limits = check_limits({**parse_limits(option(item.config, "gate")),
                           **item.get_closest_marker("stabench").kwargs.get("gate", {})})
    entries = {}
    for name, study in studies.items():
        entry = gate_claim(_arm_label(item, name, studies), study.results, study.arm.recipe.name,
                           option(item.config, "baseline"), state.session().store, state.baseline, limits).entry()
        item.user_properties.append(("stabench_gate", json.dumps(entry)))
        entries[name] = entry
    return entries


def _gate_failures(gates: dict[str, dict]) -> str:
    """Why a claim's gate failed, its failing arms' reasons in one line; empty where it did not fail."""
    return "; ".join(_gate_failure(g) for g in gates.values() if g["fails"])


def _gate_failure(entry: dict) -> str:
    return f"{entry['gate']} {entry['claim']}: {entry['why']}"


def _arm_label(item: pytest.Item, arm: str, studies) -> str:
    return _claim_name(item) + (f" ({arm})" if len(studies) > 1 else "")


def _skip_unless_available(item: pytest.Item, spec) -> None:
    from .profiles import missing_requirements

    missing = missing_requirements(spec)
    if missing:
        reason = "needs " + "; ".join(missing)
        if _unit(item) == VERDICT:
            item.user_properties.append(("stabench_claim", json.dumps(_skipped_row(item, reason, missing))))
        pytest.skip(reason)


def _skipped_row(item: pytest.Item, reason: str, missing: list[str] | None = None) -> dict[str, Any]:
    """A skipped claim's report entry; the skipped table groups claims by what they lack (the
    reason itself for a skip mark or pytest.skip)."""
    return {"claim": _claim_name(item), "verdict": "skipped", "reason": reason, "missing": missing or [reason]}


def _claim_name(item: pytest.Item) -> str:
    """The verdict's node id without the verdict part: the claim with its own parametrize ids."""
    base, _, ids = item.nodeid.partition("[")
    ids = ids.removesuffix("]")
    for pattern in (VERDICT + "-", "-" + VERDICT, VERDICT):
        if ids.startswith(pattern) or ids.endswith(pattern):
            ids = ids.removeprefix(pattern) if ids.startswith(pattern) else ids.removesuffix(pattern)
            break
    return f"{base}[{ids}]" if ids else base


def _seed_row(item: pytest.Item, arm, result, trained: bool) -> dict[str, Any]:
    from .report import verdict_text

    # Not $PYTEST_XDIST_WORKER: a session started from inside another's worker inherits it.
    worker = getattr(item.config, "workerinput", {}).get("workerid", "main")
    return {"item": item.nodeid, "arm": arm.name, "seed": result.seed, "key": result.key,
            "metric": result.primary_metric, "score": result.score, "accuracy": result.metrics.get("accuracy"),
            "majority": result.majority_accuracy, "run_verdict": verdict_text(result), "failed": result.failed,
            "trained": trained, "wall_time_s": result.wall_time_s, "worker": worker}


def _first_line(error: BaseException, empty: str) -> str:
    """What a report shows of a failed verdict: the error's first line, as pytest prints it."""
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else empty


def _record_claim(item: pytest.Item, studies, verdict: str, message: str | None = None,
                  gates: dict[str, dict] | None = None) -> None:
    """One report row per arm; a passed claim's arm that fails its gate says so, with the reason.
    The paper's numbers are left out at toy scale, beside another task and model."""
    from .report import produced_by

    options = item.get_closest_marker("stabench").kwargs
    task = item.callspec.params.get("task", options.get("task"))
    reference = {} if item.config.stash[_STATE].toy else options.get("reference") or {}
    for name, study in studies.items():
        summary = study.summary()
        gate = (gates or {}).get(name)
        failed_gate = verdict.startswith("passed") and gate is not None and gate["fails"]
        _record_row(item, study.arm, train_size=study.results[0].task.get("train_size"),  # as stored: full is None
                    metric=study.metric, verdict=gate["gate"].lower() if failed_gate else verdict,
                    seeds=[r.seed for r in study.results], keys=[r.key for r in study.results],
                    majority=study.majority, summary=summary.to_dict(), failures_text=summary.failures_text(),
                    trained_in_verdict=study.trained_here, reference=reference.get(task, {}).get(name),
                    reference_source=reference.get("source"), produced_by=produced_by(study.results),
                    message=_gate_failure(gate) if failed_gate else message,
                    # as its runs hold them: a hook edited since reads otherwise
                    recipe_hash=study.results[0].recipe_hash, recipe_fields=study.results[0].recipe)


def _record_comparisons(item: pytest.Item, studies) -> None:
    """What the body compared (``Study.compare``): each test's p-value, whether the claim passed or not."""
    recorded: list[str] = []
    for study in studies.values():
        for comparison in study.comparisons:
            entry = json.dumps({"claim": _claim_name(item), **comparison.to_dict()}, default=float)
            if entry not in recorded:  # the same comparison asked for twice
                recorded.append(entry)
                item.user_properties.append(("stabench_comparison", entry))


def _record_unrun_claim(item: pytest.Item, spec, error: BaseException) -> None:
    """A claim whose study could not be gathered, so the reports name it and why."""
    for arm in spec.arms:
        _record_row(item, arm, **_without_study("error", _first_line(error, "error"), arm.train_size, spec.seeds))


def _without_study(verdict: str, message: str, train_size: int | None, seeds=()) -> dict[str, Any]:
    """How a claim arm came out when it has no study: no numbers, only the verdict and why."""
    return dict(train_size=train_size, metric=None, verdict=verdict, seeds=list(seeds), keys=[], majority=None,
                summary=None, failures_text="-", trained_in_verdict=[], reference=None, reference_source=None,
                produced_by=None, message=message)


def _record_row(item: pytest.Item, arm, **outcome: Any) -> None:
    """A claim arm's report row: what it trains, then how it came out."""
    item.user_properties.append(("stabench_claim", json.dumps(_claim_row(item, arm, **outcome), default=float)))


def _claim_row(item: pytest.Item, arm, **outcome: Any) -> dict[str, Any]:
    """The recipe's hash and fields are its runs' where the outcome has them, else the arm's now."""
    if "recipe_hash" not in outcome:
        outcome["recipe_fields"], outcome["recipe_hash"] = arm.recipe.record_and_hash()
    return {"claim": _claim_name(item), "arm": arm.name, "task": arm.task, "recipe": arm.recipe.name,
            "model": arm.model, **outcome}


def _rows_of_unstarted_claim(item: pytest.Item, report: pytest.TestReport) -> list[dict[str, Any]]:
    """A verdict item that failed or was skipped before its body ran (a fixture's error, a claim
    whose options are unusable, a skip mark): its claim still gets its rows in the reports."""
    if hasattr(report, "wasxfail"):  # an error under an xfail mark, as pytest reports it
        verdict, message = "xfailed", report.wasxfail or "xfailed"
    elif isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        return [_skipped_row(item, report.longrepr[2].removeprefix("Skipped: "))]
    else:
        crash = getattr(report.longrepr, "reprcrash", None)
        verdict, message = "error", _first_line(crash.message if crash else report.longrepr, "error")
    try:
        arms = item.config.stash[_STATE].spec(item).arms
    except Exception:  # the claim's options are what failed: name what the marker and parametrize give
        given = {**item.get_closest_marker("stabench").kwargs, **item.callspec.params}
        return [{"claim": _claim_name(item), "arm": "-", "task": str(getattr(given.get("task"), "name",
                                                                                   given.get("task", "-"))),
                 "recipe": str(getattr(given.get("recipe"), "name", given.get("recipe", "-"))),
                 "recipe_hash": None, "recipe_fields": None, "model": str(given.get("model", "-")),
                 **_without_study(verdict, message, None)}]
    return [_claim_row(item, arm, **_without_study(verdict, message, arm.train_size)) for arm in arms]


def _as_reported(row: dict, report: pytest.TestReport) -> dict:
    """A claim row as pytest reported its verdict item: a claim marked xfail that failed is
    ``xfailed``, one that passed ``xpassed``, or ``failed`` under ``strict`` (pytest fails it)."""
    if hasattr(report, "wasxfail"):
        return {**row, "verdict": "xfailed" if report.skipped and row["verdict"] == "failed" else
                "xpassed" if report.passed else row["verdict"]}
    if row["verdict"].startswith("passed") and report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
        return {**row, "verdict": "failed", "message": _first_line(report.longrepr, "failed")}
    return row


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """An xfail mark is about the claim, which its verdict judges: a seed item that stored its run
    passed, also under ``strict`` (where pytest would fail it as an unexpected pass).  A verdict
    stopped before its body (a fixture's error, a skip mark) still gives its claim a report row."""
    report = yield
    unit = _unit(item)
    if unit is not None and call.when == "setup":  # an xdist controller learns of claims before a seed trains
        report.user_properties.append((CLAIM_ITEM, ""))
    if unit == VERDICT and call.when == "setup" and not report.passed:
        report.user_properties.extend(("stabench_claim", json.dumps(row, default=float))
                                      for row in _rows_of_unstarted_claim(item, report))
    if unit is not None and unit != VERDICT and call.when == "call" and call.excinfo is None:
        report.outcome, report.longrepr = "passed", None
        if hasattr(report, "wasxfail"):
            del report.wasxfail
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """A seed's line says its score and whether the run failed (a failed run is data, not an error)."""
    if report.when != "call" or not report.passed:
        return None
    for name, value in report.user_properties:
        if name == "stabench_seed":
            row = json.loads(value)
            # PASSED first, as pytest writes it (log greps, -rA): the seed item passed whatever its run did.
            word = f"PASSED {row['metric']}={row['score']:.3f} {row['run_verdict']}" + (
                "" if row["trained"] else " (stored)")
            return "passed", "f" if row["failed"] else ".", (word, {"red" if row["failed"] else "green": True})
    return None


def drop_lineless_frames(error: BaseException | None) -> None:
    """Python 3.11 can stop a frame at an instruction without a line number (shown as ``line -1``),
    and pytest's report of the interrupt then fails with a TypeError of its own, exit status 1
    (pytest-dev/pytest-xdist#1196).  Such frames are cut out of the traceback, along its chain."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        while error.__traceback__ is not None and error.__traceback__.tb_lineno is None:
            error.__traceback__ = error.__traceback__.tb_next
        tb = error.__traceback__
        while tb is not None and tb.tb_next is not None:
            if tb.tb_next.tb_lineno is None:
                tb.tb_next = tb.tb_next.tb_next
            else:
                tb = tb.tb_next
        error = error.__cause__ or error.__context__


class Reporter:
    """Controller-only: gathers claim rows from reports (also xdist's) and prints the table."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.claims: list[dict] = []
        self.seeds: list[dict] = []
        self.gates: list[dict] = []
        self.comparisons: list[dict] = []  # Study.compare results of the claims' bodies
        self.retagged: list[dict] = []  # claims whose runs under --stabench-tag were replaced, and strays untagged
        self.trained_by_seeds: set[str] = set()  # keys of the runs seed items trained
        self.trained_by_verdicts: set[str] = set()  # and those verdicts trained
        self.unwritten: list[str] = []  # reports that could not be written at the end, and why
        self.written: list[str] = []  # reports and plots written at the end, and where
        self.exit_status: int | None = None  # pytest's, as the JSON report is written
        self.gate_failures_outside_items: list[str] = []  # failed gates whose verdict item did not fail
        self.other_stacks: set[str] = set()  # the other-stack warnings said so far
        self.collection_errors: list[str] = []  # "file: error" of each file that did not collect
        self.figures: set[str] = set()  # the paths claims asked stabench_figure for
        self.started = time.time()
        self.watching = self.interrupted = False

    def watch(self) -> None:
        """Once the session has claims (collected here, or reported by an xdist worker): SIGTERM
        (``kill``, a CI job's timeout) stops it as Ctrl-C does, so the summary still says what is
        stored instead of the process vanishing.  Sessions without claims are left as they are."""
        if self.watching:
            return
        self.watching = True
        if threading.current_thread() is not threading.main_thread() or \
                signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        pid = os.getpid()

        def interrupt(signum, frame):
            if os.getpid() != pid:  # a process forked by a test: let it die of the signal, as it would
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, interrupt)

        def restore() -> None:
            if signal.getsignal(signal.SIGTERM) is interrupt:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)

        self.config.add_cleanup(restore)

    @pytest.hookimpl(tryfirst=True)  # before the terminal reporter formats the traceback
    def pytest_keyboard_interrupt(self, excinfo) -> None:
        # Ctrl-C or SIGTERM; not pytest's own stops (collection errors, -x), which subclass it.
        self.interrupted = excinfo.type is KeyboardInterrupt
        drop_lineless_frames(excinfo.value)

    def pytest_warning_recorded(self, warning_message, when, nodeid, location) -> None:
        """A study that trains again under a new stack is said when its first seed reports, not
        only in the warnings summary after hours of training."""
        from .train import OtherStackWarning

        text = str(warning_message.message)
        if issubclass(warning_message.category, OtherStackWarning) and text not in self.other_stacks:
            self.other_stacks.add(text)
            if terminal := self.config.pluginmanager.get_plugin("terminalreporter"):
                if self.config.get_terminal_writer().width_of_current_line:  # after xdist's progress letters
                    terminal.write("\n")
                terminal.write_line(f"stabench: {text}", yellow=True)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A claim file that did not collect: the reports say so, or they read as a quiet session."""
        if report.failed:
            lines = [line for line in report.longreprtext.splitlines() if line.strip()]
            raised = [line[1:].strip() for line in lines if line.startswith("E ")]
            error = (raised or lines or ["failed"])[-1 if raised else 0]
            if not error.startswith(f"{Path(report.nodeid).name}:"):  # a claim's own error names its file and line
                error = f"{report.nodeid or 'collection'}: {error}"
            if error not in self.collection_errors:  # each xdist worker collects, and reports, every file
                self.collection_errors.append(error)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if (CLAIM_ITEM, "") in report.user_properties:  # under xdist: before a seed trains for hours
            self.watch()
        if report.when != "call" and not (report.when == "setup" and not report.passed):
            return
        if report.outcome == "rerun":  # pytest-rerunfailures runs it again: the last attempt's report counts
            return
        for name, value in report.user_properties:
            if name.startswith("stabench_"):
                self.watch()
            if name == "stabench_claim":
                self.claims.append(_as_reported(json.loads(value), report))
            elif name == "stabench_seed":
                self.seeds.append(json.loads(value))
            elif name == "stabench_gate":
                self.gates.append(json.loads(value))
                if self.gates[-1]["fails"] and not report.failed:  # an xfail claim's, or a toy claim's
                    self.gate_failures_outside_items.append(self.gates[-1]["claim"])
            elif name == "stabench_retagged":
                self.retagged.append(json.loads(value))
            elif name == "stabench_comparison":
                self.comparisons.append(json.loads(value))
            elif name == "stabench_figure":
                self.figures.add(value)
            elif name == "stabench_trained":
                trained = json.loads(value)
                (self.trained_by_verdicts if trained["verdict"] else self.trained_by_seeds).update(trained["keys"])

    def nothing_compared(self) -> bool:
        """A gate that compared no claim (none had a baseline, or every claim was skipped or could
        not gather its study) is misconfigured, not passed.  So is a baseline typed on the command
        line of a session that ran seed items only (a wrong -m in CI); one from the ini file is
        only noted there, as seed-only sessions on several machines share that file, and so is
        a session interrupted before its first verdict (a CI timeout: the reason is the timeout)."""
        if not option(self.config, "baseline"):
            return False
        if not self.claims:
            return bool(self.seeds) and not self.interrupted and not _from_ini(self.config, "baseline")
        return all(g["gate"] == "no baseline" for g in self.gates)

    def nothing_compared_why(self) -> str:
        """Why the gate compared nothing, for the terminal and the reports ('' when it compared a claim)."""
        if not self.nothing_compared():
            return ""
        baseline = option(self.config, "baseline")
        if not self.claims:
            return (f"--stabench-baseline={baseline}: no claim's verdict ran in this session (say -m or -k selected "
                    f"seed items only), so nothing was compared with the baseline; the verdict compares its claim's "
                    f"runs")
        if self.gates:
            from .gate import baseline_studies

            held = baseline_studies(self.config.stash[_STATE].baseline())
            shown = "; ".join(held[:5]) + (f"; {len(held) - 5} more" if len(held) > 5 else "")
            return (f"no claim has runs in the baseline {baseline}, so nothing was compared: a claim's baseline is "
                    f"the runs --stabench-tag tagged for it, else runs of the same task, model and recipe (its name "
                    f"or content); the baseline holds {shown}")
        if all(c["verdict"] == "skipped" for c in self.claims):
            return (f"no claim's verdict ran, so nothing was compared with the baseline {baseline} (every claim was "
                    f"skipped, and each skip says why)")
        return (f"no claim's study could be gathered (each claim's error says why), so nothing was compared with "
                f"the baseline {baseline}")

    def trained_runs(self) -> tuple[set[str], set[str]]:
        """The keys of the runs this session trained, by seed items and by verdicts, each run once."""
        return self.trained_by_seeds, self.trained_by_verdicts - self.trained_by_seeds

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return [f"stabench: {note}"] if (note := _seed_count_note(config)) else []

    def notes(self, errors: bool = True) -> list[str]:
        """What the session was asked for and did not do, or may not have meant, for the terminal and
        the Markdown report (``errors``: with the collection errors, which the terminal shows above)."""
        notes = [note] if (note := _seed_count_note(self.config)) else []
        if self.collection_errors:
            said = " (the errors above say why)"
            if errors:
                more = len(self.collection_errors) - 3
                said = f": {'; '.join(self.collection_errors[:3])}"
                said += f"; and {more} more (the JSON report lists them all)" if more > 0 else ""
            notes.append(f"{len(self.collection_errors)} file(s) did not collect, so pytest ran no claim (unless "
                         f"--continue-on-collection-errors) and no gate compared them{said}")
        if self.seeds and not self.claims:
            for name, what in (("tag", "no run was tagged; the verdict tags its claim's runs"),
                               ("baseline", "nothing was compared with the baseline; the verdict compares its "
                                            "claim's runs")):
                if (value := option(self.config, name)) and not (name == "baseline" and self.nothing_compared()):
                    why = ("the session was interrupted before one did" if self.interrupted else
                           "say -m or -k selected seed items only")
                    notes.append(f"{_named(self.config, name, value)}: no claim's verdict ran in this session "
                                 f"({why}), so {what}")
        if (unmatched := self.unmatched_baseline()) and not self.nothing_compared():  # else its reason names them
            shown = "; ".join(unmatched[:5]) + (f"; and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
            found_none = sum(g["gate"] == "no baseline" for g in self.gates)
            notes.append(f"{found_none} claim(s) found no baseline, and the baseline holds studies of their task and "
                         f"model that no claim was compared with: {shown} (a recipe renamed and edited, or a "
                         f"parametrized value changed, since the baseline was tagged; or a claim this session did "
                         f"not run)")
        if _typed(self.config, "gate") and option(self.config, "gate") and not option(self.config, "baseline"):
            notes.append(f"{_named(self.config, 'gate')} has no effect without --stabench-baseline: it sets the "
                         f"limits of a comparison with a baseline")
        if (plot_format := option(self.config, "plot-format")) and not option(self.config, "plots") \
                and _typed(self.config, "plot-format") and not self.config.option.collectonly \
                and not self.made_figures():
            notes.append(f"{_named(self.config, 'plot-format', plot_format)} wrote nothing: it is the format of "
                         f"--stabench-plots' figures, and no claim wrote a figure of its own")
        return notes

    def made_figures(self) -> list[str]:
        """The figures claims wrote through ``stabench_figure`` in this session (asked for, and
        written since it started: a claim that failed before drawing leaves an older file)."""
        def written(path: Path) -> bool:
            try:
                return path.stat().st_mtime >= self.started - 2  # a coarse file system's timestamps
            except OSError:
                return False

        return sorted(path for path in self.figures if written(Path(path)))

    def unmatched_baseline(self) -> list[str]:
        """Where some claim found no baseline: the baseline's studies no claim was compared with (a
        sweep's edited value is a new claim beside an unmatched study); else none."""
        trained_on = {tuple(g["detail"]["study"][:3]) for g in self.gates if g["gate"] == "no baseline"}
        if not trained_on:
            return []
        from .gate import uncompared_studies

        compared = {key for g in self.gates for key in g["detail"]["baseline_keys"]}
        return uncompared_studies(self.config.stash[_STATE].baseline(), compared, trained_on)

    def claim_keys(self) -> set[str]:
        """The keys of the runs this session's claims judged."""
        return {key for c in self.claims for key in c.get("keys", ())}

    def interrupted_why(self) -> str:
        """What an interrupted session (Ctrl-C, SIGTERM) got done, for the terminal and the reports
        ('' when it was not interrupted)."""
        if not (self.interrupted and self.watching):
            return ""
        # An item stopped by Ctrl-C makes no report: what this process trained is counted from its session.
        trained = self.trained_by_seeds | self.trained_by_verdicts | set(self.config.stash[_STATE].trained())
        read = sum(1 for s in self.seeds if not s["trained"])
        distributed = self.config.pluginmanager.has_plugin("dsession")  # xdist's controller
        workers = " (xdist workers may have finished more)" if distributed else ""
        again = ("running it again trains every seed again, as --stabench-recompute asks (without it, seeds not "
                 "retrained yet keep their earlier runs)" if option(self.config, "recompute")
                 else "running the same command again trains only the missing ones")
        return (f"interrupted after {len(self.seeds)} seed item(s) had reported ({len(trained)} trained, {read} read "
                f"from the store){workers}; every finished run is stored, and {again}")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if why := self.interrupted_why():
            terminalreporter.write_line(f"stabench: {why}", yellow=True)
        for line in self.unwritten:
            terminalreporter.write_line(f"stabench: {line}", red=True)
        for note in self.notes(errors=False):
            terminalreporter.write_line(f"stabench: {note}", yellow=True)
        written = f"stabench wrote {', '.join(self.written)}" if self.written else ""
        from .report import (COMPARISON_NOTE, claim_rows, compact_names, comparison_rows, gate_messages,
                             gate_table_rows, reference_sources, render, rows_table, runs_line, shared_columns,
                             skipped_rows, skipped_title, stacks_line)

        if not self.claims:
            if self.seeds:
                terminalreporter.write_line(f"stabench: {runs_line(self.record())}")
            if written:
                terminalreporter.write_line(written)
            self._count_gate_failures(terminalreporter)
            return
        (rows, shared), skipped = shared_columns(claim_rows(self.claims)), skipped_rows(self.claims)
        styles = ["green" if r["claim verdict"].startswith("passed") else
                  "yellow" if r["claim verdict"].startswith("xfailed") else "red" for r in rows]
        writer = self.config.get_terminal_writer()
        width = writer.fullwidth if writer.hasmarkup or "COLUMNS" in os.environ else 240  # a CI log: wrap less
        terminalreporter.write_sep("=", "stabench claims")
        if rows:
            terminalreporter.write(render(rows_table(rows, title=shared or None, styles=styles,
                                                     fold=("claim", "task", "recipe", "model", "paper"), width=width),
                                          width=width, color=writer.hasmarkup))
        if skipped:
            terminalreporter.write(render(rows_table(skipped, title=skipped_title(self.claims)), width=width,
                                          color=writer.hasmarkup))
        for source in reference_sources(self.claims):
            terminalreporter.write_line(f"paper column: {source}")
        terminalreporter.write_line(runs_line(self.record()))
        if tag := option(self.config, "tag"):
            terminalreporter.write_line(f"tagged {len(self.claim_keys())} run(s) of this session's claims as {tag!r}")
            if self.retagged:
                untagged = sum(entry["untagged"] for entry in self.retagged)
                strays = f"; {untagged} run(s) of the same studies that no claim held lost the tag" if untagged else ""
                terminalreporter.write_line(
                    f"{len(self.retagged)} claim(s) had other runs tagged {tag!r}: their baseline under it is now "
                    f"this session's runs ({compact_names([entry['claim'] for entry in self.retagged])}){strays}. "
                    f"The runs they replaced stay stored: run those claims as they were with --stabench-tag={tag} "
                    f"to make them the baseline again (nothing trains)", yellow=True)
        if written:
            terminalreporter.write_line(written)
        if self.comparisons:
            terminalreporter.write_sep("=", "stabench comparisons in claims")
            terminalreporter.write(render(rows_table(comparison_rows(self.comparisons), title=COMPARISON_NOTE),
                                          width=width, color=writer.hasmarkup))
        if self.gates:
            gates = sorted(self.gates, key=lambda g: g["claim"])
            terminalreporter.write_sep("=", f"stabench regression gate against {option(self.config, 'baseline')}")
            styles = ["red" if g["fails"] else "green" if g["gate"] == "ok" else "yellow" for g in gates]
            terminalreporter.write(render(rows_table(gate_table_rows(gates), styles=styles), width=width,
                                          color=writer.hasmarkup))
            for colour, line in gate_messages(gates):
                terminalreporter.write_line(line, **{colour: True})
            if stacks := stacks_line(gates):
                terminalreporter.write_line(stacks)
        self._count_gate_failures(terminalreporter)

    def _count_gate_failures(self, terminalreporter) -> None:
        """A regression fails its verdict item. A gate failure that no failed item shows (a gate that
        compared nothing; a claim marked xfail, or a toy claim) is said, and counted in pytest's last
        line ("5 skipped, 1 gate failed"), which would otherwise read as a clean pass over exit 1."""
        if why := self.nothing_compared_why():
            terminalreporter.write_line(why, red=True)
        outside = self.gate_failures_outside_items + (["stabench gate"] if self.nothing_compared() else [])
        if outside:  # report-like entries: other plugins read every entry's attributes
            terminalreporter.stats.setdefault("gate failed", []).extend(
                SimpleNamespace(nodeid=claim, when="gate", outcome="gate failed") for claim in outside)

    @pytest.hookimpl(tryfirst=True)  # before xdist tears its workers down, where a Ctrl-C or a CI timeout lands
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Runs before pytest's summary (its terminal reporter wraps this hook), which shows any
        report that could not be written."""
        gate_fails = any(g["fails"] for g in self.gates) or self.nothing_compared()
        if gate_fails and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.watching and not self.interrupted:  # every worker is done with this session's attempt files
            from .claims import clear_attempts

            clear_attempts(store_file(self.config), self.config.stash[_STATE].session_id)

        if self.config.option.collectonly:  # nothing ran: an earlier session's reports stay
            return
        self.exit_status = int(session.exitstatus)
        record = self.record()  # made once, for the JSON and the Markdown alike
        writers = (("json", lambda path: self._write_json(path, record)),
                   ("md", lambda path: self._write_markdown(path, record)), ("plots", self._plot))
        for name, write in writers:
            if path := option(self.config, name):
                try:
                    files = write(Path(path))
                    self.written.append(f"{path}" + (f" ({files} files)" if files is not None else ""))
                except Exception as error:  # checked at the start, yet a path (or a plot) can still fail
                    self.unwritten.append(f"{_named(self.config, name)}: {_first_line(error, type(error).__name__)}")
        if (figures := self.made_figures()) and not option(self.config, "plots"):  # --stabench-plots counts its own
            self.written.append(f"{figure_folder(self.config)} ({len(figures)} figure(s) of claims)")
        if self.unwritten and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            if (path := option(self.config, "json")) and str(path) in self.written:  # its exit_status, now 1
                self.exit_status = record["exit_status"] = int(session.exitstatus)
                with contextlib.suppress(Exception):
                    self._write_json(Path(path), record)

    def record(self) -> dict[str, Any]:
        """The session's JSON report: what every other report is made from."""
        by_seeds, by_verdicts = self.trained_runs()
        # by claim (its other parameters too) and arm, then seed: not in the order workers finished them
        seeds = sorted(self.seeds, key=lambda row: (_without_seed_id(row["item"], row["seed"]), str(row["arm"]),
                                                     row["seed"]))
        return {"exit_status": self.exit_status, "claims": self.claims, "seeds": seeds, "gate": self.gates,
                "baseline": option(self.config, "baseline"), "store": str(store_file(self.config).resolve()),
                "trained": {"by_seed_items": sorted(by_seeds), "by_verdicts": sorted(by_verdicts)},
                "comparisons": self.comparisons, "notes": self.notes(),
                "nothing_compared": self.nothing_compared_why() or None,
                "uncompared_baseline_studies": self.unmatched_baseline(),
                "collection_errors": self.collection_errors, "interrupted": self.interrupted_why() or None,
                "figures": self.made_figures()}

    @staticmethod
    def _write_markdown(path: Path, record: dict[str, Any]) -> None:
        from .report import session_markdown, write_markdown

        write_markdown(path, session_markdown(record))

    @staticmethod
    def _write_json(path: Path, record: dict[str, Any]) -> None:
        from .report import write_json

        write_json(path, record)

    def _plot(self, folder: Path) -> int:
        from .plots import plot_claims
        from .report import check_plot_format
        from .store import Store

        with Store(store_file(self.config)) as store:
            drawn = plot_claims(self.claims, store, folder, check_plot_format(option(self.config, "plot-format")))
        return drawn + len(self.made_figures())  # the claims' own, written into this folder as they ran


def _without_seed_id(nodeid: str, seed: int) -> str:
    """A seed item's node id without its ``seedN`` parameter id (not a 'seed1' in the test's name)."""
    name, bracket, params = nodeid.partition("[")
    return name + bracket + params.replace(f"seed{seed}", "", 1)
