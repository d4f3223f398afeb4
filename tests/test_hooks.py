"""A user's own training code as a recipe's hook: it changes the model, and its code is part of the recipe."""
import inspect
import os
import subprocess
import sys
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given

import stabench
from stabench import hooks
from stabench.models import load_model, resolve
from stabench.recipes import get_recipe
from stabench.store import Store
from stabench.tasks import BUILTIN_PAIR_TASK
from stabench.train import fine_tune, prepare

FAST = dict(max_steps=3, trace_every=1, lr=1e-2)


@pytest.fixture(autouse=True)
def _own_hooks(monkeypatch):
    monkeypatch.setattr(hooks, "_HOOKS", {})
    monkeypatch.setattr(hooks, "_WARNED", set())


def _freeze_embeddings(model, recipe):
    for parameter in model.base_model.embeddings.parameters():
        parameter.requires_grad_(False)


def test_a_hook_changes_each_seed_s_model_before_the_optimizer_sees_it(tiny_model):
    stabench.hook("freeze-embeddings")(_freeze_embeddings)
    frozen = get_recipe("bert-default", hook="freeze-embeddings", **FAST)
    assert frozen.name == "bert-default[hook=freeze-embeddings,lr=0.01,max_steps=3,trace_every=1]"
    plain = get_recipe("bert-default", **FAST)
    assert frozen.hash != plain.hash and "hook" not in plain.to_dict()  # recipes without one hash as before
    result, model = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, frozen, 0, device="cpu"), return_model=True)
    pretrained = load_model(resolve(tiny_model), 2, 0.1)
    for (name, trained), (_, before) in zip(model.base_model.embeddings.named_parameters(),
                                            pretrained.base_model.embeddings.named_parameters()):
        assert torch.equal(trained, before), name  # frozen: weight decay and Adam left it alone
    assert "embeddings" not in result.trace["grad_norm"] and "layer.0" in result.trace["grad_norm"]
    assert result.recipe["hook"] == "freeze-embeddings"
    moved = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, plain, 0, device="cpu"))
    assert "embeddings" in moved.trace["grad_norm"]


def test_a_stored_run_records_its_hook_s_code_and_an_import_checks_its_recipe_with_it(tiny_model, tmp_path,
                                                                                       monkeypatch):
    """The hook's name alone told two versions of it apart in no record, and an import could not
    check a hooked record's recipe fields: its lr could be edited unseen."""
    import json

    from stabench.recipes import Recipe
    from stabench.store import Store, StoreError

    stabench.hook("freeze-embeddings")(_freeze_embeddings)
    frozen = get_recipe("bert-default", hook="freeze-embeddings", **FAST)
    with Store(tmp_path / "s.sqlite") as store:
        run = stabench.run(BUILTIN_PAIR_TASK, tiny_model, frozen, 0, store=store, cpu_threads=1)
        store.export(tmp_path / "runs.json")
    assert run.recipe["hook_fingerprint"] == hooks.fingerprint("freeze-embeddings")
    assert Recipe.from_dict(run.recipe) == frozen
    (tmp_path / "stored.json").write_text(json.dumps(run.recipe))  # a stored run's recipe as a recipe file
    assert get_recipe(str(tmp_path / "stored.json")).hash == frozen.hash
    records = json.loads((tmp_path / "runs.json").read_text())
    monkeypatch.setattr(hooks, "_HOOKS", {})  # another process, where the hook is not even registered
    (tmp_path / "edited.json").write_text(json.dumps([{**r, "recipe": {**r["recipe"], "lr": 0.5}} for r in records]))
    with Store(tmp_path / "unhooked.sqlite") as other, pytest.raises(StoreError, match=r"do not make its recipe hash"):
        other.import_file(tmp_path / "edited.json")
    stabench.hook("freeze-embeddings")(_freeze_embeddings)  # registered: a null fingerprint is not its code now
    with Store(tmp_path / "other.sqlite") as other:
        for edit in ({"lr": 0.5}, {"hook_fingerprint": None}):
            (tmp_path / "edited.json").write_text(json.dumps([{**r, "recipe": {**r["recipe"], **edit}} for r in records]))
            with pytest.raises(StoreError, match=r"its recipe fields do not make its recipe hash \w+: the record was "
                                                 r"edited after it was stored"):
                other.import_file(tmp_path / "edited.json")
        assert other.import_file(tmp_path / "runs.json") == (1, 0)


def test_a_hook_edited_while_its_run_trains_leaves_the_run_as_its_key_was_made(tiny_model, monkeypatch):
    """The record's recipe hash and fingerprint were taken after training: a hook file saved
    meanwhile stored a run whose key was not the key of its contents, which an import refuses."""
    from stabench.result import key_of_record

    stabench.hook("freeze-embeddings")(_freeze_embeddings)
    prepared = prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", hook="freeze-embeddings", **FAST),
                       0, device="cpu")
    before = hooks.fingerprint("freeze-embeddings")
    monkeypatch.setattr(hooks, "fingerprint", lambda name: "edited0000000000")  # the file saved again
    result = fine_tune(prepared)
    assert result.recipe["hook_fingerprint"] == before and result.recipe_hash == prepared.recipe_hash
    assert key_of_record(result) == result.key
    saves = iter(range(100))  # saved between any two reads of the hook's code: record and hash read it once
    monkeypatch.setattr(hooks, "fingerprint", lambda name: f"{next(saves):016d}")
    recipe = get_recipe("bert-default", hook="freeze-embeddings", **FAST)
    record, recipe_hash = recipe.record_and_hash()
    assert recipe_hash in recipe.recorded_hashes(record["hook_fingerprint"])


def _unfreeze_embeddings_at_step_4(model, recipe):
    """Gradual unfreezing as the README describes it: count training steps, drop the gradients of a
    layer not yet unfrozen."""
    steps = [0]

    def count(module, args, kwargs):
        steps[0] += module.training

    def drop_until_unfrozen(parameter):
        if steps[0] < 4:
            parameter.grad = None

    model.register_forward_pre_hook(count, with_kwargs=True)
    for parameter in model.base_model.embeddings.parameters():
        parameter.register_post_accumulate_grad_hook(drop_until_unfrozen)


def test_a_hook_can_unfreeze_a_layer_during_training_as_the_readme_says(tiny_model):
    stabench.hook("unfreeze-late")(_unfreeze_embeddings_at_step_4)
    recipe = get_recipe("mosbach-stable", hook="unfreeze-late", max_steps=6, trace_every=1, lr=1e-2)
    result, model = fine_tune(prepare(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, device="cpu"), return_model=True)
    norms = result.trace["grad_norm"]["embeddings"]
    assert norms[:3] == [0.0, 0.0, 0.0] and all(norm > 0 for norm in norms[3:])  # steps 1-3 dropped
    assert all(norm > 0 for norm in result.trace["grad_norm"]["layer.0"])
    pretrained = load_model(resolve(tiny_model), 2, 0.1)
    word = model.base_model.embeddings.word_embeddings.weight
    assert not torch.equal(word, pretrained.base_model.embeddings.word_embeddings.weight)


