"""stabench: fine-tuning stability claims (Mosbach et al., ICLR 2021) as pytest benchmarks.

Names are imported lazily: pytest loads the plugin in every session, and importing
transformers costs seconds that a session without claims should not pay.
"""
from __future__ import annotations

import importlib

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
    if name not in _EXPORTS:
        raise AttributeError(f"module 'stabench' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    """The lazy names too, for tab completion and ``help(stabench)``."""
    return sorted({*globals(), *__all__})
