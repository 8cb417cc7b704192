"""Fixtures of the norm tests."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture
def interpret() -> None:
    """Triton kernels on CPU tensors need Triton's interpreter (set by tests/conftest.py)."""
    if not torch.cuda.is_available():
        assert os.environ.get("TRITON_INTERPRET") == "1"
