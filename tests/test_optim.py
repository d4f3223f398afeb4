import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from stabench.optim import AdamW, decay_param_groups, make_scheduler


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64)) for shape in [(5, 3), (7,), (2, 2, 2)]]


def _grads(step: int, params) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


@pytest.mark.parametrize("fused", [True, False])
def test_bias_corrected_update_matches_torch_adamw_over_many_steps(fused):
    ours, theirs = _params(0), _params(0)
    opt_ours = AdamW(ours, lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, bias_correction=True,
                     style="torch", fused=fused)
    opt_theirs = torch.optim.AdamW(theirs, lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, foreach=True)
    for step in range(200):
        for params in (ours, theirs):
            for p, g in zip(params, _grads(step, params)):
                p.grad = g.clone()
        opt_ours.step()
        opt_theirs.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


@pytest.mark.parametrize("fused", [True, False])
def test_a_parameter_first_trained_late_is_corrected_by_its_own_step_count(fused):
    """A hook that unfreezes a layer at step 30 (its gradients None before): its first update is a
    full lr step, as in torch.optim.AdamW and transformers.AdamW, not one scaled by the group's step."""
    ours, theirs = _params(0), _params(0)
    opt_ours = AdamW(ours, lr=1e-2, eps=1e-6, weight_decay=0.01, bias_correction=True, style="torch", fused=fused)
    opt_theirs = torch.optim.AdamW(theirs, lr=1e-2, eps=1e-6, weight_decay=0.01, foreach=True)
    for step in range(40):
        for params in (ours, theirs):
            for index, (p, g) in enumerate(zip(params, _grads(step, params))):
                p.grad = g.clone() if index or step >= 30 else None  # the first tensor frozen until step 30
        opt_ours.step()
        opt_theirs.step()
    assert [opt_ours.state[p]["step"] for p in ours[:2]] == [10, 40]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


LR, B1, B2, EPS, WD = 3e-3, 0.9, 0.999, 1e-6, 0.01


def _against_reference(update, seed: int, fused: bool, grad_scale: float = 1.0, **kwargs):
    """50 steps of stabench's AdamW and of a numpy ``update(p, m, v, step)`` on the same gradients."""
    params = _params(seed)
    reference = [p.detach().numpy().copy() for p in params]
    m = [np.zeros_like(r) for r in reference]
    v = [np.zeros_like(r) for r in reference]
    optimizer = AdamW(params, lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD, fused=fused, **kwargs)
    for step in range(1, 51):
        grads = [g * grad_scale for g in _grads(step, params)]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
        for i, g in enumerate(grads):
            g = g.numpy()
            m[i] = B1 * m[i] + (1 - B1) * g
            v[i] = B2 * v[i] + (1 - B2) * g * g
            reference[i] = update(reference[i], m[i], v[i], step)
    return params, reference


@pytest.mark.parametrize("fused", [True, False])
def test_without_bias_correction_matches_the_bert_reference(fused):
    """Hand-computed TF-BERT update: p -= lr * (m / (sqrt(v) + eps) + wd * p)."""
    params, reference = _against_reference(lambda p, m, v, step: p - LR * (m / (np.sqrt(v) + EPS) + WD * p),
                                           seed=1, fused=fused, bias_correction=False)
    for p, r in zip(params, reference):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=0, atol=1e-10)


@pytest.mark.parametrize("beta2", [1 - 1e-12, 1 - 1e-9])
def test_without_bias_correction_a_beta_near_one_is_still_the_bert_update(beta2):
    """The fused kernel's corrections are forced to 1 by a huge step count, which a beta this close
    to 1 survives (1 - 1e-12 ** 1e12 is 0.37): the update was bias-corrected after all."""
    updates = []
    for fused in (True, False):
        w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
        optimizer = AdamW([w], lr=1e-3, betas=(0.9, beta2), bias_correction=False, fused=fused)
        w.grad = torch.full((3,), 1e-3, dtype=torch.float64)
        optimizer.step()
        updates.append(w.detach().clone())
    m, v = 0.1 * 1e-3, (1 - beta2) * 1e-6
    assert updates[0].tolist() == pytest.approx([1 - 1e-3 * m / (math.sqrt(v) + 1e-6)] * 3, rel=1e-12)
    assert torch.equal(updates[0], updates[1])


