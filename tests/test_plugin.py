"""The pytest plugin, driven through pytester in subprocesses (xdist needs real processes)."""
import contextlib
import json
import os
import re
import shutil
import sqlite3
import sys
import time

import pytest
import torch

CLAIMS = '''
import pytest
import stabench

FAST = stabench.get_recipe("bert-default", max_steps=6, trace_every=2, lr=2e-3)

@stabench.claim(task="polarity", model=MODEL, recipe=FAST, seeds=4)
def test_true_claim(study):
    assert study.n == 4
    assert study.failures <= 4

@pytest.mark.parametrize("task", ["polarity", "same-number"])
@stabench.claim(model=MODEL, recipe=FAST, seeds=2)
def test_false_claim(study, task):
    assert study.mean > 0.999
'''


@pytest.fixture
def suite(pytester, tiny_model):
    pytester.makepyfile(test_claims=f"MODEL = {tiny_model!r}\n" + CLAIMS)
    return pytester


def _run(pytester, *args):
    """A pytest session on the suite: in this process (no start-up cost), or in a subprocess
    under xdist, whose workers are processes anyway."""
    run = pytester.runpytest_subprocess if "-n" in args else pytester.runpytest_inprocess
    return run("-p", "no:cacheprovider", "--stabench-cpu-threads=1", "-W", "ignore::DeprecationWarning", *args)


def _report(path):
    return json.loads(path.read_text())


def _report_of(result, pytester):
    """The JSON report a session just wrote to r.json."""
    assert result.ret in (0, 1), result.stdout.str()[-2000:]
    return _report(pytester.path / "r.json")


def test_verdicts_numbers_reports_and_reuse_in_a_second_session(suite):
    result = _run(suite, "-v", "--stabench-store=s.sqlite", "--stabench-json=r.json", "--stabench-md=r.md")
    result.assert_outcomes(passed=9, failed=2)
    result.stdout.fnmatch_lines([
        "*test_true_claim?verdict?*PASSED*",
        "*test_false_claim?verdict-polarity?*FAILED*",
        "*assert * > 0.999*",
        "*where * = Study(polarity, bert-default*n=2: accuracy *",
        "*stabench claims*",
        "*test_claims.py::test_false_claim?polarity?*polarity*failed*",
    ])
    result.stdout.fnmatch_lines(["*test_true_claim?seed0? PASSED accuracy=0.* *"])
    report = _report(suite.path / "r.json")
    assert sorted(c["claim"] for c in report["claims"]) == [
        "test_claims.py::test_false_claim[polarity]", "test_claims.py::test_false_claim[same-number]",
        "test_claims.py::test_true_claim"]
    assert {c["verdict"] for c in report["claims"]} == {"passed", "failed"}
    # test_false_claim[polarity] shares its two runs with test_true_claim: trained once, then read.
    assert len(report["seeds"]) == 8 and sum(s["trained"] for s in report["seeds"]) == 6
    assert report["interrupted"] is None and report["exit_status"] == result.ret == 1
    markdown = (suite.path / "r.md").read_text()
    for claim in report["claims"]:
        assert claim["claim"] in markdown
        # A failed verdict says why, in the JSON and in the Markdown; a passed one has nothing to say.
        assert (claim["message"] or "").startswith("assert " if claim["verdict"] == "failed" else "")
        assert bool(claim["message"]) == (claim["verdict"] == "failed")
    assert "### Why claims did not pass" in markdown
    assert "- `test_claims.py::test_false_claim[polarity]`: assert " in markdown

    again = _run(suite, "--stabench-store=s.sqlite", "--stabench-json=r.json", "--stabench-plots=figs",
                 "--stabench-plot-format=svg")
    again.assert_outcomes(passed=9, failed=2)
    assert sorted(p.name for p in (suite.path / "figs").iterdir()) == sorted(
        f"test_claims-{claim}-{figure}.svg" for claim in ("test_true_claim", "test_false_claim_polarity_",
                                                          "test_false_claim_same-number_")
        for figure in ("scores", "grad-norms", "training"))
    report = _report(suite.path / "r.json")
    assert not any(s["trained"] for s in report["seeds"])
    assert not any(c["trained_in_verdict"] for c in report["claims"])
    runs = {key for claim in report["claims"] for key in claim["keys"]}
    assert len(runs) == 6 and len(report["seeds"]) == 8  # two claims share a study's runs
    # What produced each study, said in the report itself: a CI job keeps it without the store.
    from stabench.store import Store

    with Store(suite.path / "s.sqlite") as store:
        for claim in report["claims"]:
            stored = [store.get(key) for key in claim["keys"]]
            produced = claim["produced_by"]
            assert produced["task"]["fingerprint"] == stored[0].task["fingerprint"]
            assert produced["model"]["files_sha256"] == stored[0].model["files_sha256"]
            assert produced["stacks"] == [{name: stored[0].environment[name] for name in produced["stacks"][0]}]
            assert {"python", "torch", "transformers", "datasets", "cuda", "device_name"} <= set(produced["stacks"][0])
    again.stdout.fnmatch_lines(["runs: 0 trained this session (0 by seed items, 0 by verdicts); 6 read from the "
                                "store (*/s.sqlite)", "stabench wrote r.json, figs (9 files)"])  # where each went
    verdicts_only = _run(suite, "--stabench-store=s.sqlite", "-k", "verdict")
    verdicts_only.stdout.fnmatch_lines(["runs: 0 trained this session (0 by seed items, 0 by verdicts); 6 read from "
                                        "the store (*/s.sqlite)"])  # it used to say 0: no seed item had reported
    recomputed = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim", "--stabench-recompute")
    recomputed.stdout.fnmatch_lines(["runs: 4 trained this session (4 by seed items, 0 by verdicts); 0 read from the "
                                     "store (*/s.sqlite)"])
    assert not (suite.path / "s.sqlite-attempts").exists()  # the session's markers go with it, and their folder
    assert not (suite.path / "s.sqlite-locks").exists()


def test_a_session_without_claims_imports_neither_torch_nor_scipy(pytester):
    """The plugin loads in every pytest session of the environment: seconds of imports are paid by
    claims only."""
    pytester.makepyfile(test_plain="""
import sys

def test_plain():
    assert "stabench.plugin" in sys.modules
    assert not {"torch", "scipy.stats", "transformers"} & set(sys.modules)
""")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    emptied = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--stabench-device=", "-k", "nothing")
    assert emptied.ret == pytest.ExitCode.NO_TESTS_COLLECTED  # an empty device is auto, as it always was


def test_one_process_keeps_each_module_together_so_its_module_fixture_is_set_up_once(pytester, tiny_model):
    """Claims' seeds interleaved across files (xdist's spreading) set a module fixture up per visit."""
    module = f"""
import pytest
import stabench

@pytest.fixture(scope="module")
def opened():
    with open("setups.txt", "a") as log:
        log.write(__name__ + "\\n")

@stabench.claim(task="polarity", model={tiny_model!r}, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=2)
def test_claim(study, opened):
    assert study.n == 2

def test_plain(opened):
    pass
"""
    pytester.makepyfile(test_one=module, test_two=module)
    listed = _run(pytester, "--co", "-q").stdout.lines
    assert [line for line in listed if "::" in line] == [
        f"test_{name}.py::{test}" for name in ("one", "two")
        for test in ("test_claim[seed0]", "test_claim[seed1]", "test_claim[verdict]", "test_plain")]
    _run(pytester, "--stabench-store=s.sqlite").assert_outcomes(passed=8)
    assert (pytester.path / "setups.txt").read_text().split() == ["test_one", "test_two"]


def test_xdist_gives_the_serial_verdicts_and_trains_each_seed_once(suite):
    _run(suite, "--stabench-store=serial.sqlite", "--stabench-json=serial.json")
    parallel = _run(suite, "-n", "2", "--stabench-store=parallel.sqlite", "--stabench-json=parallel.json")
    parallel.assert_outcomes(passed=9, failed=2)
    # The workers' counts reach the controller; which items trained a run depends on the scheduling.
    parallel.stdout.fnmatch_lines(["runs: 6 trained this session (* by seed items, * by verdicts); 0 read from the "
                                   "store (*/parallel.sqlite)"])
    serial, par = _report(suite.path / "serial.json"), _report(suite.path / "parallel.json")

    def table(report):
        return sorted((c["claim"], c["verdict"], c["summary"]["n"], c["summary"]["mean"], c["summary"]["std"],
                       c["failures_text"]) for c in report["claims"])

    assert table(serial) == table(par)
    trained = sum(s["trained"] for s in par["seeds"]) + sum(len(c["trained_in_verdict"]) for c in par["claims"])
    with sqlite3.connect(suite.path / "parallel.sqlite") as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == trained == 6
    workers = {s["worker"] for s in par["seeds"] if s["item"].startswith("test_claims.py::test_true_claim")}
    assert [s["item"] for s in par["seeds"]] == [s["item"] for s in _report(suite.path / "serial.json")["seeds"]] == [
        *(f"test_claims.py::test_false_claim[seed{seed}-{task}]" for task in ("polarity", "same-number")
          for seed in (0, 1)), *(f"test_claims.py::test_true_claim[seed{seed}]" for seed in range(4))]  # not as done
    assert workers == {"gw0", "gw1"}
    from stabench.plugin import _without_seed_id

    assert _without_seed_id("t.py::test_seed1_ok[seed1-rte]", 1) == "t.py::test_seed1_ok[-rte]"  # not the name's


def test_a_worker_killed_mid_seed_makes_the_claim_fail(suite):
    suite.makeconftest('''
import os, signal
import stabench.train

_original = stabench.train.fine_tune

def _dies_once(prepared, **kwargs):
    if prepared.seed == 1 and not os.path.exists("killed"):
        open("killed", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return _original(prepared, **kwargs)

stabench.train.fine_tune = _dies_once
''')
    result = _run(suite, "-n", "2", "--stabench-store=s.sqlite", "-k", "true_claim", "--stabench-json=r.json")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1
    assert (suite.path / "killed").exists()
    verdict_line = [line for line in result.stdout.lines if "test_true_claim[verdict]" in line]
    assert verdict_line and not any("PASSED" in line for line in verdict_line), verdict_line
    report = _report(suite.path / "r.json")
    assert not any(c["verdict"] == "passed" for c in report["claims"])


def test_a_verdict_missing_a_seed_whose_worker_died_fails_in_one_line(suite, monkeypatch):
    """The seed's attempt file says this session started it and never stored it (its worker was
    killed): the verdict neither retrains it nor shows a traceback."""
    from stabench.claims import Session

    attempt, collect = Session._attempt, Session.collect

    def seed_1_died(self, key):
        if key == self._prepare(self._arm, 1).key:
            return {"session": self.session_id, "stored": False, "error": None, "pid": 4242, "host": "gpu7"}
        return attempt(self, key)

    def remember_arm(self, arm, seeds):
        object.__setattr__(self, "_arm", arm)
        return collect(self, arm, seeds)

    monkeypatch.setattr(Session, "_attempt", seed_1_died)  # the session runs in this process
    monkeypatch.setattr(Session, "collect", remember_arm)
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and verdict", "--stabench-json=r.json",
                  "--stabench-md=r.md")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "did not finish in this session: its process (pid 4242 on gpu7) died" in output
    assert "self = Session(" not in output and "Traceback" not in output
    # The claim keeps its row in the reports, saying why it has no study.
    (claim,) = _report(suite.path / "r.json")["claims"]
    assert claim["verdict"] == "error" and claim["summary"] is None and claim["keys"] == []
    assert "its process (pid 4242 on gpu7) died" in claim["message"]
    markdown = (suite.path / "r.md").read_text()
    assert "No claim ran" not in markdown and "test_true_claim" in markdown and "| error" in markdown
    result.stdout.fnmatch_lines(["*stabench claims*", "*test_true_claim*error*"])


def test_options_are_listed_in_help(pytester):
    result = pytester.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(["*stabench: fine-tuning stability claims*", "*--stabench-store=PATH*",
                                 "*--stabench-seeds=SEEDS*", "*--stabench-recompute*", "*--stabench-device=DEVICE*",
                                 "*--stabench-workers-per-gpu=N*", "*--stabench-set=FIELD=VALUE,...*",
                                 "*--stabench-profile=NAME*", "*--stabench-baseline=SOURCE*",
                                 "*--stabench-plots=DIR*", "*--stabench-md=PATH*", "*--stabench-json=PATH*"])


def test_claim_selection_by_keyword_and_ini_options(suite):
    suite.makeini("[pytest]\nstabench_store = from-ini.sqlite\nstabench_seeds = 1\n")
    result = _run(suite, "-k", "same-number and bert-default", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_false_claim?seed0-same-number?", "*test_false_claim?verdict-same-number?"])
    assert "polarity" not in result.stdout.str()
    ran = _run(suite, "-k", "false_claim and polarity")
    ran.assert_outcomes(passed=1, failed=1)  # stabench_seeds = 1 from the ini file: one seed + the verdict
    assert (suite.path / "from-ini.sqlite").exists()


def test_ini_paths_are_relative_to_the_ini_file_and_toml_numbers_are_taken(suite, monkeypatch):
    suite.makeini("[pytest]\nstabench_store = stores/from-ini.sqlite\nstabench_md = out/claims.md\n"
                  "stabench_seeds = 1\nstabench_cpu_threads = 1\n")
    (suite.path / "sub").mkdir()
    monkeypatch.chdir(suite.path / "sub")  # pytest run from a folder below the ini file, as pytest's paths allow
    ran = suite.runpytest_inprocess("-p", "no:cacheprovider", "../test_claims.py", "-k", "false_claim and polarity")
    ran.assert_outcomes(passed=1, failed=1)
    assert (suite.path / "stores" / "from-ini.sqlite").exists() and (suite.path / "out" / "claims.md").exists()
    assert not (suite.path / "sub" / "stores").exists()

    # pytest 9's native [tool.pytest] table: numbers as TOML numbers.
    monkeypatch.chdir(suite.path)
    (suite.path / "tox.ini").unlink()
    suite.makefile(".toml", pyproject="[tool.pytest]\nstabench_seeds = \"1\"\nstabench_cpu_threads = 1\n"
                                      "stabench_store = \"s.sqlite\"\n")
    again = suite.runpytest_inprocess("-p", "no:cacheprovider", "-k", "false_claim and polarity")
    again.assert_outcomes(passed=1, failed=1)
    suite.makefile(".toml", pyproject="[tool.pytest]\nstabench_seeds = 1\n")
    bad = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: stabench_seeds in pyproject.toml: 1 is invalid; expected text in quotes, "
                              "e.g. stabench_seeds = \"...\""])
    suite.makefile(".toml", pyproject="[tool.pytest]\nstabench_cpu_threads = \"2\"\n")  # a number, quoted
    quoted = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only")
    quoted.stderr.fnmatch_lines(["ERROR: stabench_cpu_threads in pyproject.toml: '2' is text, where [tool.pytest] "
                                 "takes a TOML number; write it without quotes: stabench_cpu_threads = 2"])


