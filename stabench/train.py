"""One seeded fine-tuning run, end to end: task + model + recipe + seed -> RunResult.

The loop is meant to be read in one sitting.  It keeps the host out of the step: losses
and gradient-norm traces stay on the device and are copied once at the end, except for a
finiteness check every ``trace_every`` steps so that a diverged run stops early.  (transformers
still asks the device whether an eager forward's attention mask pads anything, once per step;
a compiled step does not.)
"""
from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import transformers

from . import data as data_lib
from . import environment, hooks, interventions, metrics, models
from .optim import AdamW, decay_param_groups, make_scheduler
from .recipes import Recipe, get_recipe
from .result import (EVALUATION_FIELDS, RunResult, check_seed, fails, final_train_loss, keyed_fields, layer_order,
                     run_key, train_loss_steps)
from .tasks import Task, TaskData, load_task_data, registered_name
from .warn import warn

# Evaluation starts at this many examples per batch and halves on out-of-memory: the largest
# batch that fits.  On a CPU a bigger batch buys nothing.
EVAL_BATCH_SIZE = {"cuda": 1024, "cpu": 128}
# bf16 logits carry about 3 significant digits.  A prediction whose top-two logit gap is within
# this fraction of the logits' scale could flip against fp32, so it is recomputed in fp32.
BF16_RECHECK_MARGIN = 0.05

# "Loading weights" bars would bury a study's own progress output.
transformers.utils.logging.disable_progress_bar()


@dataclass(frozen=True)
class PreparedRun:
    """Everything fixed before training starts, including the run's key."""

    data: TaskData
    model: models.ModelSource
    recipe: Recipe
    seed: int
    device: str
    key: str
    task_info: dict
    model_info: dict
    environment: dict
    # The recipe as the key was made: a hook's file saved while the run trains changes neither.
    recipe_hash: str
    recipe_record: dict


def prepare(task: str | Task, model: str, recipe: str | Recipe, seed: int, *, train_size: int | None = None,
            subsample_seed: int = 0, device: str = "auto") -> PreparedRun:
    """Resolve names, load data and compute the run key, without training anything."""
    check_seed(seed)
    seed = int(seed)  # a numpy integer too
    device = environment.resolve_device(device)  # "auto", and a named error for a missing GPU
    recipe = get_recipe(recipe)
    check_compile(recipe, device)
    if recipe.hook is not None:
        hooks.get_hook(recipe.hook)  # an unknown hook is named before any data or weights load
    source = models.resolve(model)
    if recipe.reinit_layers or recipe.layerwise_lr_decay < 1:  # checked before any data or weights load
        config = models.load_config(source)
        interventions.check_per_layer(config.model_type)
        if recipe.reinit_layers and (depth := getattr(config, "num_hidden_layers", None)) is not None:
            interventions.check_reinit_layers(recipe.reinit_layers, depth)
    if source.revision is None:  # a local folder saved without its tokenizer fails here, before any data loads
        models.load_tokenizer(source)
    registered_name(task)  # a Task object is registered under its name, and one name is one task
    data = load_task_data(task, train_size=train_size, subsample_seed=subsample_seed)
    metrics.check_metrics(data.task.metrics, data.num_labels, data.task.name)
    env = environment.capture(device=device, precision=recipe.precision)
    task_info, model_info = data.describe(), source.describe()
    recipe_record, recipe_hash = recipe.record_and_hash()
    key = run_key(task_info, model_info, recipe_hash, seed, environment.key_fields(env))
    return PreparedRun(data, source, recipe, seed, device, key, task_info, model_info, env, recipe_hash, recipe_record)


class OtherStackWarning(UserWarning):
    """A run trains again because the store holds it only under another library stack or device."""


