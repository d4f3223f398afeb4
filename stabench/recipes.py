"""Fine-tuning recipes: frozen, hashable configs with a stable content hash.

A recipe is everything about *how* a model is fine-tuned.  Two recipes with the same knobs
are the same recipe whatever they are called, so the name is left out of the hash.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

from .result import content_hash

SCHEDULES = ("linear", "constant", "constant_with_warmup", "cosine")
PRECISIONS = ("fp32", "tf32", "bf16")
CHECKPOINTS = ("last", "best")
# torch.compile modes; "reduce-overhead" also captures the step in CUDA graphs (on CUDA).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
ADAMW_STYLES = ("transformers", "torch")  # where a bias-corrected AdamW adds eps (see optim)
ATTENTIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
HOOK_FINGERPRINT = "hook_fingerprint"  # beside a stored run's recipe fields: its hook's code then


@dataclass(frozen=True)
class Recipe:
    """The BERT fine-tuning recipe of Devlin et al. (2019) unless a field says otherwise."""

    name: str = "custom"
    lr: float = 2e-5
    epochs: float = 3.0
    max_steps: int | None = None  # when set, overrides epochs (the paper's "full steps" study)
    batch_size: int = 16
    max_length: int = 128
    warmup: float = 0.1  # fraction of all steps spent warming up linearly
    schedule: str = "linear"
    weight_decay: float = 0.01  # decoupled; never on bias / LayerNorm weights
    adam_eps: float = 1e-6
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    bias_correction: bool = False  # the original BERT optimizer had none
    adamw_style: str = "transformers"  # with bias correction: transformers.AdamW (the paper's) or "torch"; else moot
    grad_clip: float | None = 1.0  # global L2 norm; None disables clipping
    dropout: float | None = 0.1  # hidden, attention and classifier dropout; None keeps the model's
    precision: str = "fp32"
    checkpoint: str = "last"  # "last": the paper's failure definition; "best": best dev evaluation
    eval_every: int | None = None  # steps between dev evaluations (None: only at the end / epoch ends for "best")
    trace_every: int = 10  # steps between gradient-norm and loss trace points
    mixout: float = 0.0  # Lee et al. 2020 mixing probability; replaces dropout (recorded as 0.0) when > 0
    reinit_layers: int = 0  # Zhang et al. 2021: re-initialise the top k encoder layers and pooler
    layerwise_lr_decay: float = 1.0  # Zhang et al. 2021: lr multiplier per layer going down
    pad_to_multiple_of: int | None = None  # length buckets so GPU step shapes repeat
    compile: str | None = None  # torch.compile mode for the training forward/backward; None: eager
    attention: str | None = None  # attention implementation; None: transformers' default (sdpa)
    hook: str | None = None  # a registered function of the user's that changes the model first (stabench.hook)
    token_types: bool = True  # False: every token is type 0, as the authors' code fed BERT for the paper

    def __post_init__(self) -> None:
        __tracebackhide__ = True
        _check_types(self)
        _check(bool(self.name.strip()), "name", self.name, "a non-empty name")
        _check(self.lr > 0 and math.isfinite(self.lr), "lr", self.lr, "a positive finite number")
        _check(0 < self.epochs < math.inf, "epochs", self.epochs, "a positive finite number")
        _check(self.max_steps is None or self.max_steps > 0, "max_steps", self.max_steps, "a positive integer or None")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.max_length >= 8, "max_length", self.max_length, "an integer >= 8")
        _check(0 <= self.warmup < 1, "warmup", self.warmup, "a fraction in [0, 1)")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        _check(not (self.schedule == "constant" and self.warmup), "warmup", self.warmup,  # else recorded, never done
               "0 with schedule='constant', which has no warmup (schedule='constant_with_warmup' warms up)")
        _check(0 <= self.weight_decay < math.inf, "weight_decay", self.weight_decay, "a finite number >= 0")
        _check(0 < self.adam_eps < math.inf, "adam_eps", self.adam_eps, "a positive finite number")
        for field in ("adam_beta1", "adam_beta2"):
            _check(0 <= getattr(self, field) < 1, field, getattr(self, field), "a number in [0, 1)")
        _check(self.adamw_style in ADAMW_STYLES, "adamw_style", self.adamw_style,
               f"one of {', '.join(ADAMW_STYLES)}")
        _check(self.grad_clip is None or 0 < self.grad_clip < math.inf, "grad_clip", self.grad_clip,
               "a positive finite number, or None for no clipping")
        _check(self.dropout is None or 0 <= self.dropout < 1, "dropout", self.dropout, "a number in [0, 1) or None")
        _check(self.precision in PRECISIONS, "precision", self.precision, f"one of {', '.join(PRECISIONS)}")
        _check(self.checkpoint in CHECKPOINTS, "checkpoint", self.checkpoint, f"one of {', '.join(CHECKPOINTS)}")
        _check(self.eval_every is None or self.eval_every > 0, "eval_every", self.eval_every, "a positive integer or None")
        _check(self.trace_every >= 1, "trace_every", self.trace_every, "an integer >= 1")
        _check(0 <= self.mixout < 1, "mixout", self.mixout, "a probability in [0, 1)")
        _check(self.reinit_layers >= 0, "reinit_layers", self.reinit_layers, "an integer >= 0")
        _check(0 < self.layerwise_lr_decay <= 1, "layerwise_lr_decay", self.layerwise_lr_decay, "a number in (0, 1]")
        _check(self.pad_to_multiple_of is None or self.pad_to_multiple_of >= 1, "pad_to_multiple_of",
               self.pad_to_multiple_of, "a positive integer or None")
        _check(self.compile is None or self.compile in COMPILE_MODES, "compile", self.compile,
               f"one of {', '.join(COMPILE_MODES)} or None")
        _check(self.attention is None or self.attention in ATTENTIONS, "attention", self.attention,
               f"one of {', '.join(ATTENTIONS)} or None")
        if self.mixout:  # Mixout replaces dropout: record (and hash) the dropout that trains, none
            object.__setattr__(self, "dropout", 0.0)
        _check(self.hook is None or bool(self.hook.strip()), "hook", self.hook,
               "the name of a function registered with @stabench.hook(name), or None")
        _check(not (self.attention == "flex_attention" and self.dropout != 0.0), "attention", self.attention,
               f"eager or sdpa with dropout={self.dropout!r} (transformers' flex attention applies no attention "
               f"dropout and refuses to train with it; None keeps the model's own), or dropout=0.0")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["hook"] is None:  # as recipes were before hooks: their hashes, and older stabench reads them
            del data["hook"]
        if data["token_types"]:  # likewise before token_types
            del data["token_types"]
        return data

    def record_and_hash(self) -> tuple[dict[str, Any], str]:
        """The fields a stored run keeps, and :attr:`hash`.  With a hook the fields hold the
        fingerprint of its code then (the name alone would not tell two versions of a hook apart,
        and an import checks the hash with it), read once for both, so a hook file saved between
        two reads cannot set a run's record apart from its key."""
        data = self.to_dict()
        if self.hook is None:
            return data, self.hash
        from .hooks import fingerprint

        data[HOOK_FINGERPRINT] = fingerprint(self.hook)
        return data, content_hash(self._hashed_fields(data[HOOK_FINGERPRINT]))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """A recipe from its fields, as ``to_dict`` or a stored run's record (:meth:`record_and_hash`) holds them."""
        data = {k: v for k, v in data.items() if k != HOOK_FINGERPRINT}  # what the hook was, not a field
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(unknown_field(unknown[0]))
        if data.get("bias_correction") and "adamw_style" not in data:
            data = {**data, "adamw_style": "torch"}  # stored before the field existed: torch's update was used
        return cls(**data)

    @property
    def hash(self) -> str:
        """Content hash of every knob except the name: what the run computes.

        A knob that does not change the computation does not change the hash: ``adamw_style``
        counts only as "transformers" with bias correction (without it both styles are one
        update), and with ``max_steps`` set ``epochs`` is hashed as its default, so
        ``mosbach-stable`` and ``bert-default-bc`` over one ``max_steps`` train once.  What
        stabench corrected is hashed in, so runs stored before a correction are not reused:
        Mixout's mask (one draw per input neuron), under layer-wise lr decay with weight decay
        the undecayed head, and with a hook and bias correction each parameter's own step count.
        A ``hook``'s code enters (:func:`hooks.fingerprint`); a recipe without one hashes as
        recipes did before hooks.  :meth:`recorded_hashes` adds the hashes earlier versions gave.
        """
        return content_hash(self._hashed_fields())

    def recorded_hashes(self, hook_fingerprint: str | None = None,
                        negative_zeros: Iterable[str] = ()) -> set[str]:
        """The hashes a stored run of this recipe can carry: this version's, and those earlier ones
        gave (before 2026-12-06 a recipe with ``max_steps`` hashed its ``epochs``; before
        2026-12-07 the fields a record holds as -0.0, ``negative_zeros``, hashed so).  A hook's
        code enters as the run recorded it (its ``hook_fingerprint``), else as it is now."""
        fields = self._hashed_fields(hook_fingerprint)
        variants = [fields]
        if self.max_steps is not None and self.epochs != Recipe.epochs:
            variants.append({**fields, "epochs": self.epochs})
        if zeros := [name for name in negative_zeros if name in fields]:
            variants += [{**variant, **{name: -0.0 for name in zeros}} for variant in variants]
        return {content_hash(variant) for variant in variants}

    def _hashed_fields(self, hook_fingerprint: str | None = None) -> dict[str, Any]:
        fields = self.to_dict()
        fields.pop("name")
        if self.max_steps is not None:  # training stops there, whatever the epochs say
            fields["epochs"] = Recipe.epochs
        if not (self.bias_correction and self.adamw_style == "transformers"):
            fields.pop("adamw_style")
        if self.mixout:
            fields["mixout_mask"] = "per input neuron"
        if self.layerwise_lr_decay < 1 and self.weight_decay > 0:
            fields["llrd_head_weight_decay"] = 0.0
        if self.hook is not None:  # its code too: an edited hook is another recipe
            if hook_fingerprint is None:
                from .hooks import fingerprint

                hook_fingerprint = fingerprint(self.hook)
            fields["hook"] = f"{self.hook} {hook_fingerprint}"
            if self.bias_correction:  # a hook may unfreeze parameters late: corrected by their own steps
                fields["adam_step"] = "per parameter"
        return fields

    def replace(self, **overrides: Any) -> Recipe:
        """A copy with some knobs changed; the name records that it was changed."""
        __tracebackhide__ = True
        if not overrides:
            return self
        known = {f.name for f in dataclasses.fields(self)}
        for field in overrides:
            if field not in known:
                raise ValueError(unknown_field(field))
        mixout = overrides.get("mixout", self.mixout)
        if overrides.get("dropout") and mixout:  # Mixout would switch it off
            raise ValueError(f"dropout={overrides['dropout']!r} with mixout={mixout!r} is invalid; Mixout replaces "
                             f"dropout, so leave dropout out (it is recorded as 0.0)")
        if self.mixout and not mixout and "dropout" not in overrides:  # its dropout 0.0 was Mixout's, not a choice
            raise ValueError(f"mixout={mixout!r} switches Mixout off, and this recipe's dropout (0.0) was Mixout's; "
                             f"give the dropout to train with too, e.g. dropout=0.1")
        name = overrides.pop("name", None)
        try:
            changed = dataclasses.replace(self, **overrides)  # checked, and numbers as their fields hold them
        except ValueError as error:  # raised afresh: pytest would show dataclasses' frames between
            raise ValueError(str(error)) from None
        if _passes_for_preset(changed, name):
            raise ValueError(f"recipe field name={name!r} names a preset's content, and this recipe's differs from "
                             f"it, so its runs would be listed as that content's; give it a name of its own")
        return dataclasses.replace(changed, name=self._name_with(changed, overrides, known) if name is None else name)

    def _name_with(self, changed: Recipe, overrides: dict[str, Any], known: set[str]) -> str:
        """This recipe's name with the overrides that made ``changed`` (``bert-default[lr=0.0001]``),
        their values as the recipe holds them (``batch_size=16.0`` is ``16``), whole numbers without
        a ``.0`` (``epochs=5``, typed or given to ``--set``).  One that changes nothing stays out,
        and over a preset so does one back to the preset's value, so that one content does not
        collect needless names."""
        base, named = _split_overrides(self.name, known)
        preset = PRESETS.get(base)
        for field in overrides:
            if getattr(changed, field) != getattr(preset or self, field):
                named[field] = _written(getattr(changed, field))
            elif preset is not None:
                named.pop(field, None)
        if changed.mixout:  # Mixout replaces dropout: a dropout in the name is not used
            named.pop("dropout", None)
        # Over a preset, a field the computation ignores stays out of the name (epochs under
        # max_steps, the AdamW style without bias correction), and comes back once it counts
        # again: the preset says what it was.  Over another recipe its name must keep it.
        ignored = {"epochs": changed.max_steps is not None, "adamw_style": not changed.bias_correction}
        for field, moot in ignored.items() if preset is not None else ():
            if moot:
                named.pop(field, None)
            elif getattr(changed, field) != getattr(preset, field):
                named[field] = _written(getattr(changed, field))
        return f"{base}[{','.join(f'{k}={v}' for k, v in sorted(named.items()))}]" if named else base

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps for a training set of n_train examples (last partial batch kept)."""
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * math.ceil(n_train / self.batch_size)))


_ACCEPTED = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}
# A name stabench gives a recipe with overrides: ``bert-default[lr=0.0002,max_steps=20]``.
_NAME_WITH_OVERRIDES = re.compile(r"(.+)\[([^\[\]]*)\]")


def _written(value: Any) -> str:
    """A field's value as a recipe's name shows it: whole numbers without a ``.0``."""
    whole = isinstance(value, float) and value.is_integer() and abs(value) < 1e15
    return str(int(value)) if whole else str(value)


def _check_types(recipe: Recipe) -> None:
    """Each field holds its declared type, so a string "no" cannot switch bias correction on.

    Numbers (numpy integers too) are normalised to their field's plain type (epochs=3 and epochs=3.0 are
    one recipe, as are warmup=-0.0 and 0.0, so the hash and the stored JSON agree); an int field takes a float only when it is
    a whole number."""
    __tracebackhide__ = True
    for f in dataclasses.fields(recipe):
        value, kinds = getattr(recipe, f.name), [k.strip() for k in f.type.split("|")]
        if value is None and "None" in kinds:
            continue
        kind, is_number = kinds[0], isinstance(value, (Integral, float)) and not isinstance(value, bool)
        if kind == "float" and is_number:
            try:
                object.__setattr__(recipe, f.name, float(value) + 0.0)  # -0.0 is 0.0, which JSON writes otherwise
            except OverflowError:  # an integer past the largest float, 10**400
                _check(False, f.name, value, "a finite number")
        elif kind == "int" and is_number and (isinstance(value, Integral) or value.is_integer()):
            object.__setattr__(recipe, f.name, int(value))
        elif not (kind == "bool" and isinstance(value, bool) or kind == "str" and isinstance(value, str)):
            accepted = _ACCEPTED[kind] + (" or None" if "None" in kinds else "")
            if kind == "float" and getattr(getattr(value, "dtype", None), "kind", "") == "f":  # np.float32
                accepted += (f" as a Python float, float(x): a {type(value).__name__} is not exactly the number "
                             f"it prints")
            _check(False, f.name, value, accepted)


def _check(ok: bool, field: str, value: Any, accepted: str) -> None:
    __tracebackhide__ = True
    if not ok:
        raise ValueError(f"recipe field {field}={_shown(value)} is invalid; expected {accepted}")


def _shown(value: Any) -> str:
    """A value as an error names it: an integer too long for Python to write (past 4300 digits) by
    its size."""
    try:
        return repr(value)
    except ValueError:
        return f"<an integer of about {int(int(value).bit_length() * math.log10(2)) + 1} digits>"


_BERT_DEFAULT = Recipe(name="bert-default")

PRESETS: dict[str, Recipe] = {
    # Devlin et al. (2019), as used by Mosbach et al.: no bias correction, 3 epochs.
    "bert-default": _BERT_DEFAULT,
    # The ablation: bias correction alone.
    "bert-default-bc": dataclasses.replace(_BERT_DEFAULT, name="bert-default-bc", bias_correction=True),
    # Mosbach et al.'s stable baseline: bias correction and 20 epochs, scored at the end of training as
    # the failure definition needs (the authors' config kept the best checkpoint: checkpoint="best").
    "mosbach-stable": dataclasses.replace(_BERT_DEFAULT, name="mosbach-stable", bias_correction=True, epochs=20.0),
    # Lee et al. (2020) as compared in Table 1: the default recipe with Mixout instead of dropout.  Which
    # p Table 1 used was not found (the paper's code has no Mixout); 0.1 is this project's choice (README, Recipes).
    "mixout": dataclasses.replace(_BERT_DEFAULT, name="mixout", mixout=0.1, dropout=0.0),
    # RoBERTa-large on RTE (Mosbach et al. appendix): wd 0.1, beta2 0.98, no clipping.
    "roberta-default": dataclasses.replace(_BERT_DEFAULT, name="roberta-default", weight_decay=0.1,
                                           adam_beta2=0.98, grad_clip=None),
    "roberta-default-bc": dataclasses.replace(_BERT_DEFAULT, name="roberta-default-bc", weight_decay=0.1,
                                              adam_beta2=0.98, grad_clip=None, bias_correction=True),
    # ALBERT-large-v2: no dropout, no weight decay.
    "albert-default": dataclasses.replace(_BERT_DEFAULT, name="albert-default", dropout=0.0, weight_decay=0.0),
    "albert-default-bc": dataclasses.replace(_BERT_DEFAULT, name="albert-default-bc", dropout=0.0,
                                             weight_decay=0.0, bias_correction=True),
}


def _split_overrides(name: str, fields: set[str]) -> tuple[str, dict[str, str]]:
    """``bert-default[lr=0.0002,max_steps=20]`` -> ``bert-default``, {lr: 0.0002, max_steps: 20}:
    a second round of overrides updates the first instead of stacking another bracket."""
    match = _NAME_WITH_OVERRIDES.fullmatch(name)
    if match:
        items = [item.partition("=") for item in match.group(2).split(",")]
        if all(sep and key in fields for key, sep, _ in items):
            return match.group(1), {key: value for key, _, value in items}
    return name, {}


def get_recipe(recipe: str | os.PathLike | Recipe, **overrides: Any) -> Recipe:
    """A preset by name (also as stabench names a changed one: ``bert-default[lr=0.0002]``), a
    recipe file (``.json``, or any path object) or a Recipe as is, with overrides applied."""
    __tracebackhide__ = True  # at a claim file's top, pytest shows the user's line and the error
    if isinstance(recipe, Recipe):
        return recipe.replace(**overrides)
    if isinstance(recipe, os.PathLike):
        return recipe_from_file(recipe).replace(**overrides)
    if not isinstance(recipe, str):
        raise ValueError(f"recipe={recipe!r} is invalid; expected a preset name ({', '.join(PRESETS)}), a recipe "
                         f"file (.json) or a Recipe, e.g. stabench.get_recipe('bert-default', lr=1e-4)")
    if recipe.lower().endswith(".json"):
        return recipe_from_file(recipe).replace(**overrides)
    named = _NAME_WITH_OVERRIDES.fullmatch(recipe)
    if named and named.group(1) in PRESETS:  # a name stabench prints: the preset with those fields
        return PRESETS[named.group(1)].replace(**{**parse_overrides([named.group(2)]), **overrides})
    if recipe not in PRESETS:
        close = difflib.get_close_matches(named.group(1) if named else recipe, PRESETS, n=1)
        meant = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown recipe {recipe!r}{meant}; known recipes: {', '.join(PRESETS)}, or a recipe file "
                         f"(.json)")
    return PRESETS[recipe].replace(**overrides)


def canonical_name(name: str) -> str:
    """A preset with overrides as stabench names it, so a filter finds its runs however the
    overrides are written (``bert-default[max_steps=64,lr=3e-3]`` is stored as
    ``bert-default[lr=0.003,max_steps=64]``); any other name as given."""
    if not (named := _NAME_WITH_OVERRIDES.fullmatch(name)):
        return name
    try:
        if "name" in parse_overrides([named.group(2)]):  # it names a recipe, not its fields
            return name
        return get_recipe(name).name
    except ValueError:  # not a preset's: a name of the user's own
        return name


def overrides_error(name: str) -> str | None:
    """Why a preset's name with overrides names no recipe (``bert-default[lr=abc]``), for a filter
    that then matches nothing; None for any other name."""
    named = _NAME_WITH_OVERRIDES.fullmatch(name)
    if not named or named.group(1) not in PRESETS:
        return None
    try:
        get_recipe(name)
    except ValueError as error:
        return str(error)
    return None


def recipe_from_file(path: str | os.PathLike) -> Recipe:
    """A recipe kept in a JSON file, for the CLI and claims alike: ``{"preset": "mosbach-stable",
    "lr": 1e-5}`` (fields over a preset) or fields over the BERT recipe's defaults.  Its name is
    the file's ``"name"``, else the file's stem."""
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else (f" (relative to {os.getcwd()}; in a claim file, Path(__file__).parent / "
                                                f"{str(path)!r} finds it wherever pytest starts)")
        raise FileNotFoundError(f"recipe file {str(path)!r} does not exist{where}; expected a JSON object of recipe "
                                f"fields")
    try:
        fields = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"recipe file {str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(fields, dict):
        raise ValueError(f"recipe file {str(path)!r} holds a {type(fields).__name__}; expected a JSON object of "
                         f"recipe fields, e.g. {{\"preset\": \"mosbach-stable\", \"lr\": 1e-05}}")
    fields.pop(HOOK_FINGERPRINT, None)  # a stored run's recipe saved as a file: its hook is the one registered now
    preset = fields.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        close = difflib.get_close_matches(str(preset), list(PRESETS), n=1)
        meant = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"recipe file {str(path)!r}: unknown preset {preset!r}{meant}; known presets: "
                         f"{', '.join(PRESETS)}")
    base = PRESETS[preset] if preset is not None else Recipe()
    name = fields.pop("name", None)
    name = path.stem if name is None else name
    try:
        recipe = base.replace(**fields)
        if _passes_for_preset(recipe, name):
            raise ValueError(f"it is named {name!r}, a preset with other content; give it another \"name\" (or file "
                             f"name)")
        return recipe.replace(name=name)
    except ValueError as error:
        raise ValueError(f"recipe file {str(path)!r}: {error}") from None


def _passes_for_preset(recipe: Recipe, name: str | None) -> bool:
    """Whether naming ``recipe`` ``name`` would list its runs as a preset's whose content differs:
    a preset's name, or one as stabench names a changed preset (``bert-default[lr=0.001]``), which
    ``get_recipe`` reads back as that content."""
    if not isinstance(name, str):
        return False
    if name in PRESETS:
        return recipe.hook is not None or recipe._hashed_fields() != PRESETS[name]._hashed_fields()
    named = _NAME_WITH_OVERRIDES.fullmatch(name)
    if not (named and named.group(1) in PRESETS):
        return False
    try:
        meant = PRESETS[named.group(1)].replace(**parse_overrides([named.group(2)]))
    except ValueError:  # brackets holding no overrides: a name of its own
        return False
    return recipe._hashed_fields(hook_fingerprint="") != meant._hashed_fields(hook_fingerprint="")  # code: not named


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``field=value`` strings from the command line into typed recipe overrides; an item
    may hold several, separated by commas (``lr=1e-3,epochs=1``).  A field given again wins, as
    a repeated command-line option does (``--set max_steps=60`` added to a longer command)."""
    types = {f.name: f.type for f in dataclasses.fields(Recipe)}
    overrides: dict[str, Any] = {}
    for text in items:
        if text.strip() and not text.replace(",", "").strip():
            raise ValueError(f"recipe override {text!r} names no field; expected field=value, several separated by "
                             f"commas (lr=1e-3,epochs=1)")
    for item in (part for text in items for part in text.split(",") if part.strip()):
        field, sep, text = item.partition("=")
        field = field.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"recipe override {item!r} is not of the form field=value")
        if field not in types:
            raise ValueError(unknown_field(field))
        overrides[field] = _parse_value(field, types[field], text.strip())
    return overrides


