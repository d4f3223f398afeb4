"""A user's own training code in a recipe: a hook that changes each seed's model before training.

A recipe holds hyperparameters and the built-in interventions. A method of one's own (freezing
the embeddings, adapters, a regulariser's wrapper) is registered as a hook and named by the
recipe's ``hook`` field::

    @stabench.hook("freeze-embeddings")
    def freeze_embeddings(model, recipe):
        for parameter in model.base_model.embeddings.parameters():
            parameter.requires_grad_(False)

    FROZEN = stabench.get_recipe("bert-default", hook="freeze-embeddings")

The hook's source, and the functions, classes and plain values it reaches in the user's own
files, enter the recipe's hash, so an edited hook or helper trains its runs again; the module
that registers it must be imported in every process that trains, as a claim file and its
conftest are.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import difflib
import dis
import functools
import hashlib
import inspect
import itertools
import site
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .warn import warn


class _Registered(NamedTuple):
    function: Callable[..., Any]
    containers: list  # the lists, dicts and sets of plain values it closed over or defaulted to when registered


_HOOKS: dict[str, _Registered] = {}


def hook(name: str, replace: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``function(model, recipe)`` under ``name`` (a decorator).  It runs on each seed's
    freshly loaded model, after re-initialisation and Mixout and before the optimizer is built,
    so parameters it freezes stay out of the optimizer and the gradient traces.  The same
    definition registered again (its module imported again, a notebook cell run again) replaces
    the hook; another function under a taken name is refused unless ``replace`` (which replaces
    it for the whole process, claims already collected included), for a claim would silently
    train with the other's code."""
    if callable(name):  # @stabench.hook over the function, without a name
        raise ValueError(f"stabench.hook needs a name: write @stabench.hook(\"my-hook\") above def "
                         f"{getattr(name, '__name__', 'f')}(model, recipe), and name it in a recipe's hook field")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in ",=[]"):
        raise ValueError(f"hook name {name!r} is invalid; expected a non-empty name without , = [ or ]")

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(function) or not hasattr(function, "__code__"):
            raise ValueError(f"hook {name!r}: {function!r} is not a Python function; expected def f(model, recipe)")
        try:  # here, not after each seed has loaded its data and model
            inspect.signature(function).bind(None, None)
        except ValueError as error:  # no signature to read: a loop of __wrapped__, a builtin without one
            why = "its __wrapped__ leads back to itself" if "wrapper loop" in str(error) else str(error)
            raise ValueError(f"hook {name!r}: the signature of {function.__name__} cannot be read ({why}); expected a "
                             f"function of (model, recipe) whose __wrapped__, if set, is the function it wraps"
                             ) from None
        except TypeError:
            raise ValueError(f"hook {name!r}: {function.__name__}{inspect.signature(function)} cannot be called as "
                             f"f(model, recipe); expected def {function.__name__}(model, recipe)") from None
        if inspect.isgeneratorfunction(function) or inspect.iscoroutinefunction(function):
            raise ValueError(f"hook {name!r}: {function.__name__} is a generator or async function, whose body a call "
                             f"does not run; expected a plain def {function.__name__}(model, recipe)")
        if name in _HOOKS and not replace and not _redefines(_HOOKS[name].function, function):
            raise ValueError(f"hook {name!r} is already registered by {_described(_HOOKS[name].function)}; give "
                             f"{_described(function)} another name, or replace it with "
                             f"stabench.hook({name!r}, replace=True)")
        kept = _HOOKS.get(name)  # the same object again keeps its snapshot: its default list may have filled since
        containers = kept.containers if kept and kept.function is function else _containers(_definition(function))
        _HOOKS[name] = _Registered(function, containers)
        return function

    return register


def apply(name: str, model: Any, recipe: Any) -> None:
    """Run hook ``name`` on a seed's model.  A hook changes the model it is given; one that returns
    another model (a copy it changed) would leave the trained one as it was, silently."""
    returned = get_hook(name)(model, recipe)
    if returned is not None:
        raise TypeError(f"hook {name!r} returned a {type(returned).__name__}; a hook changes the model it is given "
                        f"in place and returns None (the model trained is the one passed in)")


def _redefines(old: Callable[..., Any], new: Callable[..., Any]) -> bool:
    """Whether ``new`` is ``old``'s definition run again: in the same file, the same function on
    the same line with the same values closed over (its module imported again, under any module
    name; not a factory's hook made with another value); in another file, the same function of
    the same module (a notebook cell run again, edited or not, is compiled as another file)."""
    old, new = _definition(old), _definition(new)
    if old.__qualname__ != new.__qualname__:
        return False
    if _file(old) != _file(new):
        return old.__module__ == new.__module__
    return old.__code__.co_firstlineno == new.__code__.co_firstlineno and _bound(old) == _bound(new)


