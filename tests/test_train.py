import dataclasses
import importlib.metadata
import math
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import stabench
from stabench import environment
from stabench.environment import key_fields
from stabench.recipes import get_recipe
from stabench.tasks import BUILTIN_PAIR_TASK, BUILTIN_SINGLE_TASK
from stabench.result import FINAL_LOSS_STEPS, RunResult, final_train_loss
from stabench.train import fine_tune, prepare, run

FAST = dict(max_steps=12, trace_every=4, lr=1e-3)



def test_the_package_s_lazy_names_are_listed_for_tab_completion():
    names = dir(stabench)
    assert set(stabench.__all__) <= set(names) and {"study", "run", "Store", "get_recipe"} <= set(names)
    assert all(getattr(stabench, name) is not None for name in stabench.__all__)


def test_the_package_s_modules_are_reached_right_after_import_stabench():
    """README's `stabench.claims.Study(...)` and `stabench.exchange.run_table(...)` in a fresh
    interpreter, where nothing has imported those modules yet."""
    import subprocess
    import sys

    code = ("import stabench, sys; assert 'stabench.claims' not in sys.modules; "
            "print(stabench.claims.Study.__name__, stabench.exchange.run_table.__name__); "
            "assert not hasattr(stabench, '__main__'); stabench.nosuch")  # a probe must not run the CLI
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["Study", "run_table"]
    assert done.stderr.strip().endswith("AttributeError: module 'stabench' has no attribute 'nosuch'")


def test_end_to_end_run_of_the_tiny_model(tiny_model):
    result = run(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", **FAST), seed=0)
    assert result.steps == 12 and len(result.trace["loss"]) == 12
    assert result.trace["step"] == [1, 4, 8, 12]
    assert list(result.trace["grad_norm"]) == ["embeddings", "layer.0", "layer.1", "pooler", "classifier"]
    assert all(len(v) == 4 and all(x >= 0 for x in v) for v in result.trace["grad_norm"].values())
    assert len(result.trace["grad_norm_total"]) == 4
    assert result.failed == (result.metrics["accuracy"] <= 0.5)
    assert result.collapsed == (min(result.prediction_counts.values()) == 0)
    assert sum(result.prediction_counts.values()) == 256
    assert result.majority_accuracy == 0.5 and result.primary_metric == "accuracy"
    assert result.task["n_train"] == 256 and result.model["files_sha256"]
    assert result.task["num_labels"] == 2 and result.task["text_columns"] == ["sentence1", "sentence2"]
    assert result.environment["torch"] == torch.__version__ and result.environment["device_kind"] == "cpu"
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if "model name" in cpuinfo:  # recorded (not keyed): another CPU can end a chaotic run differently
        assert result.environment["cpu_model"] in cpuinfo and result.environment["cpu_model"]
    assert "cpu_model" not in key_fields(result.environment)
    assert key_fields(result.environment)["tokenizers"] == importlib.metadata.version("tokenizers")
    assert key_fields(result.environment)["precision"] == "fp32"  # keyed since the first stored runs
    assert result.environment["numpy"] == np.__version__ and "numpy" not in key_fields(result.environment)
    clone = Path(stabench.__file__).parent.parent
    commit = environment._git(["rev-parse", "HEAD"], str(clone)) if (clone / ".git").exists() else None
    assert result.environment["stabench_git_commit"] == commit
    assert result.environment["stabench_git_dirty"] is environment.stabench_clone(str(clone))[1]
    assert result.environment["cuda_visible_devices"] == os.environ.get("CUDA_VISIBLE_DEVICES")
    assert result.recipe["bias_correction"] is False and result.recipe_name.startswith("bert-default")
    assert result.steps_per_s > 0 and result.wall_time_s > 0


def test_a_run_records_whether_stabench_s_own_code_was_edited_since_its_commit(tmp_path):
    """Runs of a locally edited training loop read as the clean commit's: only the project's own
    edits were recorded."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    assert environment.stabench_clone(str(tmp_path)) == (None, None)  # a wheel, not a clone
    (tmp_path / "stabench").mkdir()
    (tmp_path / "stabench" / "train.py").write_text("STEP = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "first")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "notes.txt").write_text("the user's own file beside the library\n")
    assert environment.stabench_clone(str(tmp_path)) == (commit, False)
    (tmp_path / "stabench" / "train.py").write_text("STEP = 2\n")
    assert environment.stabench_clone(str(tmp_path)) == (commit, True)


def test_a_run_records_the_project_s_commit_and_whether_it_was_edited(tmp_path, monkeypatch):
    import subprocess

    for name, edited in (("clean", False), ("edited", True)):
        project = tmp_path / name
        project.mkdir()
        (project / "claims.py").write_text("SEEDS = 5\n")
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "first"]):
            subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=project, check=True,
                           capture_output=True)
        if edited:
            (project / "claims.py").write_text("SEEDS = 20\n")
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
        monkeypatch.chdir(project)
        env = environment.capture()
        assert (env["project_git_commit"], env["project_git_dirty"]) == (commit, edited)
    monkeypatch.chdir(tmp_path)  # no repository: nothing to say
    assert (environment.capture()["project_git_commit"], environment.capture()["project_git_dirty"]) == (None, None)


def test_single_sentence_task_and_subsample(tiny_model):
    result = run(BUILTIN_SINGLE_TASK, tiny_model, get_recipe("bert-default", **FAST), seed=0, train_size=64)
    assert result.task["train_size"] == 64 and result.task["n_train"] == 64


def test_every_seed_of_a_small_data_study_trains_on_one_subsample(tiny_model):
    """As the paper's 1k study: one fixed subsample (its train-sampled-1k files), seeds vary the rest."""
    first, second = (prepare(BUILTIN_SINGLE_TASK, tiny_model, "bert-default", seed=s, train_size=64) for s in (0, 1))
    assert first.task_info["fingerprint"] == second.task_info["fingerprint"] and first.key != second.key
    other = prepare(BUILTIN_SINGLE_TASK, tiny_model, "bert-default", seed=0, train_size=64, subsample_seed=1)
    assert other.task_info["fingerprint"] != first.task_info["fingerprint"]


def test_same_seed_gives_identical_results_and_other_seeds_differ(tiny_model, monkeypatch):
    monkeypatch.delenv("STABENCH_STORE")  # no store: the second seed 3 is trained, not read
    recipe = get_recipe("bert-default", **FAST)
    a, b, c = (run(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=s) for s in (3, 3, 4))
    assert a.key == b.key != c.key
    assert a.metrics == b.metrics and a.trace["loss"] == b.trace["loss"]
    assert a.trace["grad_norm"] == b.trace["grad_norm"]
    assert a.trace["loss"] != c.trace["loss"]


def test_without_token_types_the_model_sees_type_0_everywhere_as_the_authors_bert_did(tiny_model, monkeypatch):
    """Their "pooler-bert" model type got no token_type_ids, so BERT embedded type 0 for a pair's
    second sentence too; token_types=False runs so, as another recipe, and the default keeps its hash."""
    import transformers

    seen = []
    forward = transformers.BertModel.forward

    def spy(self, *args, token_type_ids=None, **kwargs):
        seen.append(token_type_ids)
        return forward(self, *args, token_type_ids=token_type_ids, **kwargs)

    monkeypatch.setattr(transformers.BertModel, "forward", spy)
    monkeypatch.delenv("STABENCH_STORE")
    with_types, without = (run(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", token_types=types, **FAST),
                               seed=0) for types in (True, False))
    calls = len(seen) // 2
    assert all(ids is not None for ids in seen[:calls]) and any(int(ids.max()) == 1 for ids in seen[:calls])
    assert all(ids is None for ids in seen[calls:])
    assert with_types.trace["loss"] != without.trace["loss"] and with_types.key != without.key
    assert without.recipe["token_types"] is False and "token_types" not in with_types.recipe
    assert get_recipe("bert-default", token_types=True).hash == get_recipe("bert-default").hash


def test_learning_happens_with_a_reasonable_recipe(tiny_model):
    """The tiny model learns the single-sentence task: the engine trains, not just runs."""
    recipe = get_recipe("mosbach-stable", lr=2e-3, epochs=4, trace_every=8)
    result = run(BUILTIN_SINGLE_TASK, tiny_model, recipe, seed=0)
    assert result.metrics["accuracy"] > 0.9 and not result.failed
    assert result.trace["loss"][-1] < result.trace["loss"][0]


def _nan_losses(monkeypatch, at) -> None:
    """The training loss turns NaN at the steps where ``at(step)`` holds (evaluation computes none)."""
    original, calls = torch.nn.CrossEntropyLoss.forward, {"n": 0}

    def poisoned(self, logits, labels):
        calls["n"] += 1
        loss = original(self, logits, labels)
        return loss * float("nan") if at(calls["n"]) else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)