def test_a_path_value_after_a_space_that_moves_pytest_s_rootdir_is_refused(suite, tmp_path_factory, monkeypatch):
    """pytest chooses its rootdir and ini file before plugins' options are known, so the value of
    ``--stabench-store /elsewhere/s.sqlite`` counts as a test path there: the ini was missed."""
    from stabench import plugin
    from stabench.store import Store

    suite.makeini("[pytest]\nstabench_seeds = 1\n")
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "s.sqlite"
    Store(elsewhere).close()
    spaced = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "--stabench-store", str(elsewhere))
    assert spaced.ret == pytest.ExitCode.USAGE_ERROR
    spaced.stderr.fnmatch_lines([f"ERROR: --stabench-store {elsewhere}: given after a space, pytest took * for a test "
                                 f"path while choosing its rootdir and config file (*), and chose {elsewhere.parent.parent}"
                                 f" and no config file instead of {suite.path} and {suite.path / 'tox.ini'}; "
                                 f"write --stabench-store={elsewhere}"])
    joined = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", f"--stabench-store={elsewhere}")
    joined.stdout.fnmatch_lines(["*test_false_claim?seed0-same-number?"])  # one seed: the ini file was read
    (suite.path / "stores").mkdir()
    Store(suite.path / "stores" / "s.sqlite").close()  # inside the project: the same rootdir and ini file
    inside = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", "--stabench-store",
                                       "stores/s.sqlite")
    assert inside.ret == pytest.ExitCode.OK
    # --rootdir keeps the rootdir, but pytest still looks for the ini file from the value's folder.
    rooted = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", f"--rootdir={suite.path}",
                                       "--stabench-store", str(elsewhere))
    rooted.stderr.fnmatch_lines([f"ERROR: --stabench-store {elsewhere}: * and chose {suite.path} and no config file "
                                 f"instead of {suite.path} and {suite.path / 'tox.ini'}; *"])
    # A value too long to be a file name is no path, and a plugin pytest knew at its first parse was no test path.
    long_tag = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", "--stabench-tag", "t" * 300)
    assert long_tag.ret == pytest.ExitCode.OK
    # Test paths in the ini's addopts come after pytest chose: no part of what a spaced value moved.
    shared = tmp_path_factory.mktemp("shared")
    (shared / "test_shared.py").write_text("def test_shared():\n    pass\n")
    suite.makeini(f"[pytest]\nstabench_seeds = 1\naddopts = {shared}\n")
    with_addopts = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q", "--stabench-store",
                                             "stores/s.sqlite")
    assert with_addopts.ret == pytest.ExitCode.OK and "test_shared.py::test_shared" in with_addopts.stdout.str()
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    registered = suite.runpytest_inprocess("-p", "no:cacheprovider", "-p", "xdist", "--collect-only", "-q",
                                           "--stabench-store", str(elsewhere), plugins=[plugin])
    assert registered.ret == pytest.ExitCode.OK


def test_the_cli_uses_the_store_and_threads_of_pytest_s_ini_file(suite, tiny_model, monkeypatch, capsys):
    from stabench.cli import main

    suite.makeini("[pytest]\nstabench_store = stores/s.sqlite\nstabench_seeds = 1\nstabench_cpu_threads = 2\n")
    monkeypatch.delenv("STABENCH_STORE")
    suite.runpytest_inprocess("-p", "no:cacheprovider", "-k", "false_claim and polarity").assert_outcomes(
        passed=1, failed=1)
    (suite.path / "sub").mkdir()
    monkeypatch.chdir(suite.path / "sub")  # the CLI from a folder below the ini file finds the session's store
    capsys.readouterr()
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.startswith("1 stored run(s)")
    # The claim's recipe and seed from the CLI: stabench_cpu_threads = 2 gives the session's key (this
    # process runs 1 thread), so the run is read, not trained again.
    assert torch.get_num_threads() == 1
    assert main(["run", "--task", "polarity", "--model", tiny_model, "--recipe", "bert-default", "--set",
                 "max_steps=6,trace_every=2,lr=2e-3", "--seeds", "0", "--device", "cpu"]) == 0
    assert "stored, not retrained" in capsys.readouterr().out
    assert not (suite.path / ".stabench").exists() and not (suite.path / "sub" / ".stabench").exists()


def test_the_cli_uses_the_store_and_threads_pytest_takes_from_addopts(suite, tiny_model, monkeypatch, capsys):
    """Flags in addopts are pytest's options like any other: the CLI read the default store instead."""
    from stabench.cli import main

    suite.makeini("[pytest]\naddopts = --stabench-store stores/a.sqlite --stabench-cpu-threads=3\n"
                  "stabench_store = not-this.sqlite\nstabench_seeds = 1\n")
    monkeypatch.delenv("STABENCH_STORE")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--stabench-cpu-threads=2")  # wins over addopts, as in pytest
    suite.runpytest_inprocess("-p", "no:cacheprovider", "-k", "false_claim and polarity").assert_outcomes(
        passed=1, failed=1)
    assert (suite.path / "stores" / "a.sqlite").exists() and not (suite.path / "not-this.sqlite").exists()
    capsys.readouterr()
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.startswith("1 stored run(s)")
    assert main(["run", "--task", "polarity", "--model", tiny_model, "--recipe", "bert-default", "--set",
                 "max_steps=6,trace_every=2,lr=2e-3", "--seeds", "0", "--device", "cpu"]) == 0
    assert "stored, not retrained" in capsys.readouterr().out  # trained by the session with 2 threads


@pytest.mark.parametrize("ini, message", [
    # the value as written, not int()'s error about it
    ("stabench_cpu_threads = two", "stabench_cpu_threads in tox.ini: 'two' is invalid; expected an integer from 1 to "
                                   "1024"),
    ("stabench_recompute = sometimes", "stabench_recompute in tox.ini: 'sometimes' is invalid; expected true or false"),
    ("stabench_baseline = base.json", "stabench_baseline in tox.ini: baseline '/*/base.json' is neither*"),  # resolved
    ("stabench_cpu_threads = 0", "stabench_cpu_threads in tox.ini: 0 is invalid; expected an integer from 1 to 1024"),
    ("stabench_gate = max_drop=1", "stabench_gate in tox.ini: gate limit 'max_drop' is unknown*"),
    ("stabench_profile = tiny", "stabench_profile in tox.ini: profile 'tiny' is invalid; expected paper or toy"),
    ("stabench_cpu_thread = 1", "stabench_cpu_thread in tox.ini is not a stabench option (did you mean "
                                "'stabench_cpu_threads'?); known options: stabench_store, *"),  # not pytest's warning
])
def test_a_bad_ini_value_is_named_as_the_ini_file_has_it(suite, ini, message):
    suite.makeini(f"[pytest]\n{ini}\n")
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_a_stabench_key_another_plugin_registers_is_its_own_and_help_shows_despite_a_misspelt_one(pytester):
    """The misspelt-key check knows only stabench's options: a conftest's own stabench_* key is
    left to it, and --help, which lists the right names, still shows."""
    pytester.makeconftest("def pytest_addoption(parser):\n    parser.addini('stabench_report_title', 'a title')\n")
    pytester.makeini("[pytest]\nstabench_report_title = Nightly\n")
    pytester.makepyfile("def test_a():\n    pass\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    (pytester.path / "conftest.py").unlink()
    refused = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["ERROR: stabench_report_title in tox.ini is not a stabench option*"])
    helped = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--help")
    assert helped.ret == pytest.ExitCode.OK and "--stabench-store" in helped.stdout.str()


def test_a_bad_value_given_by_dash_o_or_a_default_beside_an_ini_file_is_not_blamed_on_the_file(suite):
    """Both were named as the ini file's keys, which did not hold them."""
    suite.makeini("[pytest]\nstabench_store = s.sqlite\n")
    overridden = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-o", "stabench_seeds=bogus")
    assert overridden.ret == pytest.ExitCode.USAGE_ERROR
    overridden.stderr.fnmatch_lines(["ERROR: -o stabench_seeds: seeds 'bogus' are invalid; *"])
    threads = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-o", "stabench_cpu_threads=x",
                                        "-o", "stabench_cpu_threads=two")  # the last one, as pytest reads them
    threads.stderr.fnmatch_lines(["ERROR: -o stabench_cpu_threads: 'two' is invalid; expected an integer from 1 to 1024"])
    misspelt = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-o", "stabench_sore=x.sqlite")
    misspelt.stderr.fnmatch_lines(["ERROR: -o 'stabench_sore' is not a stabench option (did you mean 'stabench_store'?)*"])
    figure = suite.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "--stabench-plots=figs/x.png")
    figure.stderr.fnmatch_lines(["ERROR: --stabench-plots 'figs/x.png' looks like a figure's file name; expected a "
                                 "folder for the figures (their format: --stabench-plot-format png)"])


def test_a_baseline_from_the_ini_file_that_is_the_tag_says_how_to_turn_it_off(suite):
    """Every later session stopped on the clash, with no word of where the baseline came from."""
    from stabench.store import Store

    Store(suite.path / "s.sqlite").close()
    suite.makeini("[pytest]\nstabench_store = s.sqlite\nstabench_baseline = tag:newbase\n")
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "--stabench-tag=newbase")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --stabench-tag=newbase is also the baseline tag:newbase (set by "
                                 "stabench_baseline in tox.ini; --stabench-baseline= turns it off): the gate would*"])
    turned_off = suite.runpytest_inprocess("-p", "no:cacheprovider", "--stabench-tag=newbase", "--collect-only",
                                           "--stabench-baseline=")
    assert turned_off.ret == pytest.ExitCode.OK


def test_a_claim_on_local_files_takes_the_task_object_and_writes_strict_json(pytester, tiny_model):
    rows = [f"{'good' if i % 2 else 'bad'} film number {i},{i % 2}\n" for i in range(40)]
    pytester.path.joinpath("train.csv").write_text("text,label\n" + "".join(rows))
    pytester.path.joinpath("dev.csv").write_text("text,label\n" + "".join(rows[:16]))
    pytester.makepyfile(test_local=f"MODEL = {tiny_model!r}\n" + '''
from pathlib import Path

import stabench

MINE = stabench.local_task("mine", "train.csv", "dev.csv", text_columns=["text"])

@stabench.claim(task=MINE, model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=4), seeds=1)
def test_mine(study):
    assert study.n == 1

# Once a claim took the Task, later claims name it; a recipe file may be a path object.
@stabench.claim(task="mine", model=MODEL, recipe=Path(__file__).parent / "fast.json", seeds=1)
def test_mine_by_name(study):
    assert study.n == 1 and study.arm.recipe.name == "fast"
''')
    pytester.path.joinpath("fast.json").write_text('{"max_steps": 4}')
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-json=r.json")
    result.assert_outcomes(passed=4)
    # one recipe content
    result.stdout.fnmatch_lines(["runs: 1 trained this session *; 0 read from the store (*/s.sqlite)"])

    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")
    report = json.loads((pytester.path / "r.json").read_text(), parse_constant=refuse)  # one seed: std is NaN
    assert [(claim["task"], claim["summary"]["std"]) for claim in report["claims"]] == [("mine", None)] * 2


def test_plots_of_one_test_name_in_two_files_keep_apart(pytester, tiny_model):
    for name in ("a", "b"):
        pytester.makepyfile(**{f"test_{name}": f"MODEL = {tiny_model!r}\n" + '''
import stabench

@stabench.claim(task="polarity", model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=2)
def test_same(study):
    pass
'''})
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-plots=figs")
    files = sorted(p.name for p in (pytester.path / "figs").iterdir())
    assert files == sorted(f"test_{name}-test_same-{figure}.png" for name in ("a", "b")
                           for figure in ("scores", "grad-norms", "training"))
    result.stdout.fnmatch_lines(["stabench wrote figs (6 files)"])


