import json
import re
from collections import Counter

import numpy as np
import pytest

from stabench.tasks import (BUILTIN_PAIR_TASK, BUILTIN_SINGLE_TASK, get_task, label_names, load_task_data, local_task,
                            task_names)


@pytest.mark.parametrize("name", [BUILTIN_PAIR_TASK, BUILTIN_SINGLE_TASK])
def test_builtin_tasks_are_deterministic_balanced_and_offline(name):
    data = load_task_data(name)
    again = get_task(name).loader()
    assert data.train["label"] == again["train"]["label"]
    assert data.train[get_task(name).text_columns[0]] == again["train"][get_task(name).text_columns[0]]
    assert Counter(data.eval["label"]) == {0: 128, 1: 128} and Counter(data.train["label"]) == {0: 128, 1: 128}
    assert data.majority_accuracy == 0.5 and data.num_labels == 2
    assert set(data.train[get_task(name).text_columns[0]]) != set(data.eval[get_task(name).text_columns[0]])


def test_pair_task_label_means_same_number():
    data = load_task_data(BUILTIN_PAIR_TASK)
    numbers = {"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"}
    for a, b, label in zip(data.train["sentence1"], data.train["sentence2"], data.train["label"]):
        (n1,) = numbers & set(a.rstrip(".").split())
        (n2,) = numbers & set(b.rstrip(".").split())
        assert label == int(n1 == n2)


def test_glue_registry_and_metrics():
    assert {"rte", "mrpc", "cola", "qnli", "sst2"} <= set(task_names())
    assert get_task("mrpc").metrics == ("f1", "accuracy") and get_task("cola").primary_metric == "mcc"
    assert get_task("qnli").text_columns == ("question", "sentence")


def test_glue_without_hub_fails_at_once_with_the_reason():
    """Without a cache or the hub, before the hub client's retries (about 23 s of log noise)."""
    from stabench.profiles import glue_available

    if glue_available("rte"):
        pytest.skip("RTE can be loaded here (cached, or the hub is reachable)")
    with pytest.raises(RuntimeError, match=r"^could not load nyu-mll/glue/rte \(not in the local cache and .*\); "
                                           r"it needs the datasets package and Hugging Face hub access or a local "
                                           r"datasets cache$") as error:
        load_task_data("rte")
    assert error.value.__cause__ is None  # refused before datasets tried the hub


def test_without_the_datasets_package_a_skip_says_so_not_that_the_hub_is_unreachable(monkeypatch):
    """The GPU image has no datasets: its skips blamed the hub."""
    import importlib.util

    from stabench import profiles

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    monkeypatch.setattr(profiles, "hub_reachable", lambda: True)
    assert profiles.dataset_reason() == "the datasets package is not installed: pip install datasets"


def test_seeded_subsample_and_fingerprint():
    full = load_task_data(BUILTIN_PAIR_TASK)
    a = load_task_data(BUILTIN_PAIR_TASK, train_size=100, subsample_seed=0)
    b = load_task_data(BUILTIN_PAIR_TASK, train_size=100, subsample_seed=0)
    c = load_task_data(BUILTIN_PAIR_TASK, train_size=100, subsample_seed=1)
    assert len(a.train) == 100 and a.train["sentence1"] == b.train["sentence1"]
    assert a.train["sentence1"] != c.train["sentence1"]
    assert len({full.fingerprint, a.fingerprint, c.fingerprint}) == 3 and a.fingerprint == b.fingerprint
    assert a.describe()["train_size"] == 100 and full.describe()["subsample_seed"] is None
    swept = load_task_data(BUILTIN_PAIR_TASK, train_size=np.int64(99), subsample_seed=np.int64(3))  # np.arange's
    assert len(swept.train) == 99 and json.dumps(swept.describe())  # stored as JSON: a numpy integer failed there
    for bad in (-1, "1", 1.5, 2**32):
        with pytest.raises(ValueError, match=rf"^subsample_seed={re.escape(repr(bad))} is invalid; expected an integer "
                                             rf"from 0 to 4294967295"):
            load_task_data(BUILTIN_PAIR_TASK, train_size=99, subsample_seed=bad)
    with pytest.raises(ValueError, match=r"^train_size=1000 is larger than same-number's training set \(256 "
                                         r"examples\); expected at most 256, or None for the full set$"):
        load_task_data(BUILTIN_PAIR_TASK, train_size=1000)
    whole = load_task_data(BUILTIN_PAIR_TASK, train_size=256, subsample_seed=1)  # the full set, in its own order
    assert whole.describe() == full.describe() and whole.train["sentence1"] == full.train["sentence1"]
    with pytest.raises(ValueError, match=r"^subsample_seed=3 draws a training subsample, so it needs train_size="):
        load_task_data(BUILTIN_PAIR_TASK, subsample_seed=3)  # silently the whole set before


def test_the_largest_seed_numpy_takes_draws_a_subsample():
    """2**32 - 1 is a valid seed (the bound is inclusive): it draws its own subsample, 2**32 is refused."""
    from stabench.result import MAX_SEED

    largest = load_task_data(BUILTIN_PAIR_TASK, train_size=100, subsample_seed=MAX_SEED)
    assert len(largest.train) == 100 and largest.describe()["subsample_seed"] == MAX_SEED
    assert largest.fingerprint != load_task_data(BUILTIN_PAIR_TASK, train_size=100, subsample_seed=0).fingerprint
    with pytest.raises(ValueError, match=rf"^subsample_seed={MAX_SEED + 1} is invalid"):
        load_task_data(BUILTIN_PAIR_TASK, train_size=100, subsample_seed=MAX_SEED + 1)


def test_runs_on_a_subsample_of_another_seed_are_on_the_current_data():
    """A run drawn with subsample_seed 3 is matched against seed 3's subsample, not seed 0's, so a Task
    filter keeps it (and the whole set's runs, whose subsample_seed is None)."""
    from types import SimpleNamespace

    from stabench.tasks import on_current_data

    task = get_task(BUILTIN_PAIR_TASK)
    runs = [SimpleNamespace(task=load_task_data(task, train_size=size, subsample_seed=seed).describe())
            for size, seed in ((None, 0), (100, 0), (100, 3), (50, 7))]
    assert on_current_data(task, runs) == runs
    swapped = [SimpleNamespace(task={**runs[2].task, "subsample_seed": 4})]  # another seed's subsample
    assert on_current_data(task, swapped) == []


def test_a_subsample_that_leaves_a_class_out_is_refused(tmp_path):
    """Not stratified: a run on one class would count as failed for the data's sake, not the recipe's."""
    with pytest.raises(ValueError, match=r"^train_size=1 \(subsample_seed=0\) leaves class\(es\) [01] of "
                                         r"same-number's training set out: the subsample is not stratified; use a "
                                         r"larger train_size or another subsample_seed$"):
        load_task_data(BUILTIN_PAIR_TASK, train_size=1)
    rows = [{"text": f"t{i}", "label": "rare" if i == 0 else "common"} for i in range(20)]
    _write(tmp_path / "train.csv", rows, "csv")
    task = local_task("skewed", tmp_path / "train.csv", tmp_path / "train.csv", "text")
    held, refused = [], []
    for seed in range(8):  # half the subsamples of 10 of these 20 hold the rare example
        try:
            held.append("t0" in load_task_data(task, train_size=10, subsample_seed=seed).train["text"])
        except ValueError as error:
            assert "leaves class(es) rare of skewed's training set out" in str(error)
            refused.append(seed)
    assert held and all(held) and refused


def _write(path, rows, kind):
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "\t" if kind == "tsv" else ","
        path.write_text(sep.join(rows[0]) + "\n" + "".join(sep.join(str(v) for v in r.values()) + "\n" for r in rows))


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl"])
def test_local_files_with_named_columns(tmp_path, kind):
    rows = [{"premise": f"a {i}", "hypothesis": f"b {i}", "gold": "yes" if i % 3 else "no"} for i in range(12)]
    _write(tmp_path / f"train.{kind}", rows, kind)
    _write(tmp_path / f"dev.{kind}", rows[:9], kind)
    task = local_task(f"mine-{kind}", tmp_path / f"train.{kind}", tmp_path / f"dev.{kind}",
                      ["premise", "hypothesis"], label_column="gold")
    assert local_task(f"mine-{kind}", tmp_path / f"train.{kind}", tmp_path / f"dev.{kind}", "premise, hypothesis",
                      label_column="gold").text_columns == ("premise", "hypothesis")  # as the CLI's --text-columns
    data = load_task_data(task)
    assert len(data.train) == 12 and data.num_labels == 2
    assert data.eval["gold"] == [0, 1, 1, 0, 1, 1, 0, 1, 1]  # "no" -> 0, "yes" -> 1
    assert label_names(data.train, "gold") == data.label_names == ["no", "yes"]
    assert data.majority_accuracy == pytest.approx(6 / 9)