def test_a_layer_frozen_in_the_hook_and_unfrozen_later_is_named_not_stored_as_trained(tiny_model, tmp_path):
    """Unfreezing by requires_grad, the other way the README warns of: the optimizer was built
    without those parameters, so the run is refused rather than stored as if they had trained."""
    def freeze_then_unfreeze_at_step_3(model, recipe):
        steps = [0]

        def unfreeze(module, args):
            steps[0] += module.training
            if steps[0] == 3:
                module.base_model.embeddings.requires_grad_(True)

        model.base_model.embeddings.requires_grad_(False)
        model.register_forward_pre_hook(unfreeze)

    stabench.hook("unfreeze-by-flag")(freeze_then_unfreeze_at_step_3)
    recipe = get_recipe("mosbach-stable", hook="unfreeze-by-flag", max_steps=4)
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match=r"^hook 'unfreeze-by-flag': bert\.embeddings\.word_embeddings\.weight, .* and \d+ more "
                                             r"were frozen when the optimizer was built and trainable at the end, so "
                                             r"they never trained; leave them trainable in the hook"):
            stabench.run(BUILTIN_PAIR_TASK, tiny_model, recipe, 0, device="cpu", store=store)
        assert store.query() == []


def test_a_hook_that_freezes_every_parameter_is_named_before_training(tiny_model, tmp_path):
    """torch would say 'element 0 of tensors does not require grad', naming no hook."""
    def freeze_everything(model, recipe):
        model.requires_grad_(False)

    stabench.hook("freeze-everything")(freeze_everything)
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match=r"^hook 'freeze-everything' froze every parameter of the model, so "
                                             r"nothing would train; leave at least the classification head trainable$"):
            stabench.run(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", hook="freeze-everything",
                                                                    max_steps=2), 0, device="cpu", store=store)
        assert store.query() == []


def test_the_hook_s_code_is_part_of_the_recipe():
    recipe = get_recipe("bert-default", hook="h")
    with pytest.raises(ValueError, match=r"^unknown hook 'h'; registered hooks: none \(register one with "
                                         r"@stabench\.hook\('h'\)"):
        recipe.hash
    stabench.hook("h")(_freeze_embeddings)
    first = recipe.hash
    stabench.hook("h")(_freeze_embeddings)  # the module imported again: the same code
    assert recipe.hash == first

    def freeze_more(model, recipe):
        for parameter in model.base_model.embeddings.parameters():
            parameter.requires_grad_(False)
        model.base_model.encoder.layer[0].requires_grad_(False)

    hooks._HOOKS.clear()  # the next process, with the hook edited
    stabench.hook("h")(freeze_more)
    assert recipe.hash != first  # edited: another recipe, whose runs train again

    def factory(layers: int):
        def freeze(model, recipe):
            for layer in model.base_model.encoder.layer[:layers]:
                layer.requires_grad_(False)
        return freeze

    hooks._HOOKS.clear()
    stabench.hook("h")(factory(1))
    one = recipe.hash
    with pytest.raises(ValueError, match=r"replace it with stabench\.hook\('h', replace=True\)$"):
        stabench.hook("h")(factory(2))  # another value: another hook, not the same one imported again

    def by_name(layers):
        def freeze(model, recipe, fallback=float("nan")):  # NaN equals NaN when imported again
            for layer in layers:
                getattr(model.base_model, layer).requires_grad_(False)
        return freeze

    stabench.hook("by-name")(by_name(["embeddings"]))
    stabench.hook("by-name")(by_name(["embeddings"]))  # an equal list: the same hook
    with pytest.raises(ValueError, match=r"^hook 'by-name' is already registered"):
        stabench.hook("by-name")(by_name(["pooler"]))  # another list: another hook, refused, not silently swapped
    stabench.hook("h", replace=True)(factory(2))
    assert recipe.hash != one  # a value the hook closes over is part of it too


def test_a_hooked_bias_corrected_recipe_is_another_computation_since_steps_are_counted_per_parameter():
    """A hook may unfreeze parameters during training, which AdamW once corrected by the group's step
    count: such runs stored before are not reused.  Without bias correction the step count is moot."""
    from stabench.result import content_hash

    def before(recipe):  # the hash before parameters counted their own steps
        return content_hash({k: v for k, v in recipe._hashed_fields().items() if k != "adam_step"})

    stabench.hook("h")(_freeze_embeddings)
    corrected, uncorrected = get_recipe("mosbach-stable", hook="h"), get_recipe("bert-default", hook="h")
    assert corrected.hash != before(corrected) and uncorrected.hash == before(uncorrected)
    assert get_recipe("mosbach-stable").hash == before(get_recipe("mosbach-stable"))  # no hook: as before


def test_a_second_function_under_a_taken_hook_name_is_refused():
    def freeze_more(model, recipe):
        model.requires_grad_(False)

    stabench.hook("freeze")(_freeze_embeddings)
    with pytest.raises(ValueError, match=r"^hook 'freeze' is already registered by _freeze_embeddings \(.*"
                                         r"test_hooks\.py:\d+\); give .*freeze_more \(.*test_hooks\.py:\d+\) another "
                                         r"name, or replace it with stabench\.hook\('freeze', replace=True\)$"):
        stabench.hook("freeze")(freeze_more)
    assert hooks.get_hook("freeze") is _freeze_embeddings  # the first stays


def test_hooks_behind_one_shared_decorator_are_told_apart_by_their_own_files():
    import functools

    def logged(function):
        @functools.wraps(function)
        def wrapper(model, recipe):
            return function(model, recipe)
        return wrapper

    source = "@hook('logged')\n@logged\ndef freeze(model, recipe):\n    return {!r}\n"
    for claim_file in ("a", "b"):
        namespace = {"__name__": f"test_{claim_file}", "hook": stabench.hook, "logged": logged}
        code = compile(source.format(claim_file), f"/claims/test_{claim_file}.py", "exec")
        if claim_file == "a":
            exec(code, namespace)
            continue
        with pytest.raises(ValueError, match=r"^hook 'logged' is already registered by freeze \(/claims/test_a"):
            exec(code, namespace)
    assert hooks.get_hook("logged")(None, None) == "a"


def test_a_notebook_cell_run_again_replaces_its_hook():
    """IPython compiles each run of a cell as another file; the module is the same."""
    cell = ("import stabench\n"
            "@stabench.hook('cell-hook')\n"
            "def freeze(model, recipe):\n"
            "    model.requires_grad_({})\n")
    namespace = {"__name__": "__main__"}
    for run, (frozen, filename) in enumerate([(False, "<ipython-input-1>"), (True, "<ipython-input-2>")]):
        exec(compile(cell.format(frozen), filename, "exec"), namespace)
        assert hooks.get_hook("cell-hook") is namespace["freeze"], run  # edited and run again: replaced
    with pytest.raises(ValueError, match="^hook 'cell-hook' is already registered by freeze "):
        exec(compile(cell.format(False).replace("def freeze", "def other"), "<ipython-input-3>", "exec"), namespace)


