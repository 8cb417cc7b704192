"""K = 1 must be exactly BatchNorm2d: outputs, gradients, running statistics, eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from gan_mn.norm import MixtureNorm2d

TOL = {"atol": 1e-5, "rtol": 1e-5}
# Outputs and gradients are built from sums over the batch's 280 positions: float32
# rounding of sums taken in another order (the Triton kernels' tiles) reaches 1.04e-5
# absolute in outputs of magnitude up to 6, and 1.2e-5 relative in the weight's gradient
OUT_TOL = {"atol": 2e-5, "rtol": 5e-5}
SUM_TOL = {"atol": 1e-4, "rtol": 5e-5}


@pytest.mark.slow  # compiles with Inductor
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("kernels", ["inductor", "eager", "triton"])
def test_single_component_is_batchnorm(memory_format: torch.memory_format,
                                       momentum: float | None, affine: bool, kernels: str
                                       ) -> None:
    mn = MixtureNorm2d(6, num_components=1, momentum=momentum, affine=affine, kernels=kernels)
    bn = nn.BatchNorm2d(6, momentum=momentum, affine=affine)
    if affine:  # non-trivial affine parameters, identical in both
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        mn.load_state_dict({"weight": bn.weight, "bias": bn.bias}, strict=False)
    opt_mn = torch.optim.SGD(mn.parameters(), lr=0.1) if affine else None
    opt_bn = torch.optim.SGD(bn.parameters(), lr=0.1) if affine else None
    for step in range(4):
        x = (torch.randn(8, 6, 5, 7) * (step + 1) + 3.0).contiguous(memory_format=memory_format)
        x_mn = x.clone().requires_grad_()
        x_bn = x.clone().requires_grad_()
        y_mn, y_bn = mn(x_mn), bn(x_bn)
        assert_close(y_mn, y_bn, **OUT_TOL)
        grad = torch.randn_like(y_bn)
        y_mn.backward(grad)
        y_bn.backward(grad)
        assert_close(x_mn.grad, x_bn.grad, **OUT_TOL)
        if affine:
            assert_close(mn.weight.grad, bn.weight.grad, **SUM_TOL)
            assert_close(mn.bias.grad, bn.bias.grad, **SUM_TOL)
            opt_mn.step()
            opt_bn.step()
            opt_mn.zero_grad()
            opt_bn.zero_grad()
        assert_close(mn.running_mean[0], bn.running_mean, **TOL)
        assert_close(mn.running_var[0], bn.running_var, **TOL)
        assert int(mn.num_batches_tracked) == int(bn.num_batches_tracked) == step + 1
    mn.eval()
    bn.eval()
    x = torch.randn(4, 6, 3, 3).contiguous(memory_format=memory_format) * 2 + 1
    # after 4 optimiser steps the weights differ by the steps' float32 rounding (with one
    # thread, up to 2e-5 here): 10x the per-step tolerance
    assert_close(mn(x), bn(x), atol=1e-4, rtol=1e-4)
    assert torch.equal(mn.running_weight, torch.ones(1))
