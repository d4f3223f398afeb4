"""Stabilising interventions the paper compares against or users ask for.

Each function acts in place on a Hugging Face ``*ForSequenceClassification`` model (BERT,
RoBERTa, MiniLM, ELECTRA, DeBERTa, DistilBERT, ModernBERT; ALBERT, whose layers share one set
of weights, has Mixout only):

* Mixout (Lee et al. 2020): :class:`MixLinear`, :func:`apply_mixout`.
* Re-initialising the top encoder layers (Zhang et al. 2021): :func:`reinit_top_layers`.
* Layer-wise learning-rate decay (Zhang et al. 2021): :func:`layerwise_lr_param_groups`.
* Layer bookkeeping shared with the gradient-norm traces: :func:`encoder_layers`,
  :func:`layer_group`.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from .models import DROPOUT_FIELDS, draw_bert_init
from .optim import no_decay_names

__all__ = [
    "MixLinear",
    "apply_mixout",
    "check_per_layer",
    "encoder_layers",
    "layer_group",
    "layerwise_lr_param_groups",
    "mixout_weight",
    "reinit_top_layers",
]

_DROPOUT_TYPES = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)

_LAYER_RE = re.compile(r"(?:^|\.)(?:(?:encoder|transformer)\.layer|layers)\.(\d+)\.")
_ALBERT_GROUP_RE = re.compile(r"(?:^|\.)albert_layer_groups\.(\d+)\.")
# Embeddings, with what maps them to the layers' width (ALBERT, ELECTRA) and DeBERTa's relative
# position embeddings, which every layer reads.
_EMBEDDINGS_RE = re.compile(r"(?:^|\.)(?:embeddings|embedding_hidden_mapping_in|embeddings_project|rel_embeddings)\.")
# DeBERTa-v2's encoder norms its relative position embeddings, and its convolution (xlarge and up)
# joins the first layer's output.
_DEBERTA_ENCODER_RE = re.compile(r"(?:^|\.)encoder\.(LayerNorm|conv)\.")
# Between the last layer and the classifier: BERT's pooler, ModernBERT's final norm and head, a
# pre-LN encoder's final norm (XLM-RoBERTa-XL).
_POOLER_RE = re.compile(r"(?:^|\.)(?:pooler|final_norm|head|encoder\.LayerNorm)\.")
_CLASSIFIER_RE = re.compile(r"(?:^|\.)(?:pre_)?classifier\.")


def _check_mixout_p(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"mixout probability p={p!r} must satisfy 0 <= p < 1")


# --------------------------------------------------------------------------------------
# Mixout
# --------------------------------------------------------------------------------------
def mixout_weight(
    weight: torch.Tensor,
    target: torch.Tensor,
    p: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One Mixout sample ``((1-M)*target + M*weight - p*target) / (1-p)``, ``M ~ Bernoulli(1-p)``.

    As dropout drops a neuron, Mixout resets one: for a Linear weight ``[out, in]`` each input
    neuron j is kept or reset with all its outgoing weights ``weight[:, j]`` at once (Lee et
    al. 2020, Fig. 1, and their code; one draw per entry would be "mixconnect").  A 1-D
    weight gets one draw per entry.  Written as the algebraically equal
    ``target + M*(weight - target)/(1-p)``: survivors are rescaled so that the expectation
    over M is exactly ``weight``.  The mask is drawn on ``weight``'s device from ``generator``
    (default: the global torch RNG, so ``torch.manual_seed`` fixes it).  Gradients reach
    ``weight`` only, scaled by ``M/(1-p)``: the derivative of this forward (the reference code
    leaves out the 1/(1-p); under Adam that mostly changes how global-norm clipping weighs
    the mixed layers).
    """
    _check_mixout_p(p)
    if p == 0.0:
        return weight
    per_neuron = weight.shape[1:] if weight.dim() > 1 else weight.shape
    mask = torch.empty(per_neuron, dtype=weight.dtype, device=weight.device).bernoulli_(1.0 - p, generator=generator)
    return target + mask * (weight - target) / (1.0 - p)


class MixLinear(nn.Linear):
    """A Linear layer whose weight is mixed with a frozen target during training (Mixout).

    It is an ``nn.Linear`` (in eval mode it is exactly one), so a hook that finds the model's
    Linear layers by type finds them under Mixout too.  Re-initialise layers before Mixout (as
    training does): one re-initialised after it still mixes toward its old weight.

    The module takes over ``linear``'s ``weight`` and ``bias`` Parameters (same objects,
    same names in ``named_parameters``), so optimiser groups, no-decay rules and state-dict
    keys are those of the plain model.  The target (``w_pre``: the pretrained weight, or a
    new classifier's init weight) is a non-persistent buffer: it follows ``.to()`` but is
    not saved, because it is rebuilt from the pretrained checkpoint when a run is set up.

    As in the reference implementation only the weight is mixed; the bias is used as is.
    In eval mode, or with ``p == 0``, the layer is exactly ``nn.Linear``.
    """

    def __init__(self, linear: nn.Linear, p: float, target: torch.Tensor | None = None) -> None:
        nn.Module.__init__(self)  # not Linear's, which would draw a weight of its own
        _check_mixout_p(p)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.p = float(p)
        self.weight = linear.weight
        self.bias = linear.bias
        w_pre = linear.weight.detach() if target is None else target.detach()
        if w_pre.shape != self.weight.shape:
            raise ValueError(
                f"mixout target shape {tuple(w_pre.shape)} != weight shape {tuple(self.weight.shape)}"
            )
        self.register_buffer(
            "w_pre", w_pre.to(device=self.weight.device, dtype=self.weight.dtype).clone(),
            persistent=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = mixout_weight(self.weight, self.w_pre, self.p) if self.training else self.weight
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, p={self.p}"
        )