@pytest.mark.parametrize("fused", [True, False])
def test_transformers_style_matches_the_correct_bias_update_of_mosbach_et_al(fused):
    """transformers.AdamW(correct_bias=True), hand-computed: eps is added to the uncorrected sqrt(v)
    and the correction goes into the step size.  transformers decayed the weight after the Adam
    step and torch (whose kernels run here) before it: that differs by lr^2 * wd * (Adam step)
    per step, 1e-12 at the paper's lr, so the reference decays first as torch does."""
    def update(p, m, v, step):
        step_size = LR * math.sqrt(1 - B2**step) / (1 - B1**step)
        return p * (1 - LR * WD) - step_size * m / (np.sqrt(v) + EPS)

    # small gradients: where the two styles differ
    params, reference = _against_reference(update, seed=3, fused=fused, grad_scale=1e-5, bias_correction=True)
    for p, r in zip(params, reference):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=0, atol=1e-10)
    torch_style, _ = _against_reference(update, seed=3, fused=fused, grad_scale=1e-5, style="torch")
    moved = [np.abs(p.detach().numpy() - r).max() for p, r in zip(torch_style, reference)]
    assert max(moved) > 1e-3  # torch's eps placement takes visibly larger steps on these gradients


@pytest.mark.parametrize("fused", [True, False])
def test_without_bias_correction_the_style_is_moot(fused):
    runs = []
    for style in ("transformers", "torch"):
        params = _params(4)
        optimizer = AdamW(params, lr=1e-3, bias_correction=False, style=style, fused=fused)
        for step in range(5):
            for p, g in zip(params, _grads(step, params)):
                p.grad = g * 1e-5
            optimizer.step()
        runs.append(params)
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="style='tf'.*transformers, torch"):
        AdamW(_params(0), style="tf")


@settings(max_examples=30, deadline=None)
@given(lr=st.floats(1e-6, 1e-1), beta1=st.floats(0.0, 0.99), beta2=st.floats(0.9, 0.9999), eps=st.floats(1e-8, 1e-4),
       weight_decay=st.floats(0.0, 0.1), bias_correction=st.booleans(), seed=st.integers(0, 2**16))
def test_fused_kernel_and_multi_tensor_path_agree(lr, beta1, beta2, eps, weight_decay, bias_correction, seed):
    """The fused kernel (with its bias corrections forced to 1 when off) is the foreach update, float32."""
    fused, foreach = ([p.detach().float().clone().requires_grad_() for p in _params(seed % 7)] for _ in range(2))
    optimizers = [AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction, fused=flag) for params, flag in ((fused, True), (foreach, False))]
    for step in range(5):
        for params, optimizer in zip((fused, foreach), optimizers):
            for p, g in zip(params, _grads(seed + step, params)):
                p.grad = g
            optimizer.step()
    for a, b in zip(fused, foreach):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6)  # float32 rounding of unit-scale weights


def test_the_optimizer_of_a_recipe_takes_each_of_its_adam_fields():
    from stabench.recipes import get_recipe

    recipe = get_recipe("bert-default", lr=3e-4, adam_beta1=0.8, adam_beta2=0.99, adam_eps=1e-7, weight_decay=0.05,
                        bias_correction=True, adamw_style="torch")
    defaults = AdamW.for_recipe(_params(0), recipe).defaults
    assert {k: defaults[k] for k in ("lr", "betas", "eps", "weight_decay", "bias_correction", "style")} == dict(
        lr=3e-4, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.05, bias_correction=True, style="torch")


def test_first_step_differs_between_the_two_variants():
    """Without correction the first step is (1-b1)/sqrt(1-b2) ≈ 3.2x larger per coordinate."""
    a, b = _params(2), _params(2)
    start = a[0].detach().clone()
    for params, corrected in ((a, True), (b, False)):
        for p, g in zip(params, _grads(0, params)):
            p.grad = g
        AdamW(params, lr=1e-3, bias_correction=corrected).step()
    ratio = ((a[0] - start).abs().mean() / (b[0] - start).abs().mean()).item()
    assert ratio == pytest.approx(math.sqrt(1 - 0.999) / (1 - 0.9), rel=1e-6)  # eps (1e-6) is far below |g|


