"""The paper's explanatory analyses (Mosbach et al., ICLR 2021, Sections 4 and 5) as functions.

Each function answers one question the paper asks about *why* fine-tuning fails, and works
on stored :class:`~stabench.result.RunResult` objects or on models, without pytest:

* Vanishing gradients (Fig. 4): :func:`vanishing_gradients`, :func:`gradient_summary`,
  :func:`example_runs`.
* Optimisation, not catastrophic forgetting (Fig. 2): :func:`collapsed_to_constant`,
  :func:`forgetting_curve`, :func:`masked_lm_perplexity`, :func:`load_masked_lm`,
  :func:`wikitext2_texts`.
* Generalisation, no overfitting (Fig. 5): :func:`generalisation_points`,
  :func:`overfitting_trend`.
* Loss surfaces (Fig. 6): :func:`loss_surface` (drawn by :func:`stabench.plots.plot_loss_surface`).

torch and numpy load with the module; transformers, datasets and scipy inside the functions that need them.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from .interventions import encoder_layers, layer_group
from .result import RunResult, check_traced, layer_order, runs_of
from .warn import warn

__all__ = [
    "GradientVerdict",
    "OverfittingTrend",
    "RandomMaskedLMWeights",
    "collapsed_to_constant",
    "example_runs",
    "forgetting_curve",
    "generalisation_points",
    "gradient_summary",
    "load_masked_lm",
    "loss_surface",
    "masked_lm_perplexity",
    "overfitting_trend",
    "vanishing_gradients",
    "wikitext2_texts",
]

_TINY = 1e-30  # floor for logs of norms / losses that are exactly zero


# ======================================================================================
# 1. Vanishing gradients
# ======================================================================================
@dataclass(frozen=True)
class GradientVerdict:
    """Did a run's gradients vanish early (Mosbach et al. Fig. 4)?  Numbers and thresholds used.

    ``vanished`` is ``drop <= 1/factor and not recovered and bottom_top_ratio <= max_ratio``
    (the last test is skipped when ``max_ratio`` is None; see ``vanishing_gradients`` for
    ALBERT and for layers whose norms fell to exactly zero).  ``layer_drops`` holds the same
    end/peak ratio as ``drop`` for every traced group (embeddings, each layer, pooler,
    classifier).
    """

    vanished: bool
    bottom_top_ratio: float  # geometric-mean bottom / top encoder-layer norm over the tail
    drop: float  # bottom-layer norm after the window (tail mean) / its peak in the window
    recovered: bool  # bottom-layer norm at the run's end (tail mean) >= start / recover_factor
    start: float  # bottom-layer norm at the window's first trace point
    peak: float  # ... its largest value in the window
    end: float  # ... geometric mean over the tail (`tail` trace points from the window's last on)
    final: float  # ... geometric mean over the run's last `tail` trace points
    window: tuple[int, int]  # first and last trace step inside the window
    n_points: int  # trace points inside the window
    bottom: str
    top: str
    layer_drops: dict[str, float] = field(default_factory=dict, hash=False)
    factor: float = 100.0
    max_ratio: float | None = 0.1
    recover_factor: float = 10.0
    tail: int = 3


def _encoder_layer_names(grad_norm: Mapping[str, Any]) -> list[str]:
    """The traced encoder layers, bottom to top."""
    return sorted((name for name in grad_norm if layer_order(name)[0] == 1), key=layer_order)


def vanishing_gradients(result: RunResult, early: tuple[int, int] = (1, 100), factor: float = 100.0,
                        max_ratio: float | None = 0.1, recover_factor: float = 10.0, tail: int = 3) -> GradientVerdict:
    """Decide from a run's stored gradient-norm trace whether its gradients vanished early.

    Supports the claim "failed runs suffer from vanishing gradients: the gradient norms of
    all layers but the classifier fall by orders of magnitude early in training and stay
    low, the bottom layers most" (Mosbach et al. Sec. 5.1, Fig. 4).

    The window is the trace points with ``early[0] <= step <= early[1]`` (at least two
    are needed; start it at the first step so the fall is measured from the pretrained
    model).  Its *tail* is ``tail`` trace points from the window's last one on: the level the
    norm settled at, so a collapse at the window's very end counts and a dip that is over by the
    next trace point does not.  When the run ends sooner, the tail is the run's last ``tail``
    points (never the window's first).  On the bottom encoder layer (``layer.0``):

    * ``drop``: geometric-mean norm over the tail / the largest norm in the window.  From the
      peak, not the first point, because collapsing runs often rise first: in MiniLM runs
      without bias correction, layer 0 rose 2x to 75x during warmup and then fell 1000x.  The
      default ``factor=100`` ("orders of magnitude") asks for ``drop <= 1/100``.
    * ``recovered``: the geometric-mean norm over the run's last ``tail`` trace points is back
      within ``recover_factor`` (default 10x) of the window's first point; a vanished run
      must not have recovered ("stayed low").
    * ``bottom_top_ratio``: geometric-mean bottom-layer norm / geometric-mean top-layer norm
      over the tail, after the fall (a whole-window mean dilutes a late collapse with the
      healthy steps before it).  The default ``max_ratio=0.1`` separates a collapse
      (bottom layers starve) from a run whose gradients all shrink together because its
      loss went to zero; pass ``max_ratio=None`` to decide on ``drop`` alone.

    A successful run's norms swing widely between trace points (up to 1000x in the offline
    demo), so a single spike can make its drop look large; the recovery and bottom/top tests
    are what keep it out, so think twice before turning them off.

    A non-finite norm in the window (a diverged run) gives NaN numbers and no verdict of
    vanishing.  A model whose layers share one weight group (ALBERT) has no bottom/top
    contrast: its ``bottom_top_ratio`` is NaN and the verdict rests on ``drop`` alone.  When the
    bottom and top layers' norms both fell to exactly zero, the ratio is NaN too, and the run's
    gradients vanished only if the classifier's did not (``layer_drops['classifier'] > 1/factor``).
    """
    if not isinstance(result, RunResult):
        raise TypeError(f"vanishing_gradients takes one RunResult, not {type(result).__name__}; for a study's runs "
                        f"use gradient_summary(study)")
    from .stats import check_number

    if not (isinstance(early, (Sequence, np.ndarray)) and len(early) == 2
            and all(isinstance(s, Integral) for s in early)):
        raise ValueError(f"early={early!r} is invalid; expected a window of trace steps (first, last), e.g. (1, 100)")
    lo, hi = early
    if lo > hi:
        raise ValueError(f"early={early!r}: the window's first step must not exceed its last")
    for name, value in (("factor", factor), ("recover_factor", recover_factor)):  # NaN: never "vanished"
        check_number(name, value, "a finite number > 1, e.g. 100", lambda x: 1 < x < math.inf)
    if max_ratio is not None:
        check_number("max_ratio", max_ratio, "a finite number > 0, e.g. 0.1, or None", lambda x: 0 < x < math.inf)
    if isinstance(tail, bool) or not isinstance(tail, Integral) or tail < 1:
        raise ValueError(f"tail={tail!r} is invalid; expected a number of trace points >= 1")
    check_traced(result, "vanishing_gradients: ")
    trace = result.trace
    grad_norm = trace.get("grad_norm") or {}
    steps = list(trace.get("step") or [])
    layers = _encoder_layer_names(grad_norm)
    if not layers:
        raise ValueError(f"run {result.key!r} (seed {result.seed}) has no per-layer gradient-norm trace; "
                         f"expected trace['grad_norm'] with 'layer.<i>' entries, found groups "
                         f"{', '.join(grad_norm) or 'none'} (a model whose layers stabench does not recognise "
                         f"traces them as 'other')")
    if not steps:
        raise ValueError(f"run {result.key!r} (seed {result.seed}) has a gradient-norm trace without its steps; "
                         f"expected trace['step'], the step of each trace point")
    bottom, top = layers[0], layers[-1]
    for name, norms in grad_norm.items():
        if len(norms) != len(steps):
            raise ValueError(f"trace['grad_norm'][{name!r}] has {len(norms)} points but trace['step'] has "
                             f"{len(steps)}")
    inside = [i for i, s in enumerate(steps) if lo <= s <= hi]
    if len(inside) < 2:
        raise ValueError(f"the window early={early!r} holds {len(inside)} trace point(s) of run {result.key!r} "
                         f"(trace steps {steps[:3]}...{steps[-3:]}); widen the window or trace more often "
                         f"(recipe trace_every)")
    # The level after the fall: from the window's last point on (a collapse at the window's very end
    # counts), or the run's last points when it ends sooner; never the window's first point.
    tail_start = max(inside[0] + 1, min(inside[-1], len(steps) - tail))
    window_tail = list(range(tail_start, min(tail_start + tail, len(steps))))
    run_tail = list(range(len(steps)))[-tail:]
    norms = {name: np.asarray(values, dtype=float) for name, values in grad_norm.items()}
    b, t = norms[bottom], norms[top]

    def log_mean(values: np.ndarray, at: list[int]) -> float:
        points = values[at]
        if not np.isfinite(points).all():
            return math.nan
        return float(np.mean(np.log10(np.maximum(points, _TINY))))

    def peak_of(values: np.ndarray) -> float:
        points = values[inside]
        return float(points.max()) if np.isfinite(points).all() else math.nan

    def drop_of(values: np.ndarray) -> float:
        end, peak = 10.0 ** log_mean(values, window_tail), peak_of(values)
        if not (math.isfinite(end) and math.isfinite(peak)):
            return math.nan
        return end / max(peak, _TINY)

    start, peak = float(b[inside[0]]), peak_of(b)
    end, final = 10.0 ** log_mean(b, window_tail), 10.0 ** log_mean(b, run_tail)
    drop = drop_of(b)
    shared = bottom == top  # ALBERT: one layer group serves every layer
    recovered = bool(math.isfinite(final) and math.isfinite(start) and final >= start / recover_factor)
    layer_drops = {name: drop_of(values) for name, values in norms.items()}
    # Bottom and top both exactly zero (say a saturated pooler after a huge lr): 0/0 is no ratio of
    # 1.  Gradient still reaching the classifier and dying below it is vanishing; a classifier whose
    # gradient died too means the loss itself went to zero, which is not.
    dead = not shared and max(end, 10.0 ** log_mean(t, window_tail)) <= _TINY
    bottom_top = math.nan if shared or dead else 10.0 ** (log_mean(b, window_tail) - log_mean(t, window_tail))
    if max_ratio is None:
        contrast = True
    elif dead:
        contrast = layer_drops.get("classifier", 0.0) > 1.0 / factor
    else:
        contrast = shared or bottom_top <= max_ratio
    vanished = bool(drop <= 1.0 / factor and not recovered and contrast)
    return GradientVerdict(vanished=vanished, bottom_top_ratio=float(bottom_top), drop=drop, recovered=recovered,
                           start=start, peak=peak, end=end, final=final,
                           window=(int(steps[inside[0]]), int(steps[inside[-1]])), n_points=len(inside),
                           bottom=bottom, top=top, layer_drops=layer_drops, factor=factor, max_ratio=max_ratio,
                           recover_factor=recover_factor, tail=tail)


def gradient_summary(results, **verdict_options) -> dict[str, Any]:
    """Per-seed vanishing-gradient numbers of a study, split into failed and successful runs.

    Supports the contrast of Fig. 4: failed runs have vanished bottom-layer gradients
    (small bottom/top ratio), successful ones do not.  ``results`` is a Study or a list of
    RunResults; ``verdict_options`` go to :func:`vanishing_gradients`.  ``separated`` is True
    when every failed run's bottom/top ratio is below every successful run's (None when one
    group is empty).  ``recipes`` and ``keys`` tell apart runs of several arms with one seed.
    """
    options = list(inspect.signature(vanishing_gradients).parameters)[1:]
    if unknown := sorted(set(verdict_options) - set(options)):
        raise TypeError(f"gradient_summary: unknown option(s) {', '.join(map(repr, unknown))}; it takes "
                        f"vanishing_gradients' {', '.join(options)}")
    groups: dict[str, dict[str, list]] = {
        label: {"seeds": [], "recipes": [], "keys": [], "bottom_top_ratio": [], "drop": [], "vanished": [],
                "recovered": []}
        for label in ("failed", "successful")}
    for result in runs_of(results, "gradient_summary: "):
        verdict = vanishing_gradients(result, **verdict_options)
        group = groups["failed" if result.failed else "successful"]
        group["seeds"].append(result.seed)
        group["recipes"].append(result.recipe_name)
        group["keys"].append(result.key)
        group["bottom_top_ratio"].append(verdict.bottom_top_ratio)
        group["drop"].append(verdict.drop)
        group["vanished"].append(verdict.vanished)
        group["recovered"].append(verdict.recovered)
    failed, ok = groups["failed"]["bottom_top_ratio"], groups["successful"]["bottom_top_ratio"]
    comparable = failed and ok and all(math.isfinite(x) for x in failed + ok)
    separated = (max(failed) < min(ok)) if comparable else None
    return {
        **groups,
        "n_failed": len(failed),
        "n_successful": len(ok),
        "vanished_in_failed": sum(groups["failed"]["vanished"]),
        "vanished_in_successful": sum(groups["successful"]["vanished"]),
        "max_failed_ratio": max(failed) if failed else None,
        "min_successful_ratio": min(ok) if ok else None,
        "separated": separated,
    }


def example_runs(results) -> dict[str, RunResult]:
    """A failed and a successful run to show side by side, as in Fig. 4.

    The failed run is the one whose bottom encoder layer lost the most gradient norm over the
    whole run, and the successful run is the one that lost the least. Runs without a finite
    trace are picked only when no other run has one. A label is left out when it has no run.
    """
    def bottom_layer_drop(result: RunResult) -> float:
        grad_norm = (result.trace or {}).get("grad_norm") or {}
        layers = _encoder_layer_names(grad_norm)
        norms = grad_norm.get(layers[0] if layers else "embeddings") or []
        return norms[-1] / norms[0] if norms and norms[0] else math.nan

    runs = runs_of(results, "example_runs: ")
    examples = {}
    for label, group, pick in (("failed", [r for r in runs if r.failed], min),
                               ("successful", [r for r in runs if not r.failed], max)):
        traced = [r for r in group if math.isfinite(bottom_layer_drop(r))]
        if traced:
            examples[label] = pick(traced, key=bottom_layer_drop)
        elif group:
            examples[label] = group[0]
    return examples


# ======================================================================================
# 2. Optimisation, not forgetting
# ======================================================================================
def collapsed_to_constant(result: RunResult, tolerance: float = 0.05, reference_loss: float | None = None) -> bool:
    """True when a run predicts a single class and its final training loss sits at chance.

    Supports "failed runs are stuck at the loss of a constant predictor, so the failure is
    an optimisation problem, not forgetting" (Mosbach et al. Sec. 4.1, Fig. 2b): all dev
    predictions fall in one class *and* the final training loss (``metrics['train_loss']``,
    the median of the last 10 step losses) is within ``tolerance`` of
    ``reference_loss``, by default ln(num_labels), the loss of uniform logits.  For an
    imbalanced training set the best constant predictor reaches the label entropy instead;
    pass it as ``reference_loss``.
    """
    counts = [int(c) for c in (result.prediction_counts or {}).values()]
    if not counts:
        raise ValueError(f"run {result.key!r} has no prediction_counts")
    one_class = sum(1 for c in counts if c > 0) <= 1
    loss = (result.metrics or {}).get("train_loss")
    if loss is None:
        losses = (result.trace or {}).get("loss") or []
        loss = losses[-1] if losses else math.nan
    target = math.log(len(counts)) if reference_loss is None else reference_loss
    return bool(one_class and math.isfinite(loss) and abs(loss - target) <= tolerance)


def wikitext2_texts(limit: int | None = None) -> list[str]:
    """Non-empty, non-heading lines of the WikiText-2 (raw) test split, the paper's MLM text.

    Needs the ``datasets`` package and Hugging Face hub access (or a warm datasets cache);
    raises RuntimeError otherwise, e.g. on the offline CPU machines and the GPU image
    (which has no ``datasets``).
    """
    try:
        import datasets

        split = datasets.load_dataset("Salesforce/wikitext", "wikitext-2-raw-v1", split="test")
    except Exception as error:  # ImportError, offline hub, missing cache, ...
        raise RuntimeError(
            "WikiText-2 is unavailable here (needs the 'datasets' package and access to the Hugging Face hub "
            f"for Salesforce/wikitext, wikitext-2-raw-v1): {type(error).__name__}: {str(error).splitlines()[0]}"
            " -- pass your own texts to forgetting_curve instead") from error
    texts = []
    for text in split["text"]:
        text = text.strip()
        if text and not (text.startswith("=") and text.endswith("=")):
            texts.append(text)
            if limit is not None and len(texts) >= limit:
                break
    return texts


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers_logging.set_verbosity(verbosity)


class RandomMaskedLMWeights(UserWarning):
    """A checkpoint without its masked-LM head (a sentence encoder such as the built-in MiniLM, or a
    classifier's save): the head is drawn at random, so its perplexities say nothing about forgetting."""


def load_masked_lm(pretrained_model_path: str, seed: int = 0) -> nn.Module:
    """``AutoModelForMaskedLM`` from a checkpoint, in eval mode, transformers' own warnings silenced.

    Weights the checkpoint lacks (e.g. the MLM head of a checkpoint saved from a
    classifier, like the tiny test BERT) are initialised under ``torch.manual_seed(seed)``
    without touching the global RNG, so two loads give the same model, and named in a
    :class:`RandomMaskedLMWeights` warning.
    """
    from transformers import AutoModelForMaskedLM

    from .models import check_torch_usable

    check_torch_usable()
    with _quiet_transformers(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, loading = AutoModelForMaskedLM.from_pretrained(pretrained_model_path, output_loading_info=True)
    missing = sorted(loading["missing_keys"])
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        warn(f"{pretrained_model_path} has no weights for {', '.join(missing[:3])}{more}: they were drawn "
             f"at random, so masked-LM perplexities on it (and forgetting curves) measure a random head, "
             f"not what fine-tuning forgot; use a checkpoint saved with its masked-LM head, such as "
             f"bert-large-uncased", RandomMaskedLMWeights)
    return model.eval()


def _mask_plan(tokenizer, texts: Sequence[str], mask_prob: float, seed: int, max_length: int):
    """Token ids per text and, per text, the positions to mask (fixed by ``seed``)."""
    if not 0 < mask_prob <= 1:
        raise ValueError(f"mask_prob={mask_prob!r} must be in (0, 1]")
    if tokenizer.mask_token_id is None:
        raise ValueError("the tokenizer has no [MASK] token; masked-LM perplexity needs one")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("no non-empty eval texts")
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True)
    generator = torch.Generator().manual_seed(seed)
    plan = []
    for ids, special in zip(encoded["input_ids"], encoded["special_tokens_mask"]):
        ids = torch.tensor(ids, dtype=torch.long)
        candidates = torch.tensor([i for i, s in enumerate(special) if not s], dtype=torch.long)
        if candidates.numel() == 0:
            continue
        chosen = torch.rand(candidates.numel(), generator=generator) < mask_prob
        if not chosen.any():  # every text contributes at least one masked token
            chosen[torch.randint(candidates.numel(), (1,), generator=generator)] = True
        plan.append((ids, candidates[chosen]))
    if not plan:
        raise ValueError("the eval texts hold no maskable (non-special) tokens")
    return plan


@torch.no_grad()
def _plan_perplexity(model: nn.Module, plan, mask_id: int, pad_id: int, batch_size: int) -> float:
    device = next(model.parameters()).device
    total, count = 0.0, 0
    order = sorted(range(len(plan)), key=lambda i: len(plan[i][0]))
    for start in range(0, len(order), batch_size):
        rows = [plan[i] for i in order[start:start + batch_size]]
        longest = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), longest), dtype=torch.long)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        for r, (ids, positions) in enumerate(rows):
            input_ids[r, :len(ids)] = ids
            attention[r, :len(ids)] = 1
            labels[r, positions] = ids[positions]
            input_ids[r, positions] = mask_id
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.to(device).flatten(),
                                                 ignore_index=-100, reduction="sum")
        total += float(loss.double())
        count += int((labels != -100).sum())
    return math.exp(total / count)