def test_a_local_task_is_loaded_again_when_its_files_differ(tmp_path, monkeypatch):
    """The same relative path from another directory, or a file edited in place, is other data:
    serving the first load's examples would also serve its fingerprint and its stored runs."""
    for folder, word in (("a", "apple"), ("b", "banana")):
        (tmp_path / folder).mkdir()
        _write(tmp_path / folder / "train.csv", [{"text": f"{word} {i}", "label": i % 2} for i in range(4)], "csv")
    monkeypatch.chdir(tmp_path / "a")
    from_a = load_task_data(local_task("fruit-a", "train.csv", "train.csv", ["text"]))
    monkeypatch.chdir(tmp_path / "b")
    from_b = load_task_data(local_task("fruit-b", "train.csv", "train.csv", ["text"]))
    assert from_a.train["text"][0].startswith("apple") and from_b.train["text"][0].startswith("banana")
    assert from_a.fingerprint != from_b.fingerprint

    task = local_task("fruit", tmp_path / "a" / "train.csv", tmp_path / "a" / "train.csv", ["text"])
    before = load_task_data(task)
    _write(tmp_path / "a" / "train.csv", [{"text": f"cherry pie {i}", "label": i % 2} for i in range(4)], "csv")
    after = load_task_data(task)
    assert after.train["text"][0].startswith("cherry") and after.fingerprint != before.fingerprint


def test_the_same_texts_with_other_labels_are_other_data():
    """Relabelled examples are other data: the same fingerprint would read the old labels' runs back."""
    from stabench.tasks import Task

    texts = ["a", "b", "c", "d"]
    dev = _in_memory(texts, [0, 1, 0, 1])
    labelled = Task("labelled", "text", lambda: {"train": _in_memory(texts, [0, 1, 0, 1]), "validation": dev})
    relabelled = Task("relabelled", "text", lambda: {"train": _in_memory(texts, [1, 0, 0, 1]), "validation": dev})
    assert load_task_data(labelled).fingerprint != load_task_data(relabelled).fingerprint


