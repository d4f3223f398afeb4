"""The CLI finds pytest's configuration file, and reads its stabench options, as pytest does."""
import json
import shlex
import tempfile
import warnings
from pathlib import Path

import hypothesis.strategies as st
import pytest
from _pytest.config.argparsing import Parser  # the oracle for addopts: pytest's own parser
from _pytest.config.findpaths import determine_setup  # the oracle: pytest's own search
from hypothesis import given, settings

from stabench import plugin
from stabench.settings import FLAGS, project_settings


@pytest.fixture(autouse=True)
def _no_pytest_addopts(monkeypatch):
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)

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


def test_a_misspelt_key_is_warned_of_and_ignored_as_pytest_ignores_it(tmp_path):
    """Its option keeps its default unsaid (runs keyed by another thread count); a session stops
    on it, but the command cannot see the keys a project's conftest registers, so it warns."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nstabench_cpu_thread = 1\n")
    with pytest.warns(UserWarning, match=r"^stabench_cpu_thread in .*pytest.ini is not a stabench option \(did you "
                                         r"mean 'stabench_cpu_threads'\?\); known options: stabench_store, .*; the "
                                         r"stabench command ignores it"):
        found = project_settings(tmp_path)
    assert found.count("cpu_threads") is None


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
     "stabench_cpu_threads = 'two' in {path} is invalid; expected an integer from 1 to 1024"),
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


@pytest.mark.parametrize("value", ["2.5", "true"])
def test_a_thread_count_written_as_another_toml_type_is_refused_not_rounded(tmp_path, value):
    (tmp_path / "pyproject.toml").write_text(f"[tool.pytest]\nstabench_cpu_threads = {value}\n")
    with pytest.raises(ValueError, match=r"^stabench_cpu_threads = .* in .*pyproject.toml is invalid; expected an "
                                         r"integer"):
        project_settings(tmp_path).count("cpu_threads")


def test_an_empty_key_is_no_option_and_a_key_set_by_dash_o_wins_over_the_file(tmp_path, monkeypatch):
    (tmp_path / "pytest.ini").write_text("[pytest]\nstabench_store =\nstabench_device = cpu\n")
    found = project_settings(tmp_path)
    assert (found.store(), found.get("store"), found.get("device")) == (None, None, "cpu")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o stabench_store=o.sqlite -o stabench_device=")
    found = project_settings(tmp_path)
    assert (found.store(), found.get("device")) == (tmp_path.resolve() / "o.sqlite", None)
    (tmp_path / "pytest.ini").write_text("[pytest]\nstabench_store = key.sqlite\n")
    assert project_settings(tmp_path).store() == tmp_path.resolve() / "o.sqlite"


def test_a_store_written_as_a_toml_number_is_refused_where_pytest_refuses_it(tmp_path):
    """The CLI stored runs in a file named 5, where pytest never looks."""
    (tmp_path / "pyproject.toml").write_text("[tool.pytest]\nstabench_store = 5\n")
    with pytest.raises(ValueError, match=r"^stabench_store = 5 in .*pyproject.toml is invalid; expected a path in "
                                         r"quotes"):
        project_settings(tmp_path).store()
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\nstabench_store = 5\n")
    assert project_settings(tmp_path).store() == tmp_path / "5"  # ini values are text there, for pytest too
    (tmp_path / "pytest.ini").write_text("[pytest]\nstabench_store = outer.sqlite\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")  # empty: still pytest's file
    assert project_settings(tmp_path / "a").path == tmp_path / "a" / "pyproject.toml"


def test_without_a_pytest_section_anywhere_the_nearest_pyproject_is_the_file(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "outer"\n')
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "pyproject.toml").write_text('[project]\nname = "inner"\n')
    rootdir, inipath, _, _ = determine_setup(inifile=None, override_ini=None, args=[], rootdir_cmd_arg=None,
                                             invocation_dir=tmp_path / "inner")
    found = project_settings(tmp_path / "inner")
    assert (found.path, found.rootdir) == (inipath, rootdir) == ((tmp_path / "inner" / "pyproject.toml").resolve(),
                                                                  (tmp_path / "inner").resolve())


def test_without_any_file_the_start_folder_is_the_rootdir(tmp_path):
    found = project_settings(tmp_path)
    assert (found.path, found.rootdir, found.store()) == (None, tmp_path.resolve(), None)
    assert not any(tmp_path.iterdir())  # nothing written


VALUES = st.text(alphabet="ab1./_ é", min_size=1, max_size=6).filter(lambda text: text.strip() == text != "")
ARGS = st.lists(st.one_of(
    st.sampled_from(["-q", "-x", "-n", "2", "--tb=short", "tests", "--stabench-recompute", "--"]).map(lambda a: [a]),
    st.one_of(st.tuples(st.sampled_from(["store", "device", "tag", "seeds"]), VALUES, st.booleans()),
              st.tuples(st.just("cpu-threads"), st.integers(1, 64).map(str), st.booleans())).map(
        lambda flag: [f"--stabench-{flag[0]}={flag[1]}"] if flag[2] else [f"--stabench-{flag[0]}", flag[1]]),
), max_size=6).map(lambda groups: [arg for group in groups for arg in group])


def _pytest_reads(args: list[str]) -> dict[str, str | None]:
    """What a pytest session takes for each flag the command reads, from these arguments."""
    parser = Parser(_ispytest=True)
    plugin.pytest_addoption(parser)
    namespace = parser.parse_known_args(args)
    values = {name.replace("-", "_"): getattr(namespace, "stabench_" + name.replace("-", "_")) for name in FLAGS}
    return {name: None if value is None else str(value) for name, value in values.items()}  # cpu_threads: an int


@settings(max_examples=150, deadline=None)
@given(ARGS, ARGS, st.booleans())
def test_flags_in_addopts_and_pytest_addopts_are_read_as_pytest_reads_them(addopts, environment, toml):
    """pytest puts the file's addopts, then $PYTEST_ADDOPTS, before its command line; a later flag wins."""
    with tempfile.TemporaryDirectory() as top, pytest.MonkeyPatch.context() as patch:
        if toml:  # pytest 9's native TOML: addopts is a list
            (Path(top) / "pytest.toml").write_text(f"[pytest]\naddopts = {json.dumps(addopts)}\n"
                                                   f"stabench_store = \"key.sqlite\"\n")
        else:
            (Path(top) / "pytest.ini").write_text(f"[pytest]\naddopts = {shlex.join(addopts)}\n"
                                                  f"stabench_store = key.sqlite\n")
        patch.setenv("PYTEST_ADDOPTS", shlex.join(environment))
        found = project_settings(top)
        expected = _pytest_reads([*addopts, *environment])
        assert {name: found.flags.get(name, (None,))[0] for name in expected} == expected
        if expected["store"] is not None:  # a flag's store wins over the key, and is the current folder's
            assert found.store() == Path(expected["store"])
        else:
            assert found.store() == Path(top).resolve() / "key.sqlite"


