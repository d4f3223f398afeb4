import importlib.metadata
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

from stabench.claims import parse_seeds
from stabench.cli import main
from stabench.models import stored_name
from stabench.store import SHORT_KEY, Store


@given(st.lists(st.integers(0, 500), min_size=1, max_size=20, unique=True))
def test_seed_lists_round_trip(seeds):
    assert parse_seeds(",".join(map(str, seeds))) == seeds


@given(st.lists(st.integers(0, 500), min_size=1, max_size=20, unique=True), st.data())
def test_a_repeated_seed_is_named(seeds, data):
    repeated = data.draw(st.sampled_from(seeds))
    text = ",".join(map(str, [*seeds, repeated]))
    with pytest.raises(ValueError, match=f"seeds '{text}' are invalid; seed {repeated} is listed twice"):
        parse_seeds(text)


@given(st.integers(0, 100), st.integers(0, 50))
def test_seed_ranges(first, length):
    assert parse_seeds(f"{first}-{first + length}") == list(range(first, first + length + 1))


@given(st.integers(1, 1024), st.lists(st.integers(0, 500), min_size=2, max_size=20, unique=True))
def test_seed_text_is_a_count_alone_and_a_list_otherwise(count, seeds):
    """``--stabench-seeds 5`` is seeds 0-4, as seeds=5 in a claim; a range or a list names the seeds."""
    from stabench.claims import seeds_from_text, seeds_of

    assert seeds_of(seeds_from_text(str(count))) == tuple(range(count))
    assert seeds_of(seeds_from_text(f" {count} ")) == tuple(range(count))
    assert seeds_of(seeds_from_text(",".join(map(str, seeds)))) == tuple(seeds)
    assert seeds_of(seeds_from_text(f"{count}-{count}")) == (count,)  # seed N alone, written as a range


@pytest.mark.parametrize("text", ["a-b", "5-2", "1,,x", "-3", "0-2,2"])
def test_bad_seeds_are_named(text):
    with pytest.raises(ValueError, match=f"seeds {text!r} are invalid"):
        parse_seeds(text)


def _args(tiny_model, *extra):
    return ["run", "--task", "polarity", "--model", tiny_model, "--recipe", "bert-default",
            "--set", "max_steps=6", "--set", "trace_every=2", "--device", "cpu", *extra]


def test_run_prints_seeds_and_summary_then_reuses_the_store(tiny_model, capsys):
    assert main(_args(tiny_model, "--seeds", "0-1")) == 0
    first = capsys.readouterr().out
    assert "seed 0: accuracy" in first and "trained in" in first
    assert "mean ± std" in first and "failed k/n" in first
    assert "majority" in first and "…" not in first  # piped: wide enough, no header cut short
    assert "recipe bert-default[max_steps=6,trace_every=2] (" in first  # overrides shown, not eaten as markup
    # --set takes a comma list as well as repeats (as pytest's --stabench-set): the same recipe.
    assert main(["run", "--task", "polarity", "--model", tiny_model, "--recipe", "bert-default",
                 "--set", "max_steps=6,trace_every=2", "--device", "cpu", "--seeds", "0-2"]) == 0
    second = capsys.readouterr().out
    assert second.count("stored, not retrained") == 2 and second.count("trained in") == 1
    assert "stored as recipe" not in second
    main(_args(tiny_model, "--seeds", "0", "--set", "name=renamed"))  # same content, new name: reused
    renamed = " ".join(capsys.readouterr().out.split())
    assert "stored as recipe 'bert-default[max_steps=6,trace_every=2]', not retrained)" in renamed
    assert "note: --seeds" not in first + renamed  # a range, and seed 0 alone, are what they say
    assert main(_args(tiny_model, "--seeds", "2")) == 0  # pytest's --stabench-seeds=2 would be seeds 0-1
    assert "note: --seeds 2 is seed 2 alone; for 2 seeds write --seeds 0-1" in capsys.readouterr().out
    assert main(["runs", "--task", "polarity", "--seeds", "2"]) == 0  # a listing or an export, as the run
    assert "note: --seeds 2 is seed 2 alone; for 2 seeds write --seeds 0-1" in " ".join(capsys.readouterr().err.split())
    assert main(["runs", "--task", "polarity", "--seeds", "1"]) == 0  # pytest's --stabench-seeds=1 is seed 0
    assert "note: --seeds 1 is seed 1 alone; for one seed from 0 (pytest's --stabench-seeds=1) write --seeds 0" in \
        " ".join(capsys.readouterr().err.split())
    assert main(["runs", "--seeds", str(2**32)]) == 2  # no seed: the error alone, not a note about 2**32 seeds
    assert "note:" not in (told := capsys.readouterr().err) and "4294967296 is invalid" in told
    assert main(["runs", "--task", "polarity"]) == 0
    listed = capsys.readouterr().out
    # What all three runs share is said once, above the table, instead of in seven columns.
    assert listed.startswith("3 stored run(s), recipe hash ") and f"torch {torch.__version__}," in listed
    assert "┃ torch" not in listed and "┃ data" not in listed
    long_tag = "baseline-before-the-transformers-upgrade-of-december-with-the-new-tokenizers"
    with Store(os.environ["STABENCH_STORE"]) as store:  # a tags column: a row wider than 200 characters
        store.tag([run.key for run in store.query()], long_tag)
    assert main(["runs", "--task", "polarity", "--wide"]) == 0
    wide = capsys.readouterr().out
    assert "┃ torch" in wide and max(map(len, wide.splitlines())) > 200
    with Store(os.environ["STABENCH_STORE"]) as store:  # piped: each key whole on its row's one line
        assert all(any(r.key[:SHORT_KEY] in line and f"│ {r.seed} " in line for line in wide.splitlines())
                   for r in store.query(task="polarity"))
        store.untag([run.key for run in store.query()], long_tag)
    assert main(["runs", "--task", "polarity", "--md", os.path.join(os.environ["STABENCH_STORE"] + ".md")]) == 0
    table = open(os.environ["STABENCH_STORE"] + ".md").read().splitlines()
    assert table[:3] == ["## stabench runs", "", listed.splitlines()[0]]
    seed = [cell.strip() for cell in table[4].split("|")].index("seed")
    assert [line.split("|")[seed].strip() for line in table[6:]] == ["0", "1", "2"]  # a row per run
    assert "tags" not in listed  # no run is tagged: no column
    with Store(os.environ["STABENCH_STORE"]) as store:
        store.tag([run.key for run in store.query(seed=0)], "baseline")
    assert main(["runs", "--task", "polarity", "--md", os.environ["STABENCH_STORE"] + ".md"]) == 0
    table = open(os.environ["STABENCH_STORE"] + ".md").read().splitlines()
    tags = [cell.strip() for cell in table[4].split("|")].index("tags")  # which runs a baseline holds, by row
    assert [line.split("|")[tags].strip() for line in table[6:]] == ["baseline", "-", "-"]
    shown = listed.split("│ ")[1].strip()  # the first row's key, as the table prints it
    assert main(["runs", "--show", shown]) == 0 and f'"key": "{shown}' in capsys.readouterr().out
    threads = 2 if torch.get_num_threads() == 1 else 1  # another count: another run (restored by a fixture)
    assert main(_args(tiny_model, "--seeds", "0-2", "--cpu-threads", str(threads))) == 0
    out, err = capsys.readouterr()
    assert out.count("trained in") == 3 and torch.get_num_threads() == threads
    assert [line for line in err.splitlines() if line.strip()] == [  # why the seeds trained again, in one line once
        f"warning: runs of polarity / {stored_name(tiny_model)} / recipe bert-default[max_steps=6,trace_every=2] "
        f"are stored under another stack (cpu_threads {threads % 2 + 1}), not this one (cpu_threads {threads}); each "
        f"stack keeps "
        f"its own runs, so they train again (those stored under cpu_threads {threads % 2 + 1} are read with that "
        f"count: --stabench-cpu-threads, stabench run --cpu-threads, or cpu_threads=)"]


