#!/usr/bin/env python
"""Optimizer steps/s of stabench's training step, lever by lever, against a plain loop.

Every figure is measured in this process (the K-worker rows in K worker subprocesses timed
together) on the same synthetic batches of a randomly initialised BERT, so the *ratios* hold
even on a shared machine.  Each row is a setting ``<loop>[+modifier...]``:

loops
  plain       a typical script: fp32, ``torch.optim.AdamW(foreach=False)``, ``loss.item()``
              every step, default clipping, no tracing, one seed at a time.  The baseline.
  minimal     stabench's maths without the harness, hand-written: stabench's AdamW (fused kernel),
              foreach clipping, the recipe's scheduler, no tracing, no host sync of its own.  The bar for
              "the harness adds no overhead"; its losses are checked against ``stabench``'s.
  stabench    ``stabench.train.fine_tune`` itself (collate, forward, backward, gradient-norm
              trace every 10 steps, clipping, AdamW, scheduler, finiteness check), timed
              between two of its trace points through its ``progress`` callback.
  batched     several seeds as one vmapped model (``stabench.batched.SeedGroup``); its steps/s
              are seed-steps/s (seeds x steps / s), comparable with the K-worker aggregate.
modifiers
  fp32 | tf32 | bf16   precision as in stabench recipes (tf32 needs CUDA; bf16 = autocast)
  eager | sdpa         attention implementation (the recipe's ``attention``; default: transformers')
  compile              stabench loop with the recipe's ``compile="default"`` (torch.compile)
  cudagraphs           stabench loop with ``compile="reduce-overhead"``: CUDA graphs (CUDA only)
  bucket | bucketN     pad each batch to a multiple of N tokens (default 32)
  mt-opt               plain loop with stabench's AdamW (fused kernel)
  nosync               plain loop without the per-step ``loss.item()``
  seedsN               batched loop: N seeds in the group (default 4)

The timed window is steps W+1..W+N of a run of W+N steps (W = --warmup), so model loading,
first-step allocations and compilation stay outside it.

The harness-overhead check (--overhead-steps) runs fine_tune and the minimal loop taking turns
every 10 steps on the same batches, each on its own random stream, and reports fine_tune's time
over the minimal loop's with a 95 % bootstrap interval over the paired segments: "within 5%"
only when the whole interval is under 5 %.  Batches are synthetic (random token
ids, lengths from --seq-len), so neither ``datasets`` nor the hub is needed.

Each row also gives TFLOP/s of model FLOPs (``step_cost``).  With the device's ceilings
(``--peak-tflops``, ``--peak-tbps``) the record gives a bound on steps/s that no loop can
beat without changing the arithmetic while its kernels run one after another (one process,
or processes time-sliced without MPS): the matrix work at the peak rate plus AdamW's and
clipping's pass over the fp32 parameters, gradients and moments at the peak bandwidth.

    python benchmarks/throughput.py --quick --json benchmarks/results/cpu-quick.json
    python benchmarks/throughput.py --model-config large --batch-size 16 --seq-len 128 --steps 100 \\
        --workers 1,2,4,8 --json benchmarks/results/h200-large.json
    # a short GPU check (a few minutes): one round, fewer steps, the main levers
    python benchmarks/throughput.py --model-config large --steps 30 --repeats 1 --workers 1,4 \\
        --settings plain,minimal,stabench,stabench+tf32,stabench+bf16,stabench+bf16+cudagraphs,batched+seeds4+bf16
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import importlib.metadata
import io
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never wait on the hub

import torch  # noqa: E402
import transformers  # noqa: E402

MODEL_CONFIGS = {
    # name: (layers, hidden, heads, intermediate); vocabulary 30522 as bert-*-uncased
    "toy": (2, 64, 2, 256),
    "tiny": (2, 128, 2, 512),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}
LOOPS = ("plain", "minimal", "stabench", "batched")
DEFAULT_SETTINGS = ("plain", "plain+mt-opt", "plain+nosync", "minimal", "stabench", "stabench+eager",
                    "stabench+tf32", "stabench+bf16", "stabench+tf32+bucket", "stabench+tf32+compile",
                    "stabench+tf32+cudagraphs", "stabench+bf16+cudagraphs", "batched+seeds4+tf32", "batched+seeds4+bf16")
# --quick leaves out compile: inductor takes ~1.5 min per shape on a 2-core CPU (ask for it by name).
QUICK_SETTINGS = ("plain", "plain+mt-opt", "plain+nosync", "minimal", "stabench", "stabench+eager",
                  "stabench+tf32", "stabench+bf16", "stabench+bucket", "stabench+tf32+cudagraphs", "batched+seeds2")
DEFAULT_BUCKET = 32
TRACE_EVERY = 10  # the recipe default; the stabench loop is timed between trace points
DIST_MEDIAN, DIST_SIGMA, DIST_MIN = 48, 0.6, 8  # --seq-len dist: GLUE-pair-like token lengths
POOL_BATCHES = 32  # synthetic training examples = batch size x this (full batches only)
EVAL_EXAMPLES = 32  # fine_tune evaluates at the end (outside the timed window); keep it cheap
WORKER_PREFIX = "@@stabench-bench "


# --- stabench imports (real code paths; no `datasets` needed) ------------------------------

def import_stabench() -> types.SimpleNamespace:
    """The stabench modules the step uses (none of them needs ``datasets``, which GPU images may lack)."""
    from stabench import batched, data, environment, models, optim, recipes, train
    from stabench.tasks import Task, TaskData
    return types.SimpleNamespace(batched=batched, data=data, environment=environment, models=models, optim=optim,
                                 recipes=recipes, train=train, Task=Task, TaskData=TaskData)


# --- settings ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    loop: str
    precision: str = "fp32"
    attn: str | None = None  # None: transformers' default for the model
    bucket: int | None = None  # pad_to_multiple_of
    mt_opt: bool = False  # plain loop: stabench's AdamW instead of torch's per-parameter loop
    host_sync: bool = False  # loss.item() every step
    seeds: int = 1  # batched loop: seeds in the vmapped group
    compile: str | None = None  # stabench loop: the recipe's torch.compile mode

    @property
    def needs_cuda(self) -> str | None:
        if self.precision == "tf32":
            return "tf32"
        if self.compile == "reduce-overhead":
            return "CUDA graphs"
        return None


def parse_setting(text: str) -> Setting:
    loop, *mods = [part.strip() for part in text.strip().split("+")]
    if loop not in LOOPS:
        raise ValueError(f"setting {text!r}: unknown loop {loop!r}; expected one of {', '.join(LOOPS)}")
    fields: dict = {"host_sync": loop == "plain"}
    for mod in mods:
        if mod in ("fp32", "tf32", "bf16"):
            fields["precision"] = mod
        elif mod in ("eager", "sdpa"):
            fields["attn"] = mod
        elif mod.startswith("bucket"):
            size = mod[len("bucket"):]
            if size and not size.isdigit():
                raise ValueError(f"setting {text!r}: {mod!r} should be bucket or bucket<N>")
            fields["bucket"] = int(size) if size else DEFAULT_BUCKET
        elif mod in ("compile", "cudagraphs") and loop == "stabench":
            fields["compile"] = "default" if mod == "compile" else "reduce-overhead"
        elif mod == "mt-opt" and loop == "plain":
            fields["mt_opt"] = True
        elif mod == "nosync" and loop == "plain":
            fields["host_sync"] = False
        elif mod.startswith("seeds") and mod[len("seeds"):].isdigit() and loop == "batched":
            fields["seeds"] = int(mod[len("seeds"):])
        else:
            raise ValueError(f"setting {text!r}: unknown modifier {mod!r} for loop {loop!r}")
    if fields.get("compile") and "bucket" not in fields:
        fields["bucket"] = DEFAULT_BUCKET  # shapes repeat, so compiled graphs are reused
    if loop == "batched":
        fields.setdefault("seeds", 4)
    return Setting(name=text.strip(), loop=loop, **fields)


# --- synthetic data and model --------------------------------------------------------------

@dataclasses.dataclass
class Context:
    """Everything shared by the measurements: model folder, synthetic splits, device."""

    sb: types.SimpleNamespace
    model_dir: str
    device: torch.device
    batch_size: int
    max_length: int
    train: object  # stabench.data.Encoded
    eval: object
    task_data: object  # stabench.tasks.TaskData (splits are never read: encode is redirected)
    source: object  # stabench.models.ModelSource
    pad_id: int = 0


def sequence_lengths(spec: str, n: int, max_length: int, generator: torch.Generator) -> list[int]:
    if spec == "dist":
        normal = torch.randn(n, generator=generator, dtype=torch.float64)
        lengths = torch.exp(math.log(DIST_MEDIAN) + DIST_SIGMA * normal).round().clamp(DIST_MIN, max_length)
        return [int(x) for x in lengths]
    return [int(spec)] * n


def synthetic_split(sb, n: int, seq_len: str, max_length: int, vocab_size: int, seed: int):
    """Sentence pairs as token ids: [CLS] a [SEP] b [SEP], random ids, balanced random labels."""
    generator = torch.Generator().manual_seed(seed)
    cls_id, sep_id, first_word = 2, 3, 5  # the ids of the benchmark tokenizer's special tokens
    input_ids, token_types = [], []
    for length in sequence_lengths(seq_len, n, max_length, generator):
        length = max(length, 5)
        a = (length - 3) // 2
        b = length - 3 - a
        words = torch.randint(first_word, vocab_size, (a + b,), generator=generator)
        input_ids.append(torch.cat([torch.tensor([cls_id]), words[:a], torch.tensor([sep_id]), words[a:],
                                    torch.tensor([sep_id])]))
        token_types.append(torch.cat([torch.zeros(a + 2, dtype=torch.long), torch.ones(b + 1, dtype=torch.long)]))
    labels = (torch.arange(n) % 2)[torch.randperm(n, generator=generator)]
    return sb.data.Encoded(tuple(input_ids), tuple(token_types), labels)


def build_model_dir(sb, path: str, config_name: str, seed: int = 0) -> str:
    """A randomly initialised BertForSequenceClassification (2 labels) and a tokenizer, saved."""
    layers, hidden, heads, intermediate = MODEL_CONFIGS[config_name]
    config = transformers.BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=heads, intermediate_size=intermediate,
                                     max_position_embeddings=512, num_labels=2)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[chr(c) for c in range(ord("a"), ord("z") + 1)]]
    vocab += [f"[unused{i}]" for i in range(config.vocab_size - len(vocab))]  # as BERT's: a tokenizer of its size
    tokenizer = sb.models.word_piece_tokenizer(vocab)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = transformers.BertForSequenceClassification(config)
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path


def make_context(sb, model_dir: str, device: str, batch_size: int, seq_len: str, max_length: int,
                 data_seed: int = 1234) -> Context:
    vocab_size = json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"]
    train = synthetic_split(sb, batch_size * POOL_BATCHES, seq_len, max_length, vocab_size, data_seed)
    evaluation = synthetic_split(sb, EVAL_EXAMPLES, seq_len, max_length, vocab_size, data_seed + 1)
    task = sb.Task(name="synthetic", text_columns=("sentence1", "sentence2"), loader=lambda: None,
                   source="synthetic", description="benchmark: random token ids")
    task_data = sb.TaskData(task=task, train=None, eval=None, num_labels=2, majority_accuracy=0.5,
                            fingerprint=f"synthetic-{seq_len}-{max_length}-{data_seed}", train_size=None,
                            subsample_seed=0)
    source = sb.models.ModelSource("benchmark-model", model_dir)
    return Context(sb, model_dir, torch.device(device), batch_size, max_length, train, evaluation, task_data,
                   source)


# --- what a step costs ------------------------------------------------------------------------

# Bytes of optimizer-side memory traffic per fp32 parameter per step, whatever the batch:
# fused AdamW reads param, grad, exp_avg, exp_avg_sq and writes param and both moments (28);
# clipping reads every gradient for the norm and rewrites it scaled (12); backward writes it (4).
PARAM_BYTES_PER_STEP = 28 + 12 + 4


def step_cost(config: dict, lengths: list[int], batch_size: int) -> dict:
    """Model FLOPs and the batch-independent memory traffic of one optimizer step.

    FLOPs: the encoder's matrix products (QKV and output projections, 4h^2, and the FFN, 2hi,
    multiply-adds per token per layer) and attention (QK^T and AV, 2Lh per token per layer),
    three times the forward for forward + backward, on the unpadded tokens of an average batch.
    With ``--peak-tflops`` and ``--peak-tbps`` the two give a bound on steps/s: the matrix
    work at the peak rate plus the optimizer's traffic at the peak bandwidth, everything else
    (activations, elementwise kernels, launches) taken as free.
    """
    h, layers, inter = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    per_example = [6 * layers * (n * (4 * h * h + 2 * h * inter) + 2 * n * n * h) for n in lengths]
    flops = batch_size * sum(per_example) / len(per_example)
    params = (config["vocab_size"] + config["max_position_embeddings"] + config["type_vocab_size"]) * h \
        + layers * (4 * h * h + 2 * h * inter + 4 * h + inter + 5 * h) + h * h + h + 2 * h \
        + len(config.get("id2label") or {0: 0, 1: 1}) * (h + 1)
    return {"flops_per_step": flops, "parameters": params, "param_bytes_per_step": PARAM_BYTES_PER_STEP * params,
            "tokens_per_step": batch_size * sum(lengths) / len(lengths)}


def bound_steps_per_s(cost: dict, peak_tflops: float | None, peak_tbps: float | None) -> float | None:
    if not peak_tflops or not peak_tbps:
        return None
    return 1 / (cost["flops_per_step"] / (peak_tflops * 1e12) + cost["param_bytes_per_step"] / (peak_tbps * 1e12))


# --- measurements --------------------------------------------------------------------------

@dataclasses.dataclass
class Measurement:
    setting: str
    steps_per_s: float
    steps: int
    seconds: float
    window_start: float  # time.time() at the start / end of the timed window
    window_end: float
    losses: list[float]
    attn: str | None
    note: str = ""
    cpu_seconds: float = math.nan  # this process's CPU time in the window (all its threads)

    @property
    def cpu_steps_per_s(self) -> float:
        """Steps per CPU-second: on a shared CPU, far steadier than wall time (other work does not count)."""
        return self.steps * self.per_step_seeds / self.cpu_seconds if self.cpu_seconds > 0 else math.nan

    per_step_seeds: int = 1


def recipe_for(ctx: Context, setting: Setting, total_steps: int):
    return ctx.sb.recipes.get_recipe("bert-default", max_steps=total_steps, precision=setting.precision,
                                     pad_to_multiple_of=setting.bucket, max_length=ctx.max_length,
                                     batch_size=ctx.batch_size, trace_every=TRACE_EVERY, attention=setting.attn,
                                     compile=setting.compile)


def measure(ctx: Context, setting: Setting, warmup: int, steps: int, seed: int = 0) -> Measurement:
    if setting.loop == "stabench":
        return _measure_fine_tune(ctx, setting, warmup, steps, seed)
    if setting.loop == "batched":
        return _measure_batched(ctx, setting, warmup, steps, seed)
    return _measure_hand_loop(ctx, setting, warmup, steps, seed)


@contextlib.contextmanager
def _synthetic_splits(ctx: Context):
    """fine_tune reads the synthetic splits: ``encode`` is looked up at call time, so the
    training loop itself runs unmodified."""
    original = ctx.sb.data.encode

    def encode(data, tokenizer, max_length, token_types=True):
        if data is ctx.task_data:
            return ctx.train, ctx.eval
        return original(data, tokenizer, max_length, token_types)

    ctx.sb.data.encode = encode
    try:
        yield
    finally:
        ctx.sb.data.encode = original


def _prepared(ctx: Context, recipe, seed: int, key: str):
    """What fine_tune needs for a run on the synthetic splits (never stored, so any key does)."""
    sb, device = ctx.sb, str(ctx.device)
    sb.train.check_compile(recipe, device)  # prepare's own refusal: torch 2.4's CPU compile flushes subnormals
    return sb.train.PreparedRun(
        data=ctx.task_data, model=ctx.source, recipe=recipe, seed=seed, device=device, key=key,
        task_info={"name": "synthetic"}, model_info={"name": "benchmark"},
        environment=sb.environment.capture(device=device, precision=recipe.precision),
        recipe_hash=recipe.hash, recipe_record=recipe.to_dict())


def _measure_fine_tune(ctx: Context, setting: Setting, warmup: int, steps: int, seed: int) -> Measurement:
    sb = ctx.sb
    recipe = recipe_for(ctx, setting, warmup + steps)
    prepared = _prepared(ctx, recipe, seed, key=f"benchmark-{setting.name}-{seed}")
    marks: dict[int, tuple[float, float]] = {}

    def progress(step: int, total: int) -> None:  # called right after a host sync (finiteness check)
        marks[step] = (time.perf_counter(), time.time(), time.process_time())

    started = time.perf_counter()
    with _synthetic_splits(ctx):
        result = sb.train.fine_tune(prepared, progress=progress)
    end = warmup + steps
    if result.steps != end or warmup not in marks or end not in marks:
        raise RuntimeError(f"{setting.name}: fine_tune stopped at step {result.steps} of {end} "
                           f"(diverged={result.diverged}); cannot time steps {warmup + 1}..{end}")
    seconds = marks[end][0] - marks[warmup][0]
    return Measurement(setting.name, steps / seconds, steps, seconds, marks[warmup][1], marks[end][1],
                       result.trace["loss"], result.model.get("attn_implementation"),
                       note=f"compiled during the untimed warm-up ({marks[warmup][0] - started:.0f}s)"
                       if setting.compile else "", cpu_seconds=marks[end][2] - marks[warmup][2])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock_start(device: torch.device) -> tuple[float, float, float]:
    """Perf counter, wall clock and CPU time once queued device work is done."""
    _sync(device)
    return time.perf_counter(), time.time(), time.process_time()


def _clock_stop(device: torch.device, start: float, start_cpu: float) -> tuple[float, float, float]:
    """Seconds elapsed, wall clock at the end and CPU seconds, after the device caught up."""
    _sync(device)
    return time.perf_counter() - start, time.time(), time.process_time() - start_cpu


class HandLoop:
    """plain / minimal: a hand-written loop on the same batches as fine_tune, run a few steps at a time."""

    def __init__(self, ctx: Context, setting: Setting, total: int, seed: int):
        sb, device = ctx.sb, ctx.device
        self.ctx, self.setting = ctx, setting
        self.recipe = recipe = recipe_for(ctx, setting, total)
        transformers.set_seed(seed)  # as fine_tune: the same initial weights and dropout masks
        self.model = sb.models.load_model(ctx.source, ctx.task_data.num_labels, recipe.dropout, recipe.attention)
        self.attn = getattr(self.model.config, "_attn_implementation", None)
        self.model.to(device)
        self.model.train()
        groups = sb.optim.decay_param_groups(self.model, recipe.weight_decay, recipe.lr)
        betas = (recipe.adam_beta1, recipe.adam_beta2)
        if setting.loop == "plain" and not setting.mt_opt:
            self.optimizer = torch.optim.AdamW(groups, lr=recipe.lr, betas=betas, eps=recipe.adam_eps,
                                               weight_decay=recipe.weight_decay, foreach=False)
        else:
            self.optimizer = sb.optim.AdamW.for_recipe(groups, recipe)
        self.scheduler = sb.optim.make_scheduler(self.optimizer, recipe.schedule, recipe.warmup, total)
        order = sb.data.train_order(len(ctx.train), total, recipe.batch_size, torch.Generator().manual_seed(seed))
        self.batches = [{k: v.to(device) for k, v in sb.data.collate(ctx.train, indices, ctx.pad_id,
                                                                     recipe.pad_to_multiple_of).items()}
                        for indices in order]  # the same tensors fine_tune builds, collated up front
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.clip_foreach = None if setting.loop == "plain" else True  # plain: torch's default
        self.losses: list = []

    @property
    def steps_done(self) -> int:
        return len(self.losses)

    def advance(self, n: int) -> None:
        """The next ``n`` steps: forward, backward, clipping, AdamW, scheduler (no clock here)."""
        sb, recipe = self.ctx.sb, self.recipe
        with sb.train.matmul_precision(recipe.precision):
            for batch in self.batches[self.steps_done:self.steps_done + n]:
                with sb.train.autocast(recipe.precision, self.ctx.device):
                    loss = self.model(**batch).loss
                loss.backward()
                if recipe.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.params, recipe.grad_clip, foreach=self.clip_foreach)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.losses.append(loss.item() if self.setting.host_sync else loss.detach())

    def loss_values(self) -> list[float]:
        if self.setting.host_sync:
            return list(self.losses)
        return torch.stack(self.losses).float().cpu().tolist() if self.losses else []


def _measure_hand_loop(ctx: Context, setting: Setting, warmup: int, steps: int, seed: int) -> Measurement:
    loop = HandLoop(ctx, setting, warmup + steps, seed)
    loop.advance(warmup)
    start, start_wall, start_cpu = _clock_start(ctx.device)
    loop.advance(steps)
    seconds, end_wall, cpu_seconds = _clock_stop(ctx.device, start, start_cpu)
    return Measurement(setting.name, steps / seconds, steps, seconds, start_wall, end_wall, loop.loss_values(),
                       loop.attn, cpu_seconds=cpu_seconds)


def _measure_batched(ctx: Context, setting: Setting, warmup: int, steps: int, seed: int) -> Measurement:
    """``setting.seeds`` seeds (seed, seed+1, ...) in one SeedGroup; rate in seed-steps/s."""
    sb, device = ctx.sb, ctx.device
    total = warmup + steps
    recipe = recipe_for(ctx, setting, total)
    group = sb.batched.SeedGroup(ctx.source, ctx.task_data.num_labels, recipe, [seed + i for i in range(setting.seeds)],
                                 total_steps=total, device=str(device))
    attn = getattr(group.template.config, "_attn_implementation", None)
    orders = group.orders(len(ctx.train))
    batches = [group.collate(ctx.train, [order[i] for order in orders], ctx.pad_id) for i in range(total)]
    losses = []
    start = start_wall = start_cpu = 0.0
    with sb.train.matmul_precision(recipe.precision):
        for step, batch in enumerate(batches, start=1):
            if step == warmup + 1:
                start, start_wall, start_cpu = _clock_start(device)
            losses.append(group.step(batch, sb.train.autocast(recipe.precision, device)))
        seconds, end_wall, cpu_seconds = _clock_stop(device, start, start_cpu)
    first_seed = torch.stack(losses)[:, 0].float().cpu().tolist()
    return Measurement(setting.name, setting.seeds * steps / seconds, steps, seconds, start_wall, end_wall,
                       first_seed, attn, note=f"{setting.seeds} seeds in one vmapped model: seed-steps/s",
                       cpu_seconds=cpu_seconds, per_step_seeds=setting.seeds)


# --- the harness-overhead check ----------------------------------------------------------------

@contextlib.contextmanager
def own_rng(state: dict, device: torch.device):
    """Run on the random stream saved in ``state`` and save where it ends; the caller's stream is
    left as it was.  Two interleaved loops then draw the dropout masks each would draw alone."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.set_rng_state(state["cpu"])
        if cuda:
            torch.cuda.set_rng_state(state["cuda"], device)
        yield
        state["cpu"] = torch.get_rng_state()
        if cuda:
            state["cuda"] = torch.cuda.get_rng_state(device)


