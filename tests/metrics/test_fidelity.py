"""torch-fidelity glue with a tiny offline extractor: FID sanity, caching, protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch_fidelity
from torch import Tensor, nn

from gan_mn.data import UInt8Images
from gan_mn.metrics import MetricsError, MetricSettings, Protocol, compute_metrics, load_plugin
from gan_mn.metrics.fidelity import generate
from gan_mn.models import DCGANGenerator
from tests.helpers.fakes import TINY_EXTRACTOR, smooth_images

EXTRACTOR = "tiny-test"


@pytest.fixture(scope="module")
def images() -> Tensor:
    load_plugin(TINY_EXTRACTOR)
    return torch.from_numpy(smooth_images(400, seed=3)).permute(0, 3, 1, 2).contiguous()


class Replay(nn.Module):
    """A 'generator' that returns training images in order, scaled to [-1, 1]."""

    def __init__(self, images: Tensor) -> None:
        super().__init__()
        self.register_buffer("images", images.float() / 127.5 - 1)
        self.anchor = nn.Parameter(torch.zeros(()))  # so it has a device
        self.z_dim, self.cursor = 4, 0

    def forward(self, z: Tensor) -> Tensor:
        idx = torch.arange(self.cursor, self.cursor + z.shape[0]) % self.images.shape[0]
        self.cursor += z.shape[0]
        return self.images[idx]


class Noise(Replay):
    def forward(self, z: Tensor) -> Tensor:
        return torch.rand(z.shape[0], 3, 32, 32) * 2 - 1


def score(gen: nn.Module, images: Tensor, tmp_path: Path, **kwargs) -> dict[str, float]:
    settings = MetricSettings(num_samples=kwargs.pop("num", 400),
                              metrics=kwargs.pop("metrics", ("isc", "fid")),
                              feature_extractor=EXTRACTOR, cache_dir=str(tmp_path),
                              norm_mode=kwargs.pop("mode", "running"), **kwargs)
    return compute_metrics(gen, 4, UInt8Images(images), "fake-ref",
                           settings.protocol("train"), settings)


def test_dataset_against_itself_has_fid_near_zero(images: Tensor, tmp_path: Path) -> None:
    values = score(Replay(images), images, tmp_path)
    assert set(values) == {"fid400_train_tiny-test", "isc400_tiny-test", "isc400_std_tiny-test"}
    assert abs(values["fid400_train_tiny-test"]) < 1e-3
    # torch-fidelity's own computation on the same two inputs agrees
    same = UInt8Images(images)
    direct = torch_fidelity.calculate_metrics(input1=same, input2=same, fid=True, cuda=False,
                                              feature_extractor=EXTRACTOR, verbose=False,
                                              cache=False)
    assert abs(direct["frechet_inception_distance"]) < 1e-3


def test_noise_scores_far_worse_than_replay(images: Tensor, tmp_path: Path) -> None:
    replay = score(Replay(images), images, tmp_path)["fid400_train_tiny-test"]
    noise = score(Noise(images), images, tmp_path)["fid400_train_tiny-test"]
    assert noise > 100 * max(replay, 1e-3) and noise > 1.0


def test_reference_statistics_are_cached(images: Tensor, tmp_path: Path) -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    cls = FEATURE_EXTRACTORS_REGISTRY[EXTRACTOR]  # loaded from the plugin file
    cls.calls = 0
    first = score(Replay(images), images, tmp_path, num=100)
    cold = cls.calls
    cls.calls = 0
    second = score(Replay(images), images, tmp_path, num=100)
    assert cold == 100 + 400 and cls.calls == 100  # the 400 reference images: from cache
    assert first == second
    assert any(tmp_path.iterdir())


@pytest.mark.slow  # compiles with Inductor
def test_batch_mode_leaves_the_generator_untouched(tmp_path: Path, images: Tensor) -> None:
    gen = DCGANGenerator(z_dim=4, channels=(8, 8, 8), norm="mn")
    gen.train()
    gen(torch.randn(16, 4))
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    values = score(gen, images, tmp_path, num=50, mode="batch")
    assert all(k.endswith("_batchstats") for k in values)
    assert all(torch.equal(state[k], v) for k, v in gen.state_dict().items())
    assert gen.training
    gen.eval()
    generate(gen, 10, seed=0, norm_mode="batch")
    assert not gen.training


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num": 1}, "at least 2 samples"),
    ({"num": 50, "metrics": ("kid",), "kid_subset_size": 100}, "KID subset size 100"),
    ({"metrics": ("fid", "ppl")}, "subset of"),
    ({"mode": "train"}, "norm mode"),
])
def test_invalid_settings_are_clear_errors(images: Tensor, tmp_path: Path, kwargs, match) -> None:
    with pytest.raises(MetricsError, match=match):
        score(Replay(images), images, tmp_path, **kwargs)


def test_unknown_extractor_and_plugin(tmp_path: Path) -> None:
    from gan_mn.metrics.fidelity import check_extractor

    with pytest.raises(MetricsError, match="unknown feature extractor"):
        check_extractor("no-such-net")
    with pytest.raises(MetricsError, match="does not exist"):
        load_plugin(str(tmp_path / "missing.py"))
    with pytest.raises(MetricsError, match="neither a file"):
        load_plugin("no_such_module_xyz")


def test_a_plugin_that_registers_nothing_says_so(tmp_path: Path) -> None:
    plugin = tmp_path / "empty_plugin.py"
    plugin.write_text("X = 1  # forgot torch_fidelity.register_feature_extractor\n")
    with pytest.raises(MetricsError, match="registered no feature extractor"):
        load_plugin(str(plugin))


def test_a_corrupt_reference_cache_is_named(images: Tensor, tmp_path: Path) -> None:
    score(Replay(images), images, tmp_path, num=50)
    cached = sorted(tmp_path.glob("*.pt"))
    assert cached
    for path in cached:
        path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.raises(MetricsError, match=r"cached reference statistics cannot be read: "
                                           r".*delete them"):
        score(Replay(images), images, tmp_path, num=50)


def test_protocol_names_say_what_was_measured() -> None:
    p = Protocol(10000, "train")
    assert p.fid_key() == "fid10k_train" and p.key("inception_score_mean") == "isc10k"
    assert Protocol(2000, "test", "cifar10-proxy").fid_key() == "fid2k_test_cifar10-proxy"
    assert Protocol(500, "train", norm_mode="batch").fid_key() == "fid500_train_batchstats"
