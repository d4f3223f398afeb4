"""The command reads the configuration file as a pytest session does (tests written against surviving mutants)."""
import string
import tempfile
import warnings
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import example, given, settings

from stabench.settings import check_option_keys, override_ini, project_settings
from stabench.store import default_store_path
from test_settings import _pytest_reads, _session_reads


@pytest.fixture(autouse=True)
def _no_pytest_addopts(monkeypatch):
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    monkeypatch.delenv("STABENCH_STORE", raising=False)


def _both_read(folder: Path, files: dict[str, str], addopts_env: str = "") -> tuple:
    """(what a pytest session started in ``folder`` takes, what the command takes): store, threads, device."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("PYTEST_ADDOPTS", addopts_env)
        expected = _session_reads()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = project_settings(folder)
        return expected, (str(found.store() or default_store_path(found.rootdir)), found.count("cpu_threads"),
                          found.get("device"))


VALUE = st.text(alphabet=string.ascii_lowercase + "=.", min_size=1, max_size=8).filter(
    lambda text: not text.startswith(("=", ".")))


@settings(max_examples=25, deadline=None)
@given(VALUE, VALUE)
@example("a=b.sqlite", "cpu")
def test_a_dash_o_value_holding_an_equals_sign_is_read_whole(store, device):
    """pytest splits ``-o KEY=VALUE`` at the first "=": ``stabench_store=a=b.sqlite`` names ``a=b.sqlite``."""
    with tempfile.TemporaryDirectory() as top:
        folder = Path(top).resolve()
        expected, found = _both_read(folder, {"pytest.ini": "[pytest]\n"},
                                     f"-o stabench_store={store} -o stabench_device={device}")
        assert found == expected
        assert found[0] == str(folder / store) and found[2] == device


def test_override_ini_splits_at_the_first_equals_sign_and_the_last_entry_wins():
    assert override_ini(["stabench_store=a=b", "x=1", "x=2", "bare"]) == {"stabench_store": "a=b", "x": "2"}
    assert override_ini([" stabench_store =v"]) == {" stabench_store ": "v"}  # another key, as pytest takes it


def test_a_home_relative_store_in_the_file_is_under_the_home_folder(tmp_path):
    expected, found = _both_read(tmp_path, {"pytest.ini": "[pytest]\nstabench_store = ~/runs/r.sqlite\n"})
    assert found == expected and found[0] == str(Path.home() / "runs" / "r.sqlite")


@pytest.mark.parametrize("addopts_env", ["store x.sqlite", "device cpu tests", "cpu-threads 4"])
def test_a_test_path_named_like_an_option_is_no_option(tmp_path, addopts_env):
    """``pytest store`` runs the tests in the folder ``store``: no --stabench-store is given."""
    (tmp_path / "store").mkdir()
    (tmp_path / "pytest.ini").write_text(f"[pytest]\naddopts = {addopts_env}\n")
    found = project_settings(tmp_path)
    assert found.flags == {} and _pytest_reads(addopts_env.split()) == {"store": None, "cpu_threads": None,
                                                                        "device": None}
    assert found.store() is None and found.get("device") is None


def test_numbers_in_ini_options_are_read_as_pytest_reads_an_ini_file(tmp_path):
    """[tool.pytest.ini_options] values are ini text: a number there is taken as its text, store included."""
    expected, found = _both_read(tmp_path, {"pyproject.toml": "[tool.pytest.ini_options]\nstabench_store = 5\n"
                                                              "stabench_cpu_threads = 3\n"})
    assert found == expected == (str(tmp_path / "5"), 3, None)


def test_a_key_another_plugin_registered_is_not_refused():
    def named(key):
        return f"{key} in pytest.ini"

    check_option_keys(["stabench_mine", "other"], named, registered=lambda key: key == "stabench_mine")
    with pytest.raises(ValueError, match=r"^stabench_stor in pytest.ini is not a stabench option \(did you mean "
                                         r"'stabench_store'\?\)"):
        check_option_keys(["stabench_stor"], named, registered=lambda key: key == "stabench_mine")


@pytest.mark.parametrize("files, addopts_env, store", [
    ({"pytest.ini": "[pytest]\nstabench_store = key.sqlite\n"}, "--rootdir=sub", "key.sqlite"),  # beside the file
    ({"sub/keep": ""}, "--rootdir=sub -o stabench_store=o.sqlite", "o.sqlite"),  # no file: the current folder's
])
def test_a_store_key_is_relative_to_the_file_not_to_a_rootdir_given_elsewhere(tmp_path, files, addopts_env, store):
    (tmp_path / "sub").mkdir()
    expected, found = _both_read(tmp_path, files, addopts_env)
    assert found == expected and tmp_path / found[0] == tmp_path / store  # a relative one: the current folder's


def test_a_rootdir_that_is_no_folder_is_refused_as_pytest_refuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_ADDOPTS", "--rootdir=nowhere")
    with pytest.raises(ValueError, match=r"^--rootdir=nowhere in \$PYTEST_ADDOPTS is not a folder; expected one "
                                         r"\(pytest refuses it too\)$"):
        project_settings(tmp_path)
