"""Sessions: how a claim's seeds are read from the store or trained, without pytest."""
import dataclasses
import json
import os
import re
import socket

import pytest

from stabench import report
from stabench.claims import Arm, RetrainUnchecked, Session, Study
from stabench.models import stored_name
from stabench.recipes import get_recipe
from stabench.stats import failure_rate_upper
from stabench.store import Store, StoreError
from stabench.tasks import BUILTIN_PAIR_TASK

FAST = get_recipe("bert-default", max_steps=4, trace_every=2, lr=2e-3)


def test_recompute_trains_each_seed_once_per_session_and_never_reads_old_results(tiny_model, tmp_path):
    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    with Store(tmp_path / "s.sqlite") as store:
        first = Session(store=store).collect(arm, [0, 1])
        assert first.trained_here == [0, 1]

        again = Session(store=store, recompute=True)
        # A verdict that runs before its seed items must not judge the results of an earlier session.
        study = again.collect(arm, [0, 1])
        assert study.trained_here == [0, 1]
        # The session's seed items then read what its verdict trained instead of training it a third time.
        result, trained = again.run_seed(arm, 0)
        assert not trained and result == store.get(result.key)

        later = Session(store=store, recompute=True)
        assert later.run_seed(arm, 1)[1]  # a new recompute session trains again
        assert Session(store=store).run_seed(arm, 1)[1] is False  # and an ordinary one reads it


def test_runs_read_back_make_the_study_that_trained_them(tiny_model, tmp_path):
    """Study.from_runs takes a query's runs as they are: their task, model, data size and recipe."""
    recipe = FAST.replace(name="mine")
    arm = Arm(name="mine", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=recipe, train_size=48, subsample_seed=3)
    with Store(tmp_path / "s.sqlite") as store:
        trained = Session(store=store).collect(arm, [0, 1, 2])
        other = Session(store=store).collect(dataclasses.replace(arm, recipe=recipe.replace(lr=2e-5)), [0])
        runs = store.query(recipe=recipe, traces=False)
        everything = store.query(traces=False)
    study = Study.from_runs(runs)
    assert study.arm == dataclasses.replace(arm, model=stored_name(tiny_model))  # the name the runs hold
    assert [r.key for r in study.results] == [r.key for r in trained.results]
    assert (study.summary(), study.failures) == (trained.summary(), trained.failures)
    assert Study.from_runs(runs, name="as read").arm.name == "as read"
    assert [r.seed for r in Study.from_runs(runs[::-1]).results] == [0, 1, 2]  # by seed, as tables list them
    # Stored under a hash the recipe no longer gives (an earlier version's, or a hook edited since):
    # the runs' own hash holds them together.
    older = [dataclasses.replace(run, recipe_hash="0" * 64) for run in runs]
    assert [r.key for r in Study.from_runs(older).results] == [r.key for r in runs]
    hooked = [dataclasses.replace(run, recipe={**run.recipe, "hook": "not-registered"}) for run in older]
    assert Study.from_runs(hooked).arm.recipe.hook == "not-registered"  # a notebook that reads, not trains
    newer = [dataclasses.replace(run, recipe={**run.recipe, "lr_schedule_v2": 1}) for run in older]
    with pytest.raises(ValueError, match=r"^Study.from_runs: the runs' recipe 'mine' cannot be made here: .*"
                                         r"'lr_schedule_v2'"):
        Study.from_runs(newer)  # a field of a later stabench
    with pytest.raises(ValueError, match=rf"^Study.from_runs: the runs hold 2 recipes \(hashes "
                                         rf"({recipe.hash[:8]}|{other.results[0].recipe_hash[:8]}), "):
        Study.from_runs(everything)
    with pytest.raises(ValueError, match=r"^Study.from_runs was given no runs; expected the runs of one study"):
        Study.from_runs([])


def test_a_study_built_by_hand_refuses_runs_of_another_recipe_model_or_subsample(tiny_model, tmp_path):
    from stabench.claims import Study

    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    with Store(tmp_path / "s.sqlite") as store:
        runs = Session(store=store).collect(arm, [0]).results
    assert Study(arm, runs).n == 1
    other = Arm(name="b", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST.replace(lr=2e-5))
    with pytest.raises(ValueError, match=r"^study of b: run .* \(seed 0\) was trained with recipe "
                                         r"'bert-default\[lr=0.002,max_steps=4,trace_every=2\]'"):
        Study(other, runs)
    with pytest.raises(ValueError, match="on train_size=None, not with .* on train_size=64$"):
        Study(Arm(name="c", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST, train_size=64), runs)
    with pytest.raises(ValueError, match=r"^study of d: run .* \(seed 0\) is of task 'same-number', not 'polarity'$"):
        Study(Arm(name="d", task="polarity", model=tiny_model, recipe=FAST), runs)
    with pytest.raises(ValueError, match=r"^study of m: run .* \(seed 0\) is of model '.*', not 'minilm-l6'$"):
        Study(Arm(name="m", task=BUILTIN_PAIR_TASK, model="minilm-l6", recipe=FAST), runs)
    with pytest.raises(ValueError, match=r"^study of a: seeds \[0\] appear more than once; each seed is one run$"):
        Study(arm, runs + runs)
    import dataclasses

    edited = dataclasses.replace(runs[0], key="k2", recipe_hash="0" * 64)  # seed 0 of another version of the recipe
    with pytest.raises(ValueError, match=r"^study of a: run k2 \(seed 0\) was trained with recipe .*\(00000000\)"):
        Study(arm, runs + [edited])  # said "seeds [0] appear more than once"

    fingerprint = runs[0].task["fingerprint"]  # differing only after the shown 8 characters still counts
    other_subsample = dataclasses.replace(runs[0], key="k1", seed=1,
                                          task={**runs[0].task, "fingerprint": fingerprint[:8] + "0ther000"})
    with pytest.raises(ValueError, match=r"^study of a: its runs were trained on 2 different data sets \(fingerprints "
                                         r"\w{8}, \w{8}\): e.g. subsamples drawn with another subsample_seed"):
        Study(arm, runs + [other_subsample])
    smaller = dataclasses.replace(other_subsample, task={**other_subsample.task, "train_size": 64})
    with pytest.raises(ValueError, match=r"\): training sets of the full set and 64 examples \(select one with train_size=\)"):
        Study(arm, runs + [smaller])
    threads = {**runs[0].environment, "cpu_threads": runs[0].environment["cpu_threads"] + 1}
    other_stack = dataclasses.replace(runs[0], key="k2", seed=2, environment=threads)
    with pytest.raises(ValueError, match=r"^study of a: its runs were made under different library stacks or devices "
                                         r"\(they differ in cpu_threads\); select one, e.g. Store.query\(\.\.\., "
                                         r"env=\{'cpu_threads': \.\.\.\}\)$"):
        Study(arm, runs + [other_stack])
    rescored = dataclasses.replace(runs[0], key="k3", seed=3, primary_metric="macro_f1",
                                   task={**runs[0].task, "metrics": ["accuracy", "macro_f1"]})
    with pytest.raises(ValueError, match=r"scored with different metrics \(headline accuracy and macro_f1\)"):
        Study(arm, runs + [rescored])
    assert Arm(name="e", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe="mosbach-stable").recipe.epochs == 20