def _bound(function: Callable[..., Any]) -> str:
    """Every value a function closes over or defaults to, as text (so NaN equals NaN): a factory's
    hook made from another list, array or number is another hook."""
    def text(value: Any) -> str:  # a function by its name: imported again, it is another object
        return f"<{value.__qualname__}>" if inspect.isfunction(value) or inspect.isclass(value) else repr(value)

    return repr([[(name, text(value)) for name, value in group] for group in _bindings(function)])


def _bindings(function: Callable[..., Any]) -> tuple[list[tuple[str, Any]], ...]:
    """What a function closes over (a cell not yet filled left out), its defaults and its
    keyword-only defaults (sorted), each as ``(its name in the function, value)``."""
    code = function.__code__
    cells = []
    for name, cell in zip(code.co_freevars, function.__closure__ or ()):
        with contextlib.suppress(ValueError):  # a cell not yet filled
            cells.append((name, cell.cell_contents))
    positional, defaults = code.co_varnames[:code.co_argcount], function.__defaults__ or ()
    return (cells, list(zip(positional[len(positional) - len(defaults):], defaults)),
            sorted((function.__kwdefaults__ or {}).items()))


def _definition(function: Callable[..., Any]) -> Callable[..., Any]:
    """The function the user wrote: a shared decorator's wrapper is not the hook."""
    inner = _unwrapped(function)
    return inner if hasattr(inner, "__code__") else function


def _file(function: Callable[..., Any]) -> str:
    return str(Path(function.__code__.co_filename).resolve())


def _described(function: Callable[..., Any]) -> str:
    function = _definition(function)
    return f"{function.__qualname__} ({_file(function)}:{function.__code__.co_firstlineno})"


def get_hook(name: str) -> Callable[..., Any]:
    """The hook registered under ``name``; an unknown one names those registered."""
    return _registered(name).function


def _registered(name: str) -> _Registered:
    if name not in _HOOKS:
        known = ", ".join(sorted(_HOOKS)) or "none"
        close = difflib.get_close_matches(name, _HOOKS, n=1)
        raise ValueError(f"unknown hook {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; registered "
                         f"hooks: {known} (register one with @stabench.hook({name!r}) in a module every process "
                         f"imports, e.g. the claim file; the CLI imports it with --import, a conftest's hook with "
                         f"--import conftest.py)")
    return _HOOKS[name]


def fingerprint(name: str) -> str:
    """A hash of the hook's code and of what it reaches in the user's own modules, the same in
    every process.

    Code is its source's syntax tree (comments and line numbers left out), not its bytecode,
    which pytest rewrites where a test file's hook asserts; a function without source falls back
    to :func:`code_shape`.  With it go the plain values it closes over or defaults to, and the
    functions, classes and plain module values it names as globals (or as attributes of a module)
    that live outside the Python installation and its site-packages, followed through their own
    globals: a helper edited in the claim file trains the runs again.  A hook that reaches none
    hashes as before they were followed.

    Plain values are numbers, strings, and tuples and frozensets of them.  The lists, dicts and
    sets of them that the hook closes over or defaults to (a factory's argument) are taken as they
    were when it was registered, so a hook that fills a default list as it runs keeps its hash;
    a module's are left out (state, perhaps).  A hook behind a decorator (``@torch.no_grad()``) is
    the function under it, with the decorators' own plain values (``@scaled(0.5)``) and, for a
    decorator of the user's, its wrapper's source."""
    registered = _registered(name)
    function = _definition(registered.function)
    text = repr(_own_code(function))
    if layers := _decorators(registered.function):
        text += repr(layers)
    if registered.containers:
        text += repr(registered.containers)
    reached, unhashed = _reached(function)
    if reached:
        text += repr(reached)
    if unhashed:
        _warn_unhashed(name, unhashed)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class UnhashedHookData(UserWarning):
    """A hook reads a module-level list, dict, set, array or mutable dataclass, whose contents are
    not in its recipe's hash."""


_WARNED: set[tuple[str, tuple[str, ...]]] = set()