def test_an_example_moved_from_the_dev_set_into_training_is_other_data():
    """The fingerprint marks where training ends: otherwise one stream of values cut at another split
    boundary (a text "0" and labels that read like the next split's texts) would hash the same."""
    from stabench.tasks import Task

    train, dev = _in_memory(["a", "b", "c", "d"], [0, 1, 0, 1]), _in_memory(["1", "0", "g", "h"], [0, 1, 0, 1])
    # The same values in the same order (train texts, train labels, dev texts, dev labels), with one more
    # example in training and one fewer in the dev set.
    stream = [*train["text"], *map(str, train["label"]), *dev["text"], *map(str, dev["label"])]
    n = len(train["text"]) + 1
    moved_train = _in_memory(stream[:n], map(int, stream[n:2 * n]))
    rest = stream[2 * n:]
    moved_dev = _in_memory(rest[:len(rest) // 2], map(int, rest[len(rest) // 2:]))
    assert len(moved_dev["text"]) == len(moved_dev["label"]) == len(dev["text"]) - 1
    original = Task("original", "text", lambda: {"train": train, "validation": dev})
    moved = Task("moved", "text", lambda: {"train": moved_train, "validation": moved_dev})
    assert load_task_data(original).fingerprint != load_task_data(moved).fingerprint


def test_one_name_for_two_sets_of_files_is_refused(tmp_path, monkeypatch):
    from stabench.tasks import registered_name

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _write(tmp_path / folder / "train.csv", [{"text": f"{folder} {i}", "label": i % 2} for i in range(4)], "csv")
        monkeypatch.chdir(tmp_path / folder)
        task = local_task("fruit", "train.csv", "train.csv", ["text"])
        if folder == "a":
            assert registered_name(task) == "fruit"
    with pytest.raises(ValueError, match=r"task name 'fruit' is already used by another task in this process "
                                         r"\(local files train.csv / train.csv, with files \('.*a/train.csv', "):
        registered_name(task)
    # A notebook cell edited to read the same files another way: the message names what changed.
    _write(tmp_path / "b" / "pairs.csv", [{"p": f"x {i}", "q": "y", "label": i % 2} for i in range(4)], "csv")
    registered_name(local_task("pairs", "pairs.csv", "pairs.csv", ["p", "q"]))
    with pytest.raises(ValueError, match=r"^task name 'pairs' is already used by another task in this process \(local "
                                         r"files pairs.csv / pairs.csv, with text_columns \('p', 'q'\) where this one "
                                         r"has \('q', 'p'\)\); give this one another name"):
        registered_name(local_task("pairs", "pairs.csv", "pairs.csv", ["q", "p"]))


def test_local_task_errors_name_the_bad_value(tmp_path):
    _write(tmp_path / "train.csv", [{"text": "x", "label": 0}], "csv")
    with pytest.raises(FileNotFoundError, match="task file '.*missing.csv' does not exist"):
        local_task("x", tmp_path / "train.csv", tmp_path / "missing.csv", ["text"])
    with pytest.raises(FileNotFoundError, match=r"^task file '.*' is a folder; expected a CSV, TSV or JSON-lines"):
        local_task("x", tmp_path / "train.csv", tmp_path, ["text"])
    (tmp_path / "empty.tsv").write_text("text\tlabel\n\n")
    with pytest.raises(ValueError, match=r"^task file '.*empty.tsv' has no examples, only its header"):
        local_task("x", tmp_path / "train.csv", tmp_path / "empty.tsv", ["text"])
    for name, message in (("blank.csv", "a header row naming the columns"), ("blank.jsonl", "one JSON object per line")):
        (tmp_path / name).write_text("\n")
        with pytest.raises(ValueError, match=rf"^task file '.*{name}' is empty; expected {message}"):
            local_task("x", tmp_path / "train.csv", tmp_path / name, ["text"])
    # A misspelt column fails where the task is defined (at collection, in a claim file).
    with pytest.raises(ValueError, match="column 'sentence' is missing from .*train.csv.*it has columns text, label"):
        local_task("x", tmp_path / "train.csv", tmp_path / "train.csv", ["sentence"])
    with pytest.raises(ValueError, match="column 'lable' is missing"):
        local_task("x", tmp_path / "train.csv", tmp_path / "train.csv", ["text"], label_column="lable")
    # Excel's "CSV UTF-8" starts with a byte-order mark: the first column was "missing" though listed.
    (tmp_path / "excel.csv").write_bytes("\ufefftext,label\nfine,1\nbad,0\n".encode())
    excel = load_task_data(local_task("excel", tmp_path / "excel.csv", tmp_path / "excel.csv", ["text"]))
    assert list(excel.train["text"]) == ["fine", "bad"]
    (tmp_path / "spaced.csv").write_text("text, label\nfine, 1\n")
    with pytest.raises(ValueError, match=r"^column 'label' is missing from '.*spaced.csv'; it has columns text,  label "
                                         r"\(' label' with spaces: write the header without them\)$"):
        local_task("x", tmp_path / "spaced.csv", tmp_path / "spaced.csv", ["text"])
    with pytest.raises(ValueError, match=r"^task name 'polarity' is taken by another task \(built-in: .*; give the local "
                                         r"task another name, e.g. 'polarity-local'$"):
        local_task("polarity", tmp_path / "train.csv", tmp_path / "train.csv", ["text"])
    with pytest.raises(ValueError, match="^task name 'rte' is taken by another task \\(GLUE RTE"):
        local_task("rte", tmp_path / "train.csv", tmp_path / "train.csv", ["text"])
    with pytest.raises(ValueError, match="label_column='text' is also a text column"):
        local_task("x", tmp_path / "train.csv", tmp_path / "train.csv", ["text"], label_column="text")
    for bad in ([], ["text", "label", "text"], [""]):
        with pytest.raises(ValueError, match=r"text_columns=.* is invalid; expected one or two column names"):
            local_task("x", tmp_path / "train.csv", tmp_path / "train.csv", bad)
    with pytest.raises(ValueError, match=r"^text_columns=\['text', 'text'\] names 'text' twice; expected the two "
                                         r"columns of a sentence pair, or one column$"):
        local_task("x", tmp_path / "train.csv", tmp_path / "train.csv", ["text", "text"])
    (tmp_path / "caps.csv").write_text("Text,Label\nfine,1\n")
    with pytest.raises(ValueError, match=r"^column 'text' is missing from '.*caps.csv'; it has columns Text, Label "
                                         r"\(names are case-sensitive: did you mean 'Text'\?\)$"):
        local_task("x", tmp_path / "caps.csv", tmp_path / "caps.csv", ["text"])
    with pytest.raises(ValueError, match=r"^column 'txt' is missing from '.*train.csv'; it has columns text, label "
                                         r"\(did you mean 'text'\?\)$"):
        local_task("x", tmp_path / "train.csv", tmp_path / "train.csv", ["txt"])
    (tmp_path / "bad.jsonl").write_text("text,label\nx,0\n")  # a CSV file named .jsonl
    with pytest.raises(ValueError, match="is not JSON lines: its first line is not a JSON object"):
        local_task("x", tmp_path / "bad.jsonl", tmp_path / "bad.jsonl", ["text"])


@pytest.mark.parametrize("name, separator, message", [
    ("commas.tsv", ",", r"^task file '.*commas.tsv' has one column, 'text,label', which looks comma-separated; "
                        r"expected \.tsv columns separated by tabs, or name the file \.csv$"),
    ("tabs.csv", "\t", r"which looks tab-separated; expected \.csv columns separated by commas, or name the file "
                       r"\.tsv$"),
    # a spreadsheet's CSV in some locales
    ("semicolons.csv", ";", r"^task file '.*semicolons.csv' has one column, 'text;label', which looks "
                            r"semicolon-separated \(a spreadsheet's CSV in some locales\); expected \.csv columns "
                            r"separated by commas: save it as comma-separated CSV$"),
    ("semicolons.tsv", ";", r"semicolon-separated .*; expected \.tsv columns separated by tabs: save it "
                            r"tab-separated, or comma-separated named \.csv$"),
])
def test_a_task_file_whose_rows_another_separator_splits_says_which(tmp_path, name, separator, message):
    (tmp_path / name).write_text(f"text{separator}label\nx{separator}0\n")
    with pytest.raises(ValueError, match=message):
        local_task("x", tmp_path / name, tmp_path / name, ["text"])


def test_evaluation_labels_missing_from_training_are_refused(tmp_path):
    _write(tmp_path / "train.csv", [{"text": f"t{i}", "label": i % 2} for i in range(6)], "csv")
    _write(tmp_path / "dev.csv", [{"text": f"d{i}", "label": i % 3} for i in range(6)], "csv")
    task = local_task("three-in-dev", tmp_path / "train.csv", tmp_path / "dev.csv", ["text"])
    with pytest.raises(ValueError, match="labels 2 of .*dev.csv' never occur in .*train.csv'"):
        load_task_data(task)


def test_one_label_written_with_a_stray_space_or_other_case_is_refused_not_a_new_class(tmp_path):
    rows = [{"text": f"t{i}", "label": "praise" if i % 2 else "complaint"} for i in range(6)]
    _write(tmp_path / "dev.csv", rows, "csv")
    rows[3]["label"] = "praise "  # CSV keeps the space; train has both forms
    _write(tmp_path / "train.csv", rows, "csv")
    task = local_task("spaced", tmp_path / "train.csv", tmp_path / "dev.csv", ["text"])
    with pytest.raises(ValueError, match=r"^labels 'praise' \(in '.*train.csv'\) and 'praise ' \(in '.*train.csv'\) differ "
                                         r"only in spaces or case; expected each class written one way$"):
        load_task_data(task)
    _write(tmp_path / "dev.csv", [{**row, "label": row["label"].capitalize()} for row in rows], "csv")
    task = local_task("cased", tmp_path / "train.csv", tmp_path / "dev.csv", ["text"])
    with pytest.raises(ValueError, match=r"^labels 'Complaint' \(in '.*dev.csv'\) and 'complaint' \(in "):
        load_task_data(task)


@pytest.mark.parametrize("kind, blank", [("csv", "label"), ("csv", "text"), ("jsonl", "label")])
def test_an_empty_cell_is_named_by_row_and_column(tmp_path, kind, blank):
    """Not reported as labels that "never occur" (an empty cell turns a CSV's labels into floats)."""
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(8)]
    _write(tmp_path / f"dev.{kind}", rows, kind)
    rows[5] = {**rows[5], blank: None}
    if kind == "csv":
        (tmp_path / "train.csv").write_text("text,label\n" + "".join(
            f"{'' if r['text'] is None else r['text']},{'' if r['label'] is None else r['label']}\n" for r in rows))
    else:
        _write(tmp_path / "train.jsonl", rows, kind)
    task = local_task(f"blank-{kind}-{blank}", tmp_path / f"train.{kind}", tmp_path / f"dev.{kind}", ["text"])
    with pytest.raises(ValueError, match=f"row 6 of .*train.{kind}' has no value in column '{blank}'"):
        load_task_data(task)


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl"])
def test_texts_and_labels_are_read_as_written_where_pandas_would_see_missing_values_or_numbers(tmp_path, kind):
    """A sentence "NA" and a class "NA" are text (pandas reads them as missing), as is "0.50"."""
    texts = ["NA", "null", "N/A", "nan", "None", "0.50", "7", "true"]
    rows = [{"text": text, "label": ["NA", "ok"][i % 2]} for i, text in enumerate(texts)]
    for split in ("train", "dev"):
        _write(tmp_path / f"{split}.{kind}", rows, kind)
    data = load_task_data(local_task(f"as-written-{kind}", tmp_path / f"train.{kind}", tmp_path / f"dev.{kind}",
                                     "text"))
    assert data.train["text"] == texts and data.label_names == ["NA", "ok"] and data.eval["label"][:2] == [0, 1]


def test_a_blank_in_another_column_after_datasets_first_block_of_rows_still_reads(tmp_path):
    """datasets reads a CSV 10,000 rows at a time: a blank read as text in a later block of a
    numeric column the task does not use failed the whole file ("Failed to parse string: ''")."""
    rows = [f"text {i},{i % 2},{'' if i == 15000 else i}\n" for i in range(25000)]
    (tmp_path / "big.csv").write_text("text,label,score\n" + "".join(rows))
    data = load_task_data(local_task("big", tmp_path / "big.csv", tmp_path / "big.csv", "text"))
    assert len(data.train) == 25000 and data.train["text"][-1] == "text 24999"
    rows = [f"{'' if i == 15000 else i},{'' if i == 15000 else i},text {i},{i % 2}\n" for i in range(25000)]
    (tmp_path / "twice.csv").write_text("score,score,text,label\n" + "".join(rows))  # pandas: score, score.1
    assert len(load_task_data(local_task("twice", tmp_path / "twice.csv", tmp_path / "twice.csv", "text")).train) == 25000
    rows = [f"{'' if i == 15000 else i},{'' if i == 15000 else i},{'' if i == 15000 else i},text {i},{i % 2}\n"
            for i in range(25000)]
    (tmp_path / "thrice.csv").write_text("score,score,score.1,text,label\n" + "".join(rows))  # score, score.2, score.1
    assert len(load_task_data(local_task("thrice", tmp_path / "thrice.csv", tmp_path / "thrice.csv", "text")).train) \
        == 25000
    (tmp_path / "latin.csv").write_text("text,label\na,0\nb,1\n")
    latin = local_task("latin", tmp_path / "latin.csv", tmp_path / "latin.csv", "text")
    (tmp_path / "latin.csv").write_bytes("t\xe9xt,label\na,0\nb,1\n".encode("latin-1"))  # rewritten since
    with pytest.raises(ValueError, match=r"^cannot read '.*latin.csv' as CSV/TSV: 'utf-8' codec can't decode .*; "
                                         r"expected UTF-8 text$"):
        load_task_data(latin)
    (tmp_path / "extra.csv").write_text("text,label\na,0\nb,1,surplus\n")  # an unquoted comma: still refused
    with pytest.raises(ValueError, match=r"cannot read '.*extra.csv' as CSV/TSV: Error tokenizing data"):
        load_task_data(local_task("extra", tmp_path / "extra.csv", tmp_path / "extra.csv", "text"))


def test_a_number_or_a_list_in_a_json_text_column_is_refused_not_turned_into_text(tmp_path):
    """A tokenizer takes no number (it crashed there), and datasets may read a string "007" beside
    a number as 7: which text was meant is lost, so the row is named.  (One kind per file: datasets
    before 4.7 refuses a column of two kinds itself.)"""
    for name, texts, shown in (("ints", [7, 8], "int 7"), ("bools", [True, False], "bool True"),
                               ("lists", [["a"], ["b", "c"]], "list ['a']")):
        _write(tmp_path / f"{name}.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(texts)], "jsonl")
        with pytest.raises(ValueError, match=rf"^row 1 of '.*{name}.jsonl' holds {re.escape(shown)} in column 'text', "
                                             rf"not a text; expected every text in quotes, as a JSON string$"):
            load_task_data(local_task(name, tmp_path / f"{name}.jsonl", tmp_path / f"{name}.jsonl", "text"))


def test_a_missing_relative_task_file_says_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"task file 'data/train.csv' does not exist \\(relative to "
                                                f"{tmp_path}; in a claim file, Path\\(__file__\\).parent / "
                                                f"'data/train.csv' finds it wherever pytest starts\\)"):
        local_task("x", "data/train.csv", "data/dev.csv", ["text"])


def test_a_task_file_written_for_the_project_root_is_named_from_the_claim_file_when_pytest_starts_below(
        tmp_path, monkeypatch):
    """`cd mine && pytest` on a claim file naming 'mine/data/train.csv': the hint said
    Path(__file__).parent / 'mine/data/train.csv', which points at mine/mine/data."""
    import runpy

    (tmp_path / "mine" / "data").mkdir(parents=True)
    _write(tmp_path / "mine" / "data" / "train.csv", [{"text": "x", "label": 0}], "csv")
    claim_file = tmp_path / "mine" / "test_mine.py"
    claim_file.write_text("from stabench import local_task\n"
                          "local_task('mine', 'mine/data/train.csv', 'mine/data/train.csv', 'text')\n")
    monkeypatch.chdir(tmp_path / "mine")
    with pytest.raises(FileNotFoundError, match=r"in a claim file, Path\(__file__\).parent / 'data/train.csv' finds "
                                                r"it wherever pytest starts\)"):
        runpy.run_path(str(claim_file))
    script = tmp_path / "mine" / "stabench"  # a console script (no .py) is no claim file: the path as given
    script.write_text(claim_file.read_text())
    with pytest.raises(FileNotFoundError, match=r"Path\(__file__\).parent / 'mine/data/train.csv' finds"):
        runpy.run_path(str(script))


def test_a_task_object_is_registered_under_its_name_once(tmp_path):
    from stabench.tasks import registered_name

    _write(tmp_path / "train.csv", [{"text": "x", "label": 0}], "csv")
    task = local_task("mine-object", tmp_path / "train.csv", tmp_path / "train.csv", ["text"])
    assert registered_name(task) == "mine-object" and registered_name(task) == "mine-object"  # idempotent
    assert get_task("mine-object") is task
    other = local_task("mine-object", tmp_path / "train.csv", tmp_path / "train.csv", ["text"], metrics=("f1",))
    with pytest.raises(ValueError, match="task name 'mine-object' is already used by another task"):
        registered_name(other)


def test_unknown_task_lists_the_known_ones_and_says_to_pass_a_task_not_used_yet(tmp_path):
    import stabench
    from stabench.tasks import registered_name

    with pytest.raises(ValueError, match=r"unknown task 'rtee' \(did you mean 'rte'\?\); known tasks: .*rte"):
        load_task_data("rtee")
    _write(tmp_path / "train.csv", [{"text": f"t{i}", "label": i % 2} for i in range(4)], "csv")
    reviews = local_task("reviews", tmp_path / "train.csv", tmp_path / "train.csv", "text")
    with pytest.raises(ValueError, match=r"^unknown task 'reviews'; known tasks: cola, .* \(a Task from "
                                         r"stabench.local_task or Task\(...\) is known by its name once used: pass "
                                         r"the Task itself\)$"):
        stabench.study("reviews", "tiny-bert", "bert-default", 1, device="cpu")
    assert registered_name(reviews) == "reviews" and get_task("reviews") is reviews  # used once, known by name


def test_the_same_local_files_from_another_directory_are_the_same_task(tmp_path, monkeypatch):
    """A conftest and a test file in a subfolder name the files by different relative paths."""
    from stabench.tasks import registered_name

    (tmp_path / "sub").mkdir()
    _write(tmp_path / "train.csv", [{"text": f"t {i}", "label": i % 2} for i in range(4)], "csv")
    monkeypatch.chdir(tmp_path)
    first = local_task("files", "train.csv", "train.csv", "text")
    monkeypatch.chdir(tmp_path / "sub")
    again = local_task("files", "../train.csv", "../train.csv", ["text"])
    assert again == first and registered_name(first) == registered_name(again) == "files"


def _in_memory(texts, labels):
    return {"text": list(texts), "label": list(labels)}


def test_an_in_memory_task_takes_dataframes_dicts_and_string_labels():
    import pandas as pd

    from stabench.tasks import Task

    train = pd.DataFrame(_in_memory([f"bill {i}" for i in range(6)], ["billing", "bug", "other"] * 2))
    task = Task("tickets", "text", lambda: {"train": train, "validation": _in_memory(["a", "b", "c", "d"],
                                                                                     ["bug", "bug", "other", "billing"])},
                metrics=("macro_f1", "accuracy"))
    assert task.text_columns == ("text",) and task.primary_metric == "macro_f1" and task.source == "custom"
    data = load_task_data(task)
    assert data.num_labels == 3 and data.eval["label"] == [1, 1, 2, 0] and data.majority_accuracy == 0.5
    assert label_names(data.eval, "label") == ["billing", "bug", "other"]
    missing = Task("no-label", "text", lambda: {"train": {"text": ["a"]}, "validation": {"text": ["b"]}})
    with pytest.raises(ValueError, match="column 'label' is missing from 'no-label:train'; it has columns text"):
        load_task_data(missing)
    with pytest.raises(ValueError, match="its loader returned list; expected a datasets.DatasetDict or a dict"):
        load_task_data(Task("a-list", "text", lambda: [1, 2]))


def test_an_in_memory_task_serves_the_data_its_loader_returns_at_each_study(tiny_model, monkeypatch):
    """A notebook's loader reads a variable the user then points at other data: the next study
    trains on that data, under its fingerprint, not on the first call's; within a study every seed
    gets one call's data, even from a loader that draws afresh each time."""
    import random

    import stabench
    from stabench import train
    from stabench.tasks import Task, reload_task_data

    monkeypatch.setattr(train, "fine_tune", lambda prepared, **_: prepared.data)  # the data each seed got
    data = {"train": _in_memory([f"t {i}" for i in range(8)], [0, 1] * 4),
            "validation": _in_memory(["a", "b"], [0, 1])}
    calls = []
    task = Task("changing", "text", lambda: calls.append(1) or {**data, "train": {
        "text": random.sample(data["train"]["text"], len(data["train"]["text"])), "label": data["train"]["label"]}})
    monkeypatch.setattr(stabench.claims, "Study", lambda arm, runs, trained: runs)
    monkeypatch.delenv("STABENCH_STORE")  # no store: each study trains (here: returns its data)
    with pytest.warns(stabench.claims.StudyNotStored):
        first = stabench.study(task, tiny_model, "bert-default", seeds=3, device="cpu")
    assert len(calls) == 1 and len({d.fingerprint for d in first}) == 1 and len(first[0].train) == 8
    data = {**data, "train": _in_memory([f"t {i}" for i in range(6)], [0, 1] * 3)}
    assert load_task_data(task).fingerprint == first[0].fingerprint  # cached between studies
    with pytest.warns(stabench.claims.StudyNotStored):
        second = stabench.study(task, tiny_model, "bert-default", seeds=3, device="cpu")
    assert len(calls) == 2 and {len(d.train) for d in second} == {6}
    reload_task_data("polarity")  # a built-in task cannot change: nothing to reload
    assert load_task_data("polarity") is load_task_data("polarity")


def test_a_second_task_under_a_name_in_use_is_refused_never_served_the_first_ones_data():
    from stabench.tasks import Task, register_task, registered_name

    balanced = _in_memory(["good day", "bad day"] * 4, [1, 0] * 4)
    skewed = _in_memory(["good day", "bad day", "fine day", "nice day"], [1, 0, 1, 1])
    first = Task("exp", ("text",), lambda: {"train": balanced, "validation": balanced})
    second = Task("exp", ("text",), lambda: {"train": balanced, "validation": skewed})
    assert load_task_data(first).majority_accuracy == 0.5 and registered_name(first) == "exp"
    with pytest.raises(ValueError, match="task name 'exp' is already used by another task in this process .*"
                                         r"register_task\(task, replace=True\)"):
        registered_name(second)
    register_task(second, replace=True)
    assert registered_name(second) == "exp" and load_task_data("exp").majority_accuracy == 0.75


@pytest.mark.parametrize("kwargs, message", [
    ({"metrics": ("macro-f1",)}, "metrics=('macro-f1',) is invalid; expected one or more of accuracy, f1, macro_f1"),
    ({"metrics": ("accuracy",), "primary_metric": "mcc"}, "primary_metric='mcc' is not among its metrics accuracy"),
    ({"text_columns": ("a", "b", "c")}, "text_columns=('a', 'b', 'c') is invalid; expected one or two column names"),
    ({"loader": None}, "loader=None is not callable"),
    ({"metrics": ("accuracy", "mcc", "accuracy")}, "lists 'accuracy' twice; expected each metric once"),
])
def test_a_task_definition_is_checked_when_it_is_made(kwargs, message):
    from stabench.tasks import Task

    with pytest.raises(ValueError, match=re.escape(message)):
        Task(**{"name": "t", "text_columns": "text", "loader": lambda: {}, **kwargs})


def test_binary_f1_on_more_classes_fails_before_training():
    from stabench.tasks import Task
    from stabench.train import prepare

    three = _in_memory(["a", "b", "c"] * 3, [0, 1, 2] * 3)
    task = Task("three-f1", "text", lambda: {"train": three, "validation": three}, metrics=("f1",))
    with pytest.raises(ValueError, match="task 'three-f1' has 3 classes, but its metric 'f1' is binary F1 .*"
                                         "use 'macro_f1'"):
        prepare(task, "tiny-bert", "bert-default", 0, device="cpu")


@pytest.mark.parametrize("kind, broken, message", [
    ("jsonl", '{"text": "cut off", "label": 1\n', "cannot read '{path}' as JSON lines: line 9 is not valid JSON "),
    ("csv", "t9,1,extra,cells\n", "cannot read '{path}' as CSV/TSV: Error tokenizing data. "),
])
def test_a_file_that_does_not_parse_is_one_line_naming_it(tmp_path, kind, broken, message):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(8)]
    _write(tmp_path / f"train.{kind}", rows, kind)
    _write(tmp_path / f"dev.{kind}", rows, kind)
    with open(tmp_path / f"dev.{kind}", "a") as handle:
        handle.write(broken)
    task = local_task(f"broken-{kind}", tmp_path / f"train.{kind}", tmp_path / f"dev.{kind}", "text")
    with pytest.raises(ValueError) as error:
        load_task_data(task)
    assert str(error.value).startswith(message.format(path=tmp_path / f"dev.{kind}")) and "\n" not in str(error.value)


