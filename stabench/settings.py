"""The stabench options of a project's pytest configuration file, for the ``stabench`` command.

pytest reads ``stabench_store`` and the other options from the file it finds (``pytest.ini``,
``pyproject.toml``, ...), and keeps its default store in that file's folder. The command finds the
same file the way pytest does from the current folder, so that both use one store and train runs
under one key, also from a subfolder, without ``$STABENCH_STORE``.  Options written as command-line
flags in the file's ``addopts`` or in ``$PYTEST_ADDOPTS`` count too, winning as they do in pytest,
and so do pytest's ``-c``, ``--rootdir`` and ``-o`` in ``$PYTEST_ADDOPTS``.
"""
from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import iniconfig

from .environment import MAX_COUNT
from .warn import warn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest's own dependency there
    import tomli as tomllib

# pytest's own order (``_pytest.config.findpaths``): in each folder from here up, the first of these
# that holds pytest's section; failing that, the nearest pyproject.toml, then the nearest setup.py.
CONFIG_FILES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


@dataclass(frozen=True)
class ProjectSettings:
    """pytest's configuration file (None without one), its folder (pytest's rootdir) and the
    file's ``stabench_*`` options as written."""

    path: Path | None
    rootdir: Path
    options: dict[str, object] = field(default_factory=dict)
    flags: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (value, where it was written)
    overrides: dict[str, str] = field(default_factory=dict)  # stabench_* keys set by -o in $PYTEST_ADDOPTS

    def get(self, name: str) -> object | None:
        """The option ``name`` (``store``, ``cpu_threads``, ...): a ``--stabench-`` flag from
        ``addopts`` / ``$PYTEST_ADDOPTS``, else the ``stabench_<name>`` key as ``-o`` or the file
        sets it; None when not set."""
        if name in self.flags:  # an empty one is no option, and the key is not read then either, as in pytest
            return self.flags[name][0] or None
        key = f"stabench_{name}"
        value = self.overrides[key] if key in self.overrides else self.options.get(key)
        return None if value == "" else value

    def where(self, name: str, value: object = None) -> str:
        """Where the option in force was written, for its error messages; with ``value``, as
        written there (``--stabench-store='x'``, ``stabench_store = 5``)."""
        def shown(sep: str) -> str:
            return "" if value is None else f"{sep}{value!r}"

        if name in self.flags:
            return f"{_flag(name)}{shown('=')} in {self.flags[name][1]}"
        if f"stabench_{name}" in self.overrides:
            return f"-o stabench_{name}{shown('=')} in $PYTEST_ADDOPTS"
        return f"stabench_{name}{shown(' = ')} in {self.path}"

    def store(self) -> Path | None:
        """The store option: a flag's path is relative to the current folder, as pytest takes a
        command-line path; the key's (from the file or ``-o``) to the file's folder."""
        if "store" in self.flags:
            return Path(self.flags["store"][0]) if self.flags["store"][0] else None
        value = self.get("store")
        if value is not None and not isinstance(value, str):  # a number in [tool.pytest]: pytest refuses it too
            raise ValueError(f"{self.where('store', value)} is invalid; expected a path in quotes, e.g. "
                             f'stabench_store = "results.sqlite"')
        folder = self.path.parent if self.path is not None else Path()
        return None if value is None else folder / os.path.expanduser(value)

    def count(self, name: str) -> int | None:
        """An integer option (``cpu_threads``); a value that is not one is named with where it is."""
        value = self.get(name)
        if value is None:
            return None
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"{self.where(name, value)} is invalid; expected an integer from 1 to {MAX_COUNT}"
                             ) from None