def test_under_recompute_a_result_stored_meanwhile_by_another_worker_is_never_taken_for_old(tiny_model, tmp_path):
    """Another worker of the same session stores the recomputed run between this one's reads:
    the row read before that must not pass as the new result."""
    import dataclasses

    from stabench.claims import _write_attempt

    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    with Store(tmp_path / "s.sqlite") as store:
        old, _ = Session(store=store).run_seed(arm, 0)
        session = Session(store=store, recompute=True)
        new = dataclasses.replace(old, metrics={**old.metrics, "accuracy": 0.123})
        read = store.get

        def read_then_the_other_worker_stores(key):
            row = read(key)
            if store.get is not read:
                store.get = read
                store.put(new, replace=True)
                _write_attempt(session._attempt_path(key), {"session": session.session_id, "stored": True})
            return row

        store.get = read_then_the_other_worker_stores
        usable = session._usable(session._prepare(arm, 0))
        assert usable is None or usable.metrics["accuracy"] == 0.123


def test_an_attempt_note_cut_short_counts_as_none(tmp_path):
    """A power loss can leave a note empty or half written: the verdict raised JSONDecodeError."""
    with Store(tmp_path / "s.sqlite") as store:
        session = Session(store=store)
        path = session._attempt_path("k")
        path.parent.mkdir(parents=True, exist_ok=True)
        for text in ("", '{"session": "x", "pid"', "[1, 2]"):
            path.write_text(text)
            assert session._attempt("k") == {}
        path.write_text('{"session": "x", "stored": true}')
        assert session._attempt("k") == {"session": "x", "stored": True}


def test_attempt_files_are_replaced_whole(tmp_path, monkeypatch):
    """A reader without the lock sees the old record or the new one, never an empty file."""
    import json

    from stabench.claims import _write_attempt

    path = tmp_path / "attempt.json"
    _write_attempt(path, {"stored": False})

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("stabench.store.os.replace", killed)
    try:
        _write_attempt(path, {"stored": True})
    except KeyboardInterrupt:
        pass
    assert json.loads(path.read_text()) == {"stored": False}
    assert [p.name for p in tmp_path.iterdir()] == ["attempt.json"]  # the unfinished copy removed