def _warn_unhashed(name: str, globals_: list[str]) -> None:
    """Once per process: editing such a value reuses the runs stored before, silently."""
    if (name, tuple(globals_)) not in _WARNED:
        warn(f"hook {name!r} reads {', '.join(globals_)}, a module-level list, dict, set, array or mutable "
             f"dataclass: its contents are not part of the recipe's hash (they may be state that changes "
             f"while a study runs), so an edit to them would reuse the runs stored before it; if it "
             f"configures the hook, make it a tuple or a frozen dataclass", UnhashedHookData)
        _WARNED.add((name, tuple(globals_)))  # after: under -W error every use raises, not the first alone


def _decorators(function: Callable[..., Any]) -> list[tuple]:
    """Each ``functools.wraps`` wrapper between a registered hook and the function under it: its
    plain values, and its source where it is the user's."""
    layers, seen = [], set()
    while hasattr(function, "__wrapped__") and hasattr(function, "__code__") and id(function) not in seen:
        seen.add(id(function))  # a cycle of __wrapped__ ends
        code = (_source_tree(function.__code__) or code_shape(function.__code__)) if _is_users(function) else None
        layers.append((_values(function), code))  # the wrapper's own source: getsource(function) would unwrap
        function = function.__wrapped__
    return layers


def _containers(function: Callable[..., Any]) -> list:
    """The lists, dicts and sets of plain values a function closes over or defaults to, in
    :func:`_plain`'s form."""
    return [form for group in _bindings(function) for _, value in group if isinstance(value, (list, dict, set))
            and (form := _plain(value, containers=True)) is not _MISSING]


def _own_code(function: Callable[..., Any]) -> tuple:
    return _source_tree(function) or code_shape(function.__code__), *_values(function)


def _values(function: Callable[..., Any]) -> tuple:
    """The plain values a function closes over and defaults to, in :func:`_plain`'s form."""
    def kept(group: list[tuple[str, Any]]) -> list:
        return [form for _, value in group if (form := _plain(value)) is not _MISSING]

    cells, defaults, kwdefaults = _bindings(function)
    return kept(cells), kept(defaults), [(key, form) for key, value in kwdefaults
                                         if (form := _plain(value)) is not _MISSING]


def _reached(hook_function: Callable[..., Any]) -> tuple[list[tuple[str, Any]], list[str]]:
    """What the hook's code reaches in the user's own files: functions and classes (their code)
    and plain module values, each under the names that lead to it from the hook
    (``team_helpers.freeze>SCALE``), so that the hash is the same wherever the files are checked
    out and however they were imported.  A global that any reached function assigns (a call
    counter) is state, not code, and is left out: the hash must not change while a study runs.
    Module-level lists, dicts and sets of plain values are left out too, and named second."""
    found: dict[str, Any] = {}
    unhashed: list[tuple[str, int, str]] = []  # (name, id of the owning globals, global's name)
    values: list[tuple[str, int, str, Any]] = []  # (name, id of the owning globals, global's name, value)
    assigned: set[tuple[int, str]] = set()
    pending, seen = [("", hook_function)], {id(hook_function)}

    def follow(name: str, value: Any) -> None:
        """A function or class of the user's: its code, and what its own code reaches.  Through a
        ``functools.partial`` (with its plain arguments), a bound method, a callable object (its
        class) and a small tuple, list or dict of them (``make_penalty(1e-3, (squared, absolute))``)."""
        value = _unwrapped(value)
        if id(value) in seen:
            return
        if isinstance(value, functools.partial):
            seen.add(id(value))
            parts = [("func", value.func), *enumerate(value.args), *sorted(value.keywords.items())]
            found[f"{name}.partial"] = [(label, form) for label, part in parts[1:]
                                        if (form := _plain(part)) is not _MISSING]
            for label, part in parts:
                follow(f"{name}.partial[{label!r}]", part)
        elif inspect.ismethod(value):
            follow(name, value.__func__)
        elif isinstance(value, (tuple, list, dict)) and len(value) <= _FOLLOWED_ITEMS:
            seen.add(id(value))
            for label, item in (value.items() if isinstance(value, dict) else enumerate(value)):
                follow(f"{name}[{label!r}]", item)
        elif (inspect.isfunction(value) or inspect.isclass(value)) and _is_users(value):
            seen.add(id(value))
            found[name] = _class_code(value) if inspect.isclass(value) else [_own_code(value)]
            pending.extend((f"{name}>", f) for f in ([value] if inspect.isfunction(value) else _methods(value)))
        elif callable(value) and not inspect.isroutine(value) and _is_users(type(value)):
            follow(name, type(value))  # its class's code; what the object holds is not hashed

    while pending:
        path, function = pending.pop()
        assigned |= _assigned_globals(function)
        for chain in _global_chains(function.__code__):
            owner, value, names = function.__globals__, function.__globals__.get(chain[0], _MISSING), [chain[0]]
            for attribute in chain[1:]:  # helpers.freeze: through a module of the user's only
                if not (inspect.ismodule(value) and _is_users(value)):
                    break
                owner, value = vars(value), getattr(value, attribute, _MISSING)
                names.append(attribute)
            name = path + ".".join(names)
            if (form := _plain(value)) is not _MISSING:
                values.append((name, id(owner), names[-1], form))
            elif (isinstance(value, (list, dict, set)) and not _holds_code(value) or _mutable_data(value)) and \
                    _module_assigns(owner, names[-1]):
                unhashed.append((name, id(owner), names[-1]))
            else:
                follow(name, value)
        for name, value in [pair for pairs in _bindings(function) for pair in pairs]:  # make_penalty(1e-3, squared):
            follow(f"{path}<{name}>", value)  # the function passed in
    found.update((name, value) for name, owner, global_name, value in values if (owner, global_name) not in assigned)
    return sorted(found.items()), sorted({name for name, owner, global_name in unhashed
                                          if (owner, global_name) not in assigned})


