"""The training step never reads a tensor back to the host (after the one-off seeding)."""

from __future__ import annotations

import pytest
import torch

from gan_mn.norm import MixtureNorm2d

HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


# Triton's CPU interpreter copies every argument to NumPy, so only CUDA can check it.
@pytest.mark.parametrize("kernels", ["eager", pytest.param("inductor", marks=pytest.mark.slow)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_step_has_no_host_reads(monkeypatch: pytest.MonkeyPatch, kernels: str,
                                         momentum: float | None) -> None:
    mn = MixtureNorm2d(8, num_components=3, momentum=momentum, kernels=kernels)
    x = torch.randn(4, 8, 5, 5)
    mn(x.requires_grad_()).sum().backward()  # seeds the mixture, compiles (inductor)

    def forbidden(self: torch.Tensor, *args: object, **kwargs: object) -> None:
        raise AssertionError("host read of a tensor in the training step")

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    for _ in range(2):
        x = torch.randn(4, 8, 5, 5, requires_grad=True)
        y = mn(x)
        y.backward(torch.ones_like(y))
    monkeypatch.undo()
    assert torch.isfinite(x.grad).all() and int(mn.num_batches_tracked) == 3
