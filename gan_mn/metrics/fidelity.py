"""torch-fidelity glue: sample a generator, compare with cached reference statistics.

All metric maths is torch-fidelity's ``calculate_metrics``; this module only decides
what goes in (a uint8 view of the generator, the reference images, a cache key that
identifies them) and names what comes out (``protocol.Protocol``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
import torch_fidelity
from torch import Tensor, nn
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.generative_model_modulewrapper import GenerativeModelModuleWrapper
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from gan_mn.images import to_uint8
from gan_mn.metrics import proxy  # noqa: F401  (registers the built-in cifar10-proxy)
from gan_mn.metrics.protocol import (
    DEFAULT_CACHE_DIR,
    DEFAULT_EXTRACTOR,
    MetricsError,
    MetricSettings,
    Protocol,
)
from gan_mn.models import sampling
from gan_mn.torch_files import UnsafeFileError, check, load


class UInt8Generator(nn.Module):
    """A ``[-1, 1]`` generator seen as torch-fidelity expects: uint8 images."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: Tensor) -> Tensor:
        return to_uint8(self.generator(z))


def balanced_labels(start: int, stop: int, num_classes: int) -> Tensor:
    """The classes of images ``start .. stop - 1`` of a class-balanced sample: image
    ``i`` is of class ``i % num_classes``."""
    return torch.arange(start, stop) % num_classes


@torch.no_grad()
def generate_batches(generator: nn.Module, num: int, seed: int, norm_mode: str = "running",
                     batch_size: int = 100, class_index: int | None = None) -> Iterator[Tensor]:
    """``num`` uint8 images from seeded normal noise, ``batch_size`` at a time ``(b, 3, H,
    W)`` on the CPU: memory bounded by one batch whatever ``num`` is. A class-conditional
    generator makes a class-balanced sample (:func:`balanced_labels`), or only class
    ``class_index`` when given."""
    classes = getattr(generator, "num_classes", 0)
    if class_index is not None and not 0 <= class_index < classes:
        raise MetricsError(f"class {class_index} is not one of the generator's "
                           f"{classes} classes" if classes else
                           "the generator is unconditional: it has no classes to choose")
    if num < 1:
        raise MetricsError(f"the number of images must be positive, got {num}")
    if batch_size < 1:
        raise MetricsError(f"the batch size must be positive, got {batch_size}")
    device = next(generator.parameters()).device
    noise = torch.Generator().manual_seed(seed)
    with sampling(generator, norm_mode) as model:
        for i in range(0, num, batch_size):
            z = torch.randn(min(batch_size, num - i), generator.z_dim, generator=noise)
            labels = []
            if classes:
                labels.append((balanced_labels(i, i + len(z), classes) if class_index is None
                               else torch.full((len(z),), class_index)).to(device))
            yield to_uint8(model(z.to(device), *labels)).cpu()


def generate(generator: nn.Module, num: int, seed: int, norm_mode: str = "running",
             batch_size: int = 100) -> Tensor:
    """``num`` uint8 images ``(num, 3, H, W)`` on the CPU from seeded normal noise
    (class-balanced for a class-conditional generator)."""
    return torch.cat(list(generate_batches(generator, num, seed, norm_mode, batch_size)))


def load_plugin(spec: str | None) -> None:
    """Import a Python file or module (once) so that the feature extractors it registers
    with ``torch_fidelity.register_feature_extractor`` can be named."""
    if not spec:
        return
    before = set(FEATURE_EXTRACTORS_REGISTRY)
    module = _import_plugin(spec)
    # (a plugin imported again under another name may skip registering a name it finds
    # taken, so the test is: it registered a name, or at least defines an extractor)
    if module is not None and not set(FEATURE_EXTRACTORS_REGISTRY) - before and not any(
            isinstance(v, type) and issubclass(v, FeatureExtractorBase)
            and v is not FeatureExtractorBase for v in vars(module).values()):
        raise MetricsError(f"extractor plugin {spec} registered no feature extractor (it "
                           "must call torch_fidelity.register_feature_extractor)")


def _plugin_module_name(path: Path) -> str:
    return "gan_mn_plugin_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]