@pytest.mark.parametrize("kind", ["csv", "tsv"])
def test_an_unclosed_quote_in_the_first_row_is_one_line_naming_the_file(tmp_path, kind):
    """The header is read with pandas, which reads the first row too: its ParserError escaped bare."""
    from stabench.tasks import TaskDataError

    sep = "\t" if kind == "tsv" else ","
    (tmp_path / f"train.{kind}").write_text(f'text{sep}label\n"oops{sep}0\nb{sep}1\nc{sep}0\n')
    (tmp_path / f"dev.{kind}").write_text(f"text{sep}label\nd{sep}0\ne{sep}1\n")
    task = local_task(f"quoted-{kind}", tmp_path / f"train.{kind}", tmp_path / f"dev.{kind}", "text")
    with pytest.raises(TaskDataError, match=rf"^cannot read '{re.escape(str(tmp_path / f'train.{kind}'))}' as "
                                            rf"CSV/TSV: Error tokenizing data\. C error: EOF inside string"):
        load_task_data(task)


@pytest.mark.parametrize("broken, line", [('{"text": "cut off", "label": ', 4), ("[1, 2]", 3),
                                           ('{"text": "cut off", "label": ', 6)])  # after a line with U+2028
def test_a_broken_line_among_json_lines_is_named_by_its_number(tmp_path, broken, line):
    """Met while datasets infers the columns, pandas' error named neither the file nor the line."""
    from stabench.tasks import TaskDataError

    rows = [{"text": f"t{i}", "label": i % 2} for i in range(8)]
    _write(tmp_path / "train.jsonl", rows, "jsonl")
    lines = [json.dumps(row) for row in rows]
    lines[1] = '{"text": "a\u2028b", "label": 1}'  # a line separator inside a string is JSON, and one line
    lines.insert(line - 1, broken)
    (tmp_path / "dev.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskDataError, match=rf"^cannot read '.*dev\.jsonl' as JSON lines: line {line} is not "
                                            rf"(valid JSON \(.*\)|a JSON object); expected one JSON object per line$"):
        load_task_data(local_task("broken-line", tmp_path / "train.jsonl", tmp_path / "dev.jsonl", "text"))