def _rng_state(device: torch.device) -> dict:
    cuda = {"cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    return {"cpu": torch.get_rng_state(), **cuda}


def interleaved_overhead(ctx: Context, warmup: int, steps: int, seed: int = 0) -> dict:
    """fine_tune and the minimal loop taking turns, ``TRACE_EVERY`` steps each, on the same batches.

    Whole runs measured one after the other see different machine load (paired ratios of
    0.70-1.17 on this project's shared CPU).  Here each of fine_tune's segments between two
    trace points (its ``progress`` callback) is followed at once by the minimal loop's same
    steps, so every pair of segments shares the load of the same few seconds.  Each loop keeps
    its own random stream, so both train the trajectory they train alone (the losses are compared).
    """
    if warmup < TRACE_EVERY or warmup % TRACE_EVERY or steps < TRACE_EVERY or steps % TRACE_EVERY:
        raise ValueError(f"interleaved_overhead: warmup={warmup} and steps={steps} must be positive multiples of "
                         f"{TRACE_EVERY} (fine_tune's trace points are where the loops take turns)")
    sb, device = ctx.sb, ctx.device
    total = warmup + steps
    minimal = HandLoop(ctx, parse_setting("minimal"), total, seed)  # seeds the RNG as fine_tune will
    minimal_rng = _rng_state(device)
    recipe = recipe_for(ctx, parse_setting("stabench"), total)
    prepared = _prepared(ctx, recipe, seed, key=f"benchmark-interleaved-{seed}")
    segments: list[dict] = []
    resumed: tuple[float, float] | None = None  # fine_tune's clock, restarted as each callback returns

    def progress(step: int, _total: int) -> None:  # fine_tune just synchronised (finiteness check)
        nonlocal resumed
        paused = (time.perf_counter(), time.process_time())
        with own_rng(minimal_rng, device):
            if step <= warmup:
                minimal.advance(step - minimal.steps_done)
            else:
                before = minimal.steps_done
                start, _, start_cpu = _clock_start(device)
                minimal.advance(step - before)
                seconds, _, cpu_seconds = _clock_stop(device, start, start_cpu)
                segments.append({"steps": step - (segments[-1]["last_step"] if segments else warmup),
                                 "minimal_steps": minimal.steps_done - before, "last_step": step,
                                 "stabench": (paused[0] - resumed[0], paused[1] - resumed[1]),
                                 "minimal": (seconds, cpu_seconds)})
        if step >= warmup:
            resumed = (time.perf_counter(), time.process_time())

    with _synthetic_splits(ctx):
        result = sb.train.fine_tune(prepared, progress=progress)
    if result.steps != total or minimal.steps_done != total:
        raise RuntimeError(f"interleaved overhead check: fine_tune stopped at step {result.steps} of {total} "
                           f"(diverged={result.diverged})")
    diffs = [abs(a - b) for a, b in zip(result.trace["loss"], minimal.loss_values())]
    return {"segments": segments, "losses": result.trace["loss"], "same_loss_trajectory_max_abs_diff": max(diffs),
            "steps_compared": len(diffs)}


def overhead_check(interleaved: dict, device_kind: str, limit_pct: float = 5.0) -> dict:
    """The harness's overhead: fine_tune's time over the minimal loop's on the same steps, with a
    95 % bootstrap interval over the paired segments.  The verdict needs the whole interval:
    within the limit, over it, or inconclusive when the interval straddles it.

    The basis is wall-clock time on an accelerator and CPU time on a CPU, where CPU time is what
    a step costs and wall time also measures the machine's other tenants.  Both loops' segments
    end in a device sync, so the cost of fine_tune's one host sync per segment is not seen here
    (on a GPU it is one sync per ``TRACE_EVERY`` steps).
    """
    segments = interleaved["segments"]
    basis = "cpu_time" if device_kind == "cpu" else "wall"
    out = {"method": f"interleaved: fine_tune and the minimal loop take turns every {TRACE_EVERY} steps",
           "basis": basis, "limit_pct": limit_pct, "segments": len(segments),
           "steps": sum(seg["steps"] for seg in segments)}
    for name, column in (("wall", 0), ("cpu_time", 1)):
        harness = [seg["stabench"][column] for seg in segments]
        minimal = [seg["minimal"][column] for seg in segments]
        ratio = sum(harness) / sum(minimal)
        low, high = _ratio_interval(harness, minimal)
        out[name] = {"stabench_ms_per_step": 1e3 * sum(harness) / out["steps"],
                     "minimal_ms_per_step": 1e3 * sum(minimal) / out["steps"],
                     "time_ratio": ratio, "overhead_pct": 100 * (ratio - 1),
                     "overhead_pct_ci95": [100 * (low - 1), 100 * (high - 1)] if low is not None else None,
                     "segment_time_ratios": [a / b for a, b in zip(harness, minimal)]}
    chosen = out[basis]
    interval = chosen["overhead_pct_ci95"]
    if interval is None:
        verdict = "inconclusive"
    else:
        verdict = "within" if interval[1] <= limit_pct else "NOT within" if interval[0] > limit_pct else "inconclusive"
    out.update(overhead_pct=chosen["overhead_pct"], verdict=verdict, within_5pct=verdict == "within",
               same_loss_trajectory_max_abs_diff=interleaved["same_loss_trajectory_max_abs_diff"],
               steps_compared=interleaved["steps_compared"])
    return out


MIN_SEGMENTS = 10  # fewer pairs give a bootstrap interval far narrower than its nominal 95 %


def _ratio_interval(harness: list[float], minimal: list[float]) -> tuple[float | None, float | None]:
    """95 % BCa bootstrap interval of sum(harness) / sum(minimal), resampling the pairs; None
    with fewer than ``MIN_SEGMENTS`` pairs or when the pairs do not vary (no interval to give)."""
    import numpy as np
    from scipy import stats

    ratios = np.asarray(harness) / np.asarray(minimal)
    if len(harness) < MIN_SEGMENTS or np.ptp(ratios) == 0:
        return None, None
    result = stats.bootstrap((np.asarray(harness), np.asarray(minimal)),
                             lambda a, b, axis: a.sum(axis=axis) / b.sum(axis=axis), paired=True,
                             vectorized=True, confidence_level=0.95, method="BCa", n_resamples=9999,
                             random_state=np.random.default_rng(0))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (None, None)


def harness_work(ctx: Context, repeats: int = 5) -> dict:
    """The per-step cost of what fine_tune does beyond the minimal loop, timed in isolation.

    Collating a batch and copying it to the device (every step), and the gradient-norm trace
    plus the finiteness check (every trace_every steps).  Small operations repeated many times,
    best of ``repeats``: steady even on a shared CPU, unlike a difference of two whole loops.
    """
    sb, device = ctx.sb, ctx.device
    recipe = recipe_for(ctx, parse_setting("stabench"), POOL_BATCHES)
    transformers.set_seed(0)
    model = sb.models.load_model(ctx.source, ctx.task_data.num_labels, recipe.dropout).to(device).train()
    order = sb.data.train_order(len(ctx.train), POOL_BATCHES, recipe.batch_size, torch.Generator().manual_seed(0))
    batch = {k: v.to(device) for k, v in sb.data.collate(ctx.train, order[0], ctx.pad_id).items()}
    loss = model(**batch).loss
    loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    tracer = sb.train.GradNormTracer(model)
    losses = [loss.detach()] * recipe.trace_every

    def collate_all():
        for indices in order:
            {k: v.to(device, non_blocking=True) for k, v in
             sb.data.collate(ctx.train, indices, ctx.pad_id, recipe.pad_to_multiple_of).items()}
        _sync(device)

    def trace_and_check(n=20):
        for _ in range(n):
            tracer.record()
            tracer.record_total(torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in params]))))
            bool(torch.isfinite(torch.stack(losses[-recipe.trace_every:])).all())
        _sync(device)

    def best(fn, n):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) / n)
        return min(times)

    best(collate_all, len(order))  # warm
    collate_s, trace_s = best(collate_all, len(order)), best(trace_and_check, 20)
    tracer.rows.clear()
    tracer.totals.clear()
    return {"collate_and_copy_ms": collate_s * 1e3, "trace_and_check_ms": trace_s * 1e3,
            "per_step_ms": (collate_s + trace_s / recipe.trace_every) * 1e3, "trace_every": recipe.trace_every,
            "note": "trace_and_check includes one extra total-norm pass; fine_tune reuses clip_grad_norm_'s"}