def project_settings(start: str | os.PathLike[str] | None = None) -> ProjectSettings:
    """The settings pytest would use in a session started in ``start`` (the current folder)."""
    start = Path(start if start is not None else os.getcwd()).resolve()
    chosen = _chosen_by_command_line()
    overrides = override_ini(chosen.override_ini)
    if chosen.config_file:  # pytest reads this file, pytest section or not, and roots the session there
        path = (start / chosen.config_file).resolve()
        settings = _settings(path, path.parent, pytest_section(path) or {}, overrides)
    else:
        settings = _found(start, overrides)
    rootdir = start / os.path.expandvars(chosen.rootdir) if chosen.rootdir else settings.rootdir
    if not rootdir.is_dir():
        raise ValueError(f"--rootdir={chosen.rootdir} in $PYTEST_ADDOPTS is not a folder; expected one (pytest "
                         f"refuses it too)")
    stabench_keys = {key: value for key, value in overrides.items() if key.startswith("stabench_")}
    _warn_of_unknown_keys(stabench_keys, lambda key: f"-o {key!r} in $PYTEST_ADDOPTS")  # 'stabench_store ': one too
    return ProjectSettings(settings.path, rootdir, settings.options, settings.flags, stabench_keys)


def override_ini(entries: Iterable[str]) -> dict[str, str]:
    """The ini keys pytest's -o/--override-ini entries set, with their values: the last one given
    wins, and the key is as written before the first "=" (" stabench_store " is another, unknown key).
    An entry without "=", which pytest refuses, is ignored, as a flag left without its value is."""
    return dict(entry.partition("=")[::2] for entry in entries if "=" in entry)


def _found(start: Path, overrides: dict[str, str]) -> ProjectSettings:
    """pytest's configuration file, found from ``start`` up as pytest finds it."""
    folders = (start, *start.parents)
    nearest_pyproject = None
    for folder in folders:
        for name in CONFIG_FILES:
            path = folder / name
            if path.is_file():
                section = pytest_section(path)
                if section is not None:
                    return _settings(path, folder, section, overrides)
                if name == "pyproject.toml" and nearest_pyproject is None:
                    nearest_pyproject = path
    if nearest_pyproject is not None:
        return _settings(nearest_pyproject, nearest_pyproject.parent, {}, overrides)
    setup_py = next((folder for folder in folders if (folder / "setup.py").is_file()), start)
    return _settings(None, setup_py, {}, overrides)


def check_option_keys(keys: Iterable[str], named: Callable[[str], str],
                      registered: Callable[[str], bool] = lambda key: False) -> None:
    """ValueError for a ``stabench_*`` key that no option has (``named`` says where it was
    written), naming the likeliest one meant; ``registered`` tells a key another plugin added."""
    from .plugin import OPTION_KEYS

    for key in keys:
        if key.startswith("stabench_") and key not in OPTION_KEYS and not registered(key):
            close = difflib.get_close_matches(key, OPTION_KEYS, n=1)
            meant = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{named(key)} is not a stabench option{meant}; known options: {', '.join(OPTION_KEYS)}")


def _warn_of_unknown_keys(keys: Iterable[str], named: Callable[[str], str]) -> None:
    """The command warns where a session stops: it cannot see the keys a project's conftest or
    plugins register, which pytest reads as theirs."""
    try:
        check_option_keys(keys, named)
    except ValueError as error:
        warn(f"{error}; the stabench command ignores it (a pytest session refuses it, unless a conftest or "
             f"plugin of the project registers it)")


def _settings(path: Path | None, rootdir: Path, section: dict[str, object], overrides: dict[str, str]
              ) -> ProjectSettings:
    if path is not None:
        _warn_of_unknown_keys(section, lambda key: f"{key} in {path}")
    options = {key: value for key, value in section.items() if key.startswith("stabench_")}
    addopts = overrides["addopts"] if "addopts" in overrides else section.get("addopts")  # -o addopts= wins
    where = "-o addopts in $PYTEST_ADDOPTS" if "addopts" in overrides else f"addopts of {path}"
    return ProjectSettings(path, rootdir, options, _flags(addopts, where))


def _chosen_by_command_line() -> argparse.Namespace:
    """pytest's own options in ``$PYTEST_ADDOPTS`` that choose its configuration: ``-c``/
    ``--config-file``, ``--rootdir`` and ``-o``/``--override-ini`` (in the file's ``addopts``
    they come too late for that, and pytest ignores them)."""
    text = os.environ.get("PYTEST_ADDOPTS", "")
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("-c", "--config-file")
    parser.add_argument("--rootdir")
    parser.add_argument("-o", "--override-ini", action="append", default=[])
    try:
        return parser.parse_known_args(shlex.split(text))[0]
    except ValueError as error:  # an unclosed quote, which pytest refuses too
        raise ValueError(f"cannot read $PYTEST_ADDOPTS {text!r}: {error}; expected arguments quoted as in a "
                         f"shell") from None
    except argparse.ArgumentError as error:  # "-c" without a file
        raise ValueError(f"cannot read $PYTEST_ADDOPTS {text!r}: {error}") from None