def test_a_blank_text_and_a_one_class_dev_set_are_refused(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(8)]
    _write(tmp_path / "train.jsonl", rows, "jsonl")
    _write(tmp_path / "blank.jsonl", [*rows[:3], {"text": "  ", "label": 0}], "jsonl")
    with pytest.raises(ValueError, match="row 4 of .*blank.jsonl' has no value in column 'text'"):
        load_task_data(local_task("blank-text", tmp_path / "train.jsonl", tmp_path / "blank.jsonl", "text"))
    _write(tmp_path / "one.jsonl", [r for r in rows if r["label"] == 1], "jsonl")
    with pytest.raises(ValueError, match="split 'validation' holds one class only .*every run would count as failed"):
        load_task_data(local_task("one-class", tmp_path / "train.jsonl", tmp_path / "one.jsonl", "text"))


def test_labels_1_and_1_0_and_the_text_1_are_one_class(tmp_path):
    import datasets
    from packaging.version import Version

    from stabench.tasks import TaskDataError

    _write(tmp_path / "train.jsonl", [{"text": f"t{i}", "label": float(i % 3)} for i in range(9)], "jsonl")
    _write(tmp_path / "dev.jsonl", [{"text": f"d{i}", "label": [0, "1", 2][i % 3]} for i in range(6)], "jsonl")
    mixed = local_task("mixed-types", tmp_path / "train.jsonl", tmp_path / "dev.jsonl", "text")
    if Version(datasets.__version__) < Version("4.7"):  # its JSON reader takes one type per column
        with pytest.raises(TaskDataError, match=r"dev\.jsonl' as JSON lines: JSON parse error: Column\(/label\) "
                                                r"changed from number to string in row 1$"):
            load_task_data(mixed)
    else:
        data = load_task_data(mixed)
        assert data.num_labels == 3 and data.eval["label"] == [0, 1, 2, 0, 1, 2] and data.train["label"][:3] == [0, 1, 2]
    # Two codings of the labels in one file are a mistake, not four classes (datasets 4.7+ reads them as text).
    _write(tmp_path / "coded.csv", [{"text": f"t{i}", "label": ["0", "1", "no", "yes"][i % 4]} for i in range(8)],
           "csv")
    with pytest.raises(TaskDataError, match=r"^the labels of '.*coded.csv' mix numbers \(0, 1\) and names \(no, "
                                            r"yes\); expected one kind, each class written one way$"):
        load_task_data(local_task("coded", tmp_path / "coded.csv", tmp_path / "train.jsonl", "text"))
    _write(tmp_path / "signs.jsonl", [{"text": f"t{i}", "label": ["+1", "-1"][i % 2]} for i in range(8)], "jsonl")
    signs = load_task_data(local_task("signs", tmp_path / "signs.jsonl", tmp_path / "signs.jsonl", "text"))
    assert signs.num_labels == 2 and signs.label_names == ["-1", "+1"]  # numbers, by value
    _write(tmp_path / "many.csv", [{"text": f"t{i}", "label": ["10", "2", "x"][i % 3]} for i in range(6)], "csv")
    with pytest.raises(TaskDataError, match=r"mix numbers \(2, 10\) and names \(x\)"):
        load_task_data(local_task("many", tmp_path / "many.csv", tmp_path / "many.csv", "text"))
    _write(tmp_path / "other.jsonl", [{"text": "d", "label": 3}, {"text": "e", "label": 0}], "jsonl")
    with pytest.raises(ValueError, match=r"labels 3 of .*other.jsonl' never occur in .*train.jsonl' \(its labels: "
                                         r"0, 1, 2\)"):
        load_task_data(local_task("unseen", tmp_path / "train.jsonl", tmp_path / "other.jsonl", "text"))