def _import_plugin(spec: str) -> types.ModuleType | None:
    """Import the plugin; the module if its code ran now (None: imported before)."""
    path = Path(spec).expanduser()
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise MetricsError(f"extractor plugin {path} does not exist")
        name = _plugin_module_name(path)
        if name in sys.modules:
            return None
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise MetricsError(f"extractor plugin {path} cannot be imported as Python")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception:
            del sys.modules[name]
            raise
        return module
    if spec in sys.modules:
        return None
    try:
        return importlib.import_module(spec)
    except ImportError as err:
        raise MetricsError(f"extractor plugin {spec!r} is neither a file nor an "
                           f"importable module ({err})") from err


def check_extractor(name: str) -> None:
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        known = ", ".join(sorted(FEATURE_EXTRACTORS_REGISTRY))
        raise MetricsError(f"unknown feature extractor {name!r} (registered: {known}); "
                           "a custom one needs its extractor plugin")


def check_extractor_weights(name: str, weights_path: str | None) -> None:
    """The extractor's weights load (downloading them on first use, as torch-fidelity
    does): checked at start-up, not at the first evaluation hours later."""
    check_extractor(name)
    if weights_path and not Path(weights_path).expanduser().is_file():
        raise MetricsError(f"feature extractor weights {weights_path} do not exist")
    features = FEATURE_EXTRACTORS_REGISTRY[name].get_provided_features_list()
    try:
        create_feature_extractor(name, [features[0]], cuda=False, verbose=False,
                                 feature_extractor_weights_path=weights_path)
    except (OSError, URLError) as err:  # no network, no such file, refused download
        reason = " ".join(str(getattr(err, "reason", err)).split())
        raise MetricsError(
            f"the weights of feature extractor {name!r} cannot be loaded ({reason}); offline, "
            "pass a weights file (fit: --metrics.feature_extractor_weights_path, evaluate: "
            "--feature-extractor-weights) or register another extractor with a plugin "
            "(--metrics.extractor_plugin / --extractor-plugin)") from None


def reference_cache_name(reference_key: str, extractor: str, weights_path: str | None) -> str:
    """torch-fidelity caches by input name and extractor name only; fold the weights
    file (path, size, mtime) in so that other weights never reuse these statistics."""
    weights = "default"
    if weights_path:
        path = Path(weights_path).expanduser().resolve()
        if not path.is_file():
            raise MetricsError(f"feature extractor weights {path} do not exist")
        stat = path.stat()
        text = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        weights = hashlib.sha1(text.encode()).hexdigest()[:10]
    return f"gan-mn-{reference_key}-{extractor}-w{weights}"


def validate(settings: MetricSettings, reference_size: int) -> tuple[str, ...]:
    """Reject settings torch-fidelity would fail on late or answer wrongly, given the
    reference's size (the rest is checked by MetricSettings itself)."""
    names, kid_subset_size, num_samples = (settings.metrics, settings.kid_subset_size,
                                           settings.num_samples)
    needs_reference = set(names) - {"isc"}
    if needs_reference and reference_size < 2:
        raise MetricsError(f"the reference has {reference_size} images; FID/KID/PRC need >= 2")
    if "kid" in names and kid_subset_size > min(num_samples, reference_size):
        raise MetricsError(f"KID subset size {kid_subset_size} is larger than the sample count "
                           f"({min(num_samples, reference_size)}); lower kid_subset_size")
    return names


def fidelity_kwargs(reference: Dataset, reference_key: str, protocol: Protocol,
                    settings: MetricSettings, cuda: bool) -> dict[str, Any]:
    """torch-fidelity's keyword arguments (input2: the cached reference)."""
    names, weights_path = settings.metrics, settings.feature_extractor_weights_path
    needs_reference = bool(set(names) - {"isc"})
    cache_root = Path(settings.cache_dir).expanduser()
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MetricsError(f"cache directory {cache_root} cannot be created ({err})") from err
    return dict(
        input2=reference if needs_reference else None,
        input2_cache_name=reference_cache_name(reference_key, protocol.feature_extractor,
                                               weights_path) if needs_reference else None,
        cache_root=str(cache_root), cache=True, cuda=cuda,
        batch_size=min(settings.batch_size, protocol.num_samples),
        feature_extractor=protocol.feature_extractor,
        feature_extractor_weights_path=weights_path, rng_seed=protocol.seed,
        kid_subset_size=settings.kid_subset_size, verbose=False, **{m: True for m in names})