def _mutable_data(value: Any) -> bool:
    """A numpy array or a dataclass instance that is not frozen: configuration, or state, whose
    contents are not hashed (a frozen dataclass of plain values is, by :func:`_plain`)."""
    return type(value).__module__ == "numpy" and bool(getattr(value, "ndim", 0)) or _frozen_dataclass(value) is False


def _frozen_dataclass(value: Any) -> bool | None:
    """Whether a dataclass instance is frozen; None for anything else (a dataclass itself too)."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return None
    return value.__dataclass_params__.frozen


def _holds_code(container: list | dict | set) -> bool:
    """A collection of helpers (followed, as a global function is) rather than data; its first
    items tell, so a long list costs nothing."""
    items = container.values() if isinstance(container, dict) else container
    return any(callable(item) for item in itertools.islice(items, _FOLLOWED_ITEMS))


def _module_assigns(owner: dict[str, Any], name: str) -> bool:
    """Whether the module whose globals these are assigns ``name`` at its top level
    (``CONFIG = {...}``), where an import (``from keyword import kwlist``) or a dunder
    (``__all__``) is no configuration of the user's.  A notebook's cells have no file to read:
    their globals are the user's."""
    if name.startswith("__"):
        return False
    try:
        source = inspect.getsource(sys.modules[owner.get("__name__")])
    except (KeyError, TypeError, OSError):
        return True
    return name in _top_level_assignments(source)


@functools.lru_cache(maxsize=64)
def _top_level_assignments(source: str) -> frozenset[str]:
    names = set()
    for node in ast.parse(source).body:
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
    return frozenset(names)


def _class_code(cls: type) -> Any:
    """A class's source, or where it has none (a notebook's) its methods' code and plain attributes."""
    return _source_tree(cls) or ([_own_code(f) for f in _methods(cls)], sorted(
        (name, form) for name, value in vars(cls).items()
        if not name.startswith("__") and (form := _plain(value)) is not _MISSING))


_MISSING = object()
_FOLLOWED_ITEMS = 64  # a collection of helpers is small; a long one is data (its plain values are hashed)


def _global_chains(code) -> list[tuple[str, ...]]:
    """Each global the code loads, with the attributes read off it right after (``mod.f``), in
    nested functions and comprehensions too."""
    chains: list[list[str]] = []
    chain: list[str] | None = None
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            chain = [instruction.argval]
            chains.append(chain)
        elif instruction.opname in ("LOAD_ATTR", "LOAD_METHOD") and chain is not None:
            chain.append(instruction.argval)
        else:  # the chain ends: a later attribute is read off something else
            chain = None
    nested = [chain for const in code.co_consts if hasattr(const, "co_code") for chain in _global_chains(const)]
    return [tuple(chain) for chain in chains] + nested