def test_in_memory_data_is_checked_like_files():
    import math

    from stabench.tasks import Task

    good = _in_memory(["a", "b", "c", "d"], [0, 1, 0, 1])
    holes = Task("holes", "text", lambda: {"train": _in_memory(["a", "b", "c"], [1.0, math.nan, 0.0]),
                                           "validation": good})
    with pytest.raises(ValueError, match="row 2 of 'holes:train' has no value in column 'label'"):
        load_task_data(holes)
    unseen = Task("unseen-mem", "text", lambda: {"train": good, "validation": _in_memory(["e", "f"], [0, 2])})
    with pytest.raises(ValueError, match=r"labels 2 of 'unseen-mem:validation' never occur in 'unseen-mem:train' "
                                         r"\(its labels: 0, 1\)"):
        load_task_data(unseen)
    empty = Task("empty-dev", "text", lambda: {"train": good, "validation": _in_memory([], [])})
    with pytest.raises(ValueError, match="^'empty-dev:validation' has no examples; expected at least one per class"):
        load_task_data(empty)
    empty_train = Task("empty-train", "text", lambda: {"train": _in_memory([], []), "validation": good})
    with pytest.raises(ValueError, match="^'empty-train:train' has no examples"):
        load_task_data(empty_train)
    import pandas as pd

    mixed = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [1, "yes", 1, "yes"]})  # Arrow's error, before
    with pytest.raises(ValueError, match=r"^the labels of 'mixed-mem:train' mix numbers \(1\) and names \(yes\); "):
        load_task_data(Task("mixed-mem", "text", lambda: {"train": mixed, "validation": mixed}))
    numbers = Task("numbers-mem", "text", lambda: {"train": {"text": [7, 8.5, True, "x"], "label": [0, 1, 0, 1]},
                                                   "validation": good})
    assert load_task_data(numbers).train["text"] == ["7", "8.5", "true", "x"]  # a tokenizer takes no number
    lists = Task("lists-mem", "text", lambda: {"train": {"text": [["a"], "b"], "label": [0, 1]}, "validation": good})
    with pytest.raises(ValueError, match=r"^row 1 of 'lists-mem:train' holds a list in column 'text'; expected a text$"):
        load_task_data(lists)
    tuples = Task("tuples-mem", "text", lambda: {"train": {"text": ["a", ("b", "c")], "label": [0, 1]},
                                                 "validation": good})
    with pytest.raises(ValueError, match=r"^row 2 of 'tuples-mem:train' holds a tuple in column 'text'; expected a "
                                         r"text$"):  # not the text "('b', 'c')"
        load_task_data(tuples)
    numbered = pd.DataFrame({0: ["a", "b", "c", "d"], "label": [0, 1, 0, 1]})  # a column named 0, not "0"
    assert load_task_data(Task("numbered-mem", "0", lambda: {"train": numbered, "validation": numbered})).train[
        "0"] == ["a", "b", "c", "d"]
    twice = pd.DataFrame([["a", "b", 0], ["c", "d", 1]], columns=["text", "text", "label"])
    with pytest.raises(ValueError, match=r"^'twice-mem:train' names the columns text more than once; expected each "
                                         r"column once$"):
        load_task_data(Task("twice-mem", "text", lambda: {"train": twice, "validation": good}))


def test_labels_numbered_from_1_are_two_classes_not_three():
    """Yelp polarity's 1 and 2: class ids 0 and 1, so binary F1 works and no phantom class 0 is trained."""
    from stabench.tasks import Task
    from stabench.train import prepare

    yelp = _in_memory(["bad", "good"] * 4, [1, 2] * 4)
    task = Task("one-two", "text", lambda: {"train": yelp, "validation": yelp}, metrics=("f1", "accuracy"))
    data = prepare(task, "tiny-bert", "bert-default", 0, device="cpu").data
    assert data.num_labels == 2 and data.eval["label"][:2] == [0, 1] and label_names(data.eval, "label") == ["1", "2"]


def test_numeric_labels_are_ordered_by_value_not_as_text():
    """Labels 2 and 10 are classes 0 and 1: sorted as text, "10" would come first."""
    from stabench.tasks import Task

    numbered = _in_memory(["a", "b"] * 4, ["2", "10"] * 4)
    data = load_task_data(Task("two-ten", "text", lambda: {"train": numbered, "validation": numbered}))
    assert data.label_names == ["2", "10"] and data.eval["label"][:2] == [0, 1]


def test_a_class_seen_only_in_training_has_an_output():
    """The head is sized from both splits' labels: a class the dev set lacks is still trained."""
    from stabench.tasks import Task

    train = _in_memory(["a", "b", "c"] * 2, [0, 1, 2] * 2)
    task = Task("train-only-class", "text", lambda: {"train": train, "validation": _in_memory(["d", "e"], [0, 1])})
    assert load_task_data(task).num_labels == 3


def test_a_clash_of_task_names_fails_before_any_seed_trains(monkeypatch):
    import stabench
    from stabench import train
    from stabench.tasks import Task

    monkeypatch.setattr(train, "fine_tune", lambda *a, **k: pytest.fail("trained"))
    data = _in_memory(["a", "b"] * 4, [0, 1] * 4)
    first = Task("clash", "text", lambda: {"train": data, "validation": data})
    assert load_task_data(first).num_labels == 2 and stabench.tasks.registered_name(first) == "clash"
    again = Task("clash", "text", lambda: {"train": data, "validation": data})  # another definition, same name
    for call in (lambda: stabench.study(again, "tiny-bert", "bert-default", 3, device="cpu"),
                 lambda: stabench.run(again, "tiny-bert", "bert-default", 0, device="cpu")):
        with pytest.raises(ValueError, match="task name 'clash' is already used by another task in this process"):
            call()


def test_a_local_tasks_own_metrics_are_part_of_its_runs_keys(tmp_path):
    """A run stored by accuracy alone must not be read back as a macro-F1 study of the same files."""
    from stabench.train import prepare

    rows = [{"text": f"t{i}", "label": i % 3} for i in range(9)]
    _write(tmp_path / "train.jsonl", rows, "jsonl")
    keys = {}
    for metrics in (("accuracy",), ("macro_f1", "accuracy"), ("accuracy", "macro_f1")):
        task = local_task(f"scored-{len(keys)}", tmp_path / "train.jsonl", tmp_path / "train.jsonl", "text",
                          metrics=metrics)
        described = prepare(task, "tiny-bert", "bert-default", 0, device="cpu").task_info
        keys[metrics] = {k: v for k, v in described.items() if k != "name"}
    assert "metrics" not in keys[("accuracy",)]  # the default keeps the keys runs were stored under
    assert len({json.dumps(v, sort_keys=True) for v in keys.values()}) == 3