def masked_lm_perplexity(model: nn.Module, texts: Sequence[str], tokenizer, mask_prob: float = 0.15,
                         seed: int = 0, batch_size: int = 32, max_length: int = 128) -> float:
    """Masked-LM perplexity: exp(mean cross-entropy over masked tokens).

    Each text is tokenised (truncated to ``max_length``); ``mask_prob`` of its non-special
    tokens (at least one) are chosen with a generator seeded by ``seed`` and all replaced by
    [MASK] (no 80/10/10 split), so the same texts and seed mask the same positions for every
    model.  The model is evaluated in eval mode on its own device.
    """
    plan = _mask_plan(tokenizer, texts, mask_prob, seed, max_length)
    was_training = model.training
    model.eval()
    try:
        return _plan_perplexity(model, plan, tokenizer.mask_token_id, tokenizer.pad_token_id or 0, batch_size)
    finally:
        model.train(was_training)


def forgetting_curve(pretrained_model_path: str, finetuned_model: nn.Module, eval_texts: Sequence[str], tokenizer,
                     ks: Iterable[int], mask_prob: float = 0.15, seed: int = 0, batch_size: int = 32,
                     max_length: int = 128, head_seed: int = 0) -> list[tuple[int, float]]:
    """MLM perplexity of the fine-tuned model with its top-k layers reset to the pretrained ones.

    Supports "failed runs forget, but only in the top layers" (Mosbach et al. Sec. 4.1,
    Fig. 2a): for each k, the fine-tuned encoder with the weights of its top k encoder
    layers replaced by their pretrained values, under the pretrained MLM head, is scored by
    :func:`masked_lm_perplexity` on ``eval_texts`` (the same masked positions for every k).
    Forgetting concentrated in the top layers shows as the perplexity falling back to the
    pretrained value after a few k.

    k runs over 0..L+1 for an L-layer encoder: k = 0 is the fine-tuned encoder, k = L
    replaces every encoder layer but keeps the fine-tuned embeddings, and k = L+1 also
    restores the embeddings and every other weight of the encoder (DeBERTa's relative position
    embeddings, a final norm), i.e. is exactly the pretrained model.  (The paper counts
    layers only; BERT's MLM decoder is tied to the word embeddings, so at k = L the head
    reads the fine-tuned embedding matrix.)  The MLM head (transform and bias) is always the
    pretrained one; weights the checkpoint lacks are initialised from ``head_seed``.  The
    fine-tuned model is not modified; its pooler and classifier are ignored.

    Returns ``[(k, perplexity), ...]`` in the order of ``ks``.
    """
    ks = [int(k) for k in ks]
    mlm = load_masked_lm(pretrained_model_path, seed=head_seed)
    base = mlm.base_model
    num_layers = len(encoder_layers(base))
    bad = [k for k in ks if not 0 <= k <= num_layers + 1]
    if bad:
        raise ValueError(f"ks={bad} out of range: the encoder has {num_layers} layers, so k must be in "
                         f"0..{num_layers + 1} ({num_layers + 1} also restores the embeddings)")
    pretrained = {name: value.detach().clone() for name, value in base.state_dict().items()}
    finetuned_state = getattr(finetuned_model, "base_model", finetuned_model).state_dict()
    missing = [name for name in pretrained if name not in finetuned_state]
    mismatched = [name for name in pretrained if name in finetuned_state
                  and finetuned_state[name].shape != pretrained[name].shape]
    if missing or mismatched:
        raise ValueError(f"the fine-tuned model does not match {pretrained_model_path!r}: missing "
                         f"{missing[:5]}, shape mismatch {mismatched[:5]}")
    device = next(finetuned_model.parameters()).device
    mlm.to(device)
    groups = {name: layer_group(name, num_layers, getattr(base.config, "model_type", None)) for name in pretrained}
    plan = _mask_plan(tokenizer, eval_texts, mask_prob, seed, max_length)
    curve = []
    for k in ks:
        reset = {f"layer.{i}" for i in range(num_layers - min(k, num_layers), num_layers)}
        state = {name: (pretrained[name] if k > num_layers or groups[name] in reset
                        else finetuned_state[name].detach()) for name in pretrained}
        base.load_state_dict(state, strict=True)
        curve.append((k, _plan_perplexity(mlm, plan, tokenizer.mask_token_id, tokenizer.pad_token_id or 0,
                                          batch_size)))
    return curve


