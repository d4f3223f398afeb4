"""The CLI finds pytest's configuration file, and reads its stabench options, as pytest does."""
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import pytest
from _pytest.config.findpaths import determine_setup  # the oracle: pytest's own search
from hypothesis import given, settings

from stabench.settings import project_settings

# Each file's variants: those with pytest's section (holding a stabench_store) first, then those without.
CONTENTS = {
    "pytest.toml": (['[pytest]\nstabench_store = "{}"\n'], ["[other]\n"]),
    ".pytest.toml": (['[pytest]\nstabench_store = "{}"\n'], [""]),
    "pytest.ini": (["[pytest]\nstabench_store = {}\n"], ["[other]\nx = 1\n"]),
    ".pytest.ini": (["[pytest]\nstabench_store = {}\n"], [""]),
    "pyproject.toml": (['[tool.pytest.ini_options]\nstabench_store = "{}"\n', '[tool.pytest]\nstabench_store = "{}"\n'],
                       ['[project]\nname = "x"\n']),
    "tox.ini": (["[pytest]\nstabench_store = {}\n"], ["[tox]\nenvlist = py\n"]),
    "setup.cfg": (["[tool:pytest]\nstabench_store = {}\n"], ["[metadata]\nname = x\n"]),
    "setup.py": ([""], [""]),
}
LAYOUTS = st.lists(st.dictionaries(st.sampled_from(sorted(CONTENTS)), st.tuples(st.booleans(), st.integers(0, 1)),
                                   max_size=3), min_size=3, max_size=3)


@settings(max_examples=80, deadline=None)
@given(LAYOUTS)
def test_the_configuration_file_and_rootdir_are_pytest_s(layout):
    """Three nested folders, each with some configuration files with or without pytest's section;
    the search starts in the innermost one."""
    with tempfile.TemporaryDirectory() as top:
        folder = Path(top).resolve()
        for depth, files in enumerate(layout):
            folder = folder / f"level{depth}"
            folder.mkdir()
            for name, (matches, variant) in files.items():
                variants = CONTENTS[name][0 if matches else 1]
                (folder / name).write_text(variants[variant % len(variants)].format(f"{name}-{depth}.sqlite"))
        rootdir, inipath, _, _ = determine_setup(inifile=None, override_ini=None, args=[], rootdir_cmd_arg=None,
                                                 invocation_dir=folder)
        found = project_settings(folder)
        assert (found.path, found.rootdir) == (inipath, rootdir)
        expected = None
        if inipath is not None and layout[len(inipath.relative_to(top).parts) - 2][inipath.name][0]:
            expected = inipath.parent / f"{inipath.name}-{len(inipath.relative_to(top).parts) - 2}.sqlite"
        assert found.store() == expected


@pytest.mark.parametrize("name, text, message", [
    ("pyproject.toml", "[tool.pytest]\nx = 1\n[tool.pytest.ini_options]\ny = \"2\"\n",
     "it has both [tool.pytest] and [tool.pytest.ini_options]; pytest takes one"),
    ("setup.cfg", "[pytest]\nstabench_store = s.sqlite\n",
     "its section is [pytest], which pytest no longer reads in setup.cfg; expected [tool:pytest]"),
])
def test_a_file_pytest_refuses_is_refused(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(BaseException):  # pytest's UsageError, or its fail() for setup.cfg
        determine_setup(inifile=None, override_ini=None, args=[], rootdir_cmd_arg=None, invocation_dir=tmp_path)
    with pytest.raises(ValueError) as error:
        project_settings(tmp_path)
    assert str(error.value) == f"cannot read pytest's configuration file {tmp_path.resolve() / name}: {message}"


@pytest.mark.parametrize("name, text", [
    ("pyproject.toml", "[tool.pytest]\nstabench_cpu_threads = 2\nstabench_device = \"cpu\"\n"),  # pytest 9's types
    ("pyproject.toml", "[tool.pytest.ini_options]\nstabench_cpu_threads = \"2\"\nstabench_device = \"cpu\"\n"),
    ("pytest.ini", "[pytest]\nstabench_cpu_threads = 2\nstabench_device = cpu\n"),
])
def test_options_are_read_in_each_format(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    found = project_settings(tmp_path)
    assert (found.count("cpu_threads"), found.get("device"), found.store()) == (2, "cpu", None)


@pytest.mark.parametrize("name, text, message", [
    ("pytest.ini", "[pytest]\nstabench_cpu_threads = two\n",
     "stabench_cpu_threads = 'two' in {path} is invalid; expected an integer"),
    ("pyproject.toml", "[tool.pytest\n", "cannot read pytest's configuration file {path}: *"),
])
def test_a_bad_file_or_value_is_named(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    path = tmp_path / name
    with pytest.raises(ValueError) as error:
        project_settings(tmp_path).count("cpu_threads")
    assert len(str(error.value).splitlines()) == 1
    prefix, _, _ = message.partition("*")
    assert str(error.value).startswith(prefix.format(path=path))


def test_without_any_file_the_start_folder_is_the_rootdir(tmp_path):
    found = project_settings(tmp_path)
    assert (found.path, found.rootdir, found.store()) == (None, tmp_path.resolve(), None)
    assert not any(tmp_path.iterdir())  # nothing written
