"""Second derivatives through MN (R1 and gradient penalties differentiate D's gradient):
every kernel set gives the second derivatives of MN with its posteriors held constant,
and with one component those of BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.functional import EMSettings, MixtureNormFunction
from gan_mn.norm.kernels import select_kernels

KERNELS = ["eager", pytest.param("inductor", marks=pytest.mark.slow),
           pytest.param("triton", marks=pytest.mark.slow)]


def _discriminator(norm: nn.Module) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), norm, nn.LeakyReLU(0.2),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 1))


def _r1_gradients(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The parameters' gradients of an R1 penalty, |d D(x) / dx|^2."""
    x = x.detach().requires_grad_()
    (grad,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    model.zero_grad()
    grad.pow(2).sum().backward()
    # (the last layer's bias does not reach dD/dx: no gradient)
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for p in model.parameters()]


def test_one_component_gives_batchnorms_second_derivatives() -> None:
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    bn = _discriminator(nn.BatchNorm2d(4)).double()
    mn = _discriminator(MixtureNorm2d(4, num_components=1, kernels="eager")).double()
    for got, want in zip(_r1_gradients(mn, x), _r1_gradients(bn, x), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_mn_as_the_first_layer_takes_a_penalty() -> None:
    """(It raised 'element 0 of tensors does not require grad'.)"""
    layer = MixtureNorm2d(3, num_components=1, kernels="eager").double()
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(layer(x).pow(3).sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("k", [1, 3])
def test_gradgradcheck_with_the_posteriors_held(k: int) -> None:
    """MN's function with fixed posteriors (what its backward differentiates), through
    the eager kernels in float64: first and second derivatives against finite
    differences."""
    torch.manual_seed(0)
    x = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    tau = None if k == 1 else torch.softmax(torch.randn(3, k, 9, dtype=torch.float64), 1)
    em = EMSettings(1, 1e-5, 1e-5)
    kernels = select_kernels("eager", x, k)

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return MixtureNormFunction.apply(x, w, b, tau, None, em, kernels)

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_kernel_set_gives_the_eager_second_derivatives(interpret: None, kernels: str,
                                                             channels_last: bool) -> None:
    """An R1 penalty through a discriminator with MN (K=3, posteriors from the batch's
    own EM): the gradients of each kernel set equal the eager set's."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(8, 3, 5, 5).contiguous(memory_format=fmt)
    want = _r1_gradients(_discriminator(MixtureNorm2d(4, kernels="eager")), x)
    got = _r1_gradients(_discriminator(MixtureNorm2d(4, kernels=kernels)), x)
    assert all(torch.isfinite(g).all() for g in got)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=2e-4, atol=2e-5)
