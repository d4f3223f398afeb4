"""AdamW with a bias-correction switch, and the learning-rate schedule.

``torch.optim.AdamW`` always corrects bias and ``transformers.AdamW`` is gone, yet the
original BERT recipe (TF ``AdamWeightDecayOptimizer``) had no bias correction, which is
exactly what Mosbach et al. identify as a cause of failed runs.  Their bias-corrected runs
used ``transformers.AdamW(correct_bias=True)``, which adds eps where torch does not (the
two styles below); both are here.  The update runs in
torch's fused AdamW kernel (one pass over the tensors; 6x faster than the multi-tensor
version for MiniLM on one CPU thread), or as multi-tensor ``torch._foreach_*`` kernels where
that is missing: BERT-large has ~390 parameter tensors and a per-tensor Python loop is
launch-bound on a GPU.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from transformers import get_scheduler

from .recipes import ADAMW_STYLES

# The fused kernel divides by 1 - beta ** step; at this step beta ** step is exactly 0.0 in
# float for any beta < 1 - 1e-7, so its bias corrections are exactly 1: the BERT update.  A beta
# closer to 1 takes the multi-tensor path.
_UNCORRECTED_STEP = 1e12
_UNCORRECTED_BETA_BELOW = 1 - 1e-7


def no_decay_names(model: nn.Module) -> set[str]:
    """The parameters BERT's recipe keeps out of weight decay: every bias, and the parameters of
    each normalisation layer, found by its type (any class named ``*Norm*``) rather than by its
    name, which varies: BERT's ``LayerNorm``, DistilBERT's ``sa_layer_norm``, ModernBERT's
    ``attn_norm`` and ``final_norm``.  For BERT, RoBERTa and MiniLM this is the paper's
    ``["bias", "LayerNorm.weight"]``."""
    names = set()
    for module_name, module in model.named_modules():
        is_norm = "norm" in type(module).__name__.lower()
        for param_name, _ in module.named_parameters(recurse=False):
            if is_norm or "bias" in param_name:
                names.add(f"{module_name}.{param_name}" if module_name else param_name)
    return names


# How a bias-corrected step treats eps.  "transformers" (transformers.AdamW, Mosbach et al.'s
# code): p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps), so eps acts as
# eps / sqrt(1 - b2^t) against the corrected sqrt(v): 32x eps at t = 1, 3x at t = 100, which
# matters for coordinates with tiny gradients.  "torch" (torch.optim.AdamW): eps is added to the
# corrected sqrt(v).  Without bias correction both are the TF BERT update.  Names: ADAMW_STYLES.
class AdamW(torch.optim.Optimizer):
    """Decoupled-weight-decay Adam.

    ``bias_correction=False`` is the BERT update ``p -= lr * (m / (sqrt(v) + eps) + wd * p)``:
    in the first steps the moments are biased towards zero, so the effective step is small at
    first and the ratio m/sqrt(v) is not normalised as Adam intends.  With bias correction,
    ``style="transformers"`` is ``transformers.AdamW(correct_bias=True)`` and ``style="torch"``
    is ``torch.optim.AdamW`` (they differ in where eps goes: see the note just above).

    Weight decay comes before the Adam step, as in torch's kernels; transformers.AdamW decayed
    after it, which differs by lr^2 * wd * (the step), about 1e-12 at the paper's lr: far below
    float32's resolution of a weight.

    ``fused=None`` uses torch's fused kernel where it exists; both paths compute the same
    update up to float rounding.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, bias_correction: bool = True,
                 style: str = "transformers", fused: bool | None = None):
        if not lr > 0:
            raise ValueError(f"AdamW lr={lr!r} is invalid; expected a positive number")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"AdamW betas={betas!r} are invalid; expected two numbers in [0, 1)")
        if not eps > 0:
            raise ValueError(f"AdamW eps={eps!r} is invalid; expected a positive number")
        if weight_decay < 0:
            raise ValueError(f"AdamW weight_decay={weight_decay!r} is invalid; expected a number >= 0")
        if style not in ADAMW_STYLES:
            raise ValueError(f"AdamW style={style!r} is invalid; expected one of {', '.join(ADAMW_STYLES)}")
        if fused and not hasattr(torch, "_fused_adamw_"):
            raise ValueError("AdamW fused=True is unavailable: this torch has no fused AdamW kernel")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction,
                        style=style)
        super().__init__(params, defaults)
        self.fused = hasattr(torch, "_fused_adamw_") if fused is None else fused
        self._step_tensors: dict[torch.device, torch.Tensor] = {}

    @classmethod
    def for_recipe(cls, params: Iterable, recipe) -> AdamW:
        """The optimizer a recipe names: its lr, betas, eps, weight decay, bias correction and style."""
        return cls(params, lr=recipe.lr, betas=(recipe.adam_beta1, recipe.adam_beta2), eps=recipe.adam_eps,
                   weight_decay=recipe.weight_decay, bias_correction=recipe.bias_correction,
                   style=recipe.adamw_style)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for step, tensors in self._by_step(group).items():
                self._update(group, step, *tensors)
        return loss

    def _by_step(self, group: dict) -> dict[int, tuple[list[torch.Tensor], ...]]:
        """The group's parameters that have a gradient, with their gradients and moments, by their
        own step count (counted from their first gradient, as transformers.AdamW and torch do): one
        bucket while every parameter trains from the first step, more where a hook unfreezes some
        later."""
        buckets: dict[int, tuple[list[torch.Tensor], ...]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] = step = state["step"] + 1
            if (bucket := buckets.get(step)) is None:
                bucket = buckets[step] = ([], [], [], [])
            bucket[0].append(p)
            bucket[1].append(p.grad)
            bucket[2].append(state["exp_avg"])
            bucket[3].append(state["exp_avg_sq"])
        return buckets

    def _update(self, group: dict, step: int, params: list[torch.Tensor], grads: list[torch.Tensor],
                exp_avgs: list[torch.Tensor], exp_avg_sqs: list[torch.Tensor]) -> None:
        eps = group["eps"]
        if group["bias_correction"] and group["style"] == "transformers":  # torch's update with this eps
            eps /= math.sqrt(1 - group["betas"][1] ** step)
        hyper = dict(lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1], eps=eps,
                     weight_decay=group["weight_decay"])
        if self.fused and (group["bias_correction"] or max(group["betas"]) < _UNCORRECTED_BETA_BELOW):
            steps = self._step_tensor(params[0].device, step if group["bias_correction"] else _UNCORRECTED_STEP)
            torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], [steps] * len(params),
                                amsgrad=False, maximize=False, **hyper)
        else:
            _adamw_foreach(params, grads, exp_avgs, exp_avg_sqs, step=step,
                           bias_correction=group["bias_correction"], **hyper)

    def _step_tensor(self, device: torch.device, value: float) -> torch.Tensor:
        """The step count the fused kernel reads, kept on the parameters' device (no host sync)."""
        if device not in self._step_tensors:
            self._step_tensors[device] = torch.zeros((), dtype=torch.float32, device=device)
        return self._step_tensors[device].fill_(value)


