"""Tests from a mutation hunt on stabench/recipes.py: behaviour the other tests left unpinned."""
import json

import pytest

from stabench.recipes import PRESETS, Recipe, get_recipe
from stabench.result import content_hash


def test_a_record_stored_before_adamw_style_existed_without_bias_correction_is_its_preset():
    """An old record of bert-default (no adamw_style, no bias correction) reads back as the preset
    itself, not as a torch-style copy that merely hashes alike."""
    old = {k: v for k, v in PRESETS["bert-default"].to_dict().items() if k != "adamw_style"}
    assert Recipe.from_dict(old) == PRESETS["bert-default"]
    assert Recipe.from_dict(old).adamw_style == "transformers"


def test_a_record_with_a_field_this_version_lacks_is_refused_with_the_field_named():
    with pytest.raises(ValueError, match=r"unknown recipe field 'learning_rate' \(transformers' name"):
        Recipe.from_dict({**PRESETS["bert-default"].to_dict(), "learning_rate": 1e-3})


def test_a_record_holding_minus_zero_and_its_epochs_from_before_max_steps_ignored_them_still_matches():
    """A run stored before both corrections: epochs hashed under max_steps, and warmup as -0.0."""
    recipe = get_recipe("bert-default", max_steps=10, epochs=5, warmup=0.0)
    old = {**recipe._hashed_fields(), "epochs": 5.0, "warmup": -0.0}
    assert content_hash(old) in recipe.recorded_hashes(negative_zeros=["warmup"])
    assert len(recipe.recorded_hashes(negative_zeros=["warmup"])) == 4


def test_a_field_a_recipe_does_not_hash_adds_no_recorded_hash():
    recipe = PRESETS["bert-default"]  # adamw_style is not hashed without bias correction; name never is
    assert recipe.recorded_hashes(negative_zeros=["adamw_style", "name", "hook"]) == {recipe.hash}


@pytest.mark.parametrize("name", ["mine[v=2]", "mine[lr]", "mine[lr=1,v=2]", "mine[lr=1]x]", "[lr=1]"])
def test_a_user_s_own_name_with_brackets_is_kept_whole_when_changed(name):
    """Only a bracket of recipe-field overrides is one stabench wrote and updates; any other name
    is the user's and keeps all of it."""
    assert Recipe(name=name).replace(lr=1e-3).name == f"{name}[lr=0.001]"


def test_a_recipe_file_path_takes_overrides_and_any_case_of_json(tmp_path):
    path = tmp_path / "Mine.JSON"
    path.write_text(json.dumps({"preset": "mosbach-stable", "lr": 1e-5}))
    assert get_recipe(str(path)).lr == 1e-5 and get_recipe(str(path)).name == "Mine"
    assert get_recipe(path, lr=3e-5).lr == 3e-5  # a path object, as a claim builds it, with overrides
    assert get_recipe(str(path), max_steps=7).max_steps == 7


def test_a_recipe_object_takes_overrides():
    changed = get_recipe(PRESETS["mosbach-stable"], lr=1e-4)
    assert changed.lr == 1e-4 and changed.name == "mosbach-stable[lr=0.0001]"
    assert get_recipe(PRESETS["mosbach-stable"]) is PRESETS["mosbach-stable"]


def test_a_misspelt_preset_with_many_overrides_still_suggests_the_preset():
    with pytest.raises(ValueError, match=r"unknown recipe 'mosbach-stabel\[lr=0.0001,max_steps=64\]' \(did you mean "
                                         r"'mosbach-stable'\?\)"):
        get_recipe("mosbach-stabel[lr=0.0001,max_steps=64]")


# --- names: canonical_name, overrides_error, a name on content that is or is not a preset's


def test_canonical_name_keeps_a_name_that_names_a_recipe_and_any_user_name_as_given():
    from stabench.recipes import canonical_name

    assert canonical_name("bert-default[name=foo]") == "bert-default[name=foo]"
    assert canonical_name("Mine") == "Mine"
    assert canonical_name("bert-default[max_steps=64,lr=3e-3]") == "bert-default[lr=0.003,max_steps=64]"


def test_overrides_error_speaks_only_of_a_preset_with_bad_overrides():
    from stabench.recipes import overrides_error

    assert overrides_error("mine") is None
    assert overrides_error("mine[lr=abc]") is None  # a user's own name: not stabench's to judge
    assert overrides_error("bert-default[lr=0.001]") is None
    assert "lr='abc' is invalid; expected a number" in overrides_error("bert-default[lr=abc]")


