"""stabench: fine-tuning stability claims (Mosbach et al., ICLR 2021) as pytest benchmarks.

Names are imported lazily: pytest loads the plugin in every session, and importing
transformers costs seconds that a session without claims should not pay.
"""
from __future__ import annotations

import importlib
import pkgutil

_EXPORTS = {
    "claim": "claims", "check_claim": "claims", "study": "claims", "Study": "claims", "StudySet": "claims",
    "Recipe": "recipes", "PRESETS": "recipes", "get_recipe": "recipes",
    "RunResult": "result",
    "Task": "tasks", "get_task": "tasks", "load_task_data": "tasks", "local_task": "tasks", "register_task": "tasks",
    "prepare": "train", "run": "train",
    "Store": "store",
    "hook": "hooks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """A lazy name, or a module of the package: ``stabench.claims.Study`` right after ``import stabench``."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if not name.startswith("_") and name in {module.name for module in pkgutil.iter_modules(__path__)}:  # not __main__
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'stabench' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, for tab completion and ``help(stabench)``."""
    return sorted({*globals(), *__all__})
