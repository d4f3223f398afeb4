"""Tests that close gaps a mutation hunt found in stabench.interventions (Mixout's probability and
RNG plumbing), each checked against Lee et al. (2020)'s definition computed by hand."""
from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from stabench.interventions import MixLinear, apply_mixout, mixout_weight


def _mixed_weight(layer: nn.Linear) -> torch.Tensor:
    """The weight a train-mode forward used, read back through an identity input."""
    eye = torch.eye(layer.in_features)
    with torch.no_grad():
        out = layer(eye)  # row j = W_mixed[:, j] + b
    return (out - layer.bias).T


@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_apply_mixout_mixes_each_layer_with_exactly_the_probability_it_was_given(p):
    """Lee et al.: w = ((1-M) w_pre + M w - p w_pre) / (1-p), M ~ Bernoulli(1-p) per input neuron.
    With w - w_pre = 1 every column of the mixed weight is w_pre (reset) or w_pre + 1/(1-p) (kept),
    and about a fraction p of them is reset."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 30))
    w_pre = model[0].weight.detach().clone()
    assert apply_mixout(model, p) == 1
    layer = model[0]
    assert isinstance(layer, MixLinear) and layer.p == p
    with torch.no_grad():
        layer.weight.add_(1.0)
    layer.eval()
    torch.testing.assert_close(_mixed_weight(layer), w_pre + 1.0, rtol=0, atol=1e-5)
    layer.train()
    torch.manual_seed(1)
    resets, n = 0, 0
    for _ in range(200):
        mixed = _mixed_weight(layer)
        reset = torch.isclose(mixed, w_pre, atol=1e-5).all(dim=0)
        kept = torch.isclose(mixed, w_pre + 1.0 / (1.0 - p), atol=1e-5).all(dim=0)
        assert bool((reset ^ kept).all()), "a column is neither reset nor kept-and-rescaled by 1/(1-p)"
        resets += int(reset.sum())
        n += reset.numel()
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(resets / n - p) < 5 * sd


def test_mixout_weight_draws_its_mask_from_the_generator_it_is_given():
    """A generator makes the mask reproducible on its own and leaves the global RNG alone."""
    w, w_pre = torch.randn(6, 50), torch.zeros(6, 50)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = mixout_weight(w, w_pre, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(99)  # a different global state changes nothing
    b = mixout_weight(w, w_pre, 0.5, generator=torch.Generator().manual_seed(3))
    c = mixout_weight(w, w_pre, 0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@settings(max_examples=40, deadline=None)
@given(p=st.floats(0.01, 0.95), rows=st.integers(1, 6), cols=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_mixout_weight_is_the_papers_formula_for_the_mask_it_drew(p, rows, cols, seed):
    """Recover M from the sample and recompute Lee et al.'s formula literally, in float64."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    w_pre = w + 0.5 + torch.rand(rows, cols, generator=g, dtype=torch.float64)  # w - w_pre never 0
    sample = mixout_weight(w, w_pre, p, generator=g)
    m = (~torch.isclose(sample, w_pre, rtol=0, atol=1e-12)).to(torch.float64)
    assert bool((m == m[0]).all())  # one draw per input neuron
    expected = ((1 - m) * w_pre + m * w - p * w_pre) / (1 - p)
    torch.testing.assert_close(sample, expected, rtol=1e-12, atol=1e-12)