def test_a_study_answers_the_usual_mistakes_with_the_way_out(tiny_model, tmp_path):
    from stabench import analysis, stats

    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    with Store(tmp_path / "s.sqlite") as store:
        study = Session(store=store).collect(arm, [0, 1])
    assert study["a"] is study  # a one-arm claim reads like one with arms
    with pytest.raises(KeyError, match="claim has no arm 'b'; its one arm: 'a'"):
        study["b"]
    with pytest.raises(TypeError, match=r"a Study is indexed by arm name, not 0; its runs are study.results"):
        study[0]
    with pytest.raises(TypeError, match=r"^a Study is not a list of scores or runs: its scores are study.scores\(\), "
                                        r"its runs study.results$"):
        list(study)
    with pytest.raises(TypeError, match=r"^aso: A should be scores \(numbers\), not what came \(a Study is not a list"):
        stats.aso(study, study)
    with pytest.raises(TypeError, match=r"^aso: B is Study.scores, not scores; call it \(study.scores\(\)\)$"):
        stats.aso(study.scores(), study.scores)  # 'method' object is not iterable, pointing at compare_runs
    assert Study(arm, [study]).results == study.results  # Studies in a list are their runs
    with pytest.raises(TypeError, match=r"^study of a: expected runs .*, got a float \(0.5\)"):
        Study(arm, [0.5, 0.6])
    with pytest.raises(TypeError, match=r"compare takes another Study, e.g. .*; got a list"):
        study.compare(study.results)
    with pytest.raises(ValueError, match=r"metric 'f1' is not among the runs' metrics .*; they have accuracy"):
        study.summary(metric="f1")
    for call in (lambda: study.compare(study, metric="f1"), lambda: study.expected_max(3, metric="f1")):
        with pytest.raises(ValueError, match=r"^study of a: metric 'f1' is not among the runs' metrics "
                                             r"\(all 2 seeds "
                                             r"lack it\); they have accuracy, train_loss$"):
            call()
    one = Study(arm, study.results[:1])
    with pytest.raises(ValueError, match=r"^compare: a has 1 run\(s\) and a 2; a comparison needs at least 2 seeds a "
                                         r"side \(seeds= in the claim, or --stabench-seeds\)$"):
        one.compare(study)
    losses = study.scores("train_loss")  # lower is better: the best of 2 seeds is expected below the mean
    assert study.expected_max(2, metric="train_loss") == pytest.approx(min(losses) * 3 / 4 + max(losses) / 4)
    scores = study.scores()  # accuracy: higher is better, the best of 2 seeds lies towards the max
    assert study.expected_max(2) == pytest.approx(max(scores) * 3 / 4 + min(scores) / 4)
    other_task = [dataclasses.replace(r, task={**r.task, "name": "graded"}, primary_metric="macro_f1",
                                      metrics={**r.metrics, "macro_f1": 0.5}) for r in study.results]
    graded = Study(Arm(name="g", task="graded", model=tiny_model, recipe=FAST), other_task)
    with pytest.raises(ValueError, match=r"^compare: a is scored by accuracy \(same-number\), g by macro_f1 "
                                         r"\(graded\); pass metric= one that both studies' runs have"):
        study.compare(graded)
    across = study.compare(graded, metric="accuracy")  # one metric both have: compared
    assert across.n_b == 2 and (across.name_a, across.name_b, across.metric) == ("a (same-number)", "g (graded)",
                                                                                 "accuracy")
    with pytest.raises(AssertionError, match=r"^a \(same-number\) not shown to fail less often than g \(graded\)"):
        stats.assert_fewer_failures(across)  # the messages name the arms, and the tasks where they differ
    itself = study.compare(study)
    assert (itself.name_a, itself.name_b) == ("A (a)", "B (a)")
    with pytest.raises(ValueError, match="cannot summarize an empty list of runs"):
        stats.summarize_runs([])
    assert stats.summarize_runs(study).n == 2  # a Study will do where runs are asked for
    assert analysis.gradient_summary(study.results[0], early=(1, 4))["n_failed"] + \
        analysis.gradient_summary(study.results[0], early=(1, 4))["n_successful"] == 1


def _scored(name: str, accuracies: list[float], collapsed: bool = False) -> Study:
    """A study of hand-made runs (majority accuracy 0.5), collapsed or not."""
    from stabench.result import RunResult

    recipe = get_recipe("bert-default")
    runs = [RunResult(key=f"{name}{seed}", task={"name": "t"}, model={"name": "m"}, recipe={}, recipe_name=recipe.name,
                      recipe_hash=recipe.hash, seed=seed, environment={}, metrics={"accuracy": accuracy},
                      primary_metric="accuracy", majority_accuracy=0.5, failed=accuracy <= 0.5, collapsed=collapsed,
                      diverged=False, steps=10, wall_time_s=1.0, steps_per_s=10.0, started_at="", finished_at="")
            for seed, accuracy in enumerate(accuracies)]
    return Study(Arm(name=name, task="t", model="m", recipe=recipe), runs)


def test_a_study_counts_failed_runs_collapsed_or_not_and_a_comparison_keeps_each_side_s():
    """Failed is at or below the majority accuracy, whether the run predicts one class or both."""
    both_classes = _scored("a", [0.45, 0.8, 0.9])
    assert both_classes.failures == both_classes.summary().failures == 1
    assert both_classes.failure_rate_upper() == failure_rate_upper(1, 3)
    comparison = _scored("good", [0.8, 0.81, 0.82, 0.83, 0.84, 0.85]).compare(_scored("bad", [0.5] * 6, True))
    assert (comparison.failures_a, comparison.failures_b) == (0, 6)
    assert comparison.a_fewer_failures and not comparison.most_of_a_failed


def test_a_study_summarised_at_another_confidence_is_not_its_95_percent_summary():
    """The 95% headline is computed once; a 99% summary must not be served that one."""
    study = _scored("a", [0.5, 0.7, 0.8, 0.9])
    default, wider = study.summary(), study.summary(confidence=0.99)
    assert default.confidence == 0.95 and wider.confidence == 0.99 and wider.failures == default.failures == 1
    assert wider.failure_ci[0] < default.failure_ci[0] and wider.failure_ci[1] > default.failure_ci[1]


def test_arms_that_differ_only_in_their_data_size_are_two_arms():
    """The 1k-example study beside the full set: one recipe, one model, other runs."""
    from stabench.claims import build_spec

    spec = build_spec(dict(task="polarity", model="tiny-bert", recipe="bert-default", seeds=2,
                           arms={"1k": {"train_size": 100}, "full": {}}), {})
    assert [(arm.name, arm.train_size) for arm in spec.arms] == [("1k", 100), ("full", None)]


