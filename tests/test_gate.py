import dataclasses
import json
import math
import re
import sqlite3
import sys

import hypothesis.strategies as st
import pytest
from hypothesis import given

from stabench.cli import main
from stabench.gate import (DEFAULT_LIMITS, check, check_limits, compare_sources, compare_studies,
                           group_studies, load_source, name_studies, parse_env, parse_limits, pick_variant, what_changed)
from stabench.recipes import distinguishing_fields, get_recipe
from stabench.report import session_markdown, write_json
from stabench.result import RunResult
from stabench.store import Store


def _run(seed, score, *, recipe="r", torch="2.13.0", failed=None, metric="accuracy"):
    failed = score <= 0.5 if failed is None else failed
    return RunResult(
        key=f"{recipe}-{torch}-{seed}-{score}", task={"name": "t", "train_size": None}, model={"name": "m"},
        recipe={}, recipe_name=recipe, recipe_hash=f"h-{recipe}", seed=seed,
        environment={"torch": torch, "transformers": "5", "datasets": "5", "device_kind": "cpu",
                     "device_name": "x", "precision": "fp32"},
        metrics={metric: score, "accuracy": score}, primary_metric=metric, majority_accuracy=0.5, failed=failed,
        collapsed=False, diverged=False, steps=1, wall_time_s=1.0, steps_per_s=1.0,
        started_at="2026-01-01T00:00:00", finished_at=f"2026-01-01T00:00:{seed:02d}")


GOOD = [0.90, 0.91, 0.92, 0.89, 0.90, 0.93, 0.91, 0.90]


def test_compare_studies_pairs_recipes_of_one_stack_in_both_directions():
    """The library call behind ``stabench summary --compare``: every ordered pair of recipes on one
    stack, the level split over them; a recipe on another stack, or with one seed, is in no pair."""
    runs = [_run(s, v - shift, recipe=recipe) for recipe, shift in (("r", 0), ("s", 0.2), ("u", 0.01))
            for s, v in enumerate(GOOD[:5])]
    runs += [_run(s, v, recipe="r", torch="2.11.0") for s, v in enumerate(GOOD[:5])] + [_run(0, 0.9, recipe="one")]
    studies = group_studies(name_studies(runs))
    every = compare_studies(studies)
    r = "r [torch 2.13.0]"  # r's other variant, on torch 2.11.0, has no other recipe to pair with
    assert sorted((c["name_a"], c["name_b"]) for c in every) == sorted(
        (a, b) for a in (r, "s", "u") for b in (r, "s", "u") if a != b)
    assert {c["n_comparisons"] for c in every} == {6} and {c["n_a"] for c in every} == {5}
    assert {c["setting"] for c in every} == {"t / m"}
    worse = next(c for c in every if (c["name_a"], c["name_b"]) == (r, "s"))
    assert worse["mannwhitney_p_a_better"] < 0.05 / 6  # r is 0.2 above s on every seed
    against = compare_studies(studies, against="s")
    assert [(c["name_a"], c["name_b"]) for c in against] == [(r, "s"), ("s", r), ("u", "s"), ("s", "u")]
    assert {c["n_comparisons"] for c in against} == {4}
    with pytest.raises(ValueError, match="no study with 2 or more seeds is of recipe 'one'; their recipes: one, r, "):
        compare_studies(studies, against="one")


def test_worse_study_regresses_with_the_metric_named():
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    current = [_run(s, v - 0.3 if s % 2 else v - 0.05, torch="2.13.0") for s, v in enumerate(GOOD)]
    result = check("claim-x", current, baseline)
    assert result.regressed and result.verdict == "REGRESSED"
    assert any(reason.startswith("accuracy: mean got worse") for reason in result.reasons)
    assert result.row()["claim"] == "claim-x"


def test_a_regression_on_other_seeds_of_unchanged_runs_is_failed_and_said_so():
    """Other seeds of the same stack, recipe, data and code: a significant drop is either one of the
    level's false alarms or a change no record holds (p=7.8e-5 is a sign of the latter), so it fails,
    with a note saying which two it can be (a new user got REGRESSED beside "only the seeds")."""
    baseline = [_run(s, v) for s, v in enumerate(GOOD)]
    other_seeds = [_run(s + 8, v - 0.3 if s % 2 else v - 0.05) for s, v in enumerate(GOOD)]
    result = check("c", other_seeds, baseline)
    assert result.changed == "only the seeds (0-7 -> 8-15)" and result.verdict == "REGRESSED"
    assert result.baseline_note.startswith("only the seeds differ among what the gate compares: this regression")
    assert not check("c", [_run(s + 8, v) for s, v in enumerate(GOOD)], baseline).baseline_note  # no regression
    # Another commit of the project's code, which no key holds (a model edited in it), is named instead.
    committed = [dataclasses.replace(r, environment={**r.environment, "project_git_commit": commit * 40})
                 for runs, commit in ((baseline, "a"), (other_seeds, "b")) for r in runs]
    edited = check("c", committed[len(baseline):], committed[:len(baseline)])
    assert edited.verdict == "REGRESSED" and edited.changed == "project commit aaaaaaaaaaaa -> bbbbbbbbbbbb"
    assert not edited.baseline_note


def test_identical_and_better_studies_pass_and_direction_is_respected():
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    assert not check("c", [_run(s, v) for s, v in enumerate(GOOD)], baseline).regressed
    assert not check("c", [_run(s, v + 0.05) for s, v in enumerate(GOOD)], baseline).regressed
    # For a lower-is-better metric the same shift up is a regression.
    lower_base = [_run(s, v, torch="2.11.0", metric="train_loss", failed=False) for s, v in enumerate(GOOD)]
    lower_now = [_run(s, v + 0.2, metric="train_loss", failed=False) for s, v in enumerate(GOOD)]
    assert check("c", lower_now, lower_base).regressed


def test_more_failures_regress_and_no_baseline_is_reported():
    baseline = [_run(s, 0.9, torch="2.11.0") for s in range(10)]
    current = [_run(s, 0.5 if s < 6 else 0.9) for s in range(10)]
    result = check("c", current, baseline, {"max_mean_drop": None, "max_std_increase": None})
    assert result.regressed and "more failed runs" in result.reasons[0]
    other = [_run(s, 0.9, recipe="other") for s in range(4)]
    assert check("c", other, baseline).verdict == "no baseline"
    another_model = [dataclasses.replace(r, model={"name": "m2"}) for r in baseline]  # another study
    assert check("c", current, another_model).verdict == "no baseline"
    without_metric = [dataclasses.replace(r, metrics={"f1": 0.9}, primary_metric="f1") for r in baseline]
    assert check("c", current, without_metric).verdict == "no baseline"  # a task whose metrics changed, not KeyError


def test_too_few_seeds_to_show_a_regression_fail_the_gate_instead_of_passing_it():
    """2 seeds a side: even every run collapsing is not significant, so the gate cannot pass."""
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate([0.98, 0.99])]
    collapsed = [_run(s, 0.5) for s in range(2)]
    result = check("c", collapsed, baseline)
    assert not result.regressed and result.fails and result.verdict == "TOO FEW SEEDS"
    assert result.why.startswith("2 vs 2 seeds: no mean or failure test can reach p < 0.0167 (alpha 0.05 / 3 checks) "
                                 "(smallest possible p 0.167)")
    four = check("c", [_run(s, 0.5) for s in range(4)], [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD[:4])])
    assert four.regressed and four.fails and four.verdict == "REGRESSED"
    assert check("c", collapsed, baseline, {"alpha": 0.2}).verdict == "TOO FEW SEEDS"  # 0.2 / 3 checks
    mean_only = check("c", collapsed, baseline, {"alpha": 0.2, "max_std_increase": None, "max_extra_failures": None})
    assert mean_only.verdict == "REGRESSED" and mean_only.why.endswith("one-sided Mann-Whitney p=0.167 < 0.2")


def test_one_run_on_either_side_fails_the_gate_as_too_few_seeds_never_passes_as_no_baseline():
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    failed = check("c", [_run(0, 0.3)], baseline)
    assert failed.fails and failed.verdict == "TOO FEW SEEDS" and failed.baseline.n == len(GOOD)
    assert failed.why == "8 vs 1 seeds: no test can compare fewer than 2 runs a side; use more seeds on each side"
    assert failed.changed == "torch 2.11.0 -> 2.13.0" and failed.baseline_keys
    lone = check("c", [_run(s, v) for s, v in enumerate(GOOD)], baseline[:1])
    assert lone.fails and lone.why.startswith("1 vs 8 seeds")


def test_runs_tagged_for_the_claim_are_its_baseline_whatever_their_recipe_name():
    baseline = [_run(s, v, recipe="old-name", torch="2.11.0") for s, v in enumerate(GOOD)]
    current = [_run(s, v - 0.3) for s, v in enumerate(GOOD)]
    assert check("c", current, baseline).verdict == "no baseline"
    assert check("c", current, baseline, same_study=True).verdict == "REGRESSED"


def test_the_baseline_is_cut_to_the_current_seeds_and_every_current_run_counts():
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    few = check("c", [_run(s, v) for s, v in enumerate(GOOD[:4])], baseline)  # seed for seed: 4 vs 4
    assert few.current.n == few.baseline.n == 4
    assert sorted(r.seed for r in baseline if r.key in few.baseline_keys) == [0, 1, 2, 3]
    # Seeds the baseline lacks stay: here they collapse, which must not hide behind the shared seeds.
    more = check("c", [_run(s, v) for s, v in enumerate(GOOD[:4] + [0.5] * 12)], baseline[:4])
    assert (more.current.n, more.baseline.n) == (16, 4) and more.regressed
    disjoint = check("c", [_run(s + 20, v) for s, v in enumerate(GOOD)], baseline[:6])  # no seed shared: all
    assert (disjoint.current.n, disjoint.baseline.n) == (8, 6)


def test_compare_sources_groups_studies_and_skips_shared_runs_of_the_store():
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    store = baseline + [_run(s, v - 0.3) for s, v in enumerate(GOOD)]
    results = compare_sources(baseline, store, current_is_store=True)
    assert len(results) == 1 and results[0].regressed and results[0].current.mean < 0.7
    assert {r.changed for r in compare_sources(baseline, store)} == {"same runs", "torch 2.11.0 -> 2.13.0"}