# ======================================================================================
# 3. Generalisation, not overfitting
# ======================================================================================
def generalisation_points(results, successful_only: bool = False) -> list[tuple[float, float]]:
    """``(final train loss, dev accuracy)`` per run, for the scatter of Mosbach et al. Fig. 5.

    The train loss is ``metrics['train_loss']`` (median of the last 10 step losses,
    ``train.final_train_loss``); the accuracy is the evaluated checkpoint's dev accuracy.  ``results`` is a Study
    or a list of RunResults.
    """
    runs = runs_of(results, "generalisation_points: ")
    return [(float(r.metrics["train_loss"]), float(r.metrics["accuracy"])) for r in runs
            if not (successful_only and r.failed)]


@dataclass(frozen=True)
class OverfittingTrend:
    """Relation between log10 final train loss and dev accuracy over successful runs."""

    rho: float  # Spearman correlation of (log10 train loss, dev accuracy)
    p: float  # its two-sided p-value
    n: int  # successful runs used
    slope: float  # least-squares dev accuracy per decade of train loss
    slope_ci: tuple[float, float]  # its (1 - 2 alpha) confidence interval
    flat: bool  # the whole slope_ci lies within +-tolerance
    overfits: bool  # rho > 0 and p < alpha: lower train loss goes with lower dev accuracy
    loss_decades: float  # log10(max train loss / min train loss) over the runs used
    intercept: float  # the least-squares line's dev accuracy at train loss 1 (log10 loss 0)
    log10_loss: tuple[float, float]  # the lowest and highest log10 train loss of the runs used: the line's ends
    tolerance: float
    alpha: float

    @property
    def improves(self) -> bool:
        """rho < 0 and p < alpha: lower train loss goes with *higher* dev accuracy (no overfitting either)."""
        return self.rho < 0 and self.p < self.alpha

    @property
    def verdict(self) -> str:
        """"overfits", "flat", "improves" (lower loss, higher accuracy), or "inconclusive" when the
        runs show none of these."""
        return ("overfits" if self.overfits else "flat" if self.flat else "improves" if self.improves
                else "inconclusive")

    def __str__(self) -> str:
        """What an assertion's message says: the verdict and the numbers it rests on."""
        low, high = self.slope_ci
        # flat is an equivalence test, overfits and improves a correlation: both may hold, and the message says so
        verdict = (f"{self.verdict}, within the tolerance" if self.flat and self.overfits else
                   "flat, improving within the tolerance" if self.flat and self.improves else self.verdict)
        return (f"{verdict}: dev accuracy {self.slope:+.3g} per decade of final train loss (CI {low:+.3g} to "
                f"{high:+.3g}; flat needs it within +-{self.tolerance:g}), Spearman rho {self.rho:.2f} "
                f"(p={self.p:.2g}), over {self.n} successful runs whose losses span {self.loss_decades:.2f} decades")