def test_two_claim_files_registering_one_hook_name_fail_at_collection(pytester):
    for name, frozen in (("a", "embeddings"), ("b", "pooler")):
        pytester.makepyfile(**{f"test_{name}": f"""
            import stabench

            @stabench.hook("freeze")
            def freeze(model, recipe):
                model.base_model.{frozen}.requires_grad_(False)
            """})
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*ValueError: hook 'freeze' is already registered by freeze (*test_a.py:3); give"
                                 " freeze (*test_b.py:3) another name, or replace it with *"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_an_unknown_hook_is_named_before_any_data_loads(tiny_model, monkeypatch):
    from stabench import train

    monkeypatch.setattr(train, "load_task_data", lambda *a, **k: pytest.fail("data loaded"))
    stabench.hook("known")(_freeze_embeddings)
    with pytest.raises(ValueError, match=r"^unknown hook 'frozen'; registered hooks: known "):
        prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", hook="frozen"), 0, device="cpu")
    stabench.hook("freeze-embeddings")(_freeze_embeddings)  # a typo is one, not a name to register
    with pytest.raises(ValueError, match=r"^unknown hook 'freeze-embedings' \(did you mean 'freeze-embeddings'\?\); "
                                         r"registered hooks: freeze-embeddings, known \(register one with "):
        prepare(BUILTIN_PAIR_TASK, tiny_model, get_recipe("bert-default", hook="freeze-embedings"), 0, device="cpu")
    for bad in ("", "a,b", "x=1"):
        with pytest.raises(ValueError):
            stabench.hook(bad)
    with pytest.raises(ValueError, match="is not a Python function"):
        stabench.hook("builtin")(len)


def test_a_hook_hashes_alike_in_every_process():
    """xdist workers hash the recipe each in its own process, under its own string-hash seed: a
    set literal in the hook's code, or a set it closes over or defaults to, must not make their
    keys differ."""
    script = ("import stabench\n"
              "@stabench.hook('sets')\n"
              "def sets(model, recipe):\n"
              "    return [name for name, _ in model.named_parameters() if name.split('.')[0] in {'a', 'b', 'c', 'd'}]\n"
              "def make(names):\n"
              "    def made(model, recipe, kinds=frozenset({'q', 'r', 's', 't'})):\n"
              "        return names, kinds\n"
              "    return made\n"
              "stabench.hook('made')(make([{'a', 'b', 'c', 'd'}, {k: 1 for k in {'p', 'q', 'r', 's'}}]))\n"
              "print(stabench.get_recipe('bert-default', hook='sets').hash)\n"
              "print(stabench.get_recipe('bert-default', hook='made').hash)\n")
    hashes = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": str(seed)}, cwd=Path(__file__).parents[1]).stdout
              for seed in (1, 2, 3)}
    assert len(hashes) == 1 and [len(line) for line in next(iter(hashes)).split()] == [16, 16]


def test_the_cli_refuses_a_hook_it_cannot_import(capsys):
    from stabench.cli import main

    assert main(["run", "--task", "polarity", "--model", "tiny-bert", "--set", "hook=mine", "--no-store"]) == 2
    assert "unknown hook 'mine'; registered hooks: none" in capsys.readouterr().err


def test_the_cli_imports_the_file_that_registers_a_hook_and_a_task(tmp_path, monkeypatch, capsys, tiny_model):
    """``--import`` the claim file: the CLI trains with its hook and task, and a second command reads the run."""
    from stabench.cli import main

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])  # as the stabench script
    monkeypatch.chdir(tmp_path)
    ours = ("claims_with_hook", "helper_of_claims", "pkg", "pkg.claims", "pkg.helper")
    for module in ours:  # imported below: gone after the test
        monkeypatch.setitem(sys.modules, module, None)
        monkeypatch.delitem(sys.modules, module)
    rows = "".join(f"{'good' if i % 2 else 'bad'} film {i},{i % 2}\n" for i in range(16))
    (tmp_path / "train.csv").write_text("text,label\n" + rows)
    (tmp_path / "claims_with_hook.py").write_text(
        "import stabench\n"
        "from helper_of_claims import frozen\n"  # the file's own folder is on the path, as under pytest
        "MINE = stabench.register_task(stabench.local_task('films', 'train.csv', 'train.csv', ['text']))\n"
        "@stabench.hook('mine')\n"
        "def mine(model, recipe):\n"
        "    getattr(model.base_model, frozen()).requires_grad_(False)\n")
    (tmp_path / "helper_of_claims.py").write_text("def frozen():\n    return 'embeddings'\n")
    command = ["run", "--task", "films", "--model", tiny_model, "--seeds", "0", "--set", "hook=mine,max_steps=2",
               "--store", "s.sqlite"]
    assert main(command) == 2
    assert "unknown task 'films'" in capsys.readouterr().err
    assert main([*command, "--import", "claims_with_hook.py"]) == 0
    assert "trained in" in capsys.readouterr().out
    for module in ("claims_with_hook", "helper_of_claims"):  # the next command, a process of its own
        del sys.modules[module]
    sys.path.remove(str(tmp_path))
    assert main([*command, "--import", "claims_with_hook"]) == 0  # by module name, from the current folder
    assert "trained in" not in capsys.readouterr().out  # the same recipe hash: read from the store
    # A claim file in a package, importing its neighbour relatively: imported as pkg.claims, as pytest does.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "helper.py").write_text("LAYER = 'pooler'\n")
    (tmp_path / "pkg" / "claims.py").write_text("import stabench\nfrom .helper import LAYER\n"
                                                "@stabench.hook('pkg-hook')\ndef freeze(model, recipe):\n"
                                                "    getattr(model.base_model, LAYER).requires_grad_(False)\n")
    assert main(["runs", "--store", "s.sqlite", "--import", "pkg/claims.py", "--import", "pkg/__init__.py"]) == 0
    assert sys.modules["pkg.claims"].LAYER == "pooler" and "pkg.__init__" not in sys.modules  # the package itself
    (tmp_path / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "needs.py").write_text("import a_package_nobody_installed\n")
    (tmp_path / "json.py").write_text("")
    (tmp_path / "time.py").write_text("raise RuntimeError('never run')\n")
    for name, error in (("nowhere.py", "--import nowhere.py: no such file (relative to "),
                        ("nowhere", "--import nowhere: No module named 'nowhere' (from "),
                        ("helper_of_claims.frozen", "--import helper_of_claims.frozen: No module named "),
                        ("broken.py", "--import broken.py failed: RuntimeError: no GPU here"),
                        ("exits.py", "--import exits.py failed: SystemExit: 3"),
                        ("needs.py", "--import needs.py failed: No module named 'a_package_nobody_installed'"),
                        ("json.py", "--import json.py: its module name 'json' is taken by "),
                        ("time.py", "--import time.py: its module name 'time' is taken by a built-in module; rename")):
        assert main(["runs", "--store", "s.sqlite", "--import", name]) == 2, name
        assert f"error: {error}" in " ".join(capsys.readouterr().err.split()), name
    assert not {"broken", "exits", "needs"} & set(sys.modules)
    assert sys.modules["json"].__file__ != str(tmp_path / "json.py")