def test_a_model_trained_again_for_an_analysis_is_the_stored_run_or_an_error(tiny_model, tmp_path):
    import dataclasses

    import torch

    from stabench.claims import RetrainMismatch

    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    with Store(tmp_path / "s.sqlite") as store:
        session = Session(store=store)
        stored, _ = session.run_seed(arm, 0)
        result, model = session.trained_model(arm, 0)
        assert isinstance(model, torch.nn.Module)
        assert result.metrics == stored.metrics and result.failed == stored.failed

        # A stored run on the other side of the failure line (as a GPU's nondeterminism can leave it).
        store.put(dataclasses.replace(stored, failed=not stored.failed), replace=True)
        with pytest.raises(RetrainMismatch, match=r"^retraining same-number / .* seed 0 scored .* but the "
                                                  r"stored run scored .*: training is not reproducible"):
            session.trained_model(arm, 0)

        # A damaged stored record is a run lost, with the store's warning: no check, and the model trained is kept.
        with store._transaction() as conn:
            conn.execute("UPDATE runs SET result_json = ? WHERE key = ?", ('{"key": "trunc', stored.key))
        with pytest.warns(RetrainUnchecked, match=f"stored run {stored.key} is unreadable .*; the model trained for the "
                                             f"analysis is not checked against it$"):
            assert session.trained_model(arm, 0)[0].metrics == stored.metrics


def test_the_loss_surface_start_of_a_reinit_arm_is_the_reinitialised_model(tiny_model, tmp_path):
    """θ_p of the loss surface is where the run started: for a re-init arm, the redrawn top layer
    (not the pretrained one), drawn from the seed as fine-tuning draws it."""
    from transformers import set_seed

    from stabench.models import load_model, resolve

    plain = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    reinit = Arm(name="b", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=dataclasses.replace(FAST, reinit_layers=1))
    with Store(tmp_path / "s.sqlite") as store:
        session = Session(store=store)
        set_seed(3)
        pretrained = load_model(resolve(tiny_model), 2, FAST.dropout).state_dict()
        start = session.pretrained_model(reinit, 3).state_dict()
        assert session.pretrained_model(reinit, 3).state_dict()["bert.encoder.layer.1.output.dense.weight"].equal(
            start["bert.encoder.layer.1.output.dense.weight"])  # the seed's draw, every time
        assert all(value.equal(session.pretrained_model(plain, 3).state_dict()[name])
                   for name, value in pretrained.items())
        lower = [name for name in pretrained if "encoder.layer.0." in name or "embeddings" in name]
        top = [name for name in pretrained if "encoder.layer.1." in name and name.endswith("dense.weight")]
        assert lower and top
        assert all(start[name].equal(pretrained[name]) for name in lower)
        assert not any(start[name].equal(pretrained[name]) for name in top)


def test_a_script_retrains_a_run_stored_under_another_thread_count_with_its_check(tiny_model, tmp_path):
    """A study stored with cpu_threads=2 from a 1-thread process: Session(cpu_threads=2) retrains
    that very run (its key), so the failure-line check sees the stored run."""
    import torch

    import stabench

    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    assert torch.get_num_threads() == 1
    with Store(tmp_path / "s.sqlite") as store:
        stored = stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, seeds=1, store=store, cpu_threads=2).results[0]
        result, _ = Session(store=store, cpu_threads=2).trained_model(arm, 0)
        assert result.key == stored.key and result.metrics == stored.metrics
        with pytest.warns(RetrainUnchecked, match=r"s\.sqlite does not hold seed 0 of same-number / tiny-bert / "
                                                  r".*: runs of these inputs are stored for another stack "
                                                  r"\(cpu_threads=2\), not this one \(cpu, 1 torch thread\(s\)\); "
                                                  r"give the cpu_threads= .*; the model trained for the analysis "
                                                  r"is not checked against a stored run$"):
            assert Session(store=store).trained_model(arm, 0)[0].key != stored.key  # this process's 1 thread
        assert Session(store=store, cpu_threads=2).collect(arm, [0]).trained_here == []
    assert torch.get_num_threads() == 1  # restored
    with Store(tmp_path / "other.sqlite") as other, pytest.warns(RetrainUnchecked, match=r"other\.sqlite does not "
                                                                 r"hold seed 1 .*: the store holds no run of"):
        Session(store=other).trained_model(arm, 1)  # the wrong store


def test_a_train_size_of_the_whole_training_set_reads_the_full_sets_runs(tiny_model, tmp_path):
    """train_size=256 of a 256-example task is the full set: the same data, key and study."""
    full = Arm(name="full", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    whole = Arm(name="whole", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST, train_size=256)
    with Store(tmp_path / "s.sqlite") as store:
        trained = Session(store=store).collect(full, [0])
        read = Session(store=store).collect(whole, [0])
    assert trained.trained_here == [0] and read.trained_here == []
    assert read.results[0].key == trained.results[0].key and read.results[0].task["train_size"] is None


def test_a_study_from_a_script_can_show_its_progress(tiny_model, tmp_path, monkeypatch):
    """progress=True: a bar of the seeds done and one of the current seed's steps, up to the last."""
    import rich.progress

    import stabench

    shown = []
    original = rich.progress.Progress.update

    def update(self, task_id, **fields):
        shown.append((self.tasks[[t.id for t in self.tasks].index(task_id)].description, fields))
        return original(self, task_id, **fields)

    monkeypatch.setattr(rich.progress.Progress, "update", update)
    study = stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, seeds=2, store=tmp_path / "s.sqlite", progress=True)
    steps = study.results[0].steps
    assert {description for description, _ in shown} >= {"seed 0: steps", "seed 1: steps"}
    assert ("seed 1: steps", {"completed": steps, "total": steps}) in shown
    shown.clear()
    assert stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, seeds=2, store=tmp_path / "s.sqlite").n == 2
    assert shown == []  # no bar unless asked for
    assert [p.name for p in tmp_path.iterdir()] == ["s.sqlite"]  # nothing else beside a script's store


