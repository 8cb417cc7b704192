"""Degenerate batches give finite outputs, gradients and state; bad arguments a clear error."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.gmm import Mixture, e_step
from gan_mn.norm.layout import SampleView


def _two_points(n: int) -> torch.Tensor:
    """Only two distinct sample vectors in the whole batch."""
    x = torch.zeros(n, 4, 3, 3)
    x[: n // 2] = 1.0
    x[n // 2:, 1] = -2.0
    return x


CASES: dict[str, Callable[[], torch.Tensor]] = {
    "single 1x1 sample": lambda: torch.randn(1, 4, 1, 1),
    "constant channels": lambda: torch.cat([torch.full((8, 2, 3, 3), 5.0),
                                            torch.randn(8, 2, 3, 3)], 1),
    "all zeros": lambda: torch.zeros(8, 4, 3, 3),
    "values of 1e4": lambda: torch.randn(8, 4, 3, 3) * 1e4,
    "offset of 1e4": lambda: 1e4 + torch.randn(8, 4, 3, 3),
    "more components than points": lambda: _two_points(8),
}


def _assert_finite_state(mn: MixtureNorm2d) -> None:
    for name, buf in mn.state_dict().items():
        if buf.is_floating_point():
            assert torch.isfinite(buf).all(), f"non-finite {name}"


# (one sample is refused in training, with 1 component as BatchNorm2d does, and with 5:
# and eval mode takes it: tests/norm/test_library_layer.py)
@pytest.mark.slow  # compiles with Inductor
@pytest.mark.parametrize(("case", "k"), [(case, k) for k in (1, 5) for case in CASES
                                         if case != "single 1x1 sample"])
def test_degenerate_batches_stay_finite(case: str, k: int) -> None:
    mn = MixtureNorm2d(4, num_components=k)
    for _ in range(3):  # seeding, then warm starts and dead-component re-seeding
        x = CASES[case]().requires_grad_()
        y = mn(x)
        assert torch.isfinite(y).all()
        (y * torch.randn_like(y)).sum().backward()
        assert torch.isfinite(x.grad).all()
        assert torch.isfinite(mn.weight.grad).all() and torch.isfinite(mn.bias.grad).all()
        _assert_finite_state(mn)
    mn.eval()
    assert torch.isfinite(mn(CASES[case]())).all()


@pytest.mark.slow  # compiles with Inductor
def test_bf16_autocast_on_cpu() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    mn = MixtureNorm2d(8, num_components=3)
    for _ in range(3):
        x = torch.randn(8, 3, 6, 6, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = conv(x)
            assert h.dtype == torch.bfloat16
            y = mn(h)
        assert y.dtype == torch.bfloat16  # estimation in float32, output in the input dtype
        assert torch.isfinite(y.float()).all()
        y.float().square().mean().backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(conv.weight.grad).all()
        assert torch.isfinite(mn.weight.grad).all()
        assert mn.running_mean.dtype == torch.float32
        _assert_finite_state(mn)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"num_features": 0}, "num_features"),
    ({"num_features": -3}, "num_features"),
    ({"num_features": 2.5}, "num_features"),
    ({"num_components": 0}, "num_components"),
    ({"num_components": -1}, "num_components"),
    ({"num_components": True}, "num_components"),
    ({"em_iters": 0}, "em_iters"),
    ({"seed_iters": -1}, "seed_iters"),
    ({"eps": 0.0}, "eps"),
    ({"momentum": 1.5}, "momentum"),
])
def test_invalid_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    args = {"num_features": 4, **kwargs}
    with pytest.raises(ValueError, match=name):
        MixtureNorm2d(**args)


@pytest.mark.parametrize(("shape", "name"), [
    ((8, 4), "input"), ((8, 4, 3), "input"), ((2, 8, 4, 3, 3), "input"),
    ((8, 5, 3, 3), "num_features"), ((0, 4, 3, 3), "input"),
])
def test_invalid_input_names_the_problem(shape: tuple[int, ...], name: str) -> None:
    mn = MixtureNorm2d(4)
    for mode in (mn.train, mn.eval):
        mode()
        with pytest.raises(ValueError, match=name):
            mn(torch.randn(shape))


@pytest.mark.slow  # compiles with Inductor
def test_large_offsets_keep_precision() -> None:
    """Shifting by a sample before the one-pass statistics avoids cancellation."""
    x = 1e4 + torch.randn(8, 4, 3, 3)
    reference = nn.functional.batch_norm(x.double(), None, None, training=True, eps=1e-5)
    y = MixtureNorm2d(4, num_components=1)(x)
    torch.testing.assert_close(y.double(), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("decomposed", [False, True])
def test_far_components_get_zero_posteriors_not_subnormal_ones(decomposed: bool) -> None:
    """Posteriors too small for float32 are exactly 0. A plain softmax leaves those whose
    log-odds lie between about -104 and -87 as subnormal floats, which make every later
    product on an x86 CPU many times slower (microcode assists)."""
    torch.manual_seed(0)
    x = torch.randn(16, 2, 8, 8) * 8  # samples spread across and far beyond 3 components
    view = SampleView.of(x, decomposed)
    centres = torch.tensor([[-12.0, 0.0], [0.0, 0.0], [12.0, 0.0]])
    mix = Mixture(torch.full((3,), 1 / 3), centres, torch.ones(3, 2))
    tau = e_step(view, view.data, view.data.square(), mix, 1e-5)
    assert not ((tau > 0) & (tau < torch.finfo(tau.dtype).tiny)).any()
    assert (tau == 0).any() and (tau == 1).any()
    torch.testing.assert_close(tau.sum(view.kdim), torch.ones_like(tau.sum(view.kdim)))