def compute_metrics(generator: nn.Module, z_dim: int, reference: Dataset, reference_key: str,
                    protocol: Protocol, settings: MetricSettings,
                    classes: tuple[Tensor, tuple[str, ...]] | None = None) -> dict[str, float]:
    """Metric values of ``generator`` (named by ``protocol``), via torch-fidelity.

    ``norm_mode='running'`` samples in eval mode (running statistics), ``'batch'`` from
    a copy in train mode, so the generator's own statistics are never touched. The
    generator's mode is restored. Reference statistics are cached under
    ``reference_key`` + extractor + weights in ``cache_dir``. A class-conditional
    generator needs ``classes``, the reference's labels and class names, and gets the
    class-aware metrics too (:mod:`gan_mn.metrics.classes`)."""
    validate(settings, len(reference))
    check_extractor(protocol.feature_extractor)
    if getattr(generator, "num_classes", 0):
        from gan_mn.metrics.classes import compute_class_metrics

        if classes is None:
            raise MetricsError("a class-conditional generator is scored against labelled "
                               "reference images; this reference has no labels")
        return compute_class_metrics(generator, reference, *classes, reference_key,
                                     protocol, settings)
    device = next(generator.parameters()).device
    kwargs = fidelity_kwargs(reference, reference_key, protocol, settings,
                             cuda=device.type == "cuda")
    check_cache(kwargs)
    try:
        with sampling(generator, protocol.norm_mode) as model, warnings.catch_warnings():
            # torch-fidelity's reference loader asks for 4 workers whatever the machine;
            # PyTorch warns about it on small machines, which no user can act on.
            warnings.filterwarnings("ignore", message="This DataLoader will create")
            wrapper = GenerativeModelModuleWrapper(UInt8Generator(model), z_dim, "normal", 0,
                                                   make_eval=False)
            result = torch_fidelity.calculate_metrics(
                input1=wrapper, input1_model_num_samples=protocol.num_samples, **kwargs)
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        cached = _cache_files(kwargs)
        if not cached or not _unreadable(cached):
            raise
        raise MetricsError(f"cached reference statistics cannot be read: "
                           f"{', '.join(str(p) for p in _unreadable(cached))}; delete them "
                           "and they are recomputed") from err
    return numbers(protocol, result)


def check_cache(kwargs: dict[str, Any]) -> None:
    """The reference's cache files are data, not code: torch-fidelity loads them with
    ``weights_only=False``, so each is scanned first (``UnsafeFileError``)."""
    for path in _cache_files(kwargs):
        try:
            check(path, "metrics cache file")
        except UnsafeFileError:
            raise
        except Exception:  # unreadable: torch-fidelity's load fails, worded by the caller
            pass


def _cache_files(kwargs: dict[str, Any]) -> list[Path]:
    """The reference's cached statistics and features, as torch-fidelity names them."""
    name = kwargs["input2_cache_name"]
    return sorted(Path(kwargs["cache_root"]).glob(f"{name}-*.pt")) if name else []


def _unreadable(paths: list[Path]) -> list[Path]:
    """The cache files among ``paths`` that torch cannot load (truncated, corrupt)."""
    bad = []
    for path in paths:
        try:
            load(path, "metrics cache file")
        except Exception:  # any failure to load is what we report
            bad.append(path)
    return bad


def numbers(protocol: Protocol, result: dict[str, Any]) -> dict[str, float]:
    """torch-fidelity's result as our metric names -> floats."""
    return {protocol.key(k): float(v) for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


__all__ = [
    "DEFAULT_CACHE_DIR",
    "DEFAULT_EXTRACTOR",
    "MetricsError",
    "UInt8Generator",
    "check_extractor",
    "check_extractor_weights",
    "compute_metrics",
    "fidelity_kwargs",
    "generate",
    "load_plugin",
    "numbers",
    "reference_cache_name",
]
