"""Encoder families other than BERT: layer groups, weight-decay exemptions, per-layer
interventions, dropout and the forgetting curve, on tiny random models of each."""
import math
import shutil

import pytest
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from stabench import analysis, get_recipe
from stabench.interventions import apply_mixout, encoder_layers, layer_group, layerwise_lr_param_groups, reinit_top_layers
from stabench.models import load_model, load_tokenizer, resolve
from stabench.optim import no_decay_names
from stabench.train import fine_tune, prepare

SMALL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=3,
             max_position_embeddings=128)
LAYERS = 3


def _config(family: str, vocab_size: int):
    if family == "distilbert":
        return transformers.DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=LAYERS, n_heads=2, hidden_dim=64,
                                             max_position_embeddings=128)
    if family == "modernbert":  # its special tokens are the tokenizer's (the tiny BERT's: [PAD] 0, [CLS] 2, [SEP] 3)
        return transformers.ModernBertConfig(vocab_size=vocab_size, pad_token_id=0, cls_token_id=2, sep_token_id=3,
                                             bos_token_id=2, eos_token_id=3, global_attn_every_n_layers=3,
                                             local_attention=8, **SMALL)
    deberta = dict(relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"],
                   norm_rel_ebd="layer_norm", position_biased_input=False)
    extra = {"electra": dict(embedding_size=16),  # with the projection to the layers' width, as electra-small
             "deberta": dict(relative_attention=True, pos_att_type=["p2c", "c2p"]),  # its own LayerNorm class
             "deberta-v2": deberta,
             "deberta-v2-conv": dict(deberta, conv_kernel_size=3),  # as deberta-v2-xlarge
             "albert": dict(embedding_size=16)}.get(family, {})
    config_class = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig,
                    "albert": transformers.AlbertConfig,
                    "electra": transformers.ElectraConfig, "deberta": transformers.DebertaConfig,
                    "deberta-v2": transformers.DebertaV2Config, "deberta-v2-conv": transformers.DebertaV2Config}[family]
    return config_class(vocab_size=vocab_size, pad_token_id=0, **SMALL, **extra)


FAMILIES = ["bert", "roberta", "distilbert", "electra", "deberta", "deberta-v2", "deberta-v2-conv", "modernbert"]


@pytest.fixture(scope="module")
def vocab_size(tiny_model):
    return len(AutoTokenizer.from_pretrained(tiny_model))


def _model(family, vocab_size):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(_config(family, vocab_size))


def _saved(family, tiny_model, folder, head=False):
    """A "pretrained" folder of the family, with the tiny BERT's tokenizer (no head unless asked)."""
    torch.manual_seed(0)
    config = _config(family, len(AutoTokenizer.from_pretrained(tiny_model)))
    model = (AutoModelForSequenceClassification.from_config(config) if head
             else transformers.AutoModelForMaskedLM.from_config(config))
    model.save_pretrained(folder)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{tiny_model}/{file}", folder / file)
    return str(folder)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_is_in_a_layer_group_and_gets_a_layer_wise_lr(family, vocab_size):
    model = _model(family, vocab_size)
    assert len(encoder_layers(model)) == LAYERS
    groups = {name: layer_group(name, LAYERS, model.config.model_type) for name, _ in model.named_parameters()}
    assert "other" not in groups.values(), [name for name, group in groups.items() if group == "other"]
    assert {"embeddings", "classifier", *(f"layer.{i}" for i in range(LAYERS))} <= set(groups.values())
    lr_groups = layerwise_lr_param_groups(model, 1e-3, 0.9, 0.01)
    placed = [id(p) for group in lr_groups for p in group["params"]]
    assert sorted(placed) == sorted(id(p) for p in model.parameters()) and len(set(placed)) == len(placed)
    lrs = {group["name"].split("/")[0]: group["lr"] for group in lr_groups}
    assert lrs["embeddings"] == pytest.approx(1e-3 * 0.9 ** (LAYERS + 1))
    assert lrs[f"layer.{LAYERS - 1}"] == pytest.approx(1e-3 * 0.9) and lrs["classifier"] == 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_norm_layers_and_biases_get_no_weight_decay_whatever_their_names(family, vocab_size):
    model = _model(family, vocab_size)
    exempt = no_decay_names(model)
    norms = {f"{module_name}.{name}" for module_name, module in model.named_modules()
             if isinstance(module, (torch.nn.LayerNorm, transformers.models.deberta.modeling_deberta.DebertaLayerNorm))
             for name, _ in module.named_parameters(recurse=False)}
    assert norms and norms <= exempt
    linear_weights = {f"{module_name}.weight" for module_name, module in model.named_modules()
                      if isinstance(module, torch.nn.Linear)}
    assert not linear_weights & exempt
    if family in ("bert", "roberta"):  # the paper's rule by name: the runs stored so far were trained with it
        assert exempt == {name for name, _ in model.named_parameters() if "bias" in name or "LayerNorm.weight" in name}