_STUDY_ARGUMENTS = {"train_size": ("train_size", "--train-size"), "seed": ("seeds", "--seeds"),
                    "seeds": ("seeds", "--seeds"), "task": ("task", "--task"), "model": ("model", "--model")}


# The names a fine-tuner types first: transformers' TrainingArguments (and run_glue.py's, the
# model config's) for what a recipe field sets.
_TRAINER_NAMES = {
    "learning_rate": "lr", "num_train_epochs": "epochs", "per_device_train_batch_size": "batch_size",
    "train_batch_size": "batch_size", "max_seq_length": "max_length", "warmup_ratio": "warmup",
    "warmup_steps": "warmup", "lr_scheduler_type": "schedule", "adam_epsilon": "adam_eps",
    "max_grad_norm": "grad_clip", "hidden_dropout_prob": "dropout", "attention_probs_dropout_prob": "dropout",
    "bf16": "precision", "fp16": "precision", "tf32": "precision", "eval_steps": "eval_every",
    "logging_steps": "trace_every", "torch_compile_mode": "compile", "attn_implementation": "attention",
}


def unknown_field(field: str) -> str:
    """The error for a recipe field that does not exist, with the likeliest one meant."""
    known = sorted(f.name for f in dataclasses.fields(Recipe))
    if study := _STUDY_ARGUMENTS.get(field):  # what a run trains on, not how
        return (f"{field} is not a recipe field: a study gives it ({study[0]}= in a claim or stabench.study, "
                f"{study[1]} in stabench run); known recipe fields: {', '.join(known)}")
    if ours := _TRAINER_NAMES.get(field.lower()):
        unit = {"warmup": ", a fraction of all steps", "precision": f", one of {', '.join(PRECISIONS)}"}.get(ours, "")
        meant = f" (transformers' name; stabench's field is {ours!r}{unit})"
    else:
        close = difflib.get_close_matches(field, known, n=1)
        meant = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown recipe field {field!r}{meant}; known fields: {', '.join(known)}"