def warn_of_other_stacks(prepared: PreparedRun, store) -> None:
    """Before a run trains: if the store holds it under another library stack or device, say so.
    Each stack keeps its own runs, so a study stored under last month's transformers trains again,
    which on a GPU is hours nobody expected."""
    stack = environment.key_fields(prepared.environment)
    others = store.other_stacks(prepared.key, prepared.task_info, prepared.model_info, prepared.recipe_hash,
                                prepared.seed, stack)
    if others:
        differing = sorted({name for differ in others for name in differ})

        def theirs(differ: dict) -> str:  # every field some stack differs in, so stacks are told apart
            values = {name: differ[name][0] if name in differ else stack.get(name) for name in differing}
            if all(values[name] is None for name in differ):
                return ""  # a run stored before these fields were recorded
            return ", ".join(f"{name} {'none' if value is None else value}" for name, value in values.items())

        stacks = list(dict.fromkeys(map(theirs, others)))  # each stack once; "" for one that recorded none
        shown = "; ".join(text or "one that did not record these fields" for text in stacks)
        described = f"another stack ({shown})" if len(stacks) == 1 else f"{len(stacks)} other stacks ({shown})"
        this = ", ".join(f"{name} {stack[name]}" for name in differing if stack.get(name) is not None)
        threads = sorted({differ["cpu_threads"][0] for differ in others if set(differ) == {"cpu_threads"}
                          and isinstance(differ["cpu_threads"][0], int)})
        reuse = (f" (those stored under cpu_threads {' or '.join(map(str, threads))} are read with that count: "
                 f"--stabench-cpu-threads, stabench run --cpu-threads, or cpu_threads=)" if threads else "")
        warn(f"runs of {prepared.task_info.get('name')} / {prepared.model_info.get('name')} / recipe "
             f"{prepared.recipe.name} are stored under {described}, not this one ({this}); each stack "
             f"keeps its own runs, so they train again{reuse}", OtherStackWarning)


class RunNotStored(LookupError):
    """``run(..., train=False)`` for a run the store does not hold."""

    def __init__(self, prepared: PreparedRun, stack: str):
        super().__init__(f"seed {prepared.seed} is not stored for this task, model, recipe and stack ({stack})")
        self.prepared, self.stack = prepared, stack


def stack_label(prepared: PreparedRun) -> str:
    """Where a run trains, as far as its key tells stacks apart: ``cpu, 2 torch thread(s)``."""
    threads = f", {torch.get_num_threads()} torch thread(s)" if prepared.device == "cpu" else ""
    return f"{prepared.device}{threads}"


def run(task: str | Task, model: str, recipe: str | Recipe, seed: int, *, train_size: int | None = None,
        subsample_seed: int = 0, device: str = "auto", store=None, recompute: bool = False,
        progress: Callable[[int, int], None] | None = None, cpu_threads: int | None = None,
        train: bool = True) -> RunResult:
    """Fine-tune and evaluate one seed; with a store (a Store or its path; without one,
    ``$STABENCH_STORE`` where it is set), reuse a stored result or store the new one.
    ``train=False`` only reads: RunNotStored if it is not stored.

    ``cpu_threads`` runs it with that many torch threads (restored afterwards): on a CPU the
    count changes the result and is part of the run's key, as ``--cpu-threads`` in the CLI.
    """
    return run_or_read(task, model, recipe, seed, train_size=train_size, subsample_seed=subsample_seed,
                       device=device, store=store, recompute=recompute, progress=progress, cpu_threads=cpu_threads,
                       train=train)[0]


def run_or_read(task: str | Task, model: str, recipe: str | Recipe, seed: int, *, train_size: int | None = None,
                subsample_seed: int = 0, device: str = "auto", store=None, recompute: bool = False,
                progress: Callable[[int, int], None] | None = None, cpu_threads: int | None = None,
                train: bool = True) -> tuple[RunResult, bool]:
    """``run``, and whether this call trained the run (False: read from the store)."""
    if progress is not None and not callable(progress):
        raise ValueError(f"progress={progress!r} is invalid; expected a callback taking (step, total), e.g. "
                         f"lambda step, total: print(step, total)")
    if store is not None and not isinstance(store, (str, os.PathLike)) \
            and not callable(getattr(store, "get_or_compute", None)):
        raise ValueError(f"store={store!r} is invalid; expected a stabench Store or the path of one")
    if not train and (script_store(store) is None or recompute):
        raise ValueError("train=False reads stored runs only; it needs store= (or $STABENCH_STORE) and no recompute")
    with opened_store(store, must_exist=not train) as store, environment.torch_threads(cpu_threads):
        prepared = prepare(task, model, recipe, seed, train_size=train_size, subsample_seed=subsample_seed,
                           device=device)
        if store is None:
            return fine_tune(prepared, progress=progress), True
        if not train:  # reads only: the recipe's name is not added to the run's names
            if (stored := store.get(prepared.key, prepared.seed)) is None:
                raise RunNotStored(prepared, stack_label(prepared))
            return stored, False

        def train_it() -> RunResult:
            if not recompute:
                warn_of_other_stacks(prepared, store)
            return fine_tune(prepared, progress=progress)

        return store.get_or_compute(prepared.key, train_it, recompute=recompute, recipe_name=prepared.recipe.name,
                                    seed=prepared.seed)