FLAGS = ("store", "cpu-threads", "device")  # those the command reads


def _flag(name: str) -> str:
    """The command-line flag of option ``name`` (``cpu_threads``: ``--stabench-cpu-threads``)."""
    return f"--stabench-{name.replace('_', '-')}"


def _flags(addopts: object, where: str) -> dict[str, tuple[str, str]]:
    """The ``--stabench-*`` flags of :data:`FLAGS` pytest would add to its command line: the
    ``addopts`` (text, or a list in TOML) written ``where``, then ``$PYTEST_ADDOPTS``; a later
    one wins, as in argparse."""
    written = []
    if addopts:
        written.append((addopts, where))
    if os.environ.get("PYTEST_ADDOPTS"):
        written.append((os.environ["PYTEST_ADDOPTS"], "$PYTEST_ADDOPTS"))
    args = []  # one command line, as pytest joins them: each argument with where it was written
    for text, where in written:
        try:
            args += [(arg, where) for arg in (shlex.split(text) if isinstance(text, str) else map(str, text))]
        except ValueError as error:  # an unclosed quote, which pytest refuses too
            raise ValueError(f"cannot read {where} {text!r}: {error}; expected arguments quoted as in a shell") from None
    words = [arg for arg, _ in args]
    if "--" in words:
        args = args[:words.index("--")]  # the rest are file names
    flags = {}
    for i, (arg, where) in enumerate(args):
        flag, equals, value = arg.partition("=")
        name = flag.removeprefix("--stabench-")
        if name == flag or name not in FLAGS:
            continue
        if not equals:  # the value is the next argument; pytest refuses the flag without one
            value = args[i + 1][0] if i + 1 < len(args) else "-"
            if value.startswith("-"):
                continue
        flags[name.replace("-", "_")] = (value, where)
    return flags


def pytest_section(path: Path) -> dict[str, object] | None:
    """``path``'s pytest section; None when it has none (a ``pytest.ini`` or ``pytest.toml``
    counts even without one, as in pytest)."""
    always = path.name in ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini")
    if path.suffix not in (".toml", ".ini", ".cfg"):  # a file -c names: pytest reads nothing from it either
        return None
    try:
        if path.suffix == ".toml":
            with path.open("rb") as file:
                data = tomllib.load(file)
            if path.name not in ("pytest.toml", ".pytest.toml"):  # as pyproject.toml: [tool.pytest] (pytest 9's
                # TOML types) or [tool.pytest.ini_options]
                tool = data.get("tool", {}).get("pytest", {})
                native = {name: value for name, value in tool.items() if name != "ini_options"}
                if native and tool.get("ini_options"):
                    raise ValueError("it has both [tool.pytest] and [tool.pytest.ini_options]; pytest takes one")
                table = native or ({name: value if isinstance(value, (str, list)) else str(value)  # as pytest
                                    for name, value in tool["ini_options"].items()}  # reads an ini file's
                                   if "ini_options" in tool else None)
            else:
                table = data.get("pytest")
        else:
            sections = iniconfig.IniConfig(str(path)).sections
            if path.suffix == ".cfg" and "tool:pytest" not in sections and "pytest" in sections:
                raise ValueError("its section is [pytest], which pytest no longer reads in setup.cfg; "
                                 "expected [tool:pytest]")
            table = sections.get("tool:pytest" if path.suffix == ".cfg" else "pytest")  # by suffix, as pytest
    except (OSError, UnicodeDecodeError, ValueError, tomllib.TOMLDecodeError, iniconfig.ParseError) as error:
        raise ValueError(f"cannot read pytest's configuration file {path}: {error}") from None
    if table is None:
        return {} if always else None
    return dict(table)