def _adamw_foreach(params, grads, exp_avgs, exp_avg_sqs, *, step, lr, beta1, beta2, eps, weight_decay,
                   bias_correction):
    if weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    if bias_correction:
        torch._foreach_div_(denom, math.sqrt(1 - beta2**step))
        step_size = lr / (1 - beta1**step)
    else:
        step_size = lr
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, -step_size)


def decay_param_groups(model: nn.Module, weight_decay: float, lr: float) -> list[dict]:
    """Two groups: weight decay for weights, none for biases and norm layers (as in BERT)."""
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    return decay_groups(named, no_decay_names(model), weight_decay, lr)


def decay_groups(named: Iterable[tuple[str, torch.Tensor]], exempt: set[str], weight_decay: float,
                 lr: float) -> list[dict]:
    """:func:`decay_param_groups` for named tensors (a batched model's stacked ones), ``exempt``
    from :func:`no_decay_names`."""
    named = list(named)
    return [
        {"params": [p for n, p in named if n not in exempt], "weight_decay": weight_decay, "lr": lr, "name": "decay"},
        {"params": [p for n, p in named if n in exempt], "weight_decay": 0.0, "lr": lr, "name": "no_decay"},
    ]


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup: float, total_steps: int):
    """The recipe's schedule; linear = linear warmup to the peak, then linear decay to 0."""
    return get_scheduler(schedule, optimizer, num_warmup_steps=int(warmup * total_steps),
                         num_training_steps=total_steps)
