"""Reports a CI step reads: strict JSON whatever numpy handed the report."""
import contextlib
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from stabench import report
from stabench.claims import parse_seeds
from stabench.report import seed_ranges, verdict_text, write_json
from stabench.result import RunResult

scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True))


@given(st.lists(scalars, max_size=6))
def test_json_holds_numpy_scalars_as_json_types_and_non_finite_as_null(tmp_path_factory, values):
    as_numpy = [np.bool_(v) if isinstance(v, bool) else np.int64(v) if isinstance(v, int) else np.float64(v)
                for v in values]
    path = write_json(tmp_path_factory.mktemp("report") / "report.json", {"checks": as_numpy})
    written = json.loads(path.read_text())["checks"]
    for value, read in zip(values, written):
        if isinstance(value, float) and not math.isfinite(value):
            assert read is None
        else:
            assert read == value and type(read) is type(value)


def test_numpy_arrays_are_written_as_lists(tmp_path):
    path = write_json(tmp_path / "r.json", {"a": np.array([1.0, np.nan]), "b": np.array([[1, 2]]), "c": np.array([3])})
    assert json.loads(path.read_text()) == {"a": [1.0, None], "b": [[1, 2]], "c": [3]}


@given(st.sets(st.integers(0, 200), min_size=1, max_size=30))
def test_seed_ranges_read_back_as_the_same_seeds_in_fewest_parts(seeds):
    text = seed_ranges(list(seeds))
    assert parse_seeds(text) == sorted(seeds)
    gaps = sum(1 for a, b in zip(sorted(seeds), sorted(seeds)[1:]) if b != a + 1)
    assert text.count(",") == gaps


@pytest.mark.parametrize("counts, failed, verdict", [
    ([95, 5, 0], False, "ok, predicts 2 of 3 classes"),  # the majority is 0.61: above it, never a minority class
    ([95, 5, 0], True, "failed, predicts 2 of 3 classes"),
    ([10, 0, 0, 5], False, "ok, predicts 2 of 4 classes"),
    ([50, 30, 20], False, "ok"),
    ([60, 40], True, "failed"),
    ([0, 100, 0], True, "failed, collapsed"),
])
def test_a_verdict_says_when_a_run_never_predicts_some_of_three_or_more_classes(counts, failed, verdict):
    """Above the majority class while never predicting a minority class: "ok" alone hid it."""
    run = RunResult(key="k", task={}, model={}, recipe={}, recipe_name="r", recipe_hash="h", seed=0, environment={},
                    metrics={"accuracy": 0.6}, primary_metric="accuracy", majority_accuracy=0.5, failed=failed,
                    collapsed=sum(1 for c in counts if c) == 1, diverged=False, steps=1, wall_time_s=1.0,
                    steps_per_s=1.0, started_at="", finished_at="",
                    prediction_counts={str(i): c for i, c in enumerate(counts)})
    assert verdict_text(run) == verdict


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_a_summary_rows_intervals_are_its_summarys_and_one_run_has_none(scores):
    from stabench.report import fmt, summary_row
    from stabench.stats import summarize

    summary = summarize(scores)
    row = summary_row(summary, intervals=True)
    assert set(row) - set(summary_row(summary)) == {"mean [95% CI]", "std [95% CI]", "std upper (chi²)"}
    assert row["mean [95% CI]"] == f"{fmt(summary.mean)} [{fmt(summary.mean_ci[0])}, {fmt(summary.mean_ci[1])}]"
    assert row["std upper (chi²)"] == (fmt(summary.std_upper) if len(scores) > 1 else "-")  # not "inf"
    assert row["std [95% CI]"] == (f"{fmt(summary.std)} [{fmt(summary.std_ci[0])}, {fmt(summary.std_ci[1])}]"
                                   if len(scores) >= 10 else f"{fmt(summary.std)} [needs 10 seeds]")
    assert "inf" not in "".join(row.values())


def test_a_summary_at_another_confidence_labels_its_intervals_so():
    from stabench.report import summary_row
    from stabench.stats import summarize

    scores = [0.6 + 0.01 * i for i in range(10)]
    ninety = summarize(scores, confidence=0.9)
    row = summary_row(ninety, intervals=True)
    assert [name for name in row if "CI" in name] == ["failed k/n [90% CI]", "mean [90% CI]", "std [90% CI]"]
    assert row["failed k/n [90% CI]"] == ninety.failures_text()  # the narrower interval, labelled as it is
    assert ninety.failure_ci[1] < summarize(scores).failure_ci[1]