def apply_mixout(model: nn.Module, p: float) -> int:
    """Replace every ``nn.Linear`` in ``model`` by a :class:`MixLinear` and switch dropout off.

    Call it right after loading the pretrained weights (and creating the classifier): each
    layer mixes toward its weight *at this moment*, i.e. the pretrained weight, and for the
    freshly initialised classifier its init weight.  Mixout replaces dropout, so every
    ``nn.Dropout`` gets ``p = 0``, and so does every float attribute named for dropout: some
    attention modules keep their probability as a number (ModernBERT's ``attention_dropout``,
    SDPA attention's ``dropout_prob`` in transformers 4).  The config's dropout fields are set
    to 0 so a model rebuilt from the config agrees.  Returns the number of replaced layers.
    """
    _check_mixout_p(p)
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and not isinstance(m, MixLinear)]  # applied twice: mixed once
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, MixLinear(linear, p))
    for module in model.modules():
        if isinstance(module, _DROPOUT_TYPES):
            module.p = 0.0
        for attribute, value in vars(module).items():
            if "dropout" in attribute and isinstance(value, float):
                setattr(module, attribute, 0.0)
    config = getattr(model, "config", None)
    if config is not None:
        for field in DROPOUT_FIELDS:
            if hasattr(config, field):
                setattr(config, field, 0.0)
    return len(targets)


# --------------------------------------------------------------------------------------
# Layer bookkeeping
# --------------------------------------------------------------------------------------
def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's per-depth layer list, bottom (index 0) to top.

    Works on a task model or a bare base model: ``<base>.encoder.layer`` (BERT, MiniLM,
    RoBERTa, ELECTRA, DeBERTa), ``<base>.transformer.layer`` (DistilBERT) or ``<base>.layers``
    (ModernBERT).  ALBERT raises, since its depth reuses one shared layer group, so there is
    no module per layer to address.
    """
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    if encoder is not None and hasattr(encoder, "albert_layer_groups"):
        raise ValueError(SHARED_LAYERS)
    for layers in (getattr(encoder, "layer", None), getattr(getattr(base, "transformer", None), "layer", None),
                   getattr(base, "layers", None)):
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(
        f"cannot find the encoder layer list of {type(model).__name__}: expected "
        "<base>.encoder.layer, <base>.transformer.layer or <base>.layers"
    )


SHARED_LAYERS = ("ALBERT shares one set of layer weights across all depths (encoder.albert_layer_groups), so "
                 "per-layer interventions (reinit_layers, layerwise_lr_decay) are undefined for it")


def check_per_layer(model_type: str | None) -> None:
    """Refuses per-layer interventions for a model whose layers share their weights, from its
    config's ``model_type``, before any data or weights load."""
    if model_type == "albert":
        raise ValueError(SHARED_LAYERS)


def layer_group(param_name: str, num_layers: int, model_type: str | None = None) -> str:
    """The readable layer group of a parameter name.

    Returns ``"layer.<i>"`` for encoder layer i (``encoder.layer.<i>``,
    ``transformer.layer.<i>``, ModernBERT's ``layers.<i>`` and ALBERT's shared
    ``albert_layer_groups.<i>``), ``"embeddings"`` (with ALBERT's and ELECTRA's projections to
    the layers' width and DeBERTa's relative position embeddings and their norm), ``"pooler"``
    (also ModernBERT's final norm and head, and a pre-LN encoder's final norm),
    ``"classifier"`` (also DistilBERT's freshly initialised ``pre_classifier`` and RoBERTa's
    ``classifier.dense``), else ``"other"``.  A layer index outside ``[0, num_layers)`` is
    ``"other"`` too, so a stray numbered list is never mistaken for a layer.  ``model_type`` (the
    config's) tells DeBERTa's ``encoder.LayerNorm`` (embeddings) from a final norm (pooler), and
    puts DeBERTa-v2's ``encoder.conv`` with layer 0, whose output it joins.
    """
    if model_type in ("deberta", "deberta-v2") and (deberta := _DEBERTA_ENCODER_RE.search(param_name)):
        return "embeddings" if deberta.group(1) == "LayerNorm" else "layer.0"
    match = _LAYER_RE.search(param_name) or _ALBERT_GROUP_RE.search(param_name)
    if match:
        index = int(match.group(1))
        return f"layer.{index}" if index < num_layers else "other"
    if _EMBEDDINGS_RE.search(param_name):
        return "embeddings"
    if _POOLER_RE.search(param_name):
        return "pooler"
    if _CLASSIFIER_RE.search(param_name):
        return "classifier"
    return "other"