def test_a_script_without_store_uses_stabench_store_and_without_either_is_warned(tiny_model, tmp_path,
                                                                                    monkeypatch):
    """The CLI and pytest read $STABENCH_STORE; a script's study read it not, and kept nothing."""
    import warnings

    import stabench

    monkeypatch.setenv("STABENCH_STORE", str(tmp_path / "env.sqlite"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", stabench.claims.StudyNotStored)
        first = stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, seeds=2)
        assert first.trained_here == [0, 1]
        assert stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, seeds=2, train=False).results == first.results
        assert stabench.run(BUILTIN_PAIR_TASK, tiny_model, FAST, 1) == first.results[1]  # read, not trained
    with Store(tmp_path / "env.sqlite") as store:
        assert [r.seed for r in store.query()] == [0, 1]
    monkeypatch.delenv("STABENCH_STORE")
    with pytest.warns(stabench.claims.StudyNotStored, match=r"^stabench.study was given no store \(store= or "
                                                              r"\$STABENCH_STORE\): its runs are trained again"):
        again = stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, seeds=1)
    assert again.trained_here == [0] and again.results[0].metrics == first.results[0].metrics


def test_studies_make_a_summary_table_in_one_call(tiny_model, tmp_path):
    """A notebook compared studies over two tasks: summary_row refused a Study (AttributeError)
    and each table was written out by hand."""
    import stabench
    from stabench import report

    with Store(tmp_path / "s.sqlite") as store:
        pair = stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, seeds=2, store=store)
        single = stabench.study("polarity", tiny_model, FAST, seeds=2, store=store)
    assert report.summary_row(pair) == report.summary_row(pair.summary())
    rows = report.study_rows({"pair": pair, "single": single}, intervals=True)
    assert [(r["study"], r["task"], r["recipe"]) for r in rows] == [("pair", BUILTIN_PAIR_TASK, FAST.name),
                                                                    ("single", "polarity", FAST.name)]
    assert rows[0]["model"] == pair.results[0].model["name"] and "std upper (chi²)" in rows[0]
    assert [r["study"] for r in report.study_rows([pair, single])] == [pair.arm.name, single.arm.name]
    assert report.study_rows(pair)[0]["n"] == "2" and "| pair " in report.markdown(rows)
    with pytest.raises(TypeError, match=r"^summary_row takes a Study or its summary\(\), not list$"):
        report.summary_row([pair])
    # Comparisons on two tasks read alike ("bc vs nobc") unless they say what they ran.
    same, across = pair.compare(pair), pair.compare(single, metric="accuracy")
    assert same.subject == f"{BUILTIN_PAIR_TASK} / {pair.results[0].model['name']}" and across.subject is None
    assert str(same).startswith(f"A ({pair.arm.name}) vs B ({pair.arm.name}) on {same.subject} (accuracy, n=2")
    assert [row["on"] for row in report.comparison_rows([same, across])] == [same.subject, "-"]
    assert same.to_dict()["subject"] == same.subject


def test_a_study_s_runs_as_a_table_for_pandas_match_the_csv_export(tiny_model, tmp_path):
    import pandas as pd

    import stabench
    from stabench.exchange import run_table

    with Store(tmp_path / "s.sqlite") as store:
        study = stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, seeds=2, store=store)
        store.export(tmp_path / "runs.csv")
    frame = pd.DataFrame(run_table(study.results))
    assert list(frame["seed"]) == [0, 1] and list(frame["metric.accuracy"]) == [r.metrics["accuracy"] for r in study.results]
    assert set(frame["recipe.lr"]) == {FAST.lr} and set(frame["train_size"]) == {"full"}
    exported = pd.read_csv(tmp_path / "runs.csv").sort_values("seed").reset_index(drop=True)
    assert list(exported.columns) == [*frame.columns, "result_json"]
    for column in ("key", "seed", "failed", "metric.accuracy", "recipe.lr", "recipe_hash", "data_fingerprint"):
        assert list(exported[column]) == list(frame[column]), column


def test_a_study_of_another_subsample_is_retrained_on_that_subsample(tiny_model, tmp_path):
    """study.arm carries the subsample seed, so a script's retrain for the weights is the stored run."""
    import stabench

    with Store(tmp_path / "s.sqlite") as store:
        drawn = stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, seeds=1, store=store, train_size=64,
                               subsample_seed=1)
        assert drawn.arm.subsample_seed == 1
        result, _ = Session(store=store).trained_model(drawn.arm, 0)
        assert result.key == drawn.results[0].key and result.task["subsample_seed"] == 1
        first = Session(store=store).collect(dataclasses.replace(drawn.arm, subsample_seed=0), [0])
        assert first.results[0].task["fingerprint"] != drawn.results[0].task["fingerprint"]  # another subsample


def test_a_session_given_a_path_names_what_it_expects(tmp_path):
    with pytest.raises(ValueError, match=r"^Session\(store='.*s\.sqlite'\) is invalid; expected a stabench Store, "
                                         r"e\.g\. Session\(stabench\.Store\('.*s\.sqlite'\)\)$"):
        Session(store=str(tmp_path / "s.sqlite"))
    with pytest.raises(ValueError, match=r"^Session\(store=None\) is invalid; expected a stabench Store, "
                                         r"e\.g\. Session\(stabench\.Store\('results\.sqlite'\)\)$"):
        Session(store=None)  # not Store('None')


