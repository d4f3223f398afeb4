"""Tests that close gaps a mutation hunt found in stabench.optim."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from stabench.optim import AdamW, decay_param_groups
from stabench.recipes import get_recipe


def test_decay_groups_partition_the_trainable_parameters_whatever_the_module_names():
    """Every trainable parameter lands in exactly one group, also under modules whose names contain
    "bias" or "norm" (a relative-position bias projection, say); biases and norms are exempt."""
    model = nn.ModuleDict({
        "rel_bias_proj": nn.Linear(4, 4),
        "normalizer_head": nn.Linear(4, 2),
        "LayerNorm": nn.LayerNorm(4),
    })
    decay, no_decay = decay_param_groups(model, 0.01, 1e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = [names[id(p)] for p in decay["params"]]
    exempt = [names[id(p)] for p in no_decay["params"]]
    assert sorted(decayed + exempt) == sorted(names.values())  # each trainable parameter exactly once
    assert "normalizer_head.weight" in decayed  # a Linear weight, whatever its module is called
    assert {"LayerNorm.bias", "LayerNorm.weight", "normalizer_head.bias", "rel_bias_proj.bias"} <= set(exempt)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)


def test_fused_false_runs_the_multi_tensor_update_and_fused_true_the_kernel(monkeypatch):
    """The multi-tensor path is what runs where torch has no fused kernel for the device; the
    tests that compare it with references ask for it with fused=False, which must be honoured."""
    if not hasattr(torch, "_fused_adamw_"):
        pytest.skip("this torch has no fused AdamW kernel")
    calls, original = [], torch._fused_adamw_

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "_fused_adamw_", counting)
    for fused, expected in ((False, 0), (True, 1), (None, 1)):
        calls.clear()
        w = nn.Parameter(torch.ones(3))
        optimizer = AdamW([w], lr=1e-3, bias_correction=False, fused=fused)
        w.grad = torch.ones(3)
        optimizer.step()
        assert (optimizer.fused, len(calls)) == (fused is not False, expected), fused


def test_the_optimizer_of_a_recipe_corrects_bias_exactly_when_the_recipe_says_so():
    """Devlin et al.'s recipe (the paper's default) has no bias correction; the stable baseline has it."""
    params = [nn.Parameter(torch.zeros(2))]
    assert AdamW.for_recipe(params, get_recipe("bert-default")).defaults["bias_correction"] is False
    corrected = AdamW.for_recipe(params, get_recipe("bert-default", bias_correction=True))
    assert corrected.defaults["bias_correction"] is True
    assert AdamW.for_recipe(params, get_recipe("mosbach-stable")).defaults["bias_correction"] is True
