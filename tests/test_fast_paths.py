"""The fast paths train the same trajectory as the plain ones (fp32, CPU, the tiny model).

Throughput levers are only worth having if they leave the science alone: the multi-tensor
AdamW must follow torch's per-parameter AdamW, bucketed padding must not change what the
model sees (padding is masked), and the benchmark's hand-written loops must run exactly the
computation that ``fine_tune`` runs, or their timings compare different things.
"""
from __future__ import annotations

import importlib.util
import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stabench import data as data_lib
from stabench import models
from stabench.batched import SeedGroup
from stabench.optim import AdamW, decay_param_groups, no_decay_names
from stabench.recipes import get_recipe
from stabench.tasks import BUILTIN_PAIR_TASK, load_task_data
from stabench.train import compiled_forward, fine_tune, prepare

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
# vmap has no batching rule for the CPU SDPA kernel and loops over the seeds instead (correct, slower)
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and a loaded CPU stalls multi-threaded kernels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location("stabench_benchmark_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _batches(tiny_model: str, steps: int, batch_size: int = 16, pad_to_multiple_of: int | None = None):
    tokenizer = models.load_tokenizer(models.resolve(tiny_model))
    train, _ = data_lib.encode(load_task_data(BUILTIN_PAIR_TASK), tokenizer, 128)
    order = data_lib.train_order(len(train), steps, batch_size, torch.Generator().manual_seed(0))
    return [data_lib.collate(train, indices, tokenizer.pad_token_id, pad_to_multiple_of) for indices in order]


def _train(tiny_model: str, make_optimizer, batches, seed: int = 0):
    torch.manual_seed(seed)
    model = models.load_model(models.resolve(tiny_model), 2, dropout=0.1)
    model.train()
    optimizer = make_optimizer(decay_param_groups(model, 0.01, 1e-3))
    losses = []
    for batch in batches:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()]


def test_multi_tensor_adamw_follows_torch_per_parameter_adamw_on_the_model(tiny_model):
    """stabench's AdamW in torch's style == torch.optim.AdamW(foreach=False), step by step."""
    batches = _batches(tiny_model, steps=10)
    ours, our_params = _train(tiny_model, lambda groups: AdamW(groups, lr=1e-3, eps=1e-6, bias_correction=True,
                                                               style="torch"), batches)
    theirs, their_params = _train(tiny_model, lambda groups: torch.optim.AdamW(groups, lr=1e-3, eps=1e-6,
                                                                             foreach=False), batches)
    assert ours[0] == theirs[0]  # same init, same batch, same dropout masks
    assert ours == pytest.approx(theirs, abs=1e-5, rel=1e-5)
    assert max(ours) - min(ours) > 1e-3  # the run moved: the comparison is not vacuous
    for a, b in zip(our_params, their_params):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bucketed_padding_gives_the_dynamic_padding_trajectory(tiny_model):
    """pad_to_multiple_of only adds masked positions: same losses and gradient norms through fine_tune.

    Dropout is off: its masks are drawn per padded position, so with dropout the two runs would
    draw different (equally valid) masks.
    """
    base = get_recipe("bert-default", max_steps=12, trace_every=4, lr=1e-3, dropout=0.0)
    dynamic = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, base, seed=0))
    bucketed = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, base.replace(pad_to_multiple_of=32), seed=0))
    lengths = {b["input_ids"].shape[1] for b in _batches(tiny_model, 12)}
    assert any(n % 32 for n in lengths)  # the buckets really add padding
    assert bucketed.trace["loss"] == pytest.approx(dynamic.trace["loss"], abs=1e-5)
    assert max(dynamic.trace["loss"]) - min(dynamic.trace["loss"]) > 1e-3
    for layer, norms in dynamic.trace["grad_norm"].items():
        assert bucketed.trace["grad_norm"][layer] == pytest.approx(norms, rel=1e-4, abs=1e-7)
    assert bucketed.metrics["accuracy"] == dynamic.metrics["accuracy"]