def test_deberta_s_bare_attention_biases_get_no_weight_decay(vocab_size):
    """DeBERTa's q_bias and v_bias are biases in all but name: kept out of weight decay as every bias is."""
    model = _model("deberta", vocab_size)
    bare = {name for name, _ in model.named_parameters() if name.endswith(("q_bias", "v_bias"))}
    assert len(bare) == 2 * LAYERS
    assert bare <= no_decay_names(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_reinit_touches_the_top_layer_only(family, vocab_size):
    model = _model(family, vocab_size)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    touched = reinit_top_layers(model, 1)
    top = f"layer.{LAYERS - 1}"
    assert {layer_group(name, LAYERS, model.config.model_type) for name in touched} <= {top, "pooler"}
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert changed and changed <= set(touched)
    assert any(layer_group(name, LAYERS, model.config.model_type) == top for name in changed)
    # the whole layer: DeBERTa's own LayerNorm class and its bare q_bias / v_bias were left pretrained
    assert {name for name in before if layer_group(name, LAYERS, model.config.model_type) == top} <= set(touched)


@pytest.mark.parametrize("family", FAMILIES)
def test_mixout_switches_off_every_dropout_even_one_kept_as_a_number(family, vocab_size):
    """ModernBERT's attention (and SDPA attention under transformers 4) keeps its dropout as a
    float, which setting nn.Dropout.p missed: Mixout at p=0 still dropped attention weights."""
    config = _config(family, vocab_size)
    for field in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                  "embedding_dropout", "mlp_dropout"):
        if hasattr(config, field):
            setattr(config, field, 0.5)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    apply_mixout(model, 0.0)
    ids = torch.randint(5, vocab_size, (4, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()(input_ids=ids).logits
        assert torch.equal(model.train()(input_ids=ids).logits, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_batched_group_trains_the_families_it_takes_like_solo_runs_and_refuses_the_rest(family, tiny_model, tmp_path):
    """The group hands each family its padding mask in a form it reads as a mask: DeBERTa-v2 read
    the additive one as 0/1 weights, so its seeds trained on another loss than alone."""
    from stabench.batched import FAMILIES as BATCHED
    from stabench.batched import SeedGroup
    from stabench.data import encode
    from stabench.tasks import BUILTIN_PAIR_TASK, load_task_data

    folder = _saved(family, tiny_model, tmp_path / family)
    source = resolve(folder)
    recipe = get_recipe("bert-default", max_steps=3, trace_every=1, lr=1e-3, dropout=0.0)
    if family not in BATCHED:
        with pytest.raises(ValueError, match=r"^model type '[\w-]+' is not supported in a batched seed group; "
                                             r"supported: bert, roberta, xlm-roberta, electra$"):
            SeedGroup(source, 2, recipe, [0], total_steps=3)
        return
    train, _ = encode(load_task_data(BUILTIN_PAIR_TASK), load_tokenizer(source), 128)
    group = SeedGroup(source, 2, recipe, [0, 1], total_steps=3).train(train, load_tokenizer(source).pad_token_id)
    for i, seed in enumerate((0, 1)):
        solo = fine_tune(prepare(BUILTIN_PAIR_TASK, folder, recipe, seed, device="cpu")).trace["loss"]
        assert group[:, i].tolist() == pytest.approx(solo, abs=1e-5)


def test_deberta_s_encoder_norm_and_convolution_go_with_its_embeddings_and_first_layer_but_a_final_norm_not():
    assert layer_group("deberta.encoder.LayerNorm.weight", LAYERS, "deberta-v2") == "embeddings"
    assert layer_group("encoder.LayerNorm.weight", LAYERS, "deberta-v2") == "embeddings"  # a bare DebertaV2Model
    assert layer_group("deberta.encoder.conv.conv.weight", LAYERS, "deberta-v2") == "layer.0"
    assert layer_group("roberta.encoder.LayerNorm.weight", LAYERS, "xlm-roberta-xl") == "pooler"  # pre-LN's last


def test_modernbert_trains_with_per_layer_traces_interventions_and_the_recipe_s_dropout(tiny_model, tmp_path):
    folder = _saved("modernbert", tiny_model, tmp_path / "modernbert")
    model = load_model(resolve(folder), 2, 0.1)
    assert (model.config.embedding_dropout, model.config.mlp_dropout, model.config.attention_dropout) == (0.1,) * 3
    recipe = get_recipe("bert-default", max_steps=4, trace_every=2, lr=1e-3, reinit_layers=1, layerwise_lr_decay=0.9)
    result = fine_tune(prepare("polarity", folder, recipe, 0, device="cpu"))
    assert list(result.trace["grad_norm"]) == ["embeddings", "layer.0", "layer.1", "layer.2", "pooler", "classifier"]
    assert all(math.isfinite(norm) for norms in result.trace["grad_norm"].values() for norm in norms)


@pytest.mark.parametrize("family", [*FAMILIES, "albert"])
def test_the_recipe_s_dropout_is_every_dropout_of_the_model(family, tiny_model, tmp_path):
    """albert-default's dropout 0 must reach ALBERT's classifier too (its field has its own name)."""
    folder = _saved(family, tiny_model, tmp_path / family)
    for dropout in (0.0, 0.2):
        model = load_model(resolve(folder), 2, dropout)
        rates = {name: module.p for name, module in model.named_modules() if isinstance(module, torch.nn.Dropout)}
        assert rates and set(rates.values()) == {dropout}, rates


def test_albert_s_per_layer_interventions_are_refused_before_any_data_loads(tiny_model, tmp_path, monkeypatch):
    from stabench import train

    torch.manual_seed(0)
    config = transformers.AlbertConfig(vocab_size=len(AutoTokenizer.from_pretrained(tiny_model)), embedding_size=16,
                                       **SMALL)
    transformers.AlbertModel(config).save_pretrained(tmp_path / "albert")
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{tiny_model}/{file}", tmp_path / "albert" / file)
    with monkeypatch.context() as patched:
        patched.setattr(train, "load_task_data", lambda *a, **k: pytest.fail("data loaded before the check"))
        for field in (dict(reinit_layers=1), dict(layerwise_lr_decay=0.9)):
            with pytest.raises(ValueError, match=r"^ALBERT shares one set of layer weights .*reinit_layers, "
                                                 r"layerwise_lr_decay\) are undefined for it$"):
                prepare("polarity", str(tmp_path / "albert"), get_recipe("bert-default", **field), 0, device="cpu")
    # ALBERT's own recipe, without those fields, prepares
    assert prepare("polarity", str(tmp_path / "albert"), get_recipe("albert-default"), 0, device="cpu").key


@pytest.mark.filterwarnings("ignore::stabench.analysis.RandomMaskedLMWeights")  # the tiny BERT has no MLM head
def test_forgetting_at_l_plus_1_is_the_pretrained_deberta(tiny_model, tmp_path):
    """DeBERTa's relative position embeddings and their norm sit outside the layers and the
    embeddings; k = L+1 restores them too."""
    folder = _saved("deberta-v2", tiny_model, tmp_path / "deberta")
    finetuned = load_model(resolve(folder), 2, 0.0)
    with torch.no_grad():
        for param in finetuned.parameters():
            param.add_(0.05 * torch.randn_like(param))  # "fine-tuned": every weight moved
    tokenizer = load_tokenizer(resolve(folder))
    texts = [f"the film was {word} and the {other} was fine" for word in ("good", "bad", "long") for other in
             ("music", "cast")]
    points = dict(analysis.forgetting_curve(folder, finetuned, texts, tokenizer, ks=[0, LAYERS + 1]))
    pretrained = analysis.masked_lm_perplexity(analysis.load_masked_lm(folder), texts, tokenizer)
    assert points[LAYERS + 1] == pytest.approx(pretrained, rel=1e-6)
    assert points[0] != pytest.approx(pretrained, rel=1e-3)


def test_token_types_the_model_cannot_embed_are_named_before_training(tiny_model, tmp_path, monkeypatch):
    """A RoBERTa (one token type) saved with a BERT tokenizer, which marks a pair's second sentence
    as type 1: an IndexError deep in torch before; one line naming both now."""
    from stabench import train

    torch.manual_seed(0)
    config = transformers.RobertaConfig(vocab_size=len(AutoTokenizer.from_pretrained(tiny_model)), pad_token_id=0,
                                        type_vocab_size=1, **SMALL)
    transformers.RobertaModel(config).save_pretrained(tmp_path / "roberta")
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{tiny_model}/{file}", tmp_path / "roberta" / file)
    recipe = get_recipe("bert-default", max_steps=2)
    with monkeypatch.context() as patched:
        patched.setattr(train, "make_scheduler", lambda *a: pytest.fail("training started"))
        with pytest.raises(ValueError, match=r"^model 'roberta': its tokenizer gives token type 1 \(a sentence "
                                             r"pair's second sentence\) but its config has type_vocab_size=1; "):
            fine_tune(prepare("same-number", str(tmp_path / "roberta"), recipe, 0, device="cpu"))
    assert fine_tune(prepare("polarity", str(tmp_path / "roberta"), recipe, 0, device="cpu")).steps == 2  # one type


def test_a_model_without_token_type_embeddings_trains_on_pairs_with_token_types(tiny_model, tmp_path):
    """DeBERTa-v3 has type_vocab_size=0 (no token-type embeddings): a BERT tokenizer's token types for a
    pair task are ignored, not refused as types the model cannot embed."""
    folder = _saved("deberta-v2", tiny_model, tmp_path / "deberta", head=True)
    assert transformers.AutoConfig.from_pretrained(folder).type_vocab_size == 0
    recipe = get_recipe("bert-default", max_steps=2)
    prepared = prepare("same-number", folder, recipe, 0, device="cpu")  # a pair task: token types 0 and 1
    assert fine_tune(prepared).steps == 2