def _parse_value(field: str, type_name: str, text: str) -> Any:
    optional = "None" in type_name
    if optional and text.lower() in ("none", "null", ""):
        return None
    base = type_name.split("|")[0].strip()
    try:
        if base == "bool":
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if base == "int":  # a whole number written as a float (64.0, 1e3) too, as get_recipe takes it
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(text) if text.strip().lstrip("+-").isdecimal() else int(number)
        if base == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"recipe override {field}={text!r} is invalid; expected {_ACCEPTED[base]}"
                         + (" or none" if optional else "")) from None
    return text


def plain_value(value: Any) -> Any:
    """A recipe value as a person writes it: epochs 4, not the 4.0 a float field holds."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def stored_fields(record: Any) -> Any:
    """A stored recipe with today's defaults filled in, so a field added since is not a change,
    and its hook's fingerprint where the record holds one: an edited hook shows as its change."""
    if not (isinstance(record, Mapping) and record):
        return record
    try:
        fields = dataclasses.asdict(Recipe.from_dict(record))  # every field, those to_dict leaves out too
    except (TypeError, ValueError, AttributeError):  # written by another stabench version, or malformed
        return record
    if HOOK_FINGERPRINT in record:
        fields[HOOK_FINGERPRINT] = record[HOOK_FINGERPRINT]
    return fields