def test_a_damaged_stored_run_is_trained_again_and_its_study_reads_whole(tiny_model, tmp_path):
    import sqlite3

    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    with Store(tmp_path / "s.sqlite") as store:
        first = Session(store=store).collect(arm, [0, 1])
        damaged = first.results[1]
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE runs SET result_json = substr(result_json, 1, 40) WHERE key = ?", (damaged.key,))
        conn.close()
        with pytest.warns(UserWarning, match=f"stored run {damaged.key} is unreadable") as seen:
            again = Session(store=store).collect(arm, [0, 1])
        assert len(seen) == 1
        assert again.trained_here == [1]
        assert store.get(damaged.key).metrics == damaged.metrics  # the same run, on the CPU
        assert [r.key for r in store.query()] == [r.key for r in first.results]


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "stored-before-key-fields"])
def test_a_record_edited_into_another_seed_is_a_run_lost_not_a_second_copy_of_that_seed(tiny_model, tmp_path, keyed):
    """Seed 1's record edited to say seed 0 (a robustness trial) was served as a second seed 0,
    and the verdict failed on repeated seeds.  Its contents contradict its key: it is trained again,
    and the edited record is kept aside.  A record without key fields shows it by its seed alone."""
    import sqlite3

    import stabench

    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    with Store(tmp_path / "s.sqlite") as store:
        first = Session(store=store).collect(arm, [0, 1])
        edited = first.results[1]
        edit = "json_set(result_json, '$.seed', 0)"
        if not keyed:
            edit = f"json_remove({edit}, '$.environment.keyed_fields')"
        with sqlite3.connect(store.path) as conn:
            conn.execute(f"UPDATE runs SET result_json = {edit} WHERE key = ?", (edited.key,))
        conn.close()
        said = "its contents make key" if keyed else "it records seed 0 under the key of seed 1"
        with pytest.raises(StoreError, match=f"stored run {edited.key} is unreadable: {said}"):  # reading only too
            stabench.study(BUILTIN_PAIR_TASK, tiny_model, FAST, [0, 1], store=store, train=False)
        with pytest.warns(UserWarning, match=f"stored run {edited.key} is unreadable \\({said}.*training it again"):
            again = Session(store=store).collect(arm, [0, 1])
        assert again.trained_here == [1]
        assert [r.seed for r in again.results] == [0, 1]
        assert store.get(edited.key).metrics == edited.metrics and store.get(edited.key).seed == 1
        kept = json.loads((store.path.parent / "damaged" / f"{edited.key}.json").read_text())
        assert kept["seed"] == 0


def test_a_seed_stored_under_another_stack_says_why_it_trains_again(tiny_model, tmp_path):
    """A study stored under last month's libraries trains again under this month's, which on a
    GPU is hours: the warning names the stack it is stored under (here the thread count)."""
    import warnings

    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    with Store(tmp_path / "s.sqlite") as store:
        Session(store=store, cpu_threads=2).collect(arm, [0, 1])
        with pytest.warns(UserWarning, match=r"^runs of same-number / .* are stored under another stack "
                                             r"\(cpu_threads 2\), not this one \(cpu_threads 1\); each stack keeps "
                                             r"its own runs"):
            assert Session(store=store, cpu_threads=1).run_seed(arm, 0)[1]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # stored under this stack, or under none: nothing to say
            assert not Session(store=store, cpu_threads=1).run_seed(arm, 0)[1]
            assert Session(store=store, cpu_threads=1).run_seed(dataclasses.replace(arm, recipe=FAST.replace(lr=1e-3)), 0)[1]


def test_a_seed_that_died_is_named_by_its_recipe_as_the_tables_name_it(tiny_model, tmp_path, monkeypatch):
    from stabench.claims import SeedNotRun

    arm = Arm(name="recipes/team.json", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)  # a recipe file
    with Store(tmp_path / "s.sqlite") as store:
        session = Session(store=store)
        monkeypatch.setattr(Session, "_attempt", lambda self, key: {"session": session.session_id, "stored": False,
                                                                    "error": None, "pid": 4242, "host": "gpu7"})
        with pytest.raises(SeedNotRun, match=rf"^seed 0 of recipes/team\.json \(recipe {re.escape(FAST.name)}\) "
                                             r"did not finish in this session: its process \(pid 4242 on gpu7\) died$"):
            session.collect(arm, [0])
        # This very process, whose error could not be written down (a full disk): not "died".
        monkeypatch.setattr(Session, "_attempt", lambda self, key: {"session": session.session_id, "stored": False,
                                                                    "error": None, "pid": os.getpid(),
                                                                    "host": socket.gethostname()})
        with pytest.raises(SeedNotRun, match=r"did not finish in this session: it raised an error in this process, "
                                             r"which its seed item reports$"):
            session.collect(arm, [0])


def test_a_seed_item_returns_the_copy_an_import_stored_while_it_trained(tiny_model, tmp_path, monkeypatch):
    """An import takes no claim on a run: the seed item then reports what its verdict will read."""
    import stabench.train

    arm = Arm(name="a", task=BUILTIN_PAIR_TASK, model=tiny_model, recipe=FAST)
    real = stabench.train.fine_tune
    with Store(tmp_path / "s.sqlite") as store:
        def train_while_another_box_s_copy_is_imported(prepared, **kwargs):
            trained = real(prepared, **kwargs)
            with Store(store.path) as other:
                other.merge([dataclasses.replace(trained, metrics={**trained.metrics, "accuracy": 0.25})])
            return trained

        monkeypatch.setattr(stabench.train, "fine_tune", train_while_another_box_s_copy_is_imported)
        result, trained = Session(store=store).run_seed(arm, 0)
        assert trained and result.metrics["accuracy"] == 0.25 == store.get(result.key).metrics["accuracy"]


