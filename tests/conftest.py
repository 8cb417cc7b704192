"""Shared test set-up: each pytest-xdist worker's share of the cores, Triton's CPU
interpreter, deterministic seeds."""

from __future__ import annotations

import os
import sys

import pytest

# pytest-xdist runs one worker per core (pyproject's `-n auto`). Each worker's torch, and
# the runs its tests start, get that worker's share of the cores: with every worker using
# all of them, their OpenMP threads spin against each other (measured on 2 cores: 188 s ->
# 167 s of CPU time for the suite). Run alone (`-n 0`), tests use every core.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (_cores or 1) // _WORKERS)))

# Inductor compiles in this process rather than in a pool of compile workers of its own:
# on a small machine running the tests in parallel (pytest-xdist) that pool only competes
# for the same cores (measured: 149 s -> 128 s for the suite on 2 cores).
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch  # noqa: E402  (after the settings above, which it reads when loaded)

if _WORKERS > 1:
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Triton decorates its own library when it is first imported, so its CPU interpreter (the
# Triton kernels' tests, on CPU tensors) is chosen here, before any conftest or test
# module imports it (Lightning imports it).
if not torch.cuda.is_available():
    assert "triton" not in sys.modules, "triton was imported before tests/conftest.py"
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