def test_non_finite_loss_marks_the_run_diverged_without_raising(tiny_model, monkeypatch):
    recipe = get_recipe("bert-default", **FAST)
    prepared = prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0)
    _nan_losses(monkeypatch, at=lambda step: step >= 6)
    result = fine_tune(prepared)
    assert result.diverged and result.failed
    assert result.steps == 8  # stopped at the first trace point after the NaN (step 6 -> checked at 8)
    assert math.isnan(result.trace["loss"][-1])
    assert '"__float__": "NaN"' in result.to_json()


def test_a_non_finite_loss_between_trace_points_is_caught_at_the_next_one(tiny_model, monkeypatch):
    """The check at a trace point covers every step since the last: a loss that was NaN at an
    untraced step alone (its gradient finite, so the run went on) still marks the run diverged."""
    original, calls = torch.nn.CrossEntropyLoss.forward, {"n": 0}

    def once_nan(self, logits, labels):
        calls["n"] += 1
        loss = original(self, logits, labels)
        return loss + float("nan") if calls["n"] == 6 else loss  # d(loss + c)/dloss = 1: weights stay finite

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", once_nan)
    result = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", **FAST), seed=0))
    assert result.diverged and result.failed and result.steps == 8
    assert math.isnan(result.trace["loss"][5]) and math.isfinite(result.trace["loss"][-1])


def test_a_diverged_run_fails_even_where_its_dev_accuracy_is_perfect(tiny_model, monkeypatch):
    """A NaN run's dev accuracy says nothing of it (its predictions are of NaN logits): it fails
    by diverging, not by the accuracy it happens to score."""
    from stabench import train
    from stabench.result import fails

    assert fails(0.5, 0.5, diverged=False) and not fails(0.5 + 1e-9, 0.5, diverged=False)  # at or below majority
    assert fails(1.0, 0.5, diverged=True)
    _nan_losses(monkeypatch, at=lambda step: step >= 2)
    monkeypatch.setattr(train, "_predict", lambda model, encoded, *args, **kwargs: encoded.labels.clone())
    result = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", **FAST), seed=0))
    assert result.diverged and result.metrics["accuracy"] == 1.0 and result.failed


def test_the_last_step_is_traced_so_a_nan_there_makes_a_diverged_run(tiny_model, monkeypatch):
    """Divergence is checked at trace points; the last step is always one, so a run whose loss
    turns NaN after the last multiple of trace_every still counts as diverged."""
    prepared = prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=7, trace_every=5), 0)
    _nan_losses(monkeypatch, at=lambda step: step == 7)
    result = fine_tune(prepared)
    assert result.trace["step"] == [1, 5, 7]
    assert result.diverged and result.failed and result.steps == 7


def test_a_diverged_run_is_scored_where_it_ended_even_when_picking_the_best_checkpoint(tiny_model, monkeypatch):
    """checkpoint="best" must not hand a run that blew up the scores of its evaluations before."""
    recipe = get_recipe("bert-default", max_steps=8, trace_every=4, eval_every=2, checkpoint="best", lr=1e-3)
    prepared = prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0)
    _nan_losses(monkeypatch, at=lambda step: step >= 6)
    result = fine_tune(prepared)
    assert result.diverged and [e["step"] for e in result.trace["eval"]] == [2, 4, 6, 8]
    last = result.trace["eval"][-1]
    assert result.metrics["accuracy"] == last["accuracy"]
    assert list(result.prediction_counts.values()) == last["prediction_counts"]
    assert math.isnan(result.metrics["train_loss"])


def test_best_checkpoint_takes_the_highest_of_differing_scores(tiny_model, monkeypatch):
    """The best of three evaluations that differ (the real ones of a tiny model often tie), and
    failed or not as that one scored: the last is at the majority accuracy."""
    evaluate, scores = stabench.train._eval_record, {4: 0.55, 8: 0.8, 12: 0.5}

    def scored(step, *args):
        return {**evaluate(step, *args), "accuracy": scores[step]}

    monkeypatch.setattr(stabench.train, "_eval_record", scored)
    recipe = get_recipe("bert-default", max_steps=12, eval_every=4, checkpoint="best", lr=1e-3)
    result = run(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0)
    assert result.metrics["accuracy"] == 0.8 and result.trace["train_loss_steps"] == [1, 8]
    assert result.majority_accuracy == 0.5 and not result.failed


def test_best_checkpoint_picks_the_best_dev_evaluation(tiny_model):
    recipe = get_recipe("bert-default", max_steps=12, eval_every=4, checkpoint="best", lr=1e-3)
    result = run(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0)
    evaluations = result.trace["eval"]
    assert [e["step"] for e in evaluations] == [4, 8, 12]
    best = max(evaluations, key=lambda e: e["accuracy"])
    assert result.metrics["accuracy"] == best["accuracy"]
    # Collapse and train loss describe the same checkpoint as the score, not the last step.
    assert list(result.prediction_counts.values()) == best["prediction_counts"]
    assert result.collapsed == (sum(1 for c in best["prediction_counts"] if c) <= 1)
    window = result.trace["loss"][:best["step"]][-FINAL_LOSS_STEPS:]
    assert result.metrics["train_loss"] == pytest.approx(statistics.median(window))