def test_a_claim_is_judged_from_a_script_as_its_verdict_judges_it(tiny_model, tmp_path, monkeypatch):
    """A claim file's function, called from a notebook: its arms built from the marker, its seeds
    read or trained, its body called; before, each arm had to be written out again."""
    import stabench

    monkeypatch.delenv("STABENCH_STORE", raising=False)
    arms = {"low": {"recipe": FAST.replace(lr=1e-5, name="low")}, "high": {"recipe": FAST.replace(name="high")}}

    @stabench.claim(task="polarity", model=tiny_model, seeds=3, arms=arms)
    def test_low_lr_fails_no_more(study, slack):
        assert study["low"].failures <= study["high"].failures + slack, "low failed more"

    with Store(tmp_path / "s.sqlite") as store:
        judged = stabench.check_claim(test_low_lr_fails_no_more, store=store, seeds="0-1", slack=2)
        assert sorted(judged) == ["high", "low"] and [r.seed for r in judged["low"].results] == [0, 1]
        assert sorted(r.seed for r in store.query()) == [0, 0, 1, 1]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite", "s.sqlite-shm", "s.sqlite-wal"]  # no notes
        low = Arm(name="x", task="polarity", model=tiny_model, recipe=arms["low"]["recipe"])
        read = Session(store=store).collect(low, [0, 1])
        assert [r.metrics for r in read.results] == [r.metrics for r in judged["low"].results]
        with pytest.raises(AssertionError, match="low failed more"):  # the stored runs judged again: no training
            stabench.check_claim(test_low_lr_fails_no_more, store=store, seeds="0-1", slack=-3)
        assert store.count() == 4
    for call, message in (
            (lambda: stabench.check_claim(test_low_lr_fails_no_more, store=store), "test_low_lr_fails_no_more takes "
             "slack, which a parametrize or fixture gives it under pytest; pass it: check_claim("
             "test_low_lr_fails_no_more, slack=...)"),
            (lambda: stabench.check_claim(test_low_lr_fails_no_more, slack=0, lr=1), "check_claim("
             "test_low_lr_fails_no_more, lr=...): test_low_lr_fails_no_more takes no argument 'lr'; it takes study, "
             "slack"),
            (lambda: stabench.check_claim(test_low_lr_fails_no_more, slack=0, train=False), "check_claim("
             "test_low_lr_fails_no_more, train=...): train is an option of stabench.study, not of check_claim, which "
             "takes store, seeds, device, cpu_threads, recompute and what a parametrize of test_low_lr_fails_no_more "
             "would give"),
            (lambda: stabench.check_claim(lambda study: None), "<lambda> is not a stabench claim; expected a function "
             "under @stabench.claim(...)"),
            (lambda: stabench.check_claim(test_low_lr_fails_no_more, slack=0, study=None), "check_claim("
             "test_low_lr_fails_no_more, study=...): the study is what check_claim gathers and passes to "
             "test_low_lr_fails_no_more; leave study out")):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            call()
    with pytest.warns(stabench.claims.StudyNotStored, match="its runs are kept nowhere"):
        stabench.check_claim(test_low_lr_fails_no_more, seeds=[0], slack=2)

    @stabench.claim(task="polarity", model=tiny_model, seeds=1)
    def test_without_a_recipe(study):
        pass

    with pytest.raises(ValueError, match=r"^claim has no recipe; give recipe= in stabench.claim or a parametrize "):
        stabench.check_claim(test_without_a_recipe, store=tmp_path / "s.sqlite")  # said "claim arm 'None'"
    with pytest.raises(ValueError, match=r"^claim arm 'a' has no recipe; give recipe= "):
        stabench.check_claim(test_without_a_recipe, store=tmp_path / "s.sqlite", arms={"a": {}})

    @stabench.claim(task="polarity", model=tiny_model, recipe=FAST, seeds=1, requires=["cuda"])
    def test_on_a_gpu(study):
        pass

    # A script has no --stabench-profile to offer: the reason alone.
    with pytest.raises(ValueError, match=r"^test_on_a_gpu needs what this machine lacks: a CUDA GPU \(paper-scale "
                                         r"claim; run it on a GPU box\)$"):
        stabench.check_claim(test_on_a_gpu, store=tmp_path / "s.sqlite")
    # In a notebook, data edited between two calls is judged as it is now, as stabench.study does.
    texts = {"text": ["good", "bad", "fine", "awful"] * 4, "label": [1, 0] * 8}
    mine = stabench.Task("in-memory-check", "text", lambda: {"train": texts, "validation": texts})

    @stabench.claim(task=mine, model=tiny_model, seeds=1, recipe=FAST)
    def test_on_my_data(study):
        pass

    with Store(tmp_path / "s.sqlite") as store:
        first = stabench.check_claim(test_on_my_data, store=store).results[0].task["fingerprint"]
        texts["label"] = [0, 1] * 8
        assert stabench.check_claim(test_on_my_data, store=store).results[0].task["fingerprint"] != first


def test_runs_read_back_without_a_name_in_their_recipe_record_keep_the_name_they_were_stored_under():
    """A record that holds the recipe's fields but not its name (an import from another tool or
    an earlier version): the study's recipe is named as its runs are, not "custom"."""
    from stabench.result import RunResult

    record = {k: v for k, v in FAST.to_dict().items() if k != "name"}
    runs = [RunResult(key=f"k{seed}", task={"name": "t", "train_size": None, "fingerprint": "f"}, model={"name": "m"},
                      recipe=record, recipe_name="mine", recipe_hash="0" * 64, seed=seed, environment={},
                      metrics={"accuracy": 0.8 + seed / 100}, primary_metric="accuracy", majority_accuracy=0.5,
                      failed=False, collapsed=False, diverged=False, steps=4, wall_time_s=1.0, steps_per_s=4.0,
                      started_at="2026-01-01T00:00:00", finished_at="2026-01-01T00:00:01") for seed in range(2)]
    study = Study.from_runs(runs)
    assert study.arm.name == study.arm.recipe.name == "mine"
    assert study.arm.recipe.replace(name=FAST.name) == FAST  # its fields as stored