def _assigned_globals(function: Callable[..., Any]) -> set[tuple[int, str]]:
    """(id of a globals dict, name) of each global the function assigns: ``global CALLS; CALLS += 1``
    in its own module, or ``helpers.CALLS += 1`` in a user module, in nested code too."""
    def walk(code) -> set[tuple[int, str]]:
        names, last_global = set(), None
        for instruction in dis.get_instructions(code):
            if instruction.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
                names.add((id(function.__globals__), instruction.argval))
            elif instruction.opname in ("STORE_ATTR", "DELETE_ATTR") and inspect.ismodule(last_global):
                names.add((id(vars(last_global)), instruction.argval))
            if instruction.opname == "LOAD_GLOBAL":
                last_global = function.__globals__.get(instruction.argval)
            elif instruction.opname.startswith(("LOAD_FAST", "LOAD_DEREF", "LOAD_CLOSURE")):  # self.x = ...: not a
                last_global = None  # module's (LOAD_FAST_LOAD_FAST on 3.13, LOAD_FAST_BORROW on 3.14 too)
        return names.union(*(walk(const) for const in code.co_consts if hasattr(const, "co_code")))

    return walk(function.__code__)


def _unwrapped(value: Any) -> Any:
    """The function under ``functools.wraps`` decorators (``@torch.no_grad()``, ``@functools.cache``),
    whose own code is the user's."""
    try:
        return inspect.unwrap(value) if callable(value) else value
    except Exception:  # a cycle of __wrapped__, or an object whose __getattr__ raises what it likes
        return value


def _methods(cls: type) -> list[Callable[..., Any]]:
    members = [_unwrapped(getattr(member, "__func__", member)) for member in vars(cls).values()]
    return [member for member in members if inspect.isfunction(member)]


def _is_users(value: Any) -> bool:
    """Defined in a file outside the Python installation, any site-packages and stabench: the
    user's own code, whose edits change what a hook does.  A notebook's classes have no file."""
    try:
        file = inspect.getfile(value)
    except (TypeError, OSError):  # built in, or defined in a notebook's __main__
        return getattr(value, "__module__", None) == "__main__"
    if file.startswith("<frozen"):
        return False
    path = Path(file).resolve()
    return not {"site-packages", "dist-packages"} & set(path.parts) and \
        not any(path.is_relative_to(root) for root in _library_roots())


@functools.cache
def _library_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    return (*roots, *(Path(p).resolve() for p in site.getsitepackages()), Path(site.getusersitepackages()).resolve(),
            Path(__file__).resolve().parent)


def _source_tree(function: Callable[..., Any]) -> str | None:
    """The function's source as a syntax tree without positions; None without source to read or
    parse (a function made by exec, a lambda cut mid-expression)."""
    try:
        return _dump(ast.parse(textwrap.dedent(inspect.getsource(function))))
    except (OSError, TypeError, ValueError, SyntaxError):  # ValueError: a loop of __wrapped__
        return None


def _dump(node: Any) -> str:
    """``ast.dump`` as Python 3.10 and 3.11 write it, on every Python: 3.12 adds ``type_params=[]``
    and 3.13 leaves out empty fields, which would key a hooked recipe's runs by the Python version
    (recorded with a run, not keyed)."""
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None and getattr(type(node), name, ...) is None or name == "type_params" and not value:
                continue  # an optional field not given, and 3.12's type parameters when there are none
            fields.append(f"{name}={_dump(value)}")
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return f"[{', '.join(map(_dump, node))}]"
    return repr(node)


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


def _plain(value: Any, containers: bool = False, within: frozenset = frozenset()) -> Any:
    """A value as it enters the hash, with a repr the same in every process, or ``_MISSING`` for
    one that is not plain (a Path names the checkout; an object's repr, its address): a number,
    string or None as itself (a numpy scalar as the Python number it holds); a tuple or frozenset
    of plain values, and with ``containers`` a list, dict or set of them, tagged with its type, a
    set's or dict's items in sorted order.  A container inside itself, or nested deeper than
    ``_NESTING``, is not plain."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # its repr changed with numpy 2, which no run's key holds
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if _frozen_dataclass(value):
        fields = [(spec.name, _plain(getattr(value, spec.name), containers, within))
                  for spec in dataclasses.fields(value)]
        if any(form is _MISSING for _, form in fields):
            return _MISSING
        return f"dataclass {type(value).__qualname__}", fields  # CFG = Cfg(n=1): its values, as a tuple's
    if not (isinstance(value, (tuple, frozenset)) or containers and isinstance(value, (list, set, dict))) \
            or id(value) in within or len(within) >= _NESTING:
        return _MISSING
    within = within | {id(value)}
    forms = [_plain(item, containers, within) for item in (value.items() if isinstance(value, dict) else value)]
    if any(form is _MISSING for form in forms):
        return _MISSING
    return type(value).__name__, sorted(map(repr, forms)) if isinstance(value, (set, frozenset, dict)) else forms


_NESTING = 32