def test_a_run_and_a_store_print_as_one_short_line(tmp_path):
    """A notebook cell or a pytest assertion shows what a run is, not its per-step traces."""
    from stabench.store import Store

    run = RunResult(key="51bd4eec6de8ccc2", task={"name": "rte"}, model={"name": "bert-large-uncased"}, recipe={},
                    recipe_name="bert-default", recipe_hash="h", seed=3, environment={},
                    metrics={"accuracy": 0.5270758}, primary_metric="accuracy", majority_accuracy=0.527,
                    failed=True, collapsed=True, diverged=False, steps=468, wall_time_s=1.0, steps_per_s=1.0,
                    started_at="", finished_at="", trace={"loss": [0.69] * 10_000})
    assert repr(run) == ("RunResult(rte / bert-large-uncased / bert-default, seed 3: accuracy 0.5271, failed, "
                         "collapsed; key 51bd4eec6de8ccc2)")
    assert repr([run]).count("RunResult(") == 1 and len(repr(run)) < 200
    with Store(tmp_path / "s.sqlite") as store:
        assert repr(store) == f"Store({str(tmp_path / 's.sqlite')!r})"


def test_what_produced_no_runs_is_none():
    from stabench.report import produced_by

    assert produced_by([]) is None


def test_progress_bars_show_a_recipe_s_overrides_as_written():
    """rich read bert-default-bc[layerwise_lr_decay=0.9] as markup: two arms' bars read the same."""
    import io

    from rich.console import Console

    out = io.StringIO()
    with report.progress_display(Console(file=out, force_terminal=True, width=150)) as bars:
        bars.add_task("kwpair / bert-default-bc[layerwise_lr_decay=0.9,lr=0.0004]: seeds", total=3)
        bars.refresh()
    assert "kwpair / bert-default-bc[layerwise_lr_decay=0.9,lr=0.0004]: seeds" in out.getvalue()


def test_a_report_that_cannot_be_written_whole_keeps_the_last_one(tmp_path, monkeypatch):
    """A full disk left a 0-byte summary.md, written in place."""
    import errno

    from stabench import exchange

    path = write_json(tmp_path / "r.json", {"claims": 1})
    before = path.read_text()

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    real = exchange.replaced_atomically

    def full(target):
        with real(target):  # the temporary file is made, and removed after the error
            yield FullDisk()

    monkeypatch.setattr(exchange, "replaced_atomically", contextlib.contextmanager(full))
    with pytest.raises(ValueError, match=r"^cannot write '.*r.json': No space left on device$"):
        write_json(path, {"claims": 2})
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_report_through_a_link_or_a_descriptor_is_written_in_place(tmp_path):
    """/dev/stdout is a link, /dev/fd/N a descriptor: a report replaced atomically would replace the
    link itself (as root, /dev/stdout became a plain file) or fail to make its temporary file."""
    import os

    from stabench.report import check_output, write_markdown

    target = tmp_path / "real.md"
    write_markdown(target, "## stabench old\n")
    (tmp_path / "link.md").symlink_to(target)
    check_output(tmp_path / "link.md", "--md", "md", "")
    write_markdown(tmp_path / "link.md", "## stabench new\n")
    assert (tmp_path / "link.md").is_symlink() and target.read_text() == "## stabench new\n"
    read, write = os.pipe()
    try:
        write_markdown(f"/dev/fd/{write}", "## stabench piped\n")
        assert os.read(read, 100) == b"## stabench piped\n"
    finally:
        os.close(read)
        os.close(write)


def test_columns_every_claim_shares_go_to_the_title_and_numbers_stay_on_one_line():
    """At 140 columns the claims table wrapped 'accuracy 0.989 ± 0.006' and node ids alike."""
    from stabench.report import render, rows_table, shared_columns

    rows = [{"claim": f"benchmarks/test_offline_demo.py::test_claim_{i}", "task": "rte", "model": "bert", "metric":
             "accuracy", "recipe": f"r{i}", "mean ± std": "0.989 ± 0.006"} for i in range(2)]
    narrowed, title = shared_columns(rows)
    assert title == "task rte · model bert · metric accuracy"
    assert [list(row) for row in narrowed] == [["claim", "recipe", "mean ± std"]] * 2
    assert shared_columns(rows[:1]) == (rows[:1], "")  # one row keeps its columns
    assert shared_columns([rows[0], {**rows[1], "task": "mrpc"}])[1] == "model bert · metric accuracy"
    text = render(rows_table(narrowed, title=title, fold=("claim",), width=50), width=50)
    assert all("0.989 ± 0.006" in line for line in text.splitlines() if "0.989" in line)
    assert "test_claim_0" not in text.replace("\n", "")  # the id folded over lines, not cut
    assert "".join(line.split("│")[1].strip() for line in text.splitlines()
                   if line.startswith("│")).startswith("benchmarks/test_offline_demo.py::test_claim_0")