def test_a_comparison_names_the_task_and_model_only_where_both_studies_ran_them():
    """Studies of two tasks share no "task / model": the comparison leaves it unsaid rather than
    naming one of them as if both had run it."""
    from stabench.result import RunResult

    def study_of(task: str, name: str, train_size: int | None = None) -> Study:
        recipe = get_recipe("bert-default")
        runs = [RunResult(key=f"{task}{seed}", task={"name": task, "train_size": train_size}, model={"name": "m"},
                          recipe={},
                          recipe_name=recipe.name, recipe_hash=recipe.hash, seed=seed, environment={},
                          metrics={"accuracy": 0.7 + seed / 100}, primary_metric="accuracy", majority_accuracy=0.5,
                          failed=False, collapsed=False, diverged=False, steps=10, wall_time_s=1.0, steps_per_s=10.0,
                          started_at="", finished_at="") for seed in range(3)]
        return Study(Arm(name=name, task=task, model="m", recipe=recipe, train_size=train_size), runs)

    assert study_of("rte", "a").compare(study_of("rte", "b")).subject == "rte / m"
    assert study_of("rte", "a").compare(study_of("mrpc", "a")).subject is None
    # The small-data study: one task, one recipe, two training sets; every view names the sizes.
    small, full = study_of("qnli", "full-steps", 1000), study_of("qnli", "full-steps")
    compared = small.compare(full)
    assert (compared.name_a, compared.name_b, compared.subject) == (
        "full-steps (1000 examples)", "full-steps (full)", "qnli / m")
    assert str(compared).startswith("full-steps (1000 examples) vs full-steps (full) on qnli / m (accuracy")
    assert small.compare(study_of("qnli", "b", 1000)).subject == "qnli (1000) / m"
    other_task = small.compare(study_of("rte", "x"))
    assert (other_task.name_a, other_task.name_b, other_task.subject) == ("full-steps (qnli, 1000 examples)",
                                                                          "x (rte)", None)
    assert repr(small).startswith("Study(qnli (1000), bert-default, m, n=3: accuracy")
    assert [row["task"] for row in report.study_rows([small, full])] == ["qnli (1000)", "qnli"]


def test_clearing_a_session_s_attempt_notes_leaves_another_session_s(tmp_path):
    """Another session (a second pytest in the same project) may be judging with its notes right now."""
    from stabench.claims import clear_attempts
    from stabench.store import beside_store

    folder = beside_store(tmp_path / "s.sqlite", "attempts")
    folder.mkdir()
    (folder / "mine.json").write_text(json.dumps({"session": "me", "error": None}))
    (folder / "theirs.json").write_text(json.dumps({"session": "them", "error": None}))
    clear_attempts(tmp_path / "s.sqlite", "me")
    assert sorted(p.name for p in folder.iterdir()) == ["theirs.json"]
    clear_attempts(tmp_path / "s.sqlite", "them")
    assert not folder.exists()  # emptied: removed


def test_a_study_s_one_sided_failure_bound_is_the_one_sided_one():
    study = _scored("a", [0.45, 0.8, 0.9, 0.85, 0.7])
    one_sided = study.failure_rate_upper(one_sided=True)
    assert one_sided == failure_rate_upper(1, 5, 0.95, True) < study.failure_rate_upper()


def test_a_study_refuses_runs_of_one_headline_scored_under_two_definitions_of_the_task_s_metrics():
    """The task's metrics changed between seeds (accuracy alone, then accuracy and macro_f1): the
    headline is the same name, but the runs are not of one study."""
    study = _scored("a", [0.6, 0.7, 0.8])
    runs = [dataclasses.replace(run, task={"name": "t", "metrics": ["accuracy"] if run.seed else
                                           ["accuracy", "macro_f1"]}) for run in study.results]
    with pytest.raises(ValueError, match=r"its runs were scored with different metrics \(headline accuracy\)"):
        Study(study.arm, runs)
    Study(study.arm, [dataclasses.replace(run, task={"name": "t", "metrics": ["accuracy"]}) for run in study.results])


def test_under_recompute_only_this_session_s_notes_say_a_run_is_new_or_crashed(tmp_path):
    """A note of another session saying "stored" is no new result of this one (the stored run is the
    old one); a note of this session saying "stored" is no crash; one with its error is."""
    from types import SimpleNamespace

    from stabench.claims import SeedNotRun, _write_attempt

    old = _scored("a", [0.8]).results[0]
    with Store(tmp_path / "s.sqlite") as store:
        store.put(old)
        session = Session(store=store, recompute=True)
        prepared = SimpleNamespace(key=old.key, seed=old.seed)
        note = session._attempt_path(old.key)
        _write_attempt(note, {"session": "an-earlier-session", "stored": True})
        assert session._usable(prepared) is None and session._usable(prepared, claimed=True) is None
        _write_attempt(note, {"session": session.session_id, "stored": True})
        assert session._usable(prepared).key == old.key
        arm = Arm(name="bert-default", task="t", model="m", recipe=get_recipe("bert-default"))
        session._raise_if_attempted(arm, 0, old.key)  # stored by this session: nothing crashed
        _write_attempt(note, {"session": session.session_id, "pid": 1, "host": "h", "error": "OSError: disk"})
        with pytest.raises(SeedNotRun, match="seed 0 of bert-default did not finish in this session: OSError: disk"):
            session._raise_if_attempted(arm, 0, old.key)
