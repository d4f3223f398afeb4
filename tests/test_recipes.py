import dataclasses
import math

import hypothesis.strategies as st
import pytest
from hypothesis import assume, example, given

from stabench.recipes import PRESETS, SCHEDULES, Recipe, get_recipe, parse_overrides


def test_presets_carry_the_papers_settings():
    default, stable, ablation = PRESETS["bert-default"], PRESETS["mosbach-stable"], PRESETS["bert-default-bc"]
    assert (default.lr, default.epochs, default.batch_size, default.max_length) == (2e-5, 3, 16, 128)
    assert (default.warmup, default.schedule, default.weight_decay, default.adam_eps) == (0.1, "linear", 0.01, 1e-6)
    assert (default.adam_beta1, default.adam_beta2, default.grad_clip, default.dropout) == (0.9, 0.999, 1.0, 0.1)
    assert default.bias_correction is False and default.checkpoint == "last" and default.precision == "fp32"
    assert stable == dataclasses.replace(default, name="mosbach-stable", bias_correction=True, epochs=20)
    assert ablation == dataclasses.replace(default, name="bert-default-bc", bias_correction=True)
    # reference.md: RoBERTa wd 0.1, beta2 0.98, no clipping (else as BERT); ALBERT dropout 0, wd 0
    for suffix, corrected in (("", False), ("-bc", True)):
        roberta, albert = PRESETS[f"roberta-default{suffix}"], PRESETS[f"albert-default{suffix}"]
        assert roberta.lr in (1e-5, 2e-5, 3e-5)
        assert roberta == dataclasses.replace(default, name=roberta.name, lr=roberta.lr, weight_decay=0.1,
                                              adam_beta2=0.98, grad_clip=None, bias_correction=corrected)
        assert albert == dataclasses.replace(default, name=albert.name, dropout=0.0, weight_decay=0.0,
                                             bias_correction=corrected)


def test_hash_is_content_only_and_stable():
    renamed = dataclasses.replace(PRESETS["bert-default"], name="mine")
    assert renamed.hash == PRESETS["bert-default"].hash
    assert get_recipe("bert-default", lr=3e-5).hash != PRESETS["bert-default"].hash
    assert PRESETS["bert-default"].hash == Recipe.from_dict(PRESETS["bert-default"].to_dict()).hash
    assert len({r.hash for r in PRESETS.values()}) == len(PRESETS)
    assert hash(PRESETS["bert-default"]) == hash(Recipe.from_dict(PRESETS["bert-default"].to_dict()))


def test_hash_changes_only_where_a_correction_changed_the_computation():
    """Runs stored before adamw_style existed, or before Mixout drew one mask per input neuron,
    must not be reused: those recipes hash a new entry.  Recipes without bias correction or
    Mixout compute what they computed before and keep their hash (and their stored runs)."""
    from stabench.result import content_hash

    def old_hash(recipe):
        return content_hash({k: v for k, v in recipe.to_dict().items() if k not in ("name", "adamw_style")})

    assert PRESETS["bert-default"].hash == old_hash(PRESETS["bert-default"])
    assert PRESETS["mosbach-stable"].hash != old_hash(PRESETS["mosbach-stable"])
    assert PRESETS["mixout"].hash != old_hash(PRESETS["mixout"])
    torch_style = get_recipe("mosbach-stable", adamw_style="torch")  # what bias correction computed before
    assert torch_style.hash == old_hash(torch_style) != PRESETS["mosbach-stable"].hash
    moot = get_recipe("bert-default", adamw_style="torch")  # no bias correction: one update, one hash
    assert moot.hash == PRESETS["bert-default"].hash
    # a record stored before the field existed reads back as the torch update it was trained with
    stored = {k: v for k, v in PRESETS["mosbach-stable"].to_dict().items() if k != "adamw_style"}
    assert Recipe.from_dict(stored).adamw_style == "torch" and Recipe.from_dict(stored).hash == old_hash(torch_style)
    assert Recipe.from_dict(PRESETS["mosbach-stable"].to_dict()) == PRESETS["mosbach-stable"]
    # layer-wise lr decay stopped decaying the head's weights; only recipes with weight decay changed
    llrd = get_recipe("bert-default", layerwise_lr_decay=0.9)
    assert llrd.hash != old_hash(llrd)
    no_weight_decay = get_recipe("bert-default", layerwise_lr_decay=0.9, weight_decay=0.0)
    assert no_weight_decay.hash == old_hash(no_weight_decay)