def test_numbers_keep_one_line_only_where_the_names_still_have_room():
    """At 100 columns the names folded to nothing and rich cut '0.500 ± 0.000' to '0.500 ± 0.00'."""
    from stabench.report import claim_rows, render, rows_table

    claim = {"claim": "tests/test_my_recipe.py::test_my_recipe_never_fails", "arm": "a", "task": "reviews",
             "recipe": "my-recipe", "model": "tiny-bert", "metric": "accuracy", "verdict": "passed", "majority": 0.5,
             "failures_text": "6/6 [0.541, 1.000]", "summary": {"n": 10, "mean": 0.5, "std": 0.021, "min": 0.5,
                                                                "median": 0.5, "max": 0.5}}
    errored = {**claim, "claim": "t.py::test_broken", "metric": None, "summary": None, "verdict": "error"}
    rows = claim_rows([claim, errored])
    assert [row["metric"] for row in rows] == ["-", "accuracy"]  # not "None"
    names = ("claim", "task", "recipe", "model", "paper")
    for width, one_line in ((240, True), (100, False), (80, False)):
        table = rows_table(rows, fold=names, width=width)
        assert {column.header: column.no_wrap for column in table.columns if column.header not in names} == {
            header: one_line for header in rows[0] if header not in names}
        text = render(table, width=width)
        assert "0.500 ± 0.021" in text if one_line else "0.500 ± 0.0" not in text.replace("0.500 ± 0.021", "")


def test_a_json_report_written_before_its_notes_and_store_still_makes_its_markdown():
    """A --stabench-json kept from before 2026-12-07 has no notes, baseline or store."""
    from stabench.report import session_markdown

    old = {"claims": [], "seeds": [{"key": "k1"}], "gate": [], "comparisons": [], "nothing_compared": None,
           "interrupted": None, "trained": {"by_seed_items": ["k1"], "by_verdicts": []}}
    assert session_markdown(old) == ("## stabench claims\n\nNo claim's verdict ran: only seed items were selected "
                                     "(runs: 1 trained this session (1 by seed items, 0 by verdicts); 0 read from the "
                                     "store; the JSON report lists them).\n")
    assert "(/s/r.sqlite)" in session_markdown({**old, "store": "/s/r.sqlite", "notes": ["a note"]})


def test_a_number_that_is_not_there_prints_as_a_dash_not_nan():
    """One run has no std (NaN) and no std bound: tables print "-" for them, as for a missing value."""
    from stabench.report import fmt, summary_row
    from stabench.stats import summarize

    assert fmt(None) == fmt(math.nan) == fmt(np.float64("nan")) == fmt(np.float32("nan")) == "-"
    assert fmt(np.array(math.nan)) == fmt(torch.tensor(math.nan)) == "-"  # a 0-d array or tensor: a number too
    assert fmt(np.float32(0.25)) == fmt(torch.tensor(0.25)) == "0.250"
    assert fmt(0.5) == "0.500"
    row = summary_row(summarize([0.7]), intervals=True)
    assert row["mean ± std"] == "0.700 ± -"
    assert "nan" not in "".join(row.values())


@pytest.mark.parametrize("collapsed, diverged, verdict", [
    (True, False, "failed, collapsed"),
    (False, True, "failed, diverged"),
    (True, True, "failed, diverged"),  # a diverged run often predicts one class: divergence is the cause to name
])
def test_a_failed_run_s_verdict_names_divergence_before_collapse(collapsed, diverged, verdict):
    run = RunResult(key="k", task={}, model={}, recipe={}, recipe_name="r", recipe_hash="h", seed=0, environment={},
                    metrics={"accuracy": 0.5}, primary_metric="accuracy", majority_accuracy=0.5, failed=True,
                    collapsed=collapsed, diverged=diverged, steps=1, wall_time_s=1.0, steps_per_s=1.0,
                    started_at="", finished_at="", prediction_counts={"0": 100, "1": 0})
    assert verdict_text(run) == verdict


def test_seeds_listed_twice_or_out_of_order_make_the_same_ranges():
    """Seeds gathered from several runs' records repeat and come in any order."""
    assert seed_ranges([3, 1, 2, 2, 7, 3]) == seed_ranges([1, 2, 3, 7]) == "1-3,7"


