"""The README names only what stabench has: its functions and their keywords, its pytest options
and ini keys, and the options of each CLI command.  A rename in the code fails here, not for a
user copying the README."""
import argparse
import ast
import contextlib
import importlib
import inspect
import re
from pathlib import Path

import pytest

import stabench
from stabench import plugin
from stabench.cli import build_parser

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
CODE = [*PYTHON_BLOCKS, *re.findall(r"`([^`\n]+)`", README)]
# ``stabench.x.y(...)``, ``stats.x(...)``, ``Store.query(...)``: a dotted name, and its call's arguments
DOTTED_CALL = re.compile(r"\b([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)+)(\((?:[^()]|\([^()]*\))*\))?")
MODULES = {"stats", "analysis", "plots", "report"}  # imported ``from stabench`` in the README's examples
CLASSES = {"Store", "Study", "RunResult", "Recipe", "Task"}


def _resolve(root: str, attributes: str):
    """The object ``root.attributes`` names; AttributeError for a name stabench lacks."""
    path = root if root == "stabench" else f"stabench.{root}"
    obj = getattr(stabench, root) if root in CLASSES else importlib.import_module(path)
    for name in attributes.strip(".").split("."):
        path = f"{path}.{name}"
        if inspect.ismodule(obj) and not hasattr(obj, name):  # a submodule the package does not import
            with contextlib.suppress(ImportError):
                importlib.import_module(path)
        obj = getattr(obj, name)
    return obj


def _missing(code: list[str]) -> tuple[list[str], int]:
    """The dotted names and call keywords in ``code`` that stabench lacks, and how many names resolved."""
    missing, resolved = [], 0
    references = {match.groups() for text in code for match in DOTTED_CALL.finditer(text)
                  if match.group(1) in {"stabench", *MODULES, *CLASSES}}
    for root, attributes, call in references:
        try:
            obj = _resolve(root, attributes)
        except AttributeError:
            missing.append(f"{root}{attributes}")
            continue
        resolved += 1
        if call is None or not callable(obj):
            continue
        parameters = inspect.signature(obj).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            missing += [f"{root}{attributes}({keyword}=)" for keyword in
                        re.findall(r"[(,]\s*([A-Za-z_]\w*)\s*=(?!=)", call) if keyword not in parameters]
    return sorted(missing), resolved


def test_the_python_examples_parse():
    assert len(PYTHON_BLOCKS) >= 4
    for block in PYTHON_BLOCKS:
        ast.parse(block)


def test_every_name_and_keyword_the_readme_uses_exists():
    missing, resolved = _missing(CODE)
    assert resolved >= 30  # the pattern still finds the README's references (36 on 2026-12-06)
    assert not missing, f"the README names what stabench lacks: {missing}"


@pytest.mark.parametrize("text, problem", [
    ("`stabench.run(..., subsample_sed=1)`", "stabench.run(subsample_sed=)"),
    ("`stats.assert_less_varied(x)`", "stats.assert_less_varied"),
    ("`Store.query(task=, recipe=, seeds=)`", "Store.query(seeds=)"),
    ("`stabench.batched.SeedGroups`", "stabench.batched.SeedGroups"),
])
def test_a_name_the_code_lacks_is_found(text, problem):
    assert _missing([text])[0] == [problem]


def test_every_pytest_option_ini_key_and_mark_the_readme_names_exists():
    options = {f"--stabench-{name}" for name, _, _ in plugin._OPTIONS}
    ini_keys = {f"stabench_{name.replace('-', '_')}" for name, _, _ in plugin._OPTIONS} | {plugin.VERDICT_MARK}
    fixtures = {name for name, value in vars(plugin).items() if type(value).__name__ == "FixtureFunctionDefinition"}
    unknown = (set(re.findall(r"--stabench-[a-z0-9-]*[a-z0-9]", README)) - options
               | set(re.findall(r"\bstabench_[a-z_]*[a-z]", README)) - ini_keys - fixtures)
    assert not unknown, (f"the README names pytest options, ini keys, marks or fixtures that do not exist: "
                         f"{sorted(unknown)}")


def test_every_option_given_to_a_cli_command_in_the_readme_exists():
    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction)).choices
    unknown, checked = [], 0
    for command, rest in re.findall(rf"stabench ({'|'.join(commands)})\b([^`\n]*)", README):
        known = {option for action in commands[command]._actions for option in action.option_strings}
        for option in re.findall(r"(?<![\w-])--(?!stabench)[a-z][a-z0-9-]*", rest):
            checked += 1
            if option not in known:
                unknown.append(f"stabench {command} {option}")
    assert checked >= 20
    assert not unknown, f"the README gives CLI options that do not exist: {unknown}"
