"""DCGAN shapes and per-layer norm selection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_mn.models import DCGANDiscriminator, DCGANGenerator
from gan_mn.norm import MixtureNorm2d


def _norm_types(model: nn.Module) -> list[type]:
    return [type(m) for m in model.net if isinstance(m, (nn.BatchNorm2d, MixtureNorm2d,
                                                         nn.Identity))]


@pytest.mark.slow  # compiles with Inductor
def test_standard_shapes() -> None:
    g, d = DCGANGenerator(norm="mn"), DCGANDiscriminator(norm="mn")
    images = g(g.sample_latent(4))
    assert images.shape == (4, 3, 32, 32)
    assert images.abs().max() <= 1.0
    assert d(images).shape == (4,)


def test_norm_chosen_per_layer() -> None:
    kwargs = {"mn": {"num_components": 4}, "bn": {"momentum": 0.2}}
    g = DCGANGenerator(norm=["mn", "bn", "none"], norm_kwargs=kwargs)
    assert _norm_types(g) == [MixtureNorm2d, nn.BatchNorm2d, nn.Identity]
    assert next(m for m in g.modules() if isinstance(m, MixtureNorm2d)).num_components == 4
    assert next(m for m in g.modules() if isinstance(m, nn.BatchNorm2d)).momentum == 0.2
    assert _norm_types(DCGANDiscriminator(norm=["none", "mn"])) == [nn.Identity, MixtureNorm2d]


@pytest.mark.slow  # compiles with Inductor
def test_training_step_updates_both_networks() -> None:
    g, d = DCGANGenerator(norm="mn"), DCGANDiscriminator(norm="mn")
    fake = g(g.sample_latent(8))
    d(fake).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())


@pytest.mark.parametrize(("build", "match"), [
    (lambda: DCGANGenerator(norm=["bn", "bn"]), "generator norm"),
    (lambda: DCGANDiscriminator(norm=["bn", "bn", "bn"]), "discriminator norm"),
    (lambda: DCGANGenerator(norm="batch"), "norm kind"),
    (lambda: DCGANGenerator(z_dim=0), "z_dim"),
])
def test_bad_configuration_is_a_value_error(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_dcgan_widths_for_32_and_64_pixels() -> None:
    from gan_mn.models import dcgan_widths

    g32, d32 = dcgan_widths(32, (512, 256, 128), (64, 128, 256))
    assert g32 == (512, 256, 128) and d32 == (64, 128, 256)
    g64, d64 = dcgan_widths(64, (512, 256, 128), (64, 128, 256))  # defaults gain a block
    assert g64 == (512, 256, 128, 64) and d64 == (64, 128, 256, 512)
    g, d = DCGANGenerator(8, (16, 8, 4, 4)), DCGANDiscriminator((4, 8, 8, 16))
    images = g(torch.randn(2, 8))
    assert images.shape == (2, 3, 64, 64) and d(images).shape == (2,)
    with pytest.raises(ValueError, match="image_size must be one of"):
        dcgan_widths(16, (512, 256, 128), (64, 128, 256))
    with pytest.raises(ValueError, match=r"\[16, 8\] makes 16-pixel images, not 64"):
        dcgan_widths(64, (16, 8), (64, 128, 256))


@pytest.mark.slow  # compiles with Inductor
def test_sampling_restores_the_generator_even_on_errors() -> None:
    from gan_mn.models import sampling

    g = DCGANGenerator(8, (16, 8, 4), norm="mn").train()
    g(torch.randn(8, 8))  # seeds MN
    state = {k: v.clone() for k, v in g.state_dict().items()}
    with sampling(g) as model:
        assert model is g and not g.training
    assert g.training
    with pytest.raises(RuntimeError, match="boom"), sampling(g, "batch") as model:
        assert model is not g and model.training
        model(torch.randn(4, 8))  # moves the copy's statistics, not g's
        raise RuntimeError("boom")
    assert g.training and all(torch.equal(v, g.state_dict()[k]) for k, v in state.items())
    with pytest.raises(ValueError, match="norm mode"), sampling(g, "train"):
        pass