def test_a_claim_with_a_hook_trains_its_seeds_with_it(pytester, tiny_model):
    pytester.makepyfile(test_hooked=f'''
import stabench

@stabench.hook("freeze-embeddings")
def freeze(model, recipe):
    for parameter in model.base_model.embeddings.parameters():
        parameter.requires_grad_(False)

@stabench.claim(task="polarity", model={tiny_model!r}, seeds=2,
                recipe=stabench.get_recipe("bert-default", hook="freeze-embeddings", max_steps=3, trace_every=1))
def test_frozen(study):
    assert all("embeddings" not in run.trace["grad_norm"] for run in study.results)
    assert {{run.recipe["hook"] for run in study.results}} == {{"freeze-embeddings"}}
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--stabench-store=s.sqlite",
                                          "--stabench-cpu-threads=1", "--stabench-json=r.json")
    result.assert_outcomes(passed=3)
    import json  # the report tells the hook's version, as the stored runs do

    (claim,) = json.loads((pytester.path / "r.json").read_text())["claims"]
    assert claim["recipe_fields"]["hook_fingerprint"] == hooks.fingerprint("freeze-embeddings")


def test_a_hook_in_a_test_file_hashes_alike_under_pytest_s_assertion_rewriting(pytester):
    """pytest rewrites a test file's asserts, so a hook's bytecode differs under pytest and in a
    script importing the same file; its hash, from the source, must not."""
    import importlib.util

    out = pytester.path / "seen.txt"
    path = pytester.makepyfile(test_checked=f'''
import stabench
from stabench.hooks import code_shape

@stabench.hook("checked")
def checked(model, recipe):
    assert recipe.lr > 0, "a positive lr"

def test_hash():
    open({str(out)!r}, "w").write(stabench.get_recipe("bert-default", hook="checked").hash + " "
                                  + repr(code_shape(checked.__code__)))
''')
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    under_pytest, rewritten = out.read_text().split(" ", 1)
    spec = importlib.util.spec_from_file_location("plain_checked", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a script's import: no rewriting
    assert repr(hooks.code_shape(module.checked.__code__)) != rewritten  # the bytecode differs
    assert get_recipe("bert-default", hook="checked").hash == under_pytest


def test_the_user_s_helpers_a_hook_calls_are_part_of_the_recipe(tmp_path, monkeypatch):
    """A hook that calls a helper of the claim file (or of the user's own module) trains its runs
    again when the helper changes; library code it calls is not hashed."""
    import importlib

    monkeypatch.syspath_prepend(tmp_path)
    (tmp_path / "team_helpers.py").write_text("def freeze(model, upto):\n    return upto\n")
    claim_file = tmp_path / "claim_with_helpers.py"
    source = ('import stabench, torch, team_helpers\n'
              'LAYERS = 2\n'
              'def unfreeze_head(model):\n'
              '    return model\n'
              'class Adapter:\n'
              '    def wrap(self, model):\n'
              '        return unfreeze_head(model)\n'
              '@stabench.hook("mine")\n'
              'def mine(model, recipe):\n'
              '    torch.nn.init.zeros_(model.classifier.bias)\n'
              '    team_helpers.freeze(model, LAYERS)\n'
              '    return [Adapter().wrap(m) for m in [model]]\n')
    claim_file.write_text(source)
    module = importlib.import_module("claim_with_helpers")
    recipe = get_recipe("bert-default", hook="mine")
    hashes = {"first": recipe.hash}

    def edited(label, path, old, new):
        path.write_text(path.read_text().replace(old, new))
        importlib.reload(importlib.import_module(path.stem))
        importlib.reload(module)  # the claim file again: its hook registers once more
        hashes[label] = recipe.hash

    edited("comment", claim_file, "    return model\n", "    return model  # the head trains\n")
    assert hashes["comment"] == hashes["first"]
    edited("constant", claim_file, "LAYERS = 2", "LAYERS = 3")
    edited("method's helper", claim_file, "    return model  #", "    return model.train()  #")
    edited("module's helper", tmp_path / "team_helpers.py", "return upto", "return upto - 1")
    assert len(set(hashes.values())) == 4, hashes
    assert [name for name, _ in hooks._reached(module.mine)[0]] == [  # as the hook names them; not torch's
        "Adapter", "Adapter>unfreeze_head", "LAYERS", "team_helpers.freeze"]


def _claim_file(tmp_path: Path, monkeypatch, name: str, source: str):
    """A claim file of the user's, imported: its path and module."""
    import importlib

    monkeypatch.syspath_prepend(tmp_path)
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return path, importlib.import_module(name)


def _hashes_after_edits(path: Path, module, recipes: list, edits) -> list[tuple[str, ...]]:
    """The recipes' hashes, then again after each ``(old, new)`` edit of the file, imported as the
    next process would (no hook registered yet)."""
    import importlib

    hashes = [tuple(recipe.hash for recipe in recipes)]
    for old, new in edits:
        path.write_text(path.read_text().replace(old, new))
        hooks._HOOKS.clear()
        importlib.reload(module)
        hashes.append(tuple(recipe.hash for recipe in recipes))
    return hashes


def test_containers_a_hook_holds_are_part_of_its_recipe_as_it_was_registered(tmp_path, monkeypatch):
    """Editing a factory's list, a default's dict or set, or a module's tuple trains again; a
    default list the hook fills as it runs does not move the hash between seeds, and a module's
    list (state, perhaps: a log) is not hashed."""
    claim_file, module = _claim_file(tmp_path, monkeypatch, "claim_with_containers",
                                     'import stabench\n'
                                     'NAMES = ("embeddings",)\n'
                                     'LOG = []\n'
                                     'def make(layers, options):\n'
                                     '    def freeze(model, recipe, seen=[], kinds=frozenset({"a", "b"})):\n'
                                     '        seen.append(len(seen))\n'
                                     '        LOG.append(1)\n'
                                     '        return layers, options, NAMES, kinds, LOG\n'
                                     '    return freeze\n'
                                     'stabench.hook("made")(make([0, 1], {"scale": 0.5, "names": {"x", "y"}}))\n')
    recipe = get_recipe("bert-default", hook="made")
    with pytest.warns(hooks.UnhashedHookData, match=r"^hook 'made' reads LOG, a module-level list, dict, set, array "
                                                    r"or mutable dataclass: its contents are not part of the recipe's "
                                                    r"hash .* make it a tuple or a frozen dataclass$") as said:
        first = recipe.hash  # said once: an edit to a list that configures a hook would reuse stored runs
    assert said[0].filename == __file__  # the line that asked for the hash, not a line of stabench
    hooks.get_hook("made")(None, recipe)
    hooks.get_hook("made")(None, recipe)
    assert recipe.hash == first and len(module.LOG) == 2  # its default list filled, its log grown
    stabench.hook("made")(hooks.get_hook("made"))  # the same object registered again: the same snapshot
    assert recipe.hash == first
    hashes = _hashes_after_edits(claim_file, module, [recipe], [
        ("[0, 1]", "[0, 1, 2]"), ('"scale": 0.5', '"scale": 0.25'), ('{"x", "y"}', '{"x", "z"}'),
        ('("embeddings",)', '("embeddings", "pooler")'), ('{"a", "b"}', '{"a", "c"}')])
    assert len(set(hashes)) == len(hashes), hashes
    reached, unhashed = hooks._reached(hooks.get_hook("made"))
    assert [name for name, _ in reached] == ["NAMES"] and unhashed == ["LOG"]


def test_only_data_the_user_s_file_assigns_is_warned_about_and_once(tmp_path, monkeypatch):
    """Not an imported list (standard library or site-packages), a dunder, a helper's state or a
    collection of functions: "make it a tuple" is no advice for those."""
    _, module = _claim_file(tmp_path, monkeypatch, "claim_with_state",
                            'import stabench\n'
                            'from keyword import kwlist\n'
                            '__all__ = ["hook"]\n'
                            'HISTORY = []\n'
                            'REGISTRY = {"first": len}\n'
                            'CONFIG = {"freeze": True}\n'
                            'def remember(x):\n'
                            '    global HISTORY\n'
                            '    HISTORY = HISTORY + [x]\n'
                            '@stabench.hook("stateful")\n'
                            'def hook(model, recipe):\n'
                            '    remember(kwlist[0])\n'
                            '    return __all__, REGISTRY["first"], CONFIG["freeze"], HISTORY\n')
    assert hooks._reached(module.hook)[1] == ["CONFIG"]
    recipe = get_recipe("bert-default", hook="stateful")
    with pytest.warns(hooks.UnhashedHookData, match=r"^hook 'stateful' reads CONFIG, a module-level") as said:
        assert recipe.hash == recipe.hash
    assert len(said) == 1


def test_a_function_given_to_a_hook_factory_is_part_of_the_recipe(tmp_path, monkeypatch):
    """``make_penalty(1e-3, squared)``: editing ``squared``, or passing another function, trains again."""
    claim_file, module = _claim_file(tmp_path, monkeypatch, "claim_with_factory",
                                     'import stabench\n'
                                     'def squared(x):\n'
                                     '    return x * x\n'
                                     'def absolute(x):\n'
                                     '    return abs(x)\n'
                                     'def make_penalty(alpha, penalty, *, scale=squared):\n'
                                     '    def add_penalty(model, recipe):\n'
                                     '        return alpha * penalty(2.0) * scale(1.0)\n'
                                     '    return add_penalty\n'
                                     'stabench.hook("penalty")(make_penalty(1e-3, squared))\n')
    assert [name for name, _ in hooks._reached(hooks.get_hook("penalty"))[0]] == ["<penalty>"]  # scale: the same function
    hashes = _hashes_after_edits(claim_file, module, [get_recipe("bert-default", hook="penalty")], [
        ("return x * x", "return x ** 3"), ("1e-3, squared)", "1e-3, absolute)"), ("scale=squared", "scale=absolute"),
        ("return abs(x)", "return -x")])
    assert len(set(hashes)) == len(hashes), hashes


def test_a_partial_a_method_a_callable_object_or_a_tuple_of_functions_given_to_a_factory_is_followed(
        tmp_path, monkeypatch):
    """What a factory may be given besides a function: each edit trains again the hooks that use
    what was edited, and only those.  An object whose attributes raise hashes too."""
    names = ["partial", "method", "object", "several", "odd"]
    claim_file, module = _claim_file(tmp_path, monkeypatch, "claim_with_callables",
                                     'import functools, stabench\n'
                                     'def squared(x):\n'
                                     '    return x * x\n'
                                     'def power(x, p):\n'
                                     '    return x ** p\n'
                                     'class Scaled:\n'
                                     '    def __init__(self, n):\n'
                                     '        self.n = n\n'
                                     '    def compute(self, x):\n'
                                     '        return x * self.n\n'
                                     '    def __call__(self, x):\n'
                                     '        return self.compute(x)\n'
                                     'class Odd:\n'
                                     '    def __call__(self, x):\n'
                                     '        return x\n'
                                     '    def __getattr__(self, name):\n'
                                     '        raise KeyError(name)\n'
                                     'def make(penalty):\n'
                                     '    def add_penalty(model, recipe):\n'
                                     '        return penalty\n'
                                     '    return add_penalty\n'
                                     'stabench.hook("partial")(make(functools.partial(power, p=2)))\n'
                                     'stabench.hook("method")(make(Scaled(3).compute))\n'
                                     'stabench.hook("object")(make(Scaled(3)))\n'
                                     'stabench.hook("several")(make((squared, power)))\n'
                                     'stabench.hook("odd")(make(Odd()))\n')
    edits = {("p=2", "p=3"): {"partial"}, ("x * self.n", "x * self.n * 2"): {"method", "object"},
             ("x ** p", "x ** p + 0"): {"partial", "several"}, ("x * x", "x ** 2"): {"several"},
             ("return x\n", "return -x\n"): {"odd"}}
    hashes = _hashes_after_edits(claim_file, module, [get_recipe("bert-default", hook=n) for n in names], edits)
    changed = [{name for name, old, new in zip(names, before, after) if old != new}
               for before, after in zip(hashes, hashes[1:])]
    assert changed == list(edits.values())


def test_a_value_filled_after_the_hook_registers_and_odd_values_are_hashed_or_left_out_safely():
    """A factory that registers before it sets what the hook reads still makes one hook per value;
    a list inside itself registers (left out of the hash, not a RecursionError); numpy scalars hash
    as the numbers they hold, whose repr numpy 2 changed."""
    def make(n):
        @stabench.hook("late", replace=True)
        def late(model, recipe):
            return scale
        scale = n * 2
        return late

    recipe = get_recipe("bert-default", hook="late")
    make(1)
    one = recipe.hash
    make(2)
    assert recipe.hash != one

    looped = [1]
    looped.append(looped)
    stabench.hook("looped")(lambda model, recipe, layers=looped: layers)
    assert len(get_recipe("bert-default", hook="looped").hash) == 16
    assert hooks._plain(looped, containers=True) is hooks._MISSING
    assert hooks._plain([np.int64(1), np.float64(0.5)], containers=True) == ("list", [1, 0.5])


_PLAIN = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
                      lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                      | st.dictionaries(st.text(max_size=2), inner, max_size=3)
                      | st.frozensets(st.integers() | st.text(max_size=2), max_size=3), max_leaves=8)


@given(_PLAIN, _PLAIN)
def test_equal_hash_forms_mean_equal_values_whatever_order_a_set_or_dict_was_built_in(one, other):
    form = hooks._plain(one, containers=True)
    assert form is not hooks._MISSING
    assert repr(hooks._plain(_rebuilt(one), containers=True)) == repr(form)  # another insertion order
    if repr(hooks._plain(other, containers=True)) == repr(form):
        assert one == other


def _rebuilt(value):
    """``value`` with every dict and set built again in reverse order."""
    if isinstance(value, dict):
        return {key: _rebuilt(value[key]) for key in reversed(list(value))}
    if isinstance(value, frozenset):
        return frozenset(reversed(list(value)))
    if isinstance(value, (list, tuple)):
        return type(value)(_rebuilt(item) for item in value)
    return value


def test_a_decorated_hook_is_hashed_as_the_function_under_its_decorator(tmp_path, monkeypatch):
    """Behind ``@torch.no_grad()`` or a decorator of the user's, the hook's own defaults and helpers
    are hashed, not the decorator's wrapper."""
    (tmp_path / "team_decorators.py").write_text("import functools\n"
                                                 "def logged(function):\n"
                                                 "    @functools.wraps(function)\n"
                                                 "    def wrapper(*args):\n"
                                                 "        return function(*args)\n"
                                                 "    return wrapper\n"
                                                 "def scaled(factor):\n"
                                                 "    def decorate(function):\n"
                                                 "        @functools.wraps(function)\n"
                                                 "        def wrapper(*args):\n"
                                                 "            return function(*args) * factor\n"
                                                 "        return wrapper\n"
                                                 "    return decorate\n")
    claim_file, module = _claim_file(tmp_path, monkeypatch, "claim_decorated",
                                     'import stabench, torch\n'
                                     'from team_decorators import logged, scaled\n'
                                     'SCALE, FACTOR = 0.5, 2.0\n'
                                     'def shrink(model):\n'
                                     '    return SCALE\n'
                                     '@stabench.hook("no-grad")\n'
                                     '@torch.no_grad()\n'
                                     'def no_grad(model, recipe, layers=2):\n'
                                     '    return shrink(model) * layers\n'
                                     '@stabench.hook("logged")\n'
                                     '@logged\n'
                                     '@scaled(FACTOR)\n'
                                     'def logged_hook(model, recipe):\n'
                                     '    return shrink(model)\n')
    recipes = [get_recipe("bert-default", hook=name) for name in ("no-grad", "logged")]
    no_grad, logged = zip(*_hashes_after_edits(claim_file, module, recipes, [
        ("0.5, 2.0", "0.25, 2.0"), ("layers=2", "layers=3"), ("0.25, 2.0", "0.25, 3.0")]))
    # The default is no_grad's; the decorator's factor (a value its wrapper closes over) is logged's.
    assert len(set(no_grad)) == 3 and len(set(logged)) == 3


def _import_as(name: str, path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_hook_s_helpers_hash_alike_from_any_checkout_and_import_and_after_it_ran(tmp_path):
    """Two machines check the claim file out in two folders, and pytest may import it under
    another module name: one recipe.  A call counter the hook keeps is state, not code."""
    source = ('import stabench\n'
              'from pathlib import Path\n'
              'HERE = Path(__file__).parent\n'
              'DATA = "data.csv"\n'
              'CALLS = 0\n'
              'def data_file():\n'
              '    return HERE / DATA\n'
              '@stabench.hook("mine")\n'
              'def mine(model, recipe):\n'
              '    global CALLS\n'
              '    CALLS += 1\n'
              '    return data_file()\n')
    recipe, hashes = get_recipe("bert-default", hook="mine"), set()
    for box, module_name in (("box-a", "benchmarks.test_claims"), ("box-b", "test_claims")):
        (tmp_path / box).mkdir()
        (tmp_path / box / "test_claims.py").write_text(source)
        hooks._HOOKS.clear()  # each machine is a process of its own
        module = _import_as(module_name, tmp_path / box / "test_claims.py")
        hashes.add(recipe.hash)
        module.mine(None, recipe)
        hashes.add(recipe.hash)
    assert len(hashes) == 1
    (tmp_path / "box-a" / "test_claims.py").write_text(source.replace('"data.csv"', '"other.csv"'))
    hooks._HOOKS.clear()
    _import_as("test_claims", tmp_path / "box-a" / "test_claims.py")
    assert recipe.hash not in hashes  # the constant the helper reads is part of it


def test_state_a_helper_keeps_and_paths_never_change_the_hash_while_a_study_runs(tmp_path, monkeypatch):
    """The recipe hash is read once per seed: a counter that a helper bumps (in its module or the
    claim file's) must not move it between seeds, nor a default naming the checkout."""
    import importlib

    monkeypatch.syspath_prepend(tmp_path)
    (tmp_path / "counting.py").write_text("CALLS = 0\n"
                                          "def bump():\n"
                                          "    global CALLS\n"
                                          "    CALLS += 1\n")
    (tmp_path / "claim_counting.py").write_text('import stabench, counting\n'
                                                'from pathlib import Path\n'
                                                'SEEN = 0\n'
                                                'def note():\n'
                                                '    global SEEN\n'
                                                '    SEEN += 1\n'
                                                '@stabench.hook("counting")\n'
                                                'def counting_hook(model, recipe, root=Path(__file__).parent):\n'
                                                '    counting.bump()\n'
                                                '    note()\n'
                                                '    counting.CALLS += 0\n'
                                                '    return counting.CALLS + SEEN\n')
    module = importlib.import_module("claim_counting")
    recipe = get_recipe("bert-default", hook="counting")
    before = recipe.hash
    module.counting_hook(None, recipe)
    assert recipe.hash == before
    assert [name for name, _ in hooks._reached(module.counting_hook)[0]] == ["counting.bump", "note"]


def test_decorated_helpers_and_lambdas_are_hashed_by_their_own_code(tmp_path, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(tmp_path)
    path = tmp_path / "decorated_helpers.py"
    path.write_text('import functools, stabench, torch\n'
                    'SCALE = 2\n'
                    '@functools.cache\n'
                    'def cached(n):\n'
                    '    return n * SCALE\n'
                    'def logged(f):\n'
                    '    @functools.wraps(f)\n'
                    '    def wrapper(*args):\n'
                    '        return f(*args)\n'
                    '    return wrapper\n'
                    '@logged\n'
                    'def wrapped(n):\n'
                    '    return n + 1\n'
                    '@torch.no_grad()\n'
                    'def without_grad(model):\n'
                    '    return model\n'
                    'scale = lambda m: m * 2\n'
                    'shift = lambda m: m + 1\n'
                    '@stabench.hook("mine")\n'
                    'def mine(model, recipe):\n'
                    '    return cached(1), wrapped(1), without_grad(model), scale(1), shift(1)\n')
    module = importlib.import_module("decorated_helpers")
    recipe = get_recipe("bert-default", hook="mine")
    hashes = [recipe.hash]
    for old, new in (("SCALE = 2", "SCALE = 3"), ("n + 1", "n + 2"), ("    return model\n", "    return model.eval()\n"),
                     ("m * 2", "m * 3"), ("m + 1", "m + 5")):
        path.write_text(path.read_text().replace(old, new))
        importlib.reload(module)
        hashes.append(recipe.hash)
    assert len(set(hashes)) == len(hashes), hashes


def test_a_notebook_s_hook_and_classes_hash_without_a_file(monkeypatch):
    """A notebook's ``__main__`` has no file, so its classes have no source to read."""
    import types

    notebook = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", notebook)
    cell = ("import stabench\n"
            "class Adapter:\n"
            "    SHIFT = {shift}\n"
            "    def wrap(self, model):\n"
            "        return model * {factor} + self.SHIFT\n"
            "@stabench.hook('cell')\n"
            "def cell(model, recipe):\n"
            "    return Adapter().wrap(model)\n")
    recipe, hashes = get_recipe("bert-default", hook="cell"), []
    for factor, shift in ((2, 0), (2, 0), (3, 0), (3, 1)):
        exec(compile(cell.format(factor=factor, shift=shift), "<cell>", "exec"), notebook.__dict__)
        hashes.append(recipe.hash)
    assert hashes[0] == hashes[1] != hashes[2] != hashes[3]  # its method's code object and its plain attributes


def test_a_hook_s_code_hashes_alike_on_every_python():
    """ast.dump's text changed with the Python version (3.12 added type_params=[], 3.13 left out
    empty fields): a hooked recipe's runs were keyed by the Python minor version.  The text is
    3.10's and 3.11's, whose hashes stored runs hold."""
    def hook(model, recipe, scale=None):
        return [model.encoder] if scale is None else {"scale": scale}

    assert hooks._source_tree(hook) == (
        "Module(body=[FunctionDef(name='hook', args=arguments(posonlyargs=[], args=[arg(arg='model'), "
        "arg(arg='recipe'), arg(arg='scale')], kwonlyargs=[], kw_defaults=[], defaults=[Constant(value=None)]), "
        "body=[Return(value=IfExp(test=Compare(left=Name(id='scale', ctx=Load()), ops=[Is()], "
        "comparators=[Constant(value=None)]), body=List(elts=[Attribute(value=Name(id='model', ctx=Load()), "
        "attr='encoder', ctx=Load())], ctx=Load()), orelse=Dict(keys=[Constant(value='scale')], "
        "values=[Name(id='scale', ctx=Load())])))], decorator_list=[])], type_ignores=[])")


def test_a_global_read_into_a_local_and_set_on_an_object_is_no_assignment_of_that_global(tmp_path, monkeypatch):
    """Python 3.13 loads two locals in one instruction (LOAD_FAST_LOAD_FAST): `model.SCALE = scale`
    was taken for an assignment of helpers.SCALE, which then left the hash."""
    import importlib

    monkeypatch.syspath_prepend(tmp_path)
    (tmp_path / "scaling.py").write_text("SCALE = 2.0\n")
    (tmp_path / "claim_scaling.py").write_text("import scaling\n"
                                               "def scaled(model, recipe):\n"
                                               "    scale = scaling.SCALE\n"
                                               "    model.SCALE = scale\n")
    module = importlib.import_module("claim_scaling")
    assert hooks._assigned_globals(module.scaled) == set()
    assert hooks._reached(module.scaled)[0] == [("scaling.SCALE", 2.0)]


def test_a_frozen_dataclass_configuring_a_hook_is_hashed_and_an_array_or_mutable_one_is_warned_of(tmp_path,
                                                                                                 monkeypatch):
    """``CFG = Cfg(n=1)`` edited to ``Cfg(n=2)`` reused the runs stored before, without a word, and
    so did an edited ``np.array`` (a power-user trial)."""
    claim_file, module = _claim_file(tmp_path, monkeypatch, "claim_with_config_objects",
                                     'import dataclasses\n'
                                     'import numpy as np\n'
                                     'import stabench\n'
                                     '@dataclasses.dataclass(frozen=True)\n'
                                     'class Cfg:\n'
                                     '    n: int\n'
                                     '    names: tuple = ("embeddings",)\n'
                                     '@dataclasses.dataclass\n'
                                     'class Loose:\n'
                                     '    scale: float\n'
                                     'CFG = Cfg(n=1)\n'
                                     'SCALES = np.array([0.5, 1.0])\n'
                                     'LOOSE = Loose(0.5)\n'
                                     '@stabench.hook("configured")\n'
                                     'def configured(model, recipe):\n'
                                     '    return CFG.n\n'
                                     '@stabench.hook("arrayed")\n'
                                     'def arrayed(model, recipe):\n'
                                     '    return SCALES, LOOSE\n')
    configured = get_recipe("bert-default", hook="configured")
    hashes = _hashes_after_edits(claim_file, module, [configured], [("Cfg(n=1)", "Cfg(n=2)"),
                                                                    ('("embeddings",)', '("pooler",)')])
    assert len(set(hashes)) == 3, hashes
    assert hooks._reached(module.arrayed)[1] == ["LOOSE", "SCALES"]
    with pytest.warns(hooks.UnhashedHookData, match=r"^hook 'arrayed' reads LOOSE, SCALES, a module-level list, "
                                                    r"dict, set, array or mutable dataclass"):
        assert get_recipe("bert-default", hook="arrayed").hash


def test_a_hook_is_checked_where_it_is_registered_and_one_returning_a_model_is_refused():
    """A wrong signature failed each seed after its data and model loaded; a generator hook never
    ran, and a hook returning a changed copy trained the original, both silently."""
    with pytest.raises(ValueError, match=r"^hook 'one': one_arg\(model\) cannot be called as f\(model, recipe\); "
                                         r"expected def one_arg\(model, recipe\)$"):
        @stabench.hook("one")
        def one_arg(model):
            pass
    with pytest.raises(ValueError, match=r"^hook 'gen': frozen is a generator or async function, whose body a call "
                                         r"does not run"):
        @stabench.hook("gen")
        def frozen(model, recipe):
            yield
    with pytest.raises(ValueError, match=r'^stabench.hook needs a name: write @stabench.hook\("my-hook"\) above def '
                                         r'nameless\(model, recipe\)'):
        @stabench.hook
        def nameless(model, recipe):
            pass

    @stabench.hook("copies")
    def copies(model, recipe, *rest):
        return model

    with pytest.raises(TypeError, match=r"^hook 'copies' returned a str; a hook changes the model it is given in "
                                        r"place and returns None"):
        hooks.apply("copies", "a model", None)
    assert hooks.apply("copies", None, None) is None


@pytest.mark.parametrize("bad", ["a[1]", "x]", "[x", " ", "a,b", "x=1"])
def test_a_hook_name_that_a_recipe_s_name_could_not_hold_is_refused_where_it_is_registered(bad):
    """A changed preset is named ``bert-default[hook=NAME]``: a comma, = or bracket in the hook's name
    would read back as other fields or end the brackets early."""
    with pytest.raises(ValueError, match=r"is invalid; expected a non-empty name without , = \[ or \]$"):
        stabench.hook(bad)
    assert bad not in hooks._HOOKS


def test_a_set_a_hook_factory_was_given_is_part_of_its_recipe():
    """``make({"embeddings"})`` and ``make({"pooler"})`` freeze other layers: two recipes."""
    def make(names):
        def freeze(model, recipe):
            return names
        return freeze

    for name, names in (("set-a", {"embeddings"}), ("set-b", {"pooler"}), ("set-c", {"embeddings"})):
        stabench.hook(name)(make(names))
    assert hooks.fingerprint("set-a") == hooks.fingerprint("set-c") != hooks.fingerprint("set-b")


def test_a_library_s_decorator_over_a_hook_is_not_hashed_so_upgrading_it_keeps_the_runs(tmp_path, monkeypatch):
    """Only a decorator of the user's enters with its wrapper's source: a wrapper installed in
    site-packages (torch's no_grad, say) changes with the library's version, not the user's edits."""
    library = tmp_path / "site-packages"
    library.mkdir()
    for name, body in (("libdeco_one", "return function(*args)"), ("libdeco_two", "result = function(*args)\n"
                                                                                 "        return result")):
        (library / f"{name}.py").write_text("import functools\n"
                                            "def wrap(function):\n"
                                            "    @functools.wraps(function)\n"
                                            "    def wrapper(*args):\n"
                                            f"        {body}\n"
                                            "    return wrapper\n")
    monkeypatch.syspath_prepend(library)
    import libdeco_one
    import libdeco_two

    def make():
        def freeze(model, recipe):
            return model
        return freeze

    stabench.hook("under-one")(libdeco_one.wrap(make()))
    stabench.hook("under-two")(libdeco_two.wrap(make()))
    assert hooks.fingerprint("under-one") == hooks.fingerprint("under-two")


def test_a_notebook_s_module_level_list_read_by_its_hook_is_warned_of(monkeypatch):
    """A notebook has no file to tell whether it assigns the list: its globals are the user's."""
    import types

    notebook = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", notebook)
    exec(compile("import stabench\n"
                 "LAYERS = [0, 1]\n"
                 "@stabench.hook('notebook-list')\n"
                 "def notebook_list(model, recipe):\n"
                 "    return LAYERS\n", "<cell>", "exec"), notebook.__dict__)
    with pytest.warns(hooks.UnhashedHookData, match=r"^hook 'notebook-list' reads LAYERS, a module-level list"):
        assert get_recipe("bert-default", hook="notebook-list").hash


def test_an_annotated_module_level_list_read_by_a_hook_is_warned_of(tmp_path, monkeypatch):
    """``LAYERS: list[int] = [0, 1]`` is the file's own configuration as ``LAYERS = [0, 1]`` is."""
    _claim_file(tmp_path, monkeypatch, "claim_annotated",
                'import stabench\n'
                'LAYERS: list[int] = [0, 1]\n'
                '@stabench.hook("annotated")\n'
                'def annotated(model, recipe):\n'
                '    return LAYERS\n')
    with pytest.warns(hooks.UnhashedHookData, match=r"^hook 'annotated' reads LAYERS, a module-level list"):
        assert get_recipe("bert-default", hook="annotated").hash


def test_a_frozen_dataclass_a_hook_builds_is_hashed_as_its_class_s_code(tmp_path, monkeypatch):
    """The class itself, not an instance: its source enters the hash, as another class's does."""
    claim_file, module = _claim_file(tmp_path, monkeypatch, "claim_with_a_config_class",
                                     'import dataclasses\n'
                                     'import stabench\n'
                                     '@dataclasses.dataclass(frozen=True)\n'
                                     'class Scale:\n'
                                     '    factor: float\n'
                                     '    def of(self, x):\n'
                                     '        return x * self.factor\n'
                                     '@stabench.hook("built")\n'
                                     'def built(model, recipe):\n'
                                     '    return Scale(0.5).of(model)\n')
    recipe = get_recipe("bert-default", hook="built")
    hashes = _hashes_after_edits(claim_file, module, [recipe], [("x * self.factor", "x / self.factor")])
    assert len(set(hashes)) == 2


def test_a_hook_replaced_by_another_with_another_list_hashes_with_the_new_list():
    """``replace=True`` with a factory's hook made from another list: the new list's recipe."""
    def make(layers):
        def freeze(model, recipe):
            return layers
        return freeze

    recipe = get_recipe("bert-default", hook="replaced")
    stabench.hook("replaced")(make([0, 1]))
    first = recipe.hash
    stabench.hook("replaced", replace=True)(make([0, 2]))
    assert recipe.hash != first
    stabench.hook("replaced", replace=True)(make([0, 1]))
    assert recipe.hash == first


def test_an_async_hook_is_refused_where_it_is_registered():
    """A call of an async function returns a coroutine and runs none of its body."""
    with pytest.raises(ValueError, match=r"^hook 'async': frozen is a generator or async function, whose body a "
                                         r"call does not run"):
        @stabench.hook("async")
        async def frozen(model, recipe):
            pass


def test_a_tuple_of_as_many_helpers_as_are_followed_is_followed_to_each_helper():
    """A collection of up to ``_FOLLOWED_ITEMS`` functions is code: each one's values are hashed."""
    def fingerprint_with(offset):
        namespace = {"__name__": f"helpers_{offset}"}
        exec(compile("def make(i):\n"
                     "    def helper():\n"
                     "        return i\n"
                     "    return helper\n"
                     f"HELPERS = tuple(make(i + {offset}) for i in range({hooks._FOLLOWED_ITEMS}))\n"
                     "def uses(model, recipe):\n"
                     "    return [helper() for helper in HELPERS]\n", "<helpers>", "exec"), namespace)
        stabench.hook(f"helpers-{offset}")(namespace["uses"])
        return hooks.fingerprint(f"helpers-{offset}")

    assert fingerprint_with(0) != fingerprint_with(1)


def test_a_factory_s_hook_over_a_function_is_one_hook_when_its_module_is_imported_again():
    """Imported again, the function the factory was given is another object, not another function."""
    source = ("import stabench\n"
              "def scale(x):\n"
              "    return x\n"
              "def make(function):\n"
              "    def over(model, recipe):\n"
              "        return function(model)\n"
              "    return over\n"
              "stabench.hook('over-a-function')(make(scale))\n")
    registered = []
    for _ in range(2):
        namespace = {"__name__": "claim_over_a_function"}
        exec(compile(source, "/project/claim_over_a_function.py", "exec"), namespace)
        registered.append(hooks.get_hook("over-a-function"))
    assert registered[0] is not registered[1]  # the second import's hook replaced the first's


def test_a_global_a_helper_deletes_is_state_left_out_of_the_hash():
    """``del CACHE`` in a helper, as ``CACHE = ...`` there: the value may change while a study runs."""
    def fingerprint_with(value):
        namespace = {"__name__": f"deleting_{value}"}
        exec(compile(f"CACHE = {value}\n"
                     "def reset():\n"
                     "    global CACHE\n"
                     "    del CACHE\n"
                     "def cached(model, recipe):\n"
                     "    reset()\n"
                     "    return CACHE\n", "<deleting>", "exec"), namespace)
        stabench.hook(f"deleting-{value}")(namespace["cached"])
        return hooks.fingerprint(f"deleting-{value}")

    assert fingerprint_with(1) == fingerprint_with(2)


def test_a_hook_with_a_loop_of_wrapped_functions_is_refused_or_hashed_in_one_line():
    """``f.__wrapped__ = f`` (a decorator gone wrong): inspect raised "wrapper loop" from registration
    or from the recipe's hash, a raw ValueError.  Refused where no signature can be read; hashed by
    its code where one is given."""
    def looped(model, recipe):
        return model

    looped.__wrapped__ = looped
    with pytest.raises(ValueError, match=r"^hook 'looped': the signature of looped cannot be read \(its __wrapped__ "
                                         r"leads back to itself\); expected a function of \(model, recipe\) whose "
                                         r"__wrapped__, if set, is the function it wraps$"):
        stabench.hook("looped")(looped)
    assert "looped" not in hooks._HOOKS

    def make(scale):
        def signed(model, recipe):
            return model * scale
        signed.__signature__, signed.__wrapped__ = inspect.signature(signed), signed
        return signed

    stabench.hook("signed-half")(make(0.5))
    stabench.hook("signed-double")(make(2.0))
    assert hooks.fingerprint("signed-half") != hooks.fingerprint("signed-double")
    assert get_recipe("bert-default", hook="signed-half").hash != get_recipe("bert-default", hook="signed-double").hash