def overfitting_trend(results, tolerance: float = 0.01, alpha: float = 0.05) -> OverfittingTrend:
    """Does a lower final training loss come with a lower dev accuracy?  (It should not.)

    Supports "fine-tuning does not overfit: across successful runs dev accuracy stays flat
    while the training loss goes from 1e-1 to 1e-5" (Mosbach et al. Sec. 5.2, Fig. 5).
    Over the runs that did not fail: Spearman's rho and p between log10(train loss) and dev
    accuracy (``scipy.stats.spearmanr``; p exact by permutation for up to 8 runs), and the
    least-squares slope of accuracy against log10(train loss) (``scipy.stats.linregress``).
    ``overfits`` is a significant *positive* rho (the lower the loss, the lower the accuracy)
    at level ``alpha``.  ``flat`` is an equivalence test: the slope's (1 - 2 alpha) confidence
    interval lies within ``+-tolerance``, default 0.01 accuracy (one point) per decade of
    loss.  A slope that is
    merely small is not enough: a few runs over a narrow range of losses give a wide interval,
    and then ``verdict`` is "inconclusive".  The slope's standard error is floored at what
    rounding accuracy to whole dev examples (``task['n_eval']``) leaves unknown, so tied
    accuracies are not an exactly flat slope (without ``n_eval``, tied accuracies are
    inconclusive).  ``loss_decades`` says how wide a range of losses the verdict rests on: the
    paper's spans about four decades.  Losses are floored at 1e-30 before the log.  The runs
    are of one task (their dev accuracies share a scale); runs of several recipes are how the
    losses come to span decades.
    """
    from scipy import stats

    from .stats import check_number

    # alpha=0.95 (a confidence level) inverted the interval, and any slope was "flat"
    check_number("overfitting_trend alpha", alpha, "a level in (0, 0.5), e.g. 0.05", lambda a: 0 < a < 0.5)
    check_number("overfitting_trend tolerance", tolerance, "a finite slope >= 0, e.g. 0.01",
                 lambda t: 0 <= t < math.inf)
    runs = runs_of(results, "overfitting_trend: ")  # once: results may be a generator
    tasks = sorted({str((r.task or {}).get("name")) for r in runs})
    if len(tasks) > 1:
        raise ValueError(f"overfitting_trend: the runs are of {len(tasks)} tasks ({', '.join(tasks)}), whose dev "
                         f"accuracies share no scale; pass the runs of one task")
    points = generalisation_points(runs, successful_only=True)
    points = [(loss, acc) for loss, acc in points if math.isfinite(loss) and math.isfinite(acc)]
    # Accuracy moves in steps of one dev example, so no spread of scores is ever known more
    # finely than that step's rounding noise (1/sqrt(12) of a step): without it, tied accuracies
    # would make any three runs look exactly flat.
    n_eval = [r.task.get("n_eval") for r in runs if not r.failed]
    step = 1.0 / min(n_eval) if n_eval and all(isinstance(n, int) and n > 0 for n in n_eval) else math.nan
    if len(points) < 3:
        raise ValueError(f"overfitting_trend needs at least 3 successful runs with finite losses, got {len(points)}")
    x = np.log10(np.maximum([loss for loss, _ in points], _TINY))
    y = np.asarray([acc for _, acc in points], dtype=float)
    if np.ptp(x) == 0:
        raise ValueError("all successful runs ended at the same training loss; no trend can be estimated")
    fit = stats.linregress(x, y)
    floor = step / math.sqrt(12) / math.sqrt(float(np.sum((x - x.mean()) ** 2)))  # NaN without n_eval
    if math.isfinite(floor):  # exactly tied accuracies fit with no residual; scipy gives NaN for their stderr
        stderr = max(0.0 if np.ptp(y) == 0 else float(fit.stderr), floor)
    else:  # tied accuracies of unknown resolution give no interval at all
        stderr = math.nan if np.ptp(y) == 0 else fit.stderr
    half_width = float(stats.t.ppf(1 - alpha, len(points) - 2) * stderr)
    slope_ci = (float(fit.slope) - half_width, float(fit.slope) + half_width)
    if np.ptp(y) == 0:
        rho, p = 0.0, 1.0  # constant accuracy: no relation at all (spearmanr would return NaN)
    else:
        rho, p = _spearman(x, y)
    return OverfittingTrend(rho=rho, p=p, n=len(points), slope=float(fit.slope), slope_ci=slope_ci,
                            flat=bool(-tolerance <= slope_ci[0] and slope_ci[1] <= tolerance),
                            overfits=bool(rho > 0 and p < alpha), loss_decades=float(np.ptp(x)),
                            intercept=float(fit.intercept), log10_loss=(float(x.min()), float(x.max())),
                            tolerance=tolerance, alpha=alpha)


