"""A separate process for tests/test_store.py: concurrent writers, racing claimants, crash victims.

Usage: python _store_worker.py MODE STORE ARGS...   (runs come from a JSON export file)

  put     STORE RUNS GO                put every run, print how many were added
  compute STORE RUNS GO LOG SLEEP      get_or_compute every run; the compute appends
                                       "<pid> <key>" to LOG, then sleeps SLEEP seconds
  hammer  STORE RUNS READY             put copies of the first run in a tight loop forever
  hold    STORE KEY READY              hold the claim on KEY forever
  turns   STORE KEY GO LOG N           take the claim on KEY N times; inside, append "in <pid>"
                                       and then "out <pid>" to LOG

GO ("now" for a lone worker) lines the processes up so they really race: each creates GO.<pid>.ready and waits for the
file GO, which the test creates once all are ready (a start time was missed by a worker that
started late on a loaded machine, which then found the work done).  READY is a file created
once the worker is under way, so the test knows when to kill it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import types
from pathlib import Path

# The store needs only the stdlib, but stabench/__init__ pulls in transformers, datasets and
# torch (seconds per process, minutes for a handful on two cores): load the package's
# modules without running its __init__.
_package = types.ModuleType("stabench")
_package.__path__ = [str(Path(__file__).resolve().parents[1] / "stabench")]
sys.modules["stabench"] = _package

from stabench.result import RunResult  # noqa: E402
from stabench.store import Store  # noqa: E402


def _runs(path: str) -> list[RunResult]:
    return [RunResult.from_dict(record) for record in json.loads(Path(path).read_text())]


def _wait_for_go(go: str) -> None:
    if go == "now":  # a lone worker
        return
    Path(f"{go}.{os.getpid()}.ready").touch()
    while not Path(go).exists():
        time.sleep(0.001)


def put(store_path: str, runs: str, go: str) -> None:
    results = _runs(runs)
    _wait_for_go(go)  # before opening: creating the store races too
    with Store(store_path) as store:
        print(sum(store.put(result) for result in results))


def compute(store_path: str, runs: str, go: str, log: str, sleep: str) -> None:
    results = _runs(runs)
    _wait_for_go(go)
    with Store(store_path) as store:
        for result in results:
            _compute_one(store, result, log, float(sleep))


def _compute_one(store: Store, result: RunResult, log: str, sleep: float) -> None:
    def train() -> RunResult:
        _append(log, f"{os.getpid()} {result.key}")
        time.sleep(sleep)
        return result

    store.get_or_compute(result.key, train)


def hammer(store_path: str, runs: str, ready: str) -> None:
    template = _runs(runs)[0]
    with Store(store_path) as store:
        Path(ready).touch()
        index = 0
        while True:
            store.put(dataclasses.replace(template, key=f"hammer-{index:06d}", seed=index))
            index += 1


def hold(store_path: str, key: str, ready: str) -> None:
    with Store(store_path) as store, store.lock(key):
        Path(ready).touch()
        time.sleep(600)


def turns(store_path: str, key: str, go: str, log: str, n: str) -> None:
    with Store(store_path) as store:
        _wait_for_go(go)
        for _ in range(int(n)):
            with store.lock(key):
                _append(log, f"in {os.getpid()}")
                time.sleep(0.002)  # long enough for another process to get in, were the lock broken
                _append(log, f"out {os.getpid()}")


def _append(log: str, line: str) -> None:
    """One write() on an O_APPEND descriptor: lines from racing processes never mix."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{line}\n".encode())
    os.close(fd)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"put": put, "compute": compute, "hammer": hammer, "hold": hold, "turns": turns}[mode](*args)