def test_a_claims_own_figures_are_written_where_the_plots_go_and_counted(pytester, tiny_model):
    """The paper suite's Fig. 5 and 6 claims write figures of their own: "wrote figs (3 files)" beside
    a folder of four, or no line at all without --stabench-plots, hid them."""
    pytester.makepyfile(test_fig=f"MODEL = {tiny_model!r}\n" + '''
import stabench
from stabench import plots

@stabench.claim(task="polarity", model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=2)
def test_drawn(study, stabench_figure):
    plots.plot_study(study, stabench_figure("my scores"), "mine")

@stabench.claim(task="polarity", model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=2)
def test_asked_but_never_drawn(study, stabench_figure):
    stabench_figure("never")
''')
    plotted = _run(pytester, "--stabench-store=s.sqlite", "--stabench-plots=figs", "--stabench-plot-format=svg",
                   "--stabench-json=r.json")
    plotted.assert_outcomes(passed=6)
    own = (pytester.path / "figs" / "my_scores.svg").resolve()
    assert own.is_file() and len(list((pytester.path / "figs").iterdir())) == 7  # 3 per claim, and its own
    plotted.stdout.fnmatch_lines(["stabench wrote r.json, figs (7 files)"])
    assert _report(pytester.path / "r.json")["figures"] == [str(own)]
    default = _run(pytester, "--stabench-store=s.sqlite", "--stabench-json=r.json")
    drawn = (pytester.path / ".stabench" / "plots" / "my_scores.png").resolve()
    assert drawn.is_file() and _report(pytester.path / "r.json")["figures"] == [str(drawn)]
    default.stdout.fnmatch_lines([f"stabench wrote r.json, {drawn.parent} (1 figure(s) of claims)"])
    assert "wrote nothing" not in default.stdout.str()
    for stale in ("never.pdf", "never.png"):  # an earlier session's files, which this one's claim does not draw
        (drawn.parent / stale).write_bytes(b"")
        os.utime(drawn.parent / stale, (time.time() - 3600,) * 2)
    unused = _run(pytester, "--stabench-store=s.sqlite", "-k", "never", "--stabench-plot-format=pdf")
    unused.stdout.fnmatch_lines(["stabench: --stabench-plot-format=pdf wrote nothing: it is the format of "
                                 "--stabench-plots' figures, and no claim wrote a figure of its own"])
    assert "my_scores.png" not in unused.stdout.str()  # an earlier session's file is not this one's
    assert _report_of(_run(pytester, "--stabench-store=s.sqlite", "-k", "never", "--stabench-json=r.json"),
                      pytester)["figures"] == []
    pytester.makeini("[pytest]\naddopts = --stabench-plot-format=pdf\n")  # set once, on purpose: no note
    assert "wrote nothing" not in _run(pytester, "--stabench-store=s.sqlite", "-k", "never").stdout.str()


def test_a_claim_saves_its_own_figure_with_matplotlib_into_a_folder_not_made_yet(pytester, tiny_model):
    pytester.makepyfile(test_fig=f"MODEL = {tiny_model!r}\n" + '''
import stabench
from matplotlib.figure import Figure

@stabench.claim(task="polarity", model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=1)
def test_drawn(study, stabench_figure):
    figure = Figure()
    figure.subplots().plot([r.seed for r in study.results], [r.score for r in study.results])
    figure.savefig(stabench_figure("by hand"))
''')
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-plots=new/figs")
    result.assert_outcomes(passed=2)
    assert (pytester.path / "new" / "figs" / "by_hand.png").is_file()
    result.stdout.fnmatch_lines(["stabench wrote new/figs (4 files)"])


def test_an_in_memory_task_runs_again_in_a_second_session_in_the_same_process(pytester, tiny_model):
    """A notebook's second pytest.main imports the claim file again: a new Task of the same name."""
    pytester.makepyfile(test_memory=f"MODEL = {tiny_model!r}\n" + '''
import stabench

DATA = {"text": [f"{'good' if i % 2 else 'bad'} film {i}" for i in range(16)], "label": [i % 2 for i in range(16)]}
MEMORY = stabench.Task("memory", "text", lambda: {"train": DATA, "validation": DATA})

@stabench.claim(task=MEMORY, model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=1)
def test_memory(study):
    assert study.n == 1
''')
    for _ in range(2):
        _run(pytester, "--stabench-store=s.sqlite").assert_outcomes(passed=2)


def test_unusable_task_data_fails_each_item_with_one_line(pytester, tiny_model):
    pytester.path.joinpath("train.csv").write_text("text,label\n" + "".join(f"t {i},{i % 2}\n" for i in range(8)))
    pytester.path.joinpath("dev.csv").write_text("text,label\n" + "".join(f"d {i},{i % 3}\n" for i in range(6)))
    pytester.makepyfile(test_unseen=f"MODEL = {tiny_model!r}\n" + '''
import stabench

@stabench.claim(task=stabench.local_task("unseen", "train.csv", "dev.csv", ["text"]), model=MODEL,
                recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=2)
def test_unseen(study):
    pass
''')
    result = _run(pytester, "--stabench-store=s.sqlite")
    result.assert_outcomes(failed=3)
    failures = [line for line in result.stdout.lines if "labels 2 of 'dev.csv' never occur in 'train.csv'" in line]
    assert len(failures) >= 3 and "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("options, message", [
    (dict(task="same-numbr"), "unknown task 'same-numbr' (did you mean 'same-number'?); known tasks: "),
    (dict(recipe="bert-defualt"), "unknown recipe 'bert-defualt' (did you mean 'bert-default'?); known recipes: "
                                  "bert-default, "),
    (dict(arms={"a": {"recipe": "mosbach-stabel"}}), "unknown recipe 'mosbach-stabel'"),
    (dict(seeds=range(-1, 2)), "claim seeds=[-1, 0, 1] is invalid; expected a count >= 1 or a list of distinct"),
    (dict(seeds=[1, 1]), "claim seeds=[1, 1] is invalid"),
    (dict(seeds=0), "claim seeds=0 is invalid"),
    (dict(seeds="0"), "seeds '0' select no seed; expected a count >= 1 like 5"),  # as --stabench-seeds=0
    (dict(train_size=0), "claim train_size=0 is invalid; expected a whole number of examples >= 1"),
    (dict(train_size=64.0), "claim train_size=64.0 is invalid; expected a whole number of examples >= 1"),
    (dict(gate={"alpah": 0.1}), "gate limit 'alpah' is unknown; expected one of max_mean_drop, "),
    (dict(gate={"max_extra_failures": 1.5}), "gate limit max_extra_failures=1.5 is invalid; expected an integer"),
    (dict(gate="alpha=0.1"), "gate limits 'alpha=0.1' are invalid; expected a dict"),
    (dict(seeds=2.5), "claim seeds=2.5 is invalid"),
    (dict(seeds="0-3x"), "seeds '0-3x' are invalid; expected a count like 5, a range like 0-4, a list like 1,3,7, or a "
                          "mix"),
    (dict(model="MiniLM-L6"), "unknown model 'MiniLM-L6'; did you mean 'minilm-l6'?"),
    (dict(arms={"a": {"model": "minilm-l12"}}), "unknown model 'minilm-l12'; did you mean 'minilm-l6'?"),
    (dict(arms={"b": {"recipie": "bert-default"}}),
     "claim arm 'b' has unknown field(s) 'recipie'; expected task, model, recipe, train_size, toy"),
    ({"arms": {"a": {}, "b": {"lr": 1e-3}}, "recipe": "bert-default"},
     "claim arm 'b' has unknown field(s) 'lr'; expected task, model, recipe, train_size, toy (a recipe field goes "
     "into the arm's recipe: \"recipe\": stabench.get_recipe(\"bert-default\", lr=...))"),
    (dict(task=123), "task=123 is invalid; expected a task name (cola, mrpc, "),
    (dict(arms={"a": {"task": ["rte"]}}), "task=['rte'] is invalid; expected a task name"),
    (dict(recipe={"lr": 1e-4}), "recipe={'lr': 0.0001} is invalid; expected a preset name (bert-default, "),
    (dict(arms=[{"recipe": "bert-default"}]), "claim arms=[{'recipe': 'bert-default'}] is invalid; expected a dict "
                                              "of arm names to options"),
    # toy= is read only under --stabench-profile=toy: its names are checked at import all the same.
    (dict(toy={"seeds": -1}), "claim toy: seeds=-1 is invalid; expected a count >= 1"),
    (dict(toy={"seeds": [1, 1]}), "claim toy: seeds=[1, 1] is invalid"),
    (dict(toy={"task": "same-number"}), "claim toy has unknown field(s) 'task'; expected model, seeds, train_size, "
                                        "task_map, recipe_overrides"),
    (dict(toy={"task_map": {"rte": "same-numbr"}}), "claim toy: unknown task 'same-numbr'"),
    (dict(toy={"recipe_overrides": {"max_step": 8}}), "claim toy: unknown recipe field 'max_step' (did you mean "),
    (dict(arms={"a": {"toy": {"seeds": 3}}}), "claim arm 'a' toy has unknown field(s) 'seeds'; expected "
                                              "recipe_overrides"),
    (dict(taks="polarity"), "claim has no option 'taks' (did you mean 'task'?); expected task, model, recipe, seeds, "
                            "arms, train_size, toy, requires, gate, reference"),
    (dict(lr=1e-3), "claim has no option 'lr' (a recipe field goes into the recipe: stabench.get_recipe("
                    "'bert-default', lr=...)); expected task, model, recipe, seeds, arms, train_size, toy, requires, "
                    "gate, reference"),
    (dict(taks="rte", epoch=3, recipe="mosbach-stable"),
     "claim has no option 'epoch' (a recipe field like 'epochs' goes into the recipe: stabench.get_recipe("
     "'mosbach-stable', epochs=...)), 'taks' (did you mean 'task'?); expected task, "),
    # Arms named with empty options, for parametrize to fill in (the README's pattern), are fine here.
    (dict(arms={"no-bc": {}, "bc": {}}), None),
])
def test_a_misspelt_or_impossible_claim_option_fails_at_import_with_its_name(options, message):
    import stabench

    given = {**dict(task="polarity", model="tiny-bert", recipe="bert-default", seeds=2), **options}
    if message is None:
        assert stabench.claim(**given).kwargs["arms"] == options["arms"]
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        stabench.claim(**given)


def test_a_toy_override_is_checked_with_the_recipe_it_overrides(pytester, tiny_model):
    """At import by name only: a value that the claim's own recipe takes is not refused there."""
    pytester.makepyfile(test_toy=f"MODEL = {tiny_model!r}\n" + '''
import stabench

NO_WARMUP = stabench.get_recipe("bert-default", warmup=0.0, max_steps=2)

@stabench.claim(task="polarity", model=MODEL, recipe=NO_WARMUP, seeds=1,
                toy={"recipe_overrides": {"schedule": "constant"}})
def test_constant(study):
    assert study.arm.recipe.schedule == "constant"

@stabench.claim(task="polarity", model=MODEL, recipe="bert-default", seeds=1, toy={"recipe_overrides": {"lr": -1}})
def test_bad_lr(study):
    pass
''')
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-profile=toy")
    result.assert_outcomes(passed=3, errors=3)  # the toy profile's 2 seeds and the verdict, each
    message = "claim arm 'bert-default': its toy recipe_overrides: recipe field lr=-1.0 is invalid"
    assert len([line for line in result.stdout.lines if message in line]) >= 3  # each item; CI's summary repeats it
    assert "Traceback" not in result.stdout.str()


def test_a_claim_whose_options_fail_names_its_task_object_by_name_in_the_reports(pytester, tiny_model):
    """The claims table showed the Task's whole repr, wrapped over six lines."""
    pytester.makepyfile(test_task_object=f"MODEL = {tiny_model!r}\n" + '''
import stabench

DATA = {"text": ["good film", "bad film"] * 4, "label": [1, 0] * 4}
MEMORY = stabench.Task("memory", "text", lambda: {"train": DATA, "validation": DATA})

@stabench.claim(task=MEMORY, model=MODEL, recipe="bert-default", seeds=1, toy={"recipe_overrides": {"lr": -1}})
def test_bad_lr(study):
    pass
''')
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-profile=toy", "--stabench-json=r.json")
    result.assert_outcomes(errors=3)
    assert [(c["task"], c["verdict"]) for c in _report(pytester.path / "r.json")["claims"]] == [("memory", "error")]


def test_claim_seeds_may_be_written_as_on_the_command_line():
    import stabench

    marker = stabench.claim(task="polarity", model="tiny-bert", recipe="bert-default", seeds="0-2,7")
    assert marker.kwargs["seeds"] == [0, 1, 2, 7]
    count = stabench.claim(task="polarity", model="tiny-bert", recipe="bert-default", seeds="5")
    assert count.kwargs["seeds"] == 5  # a count, as seeds=5 and --stabench-seeds=5


def _long():
    import stabench

    return stabench.get_recipe("bert-default", epochs=10)


def test_a_misspelt_model_from_parametrize_fails_its_items_instead_of_skipping_them():
    from stabench.claims import build_spec

    options = dict(task="polarity", recipe="bert-default", seeds=2)
    with pytest.raises(ValueError, match="unknown model 'MiniLM-L6'; did you mean 'minilm-l6'?"):
        build_spec(options, {"model": "MiniLM-L6"})
    assert build_spec(options, {"model": "minilm-l6"}).arms[0].model == "minilm-l6"
    # Two arms that train the same runs are refused when the items are built, naming them; recipe
    # overrides (--stabench-set) that make two arms alike (more epochs, set back to 3) are named too.
    same = dict(task="polarity", model="tiny-bert", recipe="bert-default", seeds=2,
                arms={"default": {}, "same": {"recipe": "bert-default"}})
    with pytest.raises(ValueError, match=r"^claim arms 'default' and 'same' train the same runs \(recipe content "
                                         r"\w{8} on polarity / tiny-bert\); give them recipes, tasks, models"):
        build_spec(same, {})
    assert len(build_spec(same, {"arms": {"default": {}, "same": {"recipe": "bert-default-bc"}}}).arms) == 2
    arms = dict(task="polarity", model="tiny-bert", seeds=2,
                arms={"short": {"recipe": "bert-default"}, "long": {"recipe": _long()}})
    assert len(build_spec(arms, {}).arms) == 2
    with pytest.raises(ValueError, match=r"^claim arms 'short' and 'long' train the same runs once the recipe "
                                         r"overrides \(epochs=3\) apply \(recipe content \w{8} on polarity"):
        build_spec(arms, {}, recipe_overrides={"epochs": 3})
    mixed = dict(task="polarity", model="tiny-bert", seeds=2, arms={"plain": {"recipe": "bert-default"},
                                                                   "mixout": {"recipe": "mixout"}})
    with pytest.raises(ValueError, match=r"^claim arm 'mixout' \(recipe mixout\): the recipe overrides dropout=0.2 "
                                         r"\(--stabench-set\) do not apply: dropout=0.2 with mixout=0.1 is invalid"):
        build_spec(mixed, {}, recipe_overrides={"dropout": 0.2})  # once named neither the option nor the arm
    # Values of the wrong type from parametrize are named too, not an AttributeError from inside.
    for params, message in (({"model": "tiny-bert", "task": 7}, "task=7 is invalid"),
                            ({"model": "tiny-bert", "arms": ["a"]}, "claim arms=['a'] is invalid"),
                            ({"model": "tiny-bert", "recipe": 0.1}, "recipe=0.1 is invalid")):
        with pytest.raises(ValueError, match=re.escape(message)):
            build_spec(options, params)


