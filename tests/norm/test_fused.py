"""fused=True (torch.compile'd kernels) computes what the eager path computes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.functional import MixtureNormFunction
from gan_mn.norm.gmm import Mixture

FORMATS = [torch.contiguous_format, torch.channels_last]


def _run(fused: bool, x: torch.Tensor, tau: torch.Tensor | None, start: Mixture | None,
         affine: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
    leaves = [t.detach().clone().requires_grad_() for t in (x, *affine)]
    leaves[0] = x.detach().clone().requires_grad_()  # clone keeps the memory format
    y, *stats = MixtureNormFunction.apply(*leaves, tau, start, 2, 1e-5, 1e-5, fused)
    y.backward(torch.cos(y.detach()))
    return [y, *stats, *(t.grad for t in leaves)]


@pytest.mark.parametrize("memory_format", FORMATS)
def test_fused_matches_eager(memory_format: torch.memory_format) -> None:
    x = (torch.randn(6, 8, 5, 5).relu() * 2 + 1).contiguous(memory_format=memory_format)
    affine = (torch.rand(8) + 0.5, torch.randn(8))
    tau = torch.softmax(torch.randn(6, 3, 25) * 3, 1)
    if memory_format == torch.channels_last:
        tau = tau.transpose(1, 2).contiguous()
    start = Mixture(torch.tensor([0.3, 0.3, 0.4]), torch.rand(3, 8) * 2, torch.rand(3, 8) + 1)
    for posteriors, mixture in ((tau, None), (None, start)):
        eager = _run(False, x, posteriors, mixture, affine)
        fused = _run(True, x, posteriors, mixture, affine)
        assert fused[0].is_contiguous(memory_format=memory_format)
        for a, b in zip(fused, eager, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_fused_layer_trains_like_the_eager_one() -> None:
    eager, fused = MixtureNorm2d(8, fused=False), MixtureNorm2d(8, fused=True)
    fused.load_state_dict(eager.state_dict())
    # Separated clusters: posteriors far from any boundary, so both paths agree.
    centres = torch.randn(3, 8) * 10
    for step in range(3):
        labels = torch.randint(3, (4 * 9,))
        x = (centres[labels] + torch.randn(36, 8)).reshape(4, 3, 3, 8).permute(0, 3, 1, 2)
        outs = []
        for layer in (eager, fused):
            torch.manual_seed(step)
            outs.append(layer(x.contiguous()))
        torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)
    for name, buf in fused.state_dict().items():
        torch.testing.assert_close(buf, eager.state_dict()[name], atol=1e-4, rtol=1e-4)


FALLBACK_SCRIPT = """
import warnings
import torch
import torch._inductor.config as inductor_config
inductor_config.cpp.cxx = ("/nonexistent/c++",)  # a machine without a C++ compiler
from gan_mn.norm import MixtureNorm2d
fused, eager = MixtureNorm2d(4), MixtureNorm2d(4, fused=False)
x = torch.randn(4, 4, 3, 3)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    torch.manual_seed(1)
    xf = x.clone().requires_grad_()
    yf = fused(xf)
    yf.sum().backward()
torch.manual_seed(1)
xe = x.clone().requires_grad_()
ye = eager(xe)
ye.sum().backward()
torch.testing.assert_close(yf, ye)
torch.testing.assert_close(xf.grad, xe.grad)
messages = [str(w.message) for w in caught if "fused kernels unavailable" in str(w.message)]
assert len(messages) == 1, messages
print("fell back:", messages[0])
"""


def test_without_a_compiler_fused_falls_back_to_eager(tmp_path) -> None:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "No working C++ compiler" in done.stdout


def test_layer_inside_a_compiled_model() -> None:
    """torch.compile of a whole model containing MN, seeding included, then the same
    steps as an eager copy of it (compiled code draws its own random numbers, so the
    copy starts from the compiled model's state after the first step)."""
    def build() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), MixtureNorm2d(8),
                                   torch.nn.ReLU(inplace=True), torch.nn.Conv2d(8, 8, 1),
                                   MixtureNorm2d(8), torch.nn.Tanh())

    model, reference = build(), build()
    compiled = torch.compile(model)
    compiled(torch.randn(4, 3, 6, 6)).square().mean().backward()
    reference.load_state_dict(model.state_dict())
    model.zero_grad()
    for _ in range(2):
        x = torch.randn(4, 3, 6, 6)
        outs = []
        for net in (compiled, reference):
            y = net(x)
            y.square().mean().backward()
            outs.append(y)
        torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4)
    for name, buf in model.state_dict().items():
        torch.testing.assert_close(buf, reference.state_dict()[name], atol=1e-4, rtol=1e-4)