def test_the_std_interval_is_shown_from_exactly_std_ci_min_seeds_seeds():
    from stabench.report import STD_CI_MIN_SEEDS, fmt, summary_row
    from stabench.stats import summarize

    enough = summarize([0.7 + 0.01 * i for i in range(STD_CI_MIN_SEEDS)])
    assert summary_row(enough, intervals=True)["std [95% CI]"] == (
        f"{fmt(enough.std)} [{fmt(enough.std_ci[0])}, {fmt(enough.std_ci[1])}]")
    fewer = summarize([0.7 + 0.01 * i for i in range(STD_CI_MIN_SEEDS - 1)])
    assert summary_row(fewer, intervals=True)["std [95% CI]"] == f"{fmt(fewer.std)} [needs {STD_CI_MIN_SEEDS} seeds]"


def _claim_entry(claim, arm):
    return {"claim": claim, "arm": arm, "verdict": "passed", "summary": None, "task": "rte", "train_size": None,
            "recipe": arm, "model": "bert", "metric": "accuracy", "majority": 0.5, "failures_text": "0/5 [0.000, 0.522]"}


def test_the_claims_table_names_an_arm_only_where_its_claim_has_several():
    rows = report.claim_rows([_claim_entry("t.py::one", "bert-default"), _claim_entry("t.py::two", "bc"),
                              _claim_entry("t.py::two", "no-bc")])
    assert [row["claim"] for row in rows] == ["t.py::one", "t.py::two (bc)", "t.py::two (no-bc)"]


def test_runs_trained_by_seed_items_or_by_verdicts_are_not_counted_as_read():
    record = {"trained": {"by_seed_items": ["a", "b"], "by_verdicts": ["c"]}, "store": None,
              "claims": [{"keys": ["a", "b", "c", "d"]}], "seeds": [{"key": "e"}]}
    assert report.runs_line(record) == ("runs: 3 trained this session (2 by seed items, 1 by verdicts); 2 read from "
                                        "the store")  # d and e


def test_what_produced_a_study_lists_each_stack_its_runs_ran_under_once():
    def run(seed, threads):
        return RunResult(key=f"k{seed}", task={"name": "rte"}, model={"name": "bert"}, recipe={}, recipe_name="r",
                         recipe_hash="h", seed=seed, environment={"torch": "2.5", "cpu_threads": threads},
                         metrics={"accuracy": 0.6}, primary_metric="accuracy", majority_accuracy=0.5, failed=False,
                         collapsed=False, diverged=False, steps=1, wall_time_s=1.0, steps_per_s=1.0, started_at="",
                         finished_at="")

    stacks = report.produced_by([run(0, 4), run(1, 4), run(2, 8), run(3, 4)])["stacks"]
    assert [stack["cpu_threads"] for stack in stacks] == [4, 8]


def test_an_empty_file_is_replaced_by_a_report_and_another_file_is_not(tmp_path):
    """An empty file (made by `touch`, or a report cut off before its first line) holds nothing to lose."""
    from stabench.report import check_output

    empty, notes = tmp_path / "empty.md", tmp_path / "notes.md"
    empty.touch()
    notes.write_text("# my notes\n")
    check_output(empty, "--stabench-md", "md", "--stabench-plot-format")
    with pytest.raises(ValueError, match=r"notes\.md' exists and is not a stabench Markdown report"):
        check_output(notes, "--stabench-md", "md", "--stabench-plot-format")


def test_comparisons_of_several_settings_each_say_what_they_ran_on():
    """One comparison with its task and model and one without: the column is there for both."""
    from stabench.report import comparison_rows
    from stabench.stats import compare

    scores = [0.9, 0.91, 0.92], [0.5, 0.6, 0.7]
    rows = comparison_rows([compare(*scores, 0, 3, subject="rte / bert", aso_iterations=50),
                            compare(*scores, 0, 3, aso_iterations=50)])
    assert [row["on"] for row in rows] == ["rte / bert", "-"]
    assert "on" not in comparison_rows([compare(*scores, 0, 3, aso_iterations=50)])[0]


def test_a_summary_row_shows_each_count_and_statistic_in_its_own_column():
    """Collapsed runs are not diverged ones, and min / median / max read in that order."""
    from stabench.report import fmt, summary_row
    from stabench.stats import summarize

    summary = summarize([0.9, 0.5, 0.7, 0.5], failed=2, collapsed=2, diverged=1)
    row = summary_row(summary)
    assert row["collapsed"] == str(summary.collapsed) == "2"
    assert row["min / median / max"] == f"{fmt(0.5)} / {fmt(0.6)} / {fmt(0.9)}"
    assert row["mean ± std"] == f"{fmt(summary.mean)} ± {fmt(summary.std)}"


def test_an_infinite_value_prints_as_such_not_as_a_missing_one():
    """A diverged run's loss is there, and infinite: "-" would say that it is missing."""
    from stabench.report import fmt

    assert fmt(math.inf) == f"{math.inf:.3f}" != fmt(None) and fmt(-math.inf) == f"{-math.inf:.3f}"
