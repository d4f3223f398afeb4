"""stabench: fine-tuning stability claims (Mosbach et al., ICLR 2021) as pytest benchmarks."""
from __future__ import annotations

import datasets
import transformers

from .recipes import PRESETS, Recipe, get_recipe
from .result import RunResult
from .tasks import get_task, load_task_data, local_task, register_task
from .train import prepare, run

# Per-split "Map" and "Loading weights" bars would bury a study's own progress output.
datasets.disable_progress_bars()
transformers.utils.logging.disable_progress_bar()

__all__ = ["PRESETS", "Recipe", "RunResult", "get_recipe", "get_task", "load_task_data", "local_task",
           "prepare", "register_task", "run"]