# --------------------------------------------------------------------------------------
# Re-initialisation
# --------------------------------------------------------------------------------------
def check_reinit_layers(k: int, num_layers: int) -> None:
    if not 0 <= k <= num_layers:
        raise ValueError(f"recipe field reinit_layers={k!r} is invalid for this model; expected 0..{num_layers} "
                         f"(it has {num_layers} encoder layers)")


def reinit_top_layers(model: nn.Module, k: int, reinit_pooler: bool = True) -> list[str]:
    """Re-initialise the top ``k`` encoder layers and (optionally) the pooler, in place.

    Zhang et al. (2021): the top layers of a pretrained encoder are specialised to the
    pretraining task and transfer poorly; starting them from BERT's init stabilises few-sample
    fine-tuning.  Linear weights ~ normal(0, config.initializer_range), biases 0, LayerNorm
    weight 1 / bias 0 (``models.draw_bert_init``).  Draws from the current torch RNG, so the
    run's seed drives it.  With ``k = 0`` and ``reinit_pooler`` only the pooler (if the model has
    one) is reset.
    Returns the names (as in ``model.named_parameters()``) of the re-initialised parameters.
    """
    layers = encoder_layers(model)
    check_reinit_layers(k, len(layers))
    std = float(model.config.initializer_range)
    modules = list(layers[len(layers) - k:])
    pooler = getattr(getattr(model, "base_model", model), "pooler", None)
    if reinit_pooler and pooler is not None:
        modules.append(pooler)
    touched = {id(param) for module in modules for sub in module.modules() for param in draw_bert_init(sub, std)}
    return [name for name, param in model.named_parameters() if id(param) in touched]


# --------------------------------------------------------------------------------------
# Layer-wise learning-rate decay
# --------------------------------------------------------------------------------------
def layerwise_lr_param_groups(
    model: nn.Module,
    base_lr: float,
    decay: float,
    weight_decay: float,
) -> list[dict]:
    """Optimiser parameter groups with layer-wise learning-rate decay (Zhang et al. 2021).

    With L encoder layers (0 = bottom) the learning rates are

    * head (``pooler`` and ``classifier``): ``base_lr``
    * encoder layer i: ``base_lr * decay ** (L - i)`` (the top layer, i = L-1, gets
      ``base_lr * decay``)
    * embeddings: ``base_lr * decay ** (L + 1)``

    so each step down the network multiplies the lr by ``decay``; ``decay = 1`` is a plain
    single-lr recipe.  Each depth is split into a decayed group (``weight_decay``) and a
    no-decay group (``weight_decay = 0``) for biases and norm layers, as in BERT.  With
    ``decay < 1`` the head is never decayed, weights included, as in Zhang et al.'s code (its
    ``get_optimizer_grouped_parameters`` puts pooler and classifier in one group with weight
    decay 0; with ``decay = 1`` it falls back to the plain BERT groups, and so does this).  Group
    dicts carry ``params``, ``lr``, ``weight_decay`` and ``name`` (e.g. ``"layer.3/decay"``,
    ``"embeddings/no_decay"``), ordered bottom to top; empty groups are left out.  Every trainable parameter is in exactly
    one group; a trainable parameter outside these parts raises ValueError rather than
    silently getting some lr.
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer-wise lr decay={decay!r} must be in (0, 1]")
    num_layers = len(encoder_layers(model))
    depth_lr = {"embeddings": base_lr * decay ** (num_layers + 1)}
    depth_lr.update({f"layer.{i}": base_lr * decay ** (num_layers - i) for i in range(num_layers)})
    depth_lr.update({"pooler": base_lr, "classifier": base_lr})

    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    exempt = no_decay_names(model)
    unplaced = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_group(name, num_layers, getattr(getattr(model, "config", None), "model_type", None))
        if depth not in depth_lr:
            unplaced.append(name)
            continue
        decayed = name not in exempt and not (decay < 1 and depth in ("pooler", "classifier"))
        buckets.setdefault((depth, decayed), []).append(param)
    if unplaced:
        raise ValueError(f"no layer-wise lr for trainable parameters {unplaced}")

    groups = []
    for depth, lr in depth_lr.items():
        for decayed in (True, False):
            params = buckets.get((depth, decayed))
            if params:
                groups.append({
                    "params": params,
                    "lr": lr,
                    "weight_decay": weight_decay if decayed else 0.0,
                    "name": f"{depth}/{'decay' if decayed else 'no_decay'}",
                })
    return groups
