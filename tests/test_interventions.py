"""Unit tests of the maths of stabench.interventions on tiny random models."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from stabench.interventions import (
    MixLinear,
    apply_mixout,
    encoder_layers,
    layer_group,
    layerwise_lr_param_groups,
    mixout_weight,
    reinit_top_layers,
)

NUM_LAYERS = 3


def tiny_bert(**overrides) -> BertForSequenceClassification:
    torch.manual_seed(0)
    fields = dict(vocab_size=100, hidden_size=32, num_hidden_layers=NUM_LAYERS, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64, num_labels=2)
    fields.update(overrides)
    return BertForSequenceClassification(BertConfig(**fields))


def tiny_roberta() -> RobertaForSequenceClassification:
    torch.manual_seed(0)
    return RobertaForSequenceClassification(RobertaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, num_labels=2))


def tiny_albert() -> AlbertForSequenceClassification:
    torch.manual_seed(0)
    return AlbertForSequenceClassification(AlbertConfig(
        vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=3,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, num_labels=2))


def batch(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, 100, (4, 12), generator=g),
            "attention_mask": torch.ones(4, 12, dtype=torch.long)}


def perturb(model: nn.Module) -> None:
    """Move every parameter away from its init so resets and copies are visible."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ----------------------------------------------------------------------------- Mixout
def test_mixout_expectation_is_the_weight():
    g = torch.Generator().manual_seed(0)
    w, w_pre = torch.randn(8, 8, generator=g), torch.randn(8, 8, generator=g)
    p, n = 0.3, 20000
    draws = torch.Generator().manual_seed(1)
    samples = torch.stack([mixout_weight(w, w_pre, p, generator=draws) for _ in range(n)])
    # each entry is either the target or target + (w - target)/(1-p) ...
    kept = torch.isclose(samples, w_pre + (w - w_pre) / (1 - p), atol=1e-6)
    assert bool((kept | torch.isclose(samples, w_pre.expand_as(samples), atol=1e-6)).all())
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01
    # ... and the mean over masks is w: z-scores with sd |w - w_pre| sqrt(p/(1-p)/n)
    sd = (w - w_pre).abs() * math.sqrt(p / (1 - p) / n)
    z = (samples.mean(0) - w) / sd
    assert z.abs().max().item() < 5  # 64 entries; |z| >= 5 has probability ~1e-5 under E = w
    # the test has power: the un-rescaled mix (1-M)*w_pre + M*w (mean p*w_pre + (1-p)*w) fails it
    assert ((samples.mean(0) - (p * w_pre + (1 - p) * w)) / sd).abs().max().item() > 20


def test_mixout_resets_whole_input_neurons_as_dropout_drops_them():
    """Lee et al.: a reset neuron takes all its outgoing weights (a column of a Linear weight) with it."""
    w, w_pre = torch.ones(6, 40), torch.zeros(6, 40)
    draws = torch.Generator().manual_seed(0)
    for _ in range(20):
        kept = mixout_weight(w, w_pre, 0.5, generator=draws) != 0
        assert bool((kept == kept[0]).all())  # every column all kept or all reset
        assert 0 < int(kept[0].sum()) < 40  # and the columns differ
    bias = mixout_weight(torch.ones(200), torch.zeros(200), 0.5, generator=draws) != 0
    assert 50 < int(bias.sum()) < 150  # a 1-D weight: one draw per entry


def test_mixout_p_zero_is_exactly_linear():
    torch.manual_seed(0)
    linear = nn.Linear(6, 5)
    mix = MixLinear(linear, p=0.0, target=torch.randn(5, 6))
    x = torch.randn(3, 6)
    mix.train()
    assert torch.equal(mix(x), linear(x))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_mixout_rejects_p_outside_unit_interval(p):
    with pytest.raises(ValueError, match="0 <= p < 1"):
        MixLinear(nn.Linear(3, 3), p=p)
    with pytest.raises(ValueError, match="0 <= p < 1"):
        apply_mixout(nn.Sequential(nn.Linear(3, 3)), p)


