"""The results store must never lose or recompute a finished run, even across crashes."""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import re
import shlex
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stabench import store as store_module
from stabench.environment import key_fields
from stabench.exchange import read_export
from stabench.gate import parse_env
from stabench.result import RunResult, run_key
from stabench.store import Store, StoreError, beside_store, default_store_path, schema_version

WORKER = Path(__file__).with_name("_store_worker.py")
# make_result's records, like those stored before 2026-12-05, do not list their keyed fields: their
# imports warn that the keys went unchecked (asserted where that is the point).
pytestmark = pytest.mark.filterwarnings("ignore:.*do not record which fields made their keys:UserWarning")

ENVIRONMENT = {
    "python": "3.11.7", "platform": "Linux-x86_64", "hostname": "node-7",
    "torch": "2.13.0", "transformers": "5.24.0", "datasets": "5.2.0", "stabench": "0.1.0",
    "cuda": None, "cudnn": None, "device_kind": "cpu", "device_name": "x86_64",
    "gpu_driver": None, "cpu_threads": 2, "project_git_commit": "abc123",
    "project_git_dirty": False, "precision": "fp32", "python_executable": "/usr/bin/python3",
}


def make_result(seed: int, *, task: str = "rte", model: str = "bert-large-uncased",
                recipe: str = "paper", environment: dict[str, Any] | None = None,
                metrics: dict[str, float] | None = None, trace: dict[str, Any] | None = None,
                tags: list[str] | None = None, failed: bool | None = None) -> RunResult:
    """A complete run record whose key is derived the way the runner derives it (and, unless
    given, its verdict from its accuracy, as an import checks)."""
    env = {**ENVIRONMENT, **(environment or {})}
    metrics = {"accuracy": 0.5 + seed / 100, **(metrics or {})}
    if failed is None:
        accuracy = metrics["accuracy"]
        failed = isinstance(accuracy, float) and math.isfinite(accuracy) and accuracy <= 0.527
    task_info = {"name": task, "split": "validation", "subsample": None,
                 "fingerprint": "f00d", "n_train": 2490, "n_eval": 277}
    model_info = {"name": model, "revision": "main", "weights_hash": "beef"}
    recipe_fields = {"name": recipe, "lr": 2e-5, "epochs": 20, "warmup": 0.1, "bias_correction": True}
    recipe_hash = f"hash-{recipe}"
    return RunResult(
        key=run_key(task_info, model_info, recipe_hash, seed, key_fields(env)),
        task=task_info, model=model_info, recipe=recipe_fields, recipe_name=recipe,
        recipe_hash=recipe_hash, seed=seed, environment=env,
        metrics=metrics, primary_metric="accuracy",
        majority_accuracy=0.527, failed=failed, collapsed=failed, diverged=False,
        steps=3120, wall_time_s=812.5, steps_per_s=3.84,
        started_at="2026-05-09T07:00:00+00:00", finished_at=f"2026-05-09T07:{seed % 60:02d}:00+00:00",
        trace={"loss": [0.69, 0.52, 0.31], "eval_accuracy": [0.5, 0.61]} if trace is None else trace,
        prediction_counts={"0": 140, "1": 137}, tags=list(tags or []),
    )


def same(a: Any, b: Any) -> bool:
    """Deep equality where NaN equals NaN and 1 does not equal 1.0 or True."""
    if isinstance(a, RunResult) and isinstance(b, RunResult):
        return same(dataclasses.asdict(a), dataclasses.asdict(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def file_state(path: Path) -> tuple[bytes, int, list[str]]:
    """Everything a refused open must leave as it was: bytes, mtime, sibling files."""
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def write_runs(path: Path, runs: list[RunResult]) -> Path:
    path.write_text(json.dumps([json.loads(run.to_json()) for run in runs]))
    return path


def worker(*args: Any, **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the worker"
        time.sleep(0.01)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def racing(mode: str, path: Path, *each: Sequence[Any], tmp_path: Path) -> list[subprocess.Popen]:
    """Workers of ``mode``, one per argument list in ``each``, let go together once all are ready."""
    go = tmp_path / "go"
    procs = [worker(mode, path, args[0], go, *args[1:]) for args in each]
    wait_for(lambda: len(list(tmp_path.glob("go.*.ready"))) == len(procs) or any(p.poll() for p in procs), 120)
    go.touch()
    return procs


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store" / "results.sqlite") as opened:
        yield opened


# -- basics -----------------------------------------------------------------------------


def test_put_get_round_trip_keeps_every_field_including_nan_and_inf(store: Store) -> None:
    run = make_result(3, metrics={"f1": math.nan, "mcc": math.inf, "loss": -math.inf},
                      trace={"loss": [0.7, math.nan, math.inf], "lr": [1e-5, 2e-5]}, tags=["smoke"])
    assert store.put(run) is True
    got = store.get(run.key)
    assert got is not None and got is not run
    assert same(got, run)
    assert math.isnan(got.metrics["f1"]) and got.metrics["mcc"] == math.inf
    assert run.key in store and "missing" not in store
    assert store.get("missing") is None
    assert store.keys() == [run.key] and store.count() == 1


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats(allow_nan=True, allow_infinity=True),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5).filter(lambda k: k != "__float__"),
                                                                inner, max_size=4),
    max_leaves=20)


@given(_JSON_VALUES)
@settings(max_examples=150, deadline=None)
def test_a_record_reads_back_every_nested_value_nan_and_inf_included(value: Any) -> None:
    run = make_result(0, trace={"extra": value}, metrics={"extra": value})
    text = run.to_json()
    for read in (RunResult.from_json(text), RunResult.from_json(text.encode()), RunResult.from_dict(json.loads(text))):
        assert same(read.trace["extra"], value) and same(read.metrics["extra"], value)


def test_a_newer_record_is_newer_even_where_it_holds_a_value_this_version_cannot_restore() -> None:
    """A newer stabench may mark more than NaN and inf: its record is to be kept (upgrade), never
    replaced as damaged; the same mark in a record of this version's fields is damage."""
    from stabench.result import NewerRecord

    record = {**_valid_record(), "metrics": {"accuracy": 0.57, "train_loss": {"__float__": "-0"}}}
    for read in (lambda r: RunResult.from_json(json.dumps(r)), RunResult.from_dict):
        with pytest.raises(NewerRecord, match=r"unknown run result fields \['zzz_new_field'\]"):
            read({**record, "zzz_new_field": 1})
        with pytest.raises(KeyError):
            read(record)


def test_the_names_moved_to_exchange_are_found_where_the_readme_named_them() -> None:
    from stabench import exchange

    with pytest.warns(DeprecationWarning, match=r"^stabench.store.run_table is stabench.exchange.run_table now$"):
        assert store_module.run_table is exchange.run_table
    with pytest.raises(AttributeError, match="has no attribute 'nosuch'"):
        store_module.nosuch


def test_reading_many_runs_leaves_garbage_collection_as_it_found_it(store: Store, tmp_path: Path) -> None:
    """Reading pauses the cycle collector; a user who turned it off keeps it off, and it comes back
    on after a read that failed."""
    import gc

    store.put(make_result(0))
    store.export(tmp_path / "runs.json")
    (tmp_path / "bad.json").write_text("[{}]")
    try:
        for enabled in (True, False):
            gc.enable() if enabled else gc.disable()
            assert len(store.query()) == 1 and len(read_export(tmp_path / "runs.json")) == 1
            with pytest.raises(StoreError):
                read_export(tmp_path / "bad.json")
            assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_existing_run_is_never_overwritten_unless_replace(store: Store) -> None:
    run = make_result(1)
    store.put(run)
    store.tag([run.key], "baseline")
    changed = dataclasses.replace(run, metrics={"accuracy": 0.99})
    assert store.put(changed) is False
    assert store.get(run.key).metrics == {"accuracy": 0.51}
    assert store.put(changed, replace=True) is True
    assert store.get(run.key).metrics == {"accuracy": 0.99}
    assert store.get(run.key).tags == ["baseline"]  # replacing keeps the run's tags
    assert store.count() == 1


def test_query_filters_on_identity_tags_and_environment(store: Store) -> None:
    runs = [make_result(seed, task=task, recipe=recipe)
            for task in ("rte", "mrpc") for recipe in ("paper", "baseline") for seed in range(3)]
    new_stack = make_result(0, environment={"transformers": "6.0.0", "precision": "bf16"})
    for run in [*runs, new_stack]:
        store.put(run)
    assert store.tag([r.key for r in runs if r.recipe_name == "baseline"], "baseline") == 6

    assert len(store.query()) == 13
    assert {(r.task["name"], r.recipe_name, r.seed) for r in store.query(task="mrpc", recipe="paper")} == {
        ("mrpc", "paper", s) for s in range(3)}
    assert [r.seed for r in store.query(task="rte", recipe="paper", seed=0)] == [0, 0]
    assert {r.recipe_name for r in store.query(tag="baseline")} == {"baseline"}
    assert len(store.query(tag="baseline")) == 6
    assert [r.key for r in store.query(env={"transformers": "6.0.0"})] == [new_stack.key]
    assert len(store.query(model="bert-large-uncased", env={"transformers": "5.24.0", "device_kind": "cpu"})) == 12
    assert store.query(model="roberta-large") == []
    with pytest.raises(StoreError, match="hostname"):
        store.query(env={"hostname": "node-7"})


def test_query_finds_a_preset_with_overrides_however_they_are_written(store: Store) -> None:
    """stabench stores bert-default[lr=2e-4,max_steps=30] as bert-default[lr=0.0002,max_steps=30]; a script's
    query found nothing under the first spelling, where the CLI's --recipe and stabench.study found the runs."""
    stored = make_result(0, recipe="bert-default[lr=0.0002,max_steps=30]")
    store.put(stored)
    for written in ("bert-default[max_steps=30,lr=2e-4]", "bert-default[lr=2E-04,max_steps=30.0]"):
        assert [r.key for r in store.query(recipe=written)] == [stored.key]
    own = make_result(0, recipe="mine[x=1,y=2]")  # a name of the user's own, as stored
    store.put(own)
    assert [r.key for r in store.query(recipe="mine[x=1,y=2]")] == [own.key]
    assert store.query(recipe="mine[y=2,x=1]") == []


def test_query_filters_on_the_training_subsample(store: Store, tmp_path, capsys) -> None:
    """The 1k study stores full-data and subsample runs of one recipe: train_size tells them apart."""
    full = make_result(0)
    small = [dataclasses.replace(make_result(seed), key=f"small-{seed}", task={**full.task, "train_size": 1000})
             for seed in range(2)]
    for run in [full, *small]:
        store.put(run)
    assert {r.key for r in store.query(train_size=1000)} == {"small-0", "small-1"}
    assert store.query(train_size="1000") == store.query(train_size=1000)
    assert [r.key for r in store.query(train_size="full")] == [full.key]
    assert store.query(train_size=999) == []
    for bad in (0, -5, "1k", 2.5, True):
        with pytest.raises(StoreError, match=r"train_size=.* is invalid as a filter; expected a whole number of "
                                             r"examples >= 1 or 'full'"):
            store.query(train_size=bad)
    from stabench.cli import main

    assert main(["runs", "--train-size", "1000", "--store", str(store.path)]) == 0
    table = capsys.readouterr().out
    assert "2 stored run(s)" in table and "small-0" in table and full.key not in table
    assert main(["runs", "--train-size", "1k", "--store", str(store.path)]) == 2
    assert "train_size='1k' is invalid as a filter" in capsys.readouterr().err
    assert main(["runs", "--train-size", "64", "--store", str(store.path)]) == 2
    assert "no stored run matches train_size=64 (stored train_sizes: 1000, full)" in capsys.readouterr().err
    store.export(tmp_path / "small.csv", fmt="csv", train_size=1000)
    header, *rows = (tmp_path / "small.csv").read_text().splitlines()[:3]
    columns = header.split(",")
    assert rows and all(row.split(",")[columns.index("train_size")] == "1000" for row in rows)
    assert "data_fingerprint" in columns


def test_a_task_object_selects_its_data_as_it_is_now_and_its_name_every_version(store: Store, tmp_path) -> None:
    """As a Recipe object selects its content: a data file edited under one task name is other data."""
    from stabench.tasks import load_task_data, local_task

    path = tmp_path / "train.csv"

    def write(word: str) -> None:
        path.write_text("text,label\n" + "".join(f"{word} {i},{i % 2}\n" for i in range(8)))

    def stored(seed: int, train_size: int | None = None) -> RunResult:
        data = load_task_data(task, train_size)
        run = make_result(seed, task="fruit")
        run = dataclasses.replace(run, key=f"{data.fingerprint}-{seed}", task={**run.task, **data.describe()})
        store.put(run)
        return run

    write("apple")
    task = local_task("fruit", path, path, "text")
    before = [stored(0), stored(1, train_size=4)]
    write("banana and cherry")  # edited in place: the same name, other data
    after = [stored(0), stored(1, train_size=4)]
    assert {r.key for r in store.query(task=task)} == {r.key for r in after}  # a subsample of it too
    assert {r.key for r in store.query(task="fruit")} == {r.key for r in before + after}
    assert store.query(task=task, seed=2) == []


@given(st.integers(1, 10**7))
def test_train_size_filters_accept_numbers_as_ints_or_text(size: int) -> None:
    assert store_module.check_train_size_filter(size) == store_module.check_train_size_filter(str(size)) == size


def test_a_train_size_filter_of_the_whole_training_set_selects_the_full_data_runs(store: Store) -> None:
    """A study of train_size=2490 on a 2490-example task reads the full-data runs; the store's filter
    gave [] for the same size, so a script could not read back what its study had just shown."""
    full = make_result(0)
    store.put(full)
    for size in (2490, "2490", "full"):
        assert [r.key for r in store.query(train_size=size)] == [full.key]
    assert store.query(train_size=1000) == [] and store.query(train_size=2491) == []


def test_tagging_an_unknown_run_fails_and_tags_nothing(store: Store) -> None:
    run = make_result(0)
    store.put(run)
    with pytest.raises(StoreError, match="nope"):
        store.tag([run.key, "nope"], "baseline")
    assert store.query(tag="baseline") == []
    assert store.tag([run.key], "baseline") == 1
    assert store.tag([run.key], "baseline") == 0


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=12))
def test_a_tag_is_one_word_that_every_reader_takes_whole(tag: str) -> None:
    """tag:NAME baselines split on ':' and ',', CSV exports join tags with ';', shells split on spaces."""
    one_word = bool(tag) and not any(c.isspace() or c in ",;:" for c in tag)
    try:
        store_module.check_tag(tag)
    except ValueError as error:
        assert str(error).startswith(f"tag {tag!r} is invalid; expected letters, digits")
        assert not one_word or not all(c.isalnum() or c in "._-+=@/" for c in tag)
    else:
        assert one_word