def test_best_checkpoint_without_eval_every_evaluates_at_each_epoch_end(tiny_model):
    recipe = get_recipe("bert-default", max_steps=7, batch_size=16, checkpoint="best", lr=1e-3)
    prepared = prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0, train_size=32)  # 2 steps an epoch
    assert [e["step"] for e in fine_tune(prepared).trace["eval"]] == [2, 4, 6, 7]
    last = dataclasses.replace(prepared, recipe=recipe.replace(checkpoint="last"))
    assert [e["step"] for e in fine_tune(last).trace["eval"]] == [7]  # the last checkpoint: the final one only


def test_logging_settings_change_no_stored_number(tiny_model):
    """trace_every and eval_every change what is recorded, not what is trained or summarised."""
    coarse = run(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=16, trace_every=8, lr=1e-3), 0)
    fine = run(BUILTIN_PAIR_TASK, tiny_model,
               get_recipe("bert-default", max_steps=16, trace_every=3, eval_every=5, lr=1e-3), 0)
    assert coarse.trace["loss"] == fine.trace["loss"] and len(fine.trace["step"]) > len(coarse.trace["step"])
    assert coarse.metrics == fine.metrics
    assert coarse.metrics["train_loss"] == final_train_loss(coarse.trace["loss"])
    assert coarse.trace["train_loss_steps"] == [7, 16]


def test_a_diverged_run_has_no_train_loss_and_old_records_get_the_current_one():
    assert math.isnan(final_train_loss([0.69] * 9 + [math.nan]))  # not a constant predictor at ln 2
    assert final_train_loss([5.0, 0.001, 0.002, 0.9]) == pytest.approx(0.451)
    assert math.isnan(final_train_loss([]))
    losses = [1.0] * 20 + [0.01] * 9 + [2.0]
    old = dict(key="k", task={}, model={}, recipe={"checkpoint": "last"}, recipe_name="r", recipe_hash="h", seed=0,
               environment={}, metrics={"accuracy": 0.9, "train_loss": sum(losses[-10:]) / 10},
               primary_metric="accuracy", majority_accuracy=0.5, failed=False, collapsed=False, diverged=False,
               steps=30, wall_time_s=1.0, steps_per_s=1.0, started_at="", finished_at="", trace={"loss": losses})
    loaded = RunResult.from_dict(old)  # stored before 2026-11-27: the mean of the last trace_every losses
    assert loaded.metrics["train_loss"] == 0.01 and loaded.trace["train_loss_steps"] == [21, 30]
    best = RunResult.from_dict({**old, "recipe": {"checkpoint": "best"}, "trace": {"loss": list(losses)}})
    assert best.metrics["train_loss"] == sum(losses[-10:]) / 10  # its checkpoint's steps are not recorded
    assert old["metrics"]["train_loss"] == sum(losses[-10:]) / 10  # loading did not touch the caller's dict


def test_last_checkpoint_scores_the_model_as_training_left_it(tiny_model):
    recipe = get_recipe("bert-default", max_steps=12, eval_every=4, lr=1e-3)
    result = run(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0)
    last = result.trace["eval"][-1]
    assert last["step"] == 12 and result.metrics["accuracy"] == last["accuracy"]
    assert list(result.prediction_counts.values()) == last["prediction_counts"]
    # Each evaluation records the batch it ran at (provenance, not a metric).
    batch_size = min(stabench.train.EVAL_BATCH_SIZE["cpu"], result.task["n_eval"])  # no larger than the split
    assert [e["batch_size"] for e in result.trace["eval"]] == [batch_size] * 3
    assert "batch_size" not in result.metrics


def test_an_evaluation_batch_larger_than_the_dev_split_is_recorded_as_the_split(tiny_model, monkeypatch):
    import stabench.train

    monkeypatch.setitem(stabench.train.EVAL_BATCH_SIZE, "cpu", 1024)
    result = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=1), seed=0))
    assert result.task["n_eval"] < 1024 and result.trace["eval"][-1]["batch_size"] == result.task["n_eval"]


def test_steps_per_s_leaves_out_dev_evaluations_during_training(tiny_model, monkeypatch):
    """A recipe that evaluates often (or picks the best checkpoint) trains no slower per step."""
    evaluate = stabench.train._eval_record

    def slow_evaluation(step, *args):
        time.sleep(4.0 if step < 12 else 0.0)  # the two inside the loop: 8 s, far more than 12 tiny steps take
        return evaluate(step, *args)

    monkeypatch.setattr(stabench.train, "_eval_record", slow_evaluation)
    result = run(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=12, eval_every=4, lr=1e-3), 0)
    assert [e["step"] for e in result.trace["eval"]] == [4, 8, 12]  # two inside the loop, one after it
    # The steps' time is the run's wall time less the evaluations inside the loop (8 s of sleep at least).
    assert result.wall_time_s > 8.0 and result.steps / result.steps_per_s <= result.wall_time_s - 8.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(task="nope"), "unknown task 'nope'"),
    (dict(model="/does/not/exist"), "model path '/does/not/exist' does not exist"),
    (dict(recipe="fast"), "unknown recipe 'fast'"),
    (dict(seed=-1), "seed=-1 is invalid"),
    (dict(device="gpu"), "device 'gpu' is invalid; expected auto, cpu, cuda or cuda:N"),
    (dict(device="cpux"), "device 'cpux' is invalid; expected auto, cpu, cuda or cuda:N"),
])
def test_bad_input_is_named(tiny_model, kwargs, message):
    args = {**dict(task=BUILTIN_PAIR_TASK, model=tiny_model, recipe="bert-default", seed=0), **kwargs}
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(message)):
        prepare(**args)


def test_a_rerun_under_another_stack_says_it_trains_again_and_a_read_never_recomputes(tiny_model, tmp_path):
    recipe = get_recipe("bert-default", max_steps=2)
    store = tmp_path / "s.sqlite"
    run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, store=store, cpu_threads=1)
    with pytest.warns(UserWarning, match=r"are stored under another stack \(cpu_threads 1\), not this one "
                                         r"\(cpu_threads 2\); each "
                                         r"stack keeps its own runs, so they train again \(those stored under "
                                         r"cpu_threads 1 are read with that count: --stabench-cpu-threads, stabench "
                                         r"run --cpu-threads, or cpu_threads=\)$"):
        run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, store=store, cpu_threads=2)
    with pytest.raises(ValueError, match=r"^train=False reads stored runs only; it needs store= "
                                         r"\(or \$STABENCH_STORE\) and no recompute$"):
        run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, store=store, cpu_threads=1, train=False, recompute=True)