def test_content_equal_to_a_preset_s_may_carry_its_name_where_the_difference_computes_nothing():
    same = get_recipe("bert-default", adamw_style="torch", name="bert-default")  # no bias correction: one update
    assert same.name == "bert-default" and same.hash == PRESETS["bert-default"].hash
    moot = get_recipe("bert-default", max_steps=10, epochs=5, name="bert-default[max_steps=10]")  # epochs unused
    assert moot.name == "bert-default[max_steps=10]"
    assert get_recipe("bert-default", lr=1e-3, name="bert-default[v2]").name == "bert-default[v2]"  # no overrides


def test_a_name_of_the_wrong_type_is_named_as_such():
    with pytest.raises(ValueError, match=r"^recipe field name=5 is invalid; expected a string$"):
        get_recipe("bert-default", name=5)


# --- recipe files


def test_a_recipe_file_that_is_a_directory_or_not_utf8_or_a_stored_record_is_handled(tmp_path):
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^recipe file '.*dir.json' does not exist; expected a JSON object"):
        get_recipe(str(tmp_path / "dir.json"))  # absolute: no "relative to" hint
    (tmp_path / "bad.json").write_bytes(b'{"lr": "\xff"}')
    with pytest.raises(ValueError, match=r"^recipe file '.*bad.json' is not valid JSON: "):
        get_recipe(str(tmp_path / "bad.json"))
    stored = tmp_path / "stored.json"  # a stored run's recipe saved as a file, its hook's fingerprint beside
    stored.write_text(json.dumps({**get_recipe("bert-default", lr=1e-3).to_dict(), "name": "run-7",
                                  "hook_fingerprint": "abc"}))
    assert get_recipe(str(stored)) == get_recipe("bert-default", lr=1e-3, name="run-7")


# --- command-line overrides


def test_command_line_overrides_are_forgiving_of_spacing_dashes_and_stray_commas():
    from stabench.recipes import parse_overrides

    assert parse_overrides(["", "lr=1e-3,", " max-steps = 10 ", "bias_correction= yes", "schedule= cosine"]) == {
        "lr": 1e-3, "max_steps": 10, "bias_correction": True, "schedule": "cosine"}
    assert parse_overrides(["max_steps=10", "max_steps=60"]) == {"max_steps": 60}  # the last wins


@pytest.mark.parametrize("text, value", [
    ("grad_clip=null", None), ("max_steps=", None), ("compile=None", None), ("dropout=NONE", None),
    ("bias_correction=1", True), ("bias_correction=yes", True), ("token_types=0", False), ("token_types=no", False),
    ("max_steps=9007199254740993", 9007199254740993), ("eval_every=+9007199254740993", 9007199254740993),
])
def test_a_command_line_value_is_read_as_its_field_s_type(text, value):
    from stabench.recipes import parse_overrides

    field = text.partition("=")[0]
    assert parse_overrides([text]) == {field: value} and type(parse_overrides([text])[field]) is type(value)


@pytest.mark.parametrize("text, message", [
    ("lr=none", "recipe override lr='none' is invalid; expected a number"),  # not optional: none is no value
    ("lr=1=2", "recipe override lr='1=2' is invalid; expected a number"),
])
def test_a_bad_command_line_value_is_named_with_its_field(text, message):
    from stabench.recipes import parse_overrides

    with pytest.raises(ValueError) as error:
        parse_overrides([text])
    assert str(error.value) == message


def test_transformers_names_are_recognised_in_any_case():
    with pytest.raises(ValueError, match=r"unknown recipe field 'LEARNING_RATE' \(transformers' name; stabench's "
                                         r"field is 'lr'\)"):
        get_recipe("bert-default", LEARNING_RATE=1e-3)


# --- versions of a recipe under one name


def test_version_labels_write_values_as_a_person_does_and_leave_fieldless_records_their_hash():
    from stabench.recipes import version_labels

    base = PRESETS["bert-default"]
    assert version_labels([("aaaa", base.to_dict()), ("bbbb", base.replace(lr=3e-5).to_dict())]) == [
        "aaaa (lr=2e-05)", "bbbb (lr=3e-05)"]
    assert version_labels([("aaaa", base.to_dict()), ("bbbb", base.replace(epochs=15).to_dict()), ("cccc", {})]) == [
        "aaaa (epochs=3)", "bbbb (epochs=15)", "cccc"]
    assert version_labels([("aaaa", base.to_dict()), ("bbbb", base.replace(epochs=15, lr=3e-5).to_dict()),
                           ("cccc", base.replace(epochs=15).to_dict())]) == [
        "aaaa (epochs=3, lr=2e-05)", "bbbb (epochs=15, lr=3e-05)", "cccc (epochs=15, lr=2e-05)"]