def test_untag_takes_a_tag_off_only_the_runs_named_and_keeps_them(store: Store) -> None:
    runs = [make_result(seed, tags=["stored-with"]) for seed in range(3)]
    for run in runs:
        store.put(run)
    store.tag([r.key for r in runs], "base", claim="test_a")
    with pytest.raises(ValueError, match=r"^tag 'my base' is invalid"):
        store.tag([runs[0].key], "my base")
    assert store.untag([runs[0].key, runs[1].key], "base") == (2, ["test_a"])
    assert [r.seed for r in store.query(tag="base")] == [2]
    assert [r.seed for r in store.query(tag="base", claim="test_a")] == [2]  # the claim's record too
    assert store.untag([runs[0].key], "base") == (0, [])
    assert store.untag([runs[0].key], "stored-with") == (1, [])  # a tag the run was stored with comes off too
    assert store.get(runs[0].key).tags == [] and store.get(runs[2].key).tags == ["base", "stored-with"]
    assert len(store.query()) == 3
    old = make_result(7, tags=["my base"])  # written before tags were checked: it can still be taken off
    store.put(old)
    assert store.untag([old.key], "my base") == (1, []) and store.get(old.key).tags == []
    for bad in ("a'b", "a#b", "a b", "a,b", "a:b", "a;b", ""):
        with pytest.raises(ValueError, match="is invalid; expected letters, digits"):
            store_module.check_tag(bad)
    for good in ("a/b", "torch-2.13.0+cpu", "v=1", "me@ci", "x_y"):
        store_module.check_tag(good)


def test_environment_change_gives_a_new_key_and_both_runs_coexist(store: Store) -> None:
    old = make_result(5)
    new = make_result(5, environment={"transformers": "6.0.0"})
    assert old.key != new.key
    assert store.put(old) and store.put(new)
    assert store.count() == 2
    assert store.get(old.key).environment["transformers"] == "5.24.0"
    assert store.get(new.key).environment["transformers"] == "6.0.0"
    # tokenizers makes the token ids: a bump alone is a new run, selectable like the other fields.
    bumped = make_result(5, environment={"tokenizers": "0.23.1"})
    assert bumped.key not in (old.key, new.key) and store.put(bumped)
    assert [r.key for r in store.query(env={"tokenizers": "0.23.1"})] == [bumped.key]
    assert store.query(env={"tokenizers": "9"}) == [] and "0.23.1" in " ".join(store.unmatched_hints({}, {"tokenizers": "9"}))
    # Provenance-only fields (hostname, numpy) do not split a run.
    assert make_result(5, environment={"hostname": "other", "numpy": "1.0"}).key == old.key


def test_default_store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STABENCH_STORE", raising=False)
    assert default_store_path(tmp_path) == tmp_path / ".stabench" / "results.sqlite"
    monkeypatch.chdir(tmp_path)
    assert default_store_path() == tmp_path / ".stabench" / "results.sqlite"
    monkeypatch.setenv("STABENCH_STORE", str(tmp_path / "elsewhere.sqlite"))
    assert default_store_path(tmp_path / "ignored") == tmp_path / "elsewhere.sqlite"