def test_reinit_comes_before_mixout_so_the_top_layer_starts_fresh_and_mixes_towards_its_new_init(tiny_model):
    """Mixout wraps each Linear; a re-init after it would find no Linear in the top layer and
    leave the pretrained weights there, silently."""
    from stabench import models
    from stabench.interventions import MixLinear, encoder_layers

    recipe = get_recipe("bert-default", reinit_layers=1, mixout=0.1, max_steps=1, lr=1e-9)  # one step, no change
    _, model = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0), return_model=True)
    pretrained = encoder_layers(models.load_model(models.resolve(tiny_model), 2, 0.0))
    (bottom, top), (pretrained_bottom, pretrained_top) = encoder_layers(model), pretrained
    query, pretrained_query = top.attention.self.query, pretrained_top.attention.self.query
    assert isinstance(query, MixLinear)
    assert (query.weight - pretrained_query.weight).abs().max() > 1e-3 and query.bias.abs().max() < 1e-6
    assert torch.allclose(query.w_pre, query.weight, atol=1e-6)
    query, pretrained_query = bottom.attention.self.query, pretrained_bottom.attention.self.query
    assert torch.allclose(query.weight, pretrained_query.weight, atol=1e-6)
    assert torch.allclose(query.w_pre, pretrained_query.weight)


def test_reinit_deeper_than_the_model_is_named_before_data_or_weights_load(tiny_model, monkeypatch):
    from stabench import train

    monkeypatch.setattr(train, "load_task_data", lambda *args, **kwargs: pytest.fail("the data was loaded"))
    with pytest.raises(ValueError, match=re.escape("reinit_layers=3 is invalid for this model; expected 0..2 "
                                                   "(it has 2 encoder layers)")):
        prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", reinit_layers=3), seed=0)


def test_evaluation_halves_its_batch_until_it_fits(tiny_model, monkeypatch):
    """Out of memory at a large evaluation batch: retried at half the size, same predictions."""
    from stabench import data as data_lib
    from stabench import models, train
    from stabench.tasks import load_task_data

    source, task_data = models.resolve(tiny_model), load_task_data("same-number")
    _, eval_set = data_lib.encode(task_data, models.load_tokenizer(source), 128)
    model = models.load_model(source, 2, dropout=0.1)
    expected_metrics, expected, first_size = train._evaluate(model, eval_set, task_data, 0, torch.device("cpu"), "fp32")
    forward, sizes = model.forward, []

    def small_memory(**inputs):
        sizes.append(len(inputs["input_ids"]))
        if sizes[-1] > 40:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(**inputs)

    monkeypatch.setattr(model, "forward", small_memory)
    found_metrics, found, size = train._evaluate(model, eval_set, task_data, 0, torch.device("cpu"), "fp32")
    assert torch.equal(found, expected) and found_metrics == expected_metrics
    assert (first_size, size) == (train.EVAL_BATCH_SIZE["cpu"], 32)  # what the run's trace records
    assert sizes[0] == train.EVAL_BATCH_SIZE["cpu"] and max(sizes[sizes.index(32):]) == 32


def test_run_takes_the_thread_count_into_its_key_and_restores_it(tiny_model):
    recipe = get_recipe("bert-default", max_steps=4, lr=1e-3)
    before = torch.get_num_threads()
    one = run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, cpu_threads=1)
    two = run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, cpu_threads=np.int64(2))  # a numpy integer too
    assert (one.environment["cpu_threads"], two.environment["cpu_threads"]) == (1, 2) and one.key != two.key
    assert torch.get_num_threads() == before
    for bad in (0, "1", 1.5, 100_000):  # a typo of 100000 threads was a MemoryError
        with pytest.raises(ValueError, match=f"^cpu_threads={bad!r} is invalid; expected an integer from 1 to 1024$"):
            run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, cpu_threads=bad)


def test_a_warning_names_the_script_line_that_caused_it(tiny_model, tmp_path):
    """Not a line of stabench: a run trained again under another thread count warns at the run() call."""
    import inspect

    from stabench.store import Store
    from stabench.train import OtherStackWarning

    recipe = get_recipe("bert-default", max_steps=2, lr=1e-3)
    with Store(tmp_path / "s.sqlite") as store:
        run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, store=store, cpu_threads=1)
        with pytest.warns(OtherStackWarning) as said:
            line = inspect.currentframe().f_lineno + 1
            run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, store=store, cpu_threads=2)
    assert [(w.filename, w.lineno) for w in said] == [(__file__, line)]


@pytest.mark.parametrize("caller, shown", [("pluggy._callers", "store.py"), ("_pytest.python", "store.py"),
                                           ("__main__", "<cell-1>")])
def test_a_warning_under_pytest_s_own_frames_names_stabench_s_line(caller, shown):
    """While the plugin trains, the first frame past stabench is pluggy's or pytest's, which says
    less than stabench's own line; code compiled from a string (a notebook cell) is the user's."""
    namespace = {"__name__": caller}
    with pytest.warns(DeprecationWarning, match="stabench.store.run_table is stabench.exchange.run_table") as said:
        exec(compile("import stabench.store\nstabench.store.run_table", "<cell-1>", "exec"), namespace)
    assert os.path.basename(said[0].filename) == shown


def test_a_notebook_cell_s_warning_names_the_cell_whatever_the_working_folder(monkeypatch):
    """``<cell-1>`` is no file: with the working folder inside stabench's package (a notebook started
    there), a path of that name would lie under it, and the cell's warning named stabench's line."""
    monkeypatch.chdir(os.path.dirname(os.path.realpath(stabench.__file__)))
    with pytest.warns(DeprecationWarning, match="stabench.store.run_table is stabench.exchange.run_table") as said:
        exec(compile("import stabench.store\nstabench.store.run_table", "<cell-1>", "exec"), {"__name__": "__main__"})
    assert said[0].filename == "<cell-1>"


def test_a_warning_tells_stabench_s_lines_by_its_folder_not_by_how_its_path_begins(tmp_path):
    """A user's folder beside the package whose name begins with it (``stabench_claims/``) is the
    user's; stabench's own files reached through a link (an editable install's) are stabench's."""
    import inspect

    from stabench.warn import warn

    package = os.path.dirname(os.path.realpath(stabench.__file__))
    beside = os.path.join(package + "_claims", "test_claim.py")
    with pytest.warns(DeprecationWarning, match="stabench.store.run_table is stabench.exchange.run_table") as said:
        exec(compile("import stabench.store\nstabench.store.run_table", beside, "exec"), {"__name__": "claims"})
    assert said[0].filename == beside
    (tmp_path / "linked").symlink_to(package, target_is_directory=True)
    linked = compile("warn('said through a link')", str(tmp_path / "linked" / "helper.py"), "exec")
    with pytest.warns(UserWarning, match="^said through a link$") as said:
        line = inspect.currentframe().f_lineno + 1
        exec(linked, {"__name__": "stabench.helper", "warn": warn})
    assert [(w.filename, w.lineno) for w in said] == [(__file__, line)]