_EXACT_SPEARMAN_UP_TO = 8  # 8! = 40,320 orderings, a tenth of a second


def _spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman's rho and its two-sided p; exact over every ordering of up to 8 runs, where the
    t approximation of ``scipy.stats.spearmanr`` is far too liberal (it gives p = 0 for any
    three runs in order, whose exact p is 1/3).  Two-sided is |rho| at least as large: with
    tied accuracies rho's distribution is not symmetric, and doubling one tail overstates p."""
    from scipy import stats

    if len(x) > _EXACT_SPEARMAN_UP_TO:
        test = stats.spearmanr(x, y)
        return float(test.statistic), float(test.pvalue)
    x_ranks, y_ranks = stats.rankdata(x), stats.rankdata(y)
    y_centred = y_ranks - y_ranks.mean()

    def rho(ranks: np.ndarray, axis: int = -1) -> np.ndarray:
        centred = ranks - ranks.mean(axis=axis, keepdims=True)
        return (centred * y_centred).sum(axis=axis) / np.sqrt((centred ** 2).sum(axis=axis) * (y_centred ** 2).sum())

    test = stats.permutation_test((x_ranks,), lambda ranks, axis=-1: np.abs(rho(ranks, axis)), alternative="greater",
                                  permutation_type="pairings", n_resamples=np.inf, vectorized=True)
    return float(rho(x_ranks)), float(test.pvalue)