def test_the_default_store_folder_keeps_the_live_database_out_of_git(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("needs git")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    Store(tmp_path / ".stabench" / "results.sqlite").close()
    Store(tmp_path / "mine" / "s.sqlite").close()  # a folder the user named is theirs
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert ".stabench" not in status and "mine/s.sqlite" in status
    (tmp_path / ".stabench" / ".gitignore").write_text("results.sqlite-*\n")  # the user's edit is kept
    Store(tmp_path / ".stabench" / "results.sqlite").close()
    assert (tmp_path / ".stabench" / ".gitignore").read_text() == "results.sqlite-*\n"


def test_a_store_under_a_file_names_the_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(StoreError, match=f"^cannot make the results store's folder {tmp_path}/notes.txt/sub: "
                                         f"{tmp_path}/notes.txt is a file, not a folder$"):
        Store(tmp_path / "notes.txt" / "sub" / "results.sqlite")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    opened = Store(tmp_path / "s.sqlite")
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        opened.count()


# -- schema ----------------------------------------------------------------------------


def test_a_store_that_cannot_be_written_fails_before_the_run_is_computed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.put(make_result(0))
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i (an immutable file) is not available here")
    computed = []
    try:
        with Store(path) as store:
            assert store.get(make_result(0).key) is not None  # reading still works
            with pytest.raises(StoreError, match="the results store cannot be written .*no run trained now"):
                store.get_or_compute(make_result(1).key, lambda: computed.append(1) or make_result(1))
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    assert computed == []
    with Store(path) as store:
        store.check_writable()  # writable again; the probe changed nothing
        assert store.count() == 1


def test_a_store_with_a_damaged_page_fails_before_a_run_is_computed_not_at_its_write(tmp_path: Path) -> None:
    """Garbage in a page that no read of the session reached made every run train, then fail to store."""
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        for seed in range(30):
            store.put(make_result(seed, trace={"loss": [0.1 * seed] * 400}))
        store.check_writable()  # intact
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size, pages = conn.execute("PRAGMA page_size").fetchone()[0], conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert pages > 8
    with open(path, "r+b") as handle:  # a page in the middle, the header and schema left intact
        handle.seek(page_size * (pages // 2))
        handle.write(bytes(range(256)) * (page_size // 256))
    computed = []
    with Store(path) as store:
        with pytest.raises(StoreError, match=r"s.sqlite: the results store is damaged \(.*\), so no run trained now "
                                             r"could be stored; `stabench export` copies out the runs it still reads"):
            store.get_or_compute(make_result(31).key, lambda: computed.append(1) or make_result(31))
    assert computed == []


def test_a_read_only_backup_in_sqlites_default_journal_mode_still_reads(tmp_path: Path) -> None:
    """VACUUM INTO writes a copy in rollback-journal mode; switching it to WAL is a write, refused."""
    with Store(tmp_path / "s.sqlite") as store:
        store.put(make_result(0))
    with contextlib.closing(sqlite3.connect(tmp_path / "s.sqlite")) as conn:
        conn.execute(f"VACUUM INTO '{tmp_path / 'backup.sqlite'}'")
    if subprocess.run(["chattr", "+i", str(tmp_path / "backup.sqlite")], capture_output=True).returncode != 0:
        pytest.skip("chattr +i (an immutable file) is not available here")
    try:
        with Store(tmp_path / "backup.sqlite", must_exist=True) as backup:
            assert [r.key for r in backup.query()] == [make_result(0).key]
            with pytest.raises(StoreError, match="the results store cannot be written"):
                backup.check_writable()
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path / "backup.sqlite")], capture_output=True)


def test_a_store_in_a_folder_that_cannot_be_written_names_the_folder(tmp_path: Path) -> None:
    """SQLite's WAL readers create -shm beside the store: the folder is the problem, not the file."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    with Store(folder / "s.sqlite") as store:
        store.put(make_result(0))
    for side in ("s.sqlite-wal", "s.sqlite-shm"):
        (folder / side).unlink(missing_ok=True)
    (folder / "notes.sqlite").write_text("my notes\n")
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i (an immutable folder) is not available here")
    try:
        with pytest.raises(StoreError, match=r"s.sqlite: cannot open the results store: its folder is not writable, "
                                             r"and SQLite needs to create s.sqlite-wal and s.sqlite-shm there"):
            Store(folder / "s.sqlite", must_exist=True)
        with pytest.raises(StoreError, match=r"notes.sqlite: not a stabench results store"):  # not the folder's fault
            Store(folder / "notes.sqlite", must_exist=True)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


def test_a_store_cut_short_is_called_damaged_not_another_kind_of_file(tmp_path: Path) -> None:
    """A store missing its last pages read as "not a stabench results store", which invites deleting it."""
    import sqlite3

    path = tmp_path / "s.sqlite"
    Store(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE padding (x)")
        db.executemany("INSERT INTO padding VALUES (?)", [("x" * 1000,)] * 200)
        db.commit()
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size - 4096)
    with pytest.raises(StoreError, match=r"s.sqlite: a damaged SQLite file \(database disk image is malformed\), a "
                                         r"stabench results store cut short or another database; it is left as it "
                                         r"is: restore a copy"):
        Store(path, must_exist=True)
    assert path.stat().st_size > 0


@pytest.mark.parametrize("code", [10 | (4 << 8), 13])  # SQLITE_IOERR_SHORT_READ, as a full tmpfs gives it; SQLITE_FULL
def test_a_store_on_a_full_or_failing_disk_is_not_called_no_store(tmp_path: Path, monkeypatch, code: int) -> None:
    """"not a stabench results store" invited deleting a good store that a full disk could not read."""
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.put(make_result(0))

    def disk_full(self, conn):
        error = sqlite3.OperationalError("disk I/O error")
        error.sqlite_errorcode = code
        raise error

    monkeypatch.setattr(Store, "_check_schema", disk_full)
    with pytest.raises(StoreError, match=r"s.sqlite: cannot read the results store: disk I/O error \(a full or failing "
                                         r"disk\?\); it is left as it is$"):
        Store(path)
    monkeypatch.undo()
    with Store(path) as store:
        assert store.count() == 1


def test_schema_version_is_recorded_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version() == 4
        assert conn.execute("PRAGMA application_id").fetchone()[0] == store_module.APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=r"schema version 99.*newer"):
        Store(path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = -5")
    conn.close()
    with pytest.raises(StoreError, match=r"not a stabench results store: schema version -5; expected 0 to 4"):
        Store(path)
    foreign = tmp_path / "app.sqlite"  # another program's database, versioned before it made any table
    with contextlib.closing(sqlite3.connect(foreign)) as conn:
        conn.execute("PRAGMA user_version = 3")
    with pytest.raises(StoreError, match=r"app.sqlite: not a stabench results store: expected an SQLite database "
                                         r"with application_id"):
        Store(foreign)
    with contextlib.closing(sqlite3.connect(foreign)) as conn:  # left as it was
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0


def test_older_schema_is_migrated_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.sqlite"
    current = list(store_module._MIGRATIONS)
    monkeypatch.setattr(store_module, "_MIGRATIONS", current[:1])
    old_local = dataclasses.replace(make_result(1), key="old-local", model={"name": "./models/mybert",
                                                                           "weights_sha256": "ab"})
    with Store(path) as v1, v1._transaction() as conn:  # a store written by the first schema
        for run in (make_result(0), old_local):
            conn.execute(f"INSERT INTO runs ({', '.join(store_module.COLUMNS)}, result_json) "
                         f"VALUES ({', '.join('?' * (len(store_module.COLUMNS) + 1))})", store_module.row_of(run))
    applied: list[int] = []

    def to_2(conn: sqlite3.Connection) -> None:
        applied.append(2)
        conn.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    def to_3(conn: sqlite3.Connection) -> None:
        assert applied == [2]
        applied.append(3)
        conn.execute("UPDATE runs SET note = 'migrated'")

    monkeypatch.setattr(store_module, "_MIGRATIONS", [*current, to_2, to_3])
    with Store(path) as latest:
        assert latest.count() == 2
        # A local folder's run stored under the path as typed is found by the folder's name.
        assert [r.key for r in latest.query(model="mybert")] == ["old-local"]
        assert latest.get("old-local").model["name"] == "mybert"
        key = make_result(0).key  # the real migrations ran too: claim tags and aliases work on the old run
        latest.tag([key], "base", claim="test_x")
        assert [r.key for r in latest.query(tag="base", claim="test_x")] == [key]
        latest.add_recipe_alias(latest.get(key), "paper-renamed")
        assert [r.key for r in latest.query(recipe="paper-renamed")] == [key]
    assert applied == [2, 3]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(current) + 2
        assert conn.execute("SELECT note FROM runs").fetchall() == [("migrated",)] * 2
    conn.close()
    Store(path).close()  # already current: nothing runs again
    assert applied == [2, 3]


def test_a_damaged_record_does_not_stop_an_older_store_from_upgrading(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Upgrading reads every record (migration 4); one damaged record made the store unopenable."""
    path = tmp_path / "s.sqlite"
    monkeypatch.setattr(store_module, "_MIGRATIONS", store_module._MIGRATIONS[:3])
    damaged, good = make_result(0), make_result(1)
    with Store(path) as older:
        older.put(damaged), older.put(good)
        with older._transaction() as conn:
            conn.execute("UPDATE runs SET result_json = ? WHERE key = ?", ('{"key": "trunc', damaged.key))
    monkeypatch.undo()
    with Store(path) as upgraded, pytest.warns(UserWarning, match=f"stored run {damaged.key} is unreadable"):
        assert upgraded.get(good.key) == good
        assert upgraded.reusable(damaged.key) is None  # a run lost, as in a current store


def test_opening_a_current_store_to_read_never_waits_for_a_writer(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`stabench runs` during a study: opening took the write lock and queued behind the writers."""
    path = tmp_path / "s.sqlite"
    with Store(path) as first:
        first.put(make_result(0))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a study's worker, mid-write
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    try:
        with Store(path, must_exist=True) as reader:
            assert reader.count() == 1
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.parametrize("filters, env, matching", [({"train_size": 500}, None, [1]),
                                                    ({"train_size": "full"}, None, []),
                                                    ({}, {"tokenizers": "0.22"}, [1]),
                                                    ({}, {"tokenizers": None}, [])])
def test_a_damaged_record_does_not_stop_filters_on_fields_read_from_the_records(store: Store, filters, env,
                                                                                matching) -> None:
    """Its fields are unknown, not NULL: no filter selects it (and reads it), and no hint lists them."""
    whole = make_result(1, environment={"tokenizers": "0.22"})
    store.put(make_result(0)), store.put(dataclasses.replace(whole, task={**whole.task, "train_size": 500}))
    with store._transaction() as conn:
        conn.execute("UPDATE runs SET result_json = ? WHERE key = ?", ('{"key": "trunc', make_result(0).key))
    assert [run.seed for run in store.query(**filters, env=env, task="rte")] == matching
    assert store.nothing_matches({"task": "nosuch", **filters}, env).startswith("no stored run matches task=nosuch")
    assert store.stored_values("train_size") == ["500"] and store.stored_values("tokenizers") == ["0.22"]


@pytest.mark.parametrize("kind", ["garbage", "foreign_sqlite", "truncated_sqlite"])
def test_a_file_that_is_not_our_store_is_refused_and_left_untouched(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "results.sqlite"
    if kind == "garbage":
        path.write_bytes(b"\x00\xffthis is not a database\n" * 200)
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
            conn.executemany("INSERT INTO customers (name) VALUES (?)", [("a" * 500,)] * 50)
        conn.close()
        if kind == "truncated_sqlite":
            path.write_bytes(path.read_bytes()[:1000])
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = file_state(path)
    with pytest.raises(StoreError) as error:
        Store(path)
    message = str(error.value)
    assert str(path) in message and "stabench results store" in message
    assert "\n" not in message
    assert file_state(path) == before


def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    path.touch()
    with Store(path) as opened:
        opened.put(make_result(0))
    with Store(path) as opened:
        assert opened.count() == 1



def test_a_store_created_by_another_process_during_the_check_is_not_called_foreign(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pytest-xdist workers opening a new store: the second one's check must read one
    snapshot, not the application id before the first one's commit and the tables after it."""
    path = tmp_path / "results.sqlite"
    with sqlite3.connect(path) as conn:  # a new store, switched to WAL, before its tables exist
        conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    real_connect = sqlite3.connect

    class CommitAfterTheFirstRead:
        """A connection through which another process creates the store after one read."""

        def __init__(self, conn: sqlite3.Connection):
            self.conn, self.reads = conn, 0

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            cursor = self.conn.execute(sql, *args)
            self.reads += sql.upper().startswith(("PRAGMA", "SELECT"))
            if self.reads == 1:
                monkeypatch.setattr(store_module.sqlite3, "connect", real_connect)
                Store(path).close()
            return cursor

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

    monkeypatch.setattr(store_module.sqlite3, "connect",
                        lambda *a, **k: CommitAfterTheFirstRead(real_connect(*a, **k)))
    with Store(path) as opened:
        opened.put(make_result(0))
        assert opened.count() == 1


# -- export / import -------------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True)
names = st.text(min_size=1, max_size=8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.lists(
        st.tuples(
            st.dictionaries(names, floats, max_size=4),
            st.dictionaries(names, st.lists(floats, max_size=6), max_size=3),
            st.lists(names, max_size=3),  # tags: an export from before tags were checked holds any text
            st.lists(names, max_size=3),
        ),
        min_size=1, max_size=3,
    ),
    store_tag=st.one_of(st.none(), st.from_regex(r"[\w.+=@/-]{1,8}", fullmatch=True)),
)
def test_export_then_import_reproduces_every_field(runs, store_tag) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        originals = [dataclasses.replace(make_result(seed, metrics=metrics, trace=trace, tags=tags),
                                         recipe_aliases=aliases)
                     for seed, (metrics, trace, tags, aliases) in enumerate(runs)]
        with Store(tmp_path / "source.sqlite") as source:
            for run in originals:
                source.put(run)
            if store_tag is not None:
                source.tag([originals[0].key], store_tag)
                if store_tag not in originals[0].tags:
                    originals[0].tags.append(store_tag)
            for fmt in ("json", "csv"):
                assert source.export(tmp_path / f"runs.{fmt}", fmt=fmt) == len(originals)
        for run in originals:  # a run's tags and aliases come back as sets, in order
            run.tags = sorted(set(run.tags))
            run.recipe_aliases = sorted(set(run.recipe_aliases) - {run.recipe_name})
        for fmt in ("json", "csv"):
            with Store(tmp_path / f"from-{fmt}.sqlite") as target, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert target.import_file(tmp_path / f"runs.{fmt}") == (len(originals), 0)
                assert not [str(w.message) for w in caught if "CSV row" in str(w.message)]  # nothing was edited
                for run in originals:
                    assert same(target.get(run.key), run), fmt
                if store_tag is not None:  # a run may also carry the same tag in its own record
                    tagged = {r.key for r in originals if store_tag in r.tags}
                    assert {r.key for r in target.query(tag=store_tag)} == tagged


def test_export_replaces_only_an_earlier_export_never_a_users_file(store: Store, tmp_path: Path) -> None:
    store.put(make_result(0))
    data = tmp_path / "train.csv"
    data.write_text("sentence1,sentence2,label\na,b,1\n")
    for fmt in ("csv", "json"):
        with pytest.raises(StoreError, match=rf"^cannot export to {re.escape(str(data))}: it exists and is not a "
                                             rf"stabench export, so it is left as it is"):
            store.export(data, fmt=fmt)
    assert data.read_text() == "sentence1,sentence2,label\na,b,1\n"
    for fmt in ("csv", "json"):
        earlier = tmp_path / f"runs.{fmt}"
        earlier.write_text("")
        assert store.export(earlier, fmt=fmt) == len(store.query())  # an empty file is replaced
        store.put(make_result(len(store.query())))
        assert store.export(earlier, fmt=fmt) == len(store.query())  # and so is an earlier export
    for name, text in (("wrong.json", '[\n{"a": 1}\n]\n'), ("lines.jsonl", '{"text": "x", "label": 1}\n')):
        (tmp_path / name).write_text(text)
        with pytest.raises(StoreError, match="is not a stabench export"):
            store.export(tmp_path / name, fmt="json")
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match=r"^cannot export to .*pipe.json: it is a special file; expected the path"):
        store.export(fifo)  # refused without reading, which would block
    with pytest.raises(StoreError, match=r"^cannot export to .*: it is a folder"):
        store.export(tmp_path)
    with pytest.raises(StoreError, match=r"^cannot export to .*runs.json: '.*runs.csv' is a file, not a folder$"):
        store.export(tmp_path / "runs.csv" / "runs.json")  # under a file
    assert not list(tmp_path.glob(".*.tmp"))
    assert store.export(tmp_path / "artifacts" / "ci" / "runs.json") == len(store.query())  # folders made
    with pytest.raises(StoreError, match="nothing was exported"):
        store.export(tmp_path / "none" / "runs.json", task="nosuch")
    assert not (tmp_path / "none").exists()  # an export that writes nothing makes no folder
    for side in ("-wal", "-shm", "-journal"):  # SQLite's, even when empty or missing: a crash then lost runs
        beside = store.path.with_name(store.path.name + side)
        with pytest.raises(StoreError, match=rf"^cannot export to {re.escape(str(beside))}: it is a file SQLite keeps "
                                             rf"beside the database .*results.sqlite \(a results store\?\), so writing "
                                             rf"it would damage that; name another file$"):
            store.export(beside)
    assert store.count() == len(store.query())


def test_a_pytest_report_given_as_runs_to_import_says_which_file_holds_them(store: Store, tmp_path: Path) -> None:
    report = tmp_path / "pr.json"
    report.write_text(json.dumps({"claims": [], "seeds": [], "gate": []}))
    with pytest.raises(StoreError, match=r"pr.json: not a stabench export: it is a --stabench-json report \(claims "
                                         r"and seeds\), not the runs themselves; `stabench export` writes them$"):
        store.import_file(report)


def test_a_store_given_as_a_file_to_import_says_to_export_it_first(store: Store, tmp_path: Path) -> None:
    with Store(tmp_path / "other.sqlite") as other:
        other.put(make_result(0))
    with pytest.raises(StoreError, match=r"other.sqlite: is an SQLite database \(a results store\?\), not an export "
                                         r"file; export its runs \(stabench export runs.json --store .*other.sqlite\) "
                                         r"and give that file$"):
        store.import_file(tmp_path / "other.sqlite")  # was: 'utf-8' codec can't decode byte
    assert store.query() == []


def test_export_keeps_a_file_that_merely_starts_blank_and_replaces_an_export_of_no_runs(store: Store,
                                                                                       tmp_path: Path) -> None:
    data = tmp_path / "mydata.csv"
    data.write_text("\nname,score\nalice,0.9\n")
    with pytest.raises(StoreError, match="is not a stabench export"):
        store.export(data)
    assert data.read_text() == "\nname,score\nalice,0.9\n"
    empty = tmp_path / "none.json"
    assert store.export(empty) == 0 and json.loads(empty.read_text()) == []
    store.put(make_result(0))
    assert store.export(empty) == 1  # an export of no runs is an export too
    empty.write_text("[\n\n]\n")  # as versions before 2026-12-05 wrote one
    assert store.export(empty) == 1 and len(json.loads(empty.read_text())) == 1


def test_an_export_the_file_system_refuses_is_one_line_naming_the_path(store: Store, tmp_path: Path) -> None:
    store.put(make_result(0))
    too_long = tmp_path / ("x" * 300 + ".json")
    with pytest.raises(StoreError, match=r"^cannot export to .*xxx\.json: File name too long$"):
        store.export(too_long)
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob(".*.tmp"))


def test_export_writes_the_format_its_file_name_says(store: Store, tmp_path: Path) -> None:
    store.put(make_result(0))
    store.export(tmp_path / "runs.csv")
    assert (tmp_path / "runs.csv").read_text().startswith("key,")
    store.export(tmp_path / "runs.JSON")
    assert (tmp_path / "runs.JSON").read_text().startswith("[")
    store.export(tmp_path / "backup")  # JSON unless the name says CSV, as before
    assert (tmp_path / "backup").read_text().startswith("[")
    assert store.export(tmp_path / "runs.txt", fmt="csv") == 1
    with pytest.raises(StoreError, match=r"suffix '\.tsv'; expected a \.json or \.csv file, or fmt="):
        store.export(tmp_path / "runs.tsv")  # not JSON under a name that says otherwise
    assert not (tmp_path / "runs.tsv").exists()


def test_csv_export_has_flat_columns(store: Store, tmp_path: Path) -> None:
    import csv

    store.put(dataclasses.replace(make_result(0, metrics={"f1": 0.25}, tags=["baseline"]),
                                  recipe_aliases=["paper-bc", "paper[bias_correction=True]"]))
    store.put(make_result(1))
    store.export(tmp_path / "runs.csv", fmt="csv")
    with open(tmp_path / "runs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["seed"] for row in rows] == ["0", "1"]
    assert rows[0]["task_name"] == "rte" and rows[0]["transformers"] == "5.24.0"
    assert rows[0]["metric.f1"] == "0.25" and rows[1]["metric.f1"] == ""
    assert rows[0]["metric.accuracy"] == rows[0]["score"] == "0.5"
    assert rows[0]["tags"] == "baseline" and rows[0]["failed"] == "1"
    assert rows[0]["recipe_aliases"] == "paper-bc;paper[bias_correction=True]" and rows[1]["recipe_aliases"] == ""
    assert rows[0]["tokenizers"] == (make_result(0).environment.get("tokenizers") or "")
    assert float(rows[0]["majority_accuracy"]) == make_result(0).majority_accuracy  # what "failed" compares with
    assert rows[0]["cpu_threads"] == str(make_result(0).environment.get("cpu_threads", ""))
    assert rows[0]["recipe.lr"] == "2e-05" and rows[0]["recipe.bias_correction"] == "True"  # for a DataFrame
    assert rows[0]["cpu_model"] == (make_result(0).environment.get("cpu_model") or "")
    assert rows[0]["train_size"] == "full"  # the whole training set, as filters name it
    assert RunResult.from_json(rows[1]["result_json"]).seed == 1
    mine = tmp_path / "mine.csv"  # a user's own table with a key column: not an export, so never replaced
    mine.write_text("key,accuracy\nrun-1,0.9\n")
    with pytest.raises(StoreError, match="it exists and is not a stabench export"):
        store.export(mine)
    assert mine.read_text() == "key,accuracy\nrun-1,0.9\n"


def test_a_csv_edited_in_a_spreadsheet_imports_its_records_and_says_which_cells_they_do_not_hold(
        store: Store, tmp_path: Path) -> None:
    """Only result_json is read: an edited score or verdict was once dropped without a word.  A file
    saved again unedited (other spellings, a NaN as an empty cell, a byte-order mark) and an old
    export (its columns show its records as written, before reading migrates them) say nothing."""
    import csv

    from stabench.exchange import write_export

    store.put(make_result(0, metrics={"mcc": math.nan}))
    store.put(make_result(1))
    store.export(tmp_path / "runs.csv", fmt="csv")
    with open(tmp_path / "runs.csv", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    for row in rows:  # saved again by a spreadsheet or pandas: other spellings of the same values
        row[header.index("recipe.lr")], row[header.index("recipe.bias_correction")] = "2.00E-05", "TRUE"
        row[header.index("metric.mcc")], row[header.index("seed")] = "", f"{row[header.index('seed')]}.0"

    def save(name: str) -> Path:  # as Excel's "CSV UTF-8" does, with a byte-order mark
        with open(tmp_path / name, "w", newline="", encoding="utf-8-sig") as fh:
            csv.writer(fh).writerows([header, *rows])
        return tmp_path / name

    save("resaved.csv")
    rows[1][header.index("metric.accuracy")], rows[1][header.index("failed")] = "0.9", "0"
    rows[0][header.index("model_name")] = rows[0][header.index("model_name")].upper()  # text is not a bool's TRUE
    assert store.export(save("edited.csv")) == 2  # an export with a byte-order mark is one to replace, too
    save("edited.csv")
    old = dataclasses.replace(make_result(2), model={"name": "./models/tiny", "weights_sha256": "ab"})
    write_export(tmp_path / "old.csv", [old], "csv")  # a folder's path as typed, as runs were stored before 2026-12-04
    for name, count in (("resaved", 2), ("old", 1)):
        with Store(tmp_path / f"{name}.sqlite") as target, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert target.import_file(tmp_path / f"{name}.csv") == (count, 0)
        assert not [str(w.message) for w in caught if "CSV row" in str(w.message)], name
    with Store(tmp_path / "edited.sqlite") as edited, pytest.warns(UserWarning) as caught:
        assert edited.import_file(tmp_path / "edited.csv") == (2, 0)
        assert same(edited.get(make_result(1).key), store.get(make_result(1).key))
    assert [str(w.message).partition("edited.csv: ")[2] for w in caught if "CSV row" in str(w.message)] == [
        "2 CSV row(s) show values their record (result_json) does not hold (row 2: model_name 'BERT-LARGE-UNCASED', "
        "the record 'bert-large-uncased'); only each run's record is read, so those edits count for nothing"]


@pytest.mark.parametrize("odd", ["\x00", "\udc80"])
def test_a_nul_or_a_lone_surrogate_in_a_flat_csv_cell_is_a_replacement_character(store: Store, tmp_path: Path,
                                                                                 odd: str) -> None:
    """Python 3.10's csv cannot write a NUL, and UTF-8 no lone surrogate (an imported run's metric
    name from a JSON escape: the export raised UnicodeEncodeError); the full record, which an
    import reads, keeps it."""
    import csv

    run = make_result(0, metrics={f"odd{odd}name": 0.5})
    store.put(run)
    store.export(tmp_path / "runs.csv", fmt="csv")
    with open(tmp_path / "runs.csv", newline="", encoding="utf-8") as fh:
        (row,) = csv.DictReader(fh)
    assert row["metric.odd\ufffdname"] == "0.5"
    assert RunResult.from_json(row["result_json"]).metrics == run.metrics


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_importing_twice_skips_everything_the_second_time(store: Store, tmp_path: Path, fmt: str) -> None:
    for seed in range(4):
        store.put(make_result(seed))
    store.export(tmp_path / "export", fmt=fmt)  # no suffix: the format is recognised by content
    with Store(tmp_path / "other.sqlite") as other:
        other.put(make_result(0))
        assert other.import_file(tmp_path / "export") == (3, 1)
        assert other.import_file(tmp_path / "export") == (0, 4)
        assert other.count() == 4
    assert store.import_file(tmp_path / "export") == (0, 4)


def _valid_record() -> dict[str, Any]:
    return json.loads(make_result(7).to_json())


BAD_FILES = {
    "not_json_or_csv": lambda: "hello\nworld\n",
    "truncated_json": lambda: json.dumps([_valid_record()])[:-20],
    "json_object": lambda: json.dumps(_valid_record()),
    "missing_field": lambda: json.dumps([_valid_record(), {k: v for k, v in _valid_record().items() if k != "seed"}]),
    "unknown_field": lambda: json.dumps([{**_valid_record(), "colour": "red"}]),
    "not_a_record": lambda: json.dumps([_valid_record(), 42]),
    "wrong_type": lambda: json.dumps([{**_valid_record(), "task": ["rte"]}]),
    "bool_seed": lambda: json.dumps([{**_valid_record(), "seed": True}]),
    # A bool is an int to Python, but true is no step count and no accuracy.
    "bool_steps": lambda: json.dumps([{**_valid_record(), "steps": True}]),
    "bool_majority_accuracy": lambda: json.dumps([{**_valid_record(), "majority_accuracy": True, "failed": True,
                                                   "collapsed": True}]),
    "null_alias": lambda: json.dumps([{**_valid_record(), "recipe_aliases": [None]}]),
    "csv_bad_json": lambda: "key,result_json\nabc,{not json\n",
    "csv_key_mismatch": lambda: 'key,result_json\nabc,"' + make_result(7).to_json().replace('"', '""') + '"\n',
    # A record whose seed or verdict contradicts its own numbers (hand-edited or damaged).
    "negative_seed": lambda: json.dumps([{**_valid_record(), "seed": -7}]),
    "huge_seed": lambda: json.dumps([{**_valid_record(), "seed": 2**32}]),
    "verdict_contradicts_accuracy": lambda: json.dumps([{**_valid_record(), "failed": True}]),  # 0.57 > 0.527
    "passed_below_majority": lambda: json.dumps([{**_valid_record(), "metrics": {"accuracy": 0.123}}]),
    "headline_metric_missing": lambda: json.dumps([{**_valid_record(), "primary_metric": "mcc"}]),
    # A NaN score made every summary of its study NaN.
    "headline_metric_nan": lambda: json.dumps([{**_valid_record(), "metrics": {"accuracy": {"__float__": "NaN"}}}]),
    "other_headline_inf": lambda: json.dumps([{**_valid_record(), "primary_metric": "mcc",
                                               "metrics": {"accuracy": 0.57, "mcc": {"__float__": "Infinity"}}}]),
    "score_as_text": lambda: json.dumps([{**_valid_record(), "metrics": {"accuracy": "0.57"}}]),
    "score_as_bool": lambda: json.dumps([{**_valid_record(), "metrics": {"accuracy": True}}]),  # JSON true is no 1.0
    # JSON escapes a lone surrogate, which no column of the store takes (the insert failed, naming no file)
    "lone_surrogate_name": lambda: json.dumps([{**_valid_record(), "recipe_name": "paper\udc80"}]),
    "lone_surrogate_tag": lambda: json.dumps([{**_valid_record(), "tags": ["ok", "\udc80"]}]),
    "trace_not_an_object": lambda: json.dumps([{**_valid_record(), "trace": "loss"}]),
    "trace_null": lambda: json.dumps([{**_valid_record(), "trace": None}]),
    "headline_not_a_name": lambda: json.dumps([{**_valid_record(), "primary_metric": 5}]),
}


@pytest.mark.parametrize("name", [*sorted(BAD_FILES), "binary", "missing"])
def test_importing_a_bad_file_changes_nothing(store: Store, tmp_path: Path, name: str) -> None:
    store.put(make_result(0))
    bad = tmp_path / f"{name}.json"
    if name == "binary":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    elif name != "missing":
        bad.write_text(BAD_FILES[name]())
    with pytest.raises(StoreError) as error:
        store.import_file(bad)
    assert str(bad) in str(error.value)
    assert store.count() == 1 and make_result(7).key not in store
    said = {"trace_null": "invalid run record: its trace is null, not an object",  # was: 'NoneType' object has no ...
            "headline_not_a_name": "invalid run record: its primary_metric 5 is not a metric's name",  # was: 5 is None
            # counted from 1, as a CSV's rows are; was "run #1: ... __init__() missing 1 required positional argument"
            "missing_field": "run 2 of 2: invalid run record: it lacks the run result field(s) seed"}
    assert said.get(name, "") in str(error.value)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=6))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_runs_read_without_traces_are_the_stored_runs_less_their_traces(store: Store, numbers: list[float]) -> None:
    """Listings read runs without their traces; every other number comes back exactly (SQLite
    rewrites the record to drop the trace)."""
    trace = {"loss": [0.69, 0.52], "train_loss_steps": [1, 2], "grad_norm": {"layer.0": [1e-9, numbers[0]]}}
    run = make_result(0, metrics={"accuracy": 0.6, **{f"m{i}": x for i, x in enumerate(numbers)}}, trace=trace)
    store.put(run, replace=True)
    old = make_result(1, metrics={"train_loss": 0.6}, trace={"loss": [0.7] * 12 + [0.1] * 10})  # stored before 2026-11-27
    store.put(old, replace=True)
    whole, light = store.query(), store.query(traces=False)
    assert [r.key for r in light] == [r.key for r in whole] == [run.key, old.key]
    assert same(light[0], dataclasses.replace(whole[0], trace={})) and light[0].trace == {}
    assert light[1] == whole[1] and light[1].metrics["train_loss"] == pytest.approx(0.1)  # recomputed, as in full


@given(st.lists(st.tuples(st.sampled_from(["rte", "mrpc"]), st.sampled_from(["bert", "roberta"]),
                          st.sampled_from(["paper", "mine"]), st.integers(0, 5)), min_size=1, max_size=12, unique=True),
       st.fixed_dictionaries({}, optional={"task": st.sampled_from(["rte", "mrpc", "cola"]),
                                           "model": st.sampled_from(["bert", "roberta"]),
                                           "recipe": st.sampled_from(["paper", "mine"]),
                                           "seed": st.integers(0, 6)}))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_query_finds_exactly_the_runs_its_filters_match_and_get_returns_each(tmp_path_factory, runs, filters):
    """Put, get and query against a list filtered by hand: every run comes back whole, and a
    filter of task, model, recipe and seed selects the runs equal on each."""
    with Store(tmp_path_factory.mktemp("q") / "s.sqlite") as store:
        stored = [make_result(seed, task=task, model=model, recipe=recipe) for task, model, recipe, seed in runs]
        for run in stored:
            store.put(run)
        assert all(same(store.get(run.key), run) for run in stored)
        fields = {"task": lambda r: r.task["name"], "model": lambda r: r.model["name"],
                  "recipe": lambda r: r.recipe_name, "seed": lambda r: r.seed}
        expected = {run.key for run in stored if all(fields[name](run) == value for name, value in filters.items())}
        assert {run.key for run in store.query(**filters)} == expected


def test_a_damaged_record_read_without_its_trace_is_named_too(store: Store) -> None:
    damaged = make_result(0, trace={"loss": [0.7], "train_loss_steps": [1, 1]})
    store.put(damaged)
    cut = damaged.to_json()[:-40]  # not JSON: it comes whole, and SQLite's json_remove never sees it
    field_lost = json.dumps({k: v for k, v in json.loads(damaged.to_json()).items() if k != "metrics"})
    score_true = json.dumps({**json.loads(damaged.to_json()), "metrics": {"accuracy": True}})  # not read as 1.0
    for record in (cut, field_lost, score_true):
        _overwrite_record(store, damaged.key, record)
        with pytest.raises(StoreError, match=f"stored run {damaged.key} is unreadable"):
            store.query(traces=False)
    # Damage inside the trace alone: a listing reads the scores, which are whole; a full read names it.
    _overwrite_record(store, damaged.key, damaged.to_json().replace('"loss": [0.7]', '"loss": [{"__float__": "x"}]'))
    assert store.query(traces=False)[0].metrics == damaged.metrics
    with pytest.raises(StoreError, match=f"stored run {damaged.key} is unreadable"):
        store.query()


def test_an_export_reads_runs_a_few_at_a_time_and_leaves_out_a_damaged_trace_but_never_over_an_earlier_one(
        store: Store, tmp_path: Path) -> None:
    """A store of gigabytes of traces exports in the memory of a few runs: runs are read whole a
    hundred at a time, so damage inside a trace shows only then."""
    runs = [make_result(seed, trace={"loss": [0.7, 0.7, 0.7], "train_loss_steps": [1, 3]}) for seed in range(230)]
    for run in runs:
        store.put(run)
    for fmt in ("json", "csv"):
        assert store.export(tmp_path / f"all.{fmt}", fmt=fmt) == 230
        exported = read_export(tmp_path / f"all.{fmt}")
        assert [r.key for r in exported] == [r.key for r in store.query(traces=False)]  # the store's order, whole
        assert all(r.trace["loss"] == [0.7, 0.7, 0.7] for r in exported)
    damaged = runs[150]
    _overwrite_record(store, damaged.key, damaged.to_json().replace('"loss": [0.7, 0.7, 0.7]',
                                                                    '"loss": [{"__float__": "x"}]'))
    with pytest.warns(store_module.DamagedRunsLeftOut, match=rf"left out 1 unreadable stored run\(s\), {damaged.key}:"):
        assert store.export(tmp_path / "new.csv") == 229
    assert damaged.key not in {r.key for r in read_export(tmp_path / "new.csv")}
    earlier = (tmp_path / "all.json").read_text()
    with pytest.raises(StoreError, match=rf"{damaged.key}: .*; so .*all.json, an earlier export that may hold them "
                                         rf"whole, is left as it is: export to a new file$"):
        store.export(tmp_path / "all.json")
    assert (tmp_path / "all.json").read_text() == earlier
    assert not list(tmp_path.glob(".*.tmp"))
    _overwrite_record(store, damaged.key, damaged.to_json()[:-40])  # damage the listing finds: refused before writing
    with pytest.raises(StoreError, match=rf"{damaged.key}: .*; so .*all.json, an earlier export that may hold them "
                                         rf"whole, is left as it is: export to a new file$"):
        store.export(tmp_path / "all.json")
    assert (tmp_path / "all.json").read_text() == earlier


def test_an_export_is_one_state_of_the_store_while_another_process_moves_a_tag(store: Store, tmp_path: Path,
                                                                              monkeypatch) -> None:
    """Listed, then read whole in parts: the parts are read in the listing's snapshot, so a tag a
    gate moves meanwhile gives an export of the baseline as it was, not half of each."""
    runs = [make_result(seed) for seed in range(5)]
    for run in runs:
        store.put(run)
    store.tag([run.key for run in runs[:3]], "baseline")
    whole = Store._whole

    def meanwhile(self, listed, damaged, stop):
        with Store(store.path) as other:
            other.untag([runs[0].key], "baseline")
            other.tag([runs[3].key], "baseline")
        yield from whole(self, listed, damaged, stop)

    monkeypatch.setattr(Store, "_whole", meanwhile)
    assert store.export(tmp_path / "baseline.json", tag="baseline") == 3
    exported = read_export(tmp_path / "baseline.json")
    assert [(r.key, "baseline" in r.tags) for r in exported] == [(r.key, True) for r in runs[:3]]
    assert {r.key for r in store.query(tag="baseline")} == {r.key for r in runs[1:4]}  # the snapshot ended
    warning = store_module.DamagedRunsLeftOut(store.path, ["k1", "k2"])
    assert str(pickle.loads(pickle.dumps(warning))) == str(warning)  # as xdist sends it


def test_an_export_s_memory_does_not_grow_with_the_store(tmp_path: Path) -> None:
    """A lab's store is gigabytes of traces (a whole store read at once ran out of memory at 4 GB):
    runs are read whole a hundred at a time, so four times the runs add only their listing."""
    import tracemalloc

    def peak(runs: int) -> int:
        with Store(tmp_path / f"{runs}.sqlite") as store:
            for seed in range(runs):
                store.put(make_result(seed, trace={"loss": [0.5 + i for i in range(2000)], "train_loss_steps": [1, 3]}))
            tracemalloc.start()
            try:
                assert store.export(tmp_path / f"{runs}.json") == runs
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    assert peak(600) < 2 * peak(150)  # read at once: 4 times


def _overwrite_record(store: Store, key: str, record: str) -> None:
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET result_json = ? WHERE key = ?", (record, key))
    conn.close()


@pytest.mark.parametrize("record", ['[{"__float__": "NaN"}]', '"abc"', "[1, 2]", '{"__float__": "NaN"}', "7",
                                   "trace is text", "trace is null", "no headline score", "headline is a number"])
def test_a_record_of_another_shape_is_damaged_not_newer(store: Store, record: str) -> None:
    """Every stabench writes an object whose trace and recipe are objects and whose headline metric
    is a number: anything else is damage (a newer record would never be replaced), named with its
    run, never a traceback (`stabench runs` raised a KeyError on a record without its score)."""
    run = make_result(0)
    store.put(run)
    if record.startswith("trace is "):
        record = json.dumps({**json.loads(run.to_json()), "trace": "loss" if record.endswith("text") else None})
    if record == "headline is a number":
        record = json.dumps({**json.loads(run.to_json()), "primary_metric": 5})
    if record == "no headline score":
        record = json.dumps({**json.loads(run.to_json()), "metrics": {}})
    _overwrite_record(store, run.key, record)
    for read in (store.query, lambda: store.get(run.key)):
        with pytest.raises(StoreError, match=f"stored run {run.key} is unreadable"):
            read()
    assert store.put(make_result(0)) is True  # a damaged record is replaced, its bytes kept aside
    assert store.get(run.key) == make_result(0)


def test_a_damaged_record_that_is_not_utf8_is_an_error_naming_its_run(store: Store) -> None:
    """sqlite3 stopped the whole query while decoding it, with a traceback naming no run."""
    damaged, whole = make_result(0), make_result(1, recipe="other")
    store.put(damaged)
    store.put(whole)
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET result_json = CAST(? AS TEXT) WHERE key = ?",
                     (b'{"key": "\xff\x07', damaged.key))
    conn.close()
    for read in (lambda: store.query(), lambda: store.get(damaged.key)):
        with pytest.raises(StoreError, match=f"stored run {damaged.key} is unreadable: 'utf-8' codec can't decode"):
            read()
    assert store.get(whole.key) == whole
    assert store.query(recipe="other") == [whole]  # a filter that reads other records only
    with pytest.raises(StoreError, match="rerunning its study trains it again"):
        store.get(damaged.key)  # the way out, in the same line
    assert store.query(train_size=1000) == []  # a filter SQLite reads from the records passes it by


