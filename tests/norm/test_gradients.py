"""The analytic backward is the exact gradient with posteriors held constant."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.functional import EMSettings, MixtureNormFunction, mixture_norm_autograd
from gan_mn.norm.gmm import Mixture
from gan_mn.norm.kernels import EAGER

FORMATS = [torch.contiguous_format, torch.channels_last]


def _posteriors(x: torch.Tensor, k: int) -> torch.Tensor:
    """Random posteriors in the sample layout the layer uses for ``x``."""
    n, _, h, w = x.shape
    if x.is_contiguous():
        return torch.softmax(torch.randn(n, k, h * w, dtype=x.dtype), dim=1)
    return torch.softmax(torch.randn(n, h * w, k, dtype=x.dtype), dim=2)


def _input(memory_format: torch.memory_format, dtype: torch.dtype = torch.float64,
           shape: tuple[int, ...] = (3, 4, 2, 3)) -> torch.Tensor:
    x = (torch.randn(shape, dtype=dtype) * 2 + 1).contiguous(memory_format=memory_format)
    return x.requires_grad_()


def _affine(c: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.empty(c, dtype=dtype).uniform_(0.5, 1.5).requires_grad_()
    bias = torch.randn(c, dtype=dtype).requires_grad_()
    return weight, bias


@pytest.mark.parametrize("memory_format", FORMATS)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_with_fixed_posteriors(memory_format: torch.memory_format, k: int,
                                         affine: bool) -> None:
    x = _input(memory_format)
    tau = _posteriors(x, k) if k > 1 else None
    weight, bias = _affine(4) if affine else (None, None)

    def fn(*inputs: torch.Tensor) -> torch.Tensor:
        x_, *wb = inputs
        w, b = wb if affine else (None, None)
        return MixtureNormFunction.apply(x_, w, b, tau, None, EMSettings(1), EAGER)

    inputs = (x, weight, bias) if affine else (x,)
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("memory_format", FORMATS)
def test_analytic_backward_matches_autograd(memory_format: torch.memory_format) -> None:
    """Through the EM estimate too: same posteriors, same gradients, float32."""
    x = _input(memory_format, torch.float32, (8, 16, 5, 5))
    weight, bias = _affine(16, torch.float32)
    start = Mixture(torch.tensor([0.5, 0.3, 0.2]), torch.randn(3, 16), torch.rand(3, 16) + 0.5)
    grad = torch.randn(x.shape)
    results = []
    for fn in (MixtureNormFunction.apply, mixture_norm_autograd):
        leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
        leaves[0] = leaves[0].contiguous(memory_format=memory_format).detach().requires_grad_()
        extra = (True,) if fn is mixture_norm_autograd else (EAGER, None, None, None, True)
        y, *stats = fn(leaves[0], leaves[1], leaves[2], None, start, EMSettings(2), *extra)
        y.backward(grad)
        results.append((y, *stats, *(t.grad for t in leaves)))
    for fused, reference in zip(*results, strict=True):
        torch.testing.assert_close(fused, reference, atol=2e-5, rtol=1e-4)


def test_gradcheck_through_the_posteriors() -> None:
    """The documented option: gradients also flow through the EM posteriors."""
    x = _input(torch.contiguous_format)
    weight, bias = _affine(4)
    start = Mixture(torch.tensor([0.4, 0.6], dtype=torch.float64),
                    torch.randn(2, 4, dtype=torch.float64),
                    torch.rand(2, 4, dtype=torch.float64) + 1.0)

    def fn(x_: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return mixture_norm_autograd(x_, w, b, None, start, EMSettings(2),
                                     detach_posteriors=False)[0]

    assert gradcheck(fn, (x, weight, bias), eps=1e-6, atol=1e-5)


@pytest.mark.slow  # compiles with Inductor
def test_layer_option_differentiates_through_the_posteriors() -> None:
    """detach_posteriors=False on the layer: same forward, a different (fuller) gradient."""
    x = torch.randn(8, 4, 3, 3) * 2  # overlapping components: posteriors are soft
    grads, outputs = [], []
    for detach in (True, False):
        torch.manual_seed(0)
        mn = MixtureNorm2d(4, num_components=2, detach_posteriors=detach)
        leaf = x.clone().requires_grad_()
        y = mn(leaf)
        y.backward(torch.cos(y.detach()))
        outputs.append(y)
        grads.append(leaf.grad)
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(grads[1]).all()
    assert not torch.allclose(grads[0], grads[1], atol=1e-3)