def test_a_flag_names_where_it_was_written_in_its_error(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.pytest]\naddopts = ["-q", "--stabench-cpu-threads", "two"]\n')
    with pytest.raises(ValueError, match=r"^--stabench-cpu-threads='two' in addopts of .*pyproject.toml is invalid; "
                                         r"expected an integer from 1 to 1024$"):
        project_settings(tmp_path).count("cpu_threads")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--stabench-cpu-threads=3 --stabench-device 'cpu'")
    found = project_settings(tmp_path)
    assert (found.count("cpu_threads"), found.get("device"), found.where("device")) == (
        3, "cpu", "--stabench-device in $PYTEST_ADDOPTS")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--stabench-store 'unclosed")
    with pytest.raises(ValueError, match=r"^cannot read \$PYTEST_ADDOPTS \"--stabench-store 'unclosed\": No closing "
                                         r"quotation; expected arguments quoted as in a shell$"):
        project_settings(tmp_path)


def test_an_empty_store_flag_is_no_store_option_as_in_pytest(tmp_path, monkeypatch):
    """pytest takes --stabench-store= as no store named, so its default, not the file's key."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nstabench_store = key.sqlite\n")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--stabench-store=")
    assert project_settings(tmp_path).store() is None
    monkeypatch.setenv("PYTEST_ADDOPTS", "--stabench-store --stabench-device=cpu")  # no value: pytest refuses it
    found = project_settings(tmp_path)
    assert (found.store(), found.get("device")) == (tmp_path.resolve() / "key.sqlite", "cpu")


def test_a_store_flag_left_without_its_value_at_the_end_is_no_flag(tmp_path, monkeypatch):
    """pytest refuses a trailing --stabench-store; the command ignores it and reads the file's key."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nstabench_store = key.sqlite\n")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-q --stabench-store")
    found = project_settings(tmp_path)
    assert "store" not in found.flags and found.store() == tmp_path.resolve() / "key.sqlite"
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o stabench_store -o stabench_device=cpu")  # pytest refuses "-o key" too
    found = project_settings(tmp_path)
    assert (found.store(), found.get("device")) == (tmp_path.resolve() / "key.sqlite", "cpu")