@pytest.mark.parametrize("name, good, bad, message", [
    ("recipe", 'stabench.get_recipe("bert-default", max_steps=2)', '"bert-defualt"',
     "unknown recipe 'bert-defualt' (did you mean 'bert-default'?); known recipes"),
    ("task", '"polarity"', '"polarty"', "unknown task 'polarty' (did you mean 'polarity'?); known tasks"),
    ("model", "MODEL", '"MiniLM-L6"', "unknown model 'MiniLM-L6'; did you mean 'minilm-l6'?"),  # not a skip
])
def test_a_bad_parametrize_value_fails_only_its_own_items_with_one_line(pytester, tiny_model, name, good, bad,
                                                                       message):
    fixed = {"recipe": 'recipe=stabench.get_recipe("bert-default", max_steps=2)', "task": 'task="polarity"',
             "model": "model=MODEL"}
    other = ", ".join(value for field, value in fixed.items() if field != name)
    pytester.makepyfile(test_param=f"MODEL = {tiny_model!r}\n" + f'''
import pytest
import stabench

@pytest.mark.parametrize("{name}", [{good}, {bad}])
@stabench.claim({other}, seeds=1)
def test_param(study, {name}):
    pass
''')
    result = _run(pytester, "--stabench-store=s.sqlite")
    result.assert_outcomes(passed=2, errors=2)
    assert len([line for line in result.stdout.lines if message in line]) >= 2
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()


def test_arms_from_parametrize_must_be_named_in_the_claim(pytester, tiny_model):
    """Otherwise only the first arm would get seed items and the verdict would train the rest alone."""
    pytester.makepyfile(test_arms=f"MODEL = {tiny_model!r}\n" + '''
import pytest
import stabench

FAST = stabench.get_recipe("bert-default", max_steps=2)
ARMS = {"plain": {"recipe": FAST}, "corrected": {"recipe": FAST.replace(bias_correction=True)}}

@pytest.mark.parametrize("arms", [ARMS])
@stabench.claim(task="polarity", model=MODEL, seeds=1, arms={"plain": {}, "corrected": {}})
def test_named(study, arms):
    pass

@pytest.mark.parametrize("arms", [ARMS])
@stabench.claim(task="polarity", model=MODEL, seeds=1)
def test_unnamed(study, arms):
    pass
''')
    result = _run(pytester, "--stabench-store=s.sqlite")
    result.assert_outcomes(passed=3, errors=2)
    message = ("the arms parametrize gives (plain, corrected) are not the arms named in stabench.claim(arms=...) "
               "(none); name the same arms there")
    assert len([line for line in result.stdout.lines if line.startswith(message)]) == 2  # one per item
    assert "Traceback" not in result.stdout.str()


def test_every_comparison_a_claim_makes_is_in_its_reports_passed_or_not(pytester, tiny_model, monkeypatch):
    """A paper author reads the p-values from the reports, not from a print in the claim's body."""
    pytester.makepyfile(test_arms=f"MODEL = {tiny_model!r}\n" + '''
import stabench

FAST = stabench.get_recipe("bert-default", max_steps=4, lr=2e-3)
ARMS = {"corrected": {"recipe": FAST.replace(bias_correction=True)}, "plain": {"recipe": FAST}}

@stabench.claim(task="polarity", model=MODEL, seeds=3, arms=ARMS)
def test_compared(study):
    comparison = study["corrected"].compare(study["plain"])
    study["corrected"].compare(study["plain"])  # the same comparison again: one row
    study["plain"].compare(study["corrected"], n_comparisons=2)
    assert comparison.n_a == 3

@stabench.claim(task="polarity", model=MODEL, seeds=3, arms=ARMS)
def test_compared_and_failed(study):
    stabench.stats.assert_better(study["corrected"].compare(study["plain"], alpha=0.01))

@stabench.claim(task="polarity", model=MODEL, seeds=3, arms=ARMS)
def test_not_compared(study):
    pass
''')
    from stabench import plots  # conftest imported it: the module the session uses

    curves, titles = {}, []  # the training-curve figures' runs, by label, and their titles
    monkeypatch.setattr(plots, "plot_training_curves",
                        lambda runs, path, title: curves.update(runs) or titles.append(title))
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-json=r.json", "--stabench-md=r.md",
                  "--stabench-plots=figs")
    result.assert_outcomes(passed=20, failed=1)
    # Each arm's own example runs: an intervention's curves beside the default's (every run failed here).
    assert {label.split(" (")[0].split(" ", 2)[2] for label in curves} == {"corrected", "plain"}
    assert all(label.endswith(f"(failed, accuracy {run.score:.3f})") for label, run in curves.items())
    assert titles[0].splitlines()[1] == ("polarity / tiny-bert: corrected = bert-default[bias_correction=True,"
                                         "lr=0.002,max_steps=4], plain = bert-default[lr=0.002,max_steps=4]; 3 seeds "
                                         "per arm")
    comparisons = _report(pytester.path / "r.json")["comparisons"]
    assert [(c["claim"].split("::")[1], c["name_a"], c["n_comparisons"], c["alpha"]) for c in comparisons] == [
        ("test_compared", "corrected", 1, 0.05), ("test_compared", "plain", 2, 0.025),
        ("test_compared_and_failed", "corrected", 1, 0.01)]
    first = comparisons[0]
    assert first["name_b"] == "plain" and first["metric"] == "accuracy" and first["n_b"] == 3
    assert first["a_better"] == (first["mannwhitney_p_a_better"] < 0.05) and 0 < first["mannwhitney_p_a_better"] <= 1
    assert (first["mean_a"], first["std_a"]) == (comparisons[1]["mean_b"], comparisons[1]["std_b"])
    assert "stabench comparisons in claims" in result.stdout.str()
    # The failed assertion's traceback ends at the claim's line, not inside stabench's helper.
    assert "stats.py" not in result.stdout.str() and "def assert_better" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*stabench.stats.assert_better(study*", "E*corrected not shown to score better*"])
    markdown = (pytester.path / "r.md").read_text()
    assert "### Comparisons in claims" in markdown and "| corrected vs plain |" in markdown
    assert "| plain vs corrected |" in markdown and "0.025 (0.05 / 2 comparisons)" in markdown
    assert markdown.count("| test_arms.py::test_compared_and_failed |") == 1


def test_a_recipe_value_the_model_cannot_take_fails_each_item_with_one_line(suite):
    result = _run(suite, "-k", "true_claim", "--stabench-seeds=1", "--stabench-set=reinit_layers=9",
                  "--stabench-store=s.sqlite")
    result.assert_outcomes(failed=2)
    message = "recipe field reinit_layers=9 is invalid for this model; expected 0..2"
    assert len([line for line in result.stdout.lines if message in line]) >= 2
    assert "Traceback" not in result.stdout.str() and "interventions.py" not in result.stdout.str()
    assert "The above exception" not in result.stdout.str() and "During handling" not in result.stdout.str()


def test_a_recipe_keyword_selects_only_its_own_arms_seed_items(pytester, tiny_model):
    pytester.makepyfile(test_arms=f"MODEL = {tiny_model!r}\n" + '''
import stabench

@stabench.claim(task="polarity", model=MODEL, seeds=2,
                arms={"plain": {"recipe": "bert-default"}, "corrected": {"recipe": "bert-default-bc"}})
def test_arms(study):
    pass
''')
    result = _run(pytester, "-k", "bert-default-bc", "--collect-only", "-q")
    collected = [line for line in result.stdout.lines if "::" in line]
    assert collected == ["test_arms.py::test_arms[corrected-seed0]", "test_arms.py::test_arms[corrected-seed1]",
                         "test_arms.py::test_arms[verdict]"]


def test_a_parametrized_recipe_is_named_in_test_ids(pytester, tiny_model):
    pytester.makepyfile(test_lrs=f"MODEL = {tiny_model!r}\n" + '''
import pytest
import stabench

@pytest.mark.parametrize("recipe", [stabench.get_recipe("bert-default", lr=1e-3), stabench.get_recipe("mixout")])
@stabench.claim(task="polarity", model=MODEL, seeds=1)
def test_lrs(study, recipe):
    pass
''')
    result = _run(pytester, "--collect-only", "-q", "-k", "mixout")
    collected = [line for line in result.stdout.lines if "::" in line]
    assert collected == ["test_lrs.py::test_lrs[seed0-mixout]", "test_lrs.py::test_lrs[verdict-mixout]"]
    assert "bert-default[lr=0.001]" in _run(pytester, "--collect-only", "-q").stdout.str()


def test_a_parametrized_recipe_field_or_seed_count_warns_that_it_trains_nothing(pytester, tiny_model):
    """Each value of a parametrized lr or seeds reads the same runs: a sweep that is not one."""
    pytester.makepyfile(test_sweep=f"MODEL = {tiny_model!r}\n" + '''
import pytest
import stabench

@pytest.mark.parametrize("lr, seeds", [(1e-3, 2), (1e-4, 3)])
@pytest.mark.parametrize("threshold", [0.5])
@stabench.claim(task="polarity", model=MODEL, recipe="bert-default", seeds=1)
def test_sweep(study, lr, seeds, threshold):
    pass
''')
    out = _run(pytester, "--collect-only", "-q").stdout.str()
    joined = " ".join(out.split())
    assert ("test_sweep: parametrize argument 'lr' only reaches the test body, so every value reads the same runs; "
            "to train with each, parametrize recipe with stabench.get_recipe(..., lr=...) instead") in joined
    assert "parametrize argument 'seeds' only reaches the test body" in joined and "set seeds= in stabench.claim" in joined
    assert "'threshold'" not in joined  # a value for the body's own assertions: nothing to say


def test_a_parametrized_task_is_named_in_test_ids(pytester, tiny_model):
    pytester.makepyfile(test_task_ids=f"MODEL = {tiny_model!r}\n" + '''
import pytest
import stabench
from stabench.tasks import get_task

@pytest.mark.parametrize("task", [get_task("polarity"), get_task("same-number")])
@stabench.claim(model=MODEL, seeds=1)
def test_task_ids(study, task):
    pass
''')
    result = _run(pytester, "--collect-only", "-q", "-k", "same-number")
    collected = [line for line in result.stdout.lines if "::" in line]
    assert collected == ["test_task_ids.py::test_task_ids[seed0-same-number]",
                         "test_task_ids.py::test_task_ids[verdict-same-number]"]


def test_recipe_overrides_from_the_command_line_apply_to_every_arm(suite):
    ran = _run(suite, "-k", "false_claim and polarity", "--stabench-seeds=1", "--stabench-set=dropout=0.0,lr=1",
               "--stabench-set=lr=3e-3", "--stabench-json=r.json")  # a later --stabench-set adds, its lr wins
    ran.assert_outcomes(passed=1, failed=1)
    (claim,) = _report(suite.path / "r.json")["claims"]
    assert claim["recipe"] == "bert-default[dropout=0,lr=0.003,max_steps=6,trace_every=2]"  # lr replaced
    bad = _run(suite, "--stabench-set=precision=fp8", "--collect-only")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--stabench-set: recipe field precision='fp8' is invalid; expected one of fp32*"])


def test_gate_limits_and_recipe_overrides_add_up_over_the_ini_file_and_each_option(pytester):
    """A second --stabench-gate replaced the first, and one on the command line the ini file's."""
    from stabench.gate import parse_limits
    from stabench.plugin import option

    pytester.makeini("[pytest]\nstabench_gate = max_mean_drop=0.02,alpha=0.2\nstabench_set = lr=1e-3\n")
    config = pytester.parseconfig("--stabench-gate=alpha=0.1", "--stabench-gate=max_extra_failures=1",
                                  "--stabench-set=epochs=2")
    assert option(config, "gate") == ["max_mean_drop=0.02,alpha=0.2", "alpha=0.1", "max_extra_failures=1"]
    limits = parse_limits(option(config, "gate"))
    assert (limits["max_mean_drop"], limits["alpha"], limits["max_extra_failures"]) == (0.02, 0.1, 1)
    assert option(config, "set") == ["lr=1e-3", "epochs=2"]
    assert option(pytester.parseconfig(), "set") == ["lr=1e-3"]
    assert option(pytester.parseconfig("--stabench-set=", "--stabench-set=epochs=2"), "set") == ["epochs=2"]
    assert option(pytester.parseconfig("--stabench-gate="), "gate") is None  # empty: the file's dropped
    pytester.makeini("[pytest]\n")
    assert option(pytester.parseconfig(), "gate") is None
    # A bad value is named where it was given, not by the option that came last.
    pytester.makeini("[pytest]\nstabench_gate = max_mean_drop=oops\nstabench_set = lr=fast\n")
    pytester.makepyfile(test_nothing="def test_a():\n    pass\n")
    for given, named in ((("--stabench-gate=alpha=0.1",), "stabench_gate in tox.ini: gate limit max_mean_drop=oops is invalid"),
                         (("--stabench-gate=", "--stabench-set=epochs=2"), "stabench_set in tox.ini: recipe override "
                                                                            "lr='fast' is invalid"),
                         (("--stabench-gate=", "--stabench-set=", "--stabench-set=lr=x"),
                          "--stabench-set: recipe override lr='x' is invalid")):
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *given)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: {named}*"])
    together = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--stabench-gate=", "--stabench-set=",
                                            "--stabench-set=warmup=0", "--stabench-set=schedule=constant")
    assert together.ret == 0 and "has no effect" not in together.stdout.str()  # valid together, and a gate cleared


