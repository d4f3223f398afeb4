"""The stabench options of a project's pytest configuration file, for the ``stabench`` command.

pytest reads ``stabench_store`` and the other options from the file it finds (``pytest.ini``,
``pyproject.toml``, ...), and keeps its default store in that file's folder. The command finds the
same file the way pytest does from the current folder, so that both use one store and train runs
under one key, also from a subfolder, without ``$STABENCH_STORE``.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import iniconfig

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

    def get(self, name: str) -> object | None:
        """The ``stabench_<name>`` option (``store``, ``cpu_threads``, ...), None when not set."""
        value = self.options.get(f"stabench_{name}")
        return None if value == "" else value

    def store(self) -> Path | None:
        """``stabench_store``, relative to the file as pytest takes it."""
        value = self.get("store")
        return None if value is None else self.rootdir / os.path.expanduser(str(value))

    def count(self, name: str) -> int | None:
        """An integer option (``cpu_threads``); a value that is not one is named with its file."""
        value = self.get(name)
        if value is None:
            return None
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"stabench_{name} = {value!r} in {self.path} is invalid; expected an integer") from None


def project_settings(start: str | os.PathLike[str] | None = None) -> ProjectSettings:
    """The settings pytest would use in a session started in ``start`` (the current folder)."""
    start = Path(start if start is not None else os.getcwd()).resolve()
    folders = (start, *start.parents)
    nearest_pyproject = None
    for folder in folders:
        for name in CONFIG_FILES:
            path = folder / name
            if path.is_file():
                options = _pytest_options(path)
                if options is not None:
                    return ProjectSettings(path, folder, options)
                if name == "pyproject.toml" and nearest_pyproject is None:
                    nearest_pyproject = path
    if nearest_pyproject is not None:
        return ProjectSettings(nearest_pyproject, nearest_pyproject.parent)
    setup_py = next((folder for folder in folders if (folder / "setup.py").is_file()), start)
    return ProjectSettings(None, setup_py)


def _pytest_options(path: Path) -> dict[str, object] | None:
    """The stabench options in ``path``'s pytest section; None when it has no such section (a
    ``pytest.ini`` or ``pytest.toml`` counts even without one, as in pytest)."""
    always = path.name in ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini")
    try:
        if path.suffix == ".toml":
            with path.open("rb") as file:
                data = tomllib.load(file)
            if path.name == "pyproject.toml":  # [tool.pytest] (pytest 9's TOML types) or [tool.pytest.ini_options]
                tool = data.get("tool", {}).get("pytest", {})
                native = {name: value for name, value in tool.items() if name != "ini_options"}
                if native and tool.get("ini_options"):
                    raise ValueError("it has both [tool.pytest] and [tool.pytest.ini_options]; pytest takes one")
                table = native or tool.get("ini_options")
            else:
                table = data.get("pytest")
        else:
            sections = iniconfig.IniConfig(str(path)).sections
            if path.name == "setup.cfg" and "tool:pytest" not in sections and "pytest" in sections:
                raise ValueError("its section is [pytest], which pytest no longer reads in setup.cfg; "
                                 "expected [tool:pytest]")
            table = sections.get({"setup.cfg": "tool:pytest"}.get(path.name, "pytest"))
    except (OSError, UnicodeDecodeError, ValueError, tomllib.TOMLDecodeError, iniconfig.ParseError) as error:
        raise ValueError(f"cannot read pytest's configuration file {path}: {error}") from None
    if table is None:
        return {} if always else None
    return {name: value for name, value in dict(table).items() if name.startswith("stabench_")}