def _encoded(tiny_model: str):
    tokenizer = models.load_tokenizer(models.resolve(tiny_model))
    return data_lib.encode(load_task_data(BUILTIN_PAIR_TASK), tokenizer, 128)[0], tokenizer.pad_token_id


def test_seeds_in_a_batched_group_train_like_solo_runs_and_independently(tiny_model):
    """Without dropout, each seed of a vmapped group follows its own fine_tune trajectory."""
    recipe = get_recipe("bert-default", max_steps=8, trace_every=4, lr=1e-3, dropout=0.0)
    solo = {seed: fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=seed)).trace["loss"]
            for seed in (0, 1)}
    train, pad_id = _encoded(tiny_model)
    source = models.resolve(tiny_model)
    group = SeedGroup(source, 2, recipe, [0, 1], total_steps=8).train(train, pad_id)
    alone = SeedGroup(source, 2, recipe, [1], total_steps=8).train(train, pad_id)
    assert group.shape == (8, 2)
    assert group[:, 0].tolist() == pytest.approx(solo[0], abs=1e-5)
    assert group[:, 1].tolist() == pytest.approx(solo[1], abs=1e-5)
    assert alone[:, 0].tolist() == pytest.approx(group[:, 1].tolist(), abs=1e-5)  # alone == in a group
    assert max(abs(a - b) for a, b in zip(solo[0], solo[1])) > 1e-3  # the seeds really differ


def test_a_batched_group_follows_the_recipes_token_types(tiny_model):
    """Without token types every token is type 0 in a group too, whatever the encoding holds."""
    recipe = get_recipe("bert-default", max_steps=4, lr=1e-3, dropout=0.0, token_types=False)
    solo = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, seed=0)).trace["loss"]
    train, pad_id = _encoded(tiny_model)
    assert train.token_type_ids is not None and any(int(t.max()) for t in train.token_type_ids)
    source = models.resolve(tiny_model)
    untyped = SeedGroup(source, 2, recipe, [0], total_steps=4).train(train, pad_id)[:, 0].tolist()
    typed = SeedGroup(source, 2, recipe.replace(token_types=True), [0], total_steps=4).train(train, pad_id)[:, 0]
    assert untyped == pytest.approx(solo, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(untyped, typed.tolist())) > 1e-4  # the types really matter


@pytest.mark.parametrize("field", [dict(mixout=0.1), dict(reinit_layers=1), dict(layerwise_lr_decay=0.9),
                                   dict(compile="default"), dict(hook="my-hook")])
def test_a_batched_group_refuses_what_it_would_not_apply(tiny_model, field):
    """A group builds its replicas itself: an intervention or hook would silently not happen."""
    with pytest.raises(ValueError, match=rf"^recipe field {next(iter(field))} is not supported in a batched seed "
                                         rf"group; train those seeds one at a time$"):
        SeedGroup(models.resolve(tiny_model), 2, get_recipe("bert-default", **field), [0], total_steps=2)


def test_a_batched_group_draws_independent_dropout_and_clips_per_seed(tiny_model):
    recipe = get_recipe("bert-default", max_steps=4, lr=1e-3)  # dropout 0.1
    train, pad_id = _encoded(tiny_model)
    twins = SeedGroup(models.resolve(tiny_model), 2, recipe, [3, 3], total_steps=4)
    losses = twins.train(train, pad_id)
    assert losses[0, 0] != losses[0, 1]  # same weights and batch, different dropout masks
    for p in twins.params.values():  # seed 0 gets a huge gradient, seed 1 a small one
        p.grad = torch.stack([torch.full_like(p[0], 10.0), torch.full_like(p[1], 1e-4)])
    before = twins.clip_(1.0)
    after = [math.sqrt(sum(float(p.grad[i].pow(2).sum()) for p in twins.params.values())) for i in (0, 1)]
    assert before[0] > 1 > before[1]
    assert after[0] == pytest.approx(1.0, rel=1e-4) and after[1] == pytest.approx(float(before[1]), rel=1e-4)