def test_no_weight_decay_on_bias_and_layernorm():
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))
    decay, no_decay = decay_param_groups(model, 0.01, 2e-5)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert not any(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("kwargs, bad", [({"lr": -1e-5}, "lr=-1e-05"), ({"eps": 0.0}, "eps=0.0"),
                                         ({"weight_decay": -0.1}, "weight_decay=-0.1"),
                                         ({"betas": (1.0, 0.9)}, "betas=(1.0, 0.9)")])
def test_bad_hyperparameters_are_named(kwargs, bad):
    with pytest.raises(ValueError, match=bad.replace("(", r"\(").replace(")", r"\)")):
        AdamW(_params(0), **{"lr": 1e-3, **kwargs})


def _lrs(schedule: str, warmup: float, total: int, lr: float) -> list[float]:
    """The lr each of the ``total`` updates uses, and the one after the last."""
    optimizer = AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer, schedule, warmup, total)
    lrs = []
    for _ in range(total + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@settings(max_examples=40, deadline=None)
@given(total=st.integers(10, 400), warmup=st.floats(0.01, 0.5), lr=st.floats(1e-6, 1e-2))
def test_linear_schedule_warms_up_to_the_peak_and_decays_to_zero(total, warmup, lr):
    """Devlin et al.'s schedule, written out: lr * t / W over the W = floor(warmup * total) warmup
    updates, then lr * (total - t) / (total - W) down to 0 (a cosine decay would not pass)."""
    lrs = _lrs("linear", warmup, total, lr)
    warmup_steps = int(warmup * total)
    expected = [lr * t / warmup_steps if t < warmup_steps else lr * (total - t) / (total - warmup_steps)
                for t in range(total + 1)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert int(np.argmax(lrs)) == warmup_steps and lrs[total] == pytest.approx(0.0, abs=1e-15)


@settings(max_examples=20, deadline=None)
@given(total=st.integers(10, 400), warmup=st.floats(0.01, 0.5), lr=st.floats(1e-6, 1e-2))
def test_the_other_schedules_follow_their_formulas(total, warmup, lr):
    warmup_steps = int(warmup * total)

    def warming(t: int) -> float:
        return t / warmup_steps

    assert _lrs("constant", 0.0, total, lr) == pytest.approx([lr] * (total + 1), rel=1e-12)
    assert _lrs("constant_with_warmup", warmup, total, lr) == pytest.approx(
        [lr * warming(t) if t < warmup_steps else lr for t in range(total + 1)], rel=1e-9, abs=1e-15)
    assert _lrs("cosine", warmup, total, lr) == pytest.approx(
        [lr * warming(t) if t < warmup_steps else
         lr * 0.5 * (1 + math.cos(math.pi * (t - warmup_steps) / (total - warmup_steps))) for t in range(total + 1)],
        rel=1e-9, abs=1e-15)


def test_beta2_of_one_is_refused_in_one_line():
    params = _params(0)
    with pytest.raises(ValueError, match=r"^AdamW betas=\(0\.9, 1\.0\) are invalid; expected two numbers in \[0, 1\)$"):
        AdamW(params, betas=(0.9, 1.0))
    AdamW(params, betas=(0.9, 0.0))  # the interval's closed end is accepted


def test_default_eps_is_berts():
    # Devlin et al.'s optimizer (and transformers.AdamW) default eps is 1e-6, not torch's 1e-8.
    assert AdamW(_params(0)).defaults["eps"] == 1e-6


@pytest.mark.parametrize("lr", [0.0, -0.0, math.nan])
def test_a_learning_rate_that_is_not_positive_is_refused(lr):
    with pytest.raises(ValueError, match=r"^AdamW lr=.* is invalid; expected a positive number$"):
        AdamW(_params(0), lr=lr)


def test_without_bias_correction_a_beta1_near_one_is_still_the_bert_update():
    """As for beta2: the fused kernel's step count forcing the corrections to 1 fails for a beta1
    this close to 1 (1 - 1e-12 ** 1e12 is 0.63), so that update takes the multi-tensor path."""
    beta1 = 1 - 1e-12
    updates = []
    for fused in (True, False):
        w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
        optimizer = AdamW([w], lr=1e-3, betas=(beta1, 0.999), bias_correction=False, fused=fused)
        w.grad = torch.full((3,), 1e-3, dtype=torch.float64)
        optimizer.step()
        updates.append(w.detach().clone())
    m, v = (1 - beta1) * 1e-3, 0.001 * 1e-6
    assert updates[0].tolist() == pytest.approx([1 - 1e-3 * m / (math.sqrt(v) + 1e-6)] * 3, rel=1e-9)
    assert torch.equal(updates[0], updates[1])


def test_every_normalisation_layer_and_bias_is_exempt_from_decay_by_type_and_at_the_top_level():
    from stabench.optim import no_decay_names

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.GroupNorm(2, 4),
                                torch.nn.Linear(4, 2, bias=False))
    assert no_decay_names(model) == {"0.bias", "1.weight", "1.bias", "2.weight", "2.bias"}
    # A model that holds its parameters itself: their names have no module prefix.
    assert no_decay_names(torch.nn.Linear(3, 2)) == {"bias"}
    assert no_decay_names(torch.nn.LayerNorm(3)) == {"weight", "bias"}


def test_frozen_parameters_are_in_neither_decay_group():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    decay, no_decay = decay_param_groups(model, 0.01, 1e-3)
    assert [id(p) for p in decay["params"]] == [id(model[1].weight)]
    assert [id(p) for p in no_decay["params"]] == [id(model[0].bias), id(model[1].bias)]


def test_the_optimizer_corrects_bias_the_transformers_way_unless_told_otherwise():
    defaults = AdamW(_params(0)).defaults
    assert (defaults["bias_correction"], defaults["style"], defaults["weight_decay"], defaults["lr"]) == (
        True, "transformers", 0.0, 1e-3)


def test_a_step_with_a_closure_evaluates_it_with_gradients_and_returns_its_loss():
    w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    optimizer = AdamW([w], lr=1e-2)

    def closure():
        optimizer.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == 2.0
    assert w.grad is not None and (w < 1).all()
