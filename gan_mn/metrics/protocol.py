"""The one place that knows metric names: what a number means is in its name.

``fid10k_train`` is FID of 10,000 samples against the training images with Inception
(torch-fidelity's ``inception-v3-compat``); any other extractor is appended
(``fid2k_train_cifar10-proxy``), as is sampling with batch statistics (``_batchstats``),
so a proxy or differently sampled number can never pass for the standard one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from gan_mn.errors import UserError

METRICS = ("isc", "fid", "kid", "prc")
DEFAULT_EXTRACTOR = "inception-v3-compat"
NormMode = Literal["running", "batch"]


def count_tag(n: int) -> str:
    """``10000 -> '10k'``, ``2500 -> '2500'``, ``500 -> '500'``."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


@dataclass(frozen=True)
class Protocol:
    """How a set of metric values was measured."""

    num_samples: int
    reference: str  # e.g. "train", "test", or an image folder's name
    feature_extractor: str = DEFAULT_EXTRACTOR
    norm_mode: NormMode = "running"
    seed: int = 2020

    def suffix(self) -> str:
        default = self.feature_extractor == DEFAULT_EXTRACTOR
        extractor = "" if default else f"_{self.feature_extractor}"
        return extractor + ("_batchstats" if self.norm_mode == "batch" else "")

    def key(self, name: str) -> str:
        """Logged name of a torch-fidelity result (``frechet_inception_distance``, ...)."""
        n = count_tag(self.num_samples)
        ref = f"_{self.reference}"
        base = {
            "frechet_inception_distance": f"fid{n}{ref}",
            "inception_score_mean": f"isc{n}",
            "inception_score_std": f"isc{n}_std",
            "kernel_inception_distance_mean": f"kid{n}{ref}",
            "kernel_inception_distance_std": f"kid{n}{ref}_std",
            "precision": f"prc{n}{ref}_precision",
            "recall": f"prc{n}{ref}_recall",
            "f_score": f"prc{n}{ref}_fscore",
        }.get(name, f"{name}{n}{ref}")
        return base + self.suffix()

    def fid_key(self) -> str:
        return self.key("frechet_inception_distance")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_metrics(metrics: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"isc,fid"`` or ``["isc", "fid"]`` -> validated, de-duplicated, in given order."""
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    names = [m for m in dict.fromkeys(names) if m]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UserError(f"metrics must be a non-empty subset of {', '.join(METRICS)}, got "
                         f"{', '.join(bad) or 'nothing'}")
    return tuple(names)