def test_mixout_eval_is_deterministic_plain_linear_and_train_is_seeded():
    torch.manual_seed(0)
    mix = MixLinear(nn.Linear(6, 5), p=0.5, target=torch.randn(5, 6))
    x = torch.randn(3, 6)
    mix.eval()
    expected = F.linear(x, mix.weight, mix.bias)
    assert torch.equal(mix(x), expected) and torch.equal(mix(x), expected)
    mix.train()
    torch.manual_seed(7)
    a = mix(x)
    torch.manual_seed(7)
    b = mix(x)
    c = mix(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.allclose(a, expected)


def test_mixout_gradients_reach_the_weight_only():
    torch.manual_seed(0)
    linear = nn.Linear(6, 5)
    mix = MixLinear(linear, p=0.5, target=torch.randn(5, 6))
    assert mix.weight is linear.weight and mix.bias is linear.bias
    assert [n for n, _ in mix.named_parameters()] == ["weight", "bias"]
    assert not mix.w_pre.requires_grad and "w_pre" not in mix.state_dict()
    mix.train()
    torch.manual_seed(3)
    mix(torch.ones(1, 6)).sum().backward()
    # d/dW of sum(W_mixed @ 1) is M/(1-p): zero where the entry was reset, 2 where kept
    grad = mix.weight.grad
    assert set(grad.unique().tolist()) <= {0.0, 2.0} and grad.sum() > 0
    assert mix.w_pre.grad is None


def test_apply_mixout_replaces_every_linear_and_zeroes_dropout():
    model = tiny_bert()
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert n_linear == NUM_LAYERS * 6 + 2  # q, k, v, attn-out, intermediate, output; pooler, classifier
    names_before = [n for n, _ in model.named_parameters()]
    assert apply_mixout(model, 0.1) == n_linear
    assert all(isinstance(m, MixLinear) for m in model.modules() if isinstance(m, nn.Linear))
    assert sum(isinstance(m, MixLinear) for m in model.modules()) == n_linear  # still Linear, for hooks that look
    assert apply_mixout(model, 0.1) == 0  # mixed once, not wrapped again
    assert [n for n, _ in model.named_parameters()] == names_before
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
    cfg = model.config
    assert cfg.hidden_dropout_prob == cfg.attention_probs_dropout_prob == cfg.classifier_dropout == 0.0
    # every attention module reads its dropout from self.dropout.p (eager and SDPA alike)
    for layer in encoder_layers(model):
        assert layer.attention.self.dropout.p == 0.0


def test_apply_mixout_zeroes_every_kind_of_dropout_module():
    """Not only nn.Dropout: its 1-3d, alpha variants and subclasses are dropout that Mixout replaces."""
    class OwnDropout(nn.Dropout):
        pass

    dropouts = [nn.Dropout(0.5), nn.Dropout1d(0.5), nn.Dropout2d(0.5), nn.Dropout3d(0.5), nn.AlphaDropout(0.5),
                nn.FeatureAlphaDropout(0.5), OwnDropout(0.5)]
    apply_mixout(nn.Sequential(nn.Linear(3, 3), *dropouts), 0.1)
    assert [d.p for d in dropouts] == [0.0] * len(dropouts)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_mixout_p0_forward_in_train_mode_equals_eval(attn):
    model = tiny_bert(attn_implementation=attn)
    perturb(model)
    apply_mixout(model, 0.0)
    with torch.no_grad():
        model.eval()
        ref = model(**batch()).logits
        model.train()
        assert torch.equal(model(**batch()).logits, ref)


def test_mixout_mixes_toward_the_weights_at_application_time():
    model = tiny_bert()
    apply_mixout(model, 0.3)
    x = batch()
    with torch.no_grad():
        model.eval()
        ref = model(**x).logits
        model.train()
        # untouched weights equal their targets: mixing changes nothing (dropout is off)
        assert torch.allclose(model(**x).logits, ref, atol=1e-6)
        perturb(model)
        model.eval()
        moved = model(**x).logits
        model.train()
        torch.manual_seed(5)
        a = model(**x).logits
        torch.manual_seed(5)
        b = model(**x).logits
    assert torch.equal(a, b)
    assert not torch.allclose(a, moved, atol=1e-4)


# ------------------------------------------------------------------ layer bookkeeping
def test_encoder_layers_bert_roberta_and_albert():
    bert, roberta = tiny_bert(), tiny_roberta()
    assert encoder_layers(bert) is bert.bert.encoder.layer
    assert encoder_layers(bert.bert) is bert.bert.encoder.layer
    assert encoder_layers(roberta) is roberta.roberta.encoder.layer and len(encoder_layers(roberta)) == 2
    with pytest.raises(ValueError, match="ALBERT shares"):
        encoder_layers(tiny_albert())
    with pytest.raises(ValueError, match="cannot find"):
        encoder_layers(nn.Linear(2, 2))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bert.embeddings.word_embeddings.weight", "embeddings"),
        ("bert.encoder.layer.0.attention.self.query.weight", "layer.0"),
        ("bert.encoder.layer.11.output.LayerNorm.bias", "layer.11"),
        ("bert.pooler.dense.weight", "pooler"),
        ("classifier.weight", "classifier"),
        ("roberta.encoder.layer.2.intermediate.dense.weight", "layer.2"),
        ("classifier.out_proj.bias", "classifier"),
        ("classifier.dense.weight", "classifier"),
        ("albert.embeddings.LayerNorm.weight", "embeddings"),
        ("albert.encoder.embedding_hidden_mapping_in.weight", "embeddings"),
        ("albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight", "layer.0"),
        ("albert.pooler.weight", "pooler"),
        ("distilbert.transformer.layer.5.ffn.lin1.weight", "layer.5"),
        ("distilbert.embeddings.position_embeddings.weight", "embeddings"),
        ("pre_classifier.weight", "classifier"),
        ("encoder.layer.1.output.dense.weight", "layer.1"),  # bare BertModel (MiniLM)
        ("0.auto_model.encoder.layer.3.output.dense.weight", "layer.3"),  # sentence-transformers
        ("bert.encoder.layer.12.output.dense.weight", "other"),  # beyond num_layers
        ("lm_head.decoder.weight", "other"),
        ("score.weight", "other"),
    ],
)
def test_layer_index(name, expected):
    assert layer_group(name, 12) == expected