def test_a_second_empty_list_option_drops_everything_before_it_too(pytester):
    """Only what follows the last empty --stabench-set= counts, not what lies between two empty ones."""
    from stabench.plugin import option

    pytester.makeini("[pytest]\nstabench_set = lr=1e-3\n")
    config = pytester.parseconfig("--stabench-set=dropout=0", "--stabench-set=", "--stabench-set=epochs=2",
                                  "--stabench-set=", "--stabench-set=warmup=0")
    assert option(config, "set") == ["warmup=0"]
    assert option(pytester.parseconfig("--stabench-gate=alpha=0.1", "--stabench-gate=", "--stabench-gate="),
                  "gate") is None


def test_a_bare_seed_number_is_said_to_be_a_count_before_anything_trains_and_at_the_end(suite):
    """The CLI's --seeds 30 is seed 30; the plugin's is seeds 0-29, hours of training on a GPU box."""
    said = "stabench: --stabench-seeds=30 is a count: seeds 0-29 (seed 30 alone is 30-30)"
    shown = _run(suite, "--co", "--stabench-seeds=30")
    assert shown.stdout.lines.count(said) == 2  # the header, then the summary's notes
    assert shown.stdout.lines.index(said) < min(i for i, line in enumerate(shown.stdout.lines) if "seed29" in line)
    assert "stabench: -o stabench_seeds=1 is a count: seed 0 (seed 1 alone is 1-1)" in \
        _run(suite, "--co", "-q", "-o", "stabench_seeds=1").stdout.lines  # -q shows no header: the summary says it
    suite.makeini("[pytest]\nstabench_seeds = 3\n")  # written once, on purpose: no line in every session
    for meant in ((), ("--stabench-seeds=30-30",), ("--stabench-seeds=2,5",), ("-k", "not stabench_seeds=")):
        assert not any("is a count" in line for line in _run(suite, "--co", *meant).stdout.lines)
    suite.makeini("[pytest]\naddopts = --stabench-seeds 3\n")  # likewise in addopts, and in $PYTEST_ADDOPTS
    assert not any("is a count" in line for line in _run(suite, "--co").stdout.lines)
    suite.makeini("[pytest]\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTEST_ADDOPTS", "--stabench-seeds=4")
        listed = _run(suite, "--co").stdout.lines
        assert any("seed3" in line for line in listed) and not any("is a count" in line for line in listed)
        assert "stabench: --stabench-seeds=5 is a count: seeds 0-4 (seed 5 alone is 5-5)" in \
            _run(suite, "--co", "--stabench-seeds", "5").stdout.lines  # typed: the command line's count wins


@pytest.mark.parametrize("option, message", [
    ("--stabench-seeds=abc", "--stabench-seeds: seeds 'abc' are invalid; expected a count like 5, a range like 0-4"),
    ("--stabench-seeds=0", "--stabench-seeds: seeds '0' select no seed; expected a count >= 1 like 5, a range"),
    ("--stabench-device=tpu", "--stabench-device: device 'tpu' is invalid; expected auto, cpu, cuda or cuda:N"),
    ("--stabench-gate=max_drop=0.1", "--stabench-gate: gate limit 'max_drop' is unknown; expected one of max_mean_drop"),
    ("--stabench-gate=alpha=2", "--stabench-gate: gate limit alpha=2 is invalid; expected a number in (0, 1)"),
    ("--stabench-cpu-threads=0", "--stabench-cpu-threads: 0 is invalid; expected an integer from 1 to 1024"),
    ("--stabench-cpu-threads=-1", "--stabench-cpu-threads: -1 is invalid; expected an integer from 1 to 1024"),
    ("--stabench-cpu-threads=two", "--stabench-cpu-threads: 'two' is invalid; expected an integer from 1 to 1024"),  # not argparse's
    ("--stabench-workers-per-gpu=1.5", "--stabench-workers-per-gpu: '1.5' is invalid; expected an integer from 1 to 1024"),
    ("--stabench-baseline=tag:nosuch",
     "--stabench-baseline: 'tag:nosuch' holds no runs in *s.sqlite (stored tags: none); tag a baseline"),
    ("--stabench-baseline=nosuch.json", "--stabench-baseline: baseline 'nosuch.json' is neither tag:NAME*"),
    ("--stabench-baseline=tag:", "--stabench-baseline: baseline 'tag:': tag '' is invalid; expected letters, digits*"),
    ("--stabench-store=typo.sqlite --stabench-baseline=tag:x",
     "--stabench-baseline: 'tag:x' reads the results store, and there is no store at typo.sqlite (--stabench-store); "
     "store and tag a baseline first, or give an export file (stabench export)"),
    ("--stabench-baseline=env:torch=2.0", "--stabench-baseline: 'env:torch=2.0' holds no runs in *s.sqlite (stored "
                                          "torch values: *); name values that stored runs hold together*"),
    ("--stabench-baseline=tag:base --stabench-tag=base",
     "--stabench-tag=base is also the baseline tag:base: the gate would compare this session's runs with themselves*"),
    ("--stabench-tag=a;b", "--stabench-tag: tag 'a;b' is invalid; expected letters, digits and . _ - + = @ /*"),
    ("--stabench-gpus=a", "--stabench-gpus: GPU id 'a' is invalid; expected comma-separated indices such as 0,1*"),
    ("--stabench-workers-per-gpu=-2", "--stabench-workers-per-gpu: -2 is invalid; expected an integer from 1 to 1024"),
    ("--stabench-gpus=0,1 --stabench-device=cuda:1",
     "--stabench-device=cuda:1 names one GPU while --stabench-gpus=0,1 spreads workers over GPUs; give one of them*"),
    ("--stabench-workers-per-gpu=2 --stabench-device=cuda:0",
     "--stabench-device=cuda:0 names one GPU while --stabench-workers-per-gpu=2 spreads workers over GPUs*"),
    # A store or report that cannot be written stops the session before any training.
    ("--stabench-store=.", "--stabench-store: results store . is a folder; expected a file in it*"),
    ("--stabench-md=.", "--stabench-md '.' is a folder; expected a file name*"),
    ("--stabench-json=out/", "--stabench-json 'out/' is a folder; expected a file name*"),
    ("--stabench-plots=s.sqlite", "--stabench-plots 's.sqlite' is a file; expected a folder for the figures"),
    ("--stabench-plots=fig.svg", "--stabench-plots 'fig.svg' looks like a figure's file name; expected a folder for "
                                 "the figures (their format: --stabench-plot-format svg)"),
    ("--stabench-plot-format=jpg", "--stabench-plot-format: plot format 'jpg' is invalid; expected png, pdf or svg"),
    ("--stabench-json=s.sqlite", "--stabench-json 's.sqlite' exists and is not a stabench JSON report, so it is left "
                                 "as it is; name a new file, or move it away first"),
    ("--stabench-store=new.sqlite --stabench-md=new.sqlite",
     "--stabench-md 'new.sqlite' is the results store; name another file"),
    ("--stabench-json=s.sqlite-wal", "--stabench-json 's.sqlite-wal' is a file SQLite keeps beside the database "
                                     "'s.sqlite' (a results store?), so writing it would damage that; name another file"),
    ("--stabench-md=s.sqlite-shm", "--stabench-md 's.sqlite-shm' is a file SQLite keeps beside the database *"),
    ("--stabench-store=new.sqlite --stabench-json=new.sqlite-wal",  # a store this session will make
     "--stabench-json 'new.sqlite-wal' is SQLite's wal file beside the results store; name another file"),
    ("--stabench-md=s.sqlite/summary.md", "--stabench-md 's.sqlite/summary.md' cannot be written: '*s.sqlite' is a "
                                          "file, not a folder"),
])
def test_bad_options_stop_the_session_with_one_line(suite, option, message):
    # In-process: the session stops in pytest_configure, before any torch setting is touched.
    from stabench.store import Store

    Store(suite.path / "s.sqlite").close()
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "--stabench-store=s.sqlite", *option.split())
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert not (suite.path / "typo.sqlite").exists()  # a misspelt store is not created


def test_a_bad_baseline_file_leaves_no_new_store_behind(suite):
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "--stabench-store=new/s.sqlite",
                                       "--stabench-baseline=nosuch.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not (suite.path / "new").exists()


def test_a_named_store_that_is_no_store_stops_the_session_before_training(suite):
    """A text file or a newer stabench's store named by --stabench-store: one line, exit 4."""
    import sqlite3

    from stabench.store import Store

    (suite.path / "notes.sqlite").write_text("my notes\n")
    Store(suite.path / "future.sqlite").close()
    with sqlite3.connect(suite.path / "future.sqlite") as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    for store, message in [("notes.sqlite", "not a stabench results store*"),
                           ("future.sqlite", "*schema version 99, newer than*")]:
        result = suite.runpytest_inprocess("-p", "no:cacheprovider", f"--stabench-store={store}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, store
        result.stderr.fnmatch_lines([f"ERROR: --stabench-store: *{message}"])
        assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert (suite.path / "notes.sqlite").read_text() == "my notes\n"
    # A store to be made under a file: stopped before training too (each run failed, after training).
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "--stabench-store=notes.sqlite/s.sqlite")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --stabench-store: cannot make the results store's folder notes.sqlite: "
                                 "*notes.sqlite is a file, not a folder"])


def test_a_relative_store_stays_where_pytest_started_when_a_fixture_changes_folder(suite):
    """The store opens in the first claim item, after its fixtures: a project's autouse
    ``monkeypatch.chdir(tmp_path)`` put each seed's runs in a temporary folder, trained again each time."""
    suite.makeconftest("import pytest\n\n@pytest.fixture(autouse=True)\ndef elsewhere(tmp_path, monkeypatch):\n"
                       "    monkeypatch.chdir(tmp_path)\n")
    from stabench.store import Store

    args = ("-k", "true_claim", "--stabench-store=st/s.sqlite")
    _run(suite, *args).assert_outcomes(passed=5)
    with Store(suite.path / "st" / "s.sqlite", must_exist=True) as store:
        assert store.count() == 4
    again = _run(suite, *args)
    again.assert_outcomes(passed=5)
    again.stdout.fnmatch_lines(["runs: 0 trained this session (0 by seed items, 0 by verdicts); 4 read from the store "
                                f"({suite.path / 'st' / 's.sqlite'})"])