def script_store(store):
    """The store a script's ``run`` or ``study`` uses: the one given, else ``$STABENCH_STORE`` where
    it is set (the store the CLI and pytest use), else None (nothing stored)."""
    return store if store is not None else os.environ.get("STABENCH_STORE") or None


def opened_store(store, must_exist: bool):
    """A store given by its path (see ``script_store``), opened for one call and closed after
    (``must_exist`` for a read, which creates no store); a Store or None as is."""
    store = script_store(store)
    if isinstance(store, (str, os.PathLike)):
        from .store import Store

        return Store(store, must_exist=must_exist)
    return contextlib.nullcontext(store)


def initial_model(prepared: PreparedRun) -> torch.nn.Module:
    """The model a run starts training from, on the CPU: the pretrained encoder, the head its
    seed draws, and the recipe's re-init, Mixout and hook, in that order (the seed's RNG stream)."""
    recipe = prepared.recipe
    transformers.set_seed(prepared.seed)  # head init, re-init and dropout masks follow the seed
    model = models.load_model(prepared.model, prepared.data.num_labels, recipe.dropout, recipe.attention)
    if recipe.reinit_layers:
        interventions.reinit_top_layers(model, recipe.reinit_layers)
    if recipe.mixout:
        interventions.apply_mixout(model, recipe.mixout)
    if recipe.hook is not None:  # the user's own change, before the optimizer sees the parameters
        hooks.apply(recipe.hook, model, recipe)
        if not any(param.requires_grad for param in model.parameters()):  # else torch's "does not require grad"
            raise ValueError(f"hook {recipe.hook!r} froze every parameter of the model, so nothing would train; "
                             f"leave at least the classification head trainable")
    return model