def test_rerunning_a_study_trains_a_damaged_run_again_and_keeps_its_tags(store: Store) -> None:
    """An unreadable record is a run lost, not one to serve: rerunning finishes what is missing,
    and the run's tags stay on its key."""
    damaged = make_result(0, tags=["baseline"])
    store.put(damaged)
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET result_json = ? WHERE key = ?", ('{"key": "truncat', damaged.key))
    conn.close()
    trained_again = make_result(0)
    with pytest.warns(UserWarning, match=f"stored run {damaged.key} is unreadable .*; training it again") as seen:
        assert store.get_or_compute(damaged.key, lambda: trained_again) == (trained_again, True)
    assert len(seen) == 1  # said once, though the store is read again under the claim
    assert store.get(damaged.key) == dataclasses.replace(trained_again, tags=["baseline"])
    assert store.query(tag="baseline") == [store.get(damaged.key)]
    assert (store.path.parent / "damaged" / f"{damaged.key}.json").read_text() == '{"key": "truncat'  # kept aside
    for damage in ('{"key": "again', '{"key": "again', "[]"):  # damaged again, even under a recompute
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE runs SET result_json = ? WHERE key = ?", (damage, damaged.key))
        conn.close()
        store.put(trained_again, replace=damage == "[]")
    assert sorted(p.name for p in (store.path.parent / "damaged").iterdir()) == [
        f"{damaged.key}.2.json", f"{damaged.key}.3.json", f"{damaged.key}.json"]  # each copy once, none replaced
    assert (store.path.parent / "damaged" / f"{damaged.key}.3.json").read_text() == "[]"