# ======================================================================================
# 4. Loss surface
# ======================================================================================
def _parameter_names(model: nn.Module) -> list[tuple[str, torch.Size]]:
    return [(name, p.shape) for name, p in model.named_parameters()]


def _loss_and_grad_norm(model: nn.Module, batches: Sequence[Mapping[str, torch.Tensor]], device,
                        with_grad: bool) -> tuple[float, float]:
    """Example-weighted mean training loss over the batches, and the norm of its gradient."""
    sizes = [int(batch["labels"].shape[0]) for batch in batches]
    total_examples = sum(sizes)
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    total = 0.0
    for batch, size in zip(batches, sizes):
        inputs = {k: v.to(device) for k, v in batch.items()}
        with torch.set_grad_enabled(with_grad):
            loss = model(**inputs).loss
        total += float(loss.detach().double()) * size / total_examples
        if with_grad:
            (loss * (size / total_examples)).backward()
    if not with_grad:
        return total, math.nan
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.double()) for g in grads])))
    model.zero_grad(set_to_none=True)
    return total, norm


def loss_surface(pretrained: nn.Module, failed: nn.Module, successful: nn.Module,
                 batches: Sequence[Mapping[str, torch.Tensor]], grid: tuple[int, int] = (15, 15),
                 margin: float = 0.2, grad_norm: bool = True) -> dict[str, Any]:
    """Training loss (and its gradient norm) on the plane through θ_pre, θ_failed, θ_success.

    Supports "failed runs end in a region of the loss surface separated from the pretrained
    model's basin, not at a sharp minimum" (Mosbach et al. Sec. 5.1, Fig. 6).  The plane is
    θ(α, β) = θ_pre + α·u + β·v with u = (θ_f − θ_p)/‖θ_f − θ_p‖ and v the Gram-Schmidt
    orthonormalised θ_s − θ_p, so the three models sit at (0, 0), (‖θ_f − θ_p‖, 0) and
    (⟨θ_s − θ_p, u⟩, ‖θ_s − θ_p − ⟨θ_s − θ_p, u⟩u‖).  The grid spans the three points plus
    ``margin`` times their extent on each side, ``grid = (n_alpha, n_beta)`` points.

    All three models must have the same parameters (names and shapes).  The vectors come
    from ``parameters_to_vector`` (the basis is held in float64) and are written into a
    scratch deep copy of ``pretrained`` in eval mode (no dropout); its buffers and classifier
    architecture are the pretrained model's, so pass as ``pretrained`` the pretrained
    encoder with the classification head you want at θ_p (e.g. the head initialised by the
    failed or successful run's seed).  The loss is the example-weighted mean of
    ``model(**batch).loss`` over ``batches`` (collated batches with ``labels``), its
    gradient norm the L2 norm over all parameters (skipped, NaN, with ``grad_norm=False``).

    Returns a dict: ``alpha`` (n_alpha,), ``beta`` (n_beta,), ``loss`` and ``grad_norm``
    (n_beta, n_alpha) numpy arrays indexed [beta, alpha]; ``points``: for "pretrained",
    "failed", "successful", ``{"coords": (α, β), "loss", "grad_norm"}`` evaluated at exactly
    those coordinates of the plane; ``distances`` ‖θ_f − θ_p‖, ‖θ_s − θ_p‖; ``n_examples``.
    """
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    if not batches:
        raise ValueError("loss_surface needs at least one batch")
    if len(grid) != 2 or min(grid) < 2:
        raise ValueError(f"grid={grid!r} must be two sizes >= 2")
    if margin < 0:
        raise ValueError(f"margin={margin!r} must be >= 0")
    reference = _parameter_names(pretrained)
    for label, model in (("failed", failed), ("successful", successful)):
        if _parameter_names(model) != reference:
            raise ValueError(f"the {label} model's parameters (names/shapes) differ from the pretrained model's")

    scratch = copy.deepcopy(pretrained).eval()
    device = next(scratch.parameters()).device
    with torch.no_grad():
        theta_p = parameters_to_vector(pretrained.parameters()).detach().to(device, torch.float64)
        delta_f = parameters_to_vector(failed.parameters()).detach().to(device, torch.float64) - theta_p
        delta_s = parameters_to_vector(successful.parameters()).detach().to(device, torch.float64) - theta_p
        dist_f = float(torch.linalg.vector_norm(delta_f))
        dist_s = float(torch.linalg.vector_norm(delta_s))
        if dist_f == 0:
            raise ValueError("the failed model equals the pretrained model: the plane is undefined")
        u = delta_f / dist_f
        del delta_f
        s_u = float(torch.dot(delta_s, u))
        v = delta_s - s_u * u
        del delta_s
        s_v = float(torch.linalg.vector_norm(v))
        if s_v <= 1e-9 * max(dist_s, 1e-30):
            raise ValueError("the successful model lies on the line through the pretrained and the failed model: "
                             "the plane is undefined")
        v /= s_v
    coords = {"pretrained": (0.0, 0.0), "failed": (dist_f, 0.0), "successful": (s_u, s_v)}
    xs = [c[0] for c in coords.values()]
    ys = [c[1] for c in coords.values()]

    def axis(values: list[float], n: int) -> np.ndarray:
        low, high = min(values), max(values)
        pad = margin * (high - low)
        return np.linspace(low - pad, high + pad, n)

    alpha, beta = axis(xs, grid[0]), axis(ys, grid[1])
    dtype = next(scratch.parameters()).dtype

    def evaluate(a: float, b: float) -> tuple[float, float]:
        with torch.no_grad():
            vector_to_parameters((theta_p + a * u + b * v).to(dtype), scratch.parameters())
        return _loss_and_grad_norm(scratch, batches, device, grad_norm)

    loss = np.empty((len(beta), len(alpha)))
    norms = np.empty((len(beta), len(alpha)))
    for j, b in enumerate(beta):
        for i, a in enumerate(alpha):
            loss[j, i], norms[j, i] = evaluate(float(a), float(b))
    points = {}
    for label, (a, b) in coords.items():
        point_loss, point_norm = evaluate(a, b)
        points[label] = {"coords": (a, b), "loss": point_loss, "grad_norm": point_norm}
    return {"alpha": alpha, "beta": beta, "loss": loss, "grad_norm": norms, "points": points,
            "distances": {"failed": dist_f, "successful": dist_s},
            "n_examples": sum(int(batch["labels"].shape[0]) for batch in batches)}