# --- K worker processes --------------------------------------------------------------------

def run_workers(args, model_dir: str, setting: Setting, k: int, threads_total: int,
                mps_env: dict | None = None) -> dict:
    """K processes train seeds 0..K-1 at once; each reports its own steps/s.

    A compiling setting warms up worker 0 alone first: K processes compiling at once took
    longer than a 90 s limit on an H200 box, while the ones after the first mostly read
    inductor's on-disk caches.  With ``mps_env`` the workers are clients of an MPS server,
    which lets their kernels run concurrently instead of time-sliced.
    """
    threads = max(1, threads_total // k)
    procs, logs = [], []
    env = {**os.environ, **(mps_env or {}), "OMP_NUM_THREADS": str(threads)}

    def start(i: int) -> None:
        spec = dict(model_dir=model_dir, setting=setting.name, device=args.device, threads=threads, seed=i,
                    warmup=args.warmup, steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                    max_length=args.max_length)
        log = tempfile.TemporaryFile(mode="w+")
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env))
        logs.append(log)

    watchdog = threading.Timer(args.worker_timeout, lambda: [p.kill() for p in procs if p.poll() is None])
    watchdog.start()
    warm_first = setting.compile is not None and k > 1
    try:
        start(0)
        if warm_first:
            _expect(procs[0], logs[0], "READY")
        for i in range(1, k):
            start(i)
        for proc, log in list(zip(procs, logs))[1 if warm_first else 0:]:
            _expect(proc, log, "READY")
        for proc in procs:  # all warmed up: start the timed runs together
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        reports = [json.loads(_expect(proc, log, "RESULT")) for proc, log in zip(procs, logs)]
        for proc in procs:
            proc.wait()
    finally:
        watchdog.cancel()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for log in logs:
            log.close()
    rates = [r["steps_per_s"] for r in reports]
    span = max(r["window_end"] for r in reports) - min(r["window_start"] for r in reports)
    return {"k": k, "setting": setting.name, "mps": mps_env is not None, "warmed_up_one_first": warm_first,
            "threads_per_worker": threads, "per_worker_steps_per_s": rates,
            "aggregate_steps_per_s": sum(rates),
            "aggregate_over_span_steps_per_s": sum(r["steps"] for r in reports) / span}