def test_a_stored_run_asked_for_by_another_name_is_reused_and_found_by_it(tiny_model, tmp_path):
    from stabench.store import Store

    recipe = get_recipe("bert-default", max_steps=2, lr=1e-3)
    with Store(tmp_path / "s.sqlite") as store:
        first = run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, store=store, cpu_threads=1)
        same = run(BUILTIN_PAIR_TASK, tiny_model, recipe.replace(name="mine"), 0, store=store, cpu_threads=1)
        assert same.key == first.key and same.finished_at == first.finished_at  # not trained again
        assert same.recipe_names == ["bert-default[lr=0.001,max_steps=2]", "mine"]
        assert [r.key for r in store.query(recipe="mine")] == [first.key]
        # The objects stabench.run takes select runs too: a Recipe by its content, a Task by its data.
        from stabench.tasks import get_task

        assert [r.key for r in store.query(recipe=recipe.replace(name="any"), task=get_task(BUILTIN_PAIR_TASK),
                                           seed=[0, 3])] == [first.key]
        assert store.query(recipe=recipe.replace(lr=2e-3)) == [] and store.query(seed=range(1, 3)) == []
    # A store may be given by its path.
    again = run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, store=tmp_path / "s.sqlite", cpu_threads=1)
    assert again.finished_at == first.finished_at
    for bad, message in (({"store": 3}, r"^store=3 is invalid; expected a stabench Store or the path of one$"),
                         ({"progress": True}, r"^progress=True is invalid; expected a callback taking \(step, total\)")):
        with pytest.raises(ValueError, match=message):
            run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, **bad)


def test_a_study_from_a_script_reads_stored_seeds_and_trains_the_rest(tiny_model, tmp_path, monkeypatch):
    import stabench
    from stabench import train

    recipe = get_recipe("bert-default", max_steps=2, lr=1e-3)
    first = run(BUILTIN_SINGLE_TASK, tiny_model, recipe, 1, store=tmp_path / "s.sqlite", cpu_threads=1)
    trained = []
    fine_tune_for_real = train.fine_tune
    monkeypatch.setattr(train, "fine_tune", lambda prepared, **kw: trained.append(prepared.seed)
                        or fine_tune_for_real(prepared, **kw))
    study = stabench.study(BUILTIN_SINGLE_TASK, tiny_model, recipe, [0, 1, 2], store=tmp_path / "s.sqlite",
                           cpu_threads=1)
    assert trained == [0, 2] and [r.seed for r in study.results] == [0, 1, 2] and study.results[1].key == first.key
    assert study.trained_here == [0, 2]  # as a claim's verdict says which seeds it trained itself
    assert study.n == 3 and study.summary().n == 3 and study.metric == "accuracy"
    assert [r.seed for r in stabench.study(BUILTIN_SINGLE_TASK, tiny_model, recipe, 2, store=tmp_path / "s.sqlite",
                                           cpu_threads=1).results] == [0, 1] and trained == [0, 2]
    # Read only, to redraw a table: stored seeds are read, and missing ones are one error, never trained.
    read = stabench.study(BUILTIN_SINGLE_TASK, tiny_model, recipe, 3, store=tmp_path / "s.sqlite", cpu_threads=1,
                          train=False)
    assert [r.key for r in read.results] == [r.key for r in study.results] and trained == [0, 2]
    assert read.trained_here == []
    # Each missing run is named by what is missing: a thread count, seeds, data, or the recipe itself.
    for asked, message in (
            (dict(cpu_threads=2), r"^seeds 3-4 of polarity / .* are not stored: runs of these inputs are stored for "
                                  r"another stack \(cpu_threads=1\), not this one \(cpu, 2 torch thread\(s\)\); give "
                                  r"the cpu_threads= and device= they were trained with; or train=True trains them$"),
            (dict(cpu_threads=1), r"^seeds 3-4 of .* are not stored: only seeds 0-2 of these inputs are stored for this "
                                  r"stack \(cpu, 1 torch thread\(s\)\); or train=True"),
            (dict(cpu_threads=1, train_size=64), r"are not stored: runs of this recipe on polarity are stored for "
                                                 r"other data: the full set \(data \w{8}\), not train_size=64, "
                                                 r"subsample_seed=0 \(data \w{8}\); or train=True trains them$"),
            (dict(cpu_threads=2, recipe=recipe.replace(lr=5e-4)),
             rf"^seeds 3-4 of polarity / .* / bert-default\[lr=0.0005,max_steps=2\] are not stored: the store holds no "
             rf"run of recipe bert-default\[lr=0.0005,max_steps=2\] \(\w{{8}}\) on polarity / .*, under any stack; "
             rf"recipes stored for them: bert-default\[lr=0.001,max_steps=2\] \({recipe.hash[:8]}\); or train=True")):
        with pytest.raises(ValueError, match=message):
            stabench.study(BUILTIN_SINGLE_TASK, tiny_model, asked.pop("recipe", recipe), [3, 4],
                           store=tmp_path / "s.sqlite", train=False, **asked)
    monkeypatch.delenv("STABENCH_STORE")  # (tests/conftest.py gives each test its own)
    with pytest.raises(ValueError, match=r"train=False reads stored runs only; it needs store= \(or \$STABENCH_STORE\) "
                                         r"and no recompute"):
        stabench.study(BUILTIN_SINGLE_TASK, tiny_model, recipe, 1, train=False)
    from stabench.store import StoreError

    with pytest.raises(StoreError, match="no results store at"):  # a misspelt path is not a new, empty store
        stabench.study(BUILTIN_SINGLE_TASK, tiny_model, recipe, 1, store=tmp_path / "typo.sqlite", train=False)
    assert not (tmp_path / "typo.sqlite").exists()
    assert trained == [0, 2]
    # seeds= as in a claim: text as on the command line, numpy counts; anything else is one error.
    def store_files():
        return [path.read_bytes() for path in sorted(tmp_path.glob("s.sqlite*"))]

    stored = store_files()
    renamed = recipe.replace(name="another-name")  # same content: read, and not renamed in the store
    for seeds, expected in (("0-2", [0, 1, 2]), ("2", [0, 1]), ("1,2", [1, 2]), (np.int64(3), [0, 1, 2]),
                            ((s for s in (2, 0)), [0, 2])):
        read = stabench.study(BUILTIN_SINGLE_TASK, tiny_model, renamed, seeds, store=tmp_path / "s.sqlite",
                              cpu_threads=1, train=False)
        assert [r.seed for r in read.results] == expected, seeds
    assert store_files() == stored and trained == [0, 2]
    for seeds in (0, 4.0, True, [1, 1], "0-100000000", [-1]):
        with pytest.raises(ValueError, match=r"^(study seeds=.* is invalid; expected a count >= 1|seeds .* are)"):
            stabench.study(BUILTIN_SINGLE_TASK, tiny_model, recipe, seeds, store=tmp_path / "s.sqlite", train=False)


def test_a_cpu_runs_key_holds_its_thread_count_and_a_gpu_runs_key_does_not(tiny_model):
    """On a CPU, 1 and 2 threads reduce floats in different orders and can end a run differently."""
    from stabench.environment import key_fields

    keys = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)  # restored by the autouse fixture
        prepared = prepare(BUILTIN_PAIR_TASK, tiny_model, "bert-default", seed=0)
        keys[threads] = prepared.key
        assert prepared.environment["cpu_threads"] == threads
    assert keys[1] != keys[2]
    gpu = {**prepared.environment, "device_kind": "cuda", "device_name": "NVIDIA H200"}
    assert "cpu_threads" not in key_fields(gpu) and key_fields({**gpu, "cpu_threads": 16}) == key_fields(gpu)


