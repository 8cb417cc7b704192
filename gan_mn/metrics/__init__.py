"""Metrics with torch-fidelity: protocol names, reference cache, the callback."""

from gan_mn.metrics.callback import FidelityCallback
from gan_mn.metrics.fidelity import (
    UInt8Generator,
    compute_metrics,
    load_plugin,
    reference_cache_name,
)
from gan_mn.metrics.protocol import (
    DEFAULT_CACHE_DIR,
    DEFAULT_EXTRACTOR,
    METRICS,
    MetricsError,
    MetricSettings,
    Protocol,
    parse_metrics,
)

__all__ = ["DEFAULT_CACHE_DIR", "DEFAULT_EXTRACTOR", "METRICS", "FidelityCallback",
           "MetricSettings", "MetricsError", "Protocol", "UInt8Generator", "compute_metrics",
           "load_plugin", "parse_metrics", "reference_cache_name"]