@contextlib.contextmanager
def mps_server(enabled: bool):
    """An NVIDIA MPS control daemon for the worker rows, stopped afterwards; yields the clients' env."""
    if not enabled:
        yield None
        return
    control = shutil.which("nvidia-cuda-mps-control")  # parse_args checked that it exists
    pipe = tempfile.mkdtemp(prefix="stabench-mps-")
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": pipe, "CUDA_MPS_LOG_DIRECTORY": pipe}
    subprocess.run([control, "-d"], env=env, check=True, timeout=60)
    try:
        yield {"CUDA_MPS_PIPE_DIRECTORY": pipe, "CUDA_MPS_LOG_DIRECTORY": pipe}
    finally:
        subprocess.run([control], input="quit\n", env=env, text=True, timeout=60, check=False)


def _expect(proc, log, word: str) -> str:
    while True:
        line = proc.stdout.readline()
        if not line:
            log.seek(0)
            tail = log.read()[-3000:]
            raise RuntimeError(f"benchmark worker exited (rc={proc.wait()}) before {word}:\n{tail}")
        if line.startswith(WORKER_PREFIX + word):
            return line[len(WORKER_PREFIX + word):].strip()


def worker_main(spec: dict) -> int:
    torch.set_num_threads(spec["threads"])
    sb = import_stabench()
    ctx = make_context(sb, spec["model_dir"], spec["device"], spec["batch_size"], spec["seq_len"], spec["max_length"])
    setting = parse_setting(spec["setting"])
    measure(ctx, setting, TRACE_EVERY, TRACE_EVERY, seed=spec["seed"])  # warm the process up
    print(WORKER_PREFIX + "READY", flush=True)
    sys.stdin.readline()
    m = measure(ctx, setting, spec["warmup"], spec["steps"], seed=spec["seed"])
    print(WORKER_PREFIX + "RESULT " + json.dumps({"steps_per_s": m.steps_per_s, "steps": m.steps,
                                                  "window_start": m.window_start, "window_end": m.window_end}),
          flush=True)
    return 0