def test_an_import_never_replaces_a_stored_run_by_a_copy_whose_seed_it_cannot_check(store: Store,
                                                                                   tmp_path: Path) -> None:
    """A run trained here replaces a stored record edited into another seed (its own key shows
    which is right); an import's copy without key fields cannot show that, so the stored one stays."""
    store.put(make_result(0))
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps([{**make_result(0).to_dict(), "seed": 5}]))
    assert store.import_file(edited) == (0, 1)
    assert store.get(make_result(0).key).seed == 0
    assert not (store.path.parent / "damaged").exists()


def test_a_record_of_a_newer_stabench_is_never_taken_for_damaged(store: Store, tmp_path: Path) -> None:
    """Runs gain fields over versions: an older stabench on a newer one's store says to upgrade,
    and neither retrains nor replaces the run."""
    newer = make_result(0)
    store.put(newer)
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET result_json = json_set(result_json, '$.energy_kwh', 3.2) WHERE key = ?",
                     (newer.key,))
    conn.close()
    for read in (lambda: store.get(newer.key), lambda: store.get_or_compute(newer.key, lambda: make_result(0))):
        with pytest.raises(StoreError, match=rf"stored run {newer.key} was written by a newer stabench \(unknown "
                                             r"run result fields \['energy_kwh'\].*\); upgrade stabench to read it$"):
            read()
    assert store.put(make_result(0)) is False  # an import of the older copy keeps it
    with pytest.raises(StoreError, match=rf"stored run {newer.key} was written by a newer stabench, so this one does "
                                         r"not replace it; upgrade stabench; the run is kept in .*; the store holds "
                                         r"another copy of it, which an import would keep$"):
        store.put(make_result(0), replace=True)  # a recompute
    assert not (store.path.parent / "damaged").exists()
    record = {**newer.to_dict(), "energy_kwh": 3.2}
    (tmp_path / "newer.json").write_text(json.dumps([record]))
    with pytest.raises(StoreError, match=r": nothing imported: run 1 of 1: unknown run result fields \['energy_kwh'\]"
                                         r".*: it was written by a newer stabench; upgrade stabench to read it$"):
        store.import_file(tmp_path / "newer.json")


def test_importing_a_copy_of_a_damaged_run_restores_it(store: Store, tmp_path: Path) -> None:
    """Another machine's export holds the run this store lost; its duplicates are still skipped."""
    damaged, whole = make_result(0), make_result(1)
    store.put(damaged)
    store.put(whole)
    store.export(tmp_path / "copy.json")
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET result_json = ? WHERE key = ?", ("[]", damaged.key))
    conn.close()
    assert store.import_file(tmp_path / "copy.json") == (1, 1)
    assert store.query() == [damaged, whole]


def test_export_rejects_unknown_format(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="xml"):
        store.export(tmp_path / "runs.xml", fmt="xml")



def test_two_exports_to_one_path_overlapping_each_leave_a_whole_file(store: Store, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for seed in range(3):
        store.put(make_result(seed, recipe="paper" if seed else "other"))
    path = tmp_path / "runs.json"
    replace = os.replace

    def the_other_export_finishes_first(src, dst):
        monkeypatch.setattr(store_module.os, "replace", replace)
        store.export(path, recipe="other")
        replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", the_other_export_finishes_first)
    assert store.export(path, recipe="paper") == 2
    assert sorted(run["seed"] for run in json.loads(path.read_text())) == [1, 2]  # the last one to finish
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".runs")] == []


# -- claiming runs ---------------------------------------------------------------------


def test_get_or_compute_computes_once_and_recompute_replaces(store: Store) -> None:
    run = make_result(2)
    calls: list[int] = []

    def compute() -> RunResult:
        calls.append(1)
        return run

    assert store.get_or_compute(run.key, compute) == (run, True)
    got, computed = store.get_or_compute(run.key, compute)
    assert not computed and same(got, run) and len(calls) == 1
    better = dataclasses.replace(run, metrics={"accuracy": 0.9})
    assert store.get_or_compute(run.key, lambda: better, recompute=True) == (better, True)
    assert store.get(run.key).metrics == {"accuracy": 0.9}


def test_a_run_reused_under_another_recipe_name_is_found_by_both_names(store: Store, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    run = make_result(3, recipe="paper")
    store.put(run)

    def never() -> RunResult:
        raise AssertionError("a stored run was trained again")

    got, computed = store.get_or_compute(run.key, never, recipe_name="paper[lr=2e-05]")
    assert not computed and got.recipe_names == ["paper", "paper[lr=2e-05]"]
    assert store.get_or_compute(run.key, never, recipe_name="paper")[0].recipe_aliases == ["paper[lr=2e-05]"]
    for name in ("paper", "paper[lr=2e-05]"):
        assert [r.key for r in store.query(recipe=name)] == [run.key], name
    assert store.query(recipe="paper[lr=1e-05]") == []
    assert store.stored_values("recipe") == ["paper", "paper[lr=2e-05]"]
    from stabench.cli import main

    assert main(["runs", "--recipe", "paper[lr=2e-05]", "--store", str(store.path)]) == 0
    assert "paper (also paper[lr=2e-05])" in capsys.readouterr().out

    # An import of a run already stored still brings the names and tags it had elsewhere (a
    # baseline exported from one CI job into a store that trained the same runs).
    store.tag([run.key], "baseline")
    store.export(tmp_path / "elsewhere.json")
    with Store(tmp_path / "other.sqlite") as other:
        other.put(dataclasses.replace(run, recipe_aliases=[]))
        other.tag([run.key], "mine")
        assert other.import_file(tmp_path / "elsewhere.json") == (0, 1)
        assert other.get(run.key).recipe_aliases == ["paper[lr=2e-05]"]
        assert sorted(other.get(run.key).tags) == ["baseline", "mine"]
        assert [r.key for r in other.query(tag="baseline")] == [run.key]

    # A store too busy to take the name does not fail the run: it is returned as stored.
    def busy(*args, **kwargs):
        raise StoreError("database is locked")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Store, "_add_aliases", busy)
        assert store.get_or_compute(run.key, never, recipe_name="paper-x")[0] == store.get(run.key)

    # Trained again under a third name: that name is the stored one, the others stay aliases.
    store.get_or_compute(run.key, lambda: dataclasses.replace(run, recipe_name="mine"), recompute=True)
    assert store.get(run.key).recipe_names == ["mine", "paper", "paper[lr=2e-05]"]
    assert [r.key for r in store.query(recipe="paper")] == [run.key]
    # Trained again under one of its aliases: that name is stored, and no longer an alias too.
    store.get_or_compute(run.key, lambda: dataclasses.replace(run, recipe_name="paper"), recompute=True)
    assert store.get(run.key).recipe_name == "paper" and store.get(run.key).recipe_aliases == ["mine", "paper[lr=2e-05]"]
    # A copy stored elsewhere under another name, put here: the stored name stays, the other joins it.
    assert store.put(dataclasses.replace(run, recipe_name="team", recipe_aliases=[])) is False
    assert store.get(run.key).recipe_names == ["paper", "mine", "paper[lr=2e-05]", "team"]
    assert [r.key for r in store.query(recipe="team")] == [run.key]


def test_a_recipe_name_selects_every_run_of_its_content_on_the_same_task_model_and_data_size(store: Store) -> None:
    """A claim that reused seeds 0-1 of a CLI study names only those runs; its name still selects
    the whole study, as summary labels it (``cli | claim``), not a subset under the same label."""
    study = [make_result(seed, recipe="cli") for seed in range(3)]
    elsewhere = [make_result(0, task="mrpc", recipe="cli"),
                 dataclasses.replace(make_result(0, recipe="cli"), key="small-0",
                                     task={**study[0].task, "train_size": 1000})]
    for run in study + elsewhere:
        store.put(run)
    for run in study[:2]:
        store.get_or_compute(run.key, lambda: pytest.fail("trained again"), recipe_name="claim")
    assert [r.key for r in store.query(recipe="claim")] == [r.key for r in study]
    assert store.query(recipe="claim", seed=2) == [store.get(study[2].key)]
    assert {r.key for r in store.query(recipe="cli")} == {r.key for r in study + elsewhere}
    assert store.query(recipe="claim", task="mrpc") == [] and store.query(recipe="claim", train_size=1000) == []


def test_get_or_compute_refuses_a_result_with_another_key(store: Store) -> None:
    with pytest.raises(StoreError, match="returned a run with key .*; the run is kept in .*`stabench import"):
        store.get_or_compute("wanted", lambda: make_result(0))
    assert store.count() == 0
    assert store.import_file(beside_store(store.path, "unstored") / f"{make_result(0).key}.json") == (1, 0)


def test_a_run_an_import_stored_while_it_trained_is_returned_as_stored(store: Store) -> None:
    """An import takes no claim on a run; what get_or_compute returns is what the store then holds."""
    imported = make_result(0)
    trained = dataclasses.replace(imported, metrics={"accuracy": 0.9}, failed=False, collapsed=False)

    def train_while_another_box_s_copy_is_imported() -> RunResult:
        with Store(store.path) as other:
            other.merge([imported])
        return trained

    result, computed = store.get_or_compute(imported.key, train_while_another_box_s_copy_is_imported)
    assert computed and result == store.get(imported.key) and result.metrics == imported.metrics

    newer = make_result(1)  # a copy only a newer stabench reads: the run trained here is returned

    def train_while_a_newer_copy_is_stored() -> RunResult:
        store.put(newer)
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE runs SET result_json = json_set(result_json, '$.energy_kwh', 1) WHERE key = ?",
                         (newer.key,))
        conn.close()
        return dataclasses.replace(newer, metrics={"accuracy": 0.9})

    assert store.get_or_compute(newer.key, train_while_a_newer_copy_is_stored)[0].metrics == {"accuracy": 0.9}


def test_a_run_kept_after_a_damaged_record_could_not_be_set_aside_says_how_to_import_it(store: Store) -> None:
    """An import replaces a damaged record (no other copy is kept), so the hint is the import command."""
    run = make_result(0)
    store.put(run)
    with store._transaction() as conn:
        conn.execute("UPDATE runs SET result_json = ? WHERE key = ?", ('{"key": "trunc', run.key))
    (store.path.parent / "damaged").write_text("a file where the folder would go")
    with pytest.raises(StoreError, match=r"nothing was replaced; the run is kept in .*; `stabench import --store"):
        store.put(run)


def test_a_run_is_found_by_any_unique_start_of_its_key(store: Store) -> None:
    for key in ("abcd1234", "abcd5678", "ab"):
        store.put(dataclasses.replace(make_result(0), key=key))
    assert store.find_key("abcd1") == "abcd1234" and store.find_key("abcd5678") == "abcd5678"
    assert store.find_key("ab") == "ab"  # a whole key, however short
    with pytest.raises(StoreError, match=r"key 'abcd' starts several stored keys \(abcd1234, abcd5678\); "
                                         r"give more characters"):
        store.find_key("abcd")
    with pytest.raises(StoreError, match="key 'abc' is too short; give at least 4 characters"):
        store.find_key("abc")
    store.put(dataclasses.replace(make_result(0), key="xyz12345"))
    with pytest.raises(StoreError, match="key 'xyz' is too short"):  # even where it starts one key alone
        store.find_key("xyz")
    assert store.find_key("xyz1") == "xyz12345"
    with pytest.raises(StoreError, match="no stored run with key 'abce'"):
        store.find_key("abce")
    for key in ("abcd0000", "abcd9999", "abcdffff"):  # five in all: each named, no "..."
        store.put(dataclasses.replace(make_result(0), key=key))
    with pytest.raises(StoreError, match=r"\(abcd0000, abcd1234, abcd5678, abcd9999, abcdffff\); give more"):
        store.find_key("abcd")
    store.put(dataclasses.replace(make_result(0), key="abcdfff0"))  # a sixth: five named, and "..."
    with pytest.raises(StoreError, match=r"\(abcd0000, abcd1234, abcd5678, abcd9999, abcdfff0, \.\.\.\); give more"):
        store.find_key("abcd")


def test_lock_refuses_keys_that_are_not_file_names(store: Store) -> None:
    with pytest.raises(StoreError, match="cannot lock"):
        with store.lock("../escape"):
            pass


# -- several processes -----------------------------------------------------------------


def test_four_processes_write_concurrently_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "results.sqlite"  # created by the racing workers themselves
    shared = [make_result(1000 + i, task="shared") for i in range(10)]
    files = [write_runs(tmp_path / f"runs{w}.json",
                        [make_result(w * 50 + i) for i in range(50)] + shared[w::2] + shared[:3])
             for w in range(4)]
    procs = racing("put", path, *[[f] for f in files], tmp_path=tmp_path)
    added = [int(finish(p)) for p in procs]
    assert sum(added) == 210
    assert integrity(path) == "ok"
    with Store(path) as opened:
        assert opened.count() == 210
        assert len(opened.query(task="shared")) == 10