def test_layerwise_lr_decay_trains_and_traces_the_recipe_lr(tiny_model):
    """The traced lr is the recipe's (the head's), not the embeddings' decayed one."""
    recipe = get_recipe("bert-default", max_steps=4, trace_every=1, lr=1e-3, schedule="constant", warmup=0.0,
                        layerwise_lr_decay=0.5)
    result = run(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0)
    assert result.steps == 4 and result.trace["lr"] == [1e-3] * 4


@pytest.mark.parametrize("decay", [0.9, 0.3])
def test_any_layerwise_lr_decay_below_one_trains_each_depth_at_its_own_lr(tiny_model, monkeypatch, decay):
    from stabench import train

    built = []
    monkeypatch.setattr(train.AdamW, "for_recipe", classmethod(
        lambda cls, groups, recipe: built.append([dict(g) for g in groups]) or cls(groups, lr=recipe.lr)))
    fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=1, lr=1e-3,
                                                                  layerwise_lr_decay=decay), seed=0))
    lrs = {group["name"].split("/")[0]: group["lr"] for group in built[0]}
    assert lrs == pytest.approx({"embeddings": 1e-3 * decay ** 3, "layer.0": 1e-3 * decay ** 2,
                                 "layer.1": 1e-3 * decay, "pooler": 1e-3, "classifier": 1e-3})


def test_progress_is_reported_at_the_trace_points(tiny_model):
    seen = []
    result = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=6, trace_every=4),
                               seed=0), progress=lambda step, total: seen.append((step, total)))
    assert seen == [(step, 6) for step in result.trace["step"]] == [(1, 6), (4, 6), (6, 6)]


def test_a_run_that_predicts_one_class_counts_zero_for_the_others(tiny_model, monkeypatch):
    from stabench import train

    monkeypatch.setattr(train, "_predict", lambda model, encoded, *args, **kwargs: torch.zeros(len(encoded.labels),
                                                                                                dtype=torch.long))
    result = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=1), seed=0))
    assert result.prediction_counts == {"0": result.task["n_eval"], "1": 0} and result.collapsed
    assert result.trace["eval"][-1]["prediction_counts"] == [result.task["n_eval"], 0]


def test_gradient_norms_are_traced_for_the_trainable_layers_only(tiny_model):
    from stabench.train import GradNormTracer

    model = stabench.models.load_model(stabench.models.resolve(tiny_model), 2, 0.1)
    model.bert.embeddings.requires_grad_(False)  # frozen: no gradient to trace
    assert GradNormTracer(model).names == ["layer.0", "layer.1", "pooler", "classifier"]


def test_devices_are_checked_before_anything_runs(tiny_model, monkeypatch):
    from stabench.environment import resolve_device

    assert prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", **FAST), 0,
                   device=torch.device("cpu")).device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # one GPU, as far as stabench can tell
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match=r"^device 'cuda:1' is not available \(1 CUDA GPU\(s\): cuda:0..cuda:0\)$"):
        resolve_device("cuda:1")


def test_a_run_s_precision_is_recorded_and_keyed(tiny_model):
    """bf16 and tf32 change a run's numbers: the same recipe at another precision is another run."""
    keys = set()
    for precision in ("fp32", "bf16", "tf32"):
        prepared = prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", **FAST, precision=precision), 0,
                           device="cpu")
        assert prepared.environment["precision"] == precision == key_fields(prepared.environment)["precision"]
        keys.add(prepared.key)
    assert len(keys) == 3


@pytest.mark.parametrize("device", ["cpu:1", "mps", "tpu", "cuda:x"])
def test_a_device_stabench_cannot_train_on_is_named(device):
    from stabench.environment import resolve_device

    with pytest.raises(ValueError, match=rf"^device '{device}' is invalid; expected auto, cpu, cuda or cuda:N$"):
        resolve_device(device)
    assert resolve_device("cpu") == "cpu" and resolve_device("cpu:0") == "cpu:0"


@pytest.mark.parametrize("threads", [True, 0, -1, 1025, 2.0, "2"])
def test_a_thread_count_that_is_not_a_whole_number_from_1_to_1024_is_refused(threads):
    from stabench.environment import check_positive_count, torch_threads

    with pytest.raises(ValueError, match=rf"^cpu_threads={re.escape(repr(threads))} is invalid; expected an integer "
                                         rf"from 1 to 1024$"):
        check_positive_count(threads, "cpu_threads=")
    with pytest.raises(ValueError):
        with torch_threads(threads):
            pass
    check_positive_count(1)
    check_positive_count(1024)


@pytest.mark.parametrize("gpus, count, visible, error", [
    ("0,1", 2, None, None), ("GPU-8f2a,MIG-1c", 1, None, None),
    ("2,3", 2, "2,3", None),  # a job's allocation: the ids are the physical ones it lists
    ("0", 0, None, "'0' names GPUs, but no CUDA GPU is visible here; leave the option out to train on the CPU"),
    ("0,3", 2, None, "GPU 3 is not visible here; expected ids 0..1"),
    ("1,2", 2, None, "GPU 2 is not visible here; expected ids 0..1"),  # the first id past the last GPU
    ("0,2", 2, "2,3", "GPU 0 is outside CUDA_VISIBLE_DEVICES=2,3; expected ids from it: 2, 3"),
    ("a", 2, None, "GPU id 'a' is invalid; expected comma-separated indices such as 0,1 or GPU-/MIG- UUIDs"),
    ("0,", 2, None, "GPU id '' is invalid"),
])
def test_gpu_ids_that_cuda_would_not_show_a_worker_are_refused(monkeypatch, gpus, count, visible, error):
    """A worker pinned to an unknown id would see no GPU and quietly train on the CPU."""
    from stabench.environment import check_gpu_ids

    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if error is None:
        assert check_gpu_ids(gpus) == gpus.split(",")
    else:
        with pytest.raises(ValueError, match="^" + re.escape(error)):
            check_gpu_ids(gpus)


def _matmul_getters() -> list:
    """What libraries read: the legacy getters, or "raises" where torch refuses a mixed state."""
    values = []
    for get in (torch.get_float32_matmul_precision, lambda: torch.backends.cuda.matmul.allow_tf32):
        try:
            values.append(get())
        except RuntimeError:
            values.append("raises")
    return values


