"""Profiles (paper scale vs toy scale) and what a claim needs that this machine may lack.

The toy profile runs every paper claim end to end on a tiny random BERT and built-in data,
so a broken suite is caught on a CPU; it checks that runs, traces, statistics and reports
are produced, not that the paper's thresholds hold (its verdicts are reported as xfail).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import socket
import urllib.parse
from pathlib import Path

from .models import TINY_BERT, needs_hub

TOY = {
    "model": TINY_BERT,
    "seeds": 2,
    "train_size": 64,  # applied only to claims that subsample (the 1k-example study)
    # GLUE tasks stand in for built-in tasks of the same shape.
    "task_map": {"rte": "same-number", "mrpc": "same-number", "qnli": "same-number", "cola": "polarity",
                 "sst2": "polarity"},
    "recipe_overrides": {"max_steps": 8, "trace_every": 2},
}


# What a claim's ``requires=`` may name beyond its model and data: a GPU, and the MLM text of the
# forgetting experiment (checked before 25 seeds train, not after).
REQUIREMENTS = ("cuda", "wikitext-2")
WIKITEXT_2 = ("Salesforce/wikitext", "wikitext-2-raw-v1")


def check_requirements(requires) -> None:
    unknown = [name for name in requires if name not in REQUIREMENTS]
    if isinstance(requires, str) or unknown:
        raise ValueError(f"claim requires={requires!r} is invalid; expected a list naming any of: "
                         f"{', '.join(REQUIREMENTS)}")


def missing_requirements(spec, toy_option: str | None = "--stabench-profile=toy") -> list[str]:
    """Human-readable reasons this machine cannot run the claim; empty when it can.  ``toy_option``
    is how the caller runs a claim at toy scale (None where it cannot: a script's check_claim)."""
    from .tasks import get_task

    missing: list[str] = []
    if "cuda" in spec.requires and not _cuda_available():
        toy = f", or use {toy_option} here" if toy_option else ""
        missing.append(f"a CUDA GPU (paper-scale claim; run it on a GPU box{toy})")
    if "wikitext-2" in spec.requires and not dataset_available(*WIKITEXT_2):
        missing.append(f"dataset {'/'.join(WIKITEXT_2)} ({dataset_reason()})")
    for arm in spec.arms:
        if needs_hub(arm.model) and not hub_model_available(arm.model):
            missing.append(f"model {arm.model!r} from the Hugging Face hub ({hub_reason()})")
        task = get_task(arm.task)
        if task.source == "glue" and not glue_available(task.name):
            missing.append(f"dataset nyu-mll/glue/{task.name} ({dataset_reason()})")
    return list(dict.fromkeys(missing))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reason() -> str:
    if _offline():
        return "not in the local cache and HF_HUB_OFFLINE is set"
    return f"not in the local cache and {_hub_host()} is unreachable from this machine"


def dataset_reason() -> str:
    """Why a hub dataset is not available here: no ``datasets`` to load it with, or no hub."""
    if importlib.util.find_spec("datasets") is None:
        return "the datasets package is not installed: pip install datasets"
    return hub_reason()


def hub_model_available(repo_id: str) -> bool:
    """The model's config is in the local hub cache, or the hub can be reached to fetch it."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str) or hub_reachable()


def glue_available(config: str) -> bool:
    """A finished download of the GLUE config is cached, or the hub can be reached to fetch it."""
    return dataset_available("nyu-mll/glue", config)


def dataset_available(repo_id: str, config: str) -> bool:
    """A finished download of the dataset's config is cached, or the hub can be reached to fetch it.

    datasets prepares a download in ``<hash>.incomplete`` and renames it when done, so a folder
    holding ``dataset_info.json`` under any other name is a whole copy."""
    try:
        from datasets import config as datasets_config
    except ImportError:  # the GPU image has no datasets: nothing can load the data there
        return False
    cache = Path(datasets_config.HF_DATASETS_CACHE)
    if any(not info.parent.name.endswith(".incomplete")
           for info in cache.glob(f"{repo_id.replace('/', '___')}/{config}/*/*/dataset_info.json")):
        return True
    return hub_reachable()


def _hub_host(endpoint: urllib.parse.ParseResult | None = None) -> str:
    return (endpoint or _hub_endpoint()).hostname or "huggingface.co"


def _hub_endpoint() -> urllib.parse.ParseResult:
    return urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """One short TCP probe per process, instead of the hub client's minute of retries; a mirror
    in HF_ENDPOINT is probed on its own port.  The probe is direct, so a hub reached only
    through a proxy counts as unreachable: a proxy that takes the connection may still refuse
    the hub, and the hub client then fails instead of reading its cache."""
    if _offline():
        return False
    endpoint = _hub_endpoint()
    try:
        port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
        with socket.create_connection((_hub_host(endpoint), port), timeout=3):
            return True
    except (OSError, ValueError):  # ValueError: a port that is not a number
        return False