def test_a_batched_group_pads_seeds_to_one_length_with_masked_padding_and_needs_equal_batches(tiny_model):
    """Across seeds, the shorter batch is padded with the pad id (which need not be 0: RoBERTa's is 1)
    under a mask of 0, and token types of 0; seeds with unequal batch sizes are refused."""
    train, _ = _encoded(tiny_model)
    group = SeedGroup(models.resolve(tiny_model), 2, get_recipe("bert-default", token_types=True), [0, 1],
                      total_steps=1)
    by_length = sorted(range(len(train)), key=lambda i: len(train.input_ids[i]))
    short, long = by_length[:2], by_length[-2:]
    assert len(train.input_ids[short[-1]]) < len(train.input_ids[long[0]])
    batch = group.collate(train, [short, long], pad_id=7)
    length = max(len(train.input_ids[i]) for i in long)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 2, length)
    for row, i in enumerate(short):
        n = len(train.input_ids[i])
        assert batch["attention_mask"][0, row].tolist() == [1] * n + [0] * (length - n)
        assert batch["input_ids"][0, row, n:].tolist() == [7] * (length - n)
        assert batch["token_type_ids"][0, row, n:].tolist() == [0] * (length - n)
    with pytest.raises(ValueError, match="equal batch sizes"):
        group.collate(train, [short, long[:1]], pad_id=0)


def test_a_batched_group_keeps_biases_and_norms_out_of_weight_decay(tiny_model):
    source = models.resolve(tiny_model)
    group = SeedGroup(source, 2, get_recipe("bert-default", weight_decay=0.01), [0, 1], total_steps=2)
    names = {id(p): name for name, p in group.params.items()}
    decay = {g["name"]: (g["weight_decay"], {names[id(p)] for p in g["params"]}) for g in group.optimizer.param_groups}
    exempt = no_decay_names(models.load_model(source, 2, 0.1))
    assert exempt and decay["no_decay"] == (0.0, exempt)
    assert decay["decay"] == (0.01, set(group.params) - exempt)


def test_benchmark_minimal_loop_is_fine_tune_without_the_harness(tiny_model, throughput):
    """The loop the benchmark calls 'minimal' computes bit for bit what fine_tune computes."""
    sb = throughput.import_stabench()
    ctx = throughput.make_context(sb, tiny_model, "cpu", batch_size=16, seq_len="dist", max_length=64)
    harness = throughput.measure(ctx, throughput.parse_setting("stabench"), warmup=10, steps=10)
    minimal = throughput.measure(ctx, throughput.parse_setting("minimal"), warmup=10, steps=10)
    assert len(harness.losses) == len(minimal.losses) == 20
    assert harness.losses == minimal.losses  # same init, batches, dropout masks and maths (CPU, same threads)
    assert harness.steps == minimal.steps == 10 and harness.steps_per_s > 0 and minimal.steps_per_s > 0
    # the plain loop with stabench's optimizer differs only in how clip_grad_norm_ sums: within rounding
    plain = throughput.measure(ctx, throughput.parse_setting("plain+mt-opt"), warmup=10, steps=10)
    assert plain.losses == pytest.approx(minimal.losses, abs=1e-5)
    eager = throughput.measure(ctx, throughput.parse_setting("stabench+eager"), warmup=10, steps=10)
    assert eager.attn == "eager" and harness.attn != "eager"
    assert eager.losses == pytest.approx(harness.losses, abs=1e-4)
    batched = throughput.measure(ctx, throughput.parse_setting("batched+seeds2"), warmup=10, steps=10)
    assert len(batched.losses) == 20 and batched.steps_per_s > 0