def test_version_labels_show_the_value_a_field_left_out_of_a_record_has():
    """token_types=True is left out of a record (as before the field existed): it is True, not None."""
    from stabench.recipes import version_labels

    base = PRESETS["bert-default"]
    assert version_labels([("aaaa", base.to_dict()), ("bbbb", base.replace(token_types=False).to_dict())]) == [
        "aaaa (token_types=True)", "bbbb (token_types=False)"]


def test_versions_of_a_hooked_recipe_differing_only_in_the_hook_s_code_are_told_apart_by_it():
    from stabench.recipes import HOOK_FINGERPRINT, version_labels

    record = {**PRESETS["bert-default"].to_dict(), "hook": "f"}
    versions = [("aaaa", {**record, HOOK_FINGERPRINT: "x1"}), ("bbbb", {**record, HOOK_FINGERPRINT: "x2"})]
    assert version_labels(versions) == ["aaaa (hook_fingerprint=x1)", "bbbb (hook_fingerprint=x2)"]


def test_stored_fields_pass_a_malformed_record_through():
    from stabench.recipes import stored_fields

    assert stored_fields({1: 0, "x": 0}) == {1: 0, "x": 0}
    assert stored_fields({}) == {} and stored_fields(None) is None


def test_distinguishing_fields_leave_out_names_unrecorded_fingerprints_and_fieldless_records():
    from stabench.recipes import HOOK_FINGERPRINT, distinguishing_fields

    assert distinguishing_fields([{"lr": 1, HOOK_FINGERPRINT: "X"}, {"lr": 2}]) == ["lr"]
    assert distinguishing_fields([{"lr": 1, HOOK_FINGERPRINT: "X"}, {"lr": 1, HOOK_FINGERPRINT: "Y"}]) == [
        HOOK_FINGERPRINT]
    assert distinguishing_fields([{"name": "a", "warmup": 0.1}, {"name": "b", "warmup": 0.2}]) == ["warmup"]
    assert distinguishing_fields([{"lr": 1, "epochs": 3}, {"lr": 2, "epochs": 3}, {}]) == ["lr"]


def test_distinguishing_fields_name_at_most_three_by_default():
    from stabench.recipes import distinguishing_fields

    base = PRESETS["bert-default"]
    records = [base.to_dict()] + [base.replace(**change).to_dict() for change in (
        {"lr": 3e-5}, {"epochs": 5}, {"warmup": 0.2}, {"adam_eps": 1e-8})]
    assert distinguishing_fields(records) == ["adam_eps", "epochs", "lr"]
    assert distinguishing_fields(records, most=5) == ["adam_eps", "epochs", "lr", "warmup"]


def test_a_stored_record_with_its_hook_s_fingerprint_reads_back_as_its_recipe():
    from stabench.recipes import HOOK_FINGERPRINT

    record = {**get_recipe("bert-default", hook="freeze").to_dict(), HOOK_FINGERPRINT: "abc"}
    assert Recipe.from_dict(record) == get_recipe("bert-default", hook="freeze")


def test_a_name_of_a_preset_with_one_hook_is_refused_for_a_recipe_with_another():
    """Checked without either hook registered: the hook's name alone tells the contents apart."""
    with pytest.raises(ValueError, match=r"name='bert-default\[hook=freeze\]' names a preset's content"):
        get_recipe("bert-default", hook="other", name="bert-default[hook=freeze]")
    assert get_recipe("bert-default", hook="freeze", name="bert-default[hook=freeze]").name == \
        "bert-default[hook=freeze]"


def test_a_recipe_given_no_name_is_called_custom():
    assert Recipe().name == "custom" and Recipe(lr=1e-3).replace(epochs=5).name == "custom[epochs=5]"


def test_switching_mixout_on_drops_a_dropout_from_the_name_so_the_name_reads_back_as_the_recipe():
    recipe = get_recipe("bert-default", dropout=0.3).replace(mixout=0.1)
    assert recipe.name == "bert-default[mixout=0.1]" and recipe.dropout == 0.0
    assert get_recipe(recipe.name) == recipe


def test_distinguishing_fields_choose_each_next_field_by_what_it_adds_to_those_chosen():
    from stabench.recipes import distinguishing_fields

    records = [{"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 0, "c": 1}, {"a": 2, "b": 1, "c": 1}, {"a": 2, "b": 1, "c": 0}]
    assert distinguishing_fields(records) == ["a", "c"]  # b alone tells as much as c, but adds nothing to a


def test_a_record_without_fields_does_not_make_identical_versions_look_different():
    from stabench.recipes import distinguishing_fields, version_labels

    record = PRESETS["bert-default"].to_dict()
    assert distinguishing_fields([{"lr": 1}, {"lr": 1}, {}]) == []
    assert version_labels([("aaaa", record), ("bbbb", dict(record)), ("cccc", {})]) == ["aaaa", "bbbb", "cccc"]