def test_racing_get_or_compute_trains_each_run_once(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    runs = [make_result(seed) for seed in range(5)]
    # Each worker starts at a different run and then runs into the others' claims.
    files = [write_runs(tmp_path / f"runs{w}.json", runs[w:] + runs[:w]) for w in range(4)]
    log = tmp_path / "trained.log"
    procs = racing("compute", path, *[[f, log, 0.15] for f in files], tmp_path=tmp_path)
    for proc in procs:
        finish(proc)
    trained = [line.split()[1] for line in log_lines(log)]
    assert sorted(trained) == sorted(make_result(seed).key for seed in range(5))
    assert len({line.split()[0] for line in log_lines(log)}) > 1  # the work really was shared
    with Store(path) as opened:
        assert opened.count() == 5
    assert not (tmp_path / "results.sqlite-locks").exists()  # each holder deleted its lock file, the last the folder


def test_a_claim_s_folder_is_the_store_s_own_and_goes_when_it_empties(tmp_path: Path, monkeypatch) -> None:
    """Two stores in one folder lock apart; a holder that finds the folder just removed by the last
    holder going makes it again (a script's store used to leave an empty ``locks/`` beside it)."""
    with Store(tmp_path / "a.sqlite") as one, Store(tmp_path / "b.sqlite") as other:
        with one.lock("run-1"), other.lock("run-1", blocking=False) as held:
            assert held and (tmp_path / "a.sqlite-locks" / "run-1.lock").exists()
            assert (tmp_path / "b.sqlite-locks" / "run-1.lock").exists()
        assert sorted(p.name for p in tmp_path.iterdir() if "-locks" in p.name) == []
        real_open, removed = os.open, []

        def open_after_the_last_holder_left(path, *args):
            if not removed:
                removed.append(Path(path).parent)
                Path(path).parent.rmdir()
            return real_open(path, *args)

        monkeypatch.setattr(os, "open", open_after_the_last_holder_left)
        with one.lock("run-2") as held:
            assert held and (tmp_path / "a.sqlite-locks" / "run-2.lock").exists()
        assert removed == [tmp_path / "a.sqlite-locks"] and not removed[0].exists()


def test_a_file_made_in_a_folder_that_vanishes_is_tried_again_but_not_forever(tmp_path: Path, monkeypatch) -> None:
    """The last holder removes an emptied -locks or -attempts folder while another process is about
    to create its file there; a working folder deleted under a script must not spin forever."""
    from stabench.store import in_made_folder

    folder, tries = tmp_path / "s.sqlite-attempts", []

    def create_after_two_removals() -> str:
        tries.append(1)
        if len(tries) <= 2:
            folder.rmdir()
            raise FileNotFoundError(folder)
        return "made"

    assert in_made_folder(folder, create_after_two_removals) == "made" and len(tries) == 3
    with pytest.raises(FileNotFoundError):
        in_made_folder(folder, lambda: tries.append(1) or (_ for _ in ()).throw(FileNotFoundError(folder)))
    assert len(tries) == 3 + 100
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    with Store("s.sqlite") as store:
        shutil.rmtree(gone)
        with pytest.raises(StoreError, match=r"^s\.sqlite: cannot write the claim on run run-1 beside the store"):
            with store.lock("run-1"):
                pass


def test_processes_taking_turns_on_a_deleted_lock_file_are_never_inside_together(tmp_path: Path) -> None:
    """Each holder deletes the lock file; a waiter blocked on the deleted file must not get in
    beside one that locked the new file."""
    path = tmp_path / "results.sqlite"
    Store(path).close()
    log = tmp_path / "turns.log"
    for proc in racing("turns", path, *[["run-1", log, 150]] * 4, tmp_path=tmp_path):
        finish(proc)
    lines = log_lines(log)
    assert len(lines) == 4 * 150 * 2
    pairs = list(zip(lines[::2], lines[1::2]))
    assert all(a.startswith("in ") and b == "out " + a.split()[1] for a, b in pairs)
    assert len({a for a, _ in pairs}) == 4
    assert not (tmp_path / "results.sqlite-locks").exists()


def test_sigkill_during_training_loses_nothing_and_rerun_trains_only_missing(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    all_keys = {make_result(seed).key for seed in range(10)}
    runs = write_runs(tmp_path / "runs.json", [make_result(seed) for seed in range(10)])
    first_log, second_log = tmp_path / "trained1.log", tmp_path / "trained2.log"

    victim = worker("compute", path, runs, "now", first_log, 0.3)
    wait_for(lambda: len(log_lines(first_log)) >= 3)
    kill(victim)
    assert integrity(path) == "ok"
    with Store(path) as opened:
        stored_before = set(opened.keys())
        assert all(opened.get(key) is not None for key in stored_before)
    first = [line.split()[1] for line in log_lines(first_log)]
    assert 2 <= len(stored_before) < 10
    assert stored_before <= set(first)

    finish(worker("compute", path, runs, "now", second_log, 0.01))
    second = [line.split()[1] for line in log_lines(second_log)]
    with Store(path) as opened:
        assert set(opened.keys()) == all_keys
    assert sorted(second) == sorted(all_keys - stored_before)  # each missing run once, no stored run again
    retrained = set(first) & set(second)
    assert retrained == set(first) - stored_before and len(retrained) <= 1  # only the run in flight
    assert len(first) + len(second) == 10 + len(retrained)


def test_sigkill_inside_a_write_leaves_whole_rows(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    template = make_result(0, trace={"loss": [0.1 * i for i in range(5000)]})
    runs = write_runs(tmp_path / "runs.json", [template])
    ready = tmp_path / "ready"
    victim = worker("hammer", path, runs, ready)
    wait_for(ready.exists)
    time.sleep(0.5)
    kill(victim)
    assert integrity(path) == "ok"
    with Store(path) as opened:
        keys = opened.keys()
        assert keys == [f"hammer-{i:06d}" for i in range(len(keys))]  # in order, none half-written
        assert len(keys) > 0
        for run in opened.query():
            assert run.trace == template.trace and run.key == f"hammer-{run.seed:06d}"
        assert opened.put(make_result(1))  # still writable after the crash
        assert opened.count() == len(keys) + 1


def test_a_sigkilled_lock_holder_releases_its_claim(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    Store(path).close()
    ready = tmp_path / "ready"
    holder = worker("hold", path, "run-1", ready)
    wait_for(ready.exists)
    fd = os.open(tmp_path / "results.sqlite-locks" / "run-1.lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)

    acquired = threading.Event()

    def take() -> None:
        with Store(path) as opened, opened.lock("run-1"):
            acquired.set()

    waiter = threading.Thread(target=take, daemon=True)
    waiter.start()
    assert not acquired.wait(0.3)  # blocked while the holder lives
    kill(holder)
    assert acquired.wait(1.0)
    waiter.join(5)


def test_a_tag_remembers_which_claim_each_run_was_tagged_for(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        runs = [make_result(seed) for seed in range(3)]
        for run in runs:
            store.put(run)
        assert store.tag([runs[0].key, runs[1].key], "base", claim="test_a") == 2
        assert store.tag([runs[1].key, runs[2].key], "base", claim="test_b") == 1  # run 1: tagged already
        store.tag([runs[2].key], "other", claim="test_a")
        assert [r.seed for r in store.query(tag="base", claim="test_a")] == [0, 1]
        assert [r.seed for r in store.query(tag="base", claim="test_b")] == [1, 2]
        assert [r.seed for r in store.query(tag="other", claim="test_a")] == [2]
        assert store.query(tag="base", claim="test_c") == []
        assert len(store.query(tag="base")) == 3
        store.tag([runs[2].key], "base", claim="test_a")  # tagged again: the claim's baseline moves
        assert [r.seed for r in store.query(tag="base", claim="test_a")] == [2]
        # Run 0 was test_a's alone and loses the tag; run 1 keeps it for test_b.
        assert [r.seed for r in store.query(tag="base")] == [1, 2]
        assert [r.seed for r in store.query(tag="other")] == [2]  # other tags untouched
        with pytest.raises(StoreError, match="needs a tag"):
            store.query(claim="test_a")


def test_a_run_that_cannot_be_written_is_kept_in_an_importable_file(store: Store, monkeypatch, tmp_path: Path) -> None:
    """Hours of GPU work must survive a store that stays locked past the busy timeout."""
    kept, run = make_result(1), make_result(2)
    store.put(kept)

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(Store, "_insert", locked)
    with pytest.raises(StoreError) as error:
        store.put(run)
    saved = beside_store(store.path, "unstored") / f"{run.key}.json"
    assert f"database is locked; the run is kept in {saved}; `stabench import " in str(error.value)
    monkeypatch.undo()
    assert store.keys() == [kept.key]  # nothing stored was lost
    command = re.search(r"`(stabench import [^`]+)` stores it$", str(error.value)).group(1)
    elsewhere = tmp_path / "another-project"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the hint stores it in this store, from any folder
    from stabench.cli import main

    assert main(shlex.split(command)[1:]) == 0
    assert store.get(run.key) == run and not (elsewhere / ".stabench").exists()


def test_a_run_interrupted_while_being_written_is_kept_in_an_importable_file(store: Store, monkeypatch) -> None:
    """SIGTERM stops a pytest session with KeyboardInterrupt, which may land inside the write."""
    run = make_result(3)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "_insert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.put(run)
    monkeypatch.undo()
    assert store.count() == 0
    assert store.import_file(beside_store(store.path, "unstored") / f"{run.key}.json") == (1, 0)


def test_a_rerun_stores_a_kept_run_instead_of_training_it_again(store: Store, monkeypatch) -> None:
    """The session said every finished run is stored and the rerun trains only what is missing;
    a run interrupted mid-write was kept in unstored/ and trained again.  (A store locked past
    the busy timeout leaves the file, and the run trains.)"""
    run, other = make_result(3), make_result(4)
    monkeypatch.setattr(Store, "_insert", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        store.put(run)
    monkeypatch.undo()
    folder = beside_store(store.path, "unstored")
    cut = write_runs(folder / f"{other.key}.json", [other])
    cut.write_text(cut.read_text()[:-40])  # cut short: left alone, and the run trains
    write_runs(folder / f"{other.key}.2.json", [run])  # another run's copy: left alone too
    with Store(store.path.with_name("beside.sqlite")) as beside:  # a store in the same folder has its own
        assert beside.get_or_compute(run.key, lambda: run) == (run, True)
    assert store.reusable(run.key) is None  # only under the run's claim: one process stores it
    assert store.get_or_compute(run.key, lambda: pytest.fail("trained again"), seed=run.seed) == (run, False)
    assert store.get(run.key) == run and not (folder / f"{run.key}.json").exists()
    assert store.get_or_compute(other.key, lambda: other) == (other, True)
    assert sorted(path.name for path in folder.iterdir()) == [f"{other.key}.2.json", f"{other.key}.json"]
    # A kept file under a run's key that holds another seed (a record without keyed fields is not
    # checked against its key): left alone, and the seed asked for trains.
    third = make_result(5)
    write_runs(folder / f"{third.key}.json", [dataclasses.replace(third, seed=6)])
    with pytest.warns(UserWarning, match="do not record which fields made their keys"):
        assert store.get_or_compute(third.key, lambda: third, seed=third.seed) == (third, True)
    assert (folder / f"{third.key}.json").exists() and store.get(third.key).seed == 5


def test_a_recomputed_run_interrupted_while_replacing_the_stored_one_is_kept_too(store: Store, monkeypatch) -> None:
    """The old copy is still stored after the rollback; the retrained one was dropped."""
    old = make_result(3)
    store.put(old)
    retrained = dataclasses.replace(old, metrics={"accuracy": 0.9}, failed=False, collapsed=False)
    real = Store._insert

    def interrupted_after_the_upsert(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "_insert", interrupted_after_the_upsert)
    with pytest.raises(KeyboardInterrupt):
        store.put(retrained, replace=True)
    monkeypatch.undo()
    assert store.get(old.key).metrics["accuracy"] == old.metrics["accuracy"]  # rolled back
    kept = read_export(beside_store(store.path, "unstored") / f"{old.key}.json")
    assert [run.metrics["accuracy"] for run in kept] == [0.9]


def test_a_kept_run_never_overwrites_another_kept_copy_of_its_key(tmp_path: Path) -> None:
    """A run retrained after its first copy could not be stored; two stores in one folder keep
    theirs apart (a rerun on one stores its own kept runs only)."""
    first, second = make_result(3), dataclasses.replace(make_result(3), metrics={"accuracy": 0.9})
    with Store(tmp_path / "a.sqlite") as a, Store(tmp_path / "b.sqlite") as b:
        a._keep_unstored(first), a._keep_unstored(second), b._keep_unstored(first)
    kept = sorted((tmp_path / "a.sqlite-unstored").iterdir())
    assert [path.name for path in kept] == [f"{first.key}.2.json", f"{first.key}.json"]
    assert [read_export(path)[0].metrics["accuracy"] for path in kept] == [0.9, 0.53]
    assert [path.name for path in (tmp_path / "b.sqlite-unstored").iterdir()] == [f"{first.key}.json"]


def test_records_without_aliases_leave_the_field_out_for_older_readers() -> None:
    run = make_result(0)
    assert "recipe_aliases" not in run.to_dict() and RunResult.from_json(run.to_json()) == run
    aliased = dataclasses.replace(run, recipe_aliases=["paper[lr=2e-05]"])
    assert RunResult.from_json(aliased.to_json()).recipe_aliases == ["paper[lr=2e-05]"]
    repeated = dataclasses.replace(run, recipe_aliases=["paper", "paper[lr=2e-05]"])  # an imported record's
    assert repeated.recipe_names == ["paper", "paper[lr=2e-05]"]  # its own name once


def test_a_filter_that_matches_nothing_lists_the_stored_values_of_that_field(store: Store) -> None:
    run = make_result(0)
    store.put(run)
    assert store.nothing_matches({}, {"torch": "9.9", "cpu_threads": "2"}) == (
        "no stored run matches torch=9.9, cpu_threads=2 (stored torch values: 2.13.0)")  # cpu_threads 2 is stored
    assert store.nothing_matches({"task": "rte"}, {"cpu_threads": None}) == (
        "no stored run matches task=rte, cpu_threads=none (stored cpu_threads values: 2)")
    gpu = dataclasses.replace(make_result(1), key="gpu-run", environment={**ENVIRONMENT, "cpu_threads": None})
    store.put(gpu)
    assert [r.key for r in store.query(env=parse_env("cpu_threads=none"))] == ["gpu-run"]  # as the hint lists it
    unversioned = dataclasses.replace(make_result(2), key="no-datasets", environment={**ENVIRONMENT, "datasets": None})
    store.put(unversioned)
    assert [r.key for r in store.query(env=parse_env("datasets=none"))] == ["no-datasets"]  # a store column: IS NULL
    prefix = run.recipe_hash[:6]
    assert store.nothing_matches({"recipe_hash": prefix, "task": "mrpc"}) == (
        f"no stored run matches recipe_hash={prefix}, task=mrpc (stored tasks: rte)")  # a stored hash's start
    assert store.nothing_matches({"recipe_hash": "zzzz"}).endswith(
        f"(stored recipe hashes: {run.recipe_hash[:store_module.SHORT_HASH]})")
    # A Recipe or Task object is compared by its hash or name, not by how the message words it.
    recipe = SimpleNamespace(name="paper", hash=run.recipe_hash)
    assert store.nothing_matches({"recipe": recipe, "model": "other-model"}) == (
        f"no stored run matches recipe=paper ({run.recipe_hash[:store_module.SHORT_HASH]}), model=other-model "
        f"(stored models: {run.model['name']})")
    assert "stored recipe hashes" in store.nothing_matches({"recipe": SimpleNamespace(name="paper", hash="zz")})


def test_query_names_a_filter_of_the_wrong_type(store: Store) -> None:
    import numpy as np

    store.put(make_result(0))
    assert len(store.query(seed=np.int64(0))) == len(store.query(seed=np.arange(2))) == 1
    with pytest.raises(StoreError, match="selects a recipe hash already; leave recipe_hash= out"):
        store.query(recipe=SimpleNamespace(hash="hash-paper"), recipe_hash="hash")
    for filters, message in (({"seed": "0"}, r"^seed='0' is invalid; expected a seed or a list of seeds"),
                             ({"recipe_hash": ""}, r"^recipe_hash='' is empty; expected the start of a recipe hash$"),
                             ({"recipe_hash": 1234}, r"^recipe_hash=1234 is invalid; expected the start of a recipe "
                                                     r"hash, as text$"),
                             ({"seed": [0, True]}, r"^seed=\[0, True\] is invalid"),
                             ({"recipe": 3.5}, r"^recipe=3.5 is invalid; expected a recipe name or a Recipe object$"),
                             ({"task": ["rte"]}, r"^task=\['rte'\] is invalid; expected a task name or a Task object$")):
        with pytest.raises(StoreError, match=message):
            store.query(**filters)
    assert len(store.query(seed=[0, 1])) == 1


def test_a_recipe_hash_prefix_selects_only_the_hashes_that_start_with_it(store: Store) -> None:
    runs = {recipe: [make_result(seed, recipe=recipe) for seed in range(2)] for recipe in ("apple", "banana", "0range")}
    for group in runs.values():
        for run in group:
            store.put(run)
    hashes = {recipe: group[0].recipe_hash for recipe, group in runs.items()}
    assert hashes["0range"] < hashes["apple"] < hashes["banana"]  # hashes sorting before and after a prefix
    for recipe, stored in hashes.items():
        for prefix in (stored, stored[:7]):  # the whole hash, and its start past the shared "hash-"
            assert sorted(r.key for r in store.query(recipe_hash=prefix)) == sorted(r.key for r in runs[recipe])
    assert len(store.query(recipe_hash="hash-")) == 6  # the start all three share selects them all
    assert store.query(recipe_hash="hash-apricot") == []


def test_a_record_stored_before_epochs_left_the_hash_of_a_max_steps_recipe_still_imports(tiny_model,
                                                                                          tmp_path: Path) -> None:
    """Since 2026-12-06 a recipe with max_steps hashes its (unused) epochs as the default, so
    mosbach-stable and bert-default-bc over one max_steps train once.  A record stored earlier
    carries the hash of its own epochs: an import takes it as it was stored, and still refuses a
    record whose hash its fields make under neither rule."""
    import stabench
    from stabench.result import key_of_record

    legacy = stabench.get_recipe("mosbach-stable", max_steps=2)
    assert legacy.hash == stabench.get_recipe("bert-default-bc", max_steps=2).hash
    (earlier,) = legacy.recorded_hashes() - {legacy.hash}
    at_default = stabench.get_recipe("bert-default-bc", max_steps=2)  # epochs at its default
    assert at_default.recorded_hashes() == {at_default.hash}
    with Store(tmp_path / "s.sqlite") as source:
        run = stabench.run("polarity", tiny_model, legacy, 0, store=source, cpu_threads=1)
    assert run.recipe["epochs"] == 20

    def stored_under(recipe_hash: str) -> Path:
        record = dataclasses.replace(run, recipe_hash=recipe_hash)
        path = tmp_path / f"{recipe_hash}.json"
        path.write_text(f"[\n{dataclasses.replace(record, key=key_of_record(record)).to_json()}\n]\n")
        return path

    with Store(tmp_path / "other.sqlite") as other:
        assert other.import_file(stored_under(earlier)) == (1, 0)
        with pytest.raises(StoreError, match=r"its recipe fields do not make its recipe hash 0{16}"):
            other.import_file(stored_under("0" * 16))


def test_an_edited_record_s_key_no_longer_matches_and_its_import_is_refused(tiny_model, tmp_path: Path) -> None:
    """A hand-edited seed kept seed 0's key and was then served as seed 0 (an adversarial trial).
    A run records which of its fields made its key, so the key is checked against its contents."""
    import stabench
    from stabench.result import key_of_record
    from stabench.tasks import Task

    fast = stabench.get_recipe("bert-default", max_steps=2)
    texts = {"text": ["good", "bad", "fine", "awful", "nice", "poor"], "label": ["pos", "neg"] * 3}
    own = Task("own-metrics", "text", lambda: {"train": texts, "validation": texts}, metrics=("macro_f1", "accuracy"))
    with Store(tmp_path / "s.sqlite") as source:
        runs = [stabench.run("polarity", tiny_model, fast, 0, store=source, cpu_threads=1),
                stabench.run("polarity", tiny_model, fast, 1, store=source, train_size=64, cpu_threads=1),
                stabench.run(own, tiny_model, fast.replace(reinit_layers=1), 0, store=source, cpu_threads=1)]
        assert [key_of_record(run) for run in runs] == [run.key for run in runs]  # also as read back:
        assert [key_of_record(source.get(run.key)) for run in runs] == [run.key for run in runs]
        source.export(tmp_path / "runs.json")
    records = json.loads((tmp_path / "runs.json").read_text())
    edits = {"seed": lambda r: {**r, "seed": 5}, "recipe hash": lambda r: {**r, "recipe_hash": "0" * 16},
             "task": lambda r: {**r, "task": {**r["task"], "n_train": 3}},
             "stack": lambda r: {**r, "environment": {**r["environment"], "torch": "2.0.0"}},
             "keyed field taken out": lambda r: {**r, "model": {k: v for k, v in r["model"].items() if k != "revision"}},
             "recipe field": lambda r: {**r, "recipe": {**r["recipe"], "lr": 0.5}}}
    with Store(tmp_path / "other.sqlite") as other:
        for name, edit in edits.items():
            edited = tmp_path / f"edited-{name}.json"
            edited.write_text(json.dumps([edit(r) if r["seed"] == 0 else r for r in records]))
            with pytest.raises(StoreError, match=r"(its key \w+ is not the key of its contents \(.*\)|its recipe "
                                                 r"fields do not make its recipe hash \w+): the record was edited "
                                                 r"after it was stored"):
                other.import_file(edited)
            assert other.count() == 0, name
        newer = tmp_path / "newer.json"  # a recipe field this version lacks: upgrade, not "edited"
        newer.write_text(json.dumps([{**r, "recipe": {**r["recipe"], "label_smoothing": 0.1}} for r in records]))
        with pytest.raises(StoreError, match=r": nothing imported: run 1 of 3: its recipe has field\(s\) label_smoothing, "
                                             r"which this stabench's recipes lack: it was written by a newer "
                                             r"stabench; upgrade stabench to read it$"):
            other.import_file(newer)
        # A record made before runs listed their keyed fields imports as before: its key cannot be checked.
        older = tmp_path / "older.json"
        older.write_text(json.dumps([{**r, "environment": {k: v for k, v in r["environment"].items()
                                                           if k != "keyed_fields"}} for r in records]))
        with pytest.warns(UserWarning, match=rf"^{re.escape(str(older))}: 3 of its 3 run\(s\) do not record which "
                                             r"fields made their keys \(stored before 2026-12-05, or the field was "
                                             r"taken out\), so their keys were not checked against their contents$"):
            assert other.import_file(older) == (3, 0)
        assert other.import_file(tmp_path / "runs.json") == (0, 3)


def test_an_import_says_which_stored_runs_the_file_scored_differently(store: Store, tmp_path: Path, capsys) -> None:
    """Two machines trained seed 2 under one key (a GPU's nondeterminism): the stored copy stays,
    and the other machine's score is named rather than dropped without a word."""
    from stabench.cli import main

    store.put(make_result(1))
    store.put(make_result(2, metrics={"accuracy": 0.828}))
    other = [make_result(1), make_result(2, metrics={"accuracy": 0.51}), make_result(3)]
    path = tmp_path / "box-b.json"
    path.write_text(json.dumps([run.to_dict() for run in other]))
    with pytest.warns(UserWarning, match=r"^kept the stored copy of 1 run\(s\) that the file's copy scored "
                                         r"differently \(stored first\): seed 2: accuracy 0\.828 and 0\.51 failed$"):
        assert store.import_file(path) == (1, 2)
    assert store.get(other[1].key).score == 0.828
    store.close()
    assert main(["import", "--store", str(store.path), str(path)]) == 0  # the CLI: one line, not Python's
    err = capsys.readouterr().err
    assert err.startswith("warning: kept the stored copy of 1 run(s)") and len(err.strip().splitlines()) == 1


def test_a_file_holding_one_run_twice_imports_once_unless_its_copies_disagree(store: Store, tmp_path: Path) -> None:
    run, rescored = make_result(4), make_result(4, metrics={"accuracy": 0.61})
    joined = tmp_path / "joined.json"
    joined.write_text(json.dumps([run.to_dict(), run.to_dict()]))  # one export appended to itself
    assert store.import_file(joined) == (1, 0)  # one run, added; none was stored before
    assert store.import_file(joined) == (0, 1)
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps([run.to_dict(), rescored.to_dict()]))
    with pytest.raises(StoreError, match=rf"^{re.escape(str(clash))}: nothing imported: it holds run {run.key} "
                                         r"twice with different results \(seed 4: accuracy 0\.54 and 0\.61\); "
                                         r"keep one of them$"):
        Store(tmp_path / "fresh.sqlite").import_file(clash)


def test_a_run_stored_under_other_stacks_is_named_with_every_field_that_differs(store: Store) -> None:
    """Why a seed trains again: the stacks the store holds it under, against this one in every field
    that differs."""
    from stabench.train import warn_of_other_stacks

    here = make_result(3)  # the run about to train: not stored yet
    for environment in ({"torch": "2.12.0"}, {"transformers": "5.20.0"}):
        store.put(make_result(3, environment=environment))
    store.put(make_result(3, task="mrpc", environment={"torch": "2.11.0"}))  # another task: not this run
    store.put(make_result(4, environment={"torch": "2.11.0"}))  # another seed
    stack = key_fields(here.environment)
    assert store.other_stacks(here.key, here.task, here.model, here.recipe_hash, 3, stack) == [
        {"torch": ("2.12.0", "2.13.0")}, {"transformers": ("5.20.0", "5.24.0")}]
    prepared = SimpleNamespace(key=here.key, task_info=here.task, model_info=here.model, seed=3,
                               recipe=SimpleNamespace(name="paper"), recipe_hash=here.recipe_hash,
                               environment=here.environment)
    # Each stack with every field some stack differs in: "(torch 2.12.0; transformers 5.20.0)" read as
    # one stack on torch 2.12.0 beside this one, not with its transformers 5.24.0 shown.
    with pytest.warns(UserWarning, match=r"^runs of rte / bert-large-uncased / recipe paper are stored under 2 other "
                                         r"stacks \(torch 2\.12\.0, transformers 5\.24\.0; torch 2\.13\.0, "
                                         r"transformers 5\.20\.0\), not this one \(torch 2\.13\.0, transformers "
                                         r"5\.24\.0\); each stack keeps its own runs, so they train again$"):
        warn_of_other_stacks(prepared, store)
    older = SimpleNamespace(other_stacks=lambda *args: [{"transformers": (None, "5.24.0")}])  # a field it lacks
    with pytest.warns(UserWarning, match=r"are stored under another stack \(one that did not record these fields\), "
                                         r"not this one \(transformers 5\.24\.0\);"):
        warn_of_other_stacks(prepared, older)
    mixed = SimpleNamespace(other_stacks=lambda *args: [{"transformers": (None, "5.24.0")},
                                                        {"transformers": ("5.20.0", "5.24.0")}])
    with pytest.warns(UserWarning, match=r"are stored under 2 other stacks \(one that did not record these fields; "
                                         r"transformers 5\.20\.0\), not this one"):
        warn_of_other_stacks(prepared, mixed)
    lacking = SimpleNamespace(other_stacks=lambda *args: [{"transformers": (None, "5.24.0"), "torch": ("2.12.0", "2.13.0")},
                                                          {"torch": ("2.11.0", "2.13.0")}])
    with pytest.warns(UserWarning, match=r"are stored under 2 other stacks \(torch 2\.12\.0, transformers none; "
                                         r"torch 2\.11\.0, transformers 5\.24\.0\), not this one"):
        warn_of_other_stacks(prepared, lacking)  # a lacked field said, not left out: it read as this stack


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.dictionaries(names, floats, max_size=3), min_size=1, max_size=3), st.sampled_from(["json", "csv"]),
       st.data())
def test_an_export_cut_short_imports_nothing_or_only_whole_runs(metrics, fmt, data) -> None:
    """A copy broken off anywhere: a JSON export imports nothing unless only its last newline is
    gone; a CSV one imports the runs before the cut, each whole (a cut at a row's end is silent)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with Store(tmp_path / "a.sqlite") as source:
            for seed, values in enumerate(metrics):
                source.put(make_result(seed, metrics=values))
            source.export(tmp_path / f"runs.{fmt}", fmt=fmt)
            stored = {run.key: run for run in source.query()}
        whole = (tmp_path / f"runs.{fmt}").read_bytes()
        (tmp_path / f"cut.{fmt}").write_bytes(whole[:data.draw(st.integers(0, len(whole) - 1))])
        with Store(tmp_path / "b.sqlite") as target:
            try:
                added, _ = target.import_file(tmp_path / f"cut.{fmt}")
            except (StoreError, ValueError):
                assert target.count() == 0
                return
            assert added == target.count() and all(same(run, stored[run.key]) for run in target.query())
            assert fmt == "csv" or added == len(stored)


def test_runs_stored_under_a_preset_variant_s_name_with_other_content_are_still_read(store: Store) -> None:
    """A name such as bert-default-bc[lr=0.001] is refused now for other content, but runs stored
    under one before (an older preset, or the bug that allowed it) still read back by it."""
    run = make_result(0, recipe="bert-default-bc[lr=0.001]")  # lr=2e-5, epochs=20: not what the name says
    store.put(run)
    recipe = store.recipe_named("bert-default-bc[lr=0.001]", recipe_hash=run.recipe_hash[:6])
    assert recipe.name == "bert-default-bc[lr=0.001]" and recipe.lr == 2e-5 and recipe.epochs == 20


def test_a_warning_of_exactly_three_damaged_runs_names_them_all_and_no_more(tmp_path: Path) -> None:
    """Three keys are named whole; "and N more" starts at the fourth."""
    three = str(store_module.DamagedRunsLeftOut(tmp_path / "s.sqlite", ["k1", "k2", "k3"]))
    assert "left out 3 unreadable stored run(s), k1, k2, k3: rerunning" in three and "more" not in three
    four = str(store_module.DamagedRunsLeftOut(tmp_path / "s.sqlite", ["k1", "k2", "k3", "k4"]))
    assert "left out 4 unreadable stored run(s), k1, k2, k3 and 1 more: rerunning" in four


def test_an_import_that_scored_three_runs_differently_names_all_three_and_a_fourth_is_dots(store: Store) -> None:
    """Three differing copies are all named; "; ..." only says there are more than the three shown."""
    for seed in range(4):
        store.put(make_result(seed, metrics={"accuracy": 0.9}))
    with pytest.warns(UserWarning, match=r"kept the stored copy of 3 run") as caught:
        store.merge([make_result(seed, metrics={"accuracy": 0.8}) for seed in range(3)])
    message = str(caught[0].message)
    assert message.endswith("seed 2: accuracy 0.9 and 0.8") and "..." not in message
    with pytest.warns(UserWarning, match=r"kept the stored copy of 4 run.*seed 2: accuracy 0\.9 and 0\.8; \.\.\.$"):
        store.merge([make_result(seed, metrics={"accuracy": 0.8}) for seed in range(4)])


def test_a_record_without_key_fields_edited_into_another_seed_is_unreadable_as_its_key_s_seed(store: Store) -> None:
    """Without key fields only the seed asked for shows the edit: get(key, seed) refuses the record,
    and a rerun counts it as lost rather than reusing it."""
    run = make_result(0)
    store.put(run)
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET result_json = json_set(result_json, '$.seed', 5) WHERE key = ?", (run.key,))
    conn.close()
    assert store.get(run.key).seed == 5  # no seed asked: nothing to hold it to
    with pytest.raises(store_module.UnreadableRun, match="it records seed 5 under the key of seed 0"):
        store.get(run.key, seed=0)
    with pytest.warns(UserWarning, match="is unreadable .*training it again"):
        assert store.reusable(run.key, seed=0) is None


def test_a_copy_of_the_run_under_another_key_but_this_very_stack_is_no_other_stack(store: Store) -> None:
    """A stored copy that makes this run's key under this stack and differs in no key field (stored
    under another key, an older key scheme say) is not "another stack": nothing to warn of."""
    here = make_result(3)
    store.put(dataclasses.replace(here, key="older-scheme-key"))
    stack = key_fields(here.environment)
    assert store.other_stacks(here.key, here.task, here.model, here.recipe_hash, 3, stack) == []
    store.put(dataclasses.replace(make_result(3, environment={"torch": "2.12.0"}), key="older-scheme-torch"))
    assert store.other_stacks(here.key, here.task, here.model, here.recipe_hash, 3, stack) == [
        {"torch": ("2.12.0", "2.13.0")}]


def test_copies_that_differ_only_in_a_verdict_flag_scored_differently(store: Store) -> None:
    """Same metrics, but one copy diverged (or collapsed, or failed): two different outcomes of one run."""
    run = make_result(2)
    assert not store_module.scored_differently(run, make_result(2))
    for flag in ("failed", "collapsed", "diverged"):
        other = dataclasses.replace(run, **{flag: not getattr(run, flag)})
        assert store_module.scored_differently(run, other) and store_module.scored_differently(other, run), flag
    store.put(run)
    with pytest.warns(UserWarning, match=r"kept the stored copy of 1 run\(s\) that the file's copy scored differently"):
        assert store.merge([dataclasses.replace(run, diverged=True)]) == (0, 1)
    assert store.get(run.key).diverged is False


def test_a_recipe_name_stored_as_written_is_found_as_written_not_only_as_its_canonical_spelling(store: Store) -> None:
    """Runs stored under a preset variant spelt another way (an older stabench kept the name as typed)
    are found by that very name: it is not rewritten into a spelling no run holds."""
    written = "bert-default[max_steps=64,lr=3e-3]"
    run = make_result(0, recipe=written)
    store.put(run)
    assert store.recipe_name(written) == written
    assert [r.key for r in store.query(recipe=written)] == [run.key]
    assert store.recipe_name("bert-default[max_steps=32,lr=3e-3]") == "bert-default[lr=0.003,max_steps=32]"


def test_a_stored_record_whose_keyed_field_was_taken_out_is_unreadable_not_served(store: Store) -> None:
    """A record that lists its keyed fields but lacks one (edited in the store) makes no key at all:
    it cannot be checked, so it is a run lost rather than a run read."""
    from stabench.result import key_of_record, keyed_fields

    run = make_result(0)
    run = dataclasses.replace(run, environment={**run.environment, "keyed_fields": keyed_fields(
        run.task, run.model, key_fields(run.environment))})
    assert key_of_record(run) == run.key
    store.put(run)
    assert store.get(run.key).key == run.key
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET result_json = json_remove(result_json, '$.model.revision') WHERE key = ?",
                     (run.key,))
    conn.close()
    with pytest.raises(store_module.UnreadableRun, match=r"its contents make no key \(a keyed field is missing\)"):
        store.get(run.key)
    assert store.put(run) is True  # the damaged record is replaced by this copy, and kept aside
    assert store.get(run.key).model == run.model and (store.path.parent / "damaged" / f"{run.key}.json").exists()


def test_an_empty_stabench_store_variable_counts_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``STABENCH_STORE= pytest`` (cleared, not unset) must not make the store the current folder's ''."""
    monkeypatch.setenv("STABENCH_STORE", "")
    assert default_store_path(tmp_path) == tmp_path / ".stabench" / "results.sqlite"


def test_a_train_size_filter_of_full_may_come_with_spaces() -> None:
    assert store_module.check_train_size_filter(" full ") == store_module.check_train_size_filter("full") == "full"


def test_tagging_a_claim_s_runs_again_tags_nothing_new(store: Store) -> None:
    """A session tagging the same baseline twice: the count is of runs newly tagged, and they keep it."""
    runs = [make_result(seed, tags=["stored-with"]) for seed in range(3)]
    for run in runs:
        store.put(run)
    keys = [runs[0].key, runs[1].key]
    assert store.tag(keys, "base", claim="test_a") == 2
    assert store.tag(keys, "base", claim="test_a") == 0
    assert store.tag([*keys, runs[2].key], "base", claim="test_a") == 1
    assert [r.seed for r in store.query(tag="base", claim="test_a")] == [0, 1, 2]


def test_exporting_with_filters_left_unset_is_exporting_everything(store: Store, tmp_path: Path) -> None:
    """Filters given as None (the CLI passes each option so) are no filters: an empty store exports
    an empty file rather than "nothing matches"."""
    assert store.export(tmp_path / "none.json", task=None, model=None, tag=None) == 0
    assert json.loads((tmp_path / "none.json").read_text()) == []


def test_an_environment_filter_that_matches_nothing_exports_nothing_and_says_so(store: Store, tmp_path: Path) -> None:
    store.put(make_result(0))
    with pytest.raises(StoreError, match=r"no stored run matches torch=9\.9 \(stored torch values: 2\.13\.0\); "
                                         r"nothing was exported to"):
        store.export(tmp_path / "runs.json", env={"torch": "9.9"})
    assert not (tmp_path / "runs.json").exists()
    assert store.export(tmp_path / "runs.json", env={"torch": "2.13.0"}) == 1


def test_a_run_a_claim_holds_under_one_tag_is_unclaimed_under_another(store: Store) -> None:
    """``unclaimed`` is per tag: a claim's baseline under "base" says nothing of a "nightly" tag given by hand."""
    runs = [make_result(seed) for seed in range(2)]
    for run in runs:
        store.put(run)
    store.tag([runs[0].key], "base", claim="test_a")
    store.tag([runs[0].key, runs[1].key], "nightly")
    assert store.unclaimed("nightly") == {runs[0].key, runs[1].key}
    assert store.unclaimed("base") == set()


def test_a_filter_without_stored_values_to_list_does_not_hide_the_hints_of_the_filters_after_it(store: Store) -> None:
    store.put(make_result(0))
    assert store.nothing_matches({"seed": 5, "task": "mrpc"}) == (
        "no stored run matches seed=5, task=mrpc (stored tasks: rte)")


def test_a_run_that_would_not_read_back_is_refused_and_the_store_keeps_reading(store: Store) -> None:
    """A headline metric that is no number (a script's run built by hand) would make every read of
    its key an error: put refuses it, stores nothing and keeps no unstored copy to import."""
    store.put(make_result(1))
    with pytest.raises(StoreError, match=r"run \S+ cannot be stored: it would not read back; its headline metric "
                                         r"'accuracy' is '0\.9', not a number$"):
        store.put(make_result(0, metrics={"accuracy": "0.9"}))
    from stabench.result import keyed_fields

    run = make_result(2)
    run = dataclasses.replace(run, environment={**run.environment, "keyed_fields": keyed_fields(
        run.task, run.model, key_fields(run.environment))})
    with pytest.raises(StoreError, match=rf"run my-own-key cannot be stored under that key: its seed, task, model, "
                                         rf"recipe hash and stack make key {run.key}; store a run under the key its "
                                         rf"contents make, as training gives it$"):
        store.put(dataclasses.replace(run, key="my-own-key"))
    assert store.put(run) and [r.seed for r in store.query()] == [1, 2]
    assert not store_module.beside_store(store.path, "unstored").exists()


def test_a_folder_removed_between_pathlibs_mkdir_and_its_look_is_made_again(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """mkdir(exist_ok=True) raises FileExistsError when the folder existed as it tried and the last
    lock holder removed it before pathlib looked again: a race four processes taking turns met."""
    folder, real_mkdir, raced = tmp_path / "s.sqlite-locks", Path.mkdir, []

    def mkdir_in_the_race(self, *args, **kwargs):
        if self == folder and not raced:
            raced.append(self)
            raise FileExistsError(17, "File exists")  # as pathlib re-raises it: the folder is gone again
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir_in_the_race)
    os.close(store_module.in_made_folder(folder, lambda: os.open(folder / "k.lock", os.O_RDWR | os.O_CREAT)))
    assert raced and (folder / "k.lock").is_file()
    (tmp_path / "a-file").write_text("")  # a file where the folder belongs stays an error
    with pytest.raises(FileExistsError):
        store_module.in_made_folder(tmp_path / "a-file", lambda: None)


def _read_alone(path: Path, records: list[dict[str, Any]]) -> list[RunResult]:
    path.write_text(json.dumps(records))
    return read_export(path)


def test_an_export_of_no_runs_is_refused_as_holding_none(tmp_path: Path) -> None:
    """An empty list, or a CSV header without rows, is a placeholder: never a CI step's pass."""
    (tmp_path / "none.json").write_text("[]\n")
    (tmp_path / "none.csv").write_text("key,result_json\r\n")
    for name in ("none.json", "none.csv"):
        with pytest.raises(StoreError, match=r"holds no runs; expected a `stabench export` file of one or more"):
            read_export(tmp_path / name)


def test_a_float_field_imported_as_a_whole_number_is_taken(tmp_path: Path) -> None:
    """JSON written by another tool may give 812 for 812.0: a float field takes an int (not a bool)."""
    record = {**json.loads(make_result(1).to_json()), "wall_time_s": 812, "steps_per_s": 4}
    (run,) = _read_alone(tmp_path / "ints.json", [record])
    assert run.wall_time_s == 812 and run.steps_per_s == 4


@pytest.mark.parametrize("accuracy", [math.inf, True])
def test_an_accuracy_beside_another_headline_metric_must_be_a_finite_number(tmp_path: Path, accuracy: Any) -> None:
    """The failure test reads accuracy whatever the headline metric: an inf or a bool there is refused."""
    record = {**json.loads(make_result(1).to_json()), "primary_metric": "macro_f1",
              "metrics": {"macro_f1": 0.6, "accuracy": accuracy}, "failed": False, "collapsed": False}
    with pytest.raises(StoreError, match=rf"nothing imported: run 1 of 1: its accuracy is {accuracy!r}; a run's "
                                         r"scores are finite numbers"):
        _read_alone(tmp_path / "odd.json", [record])


def test_a_keyed_record_of_a_hooked_recipe_without_a_fingerprint_imports_unchecked(tmp_path: Path) -> None:
    """A hooked run stored before 2026-12-06 holds no hook fingerprint: its recipe hash cannot be
    checked (the hook's code then is unknown), so it is not read as edited."""
    from stabench.result import key_of_record, keyed_fields

    run = make_result(1)
    run = dataclasses.replace(run, recipe={**run.recipe, "hook": "freeze-embeddings"}, environment={
        **run.environment, "keyed_fields": keyed_fields(run.task, run.model, key_fields(run.environment))})
    assert key_of_record(run) == run.key
    (back,) = _read_alone(tmp_path / "hooked.json", [json.loads(run.to_json())])
    assert back.key == run.key and back.recipe_hash == "hash-paper"


def _csv_with(tmp_path: Path, run: RunResult, cells: dict[str, str]) -> Path:
    import csv

    from stabench.exchange import write_export

    write_export(tmp_path / "runs.csv", [run], "csv")
    with open(tmp_path / "runs.csv", newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    for column, cell in cells.items():
        rows[0][header.index(column)] = cell
    with open(tmp_path / "saved.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    return tmp_path / "saved.csv"


@pytest.mark.parametrize("cells", [{"metric.mcc": "NaN"}, {"metric.mcc": "nan"}, {"metric.mcc": ""},
                                   {"metric.f1": "0.3"}])
def test_a_csv_cell_a_spreadsheet_saved_in_its_own_spelling_is_no_edit(tmp_path: Path, cells: dict[str, str]) -> None:
    """A NaN saved as NaN, and a float saved to 15 significant digits (0.30000000000000004 as 0.3),
    show the record's value: the import says nothing of edits."""
    run = make_result(1, metrics={"mcc": math.nan, "f1": 0.1 + 0.2})
    saved = _csv_with(tmp_path, run, cells)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (back,) = read_export(saved)
    assert back.key == run.key
    assert not [str(w.message) for w in caught if "CSV row" in str(w.message)]


def test_an_export_never_replaces_a_file_that_is_not_utf8_text(store: Store, tmp_path: Path) -> None:
    """A binary file at the export's path (an image, a pickle) is a user's data, not an earlier export."""
    from stabench.exchange import replaceable_export

    store.put(make_result(0))
    target = tmp_path / "runs.json"
    target.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert replaceable_export(target) is False
    with pytest.raises(StoreError):
        store.export(target)
    assert target.read_bytes() == b"\x89PNG\r\n\x1a\n\x00\xff\xfe"
