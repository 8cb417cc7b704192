"""SNGAN's standard CNN and ResNet: shapes and parameter counts against the papers'
architectures, spectral norm where it belongs, norms per layer, K=1 MN as BN, and the
BatchNorm -> MN converter."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gan_mn.labels import default_label
from gan_mn.models import FAMILIES, build_models
from gan_mn.norm import MixtureNorm2d

DCGAN_DEFAULTS = ((512, 256, 128), (64, 128, 256))  # "the family's own widths"


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _build(arch: str, g_norm: object = "bn", d_norm: object = "sn", **norm_kwargs: object
           ) -> tuple[nn.Module, nn.Module]:
    return build_models(arch, 128, *DCGAN_DEFAULTS, g_norm, d_norm, norm_kwargs or None, 32)


def test_sngan_standard_cnn_matches_table_3() -> None:
    g, d = _build("sngan")
    z = g.sample_latent(5)
    assert z.shape == (5, 128)
    images = g(z)
    assert images.shape == (5, 3, 32, 32) and images.abs().max() <= 1
    assert d(images).shape == (5,)
    # G: dense 128 -> 4x4x512; deconv 4x4/2 to 256, 128, 64, each with BN; conv 3x3 to RGB
    expected_g = (128 * 4 * 4 * 512 + 4 * 4 * 512) + sum(
        _conv(a, b, 4) + 2 * b for a, b in ((512, 256), (256, 128), (128, 64))) + _conv(64, 3, 3)
    # D: 3x3/1 64, 4x4/2 64, 3x3/1 128, 4x4/2 128, 3x3/1 256, 4x4/2 256, 3x3/1 512; dense
    widths = [3, 64, 64, 128, 128, 256, 256, 512]
    expected_d = sum(_conv(a, b, 3 if i % 2 == 0 else 4)
                     for i, (a, b) in enumerate(itertools.pairwise(widths)))
    expected_d += 512 * 4 * 4 + 1
    assert (_count(g), _count(d)) == (expected_g, expected_d) == (3_812_355, 2_935_873)
    assert [m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)] == [0.1] * 7


def test_sngan_resnet_matches_table_4() -> None:
    g, d = _build("resnet")
    images = g(g.sample_latent(3))
    assert images.shape == (3, 3, 32, 32) and images.abs().max() <= 1
    assert d(images).shape == (3,)
    block_g = 2 * 256 + _conv(256, 256, 3) + 2 * 256 + _conv(256, 256, 3) + _conv(256, 256, 1)
    expected_g = (128 * 4096 + 4096) + 3 * block_g + 2 * 256 + _conv(256, 3, 3)
    first = _conv(3, 128, 3) + _conv(128, 128, 3) + _conv(3, 128, 1)
    down = 2 * _conv(128, 128, 3) + _conv(128, 128, 1)
    plain = 2 * _conv(128, 128, 3)
    expected_d = first + down + 2 * plain + 128 + 1
    assert (_count(g), _count(d)) == (expected_g, expected_d) == (4_276_739, 1_053_825)
    # the ResNet D pools twice: 32 -> 8, then sums over positions
    feats = d.blocks(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 128, 8, 8)


@pytest.mark.parametrize("arch", FAMILIES.names())
def test_spectral_norm_on_every_layer_of_an_sn_discriminator(arch: str) -> None:
    _, d = _build(arch)
    weighted = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert weighted and all(parametrize.is_parametrized(m, "weight") for m in weighted)
    assert not [m for m in d.modules() if isinstance(m, (nn.BatchNorm2d, MixtureNorm2d))]
    # its power-iteration vectors are in the state dict (so in checkpoints)
    assert any(k.endswith("parametrizations.weight.0._u") for k in d.state_dict())


def test_norms_per_layer_and_spectral_norm_options() -> None:
    g, d = _build("sngan", ["mn", "bn", "none"], ["sn", "bn", "sn", "none", "sn", "sn", "sn"],
                  mn={"num_components": 2}, sn={"n_power_iterations": 2})
    assert [type(m) for m in g.net if isinstance(m, (nn.BatchNorm2d, MixtureNorm2d,
                                                     nn.Identity))] == \
        [MixtureNorm2d, nn.BatchNorm2d, nn.Identity]
    convs = [m for m in d.net if isinstance(m, nn.Conv2d)]
    assert [parametrize.is_parametrized(m, "weight") for m in convs] == \
        [True, False, True, False, True, True, True]
    assert not parametrize.is_parametrized(d.head, "weight")  # D is not SN throughout
    assert convs[0].parametrizations.weight[0].n_power_iterations == 2
    g, _ = _build("resnet", ["mn", "mn", "mn", "bn"])
    assert [type(b.norm1) for b in g.blocks] == [MixtureNorm2d] * 3
    assert isinstance(g.norm, nn.BatchNorm2d)


@pytest.mark.parametrize(("arch", "size", "message"), [
    ("sngan", 64, "image_size must be one of [32] for the sngan models"),
    ("resnet", 48, "image_size must be one of [32] for the resnet models"),
    ("vgg", 32, "arch must be one of dcgan, sngan, resnet")])
def test_unsupported_sizes_and_families_are_refused(arch: str, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_models(arch, 128, *DCGAN_DEFAULTS, "bn", "sn", None, size)


def test_bad_spectral_norm_options_are_refused() -> None:
    with pytest.raises(ValueError, match="n_power_iterations must be a positive integer"):
        _build("sngan", sn={"n_power_iterations": 0})
    with pytest.raises(ValueError, match="invalid argument for norm 'sn'"):
        _build("sngan", sn={"dim": 1})


@pytest.mark.parametrize("arch", ["sngan", "resnet"])
def test_one_component_mn_is_bn_in_these_generators(arch: str) -> None:
    torch.manual_seed(3)
    bn, _ = _build(arch, "bn")
    torch.manual_seed(3)
    mn, _ = _build(arch, "mn", mn={"num_components": 1, "kernels": "eager"})
    mn.load_state_dict({k: v.reshape(mn.state_dict()[k].shape) if k in mn.state_dict() else v
                        for k, v in bn.state_dict().items()}, strict=False)
    z = torch.randn(6, 128)
    for mode in ("train", "eval"):
        for g in (bn, mn):
            g.train(mode == "train")
        torch.testing.assert_close(mn(z), bn(z), atol=2e-5, rtol=1e-4)


def test_labels_name_the_family() -> None:
    assert default_label("bn", "sn", arch="sngan") == "sngan-bn"
    assert default_label("mn", "sn", arch="sngan") == "sngan-mn-g"
    assert default_label("mn", "sn", {"mn": {"num_components": 5}}, "resnet") == "resnet-mn-g-k5"
    assert default_label("bn", "bn", arch="resnet") == "resnet-bn"  # D with BN: both named
    assert default_label("mn", "bn") == "mn-g"  # the DCGAN labels do not change
    assert default_label("bn", "sn") == "g-bn_d-sn"


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.skip = nn.BatchNorm2d(4, momentum=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.skip(x))


def test_convert_batchnorm_replaces_nested_layers_keeping_their_state() -> None:
    model = nn.Sequential(nn.BatchNorm2d(4), _Block())
    x = torch.randn(8, 4, 5, 5) * 2 + 1
    model(x)  # running statistics that are not the initial ones
    with torch.no_grad():
        model[1].body[1].weight.uniform_(0.5, 1.5)
        model[1].body[1].bias.uniform_(-1, 1)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    outputs = {}
    for mode in ("eval", "train"):
        model.train(mode == "train")
        outputs[mode] = model(x)
    model.load_state_dict(reference)
    converted = MixtureNorm2d.convert_batchnorm(model, num_components=1, kernels="eager")
    assert converted is model
    layers = [m for m in model.modules() if isinstance(m, MixtureNorm2d)]
    assert len(layers) == 3 and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert layers[2].momentum is None  # (the skip layer's) the BN layer's momentum came along
    torch.testing.assert_close(layers[1].weight, reference["1.body.1.weight"])
    torch.testing.assert_close(layers[1].running_var[0], reference["1.body.1.running_var"])
    for mode in ("eval", "train"):
        model.train(mode == "train")
        torch.testing.assert_close(model(x), outputs[mode], atol=1e-5, rtol=1e-5)
    mixture = MixtureNorm2d.convert_batchnorm(nn.BatchNorm2d(6), num_components=3)
    assert isinstance(mixture, MixtureNorm2d) and mixture.running_mean.shape == (3, 6)


def test_convert_batchnorm_refuses_what_mn_cannot_hold() -> None:
    with pytest.raises(ValueError, match="track_running_stats=False"):
        MixtureNorm2d.convert_batchnorm(nn.Sequential(nn.BatchNorm2d(3,
                                                                     track_running_stats=False)))