def test_the_same_definition_run_again_replaces_its_task():
    """A notebook cell re-run, or a claim module imported again by a second pytest session: the
    same loader definition makes a new Task object, which takes the name over with its data."""
    from stabench.tasks import Task, register_task, registered_name

    def define(words):
        return Task("rerun", "text", lambda: {"train": _in_memory(words, [0, 1, 0, 1]),
                                              "validation": _in_memory(words, [0, 1, 0, 1])})

    first, second = define(["a", "b", "c", "d"]), define(["e", "f", "g", "h"])
    assert registered_name(first) == "rerun" and registered_name(second) == "rerun"
    assert load_task_data("rerun").train["text"] == ["e", "f", "g", "h"]
    assert register_task(define(["i", "j", "k", "l"])).name == "rerun"  # a conftest's register_task, imported again
    assert load_task_data("rerun").train["text"][0] == "i"

    def from_file(path):  # a loader factory: another file is another task, not a re-run
        return Task("from-file", "text", lambda: {"train": _in_memory([path] * 2, [0, 1]),
                                                  "validation": _in_memory([path] * 2, [0, 1])})

    assert registered_name(from_file("v1.csv")) == registered_name(from_file("v1.csv")) == "from-file"
    with pytest.raises(ValueError, match="task name 'from-file' is already used by another task"):
        registered_name(from_file("v2.csv"))


def test_a_notebook_cell_run_again_with_lines_added_above_its_task_replaces_it():
    """A cell's loader moved down by a comment is the same definition; one that reads another
    variable is another task."""
    from stabench.tasks import Task, registered_name

    cell = ('task = Task("cell", "text", lambda: {"train": train_df, "validation": train_df})\n')
    namespace = {"__name__": "__main__", "Task": Task, "train_df": _in_memory(["a", "b"] * 2, [0, 1] * 2)}
    exec(compile(cell, "<cell-1>", "exec"), namespace)
    assert registered_name(namespace["task"]) == "cell"
    exec(compile("# the tickets task\n\n" + cell, "<cell-2>", "exec"), namespace)
    assert registered_name(namespace["task"]) == "cell"  # replaced, not an error
    namespace["other_df"] = namespace["train_df"]
    exec(compile(cell.replace("train_df}", "other_df}"), "<cell-3>", "exec"), namespace)
    with pytest.raises(ValueError, match=r"^task name 'cell' is already used by another task in this process \(a "
                                         r"loader whose code differs\); give this one"):
        registered_name(namespace["task"])
    # The cell run again with its metrics edited: another definition, as a local task's is.
    exec(compile(cell.replace('train_df})', 'train_df}, metrics=("macro_f1",))'), "<cell-5>", "exec"), namespace)
    with pytest.raises(ValueError, match=r"^task name 'cell' is already used by another task in this process "
                                         r"\(metrics \('accuracy',\) where this one has \('macro_f1',\); "):
        registered_name(namespace["task"])
    # One file, two lines: two tasks, even where the code is the same (defaults may hold other data).
    two = ('first = Task("twice", "text", lambda d=a: d)\n'
           'second = Task("twice", "text", lambda d=b: d)\n')
    cell_4 = {**namespace, "a": {"train": {"text": ["x"]}}, "b": {"train": {"text": ["y"]}}}
    exec(compile(two, "<cell-4>", "exec"), cell_4)
    assert registered_name(cell_4["first"]) == "twice"
    with pytest.raises(ValueError, match=r"^task name 'twice' is already used by another task in this process \(its "
                                         r"loader on line 1 of <cell-4> where this one's is on line 2\); "):
        registered_name(cell_4["second"])


def test_negative_and_named_labels_keep_their_meaning():
    """-1/+1 labels are two classes of a user's data (GLUE's -1 means unlabelled); a ClassLabel's
    ids keep their names even when a class is absent; a one-class dev set names its label."""
    import datasets

    from stabench.tasks import Task

    signs = _in_memory(["bad", "good"] * 4, [-1, 1] * 4)
    data = load_task_data(Task("signs", "text", lambda: {"train": signs, "validation": signs}))
    assert data.num_labels == 2 and data.eval["label"][:2] == [0, 1] and label_names(data.eval, "label") == ["-1", "1"]
    feature = datasets.Features({"text": datasets.Value("string"),
                                 "label": datasets.ClassLabel(names=["neg", "neu", "pos"])})
    named = datasets.Dataset.from_dict(_in_memory(["a", "b", "c", "d"], [0, 2, 0, 2]), features=feature)
    data = load_task_data(Task("named", "text", lambda: {"train": named, "validation": named}))
    assert data.num_labels == 3 and label_names(data.eval, "label") == ["neg", "neu", "pos"]
    one = _in_memory(["x", "y"], ["spam", "spam"])
    with pytest.raises(ValueError, match="holds one class only \\(label 'spam'\\)"):
        load_task_data(Task("one", "text", lambda: {"train": _in_memory(["a", "b"], ["spam", "ham"]),
                                                    "validation": one}))


def test_tokenised_examples_are_cached_by_what_the_tokenizer_does_not_its_name(tmp_path):
    """A folder whose tokenizer is saved again (or another revision of a hub id) keeps its name."""
    from transformers import AutoTokenizer

    from stabench.data import encode
    from stabench.models import tiny_vocabulary, word_piece_tokenizer

    data = load_task_data(BUILTIN_PAIR_TASK)
    encoded = []
    for vocabulary in (tiny_vocabulary(), tiny_vocabulary()[:5] + tiny_vocabulary()[5:][::-1]):
        word_piece_tokenizer(vocabulary).save_pretrained(tmp_path)
        encoded.append(encode(data, AutoTokenizer.from_pretrained(tmp_path), 128)[0])
    assert [len(ids) for ids in encoded[0].input_ids] == [len(ids) for ids in encoded[1].input_ids]
    assert any(not a.equal(b) for a, b in zip(encoded[0].input_ids, encoded[1].input_ids))
    assert encode(data, AutoTokenizer.from_pretrained(tmp_path), 128)[0] is encoded[1]  # the same content: cached
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)  # one object, as models.load_tokenizer keeps it
    for max_length in (128, 64, 128):  # a call leaves its truncation setting behind in the tokenizer
        encode(data, tokenizer, max_length)
    assert encode(data, tokenizer, 64) is encode(data, AutoTokenizer.from_pretrained(tmp_path), 64)
    left, right = (encode(data, AutoTokenizer.from_pretrained(tmp_path, truncation_side=side), 8)[0]
                   for side in ("left", "right"))  # a setting of the Python tokenizer, not of its backend
    assert any(not a.equal(b) for a, b in zip(left.input_ids, right.input_ids))


def test_tokenised_examples_are_cached_per_max_length():
    """Two recipes with different max_length in one process each get their own truncation."""
    from stabench.data import encode
    from stabench.models import tiny_vocabulary, word_piece_tokenizer

    tokenizer = word_piece_tokenizer(tiny_vocabulary())
    data = load_task_data(BUILTIN_PAIR_TASK)
    short, long = encode(data, tokenizer, 8)[0], encode(data, tokenizer, 128)[0]
    assert max(len(ids) for ids in short.input_ids) <= 8 < max(len(ids) for ids in long.input_ids)


def test_tokenised_examples_cached_are_bounded_dropping_the_least_recently_used(monkeypatch):
    """A session of many subsamples or lengths would otherwise keep every encoding in memory."""
    from stabench import data as data_lib
    from stabench.models import tiny_vocabulary, word_piece_tokenizer

    monkeypatch.setattr(data_lib, "_CACHE", {})
    monkeypatch.setattr(data_lib, "_CACHED_ENCODINGS", 2)
    tokenizer = word_piece_tokenizer(tiny_vocabulary())
    data = load_task_data(BUILTIN_PAIR_TASK)
    first = data_lib.encode(data, tokenizer, 8)
    second = data_lib.encode(data, tokenizer, 16)
    assert data_lib.encode(data, tokenizer, 8) is first  # used again: 16 is now the least recently used
    data_lib.encode(data, tokenizer, 32)
    assert len(data_lib._CACHE) == 2
    assert data_lib.encode(data, tokenizer, 8) is first
    assert data_lib.encode(data, tokenizer, 16) is not second  # it went, and comes back encoded again


def test_a_claim_module_imported_under_two_names_names_the_two_modules():
    """One file imported as ``claims`` and as ``pkg.claims`` defines its task twice; the two loaders'
    code is the same, so the message names their modules, not an edit."""
    from stabench.tasks import Task, register_task, registered_name

    source = 'task = Task("twice-imported", "text", lambda: {"train": {"text": ["x"], "label": [0]}})\n'
    tasks = []
    for module in ("claims", "pkg.claims"):
        namespace = {"__name__": module, "Task": Task}
        exec(compile(source, "/project/claims.py", "exec"), namespace)
        tasks.append(namespace["task"])
    assert registered_name(tasks[0]) == "twice-imported"
    said = r"\(its loader claims.<lambda> where this one's is pkg.claims.<lambda>\)"
    with pytest.raises(ValueError, match=rf"^task name 'twice-imported' is already used by another task in this "
                                         rf"process {said}; give this one another name"):
        registered_name(tasks[1])
    with pytest.raises(ValueError, match=rf"^task 'twice-imported' is already registered {said}; pass replace=True"):
        register_task(tasks[1])