def test_benchmark_settings_parse_and_cuda_only_levers_are_flagged(throughput):
    s = throughput.parse_setting("stabench+bf16+eager+bucket16")
    assert (s.loop, s.precision, s.attn, s.bucket, s.needs_cuda) == ("stabench", "bf16", "eager", 16, None)
    assert throughput.parse_setting("plain").host_sync and not throughput.parse_setting("plain+nosync").host_sync
    assert throughput.parse_setting("plain+mt-opt").mt_opt
    compiled = throughput.parse_setting("stabench+compile")
    assert (compiled.compile, compiled.bucket, compiled.needs_cuda) == ("default", throughput.DEFAULT_BUCKET, None)
    assert throughput.parse_setting("stabench+tf32").needs_cuda == "tf32"
    assert throughput.parse_setting("stabench+bf16+cudagraphs").compile == "reduce-overhead"
    assert throughput.parse_setting("stabench+bf16+cudagraphs").needs_cuda == "CUDA graphs"
    assert throughput.parse_setting("batched").seeds == 4 and throughput.parse_setting("batched+seeds8").seeds == 8
    for bad in ("nope", "compile", "minimal+nosync", "minimal+compile", "stabench+fp16", "plain+bucketX",
                "stabench+seeds4"):
        with pytest.raises(ValueError):
            throughput.parse_setting(bad)


def test_training_step_and_benchmark_import_without_datasets():
    """GPU images may lack ``datasets``: only loading a task needs it."""
    code = ("import sys; sys.modules['datasets'] = None\n"
            "import stabench.train, stabench.plugin, stabench.batched\n"
            "sys.path.insert(0, 'benchmarks'); import throughput; throughput.import_stabench()\n"
            "from stabench.tasks import load_task_data\n"
            "try:\n    load_task_data('same-number')\nexcept ImportError as error:\n    print('needs', error.name)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "needs datasets"


def test_synthetic_lengths_follow_the_asked_distribution(throughput):
    generator = torch.Generator().manual_seed(0)
    lengths = throughput.sequence_lengths("dist", 2000, 128, generator)
    assert min(lengths) >= throughput.DIST_MIN and max(lengths) <= 128
    median = sorted(lengths)[len(lengths) // 2]
    assert abs(median - throughput.DIST_MEDIAN) <= 4
    assert throughput.sequence_lengths("64", 5, 128, generator) == [64] * 5
    assert 50 < sum(lengths) / len(lengths) < 62  # lognormal mean 48 * exp(0.6**2 / 2) ~ 57


@pytest.mark.skipif(torch.__version__ < "2.5", reason="compile on a CPU needs torch 2.5")
def test_compiled_step_follows_the_eager_trajectory(tiny_model):
    """The recipe's ``compile`` (torch.compile of the training forward and backward) trains the
    eager trajectory: fp32, dropout off, since compiled dropout draws its own masks.  On CUDA,
    "reduce-overhead" is this same step replayed as CUDA graphs."""
    recipe = get_recipe("bert-default", max_steps=12, dropout=0.0, pad_to_multiple_of=32, trace_every=1)
    eager = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, 0))
    compiled = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe.replace(compile="default"), 0))
    assert compiled.recipe["compile"] == "default" and compiled.key != eager.key
    assert compiled.trace["loss"] == pytest.approx(eager.trace["loss"], abs=1e-5)
    for layer, norms in eager.trace["grad_norm"].items():
        assert compiled.trace["grad_norm"][layer] == pytest.approx(norms, rel=1e-3, abs=1e-7)
    assert compiled.prediction_counts == eager.prediction_counts


def test_compile_on_a_cpu_under_torch_2_4_is_refused_in_one_line(tiny_model, monkeypatch):
    """Its kernels turned on flush-to-zero for the worker: every later run there computed otherwise."""
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.4.1+cu121"))
    with pytest.raises(ValueError, match=r"^compile='default' on a CPU needs torch 2\.5 or newer, not 2\.4\.1\+cu121: "
                                         r"torch 2\.4's compiled CPU kernels flush subnormal floats to zero for the "
                                         r"whole process, .*; leave compile out, or upgrade torch$"):
        prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", compile="default"), 0, device="cpu")
    prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default"), 0, device="cpu")  # eager runs as ever


def test_cuda_graphs_only_where_the_mode_and_device_ask_for_them(tiny_model):
    model = models.load_model(models.resolve(tiny_model), 2, dropout=0.1)
    assert compiled_forward(model, None, torch.device("cpu")) == (model, False)
    forward, graphs = compiled_forward(model, "reduce-overhead", torch.device("cpu"))
    assert forward is not model and not graphs  # inductor on CPU, no graphs to replay
    assert compiled_forward(model, "reduce-overhead", torch.device("cuda"))[1]
    assert not compiled_forward(model, "default", torch.device("cuda"))[1]


