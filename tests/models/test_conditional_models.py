"""Class-conditional models of every family: the generator takes ``(z, y)`` through
conditional BN/MN, the discriminator adds a projection term (spectral norm on its
embedding when the discriminator has it); ``num_classes=0`` keeps the unconditional
models; misuse is one ``ValueError``."""

from __future__ import annotations

import pytest
import torch

from gan_mn.models import build_models
from gan_mn.norm import ConditionalBatchNorm2d, ConditionalMixtureNorm2d, ConditionalNorm2d

FAMILIES = [("dcgan", 32, "bn"), ("dcgan", 64, "bn"), ("sngan", 32, "sn"), ("resnet", 32, "sn")]
SMALL = {"dcgan": ((16, 8, 8), (8, 8, 16)), "sngan": ((16, 8, 8, 8), (8,) * 7),
         "resnet": ((16, 16, 16, 16), (16,) * 4)}
MN = {"mn": {"kernels": "eager"}}


def _models(arch: str, size: int, g_norm: str, d_norm: str, classes: int
            ) -> tuple[torch.nn.Module, torch.nn.Module]:
    g, d = SMALL[arch]
    if arch == "dcgan" and size == 64:
        g, d = (*g, 8), (*d, 16)
    torch.manual_seed(0)
    return build_models(arch, 8, g, d, g_norm, d_norm, MN, size, num_classes=classes)


@pytest.mark.parametrize(("arch", "size", "d_norm"), FAMILIES)
@pytest.mark.parametrize("g_norm", ["bn", "mn"])
def test_every_family_is_class_conditional(arch: str, size: int, d_norm: str,
                                           g_norm: str) -> None:
    """Each norm of G is the conditional kind of its norm; G and D take labels; the
    gradient of D's output reaches the projection's rows of the classes in the batch and
    no others (with spectral norm on it, every row: they share its norm), and G's
    reaches the class embeddings of those classes only."""
    generator, discriminator = _models(arch, size, g_norm, d_norm, classes=5)
    norms = [m for m in generator.modules() if isinstance(m, ConditionalNorm2d)]
    kind = ConditionalBatchNorm2d if g_norm == "bn" else ConditionalMixtureNorm2d
    assert norms and all(type(m) is kind for m in norms)
    y = torch.tensor([0, 3, 3, 1])
    images = generator(torch.randn(4, 8), y)
    assert images.shape == (4, 3, size, size)
    discriminator(images, y).sum().backward()
    embed = discriminator.projection.embed
    if d_norm == "sn":  # every row then shares the spectral norm: all take a gradient
        assert embed.parametrizations.weight.original.grad.abs().sum(1).min() > 0
    else:
        assert embed.weight.grad.abs().sum(1).nonzero().flatten().tolist() == [0, 1, 3]
    for norm in norms:
        assert norm.embedding_beta.weight.grad.abs().sum(1).nonzero().flatten().tolist() \
            == [0, 1, 3]


@pytest.mark.parametrize(("arch", "size", "d_norm"), FAMILIES)
def test_no_classes_builds_the_unconditional_models(arch: str, size: int,
                                                    d_norm: str) -> None:
    """``num_classes=0``: the same parameters, buffers and outputs as the models built
    without the argument."""
    g0, d0 = _models(arch, size, "mn", d_norm, classes=0)
    g, d = build_models(arch, 8, *_sizes(arch, size), "mn", d_norm, MN, size)
    for a, b in ((g0, g), (d0, d)):
        assert a.state_dict().keys() == b.state_dict().keys()
        assert not any(isinstance(m, ConditionalNorm2d) for m in a.modules())
    assert getattr(d0, "projection", None) is None
    z = torch.randn(4, 8)
    assert d0(g0(z)).shape == (4,)


def _sizes(arch: str, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    g, d = SMALL[arch]
    return ((*g, 8), (*d, 16)) if arch == "dcgan" and size == 64 else (g, d)


def test_labels_are_required_by_conditional_models_and_refused_by_others() -> None:
    generator, discriminator = _models("dcgan", 32, "bn", "bn", classes=3)
    plain_g, plain_d = _models("dcgan", 32, "bn", "bn", classes=0)
    z, x, y = torch.randn(2, 8), torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    with pytest.raises(ValueError, match=r"class-conditional .* call it with labels"):
        generator(z)
    with pytest.raises(ValueError, match="class-conditional: call it with labels"):
        discriminator(x)
    with pytest.raises(ValueError, match="unconditional: it takes no labels"):
        plain_g(z, y)
    with pytest.raises(ValueError, match="unconditional: it takes no labels"):
        plain_d(x, y)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got 3"):
        generator(z, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="takes the class through its norm layers: give it "
                                         "bn or mn, got sn"):
        build_models("sngan", 8, SMALL["sngan"][0], SMALL["sngan"][1], "sn", "sn", None, 32,
                     num_classes=3)
    with pytest.raises(ValueError, match=r"num_classes must be 0 .* got -1"):
        build_models("dcgan", 8, *SMALL["dcgan"], "bn", "bn", None, 32, num_classes=-1)
    with pytest.raises(ValueError, match=r"conditional bn: .* takes no affine option"):
        build_models("dcgan", 8, *SMALL["dcgan"], "bn", "bn", {"bn": {"affine": False}}, 32,
                     num_classes=3)


def test_labels_are_sampled_uniformly_from_the_global_seed() -> None:
    generator, _ = _models("dcgan", 32, "bn", "bn", classes=4)
    torch.manual_seed(1)
    first = generator.sample_labels(4000)
    torch.manual_seed(1)
    assert torch.equal(first, generator.sample_labels(4000))
    counts = torch.bincount(first, minlength=4)
    assert counts.min() > 900 and counts.max() < 1100
    assert _models("dcgan", 32, "bn", "bn", classes=0)[0].sample_labels(3) is None
