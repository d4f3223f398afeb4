"""A user's own training code in a recipe: a hook that changes each seed's model before training.

A recipe holds hyperparameters and the built-in interventions. A method of one's own (freezing
the embeddings, adapters, a regulariser's wrapper) is registered as a hook and named by the
recipe's ``hook`` field::

    @stabench.hook("freeze-embeddings")
    def freeze_embeddings(model, recipe):
        for parameter in model.base_model.embeddings.parameters():
            parameter.requires_grad_(False)

    FROZEN = stabench.get_recipe("bert-default", hook="freeze-embeddings")

The hook's own source (not the functions it calls) enters the recipe's hash, so an edited hook
trains its runs again; the module that registers it must be imported in every process that
trains, as a claim file and its conftest are.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HOOKS: dict[str, Callable[..., Any]] = {}


def hook(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``function(model, recipe)`` under ``name`` (a decorator).  It runs on each seed's
    freshly loaded model, after re-initialisation and Mixout and before the optimizer is built,
    so parameters it freezes stay out of the optimizer and the gradient traces.  Registering a
    name again replaces its hook (a module imported again)."""
    if not isinstance(name, str) or not name.strip() or any(c in name for c in ",=[]"):
        raise ValueError(f"hook name {name!r} is invalid; expected a non-empty name without , = [ or ]")

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(function) or not hasattr(function, "__code__"):
            raise ValueError(f"hook {name!r}: {function!r} is not a Python function; expected def f(model, recipe)")
        _HOOKS[name] = function
        return function

    return register


def get_hook(name: str) -> Callable[..., Any]:
    """The hook registered under ``name``; an unknown one names those registered."""
    if name not in _HOOKS:
        known = ", ".join(sorted(_HOOKS)) or "none"
        raise ValueError(f"unknown hook {name!r}; registered hooks: {known} (register one with "
                         f"@stabench.hook({name!r}) in a module every process imports, e.g. the claim file)")
    return _HOOKS[name]


def fingerprint(name: str) -> str:
    """A hash of the hook's code and the plain values it closes over or defaults to, the same in
    every process.  The code is its source's syntax tree (comments and line numbers left out), not
    its bytecode, which pytest rewrites where a test file's hook asserts; a function without
    source falls back to :func:`code_shape`."""
    function = get_hook(name)
    plain = [cell.cell_contents for cell in function.__closure__ or () if _is_plain(cell.cell_contents)]
    defaults = [value for value in (function.__defaults__ or ()) if _is_plain(value)]
    text = repr((_source_tree(function) or code_shape(function.__code__), plain, defaults, sorted(
        (key, value) for key, value in (function.__kwdefaults__ or {}).items() if _is_plain(value))))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _source_tree(function: Callable[..., Any]) -> str | None:
    """The function's source as a syntax tree without positions; None without source to read or
    parse (a function made by exec, a lambda cut mid-expression)."""
    try:
        return ast.dump(ast.parse(textwrap.dedent(inspect.getsource(function))), include_attributes=False)
    except (OSError, TypeError, SyntaxError):
        return None


def code_shape(code) -> tuple:
    """What a function's code does, without where it stands (lines, file): its bytecode, names and
    constants, nested functions' too, with sets in sorted order so that it is the same in every
    process."""
    def constant(value: Any) -> Any:
        if hasattr(value, "co_code"):
            return code_shape(value)
        if isinstance(value, frozenset):
            return ("frozenset", sorted(map(repr, value)))
        if isinstance(value, tuple):
            return tuple(constant(item) for item in value)
        return value

    return code.co_code, code.co_names, code.co_freevars, tuple(constant(c) for c in code.co_consts)


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, Path, type(None)))