# --- reporting -----------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict:
    def version(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": version("datasets"), "stabench": version("stabench"),
            "rich": version("rich"), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}


def render(record: dict) -> str:
    rows = record["results"]
    cpu = record["device"]["kind"] == "cpu"
    headers = ["setting", "loop", "precision", "attn", "padding", "steps/s", "spread", "x plain", "TFLOP/s"]
    headers += ["steps/CPU-s", "x plain (CPU-s)"] if cpu else []
    headers += ["note"]
    table = []
    for r in rows:
        row = [r["setting"], r["loop"], r["precision"], r["attn"] or "-", r["padding"], f"{r['steps_per_s']:.2f}",
               f"{r['min_steps_per_s']:.2f}-{r['max_steps_per_s']:.2f}", _ratio(r["ratio_vs_plain"]),
               _tflops(r["model_tflops"])]
        if cpu:
            row += [f"{r['cpu_steps_per_s']:.2f}", _ratio(r["cpu_ratio_vs_plain"])]
        table.append(row + [r["note"]])
    worker_rows = [[str(w["k"]), w["setting"] + (" (MPS)" if w.get("mps") else ""), str(w["threads_per_worker"]),
                    ", ".join(f"{x:.2f}" for x in w["per_worker_steps_per_s"]), f"{w['aggregate_steps_per_s']:.2f}",
                    f"{w['aggregate_over_span_steps_per_s']:.2f}", _ratio(w.get("ratio_vs_plain")),
                    _tflops(w["model_tflops"])]
                   for w in record["workers"]]
    worker_headers = ["K", "setting", "threads/worker", "steps/s per worker", "aggregate (sum)",
                      "aggregate (span)", "x plain", "TFLOP/s"]
    cfg = record["config"]
    title = (f"{cfg['model_config']} BERT, batch {cfg['batch_size']}, seq {cfg['seq_len']} (max {cfg['max_length']}), "
             f"steps {cfg['warmup'] + 1}..{cfg['warmup'] + cfg['steps']} timed, median of up to {cfg['repeats']} -- "
             f"{record['device']['name']}, {record['device']['torch_threads']} torch thread(s)")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return "\n".join([title, _plain_table(headers, table)] +
                         ([_plain_table(worker_headers, worker_rows)] if worker_rows else []))
    console = Console(file=io.StringIO(), record=True, width=200, force_terminal=False)
    main = Table(*headers, title=title)
    for row in table:
        main.add_row(*row)
    console.print(main)
    if worker_rows:
        workers = Table(*worker_headers, title="several seeds per device: K worker processes (wall clock)")
        for row in worker_rows:
            workers.add_row(*row)
        console.print(workers)
    return console.export_text()