def fine_tune(prepared: PreparedRun, progress: Callable[[int, int], None] | None = None,
              return_model: bool = False):
    """Train with the recipe and evaluate; returns the RunResult (and the model if asked)."""
    recipe, device = prepared.recipe, torch.device(prepared.device)
    started_at, start = _now(), time.perf_counter()
    tokenizer = models.load_tokenizer(prepared.model)
    train_set, eval_set = data_lib.encode(prepared.data, tokenizer, recipe.max_length, recipe.token_types)

    model = initial_model(prepared)  # seeds the RNG, whose stream the dropout masks go on drawing
    data_lib.check_token_types((train_set, eval_set), model.config, prepared.model.name)
    model.to(device)
    model.train()

    total_steps = recipe.total_steps(len(train_set))
    optimizer = AdamW.for_recipe(_param_groups(model, recipe), recipe)
    scheduler = make_scheduler(optimizer, recipe.schedule, recipe.warmup, total_steps)
    order = data_lib.train_order(len(train_set), total_steps, recipe.batch_size,
                                 torch.Generator().manual_seed(prepared.seed))
    tracer = GradNormTracer(model)
    forward, replays_graphs = compiled_forward(model, recipe.compile, device)
    pad_id = tokenizer.pad_token_id or 0
    eval_points = _eval_points(recipe, total_steps, math.ceil(len(train_set) / recipe.batch_size))

    losses: list[torch.Tensor] = []
    trace_steps: list[int] = []
    trace_lr: list[float] = []
    evaluations: list[dict] = []
    diverged = False
    eval_seconds = 0.0  # dev evaluations inside the loop are not training time
    train_start = time.perf_counter()
    with matmul_precision(recipe.precision):
        for step, indices in enumerate(order, start=1):
            batch = {k: v.to(device, non_blocking=True) for k, v in
                     data_lib.collate(train_set, indices, pad_id, recipe.pad_to_multiple_of).items()}
            if replays_graphs:
                torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are dead
            with autocast(recipe.precision, device):
                loss = forward(**batch).loss
            loss.backward()
            traced = step == 1 or step % recipe.trace_every == 0 or step == total_steps
            if traced:
                tracer.record()  # before clipping, as in the paper
                trace_steps.append(step)
                trace_lr.append(max(scheduler.get_last_lr()))  # the recipe lr: the head's under layer-wise decay
            total_norm = (None if recipe.grad_clip is None else
                          torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip, foreach=True))
            if traced:
                tracer.record_total(tracer.total_norm() if total_norm is None else total_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach().clone() if replays_graphs else loss.detach())  # a graph's output is reused
            if traced and not bool(torch.isfinite(torch.stack(losses[-recipe.trace_every:])).all()):
                diverged = True
                break
            if progress is not None and traced:
                progress(step, total_steps)
            if step in eval_points:
                eval_start = _synced_clock(device)
                evaluations.append(_eval_record(step, model, eval_set, prepared.data, pad_id, device, recipe.precision))
                model.train()
                eval_seconds += time.perf_counter() - eval_start
        train_time = time.perf_counter() - train_start - eval_seconds
        steps_done = len(losses)
        evaluations.append(_eval_record(steps_done, model, eval_set, prepared.data, pad_id, device,
                                         recipe.precision))
    if recipe.hook is not None:
        check_unfrozen(model, optimizer, recipe.hook)

    # Scores, collapse and train loss all describe one checkpoint: the last, or the best evaluation.
    checkpoint = evaluations[-1]
    if recipe.checkpoint == "best" and not diverged:
        primary = prepared.data.task.primary_metric
        checkpoint = max(evaluations, key=lambda e: e[primary] if metrics.higher_is_better(primary) else -e[primary])
    loss_values = torch.stack(losses).float().cpu().tolist() if losses else []
    counts = checkpoint["prediction_counts"]
    chosen = {k: v for k, v in checkpoint.items() if k not in EVALUATION_FIELDS}
    chosen["train_loss"] = final_train_loss(loss_values[:checkpoint["step"]])

    result = RunResult(
        key=prepared.key, task={**prepared.task_info, **_task_record(prepared.data)},
        model={**prepared.model_info, "attn_implementation": getattr(model.config, "_attn_implementation", None),
               "num_parameters": sum(p.numel() for p in model.parameters())},
        recipe=dict(prepared.recipe_record), recipe_name=recipe.name, recipe_hash=prepared.recipe_hash,
        seed=prepared.seed,
        environment={**prepared.environment, "keyed_fields": keyed_fields(
            prepared.task_info, prepared.model_info, environment.key_fields(prepared.environment))},
        metrics=chosen, primary_metric=prepared.data.task.primary_metric,
        majority_accuracy=prepared.data.majority_accuracy,
        failed=fails(chosen["accuracy"], prepared.data.majority_accuracy, diverged),
        collapsed=sum(1 for c in counts if c) <= 1, diverged=diverged, steps=steps_done,
        wall_time_s=time.perf_counter() - start, steps_per_s=steps_done / train_time if train_time else 0.0,
        started_at=started_at, finished_at=_now(),
        trace={"loss": loss_values, "step": trace_steps, "lr": trace_lr, **tracer.to_lists(), "eval": evaluations,
               "train_loss_steps": train_loss_steps(checkpoint["step"])},
        prediction_counts={str(label): count for label, count in enumerate(counts)},
    )
    return (result, model) if return_model else result


def _task_record(data: TaskData) -> dict:
    """What the stored result says of the task beyond its key: the files, columns and labels."""
    task = data.task
    return {"description": task.description, "text_columns": list(task.text_columns),
            "label_column": task.label_column, "num_labels": data.num_labels,
            "label_names": data.label_names}


def check_compile(recipe: Recipe, device: str) -> None:
    """torch 2.4's compiled CPU kernels are built with -ffast-math: loading them turns on
    flush-to-zero for the process and the threads it starts then (pytorch issue 126848, fixed in
    2.5), so a run's numbers would depend on what its worker trained before."""
    if recipe.compile and torch.device(device).type == "cpu" and torch.__version__ < "2.5":
        raise ValueError(f"compile={recipe.compile!r} on a CPU needs torch 2.5 or newer, not {torch.__version__}: "
                         f"torch 2.4's compiled CPU kernels flush subnormal floats to zero for the whole process, "
                         f"so later runs in it would compute differently; leave compile out, or upgrade torch")