SESSION_KEYS = st.fixed_dictionaries({}, optional={
    "stabench_store": st.sampled_from(["key.sqlite", "sub/k.sqlite"]), "stabench_cpu_threads": st.sampled_from("23"),
    "stabench_device": st.sampled_from(["cpu", "cuda"])})
SESSION_FLAGS = ["--stabench-store=flag.sqlite", "--stabench-cpu-threads=5", "--stabench-device=mps", "-q", "x.py",
                 "--stabench-store", "two.sqlite", "--stabench-device="]
CHOOSING = ["-o stabench_store=o.sqlite", "--override-ini=stabench_cpu_threads=7", "--rootdir=sub",
            "-c sub/other.ini", "--config-file=sub/other.ini", "-ostabench_device=meta",  # $PYTEST_ADDOPTS only
            "-o 'stabench_store = spaced.sqlite'", "-o addopts=", "-o addopts=--stabench-device=tpu",
            "-c sub/ci.cfg", "-c sub/ci.toml", "--rootdir=nowhere", "--rootdir=$HOME"]


def _write_config(folder: Path, kind: str, keys: dict, addopts: str) -> None:
    entries = {**keys, **({"addopts": addopts} if addopts else {})}
    if kind in ("pytest.ini", "setup.cfg"):
        section = "tool:pytest" if kind == "setup.cfg" else "pytest"
        (folder / kind).write_text(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
        return
    native = kind == "pytest.toml"  # pytest 9's TOML types: a number, a list of arguments
    lines = [f"{k} = {json.dumps(int(v) if native and k == 'stabench_cpu_threads' else shlex.split(v) if native and k == 'addopts' else v)}"  # noqa: E501
             for k, v in entries.items()]
    (folder / ("pytest.toml" if native else "pyproject.toml")).write_text(
        ("[pytest]" if native else "[tool.pytest.ini_options]") + "\n" + "".join(f"{line}\n" for line in lines))


def _session_reads() -> tuple:
    """What a pytest session started here takes: its store, thread count and device."""
    from _pytest.config import get_config

    config = get_config([])
    config = config.pluginmanager.hook.pytest_cmdline_parse(pluginmanager=config.pluginmanager, args=[])
    try:
        device = plugin.option(config, "device") or None  # --stabench-device= is no device named: auto
        return str(plugin.store_path(config)), plugin.option(config, "cpu-threads"), device
    finally:
        config._ensure_unconfigure()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["pytest.ini", "setup.cfg", "pyproject.toml", "pytest.toml"]), SESSION_KEYS,
       st.lists(st.sampled_from(SESSION_FLAGS), max_size=3).map(" ".join),
       st.lists(st.sampled_from(SESSION_FLAGS + CHOOSING), max_size=3).map(" ".join), st.sampled_from([".", "sub"]))
def test_the_command_reads_what_a_pytest_session_reads(kind, keys, addopts, environment, start):
    """Against a real session's configuration, -o, --rootdir and -c in $PYTEST_ADDOPTS included
    (the command ignored them, so `stabench export` read another store than the session wrote)."""
    from stabench.store import default_store_path

    with tempfile.TemporaryDirectory() as top, pytest.MonkeyPatch.context() as patch:
        folder = Path(top).resolve()
        (folder / "sub").mkdir()
        (folder / "sub" / "other.ini").write_text("[pytest]\nstabench_store = other.sqlite\n")
        (folder / "sub" / "ci.cfg").write_text("[tool:pytest]\nstabench_store = cfg.sqlite\n")  # read by suffix
        (folder / "sub" / "ci.toml").write_text('[tool.pytest.ini_options]\nstabench_store = "toml.sqlite"\n')
        _write_config(folder, kind, keys, addopts)
        patch.chdir(folder / start)
        patch.delenv("STABENCH_STORE", raising=False)
        patch.setenv("PYTEST_ADDOPTS", environment)
        try:
            expected = _session_reads()
        except (pytest.UsageError, SystemExit, OSError):  # a command line pytest refuses (-c of no file)
            return
        with warnings.catch_warnings(record=True) as said:  # "stabench_store " is a key pytest does not know
            warnings.simplefilter("always")
            found = project_settings(folder / start)
        prefix = "-o 'stabench_store ' in $PYTEST_ADDOPTS is not a stabench option"
        assert [str(w.message)[:len(prefix)] for w in said] == (
            [prefix]
            if "'stabench_store = spaced.sqlite'" in environment else [])
        assert (str(found.store() or default_store_path(found.rootdir)), found.count("cpu_threads"),
                found.get("device")) == expected