def test_a_store_that_fails_mid_session_fails_its_seeds_in_one_line(suite):
    """A full disk, a store locked past its timeout, the attempts or locks folder made a file: each seed
    failed with a traceback of chained errors (a full disk buried its cause under the attempt file's)."""
    (suite.path / "s.sqlite-attempts").write_text("not a folder\n")
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed", "--stabench-seeds=0-0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*s.sqlite: cannot write the attempt file *s.sqlite-attempts/*.json beside the store "
                                 "(*), so no run is trained*"])
    (suite.path / "s.sqlite-attempts").unlink()
    shutil.rmtree(suite.path / "s.sqlite-locks", ignore_errors=True)
    (suite.path / "s.sqlite-locks").write_text("not a folder\n")
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed", "--stabench-seeds=0-0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*s.sqlite: cannot write the claim on run * beside the store, "
                                 "*s.sqlite-locks/*.lock (*)*"])
    for outcome in (result.stdout.str(), result.stderr.str()):
        assert "Traceback" not in outcome and "During handling" not in outcome


def test_a_read_only_store_reads_its_runs_and_fails_each_run_to_train_in_one_line(suite):
    """Nothing is trained that could not be stored; stored runs still read, and a project's other
    tests never open the store."""
    import subprocess

    first = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim")
    assert first.ret == pytest.ExitCode.OK
    if subprocess.run(["chattr", "+i", str(suite.path / "s.sqlite")], capture_output=True).returncode != 0:
        pytest.skip("chattr +i (an immutable file) is not available here")
    try:
        again = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim")
        assert again.ret == pytest.ExitCode.OK and "0 trained this session" in again.stdout.str()  # read
        more = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed", "--stabench-seeds=7-8")
        more.assert_outcomes(failed=2)
        more.stdout.fnmatch_lines(["*the results store cannot be written (attempt to write a readonly database), so "
                                   "no run trained now could be stored*"])
        assert "Traceback" not in more.stdout.str()
        suite.makepyfile(test_plain="def test_plain():\n    pass\n")
        plain = suite.runpytest_inprocess("-p", "no:cacheprovider", "test_plain.py", "--stabench-store=s.sqlite")
        plain.assert_outcomes(passed=1)
    finally:
        subprocess.run(["chattr", "-i", str(suite.path / "s.sqlite")], capture_output=True)


def test_workers_are_pinned_to_the_gpus_named_within_the_jobs_allocation(pytester, tiny_model, monkeypatch):
    """The GPU path on a CPU: CUDA_VISIBLE_DEVICES stands for a job's allocation; each worker
    checks nothing itself (it sees only its own GPU) and records the id it was pinned to.  The
    conftest reads the variable at import too, where ``torch.cuda.is_available()`` would start
    CUDA with what it says then."""
    from stabench.store import Store

    pytester.makeconftest('''
import os

AT_IMPORT = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")

def pytest_sessionstart(session):  # workerinput, not $PYTEST_XDIST_WORKER, which this suite's own -n sets
    with open("gpu-" + getattr(session.config, "workerinput", {}).get("workerid", "main") + ".txt", "w") as out:
        out.write(AT_IMPORT + " " + os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
''')
    pytester.makepyfile(test_pinned=f"MODEL = {tiny_model!r}\n" + '''
import stabench

@stabench.claim(task="polarity", model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=4)
def test_pinned(study):
    assert study.n == 4
''')
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,7")

    def pinned(*args) -> dict[str, str]:
        for path in pytester.path.glob("gpu-*.txt"):
            path.unlink()
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--stabench-cpu-threads=1", *args,
                                               "--stabench-device=cpu", "--stabench-store=s.sqlite")
        result.assert_outcomes(passed=5)
        seen = {path.stem.removeprefix("gpu-"): path.read_text().split() for path in pytester.path.glob("gpu-*.txt")}
        assert all(at_import == later for at_import, later in seen.values()), seen
        return {worker: later for worker, (_, later) in seen.items()}

    assert pinned("-n", "2", "--stabench-gpus=7,6") == {"main": "6,7", "gw0": "7", "gw1": "6"}  # one GPU each
    with Store(pytester.path / "s.sqlite") as store:  # each run records the GPU its worker was pinned to
        pinned_to = {r.environment["cuda_visible_devices"] for r in store.query()}
        assert pinned_to and pinned_to <= {"6", "7"}  # a worker's one GPU, never the controller's "6,7"
    # More workers than GPUs: spread evenly (an extra worker saw every GPU and trained on the first).
    assert sorted(pinned("-n", "3", "--stabench-gpus=7,6").items()) == [
        ("gw0", "7"), ("gw1", "6"), ("gw2", "7"), ("main", "6,7")]
    # Workers per GPU without -n: GPUs x K workers are started (they were not; -n alone decided).
    started = pinned("--stabench-workers-per-gpu=2")
    assert sorted(v for k, v in started.items() if k != "main") == ["6", "6", "7", "7"]
    # A worker whose --tx spec names its GPU keeps it; the others are spread as before.
    named = pinned("--tx", "popen//env:CUDA_VISIBLE_DEVICES=6", "--tx", "2*popen", "--dist", "load",
                   "--stabench-gpus=7,6")  # --tx: these workers, not the two --stabench-gpus would start
    assert sorted(named.items()) == [("gw0", "6"), ("gw1", "7"), ("gw2", "6"), ("main", "6,7")]
    # --tx without --dist, which xdist ignores: GPUs x K workers are started, as without it.
    assert sorted(v for k, v in pinned("--tx", "2*popen", "--stabench-workers-per-gpu=1").items() if k != "main") \
        == ["6", "7"]
    refused = _run(pytester, "--stabench-gpus=0", "--stabench-device=cpu", "--stabench-store=s.sqlite")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*--stabench-gpus: GPU 0 is outside CUDA_VISIBLE_DEVICES=6,7; expected ids from it: 6, 7"])


@pytest.mark.parametrize("visible, option, message", [
    ("6,7", "-n 5 --stabench-gpus=7,6 --stabench-workers-per-gpu=2",
     "-n 5 starts more workers than --stabench-workers-per-gpu=2 on 2 GPU(s) (7, 6) allows; use -n 4, leave -n out*"),
    ("6,7", "-n 0 --stabench-gpus=7", "--stabench-gpus pins xdist workers to GPUs, but this session starts none*"),
    ("6,7", "-p no:xdist --stabench-gpus=7", "--stabench-gpus pins xdist workers to GPUs, but this session starts none*"),
    ("6,7", "--tx 3*popen --dist load --stabench-gpus=7 --stabench-workers-per-gpu=2",
     "--tx (3 local worker(s) naming no GPU) starts more workers than --stabench-workers-per-gpu=2 on 1 GPU(s) (7)*"),
    ("6,7", "--tx popen//env:CUDA_VISIBLE_DEVICES=9 --dist load --stabench-gpus=7",
     "--stabench-gpus pins xdist workers to GPUs, but this session starts none (-n 0, no pytest-xdist, or --tx*"),
])
def test_pinning_that_cannot_work_stops_the_session_with_one_line(pytester, monkeypatch, visible, option, message):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--stabench-device=cpu", *option.split())
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_sessions_that_ask_no_pinning_are_never_refused_for_it(pytester, monkeypatch):
    """The plugin loads in every pytest session: a project's own ``pytest -n 2`` on a GPU box, or
    workers per GPU set in an ini file on a machine without GPUs, must run."""
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    with monkeypatch.context() as patched:
        patched.setenv("CUDA_VISIBLE_DEVICES", "6,7")
        assert pytester.runpytest_inprocess("-p", "no:cacheprovider", "-n", "2").ret == pytest.ExitCode.OK
    pytester.makeini("[pytest]\nstabench_workers_per_gpu = 2\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: workers per GPU have nothing to pin
    assert pytester.runpytest_inprocess("-p", "no:cacheprovider").ret == pytest.ExitCode.OK


@pytest.mark.parametrize("device, slots", [("cuda:1", []), ("cuda", ["6", "7"]), ("auto", ["6", "7"])])
def test_an_explicit_cuda_index_leaves_workers_unpinned(pytester, monkeypatch, device, slots):
    """A worker pinned to one GPU sees only cuda:0, so ``cuda:1`` (the controller's numbering)
    must reach the workers with every GPU still visible."""
    from stabench.plugin import GpuPool

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,7")
    config = pytester.parseconfig(f"--stabench-device={device}")
    assert GpuPool(config, "session").gpus == slots


SLOW_CLAIM = '''
import stabench

SLOW = stabench.get_recipe("bert-default", max_steps=500, trace_every=50, lr=2e-3)

@stabench.claim(task="polarity", model=MODEL, recipe=SLOW, seeds=3)
def test_slow(study):
    assert study.n == 3
'''


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 gives every frame a line number")
def test_an_interrupt_in_a_frame_without_a_line_number_is_still_reported():
    """A signal can land where Python 3.11 has no line number; pytest's report then failed."""
    import sys
    import types

    from stabench.plugin import drop_lineless_frames

    def interrupted():
        try:
            raise KeyboardInterrupt("stopped by signal SIGTERM")
        except KeyboardInterrupt as error:
            frame = sys._getframe()
            lineless = types.TracebackType(error.__traceback__.tb_next, frame, 10**6, -1)  # "line -1"
            assert lineless.tb_lineno is None
            error.__traceback__.tb_next = lineless
            raise error.with_traceback(error.__traceback__)

    with pytest.raises(KeyboardInterrupt) as excinfo:
        try:
            raise ValueError("first")
        except ValueError:
            interrupted()
    with pytest.raises(TypeError):  # pytest's own failure, which the hook prevents
        pytest.ExceptionInfo.from_exception(excinfo.value).getrepr()
    drop_lineless_frames(excinfo.value)
    assert "KeyboardInterrupt: stopped by signal SIGTERM" in str(pytest.ExceptionInfo.from_exception(excinfo.value)
                                                                 .getrepr())
    tb, entries = excinfo.value.__traceback__, []
    while tb is not None:
        entries.append(tb.tb_lineno)
        tb = tb.tb_next
    assert None not in entries and len(entries) >= 2


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_sigterm_stops_the_session_like_ctrl_c_and_says_what_is_stored(pytester, tiny_model, workers):
    """A CI job's timeout sends SIGTERM: the session ends with pytest's summary and a line on what is
    stored, instead of vanishing; the rerun trains only what is missing."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    pytester.makepyfile(test_slow=f"MODEL = {tiny_model!r}\n" + SLOW_CLAIM)
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--stabench-cpu-threads=1",
            "--stabench-store=s.sqlite"]
    process = subprocess.Popen([*args, *workers, "--stabench-json=r.json", "--stabench-md=r.md"], cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output: list[str] = []
    first_seed = threading.Event()

    def read() -> None:  # the first progress letter: a seed item has reported to the controller
        for char in iter(lambda: process.stdout.read(1), ""):
            output.append(char)
            if char in ".f" and re.search(r"(test_slow\.py |\[\d+ items\]\n\n)[.f]$", "".join(output)):
                first_seed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first_seed.wait(240), "".join(output)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    reader.join(30)
    text = "".join(output)
    with contextlib.closing(sqlite3.connect(pytester.path / "s.sqlite")) as conn:
        kept = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert process.returncode == pytest.ExitCode.INTERRUPTED, text
    assert "KeyboardInterrupt: stopped by signal SIGTERM" in text
    # Serial, the run in training is lost; xdist's workers may finish theirs while shutting down.
    assert 1 <= kept <= (3 if workers else 2), text
    assert re.search(r"stabench: interrupted after \d seed item\(s\) had reported \(\d trained, 0 read from the "
                     r"store\)" + (r" \(xdist workers may have finished more\)" if workers else "")
                     + "; every finished run is stored", text), text
    # The reports say it too: "No claim ran" alone read as an empty session.
    interrupted = json.loads((pytester.path / "r.json").read_text())["interrupted"]
    assert interrupted.startswith("interrupted after ") and interrupted in text
    assert f"**The session was {interrupted}.**" in (pytester.path / "r.md").read_text()
    rerun = subprocess.run(args, cwd=pytester.path, capture_output=True, text=True, timeout=600)  # serial: faster
    assert rerun.returncode == 0, rerun.stdout
    assert f"runs: {3 - kept} trained this session" in rerun.stdout, rerun.stdout


def test_a_collection_error_is_not_reported_as_an_interruption(pytester):
    """pytest stops on a collection error with its own KeyboardInterrupt subclass: not Ctrl-C."""
    pytester.makepyfile(test_bad='''
import stabench

@stabench.claim(task=123, model="tiny-bert", recipe="bert-default", seeds=2)
def test_x(study):
    pass
''')
    result = _run(pytester, "--stabench-md=r.md", "--stabench-json=r.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    # One line saying where and what, not the claim file's import traceback through stabench.
    result.stdout.fnmatch_lines(["*ERROR collecting test_bad.py*",
                                 "test_bad.py:3: task=123 is invalid; expected a task name (*"])
    assert "claims.py" not in result.stdout.str() and "stabench: interrupted" not in result.stdout.str()
    # A report that said only "No claim ran" read as a quiet session in a CI job summary.
    said = "1 file(s) did not collect, so pytest ran no claim (unless --continue-on-collection-errors) and no " \
           "gate compared them"
    result.stdout.fnmatch_lines([f"stabench: {said} (the errors above say why)"])
    assert f"**Note:** {said}: test_bad.py:3: task=123 is invalid" in (pytester.path / "r.md").read_text()
    (error,) = _report(pytester.path / "r.json")["collection_errors"]
    assert error.startswith("test_bad.py:3: task=123 is invalid")
    from stabench import claim
    with pytest.raises(ValueError, match=r"^test_plugin.py:\d+: task=123 is invalid"):
        claim(task=123)  # a script's ValueError too
    with pytest.raises(ValueError, match=r"^test_plugin.py:\d+: recipe file 'nope.json' does not exist"):
        claim(task="polarity", model="tiny-bert", recipe="nope.json")  # a missing file, in one line too
    _run(pytester, "-n", "2", "--stabench-json=r.json")  # each worker collects the file, and reports its error
    assert _report(pytester.path / "r.json")["collection_errors"] == [error]


def test_a_local_task_error_at_a_claim_files_top_shows_the_users_line_not_stabench_frames(pytester):
    pytester.path.joinpath("train.csv").write_text("text,label\nfine,1\nbad,0\n")
    pytester.makepyfile(test_data='''
import stabench

TASK = stabench.local_task("tickets", "train.csv", "train.csv", text_columns=["txt"])
''')
    result = _run(pytester)
    result.stdout.fnmatch_lines(["*ERROR collecting test_data.py*", "test_data.py:3: in <module>",
                                 "E   ValueError: column 'txt' is missing from 'train.csv'; it has columns text, label "
                                 "(did you mean 'text'?)"])
    assert "tasks.py" not in result.stdout.str()


@pytest.mark.parametrize("call, message", [
    ('get_recipe("bert-defualt-bc")', "unknown recipe 'bert-defualt-bc' (did you mean 'bert-default-bc'?); *"),
    ('get_recipe("bert-default-bc", learning_rate=1e-3)', "unknown recipe field 'learning_rate' (transformers' name; stabench's field is 'lr'); *"),
    ('get_recipe("bert-default-bc", lr=-1)', "recipe field lr=-1.0 is invalid; expected a positive finite number"),
])
def test_a_recipe_error_at_a_claim_files_top_shows_the_users_line_not_stabench_frames(pytester, call, message):
    pytester.makepyfile(test_recipe=f'''
import stabench

MINE = stabench.{call}
''')
    result = _run(pytester)
    result.stdout.fnmatch_lines(["*ERROR collecting test_recipe.py*", "test_recipe.py:3: in <module>", "*",
                                 "*", f"E   ValueError: {message}"])
    assert "recipes.py" not in result.stdout.str() and "dataclasses.py" not in result.stdout.str()


def test_reports_are_written_before_xdist_stops_its_workers_where_a_ctrl_c_lands(pytester):
    """A Ctrl-C or a CI timeout in xdist's teardown lost this session's report (an older one stayed)."""
    pytester.makeconftest("""
import xdist.workermanage

def _interrupted(self):
    raise KeyboardInterrupt

xdist.workermanage.NodeManager.teardown_nodes = _interrupted
""")
    pytester.makepyfile(test_plain="def test_a():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--stabench-json=r.json")
    assert result.ret != 0 and "KeyboardInterrupt" in result.stderr.str()  # pytest's own exit, past its handling
    assert _report(pytester.path / "r.json")["seeds"] == [] and _report(pytester.path / "r.json")["exit_status"] == 0


def test_a_session_without_claims_keeps_sigterm_and_ctrl_c_as_pytest_has_them(pytester):
    pytester.makepyfile(test_plain="""
import signal

def test_sigterm_is_untouched():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

def test_stop():
    raise KeyboardInterrupt
""")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    assert "stabench" not in result.stdout.str().split("KeyboardInterrupt", 1)[1]
    assert "1 passed" in result.stdout.str()


def test_the_sigterm_handler_lets_forked_children_die_of_the_signal_and_is_removed_after():
    import multiprocessing
    import signal
    import time
    from types import SimpleNamespace

    from stabench.plugin import Reporter

    cleanups = []
    reporter = Reporter(SimpleNamespace(add_cleanup=cleanups.append))
    reporter.watch()
    try:
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
        child.start()
        time.sleep(0.2)
        child.terminate()
        child.join(20)
        assert child.exitcode == -signal.SIGTERM  # died of the signal, no KeyboardInterrupt in the child
    finally:
        for cleanup in cleanups:
            cleanup()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL



def test_the_xdist_controller_stops_on_sigterm_from_a_claim_items_setup_on_not_after_its_first_seed():
    """The controller collects nothing under xdist: it learnt of claims from the first seed's result,
    so a CI timeout during the first (hours-long) seeds killed it without a summary or a report."""
    import signal
    from types import SimpleNamespace

    from stabench.plugin import CLAIM_ITEM, Reporter

    cleanups = []
    reporter = Reporter(SimpleNamespace(add_cleanup=cleanups.append))
    try:
        # Not a claim's item, though a folder named stabench gives its tests that keyword: pytest's own behaviour.
        reporter.pytest_runtest_logreport(SimpleNamespace(when="setup", passed=True, keywords={"stabench": 1},
                                                          user_properties=[]))
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        reporter.pytest_runtest_logreport(SimpleNamespace(when="setup", passed=True, keywords={},
                                                          user_properties=[(CLAIM_ITEM, "")]))
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        for cleanup in cleanups:
            cleanup()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_claim_items_setup_report_says_it_is_one_and_a_plain_tests_does_not(pytester, tiny_model):
    """What the xdist controller watches for: in the setup report, before any seed trains."""
    pytester.makeconftest("""
def pytest_runtest_logreport(report):
    if report.when == "setup":
        print("SETUP", report.nodeid.split("::")[-1], dict(report.user_properties).get("stabench_item") == "")
""")
    pytester.makepyfile(test_mixed=f"MODEL = {tiny_model!r}\n" + '''
import stabench

def test_plain():
    pass

@stabench.claim(task="polarity", model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=1)
def test_claim(study):
    pass
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--setup-only", "-s", "--stabench-store=s.sqlite")
    result.stdout.fnmatch_lines(["*SETUP test_plain False*"])
    result.stdout.fnmatch_lines(["*SETUP test_claim[[]seed0[]] True*"])


def test_a_claim_on_a_subsample_says_its_size_in_the_table_and_the_json(pytester, tiny_model):
    pytester.makepyfile(test_small=f"MODEL = {tiny_model!r}\n" + '''
import stabench

@stabench.claim(task="polarity", model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2),
                train_size=64, seeds=2)
def test_small(study):
    assert study.n == 2
''')
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-json=r.json")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_small*polarity (64)*"])
    (claim,) = _report(pytester.path / "r.json")["claims"]
    assert claim["train_size"] == 64 and claim["task"] == "polarity"


def test_a_claim_marked_xfail_is_reported_as_expected_to_fail(pytester, tiny_model):
    pytester.makepyfile(test_xfail=f'''
import pytest
import stabench

@pytest.mark.xfail(reason="known to fail at this scale")
@stabench.claim(task="polarity", model={tiny_model!r}, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=1)
def test_never_fails(study):
    assert study.failures == 0
''')
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-json=r.json", "--stabench-md=r.md")
    result.assert_outcomes(passed=1, xfailed=1)
    (claim,) = _report(pytester.path / "r.json")["claims"]
    assert claim["verdict"] == "xfailed"
    assert "| xfailed" in (pytester.path / "r.md").read_text()


def test_every_claim_has_a_report_row_however_its_verdict_ended(pytester, tiny_model, monkeypatch):
    """A seed the verdict trains that raises, a fixture's error, a skip mark, and pytest.skip,
    xfail or fail in the body: each claim keeps its row, as pytest reported it."""
    pytester.makepyfile(test_outcomes=f'''
import pytest
import stabench

FAST = stabench.get_recipe("bert-default", max_steps=2)

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def claim(name, steps=2):
    return stabench.claim(task="polarity", model={tiny_model!r}, recipe=FAST.replace(name=name, max_steps=steps),
                          seeds=1)

@claim("a")
def test_fixture_error(study, broken):
    pass

@pytest.mark.skip(reason="not today")
@claim("b")
def test_skip_mark(study):
    pass

@claim("c")
def test_skips_itself(study):
    pytest.skip("decided in the body")

@claim("d")
def test_xfails_itself(study):
    pytest.xfail("known gap")

@claim("e")
def test_fails_itself(study):
    pytest.fail("explicit failure")

@pytest.mark.xfail(reason="known to break")
@claim("g")
def test_fixture_error_expected(study, broken):
    pass

@claim("f", steps=3)  # its own run: recipe names are not part of a run's key
def test_seed_raises(study):
    pass
''')
    import stabench.train

    real = stabench.train.fine_tune

    def fine_tune(prepared, *args, **kwargs):
        if prepared.recipe.max_steps == 3:
            raise RuntimeError("CUDA out of memory")
        return real(prepared, *args, **kwargs)

    monkeypatch.setattr(stabench.train, "fine_tune", fine_tune)
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-json=r.json", "--stabench-md=r.md", "-k",
                  "verdict")  # the verdict trains every seed itself
    verdicts = {row["claim"].rpartition("::")[2]: (row["verdict"], row.get("message") or row.get("reason"))
                for row in _report(pytester.path / "r.json")["claims"]}
    assert verdicts == {"test_fixture_error": ("error", "RuntimeError: fixture broke"),
                        "test_skip_mark": ("skipped", "not today"),
                        "test_skips_itself": ("skipped", "decided in the body"),
                        "test_xfails_itself": ("xfailed", "known gap"),
                        "test_fails_itself": ("failed", "explicit failure"),
                        "test_fixture_error_expected": ("xfailed", "known to break"),
                        "test_seed_raises": ("error", "CUDA out of memory")}
    result.assert_outcomes(skipped=2, xfailed=2, failed=2, errors=1)
    assert "No claim ran" not in (pytester.path / "r.md").read_text()


def test_a_session_of_seed_items_only_reports_the_runs_it_made(suite):
    """``-m "not stabench_verdict"`` trains seeds without judging: "No claim ran" read as an empty session."""
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim", "-m", "not stabench_verdict",
                  "--stabench-md=r.md")
    seeds = result.parseoutcomes()["passed"]
    line = (f"runs: {seeds} trained this session ({seeds} by seed items, 0 by verdicts); 0 read from the store "
            f"({(suite.path / 's.sqlite').resolve()})")
    result.stdout.fnmatch_lines([f"stabench: {line}"])
    assert (suite.path / "r.md").read_text() == (f"## stabench claims\n\nNo claim's verdict ran: only seed items "
                                                  f"were selected ({line}; the JSON report lists them).\n")


def test_a_claim_gated_but_skipped_by_a_mark_fails_the_gate_as_nothing_compared(suite):
    _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim", "--stabench-tag=base")
    suite.makeconftest("import pytest\n\ndef pytest_collection_modifyitems(items):\n    for item in items:\n"
                       "        item.add_marker(pytest.mark.skipif(True, reason='no GPU here'))\n")
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim", "--stabench-baseline=tag:base")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["no claim's verdict ran, so nothing was compared with the baseline tag:base*"])


def test_collect_only_leaves_earlier_reports_and_one_file_for_both_reports_is_refused(suite):
    (suite.path / "r.md").write_text("## stabench claims\n\nearlier\n")
    assert _run(suite, "--collect-only", "--stabench-md=r.md").ret == pytest.ExitCode.OK
    assert (suite.path / "r.md").read_text() == "## stabench claims\n\nearlier\n"
    both = _run(suite, "--collect-only", "--stabench-md=r.out", "--stabench-json=r.out")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["ERROR: --stabench-md and --stabench-json both name 'r.out': the JSON would replace "
                               "the Markdown; name two files"])


def test_an_in_process_session_gives_back_the_torch_thread_count(suite):
    import torch

    before = torch.get_num_threads()
    _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0", "--stabench-cpu-threads=3")
    assert torch.get_num_threads() == before
    again = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0")  # 1 thread: trains again, and says why
    said = ("runs of * are stored under another stack (cpu_threads 3), not this one (cpu_threads 1); each stack keeps "
            "its own runs, so they train again (those stored under cpu_threads 3 are read with that count: "
            "--stabench-cpu-threads, stabench run --cpu-threads, or cpu_threads=)")
    again.stdout.fnmatch_lines([f"stabench: {said}", "*warnings summary*", f"*{said}*"])  # when it trains, and at the end
    workers = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0", "-n", "2",
                   "--stabench-cpu-threads=2")  # an xdist worker's warning reaches the controller's terminal
    workers.stdout.fnmatch_lines(["stabench: runs of * are stored under 2 other stacks (*), not this one (cpu_threads 2)*"])


def test_a_report_that_cannot_be_written_at_the_end_is_one_line_and_fails_the_session(suite, monkeypatch):
    def refuse(path, payload):
        raise ValueError(f"cannot write {str(path)!r}: No such device")

    from stabench.report import write_json as written_json

    monkeypatch.setattr("stabench.report.write_json", refuse)  # checked at the start, failing only at the end
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim", "--stabench-json=r.json",
                  "--stabench-md=r.md")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["stabench: --stabench-json: cannot write '*r.json': No such device"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert (suite.path / "r.md").exists()  # the other reports are still written
    from stabench import report  # now the Markdown fails: the JSON, written first, then says the session failed

    monkeypatch.setattr(report, "write_json", written_json)
    monkeypatch.setattr(report, "write_markdown", refuse)
    again = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim", "--stabench-json=r.json",
                 "--stabench-md=r.md")
    assert again.ret == pytest.ExitCode.TESTS_FAILED == _report(suite.path / "r.json")["exit_status"]


def test_tagging_a_session_without_verdicts_says_nothing_was_tagged(suite):
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0", "--stabench-tag=partial")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["stabench: --stabench-tag=partial: no claim's verdict ran in this session (say -m "
                                 "or -k selected seed items only), so no run was tagged*"])
    from stabench.store import Store
    with Store(suite.path / "s.sqlite") as store:
        assert store.query(tag="partial") == [] and len(store.query()) == 1


def test_a_gate_that_cannot_compare_says_so_where_ci_reads_it(suite):
    """A wrong -m in CI, or limits without a baseline, turned the gate off without a word; then
    with a note, and a CI job passed every change.  A baseline typed on the command line of a
    seed-only session fails it; one from the ini file (which seed-only sessions share) is noted."""
    _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim", "--stabench-tag=base").assert_outcomes(passed=5)
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0", "--stabench-baseline=tag:base",
                  "--stabench-md=r.md", "--stabench-json=r.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    said = ("--stabench-baseline=tag:base: no claim's verdict ran in this session (say -m or -k selected seed items "
            "only), so nothing was compared with the baseline; the verdict compares its claim's runs")
    result.stdout.fnmatch_lines([said, "*1 passed, 10 deselected, 1 gate failed*"])
    assert said in (suite.path / "r.md").read_text()
    assert _report(suite.path / "r.json")["nothing_compared"] == said
    suite.makeini("[pytest]\nstabench_baseline = tag:base\n")
    from_ini = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0")
    assert from_ini.ret == pytest.ExitCode.OK
    from_ini.stdout.fnmatch_lines(["stabench: stabench_baseline=tag:base in tox.ini: no claim*s verdict ran in this "
                                   "session*"])
    (suite.path / "tox.ini").unlink()
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0", "--stabench-gate=max_extra_failures=1")
    result.stdout.fnmatch_lines(["stabench: --stabench-gate has no effect without --stabench-baseline: it sets the "
                                 "limits of a comparison with a baseline"])
    assert "no effect" not in _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0").stdout.str()
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0", "-o", "stabench_gate=alpha=0.01")
    result.stdout.fnmatch_lines(["stabench: -o stabench_gate has no effect without --stabench-baseline*"])
    suite.makeini("[pytest]\naddopts = --stabench-gate=max_extra_failures=1\n")  # limits for CI's baseline runs
    assert "no effect" not in _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0").stdout.str()
    cleared = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and seed0", "--stabench-gate=")
    assert "no effect" not in cleared.stdout.str()  # an empty value clears the limits: there are none to ignore


def test_a_report_says_how_many_files_did_not_collect_beyond_those_it_names(pytester):
    pytester.makepyfile(**{f"test_bad{i}": f"import stabench\n\n@stabench.claim(task={i})\ndef test_x(study):\n"
                                          f"    pass\n" for i in range(4)})
    _run(pytester, "--stabench-md=r.md", "--stabench-json=r.json")
    assert "; and 1 more (the JSON report lists them all)." in (pytester.path / "r.md").read_text()
    assert len(_report(pytester.path / "r.json")["collection_errors"]) == 4


def test_a_claim_without_a_study_argument_is_a_one_line_collection_error(pytester, tiny_model):
    pytester.makepyfile(test_nostudy=f'''
import stabench

@stabench.claim(task="polarity", model={tiny_model!r}, recipe="bert-default", seeds=1)
def test_forgot(tmp_path):
    pass
''')
    result = _run(pytester, "--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # pytest's exit status for collection errors
    result.stdout.fnmatch_lines(["*ERROR collecting test_nostudy.py*",
                                 "test_forgot: a stabench claim must take a 'study' argument, e.g. "
                                 "def test_forgot(study): ..."])
    assert "_hooks.py" not in result.stdout.str() and "Traceback" not in result.stdout.str()


def test_a_study_fixture_of_ones_own_and_a_study_without_a_claim_are_each_one_line(pytester, tiny_model):
    """pytest said "function uses no argument 'stabench_unit'" of the first; the second got None."""
    pytester.makepyfile(test_mixed=f'''
import pytest
import stabench

@pytest.fixture
def study():
    return "an optuna study"

@stabench.claim(task="polarity", model={tiny_model!r}, recipe="bert-default", seeds=1)
def test_claim(study):
    pass
''', test_unmarked="""
def test_forgot(study):
    assert study
""")
    result = _run(pytester, "--collect-only", "test_mixed.py")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["test_claim: a fixture named 'study' of your own (in a conftest or the test file) "
                                 "hides stabench's, which a claim takes; rename yours"])
    unmarked = _run(pytester, "test_unmarked.py")
    unmarked.assert_outcomes(errors=1)
    unmarked.stdout.fnmatch_lines(["test_forgot takes 'study', which stabench gives to claims only; put "
                                   "@stabench.claim(...) above it"])
    assert "Traceback" not in result.stdout.str() + unmarked.stdout.str()
    assert "plugin.py" not in unmarked.stdout.str()  # no stabench frame above the line


def test_a_claim_with_published_numbers_shows_them_in_a_paper_column(pytester, tiny_model):
    pytester.makepyfile(test_reference=f'''
import stabench

@stabench.claim(task="polarity", model={tiny_model!r}, seeds=2,
                arms={{"short": {{"recipe": stabench.get_recipe("bert-default", max_steps=2)}},
                       "long": {{"recipe": stabench.get_recipe("bert-default", max_steps=4)}}}},
                reference={{"source": "Some et al. 2026, Table 9", "polarity": {{"long": "1.0 / 88.0"}}}})
def test_with_reference(study):
    assert study["long"].n == 2
''')
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-md=r.md", "--stabench-json=r.json")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*paper*", "*(long)*1.0 / 88.0*", "paper column: Some et al. 2026, Table 9"])
    rows = {c["arm"]: c for c in _report(pytester.path / "r.json")["claims"]}
    assert rows["long"]["reference"] == "1.0 / 88.0" and rows["short"]["reference"] is None
    assert "| paper" in (pytester.path / "r.md").read_text().replace("  ", " ")
    assert "\nPaper column: Some et al. 2026, Table 9.\n" in (pytester.path / "r.md").read_text()  # what it holds
    toy = _run(pytester, "--stabench-store=s.sqlite", "--stabench-profile=toy", "--stabench-json=t.json")
    toy.assert_outcomes(passed=5)  # the paper's numbers never sit beside toy-scale ones
    assert not any(c["reference"] for c in _report(pytester.path / "t.json")["claims"])
    assert "paper column" not in toy.stdout.str()


def test_two_model_folders_of_one_name_are_two_arms_and_one_folder_twice_is_one(tmp_path, monkeypatch):
    from stabench.claims import build_spec

    for version in ("v1", "v2"):
        (tmp_path / version / "final").mkdir(parents=True)  # checkpoint folders of two trainings
    monkeypatch.chdir(tmp_path)
    options = dict(task="polarity", recipe="bert-default", seeds=2)
    two = build_spec({**options, "arms": {"v1": {"model": "v1/final"},
                                          "v2": {"model": str(tmp_path / "v2/final")}}}, {})
    assert [arm.model for arm in two.arms] == ["v1/final", str(tmp_path / "v2/final")]
    with pytest.raises(ValueError, match="claim arms 'a' and 'b' train the same runs"):
        build_spec({**options, "arms": {"a": {"model": "v1/final"}, "b": {"model": "v2/../v1/final"}}}, {})


RERUN_ONCE = '''
import pytest
from _pytest.runner import runtestprotocol

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """pytest-rerunfailures in miniature: an attempt whose call failed is reported as a 'rerun' and
    the item runs once more."""
    for attempt in (1, 2):
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        again = attempt == 1 and any(report.when == "call" and report.failed for report in reports)
        for report in reports:
            if again and report.when == "call":
                report.outcome = "rerun"
            item.ihook.pytest_runtest_logreport(report=report)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        if not again:
            return True

def pytest_report_teststatus(report):
    if report.outcome == "rerun":
        return "rerun", "R", "RERUN"
'''


@pytest.mark.parametrize("selected, trained", [("", "2 by seed items, 0 by verdicts"),
                                               ("verdict", "0 by seed items, 2 by verdicts")])
def test_a_claim_run_again_by_a_rerun_plugin_is_reported_once_as_its_last_attempt(pytester, tiny_model, selected,
                                                                                   trained):
    """pytest-rerunfailures runs a failed item again on the same item, whose properties keep the
    first attempt's rows: the reports showed the claim once per attempt, 'failed' beside 'passed',
    and counted the runs of both attempts as trained."""
    pytester.makeconftest(RERUN_ONCE)
    pytester.makepyfile(test_flaky=f'''
import stabench
ATTEMPTS = []

@stabench.claim(task="polarity", model={tiny_model!r}, recipe=stabench.get_recipe("bert-default", max_steps=4), seeds=2)
def test_flaky(study):
    ATTEMPTS.append(study.n)
    assert len(ATTEMPTS) > 1, "the first attempt fails"
''')
    result = _run(pytester, "--stabench-store=s.sqlite", "--stabench-json=r.json", "--stabench-md=r.md", "-k", selected)
    assert result.ret == 0, result.stdout.str()
    claims = _report(pytester.path / "r.json")["claims"]
    assert [(c["claim"], c["verdict"]) for c in claims] == [("test_flaky.py::test_flaky", "passed")]
    assert len(_report(pytester.path / "r.json")["seeds"]) == (0 if selected else 2)
    keys = _report(pytester.path / "r.json")["trained"]
    assert [len(keys["by_seed_items"]), len(keys["by_verdicts"])] == ([0, 2] if selected else [2, 0])
    assert "first attempt fails" not in (pytester.path / "r.md").read_text()
    result.stdout.fnmatch_lines([f"runs: 2 trained this session ({trained}); 0 read from the store (*/s.sqlite)"])


