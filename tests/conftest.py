"""Shared fixtures: a tiny random BERT saved to disk and loaded through from_pretrained."""
from __future__ import annotations

import importlib
import os

# Before datasets / huggingface_hub are imported: they read these once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

# Imported here, before any in-process pytest session: pytester drops the modules such a session
# imported, and a second import fails (pyarrow keeps its extension types per process, and numpy's
# fft extension, which scipy.stats imports, loads once per process).  The plugin imports neither
# for a session without claims.  rich too: the CLI, called after such a session, would otherwise
# render with classes of a second copy of rich (NotRenderableError: "Unable to render Segment").
# stabench's claims and plots too: a claim's stabench.stats.assert_better got a Comparison of a
# second copy of stats and refused it (test_plugin.py run alone), and a test patching plots.* must
# patch the module the session uses.
for module in ("datasets", "scipy.stats", "rich.console", "rich.table", "stabench.claims", "stabench.plots"):
    importlib.import_module(module)

import pytest  # noqa: E402
import torch  # noqa: E402

from stabench.models import build_tiny_bert  # noqa: E402

# Tiny models gain nothing from a second thread, and a busy 2-core machine loses a lot to it.
torch.set_num_threads(1)

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a 2-layer, 64-wide random BERT with a vocabulary covering the built-in tasks."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert"))


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """No test writes to the user's store or cache; each test gets its own.  Tables are as wide as in
    a CI log, also under xdist (whose workers set COLUMNS to the terminal's width)."""
    monkeypatch.setenv("STABENCH_STORE", str(tmp_path / "store" / "results.sqlite"))
    monkeypatch.setenv("STABENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """In-process pytest sessions (pytester) set this process's torch threads (--stabench-cpu-threads)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _keep_task_registry(monkeypatch):
    """In-process pytest sessions register their local tasks; each test starts with the built-in ones."""
    from stabench import tasks

    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