def test_registering_one_task_again_is_no_clash_whatever_its_loader(tmp_path, monkeypatch):
    """A conftest's ``register_task`` run twice, or one local task defined in a conftest and again in
    a test file: the same task, even where its loader is no function (a local task's is an object)."""
    from stabench.tasks import register_task

    _write(tmp_path / "train.csv", [{"text": f"t {i}", "label": i % 2} for i in range(4)], "csv")
    monkeypatch.chdir(tmp_path)
    task = local_task("registered-twice", "train.csv", "train.csv", "text")
    assert register_task(task) is task and register_task(task) is task
    again = local_task("registered-twice", "train.csv", "train.csv", "text")
    assert again == task and register_task(again) is again


def test_two_loaders_of_one_code_on_two_lines_are_two_tasks_in_either_order():
    """The later line registered first, then the earlier one: still two tasks, not a re-run."""
    from stabench.tasks import Task, registered_name

    two = ('first = Task("twice-reversed", "text", lambda d=a: d)\n'
           'second = Task("twice-reversed", "text", lambda d=b: d)\n')
    cell = {"Task": Task, "__name__": "__main__", "a": {"train": {"text": ["x"]}}, "b": {"train": {"text": ["y"]}}}
    exec(compile(two, "<cell-7>", "exec"), cell)
    assert registered_name(cell["second"]) == "twice-reversed"
    with pytest.raises(ValueError, match=r"^task name 'twice-reversed' is already used by another task in this "
                                         r"process \(its loader on line 2 of <cell-7> where this one's is on line "
                                         r"1\); "):
        registered_name(cell["first"])


@pytest.mark.parametrize("kind, value, other", [
    ("Path", "v1.csv", "v2.csv"), ("int", 64, 128), ("float", 0.5, 0.25),
    ("tuple", ("a.csv", "b.csv"), ("c.csv", "d.csv")), ("nested", ("a.csv", ("b.csv",)), ("a.csv", ("c.csv",))),
    ("dict", {"train": "a.csv", "validation": "b.csv"}, {"train": "a.csv", "validation": "c.csv"})])
def test_a_loader_factory_called_with_other_paths_or_numbers_makes_another_task(kind, value, other):
    """A factory's loader closes over a Path, a size, a fraction or a tuple of files: called with
    another, it is another task, never a re-run that silently replaces the first one's data."""
    from pathlib import Path

    from stabench.tasks import Task, registered_name

    if kind == "Path":
        value, other = Path(value), Path(other)
    name = f"factory-{kind}"

    def make(source):
        return Task(name, "text", lambda: {"train": _in_memory([str(source)] * 2, [0, 1]),
                                           "validation": _in_memory([str(source)] * 2, [0, 1])})

    again = dict(reversed(value.items())) if kind == "dict" else value  # a dict written in another order
    assert registered_name(make(value)) == registered_name(make(again)) == name  # the same value: a re-run
    shown = {"dict": lambda d: repr(dict(sorted(d.items())))}.get(kind, repr)  # a dict's keys in order
    said = f"(its loader reading {shown(value)} where this one's reads {shown(other)})"
    with pytest.raises(ValueError, match=rf"^task name '{name}' is already used by another task in this process "
                                         rf"{re.escape(said)}; give this one another name"):
        registered_name(make(other))


def test_a_clash_names_in_full_the_first_file_two_loaders_of_one_code_read_differently():
    """Long paths that differ late, in the eighth of ten files, were shortened alike; a NaN given
    again is the same value, though NaN != NaN."""
    from stabench.tasks import Task, registered_name

    def make(files, name="ten-files"):
        return Task(name, "text", lambda: {"train": _in_memory([str(files)] * 2, [0, 1]),
                                           "validation": _in_memory([str(files)] * 2, [0, 1])})

    files = tuple(f"/home/user/projects/2024/experiment_a/data/part{i}.csv" for i in range(10))
    edited = files[:7] + ("/home/user/projects/2024/experiment_b/data/part7.csv",) + files[8:]
    assert registered_name(make(files)) == "ten-files"
    with pytest.raises(ValueError, match=re.escape(f"(its loader reading {files!r} where this one's reads {edited!r})")):
        registered_name(make(edited))
    first, again = make((float("nan"), "a.csv"), "nan"), make((float("nan"), "a.csv"), "nan")
    assert registered_name(first) == registered_name(again) == "nan"  # the same values, run again


def test_a_loader_factory_given_a_long_tuple_of_rows_is_run_again_with_other_rows():
    """A notebook's factory over 2,000 rows as a tuple: data that a cell run again may change, as a
    list's, not the name of the data."""
    from stabench.tasks import Task, load_task_data, registered_name

    def make(rows):
        return Task("rows", "text", lambda: {"train": _in_memory(list(rows), [0, 1] * (len(rows) // 2)),
                                             "validation": _in_memory(list(rows), [0, 1] * (len(rows) // 2))})

    assert registered_name(make(tuple(f"a{i}" for i in range(2000)))) == "rows"
    assert registered_name(make(tuple(f"b{i}" for i in range(2000)))) == "rows"  # replaced, not refused
    assert load_task_data("rows").train["text"][0] == "b0"


def test_a_notebook_cell_run_again_with_only_its_description_edited_replaces_its_task():
    """The description is no part of what a task trains on (tasks compare without it)."""
    from stabench.tasks import Task, load_task_data, registered_name

    cell = 'task = Task("described", "text", lambda: {"train": data, "validation": data}, description="{}")\n'
    namespace = {"__name__": "__main__", "Task": Task, "data": _in_memory(["a", "b"] * 2, [0, 1] * 2)}
    exec(compile(cell.replace("{}", "first words"), "<cell-8>", "exec"), namespace)
    assert registered_name(namespace["task"]) == "described"
    namespace["data"] = _in_memory(["c", "d"] * 2, [0, 1] * 2)
    exec(compile(cell.replace("{}", "better words"), "<cell-9>", "exec"), namespace)
    assert registered_name(namespace["task"]) == "described"  # replaced, not refused
    assert load_task_data("described").train["text"][0] == "c"


def test_a_clash_in_a_task_s_fields_names_those_fields_and_nothing_of_its_loader():
    """Its loader the same code, read again: the message is the fields that differ, whole."""
    from stabench.tasks import Task, registered_name

    cell = 'task = Task("refit", "text", lambda: {"train": data, "validation": data}, label_column="{}")\n'
    namespace = {"__name__": "__main__", "Task": Task, "data": {"text": ["a", "b"], "label": [0, 1]}}
    exec(compile(cell.replace("{}", "label"), "<cell-10>", "exec"), namespace)
    assert registered_name(namespace["task"]) == "refit"
    exec(compile(cell.replace("{}", "target"), "<cell-11>", "exec"), namespace)
    with pytest.raises(ValueError, match=r"^task name 'refit' is already used by another task in this process "
                                         r"\(label_column 'label' where this one has 'target'\); give this one"):
        registered_name(namespace["task"])


def test_a_loader_renamed_in_a_notebook_cell_is_named_in_the_clash():
    """One module, the same code under another function name: the message names both functions."""
    from stabench.tasks import Task, registered_name

    cell = ('def {}():\n'
            '    return {{"train": {{"text": ["a", "b"], "label": [0, 1]}}}}\n'
            'task = Task("renamed-loader", "text", {})\n')
    namespace = {"__name__": "__main__", "Task": Task}
    exec(compile(cell.format("load_v1", "load_v1"), "<cell-12>", "exec"), namespace)
    assert registered_name(namespace["task"]) == "renamed-loader"
    exec(compile(cell.format("load_v2", "load_v2"), "<cell-13>", "exec"), namespace)
    with pytest.raises(ValueError, match=r"^task name 'renamed-loader' is already used by another task in this "
                                         r"process \(its loader __main__.load_v1 where this one's is "
                                         r"__main__.load_v2\); "):
        registered_name(namespace["task"])