def test_runs_a_verdict_trained_before_it_failed_are_counted_as_trained(suite, monkeypatch):
    """A verdict that trains seed 0 and then stops (a crash, a pytest-timeout) stored seed 0:
    the session's count said it trained nothing."""
    import stabench.train

    real = stabench.train.fine_tune

    def seed_1_crashes(prepared, **kwargs):
        if prepared.seed == 1:
            raise RuntimeError("seed 1 crashed")
        return real(prepared, **kwargs)

    monkeypatch.setattr(stabench.train, "fine_tune", seed_1_crashes)
    result = _run(suite, "--stabench-store=s.sqlite", "-k", "true_claim and verdict")
    result.assert_outcomes(failed=1, deselected=10)
    with contextlib.closing(sqlite3.connect(suite.path / "s.sqlite")) as conn:
        assert conn.execute("SELECT seed FROM runs").fetchall() == [(0,)]
    result.stdout.fnmatch_lines(["runs: 1 trained this session (0 by seed items, 1 by verdicts); 0 read from the "
                                 "store (*/s.sqlite)"])


def test_runs_a_verdict_trained_before_ctrl_c_are_counted(suite):
    """Ctrl-C in a verdict makes no report, so the count comes from the process's own session.
    (In a subprocess: pytester raises an in-process session's KeyboardInterrupt in this one.)"""
    suite.makeconftest('''
import stabench.train

real = stabench.train.fine_tune

def seed_1_interrupted(prepared, **kwargs):
    if prepared.seed == 1:
        raise KeyboardInterrupt
    return real(prepared, **kwargs)

stabench.train.fine_tune = seed_1_interrupted
''')
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--stabench-cpu-threads=1", "--stabench-store=s.sqlite",
                                        "-k", "true_claim and verdict")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["stabench: interrupted after 0 seed item(s) had reported (1 trained, 0 read from the "
                                 "store); every finished run is stored, and running the same command again trains "
                                 "only the missing ones"])
    redone = suite.runpytest_subprocess("-p", "no:cacheprovider", "--stabench-cpu-threads=1", "--stabench-store=s.sqlite",
                                        "-k", "true_claim and verdict", "--stabench-recompute")
    redone.stdout.fnmatch_lines(["stabench: interrupted after * every finished run is stored, and running it again "
                                 "trains every seed again, as --stabench-recompute asks (without it, seeds not "
                                 "retrained yet keep their earlier runs)"])  # not "only the missing ones"
    # Interrupted among the seed items, with a tag to give and a baseline to gate against: the
    # notes say why no verdict ran; the gate is not blamed on -m or -k, nor said to have failed.
    from stabench.store import Store

    with Store(suite.path / "s.sqlite") as store:
        store.tag(store.keys(), "old")
    tagged = suite.runpytest_subprocess("-p", "no:cacheprovider", "--stabench-cpu-threads=1",
                                        "--stabench-store=s.sqlite", "-k", "true_claim", "--stabench-tag=t",
                                        "--stabench-baseline=tag:old", "--stabench-md=gate.md")
    assert tagged.ret == pytest.ExitCode.INTERRUPTED
    for name, what in (("tag=t", "no run was tagged"), ("baseline=tag:old", "nothing was compared with the baseline")):
        tagged.stdout.fnmatch_lines([f"*--stabench-{name}: no claim's verdict ran in this session (the session was "
                                     f"interrupted before one did), so {what}*"])
    assert "-m or -k" not in tagged.stdout.str()
    markdown = (suite.path / "gate.md").read_text()
    assert "interrupted before one did" in markdown and "The gate failed" not in markdown