def _tflops(value: float) -> str:
    return f"{value:.3g}"


def _ratio(value) -> str:
    return f"{value:.2f}" if value is not None and not math.isnan(value) else "-"


def _plain_table(headers, rows) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [headers, *rows]]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model-config", choices=sorted(MODEL_CONFIGS), default=None,
                        help="random-init BERT size (default large; --quick: toy)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", default=None,
                        help=f"an integer (every example that long) or 'dist' (lognormal, median {DIST_MEDIAN}, "
                             f"clipped to {DIST_MIN}..--max-length); default 128, --quick: dist")
    parser.add_argument("--max-length", type=int, default=None, help="truncation length (default: 128 or --seq-len)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 100; quick 20)")
    parser.add_argument("--warmup", type=int, default=TRACE_EVERY, help="untimed steps before the window")
    parser.add_argument("--overhead-steps", type=int, default=None,
                        help="timed steps of the harness-overhead check, in which fine_tune and the minimal loop "
                             f"take turns every {TRACE_EVERY} steps (default 400, --quick 200; 0: no check; it "
                             "needs both 'minimal' and 'stabench' among the settings)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="measurements per setting, round robin; the median is reported (default 3; "
                             "--quick: 3 for plain / minimal / stabench, 2 for the other levers)")
    parser.add_argument("--settings", default=None,
                        help="comma-separated settings (see below), 'default' or 'quick'")
    parser.add_argument("--workers", default=None,
                        help="comma-separated K for the K-process rows, '' for none (default 1,2,4,8; quick 1,2)")
    parser.add_argument("--worker-setting", default=None,
                        help="setting each worker runs (default stabench+bf16 on CUDA, stabench on CPU)")
    parser.add_argument("--worker-timeout", type=float, default=1800.0)
    parser.add_argument("--mps", action="store_true",
                        help="run the K-worker rows as clients of an NVIDIA MPS server (started and stopped here)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads in this process, split among K workers (default: torch's; "
                             "--quick: 1, since multi-threaded CPU timings on a shared machine are erratic)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense matrix rate at the run's precision, for the steps/s bound "
                             "(e.g. ~790 measured for bf16 on an H200)")
    parser.add_argument("--peak-tbps", type=float, default=None,
                        help="the device's memory bandwidth in TB/s, for the bound (measured: ~4.3 on an H200, "
                             "~3.0 on an H100; their data sheets say 4.8 and 3.35)")
    parser.add_argument("--json", default=None, help="write the JSON record here")
    parser.add_argument("--quick", action="store_true", help="toy size for CPU / CI: about 3 minutes on 2 cores")
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        return args
    q = args.quick
    args.model_config = args.model_config or ("toy" if q else "large")
    args.seq_len = args.seq_len or ("dist" if q else "128")
    if args.seq_len != "dist" and not args.seq_len.isdigit():
        parser.error(f"--seq-len {args.seq_len!r}: expected an integer or 'dist'")
    args.max_length = args.max_length or (128 if args.seq_len == "dist" else int(args.seq_len))
    if args.seq_len != "dist" and int(args.seq_len) > args.max_length:
        parser.error("--seq-len is longer than --max-length")
    args.steps = _round_up(args.steps or (20 if q else 100), TRACE_EVERY)
    args.warmup = _round_up(max(args.warmup, TRACE_EVERY), TRACE_EVERY)
    if args.overhead_steps is not None and args.overhead_steps < 0:
        parser.error(f"--overhead-steps {args.overhead_steps}: expected 0 (no check) or a positive number of steps")
    if args.overhead_steps is None:
        args.overhead_steps = 200 if q else 400
    args.overhead_steps = args.overhead_steps and _round_up(args.overhead_steps, TRACE_EVERY)
    args.repeats = args.repeats or 3
    args.threads = args.threads or (1 if q else None)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.mps and not (args.device.startswith("cuda") and shutil.which("nvidia-cuda-mps-control")):
        parser.error(f"--mps needs a CUDA device and nvidia-cuda-mps-control on PATH (device {args.device!r})")
    if args.settings in (None, "default", "quick"):
        args.settings = ",".join(QUICK_SETTINGS if (q and args.settings != "default") or args.settings == "quick"
                                 else DEFAULT_SETTINGS)
    args.workers = args.workers if args.workers is not None else ("1,2" if q else "1,2,4,8")
    try:  # bad values fail here, not minutes into the measurements
        for text in [*args.settings.split(","), args.worker_setting or "stabench"]:
            if text.strip():
                parse_setting(text)
    except ValueError as error:
        parser.error(str(error))
    if not all(k.strip().isdigit() and int(k) >= 1 for k in args.workers.split(",") if k.strip()):
        parser.error(f"--workers {args.workers!r}: expected comma-separated counts of 1 or more, e.g. 1,2,4, "
                     f"or '' for none")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device!r}: {error}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device!r}: this torch sees no CUDA device (torch {torch.__version__})")
    return args


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def main(argv=None) -> dict | int:
    args = parse_args(argv)
    if args._worker:
        return worker_main(json.loads(args._worker))
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    sb = import_stabench()
    device = torch.device(args.device)
    settings = [parse_setting(s) for s in args.settings.split(",") if s.strip()]
    if not any(s.name == "plain" for s in settings):
        settings.insert(0, parse_setting("plain"))
    skipped: list[dict] = []

    def can_run(setting: Setting, label: str) -> bool:
        if setting.needs_cuda and device.type != "cuda":
            print(f"skipped: needs CUDA -- {label} ({setting.needs_cuda})")
            skipped.append({"setting": label, "reason": f"needs CUDA ({setting.needs_cuda})"})
            return False
        return True

    runnable = [s for s in settings if can_run(s, s.name)]
    ks = [int(k) for k in args.workers.split(",") if k.strip()]
    worker_setting = parse_setting(args.worker_setting or ("stabench+bf16" if device.type == "cuda" else "stabench"))
    if ks and not can_run(worker_setting, f"workers x {worker_setting.name}"):
        ks = []

    runs: dict[str, list[Measurement]] = {s.name: [] for s in runnable}
    cost: dict = {}
    failures: dict[str, str] = {}
    workers: list[dict] = []
    check: dict = {}

    def write_record(final: bool) -> dict:
        """The record so far; written after every measurement, so a killed run keeps what it measured."""
        record = build_record(args, sb, device, runnable, runs, failures, list(skipped), workers, cost, check)
        record["wall_time_s"] = round(time.perf_counter() - started, 1)
        record["complete"] = final
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        return record

    with tempfile.TemporaryDirectory(prefix="stabench-bench-") as tmp:
        model_dir = build_model_dir(sb, os.path.join(tmp, "model"), args.model_config)
        ctx = make_context(sb, model_dir, args.device, args.batch_size, args.seq_len, args.max_length)
        cost.update(step_cost(json.loads((Path(model_dir) / "config.json").read_text()),
                              [len(ids) for ids in ctx.train.input_ids], args.batch_size))
        # Warm the process up (allocator, oneDNN / cuBLAS handles) on both kinds of loop.
        for name in ("minimal", "stabench"):
            measure(ctx, parse_setting(name), TRACE_EVERY, TRACE_EVERY)
        for repeat in range(args.repeats):  # round robin: drift in machine load hits every setting alike
            for s in runnable:
                if s.name in failures or args.quick and _quick_skip(runs, s.name, repeat):
                    continue
                try:
                    m = measure(ctx, s, args.warmup, args.steps)
                except Exception as error:  # a lever that does not work here is reported, not fatal
                    failures[s.name] = _reason(error)
                    print(f"failed: {s.name} -- {failures[s.name]}")
                    m = None
                if m is None:
                    _release(device)  # e.g. after an out-of-memory error, once its traceback is gone
                    continue
                runs[s.name].append(m)
                print(f"  [{repeat + 1}/{args.repeats}] {s.name:<28} {m.steps_per_s:8.2f} steps/s", flush=True)
                write_record(final=False)
        names = {s.name for s in runnable}
        if args.overhead_steps and {"minimal", "stabench"} <= names - set(failures):
            print(f"  harness overhead: fine_tune and the minimal loop, {args.overhead_steps} steps each, "
                  f"taking turns every {TRACE_EVERY}", flush=True)
            try:
                check.update(overhead_check(interleaved_overhead(ctx, args.warmup, args.overhead_steps), device.type))
                work = harness_work(ctx)  # timed in wall time, so compared with the wall-time step
                minimal_ms = check["wall"]["minimal_ms_per_step"]
                check["isolated_harness_work"] = {**work, "minimal_step_ms": minimal_ms,
                                                  "pct_of_minimal_step": 100 * work["per_step_ms"] / minimal_ms}
            except Exception as error:  # reported like a lever that does not work here
                reason = _reason(error)
                print(f"failed: harness overhead check -- {reason}")
                skipped.append({"setting": "harness overhead check", "reason": reason})
                check.clear()
            write_record(final=False)
        _release(device)  # the workers need the memory this process's allocator still holds
        with mps_server(args.mps and bool(ks)) as mps_env:
            for k in ks:
                print(f"  workers: K={k} x {worker_setting.name}{' under MPS' if mps_env else ''}", flush=True)
                try:
                    workers.append(run_workers(args, model_dir, worker_setting, k, torch.get_num_threads(), mps_env))
                except Exception as error:
                    print(f"failed: workers K={k} -- {error}")
                    skipped.append({"setting": f"workers K={k}", "reason": str(error)[:500]})
                write_record(final=False)

    record = write_record(final=True)
    print(render(record))
    for line in summary_lines(record):
        print(line)
    if args.json:
        print(f"wrote {args.json}")
    return record