def distinguishing_fields(recipes: Sequence[Any], most: int = 3) -> list[str]:
    """Up to ``most`` recipe fields whose values tell the versions apart, each chosen to tell the
    most of them apart (the alphabetically first on a tie).  Records without fields take no part."""
    recipes = [r for r in recipes if isinstance(r, Mapping) and r]
    # A fingerprint that some records lack (stored before it) and the rest agree on tells nothing.
    holding = {repr(r[HOOK_FINGERPRINT]) for r in recipes if HOOK_FINGERPRINT in r}
    unrecorded = {HOOK_FINGERPRINT} if len(holding) <= 1 else set()
    candidates = sorted(field for field in set().union(*recipes) - {"name"} - unrecorded
                        if len({repr(r.get(field)) for r in recipes}) > 1)

    def told_apart(fields: list[str]) -> int:
        return len({tuple(repr(r.get(field)) for field in fields) for r in recipes})

    chosen: list[str] = []
    versions = told_apart(candidates)
    while candidates and len(chosen) < most and told_apart(chosen) < versions:
        best = max(candidates, key=lambda field: (told_apart([*chosen, field]), -candidates.index(field)))
        chosen.append(best)
        candidates.remove(best)
    return chosen


def version_labels(versions: Sequence[tuple[str, Any]]) -> list[str]:
    """Versions of a recipe edited under one name, each ``(short hash, stored record)``, labelled
    by the hash and its values of the fields that tell them apart (:func:`distinguishing_fields`):
    ``37367b22 (epochs=15)``; a record without fields by its hash alone."""
    records = [stored_fields(record) for _, record in versions]
    fields = distinguishing_fields(records)
    return [f"{short_hash} ({', '.join(f'{field}={plain_value(record.get(field))}' for field in fields)})"
            if fields and isinstance(record, Mapping) and record else short_hash
            for (short_hash, _), record in zip(versions, records)]
