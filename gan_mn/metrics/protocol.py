"""The one place that knows metric names: what a number means is in its name.

``fid10k_train`` is FID of 10,000 samples against the training images with Inception
(torch-fidelity's ``inception-v3-compat``); any other extractor is appended
(``fid2k_train_cifar10-proxy``), as is sampling with batch statistics (``_batchstats``),
so a proxy or differently sampled number can never pass for the standard one.
Class-conditional generators add ``ifid2k_train...`` (intra-class FID: the mean over
classes of each class's FID against that class's images) and ``cacc2k_cifar10-proxy``
(class accuracy by the built-in classifier).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from gan_mn.errors import UserError

METRICS = ("isc", "fid", "kid", "prc")
DEFAULT_EXTRACTOR = "inception-v3-compat"
DEFAULT_CACHE_DIR = "~/.cache/gan-mn/fidelity"
DEFAULT_SEED = 2020
CLASSIFIER = "cifar10-proxy"  # the built-in classifier behind class accuracy
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
    seed: int = DEFAULT_SEED

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
            "intra_class_fid": f"ifid{n}{ref}",
        }.get(name, f"{name}{n}{ref}")
        return base + self.suffix()

    def class_accuracy_key(self) -> str:
        """Class accuracy's name: always the built-in CIFAR-10 classifier's
        (``cacc2k_cifar10-proxy``), whatever the protocol's extractor."""
        batch = "_batchstats" if self.norm_mode == "batch" else ""
        return f"cacc{count_tag(self.num_samples)}_{CLASSIFIER}{batch}"

    def fid_key(self) -> str:
        return self.key("frechet_inception_distance")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MetricsError(UserError):
    """Metric settings that cannot work, with a message meant for the user as is."""


@dataclass(frozen=True)
class MetricSettings:
    """How metrics are computed: the one record of their settings and defaults, shared by
    ``FidelityCallback``, ``evaluate`` (its flags come from it) and the sharded path (as
    torch-fidelity keeps its own in ``defaults.py``)."""

    num_samples: int = 10000  # generated images per evaluation
    metrics: tuple[str, ...] = ("isc", "fid")  # any of isc, fid, kid, prc
    feature_extractor: str = DEFAULT_EXTRACTOR  # a torch-fidelity extractor name
    feature_extractor_weights_path: str | None = None  # local weights (offline machines)
    extractor_plugin: str | None = None  # Python file or module registering an extractor
    cache_dir: str = DEFAULT_CACHE_DIR  # reference statistics, kept between runs
    norm_mode: NormMode = "running"  # sample with running (eval) or batch statistics
    batch_size: int = 100  # images per generator / extractor batch
    seed: int = DEFAULT_SEED  # noise seed: the same at every evaluation, so curves compare
    kid_subset_size: int = 1000  # torch-fidelity's KID subset size

    def __post_init__(self) -> None:
        if self.num_samples < 2:
            raise MetricsError(f"metrics need at least 2 samples, got {self.num_samples}")
        if self.batch_size < 1:
            raise MetricsError(f"batch_size must be positive, got {self.batch_size}")
        from gan_mn.models.eval_mode import NORM_MODES  # (torch: not at a parser's import)

        if self.norm_mode not in NORM_MODES:
            raise MetricsError(f"norm mode must be one of {NORM_MODES}, got {self.norm_mode!r}")
        try:
            object.__setattr__(self, "metrics", parse_metrics(self.metrics))
        except UserError as err:
            raise MetricsError(str(err)) from None

    def protocol(self, reference: str) -> Protocol:
        """What the values measured with these settings against ``reference`` are called."""
        return Protocol(self.num_samples, reference, self.feature_extractor, self.norm_mode,
                        self.seed)


def parse_metrics(metrics: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"isc,fid"`` or ``["isc", "fid"]`` -> validated, de-duplicated, in given order."""
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    names = [m for m in dict.fromkeys(names) if m]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UserError(f"metrics must be a non-empty subset of {', '.join(METRICS)}, got "
                         f"{', '.join(bad) or 'nothing'}")
    return tuple(names)