def _reason(error: BaseException) -> str:
    """A failed lever's one-line reason: the error's type and its message's first line."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _quick_skip(runs: dict[str, list[Measurement]], name: str, repeat: int) -> bool:
    """--quick keeps every round only for plain, minimal and stabench (the ratios that matter most);
    other levers get two rounds, or one when the first ran at under half the plain loop's rate."""
    if name in ("plain", "minimal", "stabench") or repeat == 0:
        return False
    plain, mine = runs.get("plain"), runs.get(name)
    return repeat >= 2 or bool(plain and mine and mine[0].steps_per_s < 0.5 * plain[0].steps_per_s)


def build_record(args, sb, device, runnable, runs, failures, skipped, workers, cost, check) -> dict:
    medians = {name: statistics.median(m.steps_per_s for m in ms) for name, ms in runs.items() if ms}
    cpu_medians = {name: statistics.median(m.cpu_steps_per_s for m in ms) for name, ms in runs.items() if ms}
    plain, cpu_plain = medians.get("plain"), cpu_medians.get("plain")
    results = []
    for s in runnable:
        ms = runs[s.name]
        if not ms:
            skipped.append({"setting": s.name, "reason": failures.get(s.name, "no measurement")})
            continue
        notes = [ms[0].note] if ms[0].note else []  # the first run's: it paid any compilation
        results.append({
            "setting": s.name, "loop": s.loop, "precision": s.precision, "attn": ms[0].attn,
            "padding": f"multiple of {s.bucket}" if s.bucket else "dynamic",
            "optimizer": "torch.optim.AdamW(foreach=False)" if s.loop == "plain" and not s.mt_opt
            else "stabench AdamW (fused kernel where torch has it)", "host_sync_per_step": s.host_sync, "seeds": s.seeds,
            "steps_per_s": medians[s.name], "min_steps_per_s": min(m.steps_per_s for m in ms),
            "max_steps_per_s": max(m.steps_per_s for m in ms), "runs_steps_per_s": [m.steps_per_s for m in ms],
            "ratio_vs_plain": medians[s.name] / plain if plain else None,
            "cpu_steps_per_s": cpu_medians[s.name], "runs_cpu_steps_per_s": [m.cpu_steps_per_s for m in ms],
            "cpu_ratio_vs_plain": cpu_medians[s.name] / cpu_plain if cpu_plain else None,
            "model_tflops": medians[s.name] * cost["flops_per_step"] / 1e12,
            "note": "; ".join(notes)})
    for w in workers:
        w["ratio_vs_plain"] = w["aggregate_steps_per_s"] / plain if plain else None
        w["model_tflops"] = w["aggregate_steps_per_s"] * cost["flops_per_step"] / 1e12
    bound = bound_steps_per_s(cost, args.peak_tflops, args.peak_tbps)
    return {
        "schema": 1, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": {"kind": device.type, "name": device_name(device), "torch_threads": torch.get_num_threads(),
                   "cpu_count": os.cpu_count(), "load_average": _load_average()},
        "versions": versions(),
        "config": {"model_config": args.model_config,
                   "layers_hidden_heads_intermediate": MODEL_CONFIGS[args.model_config],
                   "batch_size": args.batch_size, "seq_len": args.seq_len, "max_length": args.max_length,
                   "seq_len_dist": {"kind": "lognormal", "median": DIST_MEDIAN, "sigma": DIST_SIGMA, "min": DIST_MIN}
                   if args.seq_len == "dist" else None,
                   "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "quick": args.quick,
                   "overhead_steps": args.overhead_steps,
                   "recipe": "bert-default (fp32 unless the setting says otherwise, clip 1.0, trace_every 10)"},
        "step_cost": {**cost, "param_bytes_per_param": PARAM_BYTES_PER_STEP, "peak_tflops": args.peak_tflops,
                      "peak_tbps": args.peak_tbps, "bound_steps_per_s": bound,
                      "model": "model FLOPs (matrix products + attention, x3 for forward + backward) on unpadded "
                               "tokens; bound = FLOPs at peak_tflops + optimizer/clipping traffic at peak_tbps"},
        "timing": "steps/s: wall clock over the timed window (device synchronised at both ends); steps/CPU-s: "
                  "the same steps over this process's CPU time, steadier than wall time on a shared CPU",
        "results": results, "skipped": skipped, "workers": workers,
        "overhead_check": check or None,
    }