def test_mixout_records_the_dropout_it_trains_with_none():
    """Mixout switches dropout off, so a dropout given with it would be recorded, hashed and stored
    as a second recipe that trains exactly as the first."""
    given = get_recipe("bert-default", mixout=0.1)
    assert given.dropout == 0.0 and given.hash == get_recipe("bert-default", mixout=0.1, dropout=0.0).hash
    assert Recipe.from_dict({**given.to_dict(), "dropout": 0.3}).dropout == 0.0
    assert get_recipe("bert-default", dropout=0.3).dropout == 0.3  # without Mixout, dropout is as given
    with pytest.raises(ValueError, match=r"mixout=0.0 switches Mixout off, and this recipe's dropout \(0.0\) was "
                                         r"Mixout's; give the dropout to train with too"):
        get_recipe("mixout", mixout=0.0)
    off = get_recipe("mixout", mixout=0.0, dropout=0.1)
    assert off.dropout == 0.1 and off.hash == get_recipe("bert-default").hash
    for call in (lambda: get_recipe("bert-default", mixout=0.1, dropout=0.2), lambda: get_recipe("mixout", dropout=0.1)):
        with pytest.raises(ValueError, match="with mixout=0.1 is invalid; Mixout replaces dropout, so leave dropout out"):
            call()


def test_overrides_rename_and_validate():
    recipe = get_recipe("mosbach-stable", lr=1e-4, max_steps=10)
    assert recipe.name == "mosbach-stable[lr=0.0001,max_steps=10]" and recipe.total_steps(10_000) == 10
    assert get_recipe("bert-default").total_steps(2490) == 3 * 156  # RTE: 156 steps per epoch
    assert get_recipe("mosbach-stable").total_steps(2490) == 3120