def test_summary_notes_a_study_whose_cpu_runs_came_from_two_cpu_models(tiny_model, tmp_path, capsys):
    """Seeds split over two CPU machines: the CPU model is recorded, not keyed, so they form one study."""
    assert main(_args(tiny_model, "--seeds", "0-1")) == 0
    assert main(["export", str(tmp_path / "runs.json")]) == 0
    records = json.loads((tmp_path / "runs.json").read_text())
    records[1]["environment"]["cpu_model"] = "Intel(R) Xeon(R) Platinum 8480+"  # box B
    (tmp_path / "two-boxes.json").write_text(json.dumps(records))
    merged = str(tmp_path / "merged.sqlite")
    assert main(["import", "--store", merged, str(tmp_path / "two-boxes.json")]) == 0
    capsys.readouterr()
    assert main(["runs", "--store", merged]) == 0  # each run's CPU, in its own row
    out = " ".join(capsys.readouterr().out.split())
    assert "cpu (Intel(R) Xeon(R) Platinum 8480+)" in out and f"cpu ({records[0]['environment']['cpu_model']})" in out
    assert main(["summary", "--store", merged]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: 1 study(ies) mix CPU runs from different CPU models" in out
    assert "Intel(R) Xeon(R) Platinum 8480+" in out and records[0]["environment"]["cpu_model"] in out
    assert main(["summary"]) == 0 and "CPU models" not in capsys.readouterr().out  # one machine's: no note
    records[1]["environment"]["cpu_model"] = None  # recorded before the field was: not another CPU
    (tmp_path / "older.json").write_text(json.dumps(records))
    older = str(tmp_path / "older.sqlite")
    assert main(["import", "--store", older, str(tmp_path / "older.json")]) == 0
    assert main(["summary", "--store", older]) == 0 and "CPU models" not in capsys.readouterr().out


def test_summary_of_a_metric_leaves_out_a_study_that_lacks_it_in_one_run(tiny_model, tmp_path, capsys):
    """A study with the metric in some runs only is left out and named, as one without it at all; the
    other studies are summarised, not the whole summary refused over the run without it."""
    assert main(_args(tiny_model, "--seeds", "0-1")) == 0
    assert main(_args(tiny_model, "--seeds", "0-1", "--set", "lr=1e-4")) == 0
    assert main(["export", str(tmp_path / "runs.json")]) == 0
    records = json.loads((tmp_path / "runs.json").read_text())
    partial = next(r for r in records if "lr=0.0001" in r["recipe_name"])
    del partial["metrics"]["train_loss"]  # one of its two runs
    (tmp_path / "partial.json").write_text(json.dumps(records))
    store = str(tmp_path / "partial.sqlite")
    assert main(["import", "--store", store, str(tmp_path / "partial.json")]) == 0
    capsys.readouterr()
    assert main(["summary", "--metric", "train_loss", "--store", store, "--json", str(tmp_path / "s.json")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"note: left out 1 study(ies) without train_loss: polarity / {stored_name(tiny_model)} / " in out
    studies = json.loads((tmp_path / "s.json").read_text())["studies"]
    assert [s["recipe"] for s in studies] == ["bert-default[max_steps=6,trace_every=2]"]


def test_a_seed_another_process_is_training_is_left_for_last(tiny_model, capsys):
    """Two `stabench run` commands on one store (one per GPU) split a study: each trains the seeds
    nobody holds first, then waits for the others."""
    import threading
    import time

    from stabench.recipes import get_recipe
    from stabench.store import Store
    from stabench.train import prepare

    recipe = get_recipe("bert-default", max_steps=6, trace_every=2)
    keys = [prepare("polarity", tiny_model, recipe, seed, device="cpu").key for seed in (0, 1)]
    held, seen_seed_1 = threading.Event(), []

    def another_process_trains_seed_0():
        with Store(os.environ["STABENCH_STORE"]) as store, store.lock(keys[0]):
            held.set()
            deadline = time.monotonic() + 30
            while keys[1] not in store and time.monotonic() < deadline:
                time.sleep(0.05)
            seen_seed_1.append(keys[1] in store)

    other = threading.Thread(target=another_process_trains_seed_0)
    other.start()
    held.wait()
    assert main(_args(tiny_model, "--seeds", "0-1")) == 0
    other.join()
    out = capsys.readouterr().out
    assert seen_seed_1 == [True]  # seed 1 trained while seed 0 was held
    assert out.index("seed 1: accuracy") < out.index("seed 0: accuracy") and out.count("trained in") == 2


def test_version_names_stabench_and_the_libraries_that_key_a_run(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"stabench {importlib.metadata.version('stabench')} (python ")
    assert f"torch {importlib.metadata.version('torch')}, transformers {importlib.metadata.version('transformers')}" in out


def test_summary_compares_every_two_studies_of_a_task_and_model_both_ways(tiny_model, tmp_path, capsys):
    """What a paper's table of recipes needs: each pair's p-values, without writing a claim."""
    assert main(_args(tiny_model, "--seeds", "0-2")) == 0
    assert main(_args(tiny_model, "--seeds", "0-2", "--set", "lr=5e-3")) == 0
    assert main(_args(tiny_model, "--seeds", "0", "--set", "lr=1e-4")) == 0  # one seed: left out of the pairs
    assert main(_args(tiny_model, "--seeds", "0-1", "--task", "same-number")) == 0  # alone on its task
    base = torch.get_num_threads()
    threads = 2 if base == 1 else 1  # another stack: compared by the gate, not here
    assert main(_args(tiny_model, "--seeds", "0-1", "--set", "lr=5e-3", "--cpu-threads", str(threads))) == 0
    capsys.readouterr()
    for _ in range(2):  # the second summary replaces the first one's reports
        assert main(["summary", "--compare", "--json", str(tmp_path / "s.json"), "--md", str(tmp_path / "s.md"),
                     "--env", f"cpu_threads={base}"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: --compare left out 1 study(ies) with one seed: polarity / tiny-bert / bert-default[lr=0.0001" in out
    comparisons = json.loads((tmp_path / "s.json").read_text())["comparisons"]
    default, fast = "bert-default[max_steps=6,trace_every=2]", "bert-default[lr=0.005,max_steps=6,trace_every=2]"
    assert [(c["setting"], c["name_a"], c["name_b"]) for c in comparisons] == [
        ("polarity / tiny-bert", fast, default), ("polarity / tiny-bert", default, fast)]  # in the table's order
    assert all(c["n_comparisons"] == 2 and c["alpha"] == 0.025 and c["n_a"] == 3 for c in comparisons)
    assert comparisons[0]["mean_a"] == comparisons[1]["mean_b"] and comparisons[0]["metric"] == "accuracy"
    for c in comparisons:  # one-sided in A's favour: the two directions' Mann-Whitney p add up past 1
        assert c["mannwhitney_p_a_better"] + comparisons[1 - comparisons.index(c)]["mannwhitney_p_a_better"] >= 1
    assert "0.025 (0.05 / 2 comparisons)" in out and "setting" in out
    # 3 seeds a side: no split goes below p = 1/20, and a sweep's many pairs leave a level far below that.
    assert ("note: in 2 of the 2 comparisons no test with a p-value could pass: at level 0.025 (0.05 / 2 ordered "
            "pairs), for one, no outcome on 3 vs 3 seeds gives a p that small (at least 0.05); compare one recipe "
            "with the others (--compare NAME), fewer studies") in out
    markdown = (tmp_path / "s.md").read_text()
    assert "### Comparisons" in markdown and f"| {fast} vs {default} |" in markdown
    assert "\n**Note:** in 2 of the 2 comparisons no test with a p-value could pass: " in markdown  # not only printed
    assert main(["summary", "--ci", "--task", "polarity", "--recipe", fast, "--env", f"cpu_threads={base}", "--md",
                 str(tmp_path / "ci.md")]) == 0
    study = json.loads((tmp_path / "s.json").read_text())["studies"]
    summary = next(s["summary"] for s in study if s["recipe"] == fast)
    produced = next(s["produced_by"] for s in study if s["recipe"] == fast)
    assert produced["stacks"] == [{**produced["stacks"][0], "cpu_threads": base, "torch": torch.__version__}]
    assert produced["task"]["name"] == "polarity" and len(produced["task"]["fingerprint"]) >= 16
    header, _, row = (" ".join(line.split()) for line in (tmp_path / "ci.md").read_text().splitlines()[-3:])
    assert header.endswith("| mean [95% CI] | std [95% CI] | std upper (chi²) |")
    assert row.endswith(f"| {summary['mean']:.3f} [{summary['mean_ci'][0]:.3f}, {summary['mean_ci'][1]:.3f}] | "
                        f"{summary['std']:.3f} [needs 10 seeds] | "  # the bootstrap's, of 3 seeds, far too narrow
                        f"{summary['std_upper']:.3f} |")
    assert main(["summary", "--task", "polarity", "--plots", str(tmp_path / "figs"), "--plot-format", "pdf"]) == 0
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["polarity-tiny-bert-accuracy-scores.pdf"]
    assert (tmp_path / "figs" / "polarity-tiny-bert-accuracy-scores.pdf").read_bytes().startswith(b"%PDF")
    capsys.readouterr()
    assert main(["summary", "--compare", "--task", "same-number"]) == 0
    assert "--compare found no two studies of one task, data size, model and stack" in " ".join(
        capsys.readouterr().out.split())
    # Every stack in the store: each recipe is compared with the other on its own stack only.
    assert main(["summary", "--compare", "--task", "polarity", "--json", str(tmp_path / "s.json")]) == 0
    pairs = json.loads((tmp_path / "s.json").read_text())["comparisons"]
    assert len(pairs) == 2 and {c["name_a"] for c in pairs} == {default, f"{fast} [cpu_threads {base}]"}
    # Against one recipe: each other study both ways against it.
    capsys.readouterr()
    assert main(["summary", "--compare", default, "--task", "polarity", "--env", f"cpu_threads={base}", "--json",
                 str(tmp_path / "s.json")]) == 0
    hint = " ".join(capsys.readouterr().out.split())  # not the --compare NAME it was given
    assert "(at least 0.05); fewer studies (filters, e.g. --recipe-hash for one version of an edited recipe) or " \
        "more seeds" in hint
    assert [(c["name_a"], c["name_b"]) for c in json.loads((tmp_path / "s.json").read_text())["comparisons"]] == [
        (fast, default), (default, fast)]
    # A preset's overrides in any order and spelling: the name stabench stores them under.
    respelt = "bert-default[trace_every=2,lr=5e-3,max_steps=6.0]"
    assert main(["summary", "--compare", respelt, "--recipe", respelt, "--env", f"cpu_threads={base}", "--json",
                 str(tmp_path / "s.json")]) == 0
    assert [s["recipe"] for s in json.loads((tmp_path / "s.json").read_text())["studies"]] == [fast]
    # A recipe file: the studies of its content, under any name (as --recipe reads one).
    recipe_file = tmp_path / "mine.json"
    recipe_file.write_text(json.dumps({"preset": "bert-default", "max_steps": 6, "trace_every": 2, "name": "mine"}))
    assert main(["summary", "--compare", str(recipe_file), "--task", "polarity", "--env", f"cpu_threads={base}",
                 "--json", str(tmp_path / "s.json")]) == 0
    assert [(c["name_a"], c["name_b"]) for c in json.loads((tmp_path / "s.json").read_text())["comparisons"]] == [
        (fast, default), (default, fast)]
    capsys.readouterr()  # an unknown --compare is an error before any table
    assert main(["summary", "--compare", "nonexistent", "--task", "polarity"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--compare nonexistent: no study with 2 or more seeds is of recipe 'nonexistent'" in " ".join(
        err.split())
    # Any name of the study: its stored name, or an alias that only some of its seeds were asked for under.
    assert main(_args(tiny_model, "--seeds", "1-2", "--set", "name=late", "--cpu-threads", str(base))) == 0
    assert main(_args(tiny_model, "--seeds", "0", "--set", "name=x | y", "--cpu-threads", str(base))) == 0
    for name in ("late", default, "x | y"):  # a name may hold " | ", which joins a study's names in labels
        assert main(["summary", "--compare", name, "--task", "polarity", "--env", f"cpu_threads={base}", "--json",
                     str(tmp_path / "s.json")]) == 0
        assert len(json.loads((tmp_path / "s.json").read_text())["comparisons"]) == 2
    capsys.readouterr()
    assert main(["summary", "--compare", "mosbach-stable", "--task", "polarity"]) == 2
    assert "--compare mosbach-stable: no study with 2 or more seeds is of recipe 'mosbach-stable'; their recipes: " \
        in " ".join(capsys.readouterr().err.split())
    # One name for two recipe contents: which study is the baseline is for the user to say.
    assert main(_args(tiny_model, "--seeds", "0-1", "--set", "name=late,lr=5e-4", "--cpu-threads", str(base))) == 0
    capsys.readouterr()
    assert main(["summary", "--compare", "late", "--task", "polarity", "--env", f"cpu_threads={base}"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--compare late: recipe 'late' names 2 studies of polarity / tiny-bert (" in err
    assert err.endswith("; pick one by its recipe hash (--recipe-hash)")


def test_one_export_file_named_twice_is_not_a_gate(tiny_model, tmp_path, monkeypatch, capsys):
    assert main(_args(tiny_model, "--seeds", "0")) == 0
    export = tmp_path / "e.json"
    assert main(["export", str(export)]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "e.json", str(export)]) == 2
    assert "the baseline and the current side are both" in capsys.readouterr().err


def test_reports_replace_earlier_reports_but_never_the_store_or_a_data_file(tiny_model, tmp_path, capsys):
    """``summary --json results.sqlite`` wrote over the store, and every run was lost."""
    store = os.environ["STABENCH_STORE"]
    assert main(_args(tiny_model, "--seeds", "0")) == 0
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "good", "label": 1}\n')
    for _ in range(2):  # a second summary replaces the first one's reports
        assert main(["summary", "--md", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json")]) == 0
    main(["compare", "tag:none", "store", "--md", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json")])
    assert (tmp_path / "t.md").read_text().startswith("## stabench compare")  # compare's reports too
    assert main(["summary", "--md", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json")]) == 0
    capsys.readouterr()
    for option, path in (("--json", store), ("--md", store), ("--md", str(data)), ("--json", str(data))):
        assert main(["summary", option, path]) == 2
        assert (f"error: {option} '{path}' exists and is not a stabench {'Markdown' if option == '--md' else 'JSON'} "
                f"report, so it is left as it is") in " ".join(capsys.readouterr().err.split())
    assert data.read_text() == '{"text": "good", "label": 1}\n'
    assert main(["runs"]) == 0 and "1 stored run(s)" in capsys.readouterr().out  # the store is intact


def test_run_takes_the_name_of_a_claim_file_s_recipe_whose_runs_are_stored(tiny_model, capsys):
    """``runs --recipe`` and ``summary --recipe`` took a claim's own recipe name; ``run`` said unknown."""
    import stabench
    from stabench.models import stored_name

    mine = stabench.get_recipe("bert-default", max_steps=4, lr=2e-4, name="mine@2e-4")
    stabench.run("polarity", tiny_model, mine, 0, device="cpu")  # the store of $STABENCH_STORE, as a claim's
    run = ["run", "--task", "polarity", "--model", tiny_model, "--device", "cpu", "--recipe", "mine@2e-4"]
    assert main([*run, "--seeds", "0-1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"recipe mine@2e-4 ({mine.hash})" in out
    assert out.count("stored, not retrained") == 1 and out.count("trained in") == 1
    stabench.run("polarity", tiny_model, mine.replace(name="team"), 0, device="cpu")  # read: "team" is an alias now
    assert main([*run[:-1], "team", "--seeds", "2"]) == 0
    assert f"recipe team ({mine.hash})" in " ".join(capsys.readouterr().out.split())  # the name asked for
    with stabench.Store(os.environ["STABENCH_STORE"]) as store:
        assert store.query(seed=2)[0].recipe_name == "team"
    # Another version under the name on another task: this task's runs count first.
    stabench.run("same-number", tiny_model, mine.replace(lr=5e-4, name="mine@2e-4"), 0, device="cpu")
    assert main([*run, "--seeds", "0"]) == 0 and "stored, not retrained" in capsys.readouterr().out
    stabench.run("polarity", tiny_model, mine.replace(lr=3e-4, name="mine@2e-4"), 0, device="cpu")  # a second version
    assert main([*run, "--seeds", "0"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    hashes = ", ".join(sorted(f"{recipe.hash[:8]} (lr={recipe.lr})" for recipe in (mine, mine.replace(lr=3e-4))))
    assert err == (f"error: recipe name 'mine@2e-4' is ambiguous: the store holds 2 recipes under it on polarity / "
                   f"{stored_name(tiny_model)} (recipe hashes {hashes}, as `stabench runs --recipe mine@2e-4` lists "
                   f"them); give the one meant as a Recipe (stabench run: --recipe-hash with the start of its "
                   f"hash), or a recipe file (.json) of its fields")
    assert main([*run, "--seeds", "0", "--recipe-hash", mine.hash[:6]]) == 0  # the first version, read
    out = " ".join(capsys.readouterr().out.split())
    assert f"recipe mine@2e-4 ({mine.hash})" in out and "stored, not retrained" in out
    assert main([*run, "--seeds", "0", "--recipe-hash", "zz"]) == 2
    assert " ".join(capsys.readouterr().err.split()) == (
        f"error: recipe hash 'zz' starts no hash of the recipes stored as 'mine@2e-4' ({hashes}); expected a start "
        f"of one of them alone")
    with stabench.Store(os.environ["STABENCH_STORE"]) as store, pytest.raises(
            ValueError, match="^recipe hash '' starts 2 hashes of the recipes stored as 'mine@2e-4'"):
        store.recipe_named("mine@2e-4", "polarity", stored_name(tiny_model), recipe_hash="")  # every version's
    assert main([*run, "--seeds", "0", "--no-store"]) == 2  # without the store, a name it holds is not known
    assert "unknown recipe 'mine@2e-4'; known recipes: " in capsys.readouterr().err
    assert main([*run, "--seeds", "0", "--no-store", "--recipe-hash", mine.hash[:6]]) == 2
    assert "picks a stored version of recipe 'mine@2e-4', but no store was given" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["run", "--task", "nope", "--seeds", "0"], "unknown task 'nope'"),
    (["run", "--task", "polarity", "--model", "/no/such/model", "--seeds", "0"], "model path '/no/such/model'"),
    (["run", "--task", "polarity", "--model", __file__, "--seeds", "0"], "is a file; expected a folder saved by"),
    (["run", "--task", "polarity", "--recipe", "fast", "--seeds", "0"], "unknown recipe 'fast'"),
    (["run", "--task", "polarity", "--metrics", "macro_f1", "--seeds", "0"],
     "--metrics macro_f1 is for a local task (--train-file, --eval-file, --text-columns); task 'polarity' has its own"),
    (["run", "--task", "polarity", "--text-columns", "text", "--seeds", "0"],
     "--text-columns text is for a local task (--train-file, --eval-file, --text-columns); task 'polarity' has its "
     "own columns"),
    (["run", "--task", "rte", "--label-column", "gold", "--seeds", "0"], "--label-column gold is for a local task"),
    (["run", "--task", "polarity", "--model", "someorg/minilm-l7", "--seeds", "0"],
     "model 'someorg/minilm-l7' is not a local folder, a built-in model ('minilm-l6', 'tiny-bert') or in the "
     "Hugging Face cache, and cannot be downloaded"),
    (["run", "--task", "polarity", "--model", "minilm-l7", "--seeds", "0"],
     "unknown model 'minilm-l7'; did you mean 'minilm-l6'?"),
    (["run", "--task", "polarity", "--set", "lr=-1", "--seeds", "0"], "lr=-1.0 is invalid"),
    (["run", "--task", "x", "--train-file", "/no/train.csv", "--eval-file", "/no/dev.csv", "--text-columns", "t"],
     "task file '/no/train.csv' does not exist"),
    (["run", "--task", "polarity", "--no-store", "--recompute"], "--recompute does nothing with --no-store, which "
                                                                  "reads and writes no store; give one of them"),
    (["run", "--task", "polarity", "--no-store", "--store", "s.sqlite"], "--store does nothing with --no-store"),
    (["run", "--task", "x", "--train-file", "t.csv"], "a local task needs --train-file, --eval-file and "
                                                      "--text-columns; missing --eval-file, --text-columns"),
    (["run", "--task", "polarity", "--train-file", "t.csv", "--eval-file", "e.csv", "--text-columns", "text"],
     "task name 'polarity' is taken by another task (built-in: is the sentence's judgement positive? (256 train "
     "/ 256 dev, balanced)); give the local task another name, e.g. 'polarity-local'"),
    (["runs", "--show", "deadbeef"], "no stored run with key 'deadbeef'"),
    (["runs", "--show", "d"], "no stored run with key 'd'"),
    (["export", "out.xlsx"], "cannot tell the format of 'out.xlsx' from its extension; expected a .json or .csv file"),
    (["run", "--task", "polarity", "--cpu-threads", "0", "--seeds", "0"],
     "--cpu-threads 0 is invalid; expected an integer from 1 to 1024"),
    (["run", "--task", "polarity", "--cpu-threads", "100000", "--seeds", "0"],
     "--cpu-threads 100000 is invalid; expected an integer from 1 to 1024"),
    (["run", "--task", "polarity", "--train-size", "0", "--seeds", "0"],
     "--train-size 0 is invalid; expected a whole number of examples >= 1, or leave it out for the full training set"),
    (["run", "--task", "polarity", "--set", "name=", "--seeds", "0"],
     "recipe field name='' is invalid; expected a non-empty name"),
    (["tag", "baseline", "--recipe", "nosuch"], "no stored run matches recipe=nosuch (stored recipes: none); "
                                                 "nothing was tagged 'baseline'"),
    (["untag", "base", "--tag", "other"],  # not silently ignored, taking 'base' off every run
     "--tag 'other' selects runs of another tag than 'base'; untag takes the tag off the runs that hold it, so leave "
     "--tag out"),
    (["runs", "--task", "colros"], "no stored run matches task=colros (stored tasks: none)"),
    (["runs", "--recipe", "x[lr=1]"], "no stored run matches recipe=x[lr=1] (stored recipes: none)"),  # not markup
    (["runs", "--recipe", "bert-default[lr=abc]"], "no stored run matches recipe=bert-default[lr=abc] (recipe "
                                                   "override lr='abc' is invalid; expected a number; stored recipes: "
                                                   "none)"),
    (["compare", "tag:baselin", "store"], "baseline 'tag:baselin' holds no runs (stored tags: none)"),
    (["compare", "tag:", "store"], "baseline 'tag:': tag '' is invalid; expected letters, digits"),
    (["compare", "env:transformers=9.9,cpu_threads=3", "store"], "baseline 'env:transformers=9.9,cpu_threads=3' "
     "holds no runs (stored transformers values: none; stored cpu_threads values: none)"),
    (["runs", "--recipe-hash", "zzzz"], "no stored run matches recipe_hash=zzzz (stored recipe hashes: none)"),
    (["run", "--task", "colors", "--seeds", "0"], "unknown task 'colors' (did you mean 'cola'?); known tasks: cola, "
                                                  "mrpc, polarity, qnli, "
                                                  "rte, same-number, sst2; a local task needs --train-file, "
                                                  "--eval-file and --text-columns, or --import of the module that "
                                                  "registers it"),
    (["run", "--task", "polarity", "--seeds", "0-100000000"],  # a typo for 0-10, not 10^8 runs
     "seeds '0-100000000' are 100000001 seeds; expected at most 10000"),
    (["run", "--task", "polarity", "--seeds", "4294967296"],
     "seeds '4294967296': seed 4294967296 is invalid; expected an integer from 0 to 4294967295 (2**32 - 1)"),
    (["compare", "tag:a", "tag:a"], "the baseline and the current side are both 'tag:a'"),
    # A report that cannot be written fails before any work, naming the path.
    (["summary", "--md", "/"], "--md '/' is a folder; expected a file name"),
    (["summary", "--json", "out/"], "--json 'out/' is a folder; expected a file name"),
    (["summary", "--plots", "/dev/null"], "--plots '/dev/null' is a file; expected a folder for the figures"),
    (["summary", "--plots", "out/fig.PDF"], "--plots 'out/fig.PDF' looks like a figure's file name; expected a "
                                            "folder for the figures (their format: --plot-format pdf)"),
    (["compare", "tag:a", "store", "--md", "/dev/null/gate.md"],
     "--md '/dev/null/gate.md' cannot be written: '/dev/null' is a file, not a folder"),
])
def test_bad_input_is_one_clear_line(argv, message, capsys):
    from stabench.store import Store

    Store(os.environ["STABENCH_STORE"]).close()  # an empty store: commands that only read need one
    assert main(argv) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")
    if message.startswith("unknown "):  # a misspelt name stops before the run's header, not after it
        assert out == ""


def test_export_and_import_merge_without_duplicates(tiny_model, tmp_path, capsys):
    main(_args(tiny_model, "--seeds", "0-1"))
    assert main(["export", str(tmp_path / "runs.json")]) == 0
    other = str(tmp_path / "other.sqlite")
    assert main(["import", str(tmp_path / "runs.json"), "--store", other]) == 0
    assert main(["import", str(tmp_path / "runs.json"), "--store", other]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal width
    assert "imported 2 run(s)" in out and "imported 0 run(s) from" in out and "2 already stored" in out
    main(["tag", "base", "--recipe", "bert-default[max_steps=6,trace_every=2]"])
    main(_args(tiny_model, "--seeds", "2"))  # not tagged
    assert main(["export", str(tmp_path / "base.json"), "--tag", "base"]) == 0
    assert "exported 2 run(s)" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "none.json"), "--tag", "nosuch"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no stored run matches tag=nosuch (stored tags: base); nothing was exported" in err
    assert not (tmp_path / "none.json").exists()
    assert main(["export", str(tmp_path / "base.CSV"), "--tag", "base"]) == 0  # the extension picks the format
    assert (tmp_path / "base.CSV").read_text().startswith("key,")
    assert main(["export", str(tmp_path / "base.data"), "--tag", "base", "--format", "csv"]) == 0
    assert (tmp_path / "base.data").read_text() == (tmp_path / "base.CSV").read_text()


def test_an_import_says_when_its_runs_stand_apart_from_the_stored_study_of_their_name(tiny_model, tmp_path, capsys):
    """Box B's seeds of an edited recipe (or other data) imported beside box A's: no verdict reads them
    together, and the next one trained their seeds again without a word."""
    box_a, box_b = str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")
    main(_args(tiny_model, "--seeds", "0-1", "--set", "name=mine", "--store", box_a))
    main(_args(tiny_model, "--seeds", "2-3", "--set", "name=mine", "--store", box_b))
    assert main(["export", str(tmp_path / "same.json"), "--store", box_b]) == 0
    capsys.readouterr()
    assert main(["import", str(tmp_path / "same.json"), "--store", box_a]) == 0  # one study of four seeds
    assert "note" not in capsys.readouterr().out
    main(_args(tiny_model, "--seeds", "4-6", "--set", "name=mine", "--set", "lr=1e-3", "--store", box_b))
    assert main(["export", str(tmp_path / "edited.json"), "--store", box_b, "--seeds", "4-6"]) == 0
    capsys.readouterr()
    assert main(["import", str(tmp_path / "edited.json"), "--store", box_a]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"imported 3 run\(s\) .* note: polarity / tiny-bert / mine is stored as 2 studies \(recipe "
                     r"content \w+ \(lr=\S+\): 4 seed\(s\); recipe content \w+ \(lr=0\.001\): 3 seed\(s\), 3 "
                     r"imported\); a verdict reads the one of its own recipe, data and stack and trains the seeds it "
                     r"lacks", out), out
    assert main(["import", str(tmp_path / "edited.json"), "--store", box_a]) == 0  # nothing added: said before
    assert "note" not in capsys.readouterr().out
    main(_args(tiny_model, "--seeds", "7", "--set", "name=mine", "--set", "lr=1e-3", "--store", box_b))
    assert main(["export", str(tmp_path / "more.json"), "--store", box_b, "--seeds", "7"]) == 0
    assert main(["export", str(tmp_path / "both.json"), "--store", box_a]) == 0
    capsys.readouterr()
    assert main(["import", str(tmp_path / "more.json"), "--store", box_a]) == 0  # joins the edited version's seeds
    assert main(["import", str(tmp_path / "both.json"), "--store", str(tmp_path / "new.sqlite")]) == 0  # nothing held
    assert "note" not in capsys.readouterr().out
    box_c = str(tmp_path / "c.sqlite")  # mine held at lr 1e-3 only; its default lr held under the recipe's own name
    main(_args(tiny_model, "--seeds", "0-1", "--store", box_c))
    main(_args(tiny_model, "--seeds", "0-1", "--set", "name=mine", "--set", "lr=1e-3", "--store", box_c))
    capsys.readouterr()
    assert main(["import", str(tmp_path / "same.json"), "--store", box_c]) == 0  # mine at the default lr
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"note: polarity / tiny-bert / \S+ \| mine is stored as 2 studies \(recipe content \w+ "
                     r"\(lr=2e-05\): 4 seed\(s\), 2 imported; recipe content \w+ \(lr=0\.001\): 2 seed\(s\)\)", out), out


def test_an_import_says_which_tags_its_runs_joined_and_can_leave_them_out(tiny_model, tmp_path, capsys):
    """A colleague's export tagged 'base' once joined one's own 'base' without a word, and a later
    gate compared the wrong version."""
    main(_args(tiny_model, "--seeds", "0-1", "--set", "name=mine"))
    main(["tag", "base"])
    assert main(["export", str(tmp_path / "theirs.json"), "--tag", "base"]) == 0
    mine = str(tmp_path / "mine.sqlite")
    main(_args(tiny_model, "--seeds", "0-1", "--set", "lr=1e-3", "--set", "name=mine", "--store", mine))
    main(["tag", "base", "--store", mine])
    capsys.readouterr()
    assert main(["import", str(tmp_path / "theirs.json"), "--store", mine]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "imported 2 run(s) from" in out and "tag 'base': 2 run(s) of the file; it held 2 run(s) here before" in out
    assert "note: tag 'base' now holds runs of the file beside the 2 it held here; `stabench untag` takes runs " \
           "off, and `stabench import --no-tags` imports runs without their tags" in out
    assert "note: the tag holds 2 versions of recipe 'mine' on polarity / tiny-bert" in out
    assert main(["export", str(tmp_path / "both.json"), "--tag", "base", "--store", mine]) == 0
    theirs = [run["key"] for run in json.loads((tmp_path / "theirs.json").read_text())]
    with sqlite3.connect(mine) as conn:  # a damaged stored run of one's own under the tag: not the import's business
        conn.execute("UPDATE runs SET result_json = '{' WHERE key NOT IN (?, ?)", theirs)
    assert main(["import", str(tmp_path / "theirs.json"), "--store", mine]) == 0  # again: said before
    out = " ".join(capsys.readouterr().out.split())
    assert "imported 0 run(s)" in out and "note" not in out
    assert main(["import", str(tmp_path / "both.json"), "--store", str(tmp_path / "new.sqlite")]) == 0
    out = " ".join(capsys.readouterr().out.split())  # a new tag that holds two versions: said too
    assert "tag 'base': 4 run(s) of the file (new here)" in out and "the tag holds 2 versions of recipe 'mine'" in out
    fresh = str(tmp_path / "fresh.sqlite")
    assert main(["import", str(tmp_path / "theirs.json"), "--store", fresh, "--no-tags"]) == 0
    assert "tag '" not in capsys.readouterr().out
    assert main(["runs", "--tag", "base", "--store", fresh]) == 2  # no run holds it
    assert main(["import", str(tmp_path / "theirs.json"), "--store", fresh]) == 0  # again, with its tags
    out = " ".join(capsys.readouterr().out.split())
    assert "imported 0 run(s)" in out and "tag 'base': 2 run(s) of the file (new here)" in out and "note" not in out
    record = json.loads((tmp_path / "theirs.json").read_text())
    (tmp_path / "spaced.json").write_text(json.dumps([{**record[0], "tags": ["base v1"]}]))
    capsys.readouterr()  # an export from before tags were checked: imported, and the tag no command names is said
    assert main(["import", str(tmp_path / "spaced.json"), "--store", str(tmp_path / "spaced.sqlite")]) == 0
    assert re.search(r"tag 'base v1': 1 run\(s\) of the file \(new here\) note: tag 'base v1' is invalid; expected "
                     r"letters, .*: tag:NAME and --stabench-tag cannot name it; `stabench untag` takes it off",
                     " ".join(capsys.readouterr().out.split()))
    assert main(["untag", "base v1", "--store", str(tmp_path / "spaced.sqlite")]) == 0
    (tmp_path / "twice.json").write_text(json.dumps(record + record + record[:1]))  # an export appended to itself
    capsys.readouterr()
    assert main(["import", str(tmp_path / "twice.json"), "--store", str(tmp_path / "twice.sqlite")]) == 0
    assert "imported 2 run(s) from" in (out := " ".join(capsys.readouterr().out.split()))
    assert "; 0 already stored; the file holds 2 of them more than once" in out
    from stabench.store import Store as StoreClass

    def interrupted(self, runs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:  # Ctrl-C while merging: one transaction, rolled back
        patch.setattr(StoreClass, "merge", interrupted)
        capsys.readouterr()
        assert main(["import", str(tmp_path / "theirs.json"), "--store", str(tmp_path / "stopped.sqlite")]) == 130
        assert "interrupted: nothing was imported; running the same command again imports only what is missing" in \
            " ".join(capsys.readouterr().out.split())
    assert main(["runs", "--tag", "base v1", "--store", str(tmp_path / "spaced.sqlite")]) == 2  # no run holds it
    empty = tmp_path / "empty.sqlite"
    from stabench.store import Store

    Store(empty).close()
    assert main(["export", str(tmp_path / "e.json"), "--store", str(empty)]) == 2  # not an empty baseline to upload
    assert "holds no runs; nothing was exported to" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "e.json").exists()


def test_seeds_and_a_recipe_files_content_select_runs_in_every_listing_command(tiny_model, tmp_path, capsys):
    """--recipe FILE selects the runs of the file's content now, not the earlier versions stored
    under its name; --seeds narrows runs, summary, tag, untag and export alike."""
    recipe = tmp_path / "mine.json"
    recipe.write_text('{"preset": "bert-default", "max_steps": 6, "trace_every": 2, "lr": 0.001}')
    run = ["run", "--task", "polarity", "--model", tiny_model, "--recipe", str(recipe), "--device", "cpu"]
    assert main([*run, "--seeds", "0-2"]) == 0
    recipe.write_text('{"preset": "bert-default", "max_steps": 6, "trace_every": 2, "lr": 0.002}')
    assert main([*run, "--seeds", "0-1"]) == 0
    capsys.readouterr()
    assert main(["runs", "--recipe", "mine"]) == 0 and "5 stored run(s)" in capsys.readouterr().out
    assert main(["runs", "--recipe", str(recipe), "--seeds", "1-4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 stored run(s)") and f"tokenizers {importlib.metadata.version('tokenizers')}" in out
    assert f", datasets {importlib.metadata.version('datasets')}," in out  # keyed, so listed like the rest
    assert main(["tag", "base", "--recipe", str(recipe)]) == 0
    assert "tagged 2 of 2 matching run(s)" in capsys.readouterr().out
    assert main(["tag", "base", "--recipe", str(recipe)]) == 0
    assert "tagged 0 of 2 matching run(s) as 'base' (2 had it already)" in capsys.readouterr().out
    assert main(["untag", "base", "--seeds", "0"]) == 0 and "off 1 run(s)" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "one.json"), "--tag", "base", "--seeds", "0-1"]) == 0
    (exported,) = json.loads((tmp_path / "one.json").read_text())
    assert exported["seed"] == 1 and exported["recipe"]["lr"] == 0.002
    for argv, message in [
            (["untag", "base", "--seeds", "5"], "no matching run has a seed in --seeds 5; they have seeds 1"),
            (["export", str(tmp_path / "no.json"), "--seeds", "7"], "they have seeds 0-2"),
            (["summary", "--recipe", str(recipe), "--recipe-hash", "ffff"], "not --recipe-hash ffff; give one")]:
        assert main(argv) == 2
        assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "no.json").exists()


def _stored_runs(store) -> int:
    """Runs in the store file; 0 while the CLI has yet to create it or its schema."""
    if not store.exists():
        return 0
    with sqlite3.connect(store) as db:
        try:
            return db.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:  # "no such table": the schema is being created
            return 0


@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_kill_keeps_finished_seeds_and_a_rerun_trains_only_the_rest(tiny_model, tmp_path, stop, code):
    store = tmp_path / "s.sqlite"
    env = {**os.environ, "STABENCH_STORE": str(store)}
    argv = [sys.executable, "-m", "stabench.cli", *_args(tiny_model, "--seeds", "0-4", "--set", "max_steps=60")]
    # SIGINT's default action, as a terminal gives it: a suite started in the background (`cmd &` in a
    # script) passes it on ignored, and Python then never raises KeyboardInterrupt.
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and _stored_runs(store) < 2 and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[0][-2000:]  # it stopped by itself: why
    process.send_signal(stop)
    first = " ".join(process.communicate(timeout=120)[0].split())  # rich wraps long lines
    assert process.returncode == code, first
    assert "interrupted after" in first and "run the same command again" in first
    stored = _stored_runs(store)
    assert 2 <= stored < 5
    if stop == signal.SIGTERM:
        process = subprocess.Popen([*argv, "--recompute"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        while time.time() < deadline and process.poll() is None and "seed 0:" not in (process.stdout.readline() or ""):
            pass
        process.send_signal(stop)
        redone = " ".join(process.communicate(timeout=120)[0].split())
        assert "finished seeds are stored, running it again trains every seed again, as --recompute asks (without " \
               "it, seeds not retrained yet keep their earlier runs)" in redone
        return  # the rerun is the same as after Ctrl-C
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    out = " ".join(again.stdout.split())
    assert out.count("stored, not retrained") == stored
    assert out.count("trained in") == 5 - stored


@pytest.mark.parametrize("argv, message", [
    (["run", "--task", "polarity", "--sed", "0-1"],
     "stabench run: error: unrecognized arguments: --sed 0-1; did you mean --seeds? (see stabench run --help)"),
    (["summary", "--cii", "--plot-formats=pdf"], "stabench summary: error: unrecognized arguments: --cii "
     "--plot-formats=pdf; did you mean --ci for --cii, --plot-format for --plot-formats=pdf? (see stabench summary "
     "--help)"),
    (["runs", "--frobnicate"], "stabench runs: error: unrecognized arguments: --frobnicate (see stabench runs --help)"),
    (["runs", "--torch", "2.13"], "stabench runs: error: unrecognized arguments: --torch 2.13; did you mean "
     "--env torch=2.13? (see stabench runs --help)"),
    (["tag", "base", "--torch"], "stabench tag: error: unrecognized arguments: --torch; did you mean "
     "--env torch=VALUE? (see stabench tag --help)"),
    (["summary", "--cpu-threads=2", "--sed", "1", "--transformers", "5.0"], "stabench summary: error: unrecognized "
     "arguments: --cpu-threads=2 --sed 1 --transformers 5.0; did you mean --env cpu_threads=2,transformers=5.0 for "
     "--cpu-threads=2 --transformers, --seeds for --sed? (see stabench summary --help)"),
    (["run", "--task", "polarity", "--lr", "1e-3", "--sed", "1", "--epochs=1"], "stabench run: error: unrecognized "
     "arguments: --lr 1e-3 --sed 1 --epochs=1; did you mean --set lr=1e-3,epochs=1 for --lr --epochs=1, --seeds for "
     "--sed? (see stabench run --help)"),
    (["run", "--task", "polarity", "--precision", "bf16"], "stabench run: error: unrecognized arguments: --precision "
     "bf16; did you mean --set precision=bf16? (see stabench run --help)"),
    (["run", "--task", "polarity", "--transformers", "5.0"], "stabench run: error: unrecognized arguments: "
     "--transformers 5.0; a run trains under the transformers installed here "
     f"({importlib.metadata.version('transformers')}) (see stabench run --help)"),
    (["compare", "tag:base", "store", "--torch", "2.13", "--cpu-threads=1"], "stabench compare: error: unrecognized "
     "arguments: --torch 2.13 --cpu-threads=1; did you mean env:torch=2.13,cpu_threads=1 as the baseline or the "
     "current side? (see stabench compare --help)"),
    (["run", "--task"], "stabench run: error: argument --task: expected one argument (see stabench run --help)"),
    (["run", "--cpu-threads", "two"], "stabench run: error: argument --cpu-threads: 'two' is invalid; expected an "
     "integer from 1 to 1024 (see stabench run --help)"),
    # Options before the command: "the following arguments are required: command", or "invalid choice: 'x'".
    (["--bogus"], "stabench: error: --bogus: options come after the command, as in stabench COMMAND --bogus; "
     "commands: run, runs, summary, export, import, compare, tag, untag (see stabench --help)"),
    (["--store", "x.sqlite", "runs"], "stabench: error: --store: options come after the command, as in stabench runs "
     "--store x.sqlite; commands: run, runs, summary, export, import, compare, tag, untag (see stabench --help)"),
])
def test_a_bad_argument_is_one_line_naming_the_nearest_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err == message + "\n"


@pytest.mark.parametrize("argv", [["tag", "base", "--recipe-hash", ""], ["runs", "--show", " "],
                                  ["export", "x.json", "--store", ""]])
def test_an_empty_filter_or_path_is_refused_not_read_as_every_run(argv, capsys):
    """An unset shell variable gives ``--recipe-hash ""``, the start of every hash: tagging all runs."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "is empty; expected a value, or leave the option out" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("argv", [["summary", "--recipe", "llrd", "--recipe", "default"],
                                  ["tag", "base", "--seeds", "0-4", "--seeds", "5"]])
def test_a_filter_given_twice_is_refused_not_narrowed_to_its_last_value(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert f"error: argument {argv[-2]}: given twice ({argv[-3]!r} and {argv[-1]!r}); a filter takes one value" \
        in capsys.readouterr().err.splitlines()[-1]


def test_a_bad_import_file_leaves_no_new_store_behind(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[42]")
    store = tmp_path / "misspelt" / "s.sqlite"
    assert main(["import", str(bad), "--store", str(store)]) == 2
    assert "not a stabench export" in capsys.readouterr().err and not store.exists()
    for empty in ("[]\n", "key,result_json\n"):  # a CI job's placeholder artifact: no export is empty
        bad.write_text(empty)
        assert main(["import", str(bad), "--store", str(store)]) == 2
        assert " ".join(capsys.readouterr().err.split()) == (
            f"error: {bad}: holds no runs; expected a `stabench export` file of one or more") and not store.exists()


def test_an_interrupted_run_without_a_store_does_not_claim_its_seeds_are_stored(monkeypatch, capsys):
    import stabench.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stabench.train, "prepare", interrupted)
    assert main(["run", "--task", "polarity", "--seeds", "0", "--no-store"]) == 130
    out = " ".join(capsys.readouterr().out.split())
    assert "nothing was stored (--no-store)" in out and "are stored" not in out


def test_ctrl_c_before_a_command_starts_its_work_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C while `stabench run` imported torch printed a 20-line KeyboardInterrupt traceback."""
    import stabench.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stabench.cli, "import_user_code", interrupted)
    assert main(["runs"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_run_that_fails_closes_its_store(monkeypatch, tmp_path, capsys):
    """A script calling main() over and over kept one open connection per failed run."""
    import stabench.cli

    opened = []

    class Recorded(stabench.cli.Store):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(stabench.cli, "Store", Recorded)
    assert main(["run", "--task", "polarity", "--seeds", "0", "--model", str(tmp_path / "no-such-model"),
                 "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "no-such-model' does not exist" in capsys.readouterr().err
    assert len(opened) == 1 and opened[0]._conn is None


def test_local_task_options_read_as_local_task_reads_them(tmp_path):
    """--text-columns "premise, hypothesis" (a space after the comma) and --metrics give the task a
    claim's local_task would."""
    from stabench.cli import _task_from_args, build_parser

    (tmp_path / "t.csv").write_text("premise,hypothesis,label\na,b,0\nc,d,1\n")
    args = build_parser().parse_args(["run", "--task", "pairs", "--train-file", str(tmp_path / "t.csv"), "--eval-file",
                                      str(tmp_path / "t.csv"), "--text-columns", "premise, hypothesis",
                                      "--metrics", "macro_f1, accuracy"])
    task = _task_from_args(args)
    assert task.text_columns == ("premise", "hypothesis") and task.metrics == ("macro_f1", "accuracy")


def test_the_reading_commands_do_not_load_torch_or_transformers(tiny_model, tmp_path):
    """`stabench runs`, `summary`, `export` ... took 6 s here before printing a line, loading the
    libraries that only training needs."""
    store = str(tmp_path / "s.sqlite")
    assert main([*_args(tiny_model, "--seeds", "0-1"), "--store", store]) == 0
    assert main(["tag", "base", "--store", store]) == 0
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from stabench.cli import main; "
         f"codes = [main([*command, '--store', {store!r}]) for command in "
         f"(['runs', '--model', {tiny_model!r}], ['summary', '--seeds', '0-1'], "
         f"['export', {str(tmp_path / 'e.json')!r}], ['compare', 'tag:base', 'store'])]; "
         "print(codes, sorted(name for name in ('torch', 'transformers', 'datasets') if name in sys.modules))"],
        capture_output=True, text=True, timeout=120)
    # each ran to its end (compare's gate fails on 2 seeds a side: too few), with none of them loaded
    assert loaded.stdout.splitlines()[-1] == "[0, 0, 0, 1] []", loaded.stdout + loaded.stderr