def compiled_forward(model: torch.nn.Module, mode: str | None, device: torch.device):
    """The module the training step calls, and whether its steps replay CUDA graphs.

    Shapes repeat when the recipe pads to length buckets; dynamo marks a dimension dynamic
    once it has seen it change, so a run compiles at most twice.  Evaluation stays eager.
    """
    if mode is None:
        return model, False
    dynamo = torch._dynamo.config
    for knob in ("recompile_limit", "cache_size_limit"):  # the name changed in torch 2.6
        if hasattr(dynamo, knob):
            setattr(dynamo, knob, max(getattr(dynamo, knob), 16))
    return torch.compile(model, mode=mode), mode == "reduce-overhead" and device.type == "cuda"


class GradNormTracer:
    """Per-layer gradient L2 norms (embeddings, each encoder layer, pooler, classifier), kept on device."""

    def __init__(self, model: torch.nn.Module):
        num_layers = getattr(model.config, "num_hidden_layers", 0)
        groups: dict[str, list[torch.nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                group = interventions.layer_group(name, num_layers, getattr(model.config, "model_type", None))
                groups.setdefault(group, []).append(param)
        self.names = sorted(groups, key=layer_order)
        self.params = [groups[name] for name in self.names]
        self.rows: list[torch.Tensor] = []
        self.totals: list[torch.Tensor] = []

    def record(self) -> None:
        norms = []
        for params in self.params:
            grads = [p.grad for p in params if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads
                         else torch.zeros((), device=params[0].device))
        self.rows.append(torch.stack(norms).float())

    def total_norm(self) -> torch.Tensor:
        """The global norm of the last recorded gradients (what clipping would have measured)."""
        return torch.linalg.vector_norm(self.rows[-1])

    def record_total(self, norm: torch.Tensor) -> None:
        self.totals.append(norm.detach().float().reshape(()))

    def to_lists(self) -> dict:
        if not self.rows:
            return {"grad_norm": {}, "grad_norm_total": []}
        table = torch.stack(self.rows).cpu()
        return {"grad_norm": {name: table[:, i].tolist() for i, name in enumerate(self.names)},
                "grad_norm_total": torch.stack(self.totals).cpu().tolist() if self.totals else []}


def check_unfrozen(model: torch.nn.Module, optimizer: torch.optim.Optimizer, hook: str) -> None:
    """Parameters a hook froze and something of its own unfroze during training were never
    trained: the optimizer was built without them.  Said rather than stored as if they had."""
    optimized = {id(param) for group in optimizer.param_groups for param in group["params"]}
    unfrozen = [name for name, param in model.named_parameters() if param.requires_grad and id(param) not in optimized]
    if unfrozen:
        shown = ", ".join(unfrozen[:3]) + (f" and {len(unfrozen) - 3} more" if len(unfrozen) > 3 else "")
        raise ValueError(f"hook {hook!r}: {shown} were frozen when the optimizer was built and trainable at the end, "
                         f"so they never trained; leave them trainable in the hook and drop their gradients until "
                         f"they unfreeze (README: Methods that act during training)")


def _param_groups(model: torch.nn.Module, recipe: Recipe) -> list[dict]:
    if recipe.layerwise_lr_decay < 1:
        return interventions.layerwise_lr_param_groups(model, recipe.lr, recipe.layerwise_lr_decay,
                                                       recipe.weight_decay)
    return decay_param_groups(model, recipe.weight_decay, recipe.lr)


def _eval_points(recipe: Recipe, total_steps: int, steps_per_epoch: int) -> set[int]:
    """Intermediate dev evaluations: every eval_every steps, or each epoch end when picking the best."""
    if recipe.eval_every:
        return set(range(recipe.eval_every, total_steps, recipe.eval_every))
    if recipe.checkpoint == "best":
        return set(range(steps_per_epoch, total_steps, steps_per_epoch))
    return set()


def _synced_clock(device: torch.device) -> float:
    """The time once the queued training steps have run, so they are not counted as evaluation."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _eval_record(step: int, model, encoded: data_lib.Encoded, task_data: TaskData, pad_id: int,
                 device: torch.device, precision: str) -> dict:
    """One dev evaluation as the trace stores it: step, metrics, how often each class was predicted
    and the batch size it ran at."""
    scores, predictions, batch_size = _evaluate(model, encoded, task_data, pad_id, device, precision)
    counts = torch.bincount(predictions, minlength=task_data.num_labels).tolist()
    return {"step": step, **scores, "prediction_counts": counts, "batch_size": batch_size}


def _evaluate(model, encoded: data_lib.Encoded, task_data: TaskData, pad_id: int, device: torch.device,
              precision: str) -> tuple[dict[str, float], torch.Tensor, int]:
    """Metrics on the evaluation split and the predictions, at the largest batch size that fits (returned)."""
    batch_size = EVAL_BATCH_SIZE.get(device.type, EVAL_BATCH_SIZE["cpu"])
    while True:
        try:
            predictions = _predict(model, encoded, pad_id, device, precision, batch_size)
            break
        except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError since torch 2.5
            if batch_size == 1:
                raise
            batch_size //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
    scores = metrics.compute(task_data.task.metrics, encoded.labels.tolist(), predictions.tolist())
    return scores, predictions, min(batch_size, len(encoded))


@torch.no_grad()
def _predict(model, encoded: data_lib.Encoded, pad_id: int, device: torch.device, precision: str,
             batch_size: int) -> torch.Tensor:
    """Predicted classes; batches sorted by length so padding is minimal."""
    model.eval()
    by_length = sorted(range(len(encoded)), key=lambda i: len(encoded.input_ids[i]))
    predictions = torch.empty(len(encoded), dtype=torch.long)
    for start in range(0, len(by_length), batch_size):
        indices = by_length[start:start + batch_size]
        batch = data_lib.collate(encoded, indices, pad_id)
        batch.pop("labels")
        inputs = {k: v.to(device) for k, v in batch.items()}
        with autocast(precision, device):
            logits = model(**inputs).logits.float()
        if precision == "bf16":
            logits = fp32_where_close(model, inputs, logits)
        predictions[indices] = logits.argmax(-1).cpu()
    return predictions


def fp32_where_close(model, inputs: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """Recompute in fp32 the rows whose bf16 prediction is a close call.

    This is the check that lets evaluation run in bf16 without changing a verdict: every
    prediction, hence every metric and every ``failed``, is the fp32 one as long as bf16's
    error on a logit stays under ``BF16_RECHECK_MARGIN`` of the logits' scale.
    """
    top_two = logits.topk(2, dim=-1).values
    close = top_two[:, 0] - top_two[:, 1] <= BF16_RECHECK_MARGIN * (1 + top_two.abs().max(-1).values)
    if close.any():
        with torch.autocast(logits.device.type, enabled=False):
            logits = logits.clone()
            logits[close] = model(**{k: v[close] for k, v in inputs.items()}).logits.float()
    return logits


@contextlib.contextmanager
def matmul_precision(precision: str):
    """The recipe's float32 matmul precision for one run, whatever the process had set: tf32 only
    when asked, full fp32 otherwise (bf16's fp32 parts too, such as the close-call recheck).  Set
    through the legacy setter, which leaves every getter working (some libraries still call the
    legacy ones); the previous settings are restored after."""
    previous = _matmul_settings()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        _restore_matmul_settings(previous)


def _matmul_settings() -> dict[str, str]:
    """The legacy setting (unless its getter raises: torch says so once a backend was set alone,
    e.g. ``torch.backends.cuda.matmul.fp32_precision = "tf32"`` as its deprecation warning
    advises) and each backend's, through torch's per-backend API where it exists (torch >= 2.9).
    Both are restored: torch keeps them apart, and its checks raise when they disagree."""
    settings = {}
    try:
        settings["legacy"] = torch.get_float32_matmul_precision()
    except RuntimeError:  # a mixed state: its legacy value as the cuBLAS getter still tells it, if it does
        try:
            settings["legacy"] = "high" if torch.backends.cuda.matmul.allow_tf32 else "highest"
        except RuntimeError:
            settings["legacy"] = "highest"
    if hasattr(torch.backends, "fp32_precision"):
        settings.update(cuda=torch.backends.cuda.matmul.fp32_precision,
                        mkldnn=torch.backends.mkldnn.matmul.fp32_precision)
    return settings


def _restore_matmul_settings(settings: dict[str, str]) -> None:
    torch.set_float32_matmul_precision(settings["legacy"])
    if "cuda" in settings:
        torch.backends.cuda.matmul.fp32_precision = settings["cuda"]
        torch.backends.mkldnn.matmul.fp32_precision = settings["mkldnn"]


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