@pytest.mark.parametrize("call, message", [
    (lambda: get_recipe("nope"), "unknown recipe 'nope'; known recipes: bert-default"),
    (lambda: get_recipe("bert-default", lr=-1e-5), "lr=-1e-05 is invalid; expected a positive finite number"),
    (lambda: get_recipe("bert-default", precision="fp8"), "precision='fp8' is invalid; expected one of fp32"),
    (lambda: get_recipe("bert-default", checkpoint="middle"), "checkpoint='middle' is invalid"),
    (lambda: get_recipe("bert-default", compile="fast"), "compile='fast' is invalid; expected one of default, "
                                                           "reduce-overhead, max-autotune or None"),
    (lambda: get_recipe("bert-default", attention="flash"), "attention='flash' is invalid; expected one of eager"),
    (lambda: get_recipe("bert-default", learning_rate=1.0), "unknown recipe field 'learning_rate' (transformers' "
                                                            "name; stabench's field is 'lr'); known fields: "),
    (lambda: get_recipe("bert-default", fp16=True), "unknown recipe field 'fp16' (transformers' name; stabench's "
                                                    "field is 'precision', one of fp32, tf32, bf16); known fields: "),
    (lambda: get_recipe("bert-default", warmup_steps=100), "unknown recipe field 'warmup_steps' (transformers' "
                                                           "name; stabench's field is 'warmup', a fraction of all "
                                                           "steps); known fields: "),
    (lambda: get_recipe("bert-default", reinit_layer=1), "unknown recipe field 'reinit_layer' (did you mean "
                                                         "'reinit_layers'?); known fields: "),
    (lambda: parse_overrides(["train_size=10"]) and get_recipe("bert-default", **parse_overrides(["train_size=10"])),
     "train_size is not a recipe field: a study gives it (train_size= in a claim or stabench.study, --train-size in "
     "stabench run); known recipe fields: "),
    (lambda: get_recipe("bert-default", schedule="constant"), "warmup=0.1 is invalid; expected 0 with "
                                                              "schedule='constant', which has no warmup"),
    (lambda: get_recipe("bert-default", name=" "), "recipe field name=' ' is invalid; expected a non-empty name"),
    (lambda: get_recipe("bert-default", name="bert-default-bc", max_steps=4),
     "recipe field name='bert-default-bc' names a preset's content, and this recipe's differs from it, so its runs "
     "would be listed as that content's; give it a name of its own"),
    (lambda: get_recipe("bert-default[name=mixout]"), "recipe field name='mixout' names a preset's content, and this"),
    (lambda: get_recipe("bert-default", lr=0.002, name="bert-default[lr=0.001]"),  # read back as lr=0.001
     "recipe field name='bert-default[lr=0.001]' names a preset's content, and this recipe's differs from it"),
    (lambda: get_recipe("bert-default", hook="freeze", lr=0.002, name="bert-default[hook=freeze]"),  # a hook too
     "recipe field name='bert-default[hook=freeze]' names a preset's content, and this recipe's differs from it"),
    (lambda: parse_overrides(["lr"]), "'lr' is not of the form field=value"),
    (lambda: parse_overrides(["lr=1e-3", " , "]), "recipe override ' , ' names no field; expected field=value, "
                                                   "several separated by commas (lr=1e-3,epochs=1)"),
    (lambda: parse_overrides(["epochs=three"]), "epochs='three' is invalid; expected a number"),
    (lambda: parse_overrides(["bias_correction=maybe"]), "expected true or false"),
    (lambda: get_recipe("mosbach-stabel"), "unknown recipe 'mosbach-stabel' (did you mean 'mosbach-stable'?); known "
                                           "recipes: bert-default, "),
    (lambda: get_recipe("bert-defualt[lr=0.001]"), "unknown recipe 'bert-defualt[lr=0.001]' (did you mean "
                                                   "'bert-default'?)"),
    (lambda: get_recipe("sweep-7"), "unknown recipe 'sweep-7'; known recipes: "),
    (lambda: parse_overrides(["max_steps=6.5"]), "max_steps='6.5' is invalid; expected an integer or none"),
    (lambda: parse_overrides(["batch_size=inf"]), "batch_size='inf' is invalid; expected an integer"),
    (lambda: get_recipe("mosbach-stable", adamw_style="tf"), "adamw_style='tf' is invalid; expected one of "
                                                              "transformers, torch"),
])
def test_bad_input_gives_one_clear_line(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_preset_s_name_on_its_own_content_is_kept():
    """Only other content under a preset's name is refused: the same content named alike is the preset."""
    assert get_recipe("bert-default", bias_correction=True, name="bert-default-bc") == PRESETS["bert-default-bc"]
    assert get_recipe("bert-default", max_steps=4, name="mine").name == "mine"


_values = {
    "lr": st.floats(1e-7, 1.0), "epochs": st.floats(0.1, 50), "max_steps": st.none() | st.integers(1, 10**6),
    "batch_size": st.integers(1, 512), "warmup": st.floats(0, 0.99), "weight_decay": st.floats(0, 1),
    "bias_correction": st.booleans(), "adamw_style": st.sampled_from(["transformers", "torch"]),
    "grad_clip": st.none() | st.floats(0.01, 10),
    "dropout": st.none() | st.floats(0, 0.9), "precision": st.sampled_from(["fp32", "tf32", "bf16"]),
    "checkpoint": st.sampled_from(["last", "best"]), "reinit_layers": st.integers(0, 24),
    "compile": st.none() | st.sampled_from(["default", "reduce-overhead"]),
    "attention": st.none() | st.sampled_from(["eager", "sdpa"]), "max_length": st.integers(8, 512),
    "schedule": st.sampled_from(SCHEDULES), "adam_eps": st.floats(1e-12, 1e-3), "adam_beta1": st.floats(0, 0.99),
    "adam_beta2": st.floats(0, 0.9999), "eval_every": st.none() | st.integers(1, 10**5),
    "trace_every": st.integers(1, 10**4), "mixout": st.floats(0, 0.9), "layerwise_lr_decay": st.floats(0.01, 1),
    "pad_to_multiple_of": st.none() | st.integers(1, 64), "token_types": st.booleans(),
}


def _accepted_together(overrides: dict) -> bool:
    """Leaves out the two pairings a recipe refuses (each refusal has its own test): a constant
    schedule with warmup, and a dropout beside Mixout, which replaces it."""
    return (not (overrides.get("schedule") == "constant" and overrides.get("warmup") != 0)
            and not (overrides.get("mixout") and "dropout" in overrides))


_overrides = st.fixed_dictionaries({}, optional=_values).filter(_accepted_together)


@given(st.integers(1, 10**6), st.sampled_from(["{}.0", "{}.", "{:e}", "+{}"]))
def test_an_integer_field_takes_a_whole_number_written_as_a_float_as_get_recipe_does(steps, form):
    """``--set max_steps=64.0`` names the recipe ``get_recipe(max_steps=64.0)`` is."""
    text = form.format(steps)
    assume(float(text) == steps)  # 1.234567e+06: the exponent form rounds
    assert parse_overrides([f"max_steps={text}"]) == {"max_steps": steps}
    assert get_recipe("bert-default", **parse_overrides([f"max_steps={text}"])) == get_recipe(
        "bert-default", max_steps=float(steps))


@given(_overrides)
def test_a_preset_with_overrides_written_any_way_has_the_name_stabench_stores(overrides):
    from stabench.recipes import canonical_name

    recipe = get_recipe("bert-default", **overrides)
    written = ",".join(f"{k}={v}" for k, v in reversed(overrides.items()))  # another order, 1e-05 for 0.00001
    assert canonical_name(f"bert-default[{written}]") == recipe.name
    # A name of the user's own, one that renames, or a filter that will list the stored names: as given.
    for name in ("mine[lr=1e-3]", "bert-default[lrr=1]", "bert-default[name=foo]"):
        assert canonical_name(name) == name


@given(_overrides, st.floats(0.1, 50))
def test_epochs_enter_the_hash_only_where_they_set_the_number_of_steps(overrides, epochs):
    """With max_steps, training stops there whatever the epochs say: one computation, one hash."""
    recipe = get_recipe("bert-default", **overrides)
    other = recipe.replace(epochs=epochs)
    if recipe.max_steps is not None:
        assert other.hash == recipe.hash
        earlier = other.recorded_hashes() - {other.hash}  # what it was stored under before
        assert len(earlier) == (0 if other.epochs == 3.0 else 1)
    else:
        assert (other.hash == recipe.hash) == (other.epochs == recipe.epochs)
        assert other.recorded_hashes() == {other.hash}


@given(_overrides)
def test_command_line_overrides_round_trip(overrides):
    items = [f"{k}={v}" for k, v in overrides.items()]
    parsed = parse_overrides(items)
    assert parsed == overrides
    assert parse_overrides([",".join(items)]) == parsed  # one comma list, as --stabench-set and --set take it
    recipe = get_recipe("bert-default", **parsed)
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    assert all(getattr(recipe, k) == v for k, v in overrides.items())


@given(st.sampled_from([None, *PRESETS]), _overrides, st.data())
def test_a_recipe_file_is_its_preset_with_its_fields(tmp_path_factory, preset, fields, data):
    """As in a claim or `stabench run --recipe mine.json`: fields over a preset (or over the BERT
    recipe's defaults), named by the file's "name" or its stem."""
    import json

    if preset == "mixout":
        fields.pop("dropout", None)  # Mixout replaces dropout: giving one is an error (below)
        if fields.get("mixout") == 0:  # switching it off asks for the dropout to train with
            fields["dropout"] = 0.1
    name = data.draw(st.none() | st.sampled_from(["my-recipe", "llrd v2"]))
    path = tmp_path_factory.mktemp("recipes") / "mine.json"
    unnamed = data.draw(st.sampled_from([{}, {"name": None}]))  # no "name", or "name": null: the file's stem
    path.write_text(json.dumps({**fields, **({"preset": preset} if preset else {}),
                                **({"name": name} if name else unnamed)}))
    recipe = get_recipe(str(path))
    expected = get_recipe(preset, **fields) if preset else Recipe(**fields)
    assert recipe.hash == expected.hash and recipe.name == (name or "mine")
    assert get_recipe(str(path), lr=0.5).lr == 0.5
    assert get_recipe(path) == recipe  # a path object, as a claim file builds it from __file__


@pytest.mark.parametrize("text, message", [
    ('{"name": "bert-default", "lr": 1e-3}', "recipe file '{path}': it is named 'bert-default', a preset with other content"),
    ("[1, 2]", "recipe file '{path}' holds a list; expected a JSON object of recipe fields"),
    ("{lr: 1}", "recipe file '{path}' is not valid JSON: "),
    ('{"lrr": 1e-5}', "recipe file '{path}': unknown recipe field 'lrr' (did you mean 'lr'?); known fields: "),
    ('{"preset": "bert-defualt"}', "recipe file '{path}': unknown preset 'bert-defualt' (did you mean "
                                   "'bert-default'?); known presets: bert-default,"),
    ('{"lr": "fast"}', "recipe file '{path}': "),
    ('{"name": ["x"]}', "recipe file '{path}': recipe field name=['x'] is invalid"),
])
def test_a_bad_recipe_file_is_named_in_one_line(tmp_path, text, message):
    path = tmp_path / "mine.json"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        get_recipe(str(path))
    assert str(error.value).startswith(message.format(path=path)) and "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match=r"^recipe file 'missing.json' does not exist \(relative to .*; in a "
                                                r"claim file, Path\(__file__\).parent / 'missing.json' finds it "
                                                r"wherever pytest starts\); expected a JSON object"):
        get_recipe("missing.json")


_wrong_type = {
    # A truthy string must not switch bias correction on; a fractional batch must not reach the loader.
    "bias_correction": st.text(max_size=5) | st.integers(0, 1) | st.none(),
    "batch_size": st.floats(1.01, 64).filter(lambda x: not x.is_integer()) | st.text(max_size=5) | st.booleans(),
    "max_steps": st.floats(0.5, 100).filter(lambda x: not x.is_integer()) | st.just(float("nan")),
    "reinit_layers": st.floats(0.5, 10).filter(lambda x: not x.is_integer()),
    "lr": st.text(max_size=5) | st.booleans() | st.none(),
    "precision": st.integers() | st.none(),
    "epochs": st.just(float("inf")) | st.just(float("nan")),
}


@given(st.sampled_from(sorted(_wrong_type)).flatmap(lambda f: st.tuples(st.just(f), _wrong_type[f])))
def test_a_value_of_the_wrong_type_is_refused_in_one_line(field_and_value):
    field, value = field_and_value
    with pytest.raises(ValueError) as error:
        get_recipe("bert-default", **{field: value})
    assert str(error.value).startswith(f"recipe field {field}={value!r} is invalid; expected ")
    assert "\n" not in str(error.value)


@given(epochs=st.integers(1, 50), max_steps=st.integers(1, 10**6), lr_exponent=st.integers(-7, -1))
def test_an_int_and_the_same_float_are_one_recipe(epochs, max_steps, lr_exponent):
    """epochs=3 and epochs=3.0 must not store (and train) the same runs twice."""
    as_ints = get_recipe("bert-default", epochs=epochs, max_steps=max_steps, batch_size=16)
    as_floats = get_recipe("bert-default", epochs=float(epochs), max_steps=float(max_steps), batch_size=16.0)
    assert as_ints.hash == as_floats.hash and as_ints.replace(name="same") == as_floats.replace(name="same")
    assert isinstance(as_floats.max_steps, int) and isinstance(as_ints.epochs, float)
    assert get_recipe("bert-default", lr=10 ** lr_exponent).hash == get_recipe("bert-default", lr=10.0 ** lr_exponent).hash


@given(st.sampled_from(sorted(PRESETS)), st.sampled_from(["warmup", "weight_decay", "adam_beta1", "adam_beta2",
                                                             "dropout", "mixout"]), st.booleans())
def test_minus_zero_is_zero_in_the_recipe_its_name_and_its_hash(preset, field, as_text):
    """``--set warmup=-0`` reads -0.0, which JSON writes as such: the same computation hashed apart."""
    try:
        zero = get_recipe(preset, **{field: 0.0})
    except ValueError:  # a zero this preset refuses (Mixout's own switch, its dropout)
        return
    minus = get_recipe(preset, **(parse_overrides([f"{field}=-0"]) if as_text else {field: -0.0}))
    assert minus == zero and minus.hash == zero.hash and minus.name == zero.name
    assert math.copysign(1.0, getattr(minus, field)) == 1.0


def test_a_record_stored_with_minus_zero_still_matches_its_hash_on_import():
    """Before 2026-12-07 -0.0 hashed apart; an export of such a run must not read as edited."""
    from stabench.exchange import _recipe_hashes

    record = {**get_recipe("bert-default", warmup=0.0, weight_decay=0.0).to_dict(), "warmup": -0.0,
              "weight_decay": -0.0}
    assert "3c5c92c47bb7fa65" in _recipe_hashes(record)  # what stabench stored it under then
    assert get_recipe("bert-default", warmup=0.0, weight_decay=0.0).hash in _recipe_hashes(record)


@given(_overrides, _overrides)
def test_overrides_in_two_rounds_name_the_recipe_as_one_round(first, second):
    """A claim's overrides, then --stabench-set's: one bracket in the name, the later value wins."""
    assume(_accepted_together({**first, **second}))
    assume(not (first.get("mixout") and second.get("mixout") == 0 and "dropout" not in second))  # refused alone
    stepwise = get_recipe("bert-default", **first).replace(**second)
    at_once = get_recipe("bert-default", **{**first, **second})
    assert stepwise == at_once and stepwise.name == at_once.name
    preset = PRESETS["bert-default"]
    moot = {field for field, ignored in (("epochs", at_once.max_steps is not None),
                                         ("adamw_style", not at_once.bias_correction),
                                         ("dropout", bool(at_once.mixout))) if ignored}
    changed = any(getattr(at_once, field) != getattr(preset, field) for field in {**first, **second}.keys() - moot)
    assert stepwise.name.count("[") == (1 if changed else 0)  # overrides to the preset's values leave no name
    assert all(f"{field}=" not in stepwise.name for field in moot)  # nor do fields the training ignores


def test_integers_of_any_kind_are_plain_ints_and_overrides_that_change_nothing_leave_the_name():
    """A study script's numpy integers are integers; a name lists only what differs from the preset,
    so one content does not collect needless alias names."""
    import json

    import numpy as np

    given = get_recipe("bert-default", eval_every=np.int64(15), max_steps=np.int32(40), epochs=np.int64(4))
    plain = get_recipe("bert-default", eval_every=15, max_steps=40, epochs=4)
    assert given == plain and given.hash == plain.hash and json.dumps(given.to_dict()) == json.dumps(plain.to_dict())
    assert type(given.eval_every) is int and type(given.epochs) is float
    assert given.name == "bert-default[eval_every=15,max_steps=40]"  # values as the recipe holds them; epochs moot
    assert given.replace(max_steps=None).name == "bert-default[epochs=4,eval_every=15]"  # and back once they count
    own = get_recipe("bert-default", lr=1e-4).replace(name="own")  # no preset to say what an ignored field was
    ten, three = own.replace(epochs=10, max_steps=8).replace(max_steps=None), own.replace(max_steps=8).replace(
        max_steps=None)
    assert ten.hash != three.hash and ten.name != three.name  # so its name keeps it
    assert get_recipe("bert-default", adamw_style="torch").name == "bert-default"  # moot without bias correction
    assert get_recipe("bert-default", batch_size=32.0).name == get_recipe("bert-default", batch_size=32).name == \
        "bert-default[batch_size=32]"
    assert get_recipe("bert-default", epochs=3, batch_size=16.0, lr=2e-5).name == "bert-default"
    assert get_recipe("bert-default", lr=1e-4).replace(lr=2e-5).name == "bert-default"  # back to the preset's lr
    assert get_recipe("mosbach-stable", epochs=20, lr=1e-4).name == "mosbach-stable[lr=0.0001]"
    mine = get_recipe("bert-default", lr=1e-4).replace(name="mine", epochs=5)
    assert mine.replace(epochs=5.0).name == "mine" and mine.replace(lr=1e-3).name == "mine[lr=0.001]"
    with pytest.raises(ValueError, match=r"^recipe field lr=.* is invalid; expected a number as a Python float, "
                                         r"float\(x\): a float32 is not exactly the number it prints$"):
        get_recipe("bert-default", lr=np.float32(1e-4))  # it would store 9.99999974e-05, not 1e-4
    with pytest.raises(ValueError, match=r"^recipe field lr=.* is invalid; expected a number$"):
        get_recipe("bert-default", lr=np.bool_(True))


def test_flex_attention_is_refused_with_dropout_which_it_cannot_apply():
    """transformers' flex attention refuses to train with attention dropout: every seed crashed."""
    with pytest.raises(ValueError, match=r"^recipe field attention='flex_attention' is invalid; expected eager or sdpa "
                                         r"with dropout=0.1 \(.*\), or dropout=0.0$"):
        get_recipe("bert-default", attention="flex_attention")
    with pytest.raises(ValueError, match=r"^recipe field attention='flex_attention' is invalid; .* dropout=None"):
        get_recipe("bert-default", attention="flex_attention", dropout=None)  # the model's own: BERT's 0.1
    assert get_recipe("bert-default", attention="flex_attention", dropout=0.0).attention == "flex_attention"
    assert get_recipe("mixout", attention="flex_attention").dropout == 0.0  # Mixout trains without dropout


@pytest.mark.parametrize("field, value", [("warmup", 1.0), ("grad_clip", 0.0)])
def test_the_open_end_of_a_range_is_refused_in_one_line(field, value):
    with pytest.raises(ValueError, match=rf"^recipe field {field}={value!r} is invalid; expected [^\n]+$"):
        Recipe(**{field: value})


def test_grad_clip_none_disables_clipping_and_a_tiny_positive_clip_is_accepted():
    assert Recipe(grad_clip=None).grad_clip is None
    assert Recipe(grad_clip=1e-9).grad_clip == 1e-9
    assert Recipe(warmup=0.0).warmup == 0.0 and Recipe(warmup=0.999).warmup == 0.999


@given(st.sampled_from(sorted(PRESETS)), st.floats(1e-7, 1e-2, allow_nan=False), st.integers(1, 10_000),
       st.booleans())
def test_the_name_a_changed_preset_gets_reads_back_as_that_recipe(preset, lr, max_steps, bias_correction):
    changed = get_recipe(preset, lr=lr, max_steps=max_steps, bias_correction=bias_correction)
    again = get_recipe(changed.name)
    assert (again.name, again.hash) == (changed.name, changed.hash)
    assert get_recipe(changed.name, lr=PRESETS[preset].lr).hash == get_recipe(
        preset, max_steps=max_steps, bias_correction=bias_correction).hash  # overrides over the name's fields


def test_a_bad_field_in_a_recipe_name_is_named():
    with pytest.raises(ValueError, match=r"^unknown recipe field 'foo'; known fields: "):
        get_recipe("bert-default[foo=1]")
    with pytest.raises(ValueError, match=r"^recipe override lr='abc' is invalid; expected a number$"):
        get_recipe("bert-default[lr=abc]")


def test_a_max_steps_recipe_still_knows_the_hash_its_own_epochs_gave_before_they_left_the_hash():
    """Before 2026-12-06 every field but the name was hashed, epochs too; mosbach-stable's 20 epochs
    under max_steps now hash as the default 3.  Its runs stored then must still be recognised, and a
    recipe at the default epochs has no second hash."""
    from stabench.result import content_hash

    stable = get_recipe("mosbach-stable", max_steps=100)
    as_before = content_hash({k: v for k, v in stable.to_dict().items() if k != "name"})  # epochs 20 included
    assert as_before != stable.hash
    assert stable.recorded_hashes() == {stable.hash, as_before}
    at_default = get_recipe("bert-default-bc", max_steps=100)
    assert at_default.hash == stable.hash and at_default.recorded_hashes() == {at_default.hash}


def test_a_hooked_recipe_named_as_a_preset_is_refused_as_other_content_before_its_hook_is_registered():
    """A recipe file or claim may name its hook before the module registering it is imported: naming
    that recipe after a preset is refused as a preset's name on other content, not as an unknown hook."""
    with pytest.raises(ValueError, match=r"^recipe field name='bert-default' names a preset's content, and this "
                                         r"recipe's differs from it"):
        get_recipe("bert-default", hook="not-registered-yet", name="bert-default")


def test_versions_of_a_recipe_are_told_apart_by_as_few_fields_as_do_it_and_up_to_three():
    """Each of four versions changed one field of the preset: no two fields tell all four apart, so
    three are named; two versions that differ in two fields need only one of them (the
    alphabetically first on a tie)."""
    from stabench.recipes import distinguishing_fields

    base = PRESETS["bert-default"]
    versions = [base, base.replace(lr=3e-5), base.replace(epochs=5), base.replace(warmup=0.2)]
    records = [version.to_dict() for version in versions]
    fields = distinguishing_fields(records)
    assert sorted(fields) == ["epochs", "lr", "warmup"]
    assert len({tuple(record[field] for field in fields) for record in records}) == 4
    assert distinguishing_fields([base.to_dict(), base.replace(lr=3e-5, epochs=5).to_dict()]) == ["epochs"]
    assert distinguishing_fields(records, most=1) == distinguishing_fields(records)[:1]


@given(st.floats(0.01, 50), st.integers(1, 512), st.integers(0, 10**5))
@example(3.0, 16, 0)  # no examples: the schedule still has a step to divide by
def test_a_recipe_trains_at_least_one_step_and_keeps_the_last_partial_batch(epochs, batch_size, n_train):
    recipe = Recipe(epochs=epochs, batch_size=batch_size)
    batches = -(-n_train // batch_size)  # ceil: the last, partial batch is a step too
    assert recipe.total_steps(n_train) == max(1, math.ceil(epochs * batches))
    assert recipe.total_steps(n_train) >= 1


def test_versions_of_a_recipe_are_labelled_by_their_hash_and_the_values_a_person_writes():
    """``aaaa (epochs=3)``, not ``epochs=3.0``; a field a record lacks because it was stored before
    the field existed is no difference; records that tell nothing apart show their hashes alone."""
    from stabench.recipes import version_labels

    base = PRESETS["bert-default"]
    longer = base.replace(epochs=15).to_dict()
    assert version_labels([("aaaa", base.to_dict()), ("bbbb", longer)]) == [
        f"aaaa (epochs={base.epochs:g})", "bbbb (epochs=15)"]
    before_adam_eps = {k: v for k, v in base.to_dict().items() if k != "adam_eps"}  # its default, as later filled in
    assert version_labels([("aaaa", before_adam_eps), ("bbbb", longer)]) == [
        f"aaaa (epochs={base.epochs:g})", "bbbb (epochs=15)"]
    assert version_labels([("aaaa", base.to_dict()), ("bbbb", before_adam_eps)]) == ["aaaa", "bbbb"]


@pytest.mark.parametrize("field, value", [("lr", math.inf), ("lr", math.nan), ("max_steps", 0), ("max_steps", -1),
                                          ("batch_size", 0), ("max_length", 7), ("adam_eps", 0.0),
                                          ("adam_eps", math.inf), ("grad_clip", math.inf)])
def test_a_value_outside_its_field_s_range_is_refused_in_one_line(field, value):
    with pytest.raises(ValueError, match=rf"^recipe field {field}=.* is invalid; expected (a positive|an integer >=)"):
        get_recipe("bert-default", **{field: value})


@pytest.mark.parametrize("field, value", [("weight_decay", math.inf), ("epochs", 10**400), ("lr", -10**400)])
def test_an_infinite_decay_or_a_number_past_the_largest_float_is_refused_in_one_line(field, value):
    """inf trained (weight decay wiping the weights, stored JSON holding a non-standard Infinity), and an
    integer past the largest float raised OverflowError instead of naming its field."""
    with pytest.raises(ValueError, match=rf"^recipe field {field}=.* is invalid; expected a finite number"):
        get_recipe("bert-default", **{field: value})
    with pytest.raises(ValueError, match=r"^recipe field lr=<an integer of about 5001 digits> is invalid"):
        get_recipe("bert-default", lr=10**5000)  # past the 4300 digits Python writes at all
