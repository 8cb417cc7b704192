"""Metrics with torch-fidelity: protocol names, reference cache, the callback.

The protocol (names, settings) imports neither torch nor Lightning; the callback and the
torch-fidelity wrappers load on first use, so a command's ``--help`` and its argument
mistakes answer in a second (PEP 562 module ``__getattr__``)."""

from __future__ import annotations

import importlib
from typing import Any

from gan_mn.metrics.protocol import (
    DEFAULT_CACHE_DIR,
    DEFAULT_EXTRACTOR,
    METRICS,
    MetricsError,
    MetricSettings,
    Protocol,
    parse_metrics,
)

_LAZY = {"FidelityCallback": "fidelity_callback", "UInt8Generator": "fidelity",
         "compute_metrics": "fidelity", "load_plugin": "fidelity",
         "reference_cache_name": "fidelity"}

__all__ = ["DEFAULT_CACHE_DIR", "DEFAULT_EXTRACTOR", "METRICS", "FidelityCallback",
           "MetricSettings", "MetricsError", "Protocol", "UInt8Generator", "compute_metrics",
           "load_plugin", "parse_metrics", "reference_cache_name"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