def test_layer_index_covers_every_tiny_bert_parameter():
    model = tiny_bert()
    groups = {layer_group(n, NUM_LAYERS) for n, _ in model.named_parameters()}
    assert groups == {"embeddings", "pooler", "classifier", *(f"layer.{i}" for i in range(NUM_LAYERS))}


# --------------------------------------------------------------------- re-initialisation
def test_reinit_top_layers_touches_exactly_top_k_and_pooler():
    model = tiny_bert()
    perturb(model)
    before = snapshot(model)
    torch.manual_seed(11)
    names = reinit_top_layers(model, 2)
    expected = [n for n in before if layer_group(n, NUM_LAYERS) in {"layer.1", "layer.2", "pooler"}]
    assert names == expected
    after = snapshot(model)
    for n in before:
        if n in names:
            assert not torch.equal(after[n], before[n]), n
            if n.endswith("LayerNorm.weight"):
                assert torch.equal(after[n], torch.ones_like(after[n])), n
            elif n.endswith("bias"):
                assert torch.equal(after[n], torch.zeros_like(after[n])), n
        else:
            assert torch.equal(after[n], before[n]), n  # bit-identical


def test_reinit_is_driven_by_the_torch_seed_and_can_skip_the_pooler():
    runs = []
    for _ in range(2):
        model = tiny_bert()
        torch.manual_seed(42)
        reinit_top_layers(model, 1)
        runs.append(snapshot(model))
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])

    model = tiny_bert()
    perturb(model)
    before = snapshot(model)
    names = reinit_top_layers(model, 1, reinit_pooler=False)
    assert names and all(layer_group(n, NUM_LAYERS) == "layer.2" for n in names)
    assert torch.equal(model.bert.pooler.dense.weight, before["bert.pooler.dense.weight"])
    assert reinit_top_layers(model, 0, reinit_pooler=False) == []
    assert reinit_top_layers(model, 0) == ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]


def test_reinit_weight_std_is_initializer_range():
    model = tiny_bert(hidden_size=128, intermediate_size=512, num_hidden_layers=1,
                      num_attention_heads=2, initializer_range=0.05)
    perturb(model)
    torch.manual_seed(0)
    reinit_top_layers(model, 1)
    layer = encoder_layers(model)[0]
    for w in (layer.intermediate.dense.weight, layer.output.dense.weight, model.bert.pooler.dense.weight):
        assert abs(w.std().item() - 0.05) < 0.05 * 0.03
        assert abs(w.mean().item()) < 0.002