@pytest.mark.skipif(not hasattr(torch.backends, "fp32_precision"), reason="torch < 2.9 has no per-backend API")
@pytest.mark.parametrize("start", ["default", "legacy high", "per-backend tf32", "mkldnn bf16"])
def test_a_run_keeps_its_recipes_matmul_precision_whatever_the_process_set(tiny_model, start):
    """torch's deprecation warning advises ``torch.backends.cuda.matmul.fp32_precision = "tf32"``,
    after which its legacy getter raises: every run crashed.  Inside a run the recipe's precision
    holds (tf32 only when asked) and the getters work; after it, the process's settings are back
    and every getter that worked still gives what it gave (a first restore left them mixed)."""
    from stabench import train

    saved = train._matmul_settings()
    if start == "legacy high":
        torch.set_float32_matmul_precision("high")
    elif start == "per-backend tf32":
        torch.backends.cuda.matmul.fp32_precision = "tf32"
    elif start == "mkldnn bf16":
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        before, getters_before = train._matmul_settings(), _matmul_getters()
        for precision, expected in (("fp32", "ieee"), ("bf16", "ieee"), ("tf32", "tf32")):
            seen = set()
            run(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=2, precision=precision), seed=0,
                progress=lambda step, total: seen.add((torch.backends.cuda.matmul.fp32_precision,
                                                      torch.backends.mkldnn.matmul.fp32_precision,
                                                      *_matmul_getters())))
            legacy = "high" if expected == "tf32" else "highest"
            assert seen == {(expected, expected, legacy, expected == "tf32")}, precision
            after = train._matmul_settings()
            assert {k: after[k] for k in before} == before, precision
            assert [a if b != "raises" else b for a, b in zip(_matmul_getters(), getters_before)] == getters_before
    finally:
        train._restore_matmul_settings(saved)


def test_runs_stored_under_another_definition_of_the_same_data_are_named_so(tiny_model, tmp_path):
    """The same examples with another headline metric: the message said "stored for other data:
    the full set (data 5141bb92), not the full set (data 5141bb92)"."""
    rows = "".join(f"{'good' if i % 2 else 'bad'} film {i},{i % 2}\n" for i in range(40))
    (tmp_path / "notes.csv").write_text("text,label\n" + rows)
    recipe = get_recipe("bert-default", max_steps=2)

    def notes(metrics):
        return stabench.local_task("notes", tmp_path / "notes.csv", tmp_path / "notes.csv", "text", metrics=metrics)

    stabench.study(notes(("macro_f1", "accuracy")), tiny_model, recipe, 1, store=tmp_path / "s.sqlite", cpu_threads=1)
    stabench.register_task(notes(("accuracy", "macro_f1")), replace=True)  # as a later process would define it
    with pytest.raises(ValueError, match=r"are not stored: runs of this recipe on these data of notes are stored for "
                                         r"another definition of the task: its primary_metric macro_f1, not accuracy"):
        stabench.study(notes(("accuracy", "macro_f1")), tiny_model, recipe, 1, store=tmp_path / "s.sqlite",
                       cpu_threads=1, train=False)


def test_the_failure_verdict_is_on_accuracy_whatever_the_headline_metric(tiny_model, monkeypatch):
    """Mosbach et al.'s failed run: dev accuracy at or below the majority class's.  On a task headlined by MCC a
    run at 70 % accuracy (majority 50 %) has MCC 0.41, below 0.5, yet it has not failed."""
    from sklearn.metrics import matthews_corrcoef

    from stabench import train
    from stabench.tasks import Task

    texts = [f"{'good' if i % 2 else 'bad'} film {i}" for i in range(10)]
    labels = [i % 2 for i in range(10)]
    data = {"text": texts, "label": labels}
    task = Task("mcc-headline", "text", lambda: {"train": data, "validation": data}, metrics=("mcc", "accuracy"))
    original = train._predict

    def predict_with_three_errors(model, encoded, *args, **kwargs):
        original(model, encoded, *args, **kwargs)  # the real forward pass, then fixed predictions
        predicted = encoded.labels.clone()
        positives, negatives = (predicted == 1).nonzero().flatten(), (predicted == 0).nonzero().flatten()
        predicted[positives[:1]] = 0  # one false negative
        predicted[negatives[:2]] = 1  # two false positives
        return predicted

    monkeypatch.setattr(train, "_predict", predict_with_three_errors)
    result = run(task, tiny_model, get_recipe("bert-default", max_steps=2), seed=0)
    # TP=4, FN=1, TN=3, FP=2, by hand: accuracy 7/10, MCC (4*3 - 2*1) / sqrt(6*5*5*4).
    assert result.primary_metric == "mcc" and result.majority_accuracy == 0.5
    assert result.metrics["accuracy"] == pytest.approx(0.7)
    assert result.metrics["mcc"] == pytest.approx(10 / math.sqrt(600))
    assert result.metrics["mcc"] == pytest.approx(matthews_corrcoef(labels, [0, 1, 0, 1, 0, 1, 1, 1, 1, 0]))
    assert result.metrics["mcc"] <= result.majority_accuracy < result.metrics["accuracy"]  # the two verdicts differ
    assert result.failed is False


def test_gradient_clipping_bounds_what_the_optimizer_sees(tiny_model):
    """With the BERT update (no bias correction, no weight decay), each step moves a parameter by at most
    lr * |m| / eps, and |m| <= the clipped global norm: a clip of 1e-10 at eps 1e-6 keeps every parameter within
    3 * lr * 1e-4 of where it started in 3 steps, whereas unclipped Adam steps move it by about lr each."""
    def trained(grad_clip):
        recipe = get_recipe("bert-default", max_steps=3, lr=1e-3, schedule="constant", warmup=0.0,
                            weight_decay=0.0, dropout=0.0, grad_clip=grad_clip)
        result, model = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0), return_model=True)
        return result, torch.cat([p.detach().flatten() for p in model.parameters()])

    _, tiny = trained(1e-10)
    _, tinier = trained(1e-11)
    unclipped_result, unclipped = trained(None)
    bound = 2 * 3 * 1e-3 * 1e-10 / 1e-6  # both stay within half of it of the starting point
    assert (tiny - tinier).abs().max().item() <= bound
    assert (tiny - unclipped).abs().max().item() > 100 * bound
    # The trace records the norm before clipping, as the paper plots it: far above the clip.
    assert min(unclipped_result.trace["grad_norm_total"]) > 1e-6


# --------------------------------------------------------------------------------------
# What each optimizer step sees (mutation tests found these pinned only by the batched loop)
# --------------------------------------------------------------------------------------
def test_train_order_reshuffles_every_epoch_and_keeps_the_last_partial_batch():
    from stabench.data import train_order

    order = train_order(10, 9, 4, torch.Generator().manual_seed(0))  # batches of 4, 4, 2 per epoch, 3 epochs
    assert [len(batch) for batch in order] == [4, 4, 2] * 3
    epochs = [sum(order[i:i + 3], []) for i in (0, 3, 6)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 3


def test_the_run_seed_draws_the_data_order(tiny_model, monkeypatch):
    from stabench import data as data_lib

    orders, original = [], data_lib.train_order

    def recording(*args, **kwargs):
        orders.append(original(*args, **kwargs))
        return orders[-1]

    monkeypatch.setattr(data_lib, "train_order", recording)
    recipe = get_recipe("bert-default", max_steps=4, trace_every=2)
    for seed in (0, 0, 1):
        fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=seed))
    assert orders[0] == orders[1] and orders[0] != orders[2]