def test_bf16_evaluation_recomputes_close_calls_in_fp32(tiny_model):
    """bf16 evaluation gives the fp32 predictions: close calls are recomputed in fp32, clear ones kept."""
    from stabench.train import fp32_where_close

    model = models.load_model(models.resolve(tiny_model), 2, dropout=0.1).eval()
    batch = _batches(tiny_model, steps=1, batch_size=64)[0]
    batch.pop("labels")
    with torch.no_grad():
        exact = model(**batch).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rough = model(**batch).logits.float()
        # even rows: clear calls, kept as bf16 computed them; odd rows: close calls (made wrong on purpose)
        rough[::2, 0] += 10.0
        exact[::2, 0] += 10.0
        rough[1::2, 1] = rough[1::2, 0] + 1e-3
        checked = fp32_where_close(model, batch, rough)
    assert torch.equal(checked[::2], rough[::2])
    assert torch.allclose(checked[1::2], exact[1::2], atol=1e-5)
    assert torch.equal(checked.argmax(-1), exact.argmax(-1))


def test_step_cost_counts_the_flops_torch_counts(throughput):
    """The benchmark's FLOPs per step (for TFLOP/s and the steps/s bound) against torch's own
    FLOP counter on a real forward + backward; its parameter count against the model's."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=500, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=80, num_labels=3, attn_implementation="eager")
    model = BertForSequenceClassification(config)
    lengths = [17, 40, 33]
    counter = FlopCounterMode(display=False)
    with counter:
        for n in lengths:  # one example at a time: unpadded tokens, as the cost model counts them
            model(input_ids=torch.randint(5, 500, (1, n)), labels=torch.tensor([1])).loss.backward()
    cost = throughput.step_cost(config.to_dict(), lengths, batch_size=len(lengths))
    assert cost["parameters"] == sum(p.numel() for p in model.parameters())
    # the pooler and classifier (per sequence, not per token) are left out: well under 5 %
    assert cost["flops_per_step"] == pytest.approx(counter.get_total_flops(), rel=0.05)
    assert cost["flops_per_step"] <= counter.get_total_flops()
    assert cost["tokens_per_step"] == sum(lengths)
    assert throughput.bound_steps_per_s(cost, None, 3.0) is None
    bound = throughput.bound_steps_per_s(cost, 100.0, 2.0)
    assert 1 / bound == pytest.approx(cost["flops_per_step"] / 100e12 + cost["param_bytes_per_step"] / 2e12)


def test_benchmark_runs_end_to_end_at_toy_size(throughput, tmp_path, capsys):
    """What CI can run of the benchmark: the quick toy model, the loops, a K=2 worker row and
    the JSON record (a reduced version of `python benchmarks/throughput.py --quick`)."""
    out = tmp_path / "bench.json"
    sigterm = signal.getsignal(signal.SIGTERM)
    record = throughput.main(["--quick", "--device", "cpu", "--settings", "plain,minimal,stabench,stabench+bf16",
                              "--steps", "10", "--repeats", "1", "--workers", "2", "--overhead-steps", "30",
                              "--json", str(out)])
    assert signal.getsignal(signal.SIGTERM) is sigterm  # the script's own handler stays out of a caller's process
    printed = capsys.readouterr().out
    assert record["complete"] and json.loads(out.read_text()) == json.loads(json.dumps(record))
    rows = {r["setting"]: r for r in record["results"]}
    assert set(rows) == {"plain", "minimal", "stabench", "stabench+bf16"}
    assert rows["plain"]["ratio_vs_plain"] == 1.0
    for r in rows.values():
        assert r["steps_per_s"] > 0
        assert r["model_tflops"] == pytest.approx(r["steps_per_s"] * record["step_cost"]["flops_per_step"] / 1e12)
    [workers] = record["workers"]
    assert workers["k"] == 2 and len(workers["per_worker_steps_per_s"]) == 2 and not workers["mps"]
    check = record["overhead_check"]
    assert (check["segments"], check["steps"], check["basis"]) == (3, 30, "cpu_time")
    assert check["steps_compared"] == 40 and check["same_loss_trajectory_max_abs_diff"] == 0
    assert check["verdict"] == "inconclusive" and check["cpu_time"]["overhead_pct_ci95"] is None  # 3 < 10 pairs
    assert "harness overhead verdict" in printed and "TFLOP of model FLOPs" in printed


def _segments(harness_over_minimal: list[float], minimal_s: float = 0.8) -> dict:
    """Interleaved segments whose fine_tune time is the given multiple of the minimal loop's."""
    segments = [{"steps": 10, "stabench": (r * minimal_s, r * minimal_s), "minimal": (minimal_s, minimal_s)}
                for r in harness_over_minimal]
    return {"segments": segments, "same_loss_trajectory_max_abs_diff": 0.0, "steps_compared": 10 * len(segments)}