def test_reinit_roberta_has_no_pooler():
    model = tiny_roberta()
    names = reinit_top_layers(model, 1)
    assert names and all(layer_group(n, 2) == "layer.1" for n in names)


@pytest.mark.parametrize("k", [-1, NUM_LAYERS + 1])
def test_reinit_rejects_k_out_of_range(k):
    with pytest.raises(ValueError, match=rf"reinit_layers={k} is invalid for this model; expected 0\.\.{NUM_LAYERS} "):
        reinit_top_layers(tiny_bert(), k)


def test_reinit_refuses_albert():
    with pytest.raises(ValueError, match="ALBERT shares"):
        reinit_top_layers(tiny_albert(), 1)


# ----------------------------------------------------------- layer-wise lr decay
def _group_of(groups: list[dict]) -> dict[int, dict]:
    return {id(p): g for g in groups for p in g["params"]}


def test_llrd_learning_rates_follow_the_formula():
    model = tiny_bert()
    base, decay, L = 1e-3, 0.8, NUM_LAYERS
    groups = layerwise_lr_param_groups(model, base, decay, weight_decay=0.01)
    by_param = _group_of(groups)
    expected = {"embeddings": base * decay ** (L + 1), "pooler": base, "classifier": base}
    expected.update({f"layer.{i}": base * decay ** (L - i) for i in range(L)})
    assert math.isclose(expected[f"layer.{L - 1}"], base * decay)
    for name, p in model.named_parameters():
        group = by_param[id(p)]
        depth = layer_group(name, L)
        assert math.isclose(group["lr"], expected[depth]), name
        assert group["name"].split("/")[0] == depth
    assert [g["name"] for g in groups][:3] == ["embeddings/decay", "embeddings/no_decay", "layer.0/decay"]
    assert set(groups[0]) == {"params", "lr", "weight_decay", "name"}


def test_llrd_every_trainable_param_exactly_once_and_no_decay():
    model = tiny_bert()
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    groups = layerwise_lr_param_groups(model, 2e-5, 0.9, weight_decay=0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(ids) == len(set(ids)) == len(trainable)
    assert set(ids) == {id(p) for p in trainable}
    by_param = _group_of(groups)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = name.startswith(("classifier.", "bert.pooler."))  # Zhang et al.: the head is never decayed
        no_decay = head or name.endswith("bias") or name.endswith("LayerNorm.weight")
        assert by_param[id(p)]["weight_decay"] == (0.0 if no_decay else 0.01), name
        assert by_param[id(p)]["name"].endswith("/no_decay" if no_decay else "/decay"), name
    torch.optim.AdamW(groups, lr=1.0)  # accepted as optimiser groups, extra "name" key included


def test_llrd_decay_one_is_a_single_lr_and_works_after_mixout():
    model = tiny_bert()
    apply_mixout(model, 0.1)
    groups = layerwise_lr_param_groups(model, 3e-5, 1.0, weight_decay=0.1)
    assert {g["lr"] for g in groups} == {3e-5}
    assert {g["name"]: g["weight_decay"] for g in groups}["classifier/decay"] == 0.1  # the plain BERT groups
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_llrd_roberta_head_is_classifier():
    model = tiny_roberta()
    groups = layerwise_lr_param_groups(model, 1.0, 0.5, weight_decay=0.0)
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["classifier/no_decay"] == 1.0 and lrs["layer.1/decay"] == 0.5
    assert lrs["layer.0/decay"] == 0.25 and lrs["embeddings/decay"] == 0.125
    assert not any(n.startswith("pooler") for n in lrs)


def test_llrd_refuses_a_trainable_parameter_outside_the_layers_it_knows():
    """A parameter in no depth (an extra module) would silently not train; it is named instead."""
    model = tiny_bert()
    model.extra = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"no layer-wise lr for trainable parameters \['extra.weight', 'extra.bias'\]"):
        layerwise_lr_param_groups(model, 1e-3, 0.9, weight_decay=0.01)
    model.extra.requires_grad_(False)  # a frozen one needs no lr
    layerwise_lr_param_groups(model, 1e-3, 0.9, weight_decay=0.01)


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.01])
def test_llrd_rejects_decay_outside_unit_interval(decay):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        layerwise_lr_param_groups(tiny_bert(), 1e-3, decay, weight_decay=0.01)