def test_layer_gradient_norms_are_traced_before_clipping(tiny_model):
    """reference.md: gradient norms were logged before clipping; a clip at 1e-10 would leave ~0."""
    recipe = get_recipe("bert-default", max_steps=3, trace_every=1, grad_clip=1e-10, dropout=0.0)
    result = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0))
    layers, totals = result.trace["grad_norm"], result.trace["grad_norm_total"]
    assert len(totals) == 3
    for i, total in enumerate(totals):
        assert total > 1e-6
        assert math.sqrt(sum(norms[i] ** 2 for norms in layers.values())) == pytest.approx(total, rel=1e-4)


def test_the_final_evaluation_is_on_the_dev_split(tiny_model):
    result = run(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=2), seed=0, train_size=64)
    assert result.task["n_train"] == 64 and result.task["n_eval"] == 256
    assert sum(result.prediction_counts.values()) == 256
    assert sum(result.trace["eval"][-1]["prediction_counts"]) == 256


def test_each_update_uses_the_scheduled_lr_and_the_globally_clipped_gradient(tiny_model, monkeypatch):
    from stabench.optim import AdamW

    seen, original = [], AdamW.step

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append((self.param_groups[0]["lr"],
                     float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))))
        return original(self, closure)

    monkeypatch.setattr(AdamW, "step", step)
    clip = 1e-3
    recipe = get_recipe("bert-default", max_steps=10, warmup=0.1, lr=1e-3, trace_every=1, grad_clip=clip)
    result = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0))
    # one warmup step: the first update at lr 0, then the linear decay (10 - t) / 9 * lr to 0
    assert [lr for lr, _ in seen] == pytest.approx([0.0] + [1e-3 * (10 - t) / 9 for t in range(1, 10)], abs=1e-12)
    for (_, norm), total in zip(seen, result.trace["grad_norm_total"], strict=True):
        assert norm == pytest.approx(min(total, clip), rel=1e-4)


def test_each_update_sees_only_its_own_steps_gradient(tiny_model, monkeypatch):
    """Losses zeroed after the first step leave zero gradients, unless an old one is kept."""
    from stabench.optim import AdamW

    seen, original_step = [], AdamW.step
    original_loss, calls = torch.nn.CrossEntropyLoss.forward, {"n": 0}

    def step(self, closure=None):
        seen.append(sum(float(p.grad.abs().sum()) for group in self.param_groups for p in group["params"]
                        if p.grad is not None))
        return original_step(self, closure)

    def zeroed(self, logits, labels):
        calls["n"] += 1
        loss = original_loss(self, logits, labels)
        return loss * 0.0 if calls["n"] >= 2 else loss

    monkeypatch.setattr(AdamW, "step", step)
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", zeroed)
    fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", max_steps=3, trace_every=1), seed=0))
    assert seen[0] > 0 and seen[1:] == [0.0, 0.0]


def test_a_script_reads_a_study_by_the_name_of_a_recipe_whose_runs_are_stored(tiny_model, tmp_path):
    """The CLI's --recipe took a claim file's own recipe name; stabench.study said unknown."""
    mine = get_recipe("bert-default", max_steps=2, name="mine@2e-3", lr=2e-3)
    store = tmp_path / "s.sqlite"
    trained = stabench.study(BUILTIN_PAIR_TASK, tiny_model, mine, 2, store=store, cpu_threads=1)
    read = stabench.study(BUILTIN_PAIR_TASK, tiny_model, "mine@2e-3", 2, store=store, cpu_threads=1, train=False)
    assert read.arm.recipe == mine and [r.key for r in read.results] == [r.key for r in trained.results]
    with stabench.Store(store) as opened:  # an open store does as well
        assert stabench.study(BUILTIN_PAIR_TASK, tiny_model, "mine@2e-3", 2, store=opened, cpu_threads=1,
                              train=False).results == trained.results
    with pytest.raises(ValueError, match=r"^unknown recipe 'mine@2e-4'"):
        stabench.study(BUILTIN_PAIR_TASK, tiny_model, "mine@2e-4", 2, store=store, cpu_threads=1, train=False)
    with pytest.raises(ValueError, match=r"^unknown recipe 'mine@2e-3'"):  # a name only a store knows
        stabench.study(BUILTIN_PAIR_TASK, tiny_model, "mine@2e-3", 2, store=tmp_path / "other.sqlite", cpu_threads=1)


def test_the_thread_count_hint_is_for_stacks_that_differ_in_their_thread_count_alone():
    """A run stored under other threads *and* another torch is not read by giving that thread count."""
    from types import SimpleNamespace

    from stabench.train import OtherStackWarning, warn_of_other_stacks

    prepared = SimpleNamespace(key="k", task_info={"name": "rte"}, model_info={"name": "m"}, seed=0,
                               recipe=SimpleNamespace(name="paper"), recipe_hash="h",
                               environment={"torch": "2.13.0", "cpu_threads": 1, "device_kind": "cpu"})
    both = SimpleNamespace(other_stacks=lambda *args: [{"cpu_threads": (4, 1), "torch": ("2.12.0", "2.13.0")}])
    with pytest.warns(OtherStackWarning) as caught:
        warn_of_other_stacks(prepared, both)
    message = str(caught[0].message)
    assert "another stack (cpu_threads 4, torch 2.12.0)" in message and "read with that count" not in message
    alone = SimpleNamespace(other_stacks=lambda *args: [{"cpu_threads": (4, 1)},
                                                         {"cpu_threads": (2, 1), "torch": ("2.12.0", "2.13.0")}])
    with pytest.warns(OtherStackWarning, match=r"\(those stored under cpu_threads 4 are read with that count: "):
        warn_of_other_stacks(prepared, alone)


def test_a_hook_that_unfroze_three_parameters_names_all_three_and_no_more():
    from stabench.train import check_unfrozen

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2))
    optimizer = torch.optim.SGD(model[2].parameters(), lr=0.1)
    with pytest.raises(ValueError) as raised:
        check_unfrozen(model, optimizer, "h")
    assert "hook 'h': 0.weight, 0.bias, 1.weight were frozen when the optimizer" in str(raised.value)
    assert "more" not in str(raised.value)
    optimizer = torch.optim.SGD([model[2].weight], lr=0.1)
    with pytest.raises(ValueError, match=r"hook 'h': 0\.weight, 0\.bias, 1\.weight and 1 more were frozen"):
        check_unfrozen(model, optimizer, "h")


def test_only_a_cpu_run_s_stack_label_names_its_thread_count():
    """On a GPU the thread count is no part of a run's key, so the label leaves it out."""
    from types import SimpleNamespace

    from stabench.train import stack_label

    assert stack_label(SimpleNamespace(device="cuda:0")) == "cuda:0"
    assert stack_label(SimpleNamespace(device="cpu")) == f"cpu, {torch.get_num_threads()} torch thread(s)"
