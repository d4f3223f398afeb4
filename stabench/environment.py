"""The software and hardware a run happened on.

Results are compared across torch / transformers releases, so the fields that can change
a number are part of every run key; the rest is recorded for provenance only.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from numbers import Integral
from typing import Any

# Fields that can change a result go into the run key.  These are also columns of the store.
KEY_FIELDS = ("torch", "transformers", "datasets", "device_kind", "device_name", "precision")
# Keyed too since 2026-12-04 (tokenizers makes the token ids), but read from the stored record
# rather than a store column, so adding it needed no schema change.
RECORD_KEY_FIELDS = ("tokenizers",)
# On a CPU the thread count also changes a result: it sets the order of float reductions, and a
# chaotic run amplifies the difference (seed 0 of the offline demo fails with 1 thread and
# succeeds with 2).  It enters the key of CPU runs only, so GPU keys are unchanged.
CPU_KEY_FIELDS = ("cpu_threads",)
# Every field a run's key can hold, as ``env:`` selections name them.
ALL_KEY_FIELDS = (*KEY_FIELDS, *RECORD_KEY_FIELDS, *CPU_KEY_FIELDS)


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(args: list[str], cwd: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=8)
def _static_environment(device: str, project_dir: str) -> tuple[tuple[str, Any], ...]:
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "torch": torch.__version__,
        "transformers": installed_version("transformers"),
        "datasets": installed_version("datasets"),
        "tokenizers": installed_version("tokenizers"),
        "huggingface_hub": installed_version("huggingface_hub"),
        "safetensors": installed_version("safetensors"),
        "numpy": installed_version("numpy"),
        "stabench": installed_version("stabench"),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device_kind": torch.device(device).type,
        "device_name": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "gpu_driver": None,
    }
    if env["device_kind"] == "cuda":
        index = torch.device(device).index or 0
        env["device_name"] = torch.cuda.get_device_name(index)
        env["gpu_driver"] = _nvidia_driver()
    commit = _git(["rev-parse", "HEAD"], project_dir)
    env["project_git_commit"] = commit
    env["project_git_dirty"] = bool(_git(["status", "--porcelain"], project_dir)) if commit else None
    env["stabench_git_commit"], env["stabench_git_dirty"] = stabench_clone(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return tuple(sorted(env.items()))


def stabench_clone(source: str) -> tuple[str | None, bool | None]:
    """The commit of the clone stabench runs from (an editable install, whose version stays 0.1.0
    from commit to commit), and whether its code was edited since: a training loop tried out
    locally is another stabench.  (None, None) for an installed wheel."""
    if not os.path.exists(os.path.join(source, ".git")):
        return None, None
    commit = _git(["rev-parse", "HEAD"], source)
    return commit, bool(_git(["status", "--porcelain", "--", "stabench"], source)) if commit else None


def _cpu_model() -> str | None:
    """The CPU's model name: recorded, not keyed, though another CPU can end a chaotic run differently."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else None


def capture(device: str = "cpu", precision: str = "fp32") -> dict[str, Any]:
    """Everything about this process's stack that a stored run should remember."""
    import torch

    env = dict(_static_environment(device, os.getcwd()))
    env["precision"] = precision
    env["cpu_threads"] = torch.get_num_threads()  # read now: a session sets it after import
    env["python_executable"] = sys.executable
    # Which GPU of a machine ran it: the plugin pins each xdist worker by this variable.
    env["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    return env


def key_fields(env: dict[str, Any]) -> dict[str, Any]:
    """The subset of an environment that enters the run key."""
    fields = {name: env.get(name) for name in (*KEY_FIELDS, *RECORD_KEY_FIELDS)}
    if env.get("device_kind") == "cpu":
        fields.update({name: env.get(name) for name in CPU_KEY_FIELDS})
    return fields


def resolve_device(device) -> str:
    """``auto`` becomes cuda where a GPU is visible, else cpu; an unusable device is named.

    Takes a string or a ``torch.device``; returns the string that enters the run's record."""
    import torch

    text = str(device)
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(text)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda") or parsed.type == "cpu" and parsed.index:
        raise ValueError(f"device {text!r} is invalid; expected auto, cpu, cuda or cuda:N")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise ValueError(f"device {text!r} is not available (no CUDA GPU); use cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device {text!r} is not available ({count} CUDA GPU(s): cuda:0..cuda:{count - 1})")
    return text


MAX_COUNT = 1024  # threads or workers: past any machine's cores, short of a typo's 100000 (a MemoryError)


def check_positive_count(threads: int | None, owner: str = "") -> None:
    """A count of threads or workers: below 1 is refused (torch would take 0 threads as its
    default, -1 as an error), and so is one no machine has."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, Integral)
                                or not 1 <= threads <= MAX_COUNT):
        raise ValueError(f"{owner}{threads!r} is invalid; expected an integer from 1 to {MAX_COUNT}")


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run the block with ``count`` torch threads (None: as they are), restored afterwards: on
    a CPU the count changes a run's result and is part of its key."""
    import torch

    check_positive_count(count, "cpu_threads=")
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_gpu_ids(text: str | None) -> list[str]:
    """GPU ids for pinning workers, as CUDA_VISIBLE_DEVICES takes them (indices or GPU-/MIG-
    UUIDs), each one this process may use: within its own CUDA_VISIBLE_DEVICES when that is set
    (a job's allocation), else below the machine's GPU count.

    A worker pinned to an id CUDA does not know would see no GPU, and ``auto`` would train it
    on the CPU without a word.  Checked in the controller only: a worker's own
    CUDA_VISIBLE_DEVICES is already narrowed to its one GPU."""
    if text is None:
        return []
    ids = [item.strip() for item in text.split(",")]
    for gpu in ids:
        if not (gpu.isdecimal() or gpu.startswith(("GPU-", "MIG-"))):
            raise ValueError(f"GPU id {gpu!r} is invalid; expected comma-separated indices such as 0,1 "
                             f"or GPU-/MIG- UUIDs")
    allowed = visible_gpu_ids()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        outside = [gpu for gpu in ids if gpu not in allowed]
        if outside:
            raise ValueError(f"GPU {', '.join(outside)} is outside CUDA_VISIBLE_DEVICES={visible}; expected ids "
                             f"from it: {', '.join(allowed) or 'none'}")
        return ids
    if not allowed:
        raise ValueError(f"{text!r} names GPUs, but no CUDA GPU is visible here; leave the option out to "
                         f"train on the CPU")
    unknown = [gpu for gpu in ids if gpu.isdecimal() and int(gpu) >= len(allowed)]
    if unknown:
        raise ValueError(f"GPU {', '.join(unknown)} is not visible here; expected ids 0..{len(allowed) - 1}")
    return ids


def visible_gpu_ids() -> list[str]:
    """The GPUs this process may use: its CUDA_VISIBLE_DEVICES when set (a job's allocation),
    else every GPU by index.  Counting them does not initialise CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