@pytest.mark.filterwarnings("ignore:.*do not record which fields made their keys:UserWarning")  # hand-made records
def test_sources_from_tags_environments_and_export_files_read_scores_without_traces(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        trace = {"loss": [0.7] * 50, "train_loss_steps": [1, 1]}
        old = [dataclasses.replace(_run(s, v, torch="2.11.0"), trace=trace) for s, v in enumerate(GOOD)]
        everything = old + [_run(s, v) for s, v in enumerate(GOOD)]
        for run in everything:
            store.put(run)
        store.tag([r.key for r in old], "old")
        store.export(tmp_path / "old.json")
        for source, expected in (("tag:old", old), ("env:torch=2.11.0", old), (str(tmp_path / "old.json"), everything)):
            runs = load_source(source, store)
            assert sorted(r.key for r in runs) == sorted(r.key for r in expected)
            assert [r.metrics for r in runs if r.key == old[0].key] == [old[0].metrics]
            assert not any(r.trace for r in runs)  # a gate weighs scores: a store's traces are most of its bytes
            # A claim's own baseline is the runs a tag gave that claim (none here); other sources
            # give none either (each claim is then matched by task, model and recipe), not every run.
            assert load_source(source, store, claim="test_x.py::test_claim") == []
        with pytest.raises(FileNotFoundError, match=r"^baseline 'old' is neither tag:NAME, .*; the store has a tag "
                                                    r"'old': did you mean tag:old\?$"):
            load_source("old", store)


@pytest.mark.parametrize("call, message", [
    (lambda: parse_env("cuda=12"), "environment filter 'cuda=12' is invalid"),
    (lambda: parse_env("torch="), r"environment filter 'torch=' is invalid; expected FIELD=VALUE \(VALUE none for "),
    (lambda: parse_limits("max_drop=1"), "gate limit 'max_drop' is unknown; expected one of max_mean_drop, "),
    (lambda: parse_limits("alpha"), "gate limit 'alpha' is invalid; expected NAME=VALUE"),
    (lambda: parse_limits("alpha=high"), r"gate limit alpha=high is invalid; expected a number in \(0, 1\)"),
    (lambda: parse_limits("alpha=0"), r"gate limit alpha=0 is invalid; expected a number in \(0, 1\)"),  # no p is < 0
    (lambda: parse_env("torch=2.14.0,torch=2.13.0"), "environment filter 'torch=2.14.0,torch=2.13.0' names torch "
                                                    "twice; expected each field once"),
    (lambda: parse_limits("alpha=0.1,alpha=0.01"), "gate limits 'alpha=0.1,alpha=0.01' name alpha twice"),
    (lambda: load_source("nothing-here.json"), "baseline 'nothing-here.json' is neither tag:NAME, env:FIELD=VALUE "
                                               "nor an existing export file"),
    (lambda: load_source("nothing-here.json", role="current"), "current 'nothing-here.json' is neither tag:NAME, "
                                                               "env:FIELD=VALUE, store "),
])
def test_bad_gate_input_is_named(call, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        call()


LIMIT_VALUES = {
    "alpha": st.floats(0, 1, exclude_min=True, exclude_max=True),
    "max_mean_drop": st.none() | st.floats(0, 10),
    "max_std_increase": st.none() | st.floats(0, 10),
    "max_extra_failures": st.none() | st.integers(0, 100),
}
BAD_LIMIT_VALUES = {
    "alpha": st.none() | st.floats(1, 1e9) | st.floats(-1e9, 0) | st.sampled_from([math.nan, math.inf]),
    "max_mean_drop": st.floats(-1e9, -1e-9) | st.sampled_from([math.nan, math.inf, "x"]),
    "max_std_increase": st.floats(-1e9, -1e-9) | st.sampled_from([math.nan, -math.inf, ""]),
    "max_extra_failures": st.integers(-100, -1) | st.floats(0.1, 0.9) | st.sampled_from([1.5, math.nan]),
}


@given(st.fixed_dictionaries({}, optional=LIMIT_VALUES))
def test_valid_limits_parse_from_text_as_given_over_the_defaults(limits):
    text = ",".join(f"{name}={'none' if value is None else repr(value)}" for name, value in limits.items())
    assert parse_limits(text) == check_limits(limits) == {**DEFAULT_LIMITS, **limits}


@given(st.lists(st.fixed_dictionaries({}, optional=LIMIT_VALUES), max_size=4))
def test_limits_of_several_texts_add_up_and_a_later_one_wins(pieces):
    """An ini file's --stabench-gate text, then each one on the command line."""
    texts = [",".join(f"{name}={'none' if value is None else repr(value)}" for name, value in limits.items())
             for limits in pieces]
    merged = {name: value for limits in pieces for name, value in limits.items()}
    assert parse_limits(texts) == {**DEFAULT_LIMITS, **merged}


@given(st.sampled_from(sorted(BAD_LIMIT_VALUES)).flatmap(lambda name: st.tuples(st.just(name),
                                                                                 BAD_LIMIT_VALUES[name])))
def test_impossible_limits_are_refused_with_the_limit_named(bad):
    name, value = bad
    with pytest.raises(ValueError, match=f"gate limit {name}=.* is invalid; expected "):
        check_limits({name: value})
    with pytest.raises(ValueError, match=f"gate limit {name}=.* is invalid; expected "):
        parse_limits(f"{name}={value}")


def test_what_changed_names_the_stack_and_inputs_that_differ():
    old = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    new = [_run(s, v) for s, v in enumerate(GOOD)]
    assert what_changed(old, new) == "torch 2.11.0 -> 2.13.0"
    assert check("c", new, old).changed == "torch 2.11.0 -> 2.13.0"
    assert what_changed(old, old) == "same runs"
    edited = [dataclasses.replace(r, key=r.key + "e", recipe_hash="h2", task={**r.task, "fingerprint": "f2"})
              for r in old]
    assert what_changed(old, edited) == "recipe content, data (same sizes, other examples)"
    smaller = [dataclasses.replace(r, key=r.key + "s", task={**r.task, "fingerprint": "f3", "n_train": 200, "n_eval": 80})
               for r in old]
    assert what_changed([dataclasses.replace(r, task={**r.task, "n_train": 200, "n_eval": 100}) for r in old],
                        smaller) == "data (200 train / 100 dev -> 200 train / 80 dev)"
    from stabench.recipes import get_recipe

    def with_recipe(runs, recipe):
        return [dataclasses.replace(r, key=f"{r.key}-{recipe.hash}", recipe=recipe.to_dict(), recipe_hash=recipe.hash)
                for r in runs]

    mine = get_recipe("bert-default-bc", name="mine")
    assert what_changed(with_recipe(old, mine), with_recipe(old, mine.replace(lr=1e-4, epochs=4))) == \
        "recipe content (epochs 3 -> 4, lr 2e-05 -> 0.0001)"
    assert what_changed(with_recipe(old, mine), with_recipe(old, mine.replace(lr=1e-4, epochs=4, dropout=0.2,
                                                                              warmup=0.2))) == \
        "recipe content (dropout 0.1 -> 0.2, epochs 3 -> 4, lr 2e-05 -> 0.0001, 1 more)"
    assert what_changed(with_recipe(old, mine), with_recipe(old, mine.replace(token_types=False))) == \
        "recipe content (token_types True -> False)"  # a default that to_dict leaves out is still a value
    llrd = get_recipe("bert-default", layerwise_lr_decay=0.9)  # same fields, rehashed by a correction
    assert what_changed(with_recipe(old, llrd), [dataclasses.replace(r, key=f"{r.key}b", recipe_hash="b") for r in
                                                 with_recipe(old, llrd)]) == \
        "recipe content (same fields; computation corrected)"
    hooked = get_recipe("bert-default", hook="freeze").to_dict()  # its hash needs the hook; its fields do not
    assert what_changed([dataclasses.replace(r, recipe=hooked, recipe_hash="h1") for r in old],
                        [dataclasses.replace(r, key=f"{r.key}b", recipe=hooked, recipe_hash="h2") for r in old]) == \
        "recipe content (same fields; hook 'freeze' edited, or computation corrected)"
    first, edited_hook = ({**hooked, "hook_fingerprint": f} for f in ("1a2b", "3c4d"))  # runs record their hook's
    assert what_changed([dataclasses.replace(r, recipe=first, recipe_hash="h1") for r in old],
                        [dataclasses.replace(r, key=f"{r.key}b", recipe=edited_hook, recipe_hash="h2") for r in old]) \
        == "recipe content (hook_fingerprint 1a2b -> 3c4d)"
    # A variant's label: a field that one of them lacks (stored before it) tells nothing.
    assert distinguishing_fields([first, edited_hook]) == ["hook_fingerprint"] and distinguishing_fields([hooked, first]) == []
    assert distinguishing_fields([hooked, first, edited_hook]) == ["hook_fingerprint"]
    assert what_changed([dataclasses.replace(r, recipe=hooked, recipe_hash="h1") for r in old],  # stored before
                        [dataclasses.replace(r, key=f"{r.key}b", recipe=edited_hook, recipe_hash="h2") for r in old]) \
        == "recipe content (same fields; hook 'freeze' edited, or computation corrected)"
    for malformed in (None, "bert-default"):  # imported records from elsewhere: no crash, no field names
        assert what_changed([dataclasses.replace(r, recipe=malformed) for r in old], edited).startswith(
            "recipe content, ")
    one, two = ([dataclasses.replace(r, key=f"{r.key}-{n}", environment={**r.environment, "cpu_threads": n})
                 for r in new] for n in (1, 2))
    assert what_changed(one, two) == "cpu_threads 1 -> 2"  # it changes a CPU run's result
    gpu_one, gpu_two = ([dataclasses.replace(r, environment={**r.environment, "device_kind": "cuda"}) for r in runs]
                        for runs in (one, two))
    assert what_changed(gpu_one, gpu_two) == "nothing recorded (same stack, inputs and seeds, other runs)"
    grown = [dataclasses.replace(r, key=f"{r.key}-more", seed=r.seed + 8) for r in gpu_two]  # more seeds since
    assert what_changed(gpu_one, grown[:2]) == "only the seeds (0-7 -> 8-9)"


def _on(runs, **environment):
    return [dataclasses.replace(r, environment={**r.environment, **environment}) for r in runs]


def test_the_baseline_keys_retrained_elsewhere_or_to_other_scores_are_not_called_same_runs():
    """A CI runner with an empty store retrains the baseline file's keys: on another CPU model or
    commit, or to other scores, the changed column must name that, never say nothing changed."""
    baseline = _on([_run(s, v) for s, v in enumerate(GOOD)], cpu_model="Intel Xeon", project_git_commit="a" * 40)
    failing = [dataclasses.replace(r, metrics={**r.metrics, "accuracy": 0.5}, failed=True) for r in baseline]
    elsewhere = _on(failing, cpu_model="AMD EPYC", project_git_commit="b" * 40)
    assert what_changed(baseline, elsewhere) == "cpu_model Intel Xeon -> AMD EPYC, project commit aaaaaaaaaaaa -> " \
        "bbbbbbbbbbbb"
    (row,) = compare_sources(baseline, elsewhere)
    assert row.regressed and row.changed.startswith("cpu_model Intel Xeon -> AMD EPYC")
    (row,) = compare_sources(baseline, failing)  # same machine and commit as recorded, other scores
    assert row.regressed and row.changed == "same keys, other scores"
    assert "scored otherwise: a GPU's nondeterministic kernels, so possibly a false alarm" in row.baseline_note
    gpu = _on(baseline, device_kind="cuda", gpu_driver="570.1", cudnn="91000")
    upgraded = _on([dataclasses.replace(r, metrics={**r.metrics, "accuracy": 0.5}, failed=True) for r in gpu],
                   gpu_driver="580.2")
    assert what_changed(gpu, upgraded) == "gpu_driver 570.1 -> 580.2"  # and the host's CPU is none of it
    assert what_changed(gpu, _on(upgraded, gpu_driver=None)) == "same keys, other scores"  # recorded on one side
    for twice in ([*baseline, failing[0]], [failing[0], *baseline]):  # a seed twice: its other score counts
        assert what_changed(baseline, twice) == "same keys, other scores"
    retrained = [dataclasses.replace(r, finished_at="2026-02-01T00:00:00") for r in baseline]  # same scores again
    assert what_changed(baseline, retrained) == "same runs" and not compare_sources(baseline, retrained)[0].fails


def test_the_gate_says_which_stacks_it_compared_where_the_changed_column_gives_only_the_difference(tmp_path, capsys):
    """A CI log answers "what did we test?": each side's stacks once, below the table and in the
    Markdown report; nothing where no baseline was found."""
    from stabench.report import stacks_line

    xeon = _on([_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)], cpu_model="Intel Xeon", cpu_threads=1)
    gpu = _on([_run(s, v) for s, v in enumerate(GOOD)], device_kind="cuda", device_name="NVIDIA H100", cuda="12.8",
              precision="bf16")
    entries = [check("c", gpu, xeon).entry(), check("d", xeon, xeon).entry()]
    assert stacks_line(entries) == ("stacks: baseline torch 2.11.0, transformers 5, datasets 5, cpu Intel Xeon "
                                    "(1 thread), fp32; current torch 2.13.0, transformers 5, datasets 5, cuda NVIDIA "
                                    "H100 (CUDA 12.8), bf16 | torch 2.11.0, transformers 5, datasets 5, cpu Intel "
                                    "Xeon (1 thread), fp32")
    assert stacks_line(entries[1:]).endswith("fp32; current the same")
    newer = _on(xeon, tokenizers="0.23.3")
    assert stacks_line([check("d", newer, xeon).entry()]).endswith(
        "; current torch 2.11.0, transformers 5, tokenizers 0.23.3, datasets 5, cpu Intel Xeon (1 thread), fp32")
    crossed = [check("d", gpu, xeon).entry(), check("f", xeon, gpu).entry()]  # each side holds both stacks
    assert not stacks_line(crossed).endswith("the same")
    assert stacks_line([check("g", [dataclasses.replace(r, environment={}) for r in xeon], xeon).entry()]).endswith(
        "; current not recorded")
    assert stacks_line([check("e", gpu, []).entry()]) is None
    older = [{**entry, "detail": {k: v for k, v in entry["detail"].items() if k != "produced_by"}} for entry in entries]
    assert stacks_line(older) is None  # a JSON report kept from before 2026-12-06 makes its Markdown again
    markdown = session_markdown({"claims": [], "seeds": [], "gate": entries[1:], "comparisons": [],
                                 "baseline": "tag:base", "trained": {"by_seed_items": [], "by_verdicts": []}})
    assert "Stacks: baseline torch 2.11.0, transformers 5, datasets 5, cpu Intel Xeon (1 thread), fp32; current " \
           "the same." in markdown
    with Store(tmp_path / "s.sqlite") as store:
        for run in xeon + gpu:
            store.put(run)
        store.tag([r.key for r in xeon], "base")
    md = tmp_path / "gate.md"
    assert main(["compare", "tag:base", "store", "--store", str(tmp_path / "s.sqlite"), "--md", str(md)]) == 0
    assert "stacks: baseline torch 2.11.0, transformers 5, datasets 5, cpu Intel Xeon (1 thread), fp32; current " \
           "torch 2.13.0" in " ".join(capsys.readouterr().out.split())
    assert "Stacks: baseline torch 2.11.0, transformers 5, datasets 5, cpu Intel Xeon (1 thread), fp32; current " \
           "torch 2.13.0" in md.read_text()


def test_compare_passes_current_runs_that_are_the_baseline_own_and_refuses_one_source_twice(tmp_path, capsys):
    """An unchanged stack reproduces the baseline's keys: a CI job that changed nothing passes, as
    the pytest gate does, and says so; naming the same source twice is a mistake (exit 2)."""
    with Store(tmp_path / "s.sqlite") as store:
        runs = [_run(s, v) for s, v in enumerate(GOOD)]
        for run in runs:
            store.put(run)
        store.tag([r.key for r in runs], "base")
        store.tag([r.key for r in runs], "candidate")
    argv = ["--store", str(tmp_path / "s.sqlite")]
    report = tmp_path / "gate.json"
    for current in ("tag:candidate", "env:torch=2.13.0", "store"):
        assert main(["compare", "tag:base", current, *argv, "--json", str(report)]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "same runs" in out and "note: 1 study(ies) hold only the baseline's own runs" in out
        (entry,) = json.loads(report.read_text())["gate"]
        assert entry["gate"] == "ok" and entry["changed"] == "same runs"
    write_json(report, {"baseline": "tag:old", "current": "store", "stale": True})  # an earlier report
    assert main(["compare", "tag:base", "tag:base", *argv, "--json", str(report)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: the baseline and the current side are both 'tag:base'" in err
    written = json.loads(report.read_text())
    assert written["exit_status"] == 2 and written["gate"] == [] and written["error"].startswith("the baseline and")
    assert main(["compare", "tag:base", str(tmp_path / "missing.json"), *argv]) == 2
    assert f"current '{tmp_path / 'missing.json'}' is neither" in capsys.readouterr().err
    edited = {**runs[0].to_dict(), "failed": True}  # a file edited by hand: its record no longer reads back
    (tmp_path / "edited.json").write_text(json.dumps([edited]))
    assert main(["compare", str(tmp_path / "edited.json"), "tag:base", *argv]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path / 'edited.json'}: refused as the baseline: run 1 of 1:" in err and "import" not in err
    assert main(["compare", "tag:base", str(tmp_path / "edited.json"), *argv]) == 2
    assert ": refused as the current side: run 1 of 1:" in " ".join(capsys.readouterr().err.split())


def test_compare_gates_every_run_of_a_named_current_source_but_only_news_in_the_store():
    """A candidate session's seeds that reproduce baseline keys are still its runs; the whole store
    as the current side is every run outside the baseline."""
    baseline = [_run(s, v) for s, v in enumerate(GOOD)]
    candidate = baseline[:4] + [_run(s, v - 0.3) for s, v in enumerate(GOOD) if s >= 4]
    (named,) = compare_sources(baseline, candidate)
    assert named.current.n == 8 and set(named.current_keys) == {r.key for r in candidate}
    (news,) = compare_sources(baseline, candidate, current_is_store=True)
    assert news.current.n == 4 and set(news.current_keys) == {r.key for r in candidate[4:]}


def test_a_study_under_several_stacks_is_one_row_per_stack_and_never_a_per_seed_mix():
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    # The baseline also holds a newer re-run of two seeds under another stack: it is not mixed in.
    stray = [dataclasses.replace(_run(s, 0.5, torch="2.12.0"), finished_at="2026-02-01T00:00:00") for s in range(2)]
    chosen, held, which = pick_variant(baseline + stray)
    assert {r.environment["torch"] for r in chosen} == {"2.11.0"}
    assert held == "the baseline holds 2 variants of this study (torch 2.11.0: 8 run(s) / torch 2.12.0: 2 run(s))"
    assert which == "torch 2.11.0, the one with the most runs"
    # Two variants of one run each: the gate says nothing was compared, and why.
    (alone,) = compare_sources(baseline[:1] + stray[1:], [_run(s, v) for s, v in enumerate(GOOD)])
    assert alone.verdict == "TOO FEW SEEDS" and alone.fails and alone.baseline_note == (
        "the baseline holds 2 variants of this study (torch 2.12.0: 1 run(s) / torch 2.11.0: 1 run(s)); "
        "the one taken, torch 2.12.0, the one with the most runs (the newest of a tie), holds 1 run(s), so nothing "
        "was compared")
    # A baseline exported after the gate stored the new stack's runs holds them too: not compared with themselves.
    upgraded = [dataclasses.replace(_run(s, v - 0.3, torch="2.13.0"), finished_at="2026-03-01T00:00:00")
                for s, v in enumerate(GOOD)]  # as many runs as the old stack's, and newer
    (upgrade,) = compare_sources(baseline + upgraded, upgraded)
    assert upgrade.verdict == "REGRESSED" and upgrade.changed == "torch 2.11.0 -> 2.13.0"
    assert upgrade.baseline_note.endswith("compared with torch 2.11.0, the one with the most runs besides the "
                                          "current runs' own")
    (alone,) = compare_sources(baseline[:1] + upgraded, upgraded)  # the other variant too small to compare
    assert alone.verdict == "TOO FEW SEEDS" and "the one taken, torch 2.11.0" in alone.baseline_note
    (same,) = compare_sources(upgraded, upgraded)  # the current runs' variant alone: compared, as the same runs
    assert same.verdict == "ok" and same.changed == "same runs"
    # Stray runs of an older stack beside the current runs: those are compared, and the note says so
    # (a gate that compares runs with themselves checks nothing; stabench untag takes strays off a tag).
    (strays,) = compare_sources(upgraded + baseline[:3], upgraded)
    assert strays.changed == "torch 2.11.0 -> 2.13.0" and strays.baseline.n == 3
    assert "torch 2.11.0, the one with the most runs besides the current runs' own" in strays.baseline_note
    # The new stack's runs on 2 threads as well, newer than the old stack's and as many: a 1-thread
    # upgrade is still compared with the old stack on 1 thread, not with itself on 2 (a trial's gate said
    # ok having compared only thread counts).
    two_threads = [dataclasses.replace(r, key=r.key + "-2", environment={**r.environment, "cpu_threads": 2})
                   for r in upgraded]
    (threads,) = compare_sources(baseline + upgraded + two_threads, upgraded)
    assert threads.changed == "torch 2.11.0 -> 2.13.0" and threads.verdict == "REGRESSED"
    assert threads.baseline_note.endswith("compared with torch 2.11.0, cpu_threads none, the one with the most runs "
                                          "on the current runs' device, precision and threads besides the current "
                                          "runs' own")
    (only,) = compare_sources(two_threads, upgraded)  # another machine is still taken when it is all there is
    assert only.changed == "cpu_threads 2 -> none" and not only.baseline_note
    # A store holding nothing but a baseline of three variants: each is compared with those stored
    # before it, the first with itself; a trial saw the old stack judged against the new.
    two_threads = [dataclasses.replace(r, finished_at=r.finished_at.replace("03-01", "04-01")) for r in two_threads]
    everything = baseline + upgraded + two_threads
    for current_is_store in (True, False):
        rows = compare_sources(everything, everything, current_is_store=current_is_store)
        assert sorted((r.changed, r.verdict) for r in rows) == [
            ("cpu_threads none -> 2", "ok"), ("same runs", "ok"), ("torch 2.11.0 -> 2.13.0", "REGRESSED")]
    # A pair of a stray run of the current machine and a whole study on another: a test needs 2 runs.
    stray_here = [dataclasses.replace(upgraded[0], key="stray", environment={**baseline[0].environment})]
    (pair,) = compare_sources([*stray_here, *[dataclasses.replace(r, key=r.key + "-2", environment={
        **r.environment, "cpu_threads": 2}) for r in baseline]], upgraded)
    assert pair.baseline.n == 8 and pair.changed == "torch 2.11.0 -> 2.13.0, cpu_threads 2 -> none"
    current = [_run(s, v, torch="2.13.0") for s, v in enumerate(GOOD)] + [_run(s, 0.5, torch="2.14.0") for s in range(8)]
    results = compare_sources(baseline + stray, current)
    assert [(r.changed, r.verdict) for r in results] == [("torch 2.11.0 -> 2.13.0", "ok"),
                                                         ("torch 2.11.0 -> 2.14.0", "REGRESSED")]
    assert all(r.baseline.mean > 0.85 for r in results)


def test_versions_of_a_recipe_under_one_name_say_their_own_values_of_the_fields_that_differ():
    """A sweep that gives every grid point one name (``--stabench-set name=candidate``) links them
    into one study: each row listed every name, told apart by a hash alone, so a row named
    ``bert-default[lr=0.001]`` could hold the lr=0.005 runs."""
    grid = {lr: get_recipe("bert-default", lr=lr, max_steps=64) for lr in (1e-3, 5e-3)}
    runs = [dataclasses.replace(_run(s, 0.9, recipe=recipe.name), recipe=recipe.to_dict(), recipe_hash=recipe.hash,
                                key=f"{recipe.hash}-{s}", recipe_aliases=["candidate"])
            for recipe in grid.values() for s in range(2)]
    labels = [label for label, _ in group_studies(name_studies(runs))]
    names = "t / m / bert-default[lr=0.001,max_steps=64] | bert-default[lr=0.005,max_steps=64] | candidate"
    assert sorted(labels) == sorted(f"{names} [recipe content {recipe.hash[:8]} (lr={lr:g})]"
                                    for lr, recipe in grid.items())
    # A version that differs in many fields beside one that differs in lr alone: the fields that tell
    # all three apart, not the first three in the alphabet (which would label both lr versions alike).
    many = get_recipe("bert-default", lr=5e-3, max_steps=64, adam_eps=1e-8, warmup=0.2, batch_size=8)
    runs += [dataclasses.replace(runs[0], recipe=many.to_dict(), recipe_hash=many.hash, key=f"{many.hash}-{s}", seed=s)
             for s in range(2)]
    labels = sorted(label.split(" [")[1] for label, _ in group_studies(name_studies(runs)))
    assert labels == sorted([f"recipe content {grid[1e-3].hash[:8]} (adam_eps=1e-06, lr=0.001)]",
                             f"recipe content {grid[5e-3].hash[:8]} (adam_eps=1e-06, lr=0.005)]",
                             f"recipe content {many.hash[:8]} (adam_eps=1e-08, lr=0.005)]"])
    # A record without fields (an import from an old version) shows its hash; the others still their fields.
    runs[-2:] = [dataclasses.replace(run, recipe={}) for run in runs[-2:]]
    labels = sorted(label.split(" [")[1] for label, _ in group_studies(name_studies(runs)))
    assert labels == sorted([f"recipe content {grid[1e-3].hash[:8]} (lr=0.001)]",
                             f"recipe content {grid[5e-3].hash[:8]} (lr=0.005)]", f"recipe content {many.hash[:8]}]"])


def test_recipe_versions_under_one_name_are_separate_rows_never_a_per_seed_mix():
    """An edited recipe keeps its name; seeds 0-3 of one version and 4-10 of another are two studies."""
    baseline = [_run(s, v) for s, v in enumerate(GOOD[:4])]
    edited = [dataclasses.replace(_run(s, v + 0.001), recipe_hash="aaaaaaaa11") for s, v in enumerate(GOOD[:4])]
    broken = [dataclasses.replace(_run(s, 0.5), recipe_hash="bbbbbbbb22") for s in range(4, 11)]
    results = compare_sources(baseline, edited + broken)
    assert [(r.claim, r.current.n, r.changed, r.verdict) for r in results] == [
        ("t / m / r [recipe content aaaaaaaa]", 4, "recipe content", "ok"),
        ("t / m / r [recipe content bbbbbbbb]", 7, "recipe content", "REGRESSED")]
    # A baseline holding both versions is compared as its larger one.
    assert {r.recipe_hash for r in pick_variant(edited + broken)[0]} == {"bbbbbbbb22"}
    # On a tie the newest version is compared, and the gate says so.
    newer = [dataclasses.replace(r, finished_at="2026-03-01T00:00:00") for r in edited]
    (result,) = compare_sources(baseline + newer, broken[:4])
    assert result.baseline_keys == tuple(r.key for r in newer)
    assert result.baseline_note == ("the baseline holds 2 variants of this study (recipe content aaaaaaaa: 4 run(s) / "
                                    "recipe content h-r: 4 run(s)); compared with recipe content aaaaaaaa, the one with "
                                    "the most runs (the newest of a tie)")
    assert result.entry()["baseline_note"] == result.baseline_note
    assert compare_sources(baseline, broken)[0].baseline_note == ""
    # Both versions in one baseline compared with itself (compare tag:x tag:x spelt two ways): each
    # version is its own runs, not the later version judged against the earlier one.
    both = [dataclasses.replace(r, finished_at="2026-03-01T00:00:00") for r in broken[:4]] + baseline
    for current_is_store in (True, False):
        rows = compare_sources(both, both, current_is_store=current_is_store)
        assert [(r.changed, r.verdict) for r in rows] == [("same runs", "ok"), ("same runs", "ok")]


def test_runs_of_one_recipe_stored_under_two_names_are_one_study():
    """Seeds 0-3 were first trained as ``r``, seeds 4-7 as ``r[lr=2e-05]`` (same content): one study."""
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    first = [_run(s, v - 0.3) for s, v in enumerate(GOOD[:4])]
    later = [dataclasses.replace(_run(s, v - 0.3, recipe="r[lr=2e-05]"), recipe_hash="h-r") for s, v in enumerate(GOOD)
             if s >= 4]
    (result,) = compare_sources(baseline, first + later)
    assert result.claim == "t / m / r | r[lr=2e-05]" and result.current.n == 8 and result.baseline.n == 8
    assert result.verdict == "REGRESSED"
    # The pytest gate of a claim named r[lr=2e-05] finds the baseline by content, or by an alias.
    named = [dataclasses.replace(r, recipe_name="r[lr=2e-05]") for r in first + later]
    assert check("c", named, baseline).baseline.n == 8
    other_content = [dataclasses.replace(r, recipe_hash="h-edited") for r in named]
    assert check("c", other_content, baseline).verdict == "no baseline"
    aliased = [dataclasses.replace(r, recipe_aliases=["r[lr=2e-05]"]) for r in baseline]
    assert check("c", other_content, aliased).baseline.n == 8
    # Names that share no run and no content stay apart.
    assert len(compare_sources(baseline, first + [dataclasses.replace(r, recipe_hash="h-x") for r in later])) == 2


def test_tagging_several_versions_of_a_recipe_says_so(tmp_path, capsys):
    old = [_run(s, v) for s, v in enumerate(GOOD[:4])]
    edited = [dataclasses.replace(_run(s, v), key=f"e{s}", recipe_hash="bbbbbbbb22") for s, v in enumerate(GOOD[:4])]
    with Store(tmp_path / "s.sqlite") as store:
        for run in old + edited:
            store.put(run)
    assert main(["tag", "base", "--recipe", "r", "--store", str(tmp_path / "s.sqlite")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "tagged 8 of 8 matching run(s) as 'base'" in out
    assert "note: the tag holds 2 versions of recipe 'r' on t / m (recipe hashes bbbbbbbb, h-r)" in out
    store_arg = ["--store", str(tmp_path / "s.sqlite")]
    # A version stored under another name of the recipe (its runs asked for as "r2" too) counts as well.
    with Store(tmp_path / "aliased.sqlite") as store:
        store.put(old[0])
        store.put(dataclasses.replace(_run(1, 0.9, recipe="r2"), key="x1", recipe_hash="dddddddd44"))
        store.add_recipe_alias(store.get(old[0].key), "r2")
    assert main(["tag", "aliased", "--recipe", "r2", "--store", str(tmp_path / "aliased.sqlite")]) == 0
    assert "note: the tag holds 2 versions of recipe 'r | r2' on t / m (recipe hashes dddddddd, h-r)" in " ".join(
        capsys.readouterr().out.split())
    assert main(["tag", "edited", "--recipe", "r", "--recipe-hash", "bbbb", *store_arg]) == 0
    assert "tagged 4 of 4 matching run(s) as 'edited'" in " ".join(capsys.readouterr().out.split())
    with Store(tmp_path / "s.sqlite") as store:
        assert {r.key for r in store.query(tag="edited")} == {r.key for r in edited}
        assert store.query(recipe_hash="bbbbbbbb22") == store.query(recipe_hash="b") and not store.query(recipe_hash="c")
    assert main(["export", str(tmp_path / "e.json"), "--recipe-hash", "bbbb", *store_arg]) == 0
    assert "exported 4 run(s)" in capsys.readouterr().out
    assert main(["runs", "--recipe-hash", "cccc", *store_arg]) == 2
    assert "no stored run matches recipe_hash=cccc" in capsys.readouterr().err
    # Compared with new runs, the gate names the version it picked; untag takes the other off.
    with Store(tmp_path / "s.sqlite") as store:
        for run in [dataclasses.replace(_run(s, v), key=f"n{s}", recipe_hash="cccccccc33") for s, v in enumerate(GOOD[:4])]:
            store.put(run)
        store.tag(["n0", "n1", "n2", "n3"], "new")
    md = tmp_path / "summary" / "gate.md"
    assert main(["compare", "tag:base", "tag:new", *store_arg, "--json", str(tmp_path / "gate.json"),
                 "--md", str(md)]) == 0
    (entry,) = json.loads((tmp_path / "gate.json").read_text())["gate"]
    assert entry["baseline_note"].startswith("the baseline holds 2 variants of this study")
    summary = md.read_text().splitlines()
    assert summary[0] == "## stabench compare: tag:new against baseline tag:base"
    header, row = ([cell.strip() for cell in line.strip().strip("|").split("|")] for line in (summary[2], summary[4]))
    assert header[0] == "study" and header[-2:] == ["gate", "why"] and row[-2] == "ok"  # not pytest's claim
    assert row[-1].startswith("note: the baseline holds 2 variants of this study")
    assert main(["compare", "tag:nosuch", "tag:new", *store_arg, "--md", str(md)]) == 2  # never an earlier table
    assert md.read_text().startswith("## stabench compare: tag:new against baseline tag:nosuch\n\nerror: baseline ")
    out = " ".join(capsys.readouterr().out.split())
    assert ("note t / m / r: the baseline holds 2 variants of this study (recipe content bbbbbbbb: 4 run(s) / "
            "recipe content h-r: 4 run(s)); compared with recipe content bbbbbbbb, the one with the most runs "
            "(the newest of a tie)") in out
    assert main(["untag", "base", "--recipe-hash", "bbbb", *store_arg]) == 0
    assert "took the tag 'base' off 4 run(s); the runs stay stored" in capsys.readouterr().out
    assert main(["compare", "tag:base", "tag:new", *store_arg]) == 0
    assert "note" not in capsys.readouterr().out
    assert main(["untag", "base", "--recipe-hash", "bbbb", *store_arg]) == 2
    assert "no run lost the tag 'base'" in " ".join(capsys.readouterr().err.split())
    with Store(tmp_path / "s.sqlite") as store:
        store.tag(["n0", "n1"], "ci", claim="test_x")
    assert main(["untag", "ci", *store_arg]) == 0
    assert ("note: 1 pytest claim(s) lost runs of their baseline under 'ci' (test_x); `stabench tag` does not give "
            "them back, a pytest session with --stabench-tag=ci does") in " ".join(capsys.readouterr().out.split())
    assert main(["tag", "a;b", *store_arg]) == 2
    assert "tag 'a;b' is invalid; expected letters, digits" in capsys.readouterr().err


def test_compare_with_no_matching_study_says_what_the_baseline_holds(tmp_path, capsys):
    with Store(tmp_path / "s.sqlite") as store:
        for run in [_run(s, v, recipe="old-name") for s, v in enumerate(GOOD[:3])]:
            store.put(run)
        store.tag([r.key for r in store.query()], "base")
        for run in [_run(s, v, recipe="new-name") for s, v in enumerate(GOOD[:3])]:
            store.put(run)
    assert main(["compare", "tag:base", "store", "--store", str(tmp_path / "s.sqlite")]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert ("so nothing was compared; the baseline's studies that none matched: t / m / old-name (the store's "
            "current side leaves out the baseline's own runs, so studies unchanged since are listed too)") in out
    with Store(tmp_path / "s.sqlite") as store:
        store.tag([r.key for r in store.query(recipe="new-name")], "new")
    assert main(["compare", "tag:base", "tag:new", "--store", str(tmp_path / "s.sqlite"),
                 "--json", str(tmp_path / "gate.json"), "--md", str(tmp_path / "gate.md")]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "the baseline's studies that none matched: t / m / old-name" in out and "unchanged since" not in out
    written = json.loads((tmp_path / "gate.json").read_text())  # why, for a CI step, as --stabench-json says it
    assert written["exit_status"] == 2 and written["nothing_compared"].endswith(
        "so nothing was compared; the baseline's studies that none matched: t / m / old-name")
    assert (tmp_path / "gate.md").read_text().rstrip().endswith(written["nothing_compared"])


def test_filters_narrow_the_store_as_current_side_to_the_recipe_version_gated(tmp_path, capsys):
    """An experiment stored under the recipe's name and since reverted fails `compare ... store`;
    --recipe-hash (or --recipe FILE) gates the version in use now."""
    store_arg = ["--store", str(tmp_path / "s.sqlite")]
    kept = [_run(s, v) for s, v in enumerate(GOOD)]
    experiment = [dataclasses.replace(_run(s, v - 0.3), key=f"x-{s}", recipe_hash="h-experiment")
                  for s, v in enumerate(GOOD)]
    with Store(tmp_path / "s.sqlite") as store:
        for run in kept + experiment:
            store.put(run)
        store.tag([r.key for r in kept], "base")
    assert main(["compare", "tag:base", "store", *store_arg]) == 1  # the experiment's row regressed
    assert "REGRESSED" in capsys.readouterr().out
    assert main(["compare", "tag:base", "store", "--recipe-hash", "h-r", *store_arg]) == 0
    out = capsys.readouterr().out
    assert "same runs" in out and "REGRESSED" not in out
    assert main(["compare", "tag:base", "store", "--recipe-hash", "h-nosuch", *store_arg]) == 2
    assert "no stored run matches recipe_hash=h-nosuch" in capsys.readouterr().err
    assert main(["compare", "tag:base", "tag:base2", "--seeds", "0-3", *store_arg]) == 2
    assert ("filters (--seeds) narrow only the current side 'store'; 'tag:base2' names its runs already"
            in capsys.readouterr().err)


def test_a_tokenizers_bump_is_a_stack_change_and_runs_stored_without_it_read_as_none():
    before = [dataclasses.replace(r, environment={k: v for k, v in r.environment.items() if k != "tokenizers"})
              for r in (_run(s, v) for s, v in enumerate(GOOD))]
    old, new = ([dataclasses.replace(r, key=f"{r.key}-{v}", environment={**r.environment, "tokenizers": v})
                 for r in before] for v in ("0.23.1", "0.23.3"))
    assert what_changed(old, new) == "tokenizers 0.23.1 -> 0.23.3"
    assert what_changed(before, new) == "tokenizers none -> 0.23.3"
    _, held, _ = pick_variant(before + new[:2])  # labelled as env:tokenizers=none selects them
    assert held == "the baseline holds 2 variants of this study (tokenizers none: 8 run(s) / tokenizers 0.23.3: 2 run(s))"
    assert len(compare_sources(old + before, new)) == 1  # one study, two variants in the baseline
    assert parse_env("tokenizers=0.23.3") == {"tokenizers": "0.23.3"}


def test_cpu_thread_counts_can_be_selected_like_other_stack_fields(tmp_path, capsys):
    one, two = ([dataclasses.replace(r, key=f"{r.key}-{n}", environment={**r.environment, "cpu_threads": n})
                 for r in (_run(s, v) for s, v in enumerate(GOOD[:3]))] for n in (1, 2))
    with Store(tmp_path / "s.sqlite") as store:
        for run in one + two:
            store.put(run)
        assert {r.key for r in load_source("env:cpu_threads=1", store)} == {r.key for r in one}
        assert {r.key for r in load_source("env:torch=2.13.0,cpu_threads=2", store)} == {r.key for r in two}
    assert main(["runs", "--env", "cpu_threads=2", "--store", str(tmp_path / "s.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "3 stored run(s)" in out and "threads" in out
    assert main(["export", str(tmp_path / "two.json"), "--env", "cpu_threads=2", "--store", str(tmp_path / "s.sqlite")]) == 0
    assert {r["key"] for r in json.loads((tmp_path / "two.json").read_text())} == {r.key for r in two}
    assert main(["export", str(tmp_path / "no.json"), "--env", "cpu_threads=4", "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "no stored run matches cpu_threads=4 (stored cpu_threads values: 1, 2)" in capsys.readouterr().err


def test_compare_reads_two_export_files_without_a_store_and_refuses_a_misspelt_store(tmp_path, capsys):
    with Store(tmp_path / "s.sqlite") as store:
        for run in [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]:
            store.put(run)
        store.export(tmp_path / "old.json")
    with Store(tmp_path / "n.sqlite") as store:
        for run in [_run(s, v - 0.3) for s, v in enumerate(GOOD)]:
            store.put(run)
        store.export(tmp_path / "new.json")
    missing = tmp_path / "no" / "such.sqlite"
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--store", str(missing)]) == 1
    assert "REGRESSED" in capsys.readouterr().out and not missing.parent.exists()
    for argv in (["compare", "tag:x", "store"], ["runs"], ["export", str(tmp_path / "e.json")], ["tag", "x"]):
        assert main([*argv, "--store", str(missing)]) == 2
        assert f"no results store at {missing}" in capsys.readouterr().err
    assert not missing.parent.exists()
    for argv in (["runs"], ["run", "--task", "polarity", "--seeds", "0"]):  # a folder, for reading or writing
        assert main([*argv, "--store", str(tmp_path)]) == 2
        assert f"results store {tmp_path} is a folder; expected a file in it, e.g. {tmp_path / 'results.sqlite'}" \
            in " ".join(capsys.readouterr().err.split())


GATED = '''
import os
import stabench

RECIPE = stabench.get_recipe("bert-default-bc", epochs=4, trace_every=8, lr=float(os.environ["DEMO_LR"]),
                             name="my-recipe")

@stabench.claim(task="polarity", model=MODEL, recipe=RECIPE, seeds=4)
def test_my_recipe(study):
    assert study.n == 4
'''


def test_a_sweep_value_changed_since_the_baseline_is_named_not_silently_ungated(pytester, tiny_model, monkeypatch):
    """Editing one parametrized lr makes a new claim (no baseline) beside a baseline study no claim
    is compared with: both are said, where the gate had only shown "no baseline"."""
    pytester.makepyfile(test_sweep=f"MODEL = {tiny_model!r}\n" + '''
import os
import pytest
import stabench

LRS = [float(lr) for lr in os.environ["SWEEP"].split(",")]

@pytest.mark.parametrize("recipe", [stabench.get_recipe("bert-default", max_steps=2, trace_every=2, lr=lr) for lr in LRS])
@stabench.claim(task="polarity", model=MODEL, seeds=4)
def test_sweep(study, recipe):
    pass

@stabench.claim(task="same-number", model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2), seeds=4)
def test_elsewhere(study):
    pass
''')
    common = ["-p", "no:cacheprovider", "--stabench-store=s.sqlite", "--stabench-cpu-threads=1"]
    monkeypatch.setenv("SWEEP", "3e-3,5e-3")
    pytester.runpytest_inprocess(*common, "--stabench-tag=sweep").assert_outcomes(passed=15)
    monkeypatch.setenv("SWEEP", "3e-3,3e-4")
    edited = pytester.runpytest_inprocess(*common, "--stabench-baseline=tag:sweep", "--stabench-md=gate.md",
                                          "--stabench-json=gate.json", "-k", "sweep")  # the other task not run
    assert edited.ret == 0  # a new claim without a baseline still passes, as a new claim does
    note = ("1 claim(s) found no baseline, and the baseline holds studies of their task and model that no claim was "
            "compared with: polarity / tiny-bert / bert-default[lr=0.005,max_steps=2,trace_every=2] (a recipe renamed "
            "and edited, or a parametrized value changed, since the baseline was tagged; or a claim this session did "
            "not run)")
    assert note in " ".join(edited.stdout.str().split())
    assert note in (pytester.path / "gate.md").read_text()
    assert json.loads((pytester.path / "gate.json").read_text())["uncompared_baseline_studies"] == [
        "polarity / tiny-bert / bert-default[lr=0.005,max_steps=2,trace_every=2]"]
    monkeypatch.setenv("SWEEP", "4e-4")  # every value changed: nothing compared, and the report still names them
    nothing = pytester.runpytest_inprocess(*common, "--stabench-baseline=tag:sweep", "--stabench-json=none.json",
                                           "-k", "not elsewhere")
    assert nothing.ret == 1 and "nothing was compared" in nothing.stdout.str()
    assert json.loads((pytester.path / "none.json").read_text())["uncompared_baseline_studies"] == [
        "polarity / tiny-bert / bert-default[lr=0.003,max_steps=2,trace_every=2]",
        "polarity / tiny-bert / bert-default[lr=0.005,max_steps=2,trace_every=2]"]


def test_a_re_tag_finds_the_study_s_unclaimed_runs_when_its_data_size_is_the_whole_set(pytester, tiny_model,
                                                                                        monkeypatch):
    """train_size equal to the training set's size is stored as the whole set (None): a re-tag
    that filtered by the claim's 256 found none of the runs it should take the tag off."""
    from stabench.cli import main

    pytester.makepyfile(test_sized=f"MODEL = {tiny_model!r}\n" + '''
import os
import stabench

@stabench.claim(task="polarity", model=MODEL, recipe=stabench.get_recipe("bert-default", max_steps=2),
                train_size=256, seeds=int(os.environ["SEEDS"]))
def test_sized(study):
    pass
''')
    common = ["-p", "no:cacheprovider", "--stabench-store=s.sqlite", "--stabench-cpu-threads=1"]
    monkeypatch.setenv("SEEDS", "3")
    pytester.runpytest_inprocess(*common).assert_outcomes(passed=4)
    assert main(["tag", "t", "--store", str(pytester.path / "s.sqlite")]) == 0  # 3 runs, no claim holds them
    monkeypatch.setenv("SEEDS", "2")
    retagged = pytester.runpytest_inprocess(*common, "--stabench-tag=t")
    retagged.stdout.fnmatch_lines(["*; 1 run(s) of the same studies that no claim held lost the tag*"])
    with Store(pytester.path / "s.sqlite") as store:
        assert sorted(r.seed for r in store.query(tag="t")) == [0, 1]


def test_regression_gate_end_to_end(pytester, tiny_model, monkeypatch):
    """In-process sessions (no subprocess start-up each); every one reads DEMO_LR afresh."""
    pytester.makepyfile(test_gated=f"MODEL = {tiny_model!r}\n" + GATED)
    common = ["-p", "no:cacheprovider", "--stabench-store=s.sqlite", "--stabench-cpu-threads=1"]
    monkeypatch.setenv("DEMO_LR", "3e-3")
    tagged = pytester.runpytest_inprocess(*common, "--stabench-tag=old")
    tagged.assert_outcomes(passed=5)
    tagged.stdout.fnmatch_lines(["tagged 4 run(s) of this session's claims as 'old'"])

    monkeypatch.setenv("DEMO_LR", "1e-6")  # deliberately worse: barely moves from the random head
    worse = pytester.runpytest_inprocess(*common, "--stabench-baseline=tag:old", "--stabench-md=gate.md",
                                         "--stabench-json=gate.json")
    assert worse.ret == 1
    # The regression fails the claim's verdict item, so JUnit reports and --lf see it too.
    worse.stdout.fnmatch_lines(["*regression gate against tag:old*",
                                "REGRESSED test_gated.py::test_my_recipe: accuracy: mean got worse*",
                                "stacks: baseline torch *, cpu * (1 thread), fp32; current the same",
                                "FAILED test_gated.py::test_my_recipe[[]verdict[]] - Failed: REGRESSED*",
                                "*= 1 failed, 4 passed in *"])
    assert "REGRESSED" in (pytester.path / "gate.md").read_text()
    report = json.loads((pytester.path / "gate.json").read_text())
    assert session_markdown(report) == (pytester.path / "gate.md").read_text()  # the JSON alone makes it again
    assert report["baseline"] == "tag:old" and report["store"] == str((pytester.path / "s.sqlite").resolve())
    (gate,) = report["gate"]
    (claim,) = report["claims"]
    assert claim["verdict"] == "regressed" and claim["message"].startswith("REGRESSED test_gated.py::test_my_recipe")
    detail = gate["detail"]  # numbers a CI step can read without parsing the table's text
    assert gate["gate"] == "REGRESSED" and detail["fails"] and detail["reasons"][0].startswith("accuracy: mean")
    assert detail["baseline"]["n"] == detail["current"]["n"] == 4
    assert detail["current"]["mean"] < detail["baseline"]["mean"]
    mean_check = next(c for c in detail["checks"] if c["check"] == "mean drop")
    assert mean_check["regressed"] is True and mean_check["p"] < 0.05 and mean_check["effect"] > mean_check["limit"]
    assert all(type(check["regressed"]) is bool for check in detail["checks"])  # JSON true/false, as jq reads
    assert sorted(detail["current_keys"]) == sorted(claim["keys"]) and len(set(detail["baseline_keys"])) == 4
    produced = detail["produced_by"]  # both sides' data, model and stacks, as the report alone tells them
    assert produced["current"] == claim["produced_by"] and produced["baseline"]["task"] == produced["current"]["task"]
    assert produced["baseline"]["stacks"][0]["torch"] == produced["current"]["stacks"][0]["torch"] is not None
    assert gate["changed"] == "recipe content (lr 0.003 -> 1e-06)" and claim["recipe_fields"]["lr"] == 1e-6
    from stabench.recipes import get_recipe
    assert claim["recipe_hash"] == get_recipe("bert-default-bc", epochs=4, trace_every=8, lr=1e-6).hash
    if sys.version_info >= (3, 11):  # exception notes: a claim whose own assertion fails says its gate failed too
        pytester.makepyfile(test_gated=f"MODEL = {tiny_model!r}\n" + GATED.replace("study.n == 4", "study.n == 5"))
        both = pytester.runpytest_inprocess(*common, "--stabench-baseline=tag:old")
        assert both.ret == 1
        both.stdout.fnmatch_lines([">*assert study.n == 5", "E*the gate failed too: REGRESSED "
                                   "test_gated.py::test_my_recipe: accuracy: mean got worse*"])
    failing_body = GATED.replace("assert study.n == 4", "pytest.fail('the body says no', pytrace=False)")
    pytester.makepyfile(test_gated=f"MODEL = {tiny_model!r}\nimport pytest\n" + failing_body)
    both = pytester.runpytest_inprocess(*common, "--stabench-baseline=tag:old")
    both.stdout.fnmatch_lines(["the body says no", "the gate failed too: REGRESSED test_gated.py::test_my_recipe:*"])
    pytester.makepyfile(test_gated=f"MODEL = {tiny_model!r}\n" + GATED)

    monkeypatch.setenv("DEMO_LR", "3e-3")
    same = pytester.runpytest_inprocess(*common, "--stabench-baseline=tag:old")
    assert same.ret == 0
    same.stdout.fnmatch_lines(["*test_gated.py::test_my_recipe*same runs*ok*"])  # it says what it compared

    # --stabench-set renames the recipe (my-recipe[lr=1e-06]); the claim still finds the runs
    # tagged for it, so the override is gated instead of passing as "no baseline".
    overridden = pytester.runpytest_inprocess(*common, "--stabench-baseline=tag:old", "--stabench-set=lr=1e-6")
    assert overridden.ret == 1
    overridden.stdout.fnmatch_lines(["*my-recipe[[]lr=1e-06[]]*REGRESSED*",
                                     "REGRESSED test_gated.py::test_my_recipe: accuracy: mean got worse*"])

    # Another claim whose recipe has another name but the same content reuses the runs, and its
    # gate finds them by content.
    renamed = GATED.replace("my-recipe", "other-recipe").replace("test_my_recipe", "test_other_recipe")
    pytester.makepyfile(test_other=f"MODEL = {tiny_model!r}\n" + renamed)
    same_content = pytester.runpytest_inprocess(*common, "test_other.py", "--stabench-baseline=tag:old")
    assert same_content.ret == 0
    same_content.stdout.fnmatch_lines(["*test_other_recipe*other-recipe*same runs*ok*"])
    with Store(pytester.path / "s.sqlite") as store:
        reused = store.query(recipe="other-recipe")  # the alias the claim's name gave the runs
        assert len(reused) == 4 and {r.key for r in reused} == {r.key for r in store.query(tag="old")}

    # A claim with no runs in the baseline (neither tagged for it nor of its recipe's name or
    # content) is not a passed gate: when no claim has one, nothing was compared and the session fails.
    pytester.makepyfile(test_other=f"MODEL = {tiny_model!r}\n" + renamed.replace("trace_every=8", "trace_every=4")
                        .replace("other-recipe", "third-recipe"))
    unmatched = pytester.runpytest_inprocess(*common, "test_other.py", "--stabench-baseline=tag:old")
    assert unmatched.ret == 1
    unmatched.stdout.fnmatch_lines(["*test_other_recipe*no baseline*",
                                    "no claim has runs in the baseline tag:old, so nothing was compared*; the "
                                    "baseline holds polarity / tiny-bert / my-recipe*"])  # what it holds

    # Nor is a session whose every claim was skipped (a misspelt hub model, a GPU claim on a CPU).
    monkeypatch.setattr("stabench.profiles._cuda_available", lambda: False)
    pytester.makepyfile(test_gpu=f"MODEL = {tiny_model!r}\n" + GATED.replace("seeds=4)", "seeds=4, requires=['cuda'])"))
    skipped = pytester.runpytest_inprocess(*common, "test_gpu.py", "--stabench-baseline=tag:old")
    assert skipped.ret == 1
    skipped.stdout.fnmatch_lines(["no claim's verdict ran, so nothing was compared with the baseline tag:old "
                                  "(every claim was skipped, and each skip says why)", "*5 skipped, 1 gate failed*"])
    skipped = pytester.runpytest_inprocess(*common, "test_gpu.py", "--stabench-baseline=tag:old",
                                           "--stabench-json=gate.json", "--stabench-md=gate.md")
    assert json.loads((pytester.path / "gate.json").read_text())["nothing_compared"].startswith(
        "no claim's verdict ran, so nothing was compared")  # a CI step reading the report sees why it failed
    assert "**The gate failed:** no claim's verdict ran" in (pytester.path / "gate.md").read_text()
    assert session_markdown(json.loads((pytester.path / "gate.json").read_text())) == (
        pytester.path / "gate.md").read_text()
    assert pytester.runpytest_inprocess(*common, "test_gpu.py").ret == 0  # without a baseline, skipping is fine

    from stabench.cli import main
    assert main(["compare", "tag:old", "store", "--store", str(pytester.path / "s.sqlite")]) == 1
    lenient = "max_mean_drop=1,max_std_increase=1,max_extra_failures=99"  # the gate's limits, as in pytest
    assert main(["compare", "tag:old", "store", "--gate", lenient, "--store", str(pytester.path / "s.sqlite")]) == 0

    # Tagging the claim again, here with the worse lr's stored runs, moves its baseline and says so.
    monkeypatch.setenv("DEMO_LR", "1e-6")
    retagged = pytester.runpytest_inprocess(*common, "test_gated.py", "--stabench-tag=old")
    retagged.stdout.fnmatch_lines(["1 claim(s) had other runs tagged 'old': their baseline under it is now this "
                                   "session's runs (test_my_recipe). The runs they replaced stay stored: run those "
                                   "claims as they were with --stabench-tag=old to make them the baseline again "
                                   "(nothing trains)"])
    assert "trained this session (0 by seed items" in retagged.stdout.str()  # stored runs reused
    assert pytester.runpytest_inprocess(*common, "test_gated.py", "--stabench-baseline=tag:old").ret == 0

    # Runs of the study that hold the tag without a claim (tagged by the CLI here, or imported) leave
    # it at the next re-tag, so tag:old is the claim's baseline in stabench compare too.
    store_path = str(pytester.path / "s.sqlite")
    assert main(["tag", "old", "--recipe", "my-recipe", "--store", store_path]) == 0
    assert main(["tag", "old", "--recipe", "third-recipe", "--store", store_path]) == 0  # another study's
    with Store(store_path) as store:
        assert len(store.query(tag="old", recipe="my-recipe")) == 8  # both lr versions
        assert store.unclaimed("old") == {r.key for r in store.query(tag="old")} - {
            r.key for r in store.query(tag="old", claim="test_gated.py::test_my_recipe")}
    noted = pytester.runpytest_inprocess(*common, "test_gated.py", "--stabench-baseline=tag:old")
    assert noted.ret == 0  # the claim's own runs: the same runs, and a note on the rest
    noted.stdout.fnmatch_lines(["*note test_gated.py::test_my_recipe: the baseline also holds 4 run(s) of this study "
                                "that no claim holds, not compared: a claim is compared with the runs --stabench-tag "
                                "gave it*"])
    again = pytester.runpytest_inprocess(*common, "test_gated.py", "--stabench-tag=old")
    again.stdout.fnmatch_lines(["1 claim(s) had other runs tagged 'old': *; 4 run(s) of the same studies that no "
                                "claim held lost the tag*"])
    with Store(store_path) as store:
        assert {r.recipe["lr"] for r in store.query(tag="old", recipe="my-recipe")} == {1e-6}
        assert len(store.query(tag="old", recipe="third-recipe")) == 4  # not this claim's study: kept
    monkeypatch.setenv("DEMO_LR", "3e-3")  # as the re-tag's note says: the claim as it was, tagged again
    restored = pytester.runpytest_inprocess(*common, "test_gated.py", "--stabench-tag=old")
    assert "trained this session (0 by seed items" in restored.stdout.str()
    with Store(store_path) as store:
        assert {r.recipe["lr"] for r in store.query(tag="old", claim="test_gated.py::test_my_recipe")} == {3e-3}


def test_a_gate_with_too_few_seeds_fails_the_claims_verdict_item(pytester, tiny_model, monkeypatch):
    """TOO FEW SEEDS fails the gate as REGRESSED does: the verdict item fails too, so JUnit reports and
    --lf see it, not only the exit status."""
    pytester.makepyfile(test_few=f"MODEL = {tiny_model!r}\n" + '''
import os
import stabench

@stabench.claim(task="polarity", model=MODEL, seeds=2,
                recipe=stabench.get_recipe("bert-default", max_steps=2, lr=float(os.environ["DEMO_LR"])))
def test_few(study):
    pass
''')
    common = ["-p", "no:cacheprovider", "--stabench-store=s.sqlite", "--stabench-cpu-threads=1"]
    monkeypatch.setenv("DEMO_LR", "3e-3")
    pytester.runpytest_inprocess(*common, "--stabench-tag=old").assert_outcomes(passed=3)
    monkeypatch.setenv("DEMO_LR", "1e-6")  # other runs, 2 vs 2 seeds: no test can reach significance
    few = pytester.runpytest_inprocess(*common, "--stabench-baseline=tag:old", "--junitxml=junit.xml")
    assert few.ret == 1
    few.assert_outcomes(passed=2, failed=1)
    few.stdout.fnmatch_lines(["FAILED test_few.py::test_few[[]verdict[]] - Failed: TOO FEW SEEDS *"])
    assert 'name="test_few[verdict]"' in (pytester.path / "junit.xml").read_text()
    assert (pytester.path / "junit.xml").read_text().count("<failure") == 1


ARMED = '''
import os
import pytest
import stabench

# trace_every=4 only keeps the arms' recipes apart when DEMO_LR gives both lr=3e-3 (arms that train
# the same runs are an error).
GOOD = stabench.get_recipe("bert-default-bc", epochs=4, trace_every=4, lr=3e-3, name="steady")
MOVED = stabench.get_recipe("bert-default-bc", epochs=4, trace_every=8, lr=float(os.environ["DEMO_LR"]), name="moved")

@stabench.claim(task="polarity", model=MODEL, seeds=4, arms={"moved": {"recipe": MOVED}, "steady": {"recipe": GOOD}})
def test_arms(study):
    assert study["steady"].n == 4

@pytest.mark.xfail(reason="known to fail", strict=True)
@stabench.claim(task="polarity", model=MODEL, recipe=MOVED, seeds=4)
def test_marked(study):
    assert study.mean > 2  # never: the strict xfail holds, and its seed items still pass
'''


def test_a_gate_failure_is_reported_per_arm_and_never_hidden_by_xfail(pytester, tiny_model, monkeypatch):
    pytester.makepyfile(test_armed=f"MODEL = {tiny_model!r}\n" + ARMED)
    common = ["-p", "no:cacheprovider", "--stabench-store=s.sqlite", "--stabench-cpu-threads=1"]
    monkeypatch.setenv("DEMO_LR", "3e-3")
    tagged = pytester.runpytest_inprocess(*common, "--stabench-tag=old")
    tagged.assert_outcomes(passed=13, xfailed=1)  # strict xfail: the seed items pass all the same

    monkeypatch.setenv("DEMO_LR", "1e-6")
    worse = pytester.runpytest_inprocess(*common, "--stabench-baseline=tag:old", "--stabench-json=gate.json")
    assert worse.ret == 1
    worse.assert_outcomes(passed=12, failed=1, xfailed=1)
    worse.stdout.fnmatch_lines(["*= 1 failed, 12 passed, 1 xfailed, 1 gate failed in *"])  # the xfail's regression
    rows = {(c["claim"], c["arm"]): c for c in json.loads((pytester.path / "gate.json").read_text())["claims"]}
    moved, steady = rows["test_armed.py::test_arms", "moved"], rows["test_armed.py::test_arms", "steady"]
    assert moved["verdict"] == "regressed" and moved["message"].startswith("REGRESSED test_armed.py::test_arms (moved)")
    assert steady["verdict"] == "passed" and steady["message"] is None  # its own gate passed
    (marked,) = [row for (claim, _), row in rows.items() if claim == "test_armed.py::test_marked"]
    assert marked["verdict"] == "xfailed"

    # A strict xfail claim that passes fails as pytest says (XPASS(strict)), and its row says so.
    pytester.makepyfile(test_armed=f"MODEL = {tiny_model!r}\n" + ARMED.replace("study.mean > 2", "study.n == 4"))
    passing = pytester.runpytest_inprocess(*common, "-k", "marked", "--stabench-json=x.json")
    passing.assert_outcomes(passed=4, failed=1)
    (row,) = json.loads((pytester.path / "x.json").read_text())["claims"]
    assert row["verdict"] == "failed" and row["message"].startswith("[XPASS(strict)]")


def test_a_near_miss_that_passes_says_which_effect_was_past_its_limit(tmp_path, capsys):
    """An ok gate whose mean fell past the limit without significance says so, with the p-value."""
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD[:4])]
    current = [_run(s, v) for s, v in zip(range(4), [0.87, 0.92, 0.88, 0.90])]  # mean 0.0125 lower, noisy
    result = check("c", current, baseline)
    assert result.verdict == "ok" and not result.fails
    assert result.unconfirmed.startswith("mean drop 0.0125 is past its limit 0.01, but one-sided Mann-Whitney p=")
    assert result.unconfirmed.endswith("is not significant (needs p < 0.0167)")  # 0.05 over 3 checks
    assert check("c", baseline, baseline).unconfirmed == ""  # within every limit: nothing to say
    with Store(tmp_path / "s.sqlite") as store:
        for run in baseline + current:
            store.put(run)
        store.tag([r.key for r in baseline], "base")
    assert main(["compare", "tag:base", "store", "--store", str(tmp_path / "s.sqlite"),
                 "--json", str(tmp_path / "gate.json")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "ok t / m / r: mean drop 0.0125 is past its limit 0.01, but one-sided Mann-Whitney p=" in out
    written = json.loads((tmp_path / "gate.json").read_text())  # the numbers, for a CI step
    (entry,) = written["gate"]
    assert written["exit_status"] == 0 and entry["gate"] == "ok" and entry["fails"] is False
    assert entry["unconfirmed"] == result.unconfirmed and entry["detail"]["current"]["n"] == 4
    mean = next(c for c in entry["detail"]["checks"] if c["check"] == "mean drop")
    assert mean["regressed"] is False and 0.05 <= mean["p"] <= 1


def test_a_gate_on_a_collapsed_baseline_passes_runs_that_recovered_and_says_why():
    """Every baseline run collapsed (std 0); half the runs recovering widens the spread, which the
    std check once called a significant regression."""
    baseline = [_run(s, 0.5, torch="2.11.0") for s in range(8)]
    current = [_run(s, 0.5 if s < 4 else v + 0.07) for s, v in enumerate(GOOD)]
    result = check("c", current, baseline)
    assert result.verdict == "ok" and not result.fails
    assert result.unconfirmed.startswith("std increase 0.2")
    assert result.unconfirmed.endswith(", but not tested: a lower failure rate (8/8 -> 4/8) and no drop in the mean, "
                                       "with too few successful runs to compare their spread (0 vs 4): the spread "
                                       "grew as failed runs recovered")
    (std,) = [c for c in result.entry()["detail"]["checks"] if c["check"] == "std increase"]
    assert std["p"] is None and std["skipped"] and std["regressed"] is False
    # One failed run fewer, and successes spread far wider than the baseline's: the gate judges the
    # successful runs' spread, and fails.
    steady = [_run(s, 0.5 if s == 0 else 0.9 + 0.001 * (s % 12), torch="2.11.0") for s in range(25)]
    wild = [_run(s, 0.79 if s % 2 else 0.99) for s in range(25)]
    wider = check("c", wild, steady)
    assert wider.verdict == "REGRESSED" and "std of the successful runs grew by 0.09" in wider.why


def test_a_failed_gate_also_names_the_changes_that_were_not_significant():
    """A mean drop fails the gate; one more failed run (0/8 -> 1/8, Fisher p=0.5) is still shown, in the
    terminal and in the Markdown report (which had shown the reasons alone)."""
    from stabench.report import gate_markdown_rows, gate_messages

    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    current = [_run(s, 0.5 if s == 0 else v - 0.05) for s, v in enumerate(GOOD)]
    result = check("c", current, baseline)
    assert result.verdict == "REGRESSED" and "more failed runs" not in result.why
    assert gate_messages([result.entry()]) == [
        ("red", f"REGRESSED c: {result.why}"),
        ("yellow", f"note c: {result.unconfirmed}")]
    assert gate_markdown_rows([result.entry()])[0]["why"] == f"{result.why} · note: {result.unconfirmed}"
    assert ("extra failures 1 is past its limit 0, but one-sided Fisher exact p=0.5 is not significant (needs p < "
            "0.0167)") in result.unconfirmed


def test_compare_names_the_studies_that_found_no_baseline_and_what_the_baseline_held(tmp_path, capsys):
    """One study compared fine; another was renamed and edited, so it matched nothing: say so."""
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    baseline += [_run(s, v, recipe="old-name", torch="2.11.0") for s, v in enumerate(GOOD)]
    current = [_run(s, v) for s, v in enumerate(GOOD)] + [_run(s, 0.5, recipe="new-name") for s in range(8)]
    with Store(tmp_path / "s.sqlite") as store:
        for run in baseline + current:
            store.put(run)
        store.tag([r.key for r in baseline], "base")
    assert main(["compare", "tag:base", "store", "--store", str(tmp_path / "s.sqlite")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("note: 1 current study(ies) found no baseline (t / m / new-name); the baseline's studies that none "
            "matched: t / m / old-name") in out


def test_a_study_linked_to_other_recipe_contents_is_compared_with_its_own_content():
    """B's runs were once stored under A (same content then); A was edited since.  On a new stack,
    B is compared with B's old runs, not with A's more numerous ones."""
    old_a = [_run(s, v, recipe="A", torch="2.11.0") for s, v in enumerate(GOOD)]
    old_b = [dataclasses.replace(_run(s, v - 0.2, recipe="A", torch="2.11.0"), key=f"b-{s}", recipe_hash="h-B",
                                 recipe_aliases=["B"]) for s, v in enumerate(GOOD[:6])]
    new_a = [_run(s, v, recipe="A") for s, v in enumerate(GOOD)]
    new_b = [dataclasses.replace(_run(s, v - 0.2, recipe="A"), key=f"nb-{s}", recipe_hash="h-B", recipe_aliases=["B"])
             for s, v in enumerate(GOOD[:6])]
    results = {r.claim: r for r in compare_sources(old_a + old_b, new_a + new_b)}
    assert {label: (r.verdict, r.baseline.n) for label, r in results.items()} == {
        "t / m / A | B [recipe content h-A]": ("ok", 8), "t / m / A | B [recipe content h-B]": ("ok", 6)}
    assert set(results["t / m / A | B [recipe content h-B]"].baseline_keys) == {r.key for r in old_b}
    # An edited recipe with no runs of its new content in the baseline is compared with its past.
    edited = [dataclasses.replace(r, recipe_hash="h-A2") for r in new_a]
    (row,) = compare_sources(old_a, edited)
    assert row.baseline.n == 8 and row.changed.startswith("torch 2.11.0 -> 2.13.0, recipe content")


def test_what_changed_names_another_cpu_model_though_it_is_not_in_the_key():
    def on(cpu, runs):
        return [dataclasses.replace(r, environment={**r.environment, "cpu_model": cpu}) for r in runs]

    baseline, current = [_run(s, v) for s, v in enumerate(GOOD)], [_run(s, v, torch="2.14.0") for s, v in enumerate(GOOD)]
    assert what_changed(on("Intel Xeon", baseline), on("AMD EPYC", current)) == \
        "torch 2.13.0 -> 2.14.0, cpu_model Intel Xeon -> AMD EPYC"
    assert what_changed(baseline, on("AMD EPYC", current)) == "torch 2.13.0 -> 2.14.0"  # not recorded before


def test_a_markdown_cell_keeps_a_pipe_inside_its_column():
    """Linked recipe names are joined by ' | ', which must not split a Markdown row."""
    from stabench.report import markdown

    table = markdown([{"recipe": "r | r[lr=2e-05]", "n": 8}])
    assert all(line.replace("\\|", "").count("|") == 3 for line in table.splitlines()), table
    assert "r \\| r[lr=2e-05]" in table
    broken = markdown([{"arm": "two\nlines", "task": "a\r\nb\rc", "n": 8}]).splitlines()
    assert len(broken) == 3 and "two<br>lines" in broken[2] and "a<br>b<br>c" in broken[2]  # no fake extra row


def test_summary_lists_each_stored_study_once_with_its_numbers(tmp_path, capsys):
    """Runs of one recipe under two names are one row; two stacks of one study are two rows."""
    runs = ([_run(s, v) for s, v in enumerate(GOOD[:4])]
            + [dataclasses.replace(_run(s, v, recipe="r[lr=2e-05]"), recipe_hash="h-r") for s, v in enumerate(GOOD)
               if s >= 4]
            + [_run(s, 0.5, torch="2.14.0") for s in (0, 1, 2, 5)]
            + [_run(s, 0.8, recipe="other") for s in range(3)])
    store_arg = ["--store", str(tmp_path / "s.sqlite")]
    with Store(tmp_path / "s.sqlite") as store:
        for run in runs:
            store.put(run)
    md, report, plots = tmp_path / "s.md", tmp_path / "s.json", tmp_path / "plots"
    assert main(["summary", *store_arg, "--md", str(md), "--json", str(report), "--plots", str(plots)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 studies of 15 stored run(s)")
    rows = [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in md.read_text().splitlines()[2:]]
    assert rows[0][:5] == ["study", "metric", "seeds", "majority acc", "n"] and len(rows) == 5
    assert [row[:5] + row[7:8] for row in rows[2:]] == [
        ["t / m / other", "accuracy", "0-2", "0.500", "3", "0/3 [0.000, 0.708]"],
        ["t / m / r \\| r[lr=2e-05] [torch 2.13.0]", "accuracy", "0-7", "0.500", "8", "0/8 [0.000, 0.369]"],
        ["t / m / r \\| r[lr=2e-05] [torch 2.14.0]", "accuracy", "0-2,5", "0.500", "4", "4/4 [0.398, 1.000]"]]
    studies = json.loads(report.read_text())["studies"]
    assert [(s["recipe"], s["seeds"], s["summary"]["failures"]) for s in studies] == [
        ("other", [0, 1, 2], 0), ("r | r[lr=2e-05]", list(range(8)), 0), ("r | r[lr=2e-05]", [0, 1, 2, 5], 4)]
    assert studies[1]["summary"]["mean"] == pytest.approx(sum(GOOD) / 8)
    assert [p.name for p in plots.iterdir()] == ["t-m-accuracy-scores.png"]  # one figure, a box per recipe
    # Filters and seeds select, and say what the store holds when nothing matches.
    assert main(["summary", *store_arg, "--recipe", "r", "--seeds", "0-1"]) == 0
    assert capsys.readouterr().out.startswith("2 studies of 4 stored run(s)")
    assert main(["summary", *store_arg, "--recipe", "r", "--seeds", "0-3"]) == 0  # 2.14.0 lacks seed 3
    assert "note: 1 study(ies) lack some of --seeds 0-3: t / m / r [torch 2.14.0] (lacks 3)" in " ".join(
        capsys.readouterr().out.split())
    # Another metric than the headline one; a metric the runs lack is named.
    with Store(tmp_path / "s.sqlite") as store:
        for run in [dataclasses.replace(_run(s, v, recipe="f1-task", metric="f1"), key=f"f{s}") for s, v in
                    enumerate(GOOD[:3])]:
            store.put(run)
    assert main(["summary", *store_arg, "--recipe", "f1-task", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["studies"][0]["metric"] == "f1"
    assert main(["summary", *store_arg, "--recipe", "f1-task", "--metric", "accuracy", "--plots", str(plots)]) == 0
    assert "│ accuracy │" in capsys.readouterr().out
    assert main(["summary", *store_arg, "--plots", str(plots)]) == 0  # headline metrics: a figure each
    assert sorted(p.name for p in plots.iterdir()) == ["t-m-accuracy-scores.png", "t-m-f1-scores.png"]
    assert main(["summary", *store_arg, "--metric", "mcc"]) == 2
    assert "error: --metric mcc is not among the matching runs' metrics; they have accuracy, f1" in capsys.readouterr().err
    assert main(["summary", *store_arg, "--metric", "f1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("note: left out 3 study(ies) without f1: t / m / other;") and "1 study of 3 stored run(s)" in out
    assert main(["summary", *store_arg, "--recipe", "other", "--seeds", "5-9"]) == 2
    assert "no matching run has a seed in --seeds 5-9; they have seeds 0-2" in capsys.readouterr().err
    assert main(["summary", *store_arg, "--task", "nope"]) == 2
    assert "no stored run matches task=nope (stored tasks: t)" in capsys.readouterr().err
    assert main(["summary", *store_arg, "--plots", "/proc/stabench-plots"]) == 2
    assert "error: cannot write the plots to '/proc/stabench-plots': " in capsys.readouterr().err


def test_two_local_folders_of_one_name_are_compared_each_with_its_own_past():
    """checkpoint-500 of two trainings: one study name, two models; the gate keeps them apart."""
    def of(runs, files):
        return [dataclasses.replace(r, model={"name": "ckpt", "revision": None, "files_sha256": files}) for r in runs]

    mine = of([_run(s, v) for s, v in enumerate(GOOD[:5])], "aaaa")
    other = of([dataclasses.replace(_run(s, 0.5), key=f"o{s}") for s in range(8)], "bbbb")  # more runs
    result = check("c", of([_run(s, v, torch="2.14.0") for s, v in enumerate(GOOD[:5])], "aaaa"), mine + other)
    assert result.baseline_keys == tuple(r.key for r in mine) and result.verdict == "ok"
    # A folder edited since (no baseline runs of its files) is compared with the name's runs, as "model".
    edited = check("c", of([_run(s, 0.5, torch="2.14.0") for s in range(5)], "cccc"), mine)
    assert edited.verdict == "REGRESSED" and "model" in edited.changed


def test_a_user_tasks_metric_versions_are_separate_studies_never_a_per_seed_mix():
    plain = [_run(s, v) for s, v in enumerate(GOOD[:5])]
    scored = [dataclasses.replace(_run(s, v, metric="macro_f1"), key=f"m{s}", finished_at="2026-02-01T00:00:00",
                                  task={"name": "t", "train_size": None, "metrics": ["accuracy", "macro_f1"],
                                        "primary_metric": "macro_f1"}) for s, v in enumerate(GOOD[:3])]
    studies = group_studies(name_studies(plain + scored))
    assert sorted((len(runs), label) for label, runs in studies) == [(3, "t / m / r [metrics accuracy,macro_f1]"),
                                                                     (5, "t / m / r [metrics accuracy]")]


def test_every_study_of_a_task_whose_data_changed_says_which_data_it_holds():
    """Only a recipe stored on both versions was labelled; the others' rows read as current data."""
    def on(data, recipe, seeds):
        return [dataclasses.replace(_run(s, GOOD[s], recipe=recipe), key=f"{data}-{recipe}-{s}",
                                    task={"name": "t", "train_size": None, "fingerprint": data * 4}) for s in seeds]

    old, new = on("a", "r1", range(3)) + on("a", "r2", range(3)), on("b", "r1", range(2))
    other_task = [dataclasses.replace(r, key=f"u{r.seed}", task={"name": "u", "train_size": None, "fingerprint": "c"})
                  for r in on("c", "r1", range(2))]
    subsample = [dataclasses.replace(r, key=f"s{r.seed}", task={"name": "t", "train_size": 8, "fingerprint": "d"})
                 for r in on("d", "r1", range(2))]  # other data by design, not a changed version
    labels = sorted(label for label, _ in group_studies(name_studies(old + new + other_task + subsample)))
    assert labels == ["t / 8 / m / r1", "t / m / r1 [data aaaa]", "t / m / r1 [data bbbb]", "t / m / r2 [data aaaa]",
                      "u / m / r1"]


def test_a_smallest_possible_p_equal_to_the_level_is_too_few_seeds():
    """3 vs 3 seeds, one check at alpha 0.05: the most extreme of C(6, 3) = 20 splits has p = 1/20, which is
    not below 0.05, so not even a full collapse can regress: the gate fails as too few seeds, never passes."""
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate([0.90, 0.91, 0.92])]
    collapsed = [_run(s, 0.5) for s in range(3)]
    mean_only = {"alpha": 0.05, "max_std_increase": None, "max_extra_failures": None}
    result = check("c", collapsed, baseline, mean_only)
    assert not result.regressed
    assert result.verdict == "TOO FEW SEEDS" and result.fails
    assert result.why.startswith("3 vs 3 seeds: no mean or failure test can reach p < 0.05")
    # A level just above 1/20 can be reached, and the full collapse then regresses.
    assert check("c", collapsed, baseline, {**mean_only, "alpha": 0.051}).verdict == "REGRESSED"


def test_a_seed_stored_twice_in_the_baseline_counts_once_with_its_newest_run():
    newer = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD[:4])]
    older = dataclasses.replace(_run(0, 0.6, torch="2.11.0"), finished_at="2025-12-31T00:00:00")
    for baseline in ([older, *newer], [*newer, older]):  # whatever order the store gives them in
        result = check("c", [_run(s, v) for s, v in enumerate(GOOD[:4])], baseline)
        assert result.baseline.n == 4
        assert result.baseline.mean == pytest.approx(sum(GOOD[:4]) / 4)
        assert older.key not in result.baseline_keys and newer[0].key in result.baseline_keys


def test_listing_commands_on_seeds_read_only_the_runs_on_those_seeds(tmp_path, capsys):
    """--seeds is a query, not a filter over every matching run read in full: a lab's store is
    tens of thousands of runs, and an unreadable record on another seed does not stop it."""
    store_arg = ["--store", str(tmp_path / "s.sqlite")]
    with Store(tmp_path / "s.sqlite") as store:
        for seed, score in enumerate(GOOD[:4]):
            store.put(_run(seed, score))
        with store._transaction() as conn:
            conn.execute("UPDATE runs SET result_json = '{\"key\": \"trunc' WHERE seed = 3")
    for command in (["runs"], ["summary"], ["export", str(tmp_path / "e.json")], ["tag", "base"]):
        assert main([*command, *store_arg, "--seeds", "0-2"]) == 0, capsys.readouterr().err
    assert "3 stored run(s)" in capsys.readouterr().out
    key = next(row[0] for row in sqlite3.connect(tmp_path / "s.sqlite").execute("SELECT key FROM runs WHERE seed = 3"))
    # A listing or a backup goes on without the damaged record, naming it; a gate stops there.
    for command in (["runs"], ["summary"], ["export", str(tmp_path / "all.json")]):
        assert main([*command, *store_arg]) == 0
        out, err = capsys.readouterr()
        assert f"left out 1 unreadable stored run(s), {key}: rerunning their study trains them again" in " ".join(
            err.split()), command
    assert len(json.loads((tmp_path / "all.json").read_text())) == 3
    # Never over an earlier export, which may hold the damaged run whole.
    assert main(["export", str(tmp_path / "e.json"), *store_arg]) == 2
    assert "so {}, an earlier export that may hold them whole, is left as it is: export to a new file".format(
        tmp_path / "e.json") in " ".join(capsys.readouterr().err.split())
    assert len(json.loads((tmp_path / "e.json").read_text())) == 3  # seeds 0-2, as exported above
    assert main(["tag", "base", *store_arg, "--seeds", "4"]) == 2  # tag stops at it, as without --seeds
    assert f"stored run {key} is unreadable" in " ".join(capsys.readouterr().err.split())
    assert main(["compare", str(tmp_path / "all.json"), "store", *store_arg]) == 2
    assert f"stored run {key} is unreadable" in " ".join(capsys.readouterr().err.split())


def test_a_listing_command_that_finds_nothing_says_what_it_did_not_do(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    assert main(["tag", "base", "--store", str(path)]) == 2
    assert f"error: the results store {path} holds no runs; nothing was tagged 'base'" in capsys.readouterr().err
    with Store(path) as store:
        store.put(_run(0, 0.9))
    assert main(["export", str(tmp_path / "e.json"), "--store", str(path), "--task", "nope", "--seeds", "1"]) == 2
    assert (f"error: no stored run matches task=nope (stored tasks: t); nothing was exported to {tmp_path / 'e.json'}"
            in " ".join(capsys.readouterr().err.split()))


def test_a_baseline_holding_the_current_runs_and_other_versions_names_the_versions_it_left_out():
    """An export of every version of a recipe, taken after a bad edit, held the edit's own runs: the
    gate compared them with themselves (``same runs``, ok) and never said the good versions were there."""
    good = [_run(s, v) for s, v in enumerate(GOOD)]
    edited = [dataclasses.replace(_run(s, 0.5), key=f"edited-{s}", recipe_hash="h-edited") for s in range(8)]
    result = check("c", edited, good + edited)
    assert result.verdict == "ok" and result.changed == "same runs"
    assert result.baseline_note == ("the baseline also holds runs of 1 other version(s) of this recipe (recipe hash "
                                    "h-r), not compared: a study is compared with its own content's runs where the "
                                    "baseline has them")
    assert check("c", edited, good).baseline_note == ""  # only another version: it is the one compared
    assert check("c", edited, good).verdict == "REGRESSED"


@given(st.lists(st.tuples(st.sampled_from("tu"), st.sampled_from("abcde"), st.lists(st.sampled_from("abcde"),
                                                                                     max_size=2),
                          st.sampled_from("hk")), max_size=8))
def test_recipe_names_of_one_study_share_one_label(made):
    """A name and its aliases, and names whose runs (of one task) share content, are one study;
    names on another task never join it, and a label lists exactly the names it stands for."""
    from stabench.gate import linked_recipe_names

    runs = [dataclasses.replace(_run(i, 0.9, recipe=name), task={"name": task, "train_size": None},
                                recipe_aliases=aliases, recipe_hash=content)
            for i, (task, name, aliases, content) in enumerate(made)]
    labels = linked_recipe_names(runs)
    assert set(labels) == {(r.task["name"], None, "m", name) for r in runs for name in r.recipe_names}
    # Names share a label exactly when a chain of aliases and shared contents links them (a walk).
    links: dict[tuple, set] = {node: set() for node in labels}
    for r in runs:
        own = [(r.task["name"], None, "m", name) for name in r.recipe_names]
        same = [(o.task["name"], None, "m", o.recipe_name) for o in runs
                if (o.task["name"], o.recipe_hash) == (r.task["name"], r.recipe_hash)]
        for a in own + same:
            links[a].update(own + same)
    for start in labels:
        reached, todo = {start}, [start]
        while todo:
            for linked in links[todo.pop()] - reached:
                reached.add(linked)
                todo.append(linked)
        assert {node for node in labels if labels[node] == labels[start] and node[0] == start[0]} == reached
    for r in runs:
        assert len({labels[(r.task["name"], None, "m", name)] for name in r.recipe_names}) == 1
        same_content = [o for o in runs if (o.task["name"], o.recipe_hash) == (r.task["name"], r.recipe_hash)]
        assert len({labels[(o.task["name"], None, "m", o.recipe_name)] for o in same_content}) == 1
    for task in "tu":
        for label in {label for node, label in labels.items() if node[0] == task}:
            assert label.split(" | ") == sorted(node[3] for node, named in labels.items()
                                                if node[0] == task and named == label)


def test_the_default_gate_weighs_each_effect_against_the_documented_limits():
    """README: ``max_mean_drop=0.01,max_std_increase=0.01,max_extra_failures=0,alpha=0.05``, each
    check at alpha over the 3 checks that are on."""
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    result = check("c", [_run(s, v) for s, v in enumerate(GOOD)], baseline)
    assert {c["check"]: c["limit"] for c in result.checks} == {"mean drop": 0.01, "std increase": 0.01,
                                                                "extra failures": 0}
    assert [c["level"] for c in result.checks] == pytest.approx([0.05 / 3] * 3)
    assert check_limits(None) == {"max_mean_drop": 0.01, "max_std_increase": 0.01, "max_extra_failures": 0,
                                  "alpha": 0.05}


def test_none_switches_a_limit_off_however_it_is_written_and_limits_must_be_a_mapping():
    assert parse_limits("max_mean_drop=None,max_std_increase=NONE")["max_mean_drop"] is None
    assert check_limits({"max_extra_failures": " None ", "max_std_increase": "none"}) == {
        **DEFAULT_LIMITS, "max_extra_failures": None, "max_std_increase": None}
    for not_a_mapping in (["alpha", 0.1], "alpha=0.1", [("alpha", 0.1)]):
        with pytest.raises(ValueError, match=r"^gate limits .* are invalid; expected a dict such as \{'alpha': 0\.01\}$"):
            check_limits(not_a_mapping)


@pytest.mark.parametrize("alpha", [1, 1.0, "1", "1.0"])
def test_an_alpha_of_one_is_refused_since_every_test_would_fire(alpha):
    with pytest.raises(ValueError, match=r"^gate limit alpha=1(\.0)? is invalid; expected a number in \(0, 1\)$"):
        check_limits({"alpha": alpha})
    with pytest.raises(ValueError, match=r"gate limit alpha=1"):
        parse_limits(f"alpha={alpha}")


@pytest.mark.parametrize("name", ["max_extra_failures", "max_mean_drop", "max_std_increase"])
@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_limit_is_refused_never_read_as_a_number(name, flag):
    with pytest.raises(ValueError, match=f"^gate limit {name}={flag} is invalid; expected "):
        check_limits({name: flag})


@pytest.mark.parametrize("text, count", [("2", 2), ("2.0", 2), ("1e1", 10), ("0", 0)])
def test_max_extra_failures_is_a_count_as_a_json_report_writes_it(text, count):
    limit = parse_limits(f"max_extra_failures={text}")["max_extra_failures"]
    assert type(limit) is int and limit == count
    assert json.dumps(check_limits({"max_extra_failures": float(count)})["max_extra_failures"]) == str(count)


def test_a_check_that_regressed_is_not_listed_as_unconfirmed():
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    current = [_run(s, v - 0.3 if s % 2 else v - 0.05, torch="2.13.0") for s, v in enumerate(GOOD)]
    result = check("c", current, baseline)
    regressed = [c["check"] for c in result.checks if c["regressed"]]
    assert "mean drop" in regressed
    assert not any(result.unconfirmed.startswith(name) or f"; {name} " in result.unconfirmed for name in regressed)
    assert result.entry()["unconfirmed"] == result.unconfirmed


def test_two_current_seeds_are_compared_with_the_baseline_s_runs_of_those_two_seeds():
    baseline = [_run(s, v, torch="2.11.0") for s, v in enumerate(GOOD)]
    result = check("c", [_run(s, v) for s, v in enumerate(GOOD[:2])], baseline)
    assert result.baseline_keys == tuple(r.key for r in baseline[:2]) and result.baseline.n == 2


def test_a_regression_outranks_too_few_seeds_in_the_verdict_and_both_reasons_are_given():
    """A check that regressed significantly is a finding, whatever another check could not show with
    these seeds: the verdict says REGRESSED, and ``why`` keeps both."""
    from stabench.gate import GateResult
    from stabench.stats import summarize

    summary = summarize([0.8, 0.9, 0.85], failed=0)
    both = GateResult("c", ("t", None, "m", "r"), "accuracy", summary, summary,
                      reasons=["accuracy: mean got worse"], too_few_seeds="no test could fire on failures")
    assert both.regressed and both.fails and both.verdict == "REGRESSED"
    assert both.why == "accuracy: mean got worse; no test could fire on failures"
    few = dataclasses.replace(both, reasons=[])
    assert few.verdict == "TOO FEW SEEDS" and few.fails and not few.regressed
    assert dataclasses.replace(few, too_few_seeds=None).verdict == "ok"