def test_overhead_verdict_needs_the_whole_interval_on_one_side_of_the_limit(throughput):
    steady = throughput.overhead_check(_segments([1.01, 1.02, 1.00, 1.03, 1.01, 1.02] * 5), "cpu")
    assert steady["verdict"] == "within" and steady["within_5pct"]
    low, high = steady["cpu_time"]["overhead_pct_ci95"]
    assert low <= steady["overhead_pct"] <= high < 5
    assert steady["overhead_pct"] == pytest.approx(100 * (sum([1.01, 1.02, 1.00, 1.03, 1.01, 1.02]) / 6 - 1))
    slow = throughput.overhead_check(_segments([1.19, 1.21, 1.20, 1.22, 1.18] * 5), "cuda")
    assert slow["basis"] == "wall" and slow["verdict"] == "NOT within" and not slow["within_5pct"]
    assert slow["wall"]["overhead_pct_ci95"][0] > 5
    noisy = throughput.overhead_check(_segments([0.8, 1.3, 0.9, 1.25, 1.05, 0.85, 1.2] * 2), "cpu")
    assert noisy["verdict"] == "inconclusive" and not noisy["within_5pct"]
    low, high = noisy["cpu_time"]["overhead_pct_ci95"]
    assert low < 5 < high
    few = throughput.overhead_check(_segments([1.01, 1.02, 1.00]), "cpu")  # too few pairs for an interval
    assert few["verdict"] == "inconclusive" and few["cpu_time"]["overhead_pct_ci95"] is None
    exact = throughput.overhead_check(_segments([1.02] * 20), "cpu")  # no spread: no interval, no NaN in the record
    assert exact["verdict"] == "inconclusive" and exact["cpu_time"]["overhead_pct_ci95"] is None


def test_interleaved_loops_keep_their_own_dropout_masks(tiny_model, throughput):
    """Taking turns with the minimal loop leaves fine_tune's trajectory as it is alone (dropout on)."""
    sb = throughput.import_stabench()
    ctx = throughput.make_context(sb, tiny_model, "cpu", batch_size=16, seq_len="dist", max_length=64)
    alone = throughput.measure(ctx, throughput.parse_setting("stabench"), warmup=10, steps=20)
    interleaved = throughput.interleaved_overhead(ctx, warmup=10, steps=20)
    assert interleaved["same_loss_trajectory_max_abs_diff"] == 0 and interleaved["steps_compared"] == 30
    assert [seg["last_step"] for seg in interleaved["segments"]] == [20, 30]
    assert [seg["minimal_steps"] for seg in interleaved["segments"]] == [seg["steps"] for seg in interleaved["segments"]]
    with pytest.raises(ValueError, match="warmup=5 and steps=20 must be positive multiples of 10"):
        throughput.interleaved_overhead(ctx, warmup=5, steps=20)
    assert all(seg["stabench"][0] > 0 and seg["minimal"][0] > 0 for seg in interleaved["segments"])
    assert interleaved["losses"] == alone.losses