def test_the_training_stack_is_imported_before_the_first_item_unless_nothing_will_train(suite):
    """A per-item time limit (pytest-timeout) would otherwise count torch's and datasets' imports
    against the first item, and one it cuts short leaves a half-imported module for every later item."""
    suite.makeconftest('''
import sys

def pytest_sessionfinish(session):
    with open("imported.txt", "a") as handle:
        handle.write(f"{'datasets' in sys.modules and 'stabench.train' in sys.modules}\\n")
''')
    suite.makepyfile(test_a_plain='''
import sys

def test_first():
    with open("first.txt", "w") as handle:
        handle.write(f"{'datasets' in sys.modules and 'stabench.train' in sys.modules}")
''')
    args = ["-p", "no:cacheprovider", "--stabench-cpu-threads=1", "--stabench-store=s.sqlite"]
    suite.runpytest_subprocess(*args, "--collect-only").assert_outcomes()
    suite.runpytest_subprocess(*args, "-k", "first or (true_claim and seed0)").assert_outcomes(passed=2)
    assert (suite.path / "imported.txt").read_text().split() == ["False", "True"]
    assert (suite.path / "first.txt").read_text() == "True"  # test_a_plain runs first: claims keep their place


def test_verdict_items_carry_a_mark_that_selects_them_whatever_the_claim_is_called(pytester, tiny_model):
    """``-k "not verdict"`` (seed items only, to split seeds over machines) also drops every item of
    a claim whose name holds "verdict"; the mark does not."""
    pytester.makepyfile(test_named=f'''
import stabench

@stabench.claim(task="polarity", model={tiny_model!r}, recipe="bert-default", seeds=2)
def test_verdict_is_stable(study):
    pass
''')
    seeds = _run(pytester, "--strict-markers", "--co", "-q", "-m", "not stabench_verdict")
    seeds.stdout.fnmatch_lines(["test_named.py::test_verdict_is_stable[[]seed0[]]",
                                "test_named.py::test_verdict_is_stable[[]seed1[]]", "", "2/3 tests collected*"])
    verdicts = _run(pytester, "--strict-markers", "--co", "-q", "-m", "stabench_verdict")
    verdicts.stdout.fnmatch_lines(["test_named.py::test_verdict_is_stable[[]verdict[]]", "", "1/3 tests collected*"])
    assert _run(pytester, "--co", "-q", "-k", "not verdict").ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_a_session_without_workers_trains_under_the_keys_of_the_cli(suite, tiny_model, monkeypatch):
    """With OMP_NUM_THREADS=1 (or taskset), torch runs 1 thread, and so do the CLI and scripts;
    pytest took the machine's CPU count instead, so the CLI trained again what pytest had stored."""
    import subprocess

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    suite.runpytest_subprocess("-p", "no:cacheprovider", "--stabench-store=s.sqlite", "-k",
                               "true_claim and seed0").assert_outcomes(passed=1)
    cli = subprocess.run([sys.executable, "-m", "stabench", "run", "--store", "s.sqlite", "--task", "polarity",
                          "--model", tiny_model, "--set", "max_steps=6,trace_every=2,lr=2e-3", "--seeds", "0"],
                         cwd=suite.path, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "stored, not retrained" in cli.stdout, cli.stdout


def test_the_toy_profile_subsamples_only_the_arms_that_subsample():
    """The small-data claim at toy scale: its 1k arm trains on the toy's subsample, its full-data
    arm on the whole (toy) task, so the two stay a full set against a subsample."""
    from stabench.claims import build_spec
    from stabench.profiles import TOY

    options = dict(task="qnli", model="bert-large-uncased", recipe="bert-default", seeds=5,
                   arms={"full": {}, "1k": {"train_size": 1000}})
    spec = build_spec(options, {}, toy=True, toy_defaults=TOY)
    assert [(arm.name, arm.task, arm.train_size) for arm in spec.arms] == [
        ("full", "same-number", None), ("1k", "same-number", TOY["train_size"])]


def test_a_claims_own_toy_options_add_to_the_toy_defaults_key_by_key():
    """A claim's toy lr keeps the toy profile's step count, and its task_map keeps the other stand-ins."""
    from stabench.claims import build_spec
    from stabench.profiles import TOY

    options = dict(task="rte", model="bert-large-uncased", recipe="bert-default", seeds=5,
                   toy={"recipe_overrides": {"lr": 1e-3}, "task_map": {"sst2": "same-number"}},
                   arms={"rte": {}, "sst2": {"task": "sst2"}})
    spec = build_spec(options, {}, toy=True, toy_defaults=TOY)
    assert [(arm.task, arm.recipe.lr, arm.recipe.max_steps, arm.recipe.trace_every) for arm in spec.arms] == [
        ("same-number", 1e-3, TOY["recipe_overrides"]["max_steps"], TOY["recipe_overrides"]["trace_every"]),
        ("same-number", 1e-3, TOY["recipe_overrides"]["max_steps"], TOY["recipe_overrides"]["trace_every"])]
    assert spec.seeds == (0, 1)


def test_the_toy_profile_drops_a_claims_requirements_and_its_own_toy_seeds_win_over_the_defaults():
    """The toy scale is made for a CPU: a claim that needs cuda runs there anyway; a claim's own toy
    seeds beat the profile's, and the command line's seeds beat both."""
    from stabench.claims import build_spec, claim_seeds
    from stabench.profiles import TOY

    options = dict(task="rte", model="bert-large-uncased", recipe="bert-default", seeds=5, requires=("cuda",),
                   toy={"seeds": 3})
    assert build_spec(options, {}).requires == ("cuda",)
    toy = build_spec(options, {}, toy=True, toy_defaults=TOY)
    assert toy.requires == () and toy.seeds == (0, 1, 2)
    assert claim_seeds({"seeds": 5}, toy=True, toy_defaults=TOY) == (0, 1)
    assert claim_seeds(options, toy=True, toy_defaults=TOY) == (0, 1, 2)
    assert claim_seeds(options, seed_override=[7], toy=True, toy_defaults=TOY) == (7,)