def _load_average() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def summary_lines(record: dict) -> list[str]:
    lines = [f"skipped: {s['setting']} -- {s['reason']}" for s in record["skipped"]]
    check = record["overhead_check"]
    if check:
        for basis, unit in (("wall", "wall"), ("cpu_time", "CPU")):
            part = check[basis]
            ratios = part["segment_time_ratios"]
            interval = part["overhead_pct_ci95"]
            lines.append(f"harness overhead ({unit} time, {check['segments']} interleaved segments of "
                         f"{TRACE_EVERY} steps): stabench {part['stabench_ms_per_step']:.2f} vs minimal loop "
                         f"{part['minimal_ms_per_step']:.2f} ms/step = {part['overhead_pct']:+.1f}% "
                         + (f"(95% CI {interval[0]:+.1f}%..{interval[1]:+.1f}%; " if interval else "(no interval; ")
                         + f"segments {min(ratios):.2f}..{max(ratios):.2f})")
        lines.append(f"harness overhead verdict ({check['basis'].replace('_', ' ')}): {check['overhead_pct']:+.1f}% "
                     f"time per step -> {check['verdict']} {check['limit_pct']:g}%; same losses (max |diff| "
                     f"{check['same_loss_trajectory_max_abs_diff']:.2g} over {check['steps_compared']} steps)")
        work = check.get("isolated_harness_work")
        if work:
            lines.append(f"harness-only work, timed in isolation: "
                         f"collate+copy {work['collate_and_copy_ms']:.3f} ms/step, "
                         f"trace+check {work['trace_and_check_ms']:.3f} ms every {work['trace_every']} steps -> "
                         f"{work['per_step_ms']:.3f} ms/step = {work['pct_of_minimal_step']:.2f}% of a minimal step "
                         f"({work['minimal_step_ms']:.1f} ms)")
    cost = record["step_cost"]
    lines.append(f"one step: {cost['flops_per_step'] / 1e12:.3g} TFLOP of model FLOPs ({cost['tokens_per_step']:.0f} "
                 f"tokens), {cost['param_bytes_per_step'] / 1e9:.3g} GB of optimizer/clipping traffic "
                 f"({cost['parameters'] / 1e6:.1f}M parameters x {cost['param_bytes_per_param']} B)")
    if cost["bound_steps_per_s"]:
        best = max([r["steps_per_s"] for r in record["results"]] +
                   [w["aggregate_steps_per_s"] for w in record["workers"]])
        lines.append(f"bound at {cost['peak_tflops']:g} TFLOP/s and {cost['peak_tbps']:g} TB/s: "
                     f"{cost['bound_steps_per_s']:.1f} steps/s; best measured {best:.1f} "
                     f"({100 * best / cost['bound_steps_per_s']:.0f}% of it)")
    lines.append(f"wall time {record['wall_time_s']}s")
    return lines


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a timeout's kill still stops the MPS daemon
    outcome = main()
    sys.exit(outcome if isinstance(outcome, int) else 0)
