"""Every kernel set (Inductor, Triton under its CPU interpreter) computes what the eager
path computes: outputs, batch statistics and gradients, in both memory layouts."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.functional import (
    EMSettings,
    Kernels,
    MixtureNormFunction,
    MixtureState,
    StateUpdate,
)
from gan_mn.norm.gmm import Mixture, pick_index
from gan_mn.norm.kernels import EAGER, INDUCTOR
from gan_mn.norm.layout import SampleView
from gan_mn.norm.triton.plan import Blocks, TritonKernels

FORMATS = [torch.contiguous_format, torch.channels_last]
# Small blocks: several sample blocks and channel chunks even on tiny inputs.
TRITON = TritonKernels(Blocks(m=16, c=4, table_c=4, table_b=2))


class IdentitySync:
    """The collectives of a group of one process: sums change nothing."""

    def __init__(self) -> None:
        self.calls = 0

    def sum_moments(self, mass: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor,
                    count: float) -> tuple[torch.Tensor, ...]:
        self.calls += 1
        return mass, s1, s2, torch.tensor(count)

    def sum_tables(self, p: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.calls += 1
        return p, q


def _run(kernels: Kernels, x: torch.Tensor, tau: torch.Tensor | None, start: Mixture | None,
         affine: tuple[torch.Tensor, torch.Tensor] | None, sync: IdentitySync | None = None
         ) -> list[torch.Tensor]:
    leaves = [x.detach().clone().requires_grad_()]  # clone keeps the memory format
    leaves += [t.detach().clone().requires_grad_() for t in affine or ()]
    w, b = leaves[1:] if affine else (None, None)
    y, *stats = MixtureNormFunction.apply(leaves[0], w, b, tau, start, EMSettings(2), kernels,
                                          sync, None, None, True)
    y.backward(torch.cos(y.detach()))
    return [y, *stats, *(t.grad for t in leaves)]


def _cases(memory_format: torch.memory_format):
    x = (torch.randn(6, 8, 5, 5).relu() * 2 + 1).contiguous(memory_format=memory_format)
    tau = torch.softmax(torch.randn(6, 3, 25) * 3, 1)
    if memory_format == torch.channels_last:
        tau = tau.transpose(1, 2).contiguous()
    start = Mixture(torch.tensor([0.3, 0.3, 0.4]), torch.rand(3, 8) * 2, torch.rand(3, 8) + 1)
    affine = (torch.rand(8) + 0.5, torch.randn(8))
    # given posteriors, EM from a warm start, one component (BN), no affine parameters
    return x, [(tau, None, affine), (None, start, affine), (None, None, affine),
               (None, start, None)]


def _assert_same(results: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(results) == len(expected)
    for a, b in zip(results, expected, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # compiles with Inductor
@pytest.mark.parametrize("memory_format", FORMATS)
def test_inductor_matches_eager(memory_format: torch.memory_format) -> None:
    x, cases = _cases(memory_format)
    # given posteriors, EM (K=3); in one layout also BN (K=1) and affine=False (each case
    # compiles its own kernels: seconds)
    for tau, start, affine in cases if memory_format == FORMATS[0] else cases[:2]:
        fused = _run(INDUCTOR, x, tau, start, affine)
        assert fused[0].is_contiguous(memory_format=memory_format)
        _assert_same(fused, _run(EAGER, x, tau, start, affine))


@pytest.mark.slow  # interprets Triton kernels
@pytest.mark.parametrize("memory_format", FORMATS)
def test_triton_matches_eager(interpret: None, memory_format: torch.memory_format) -> None:
    x, cases = _cases(memory_format)
    for tau, start, affine in cases:
        results = _run(TRITON, x, tau, start, affine)
        assert results[0].is_contiguous(memory_format=memory_format)
        _assert_same(results, _run(EAGER, x, tau, start, affine))


@pytest.mark.slow  # interprets Triton kernels
def test_triton_through_collectives_matches_eager(interpret: None) -> None:
    """The DDP branch (sums combined in torch around the all-reduces), group of one."""
    x, cases = _cases(torch.contiguous_format)
    for tau, start, affine in cases[1:3]:
        sync = IdentitySync()
        _assert_same(_run(TRITON, x, tau, start, affine, sync),
                     _run(EAGER, x, tau, start, affine))
        # one all-reduce of moments per EM iteration (2, or 1 without a mixture) + 1 backward
        assert sync.calls == (2 if start is not None else 1) + 1


@pytest.mark.parametrize("kernels", [EAGER, pytest.param(INDUCTOR, marks=pytest.mark.slow),
                                     pytest.param(TRITON, marks=pytest.mark.slow)])
def test_backward_skips_gradients_nobody_needs(interpret: None, kernels: Kernels,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the weight requires grad: x's and the bias's gradients are not computed."""
    x = torch.randn(4, 8, 3, 3)
    b = torch.randn(8)
    w = (torch.rand(8) + 0.5).requires_grad_()
    start = Mixture(torch.tensor([0.5, 0.5]), torch.randn(2, 8), torch.rand(2, 8) + 1)
    returned = []
    original = type(kernels).backward

    def spy(self: Kernels, *args: object, **kwargs: object) -> tuple:
        returned.append(original(self, *args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(type(kernels), "backward", spy)
    MixtureNormFunction.apply(x, w, b, None, start, EMSettings(), kernels).sum().backward()
    dx, gw, gb = returned[0]
    assert dx is None and gb is None
    assert gw is not None and torch.isfinite(w.grad).all()


@pytest.mark.slow  # interprets Triton kernels
@pytest.mark.parametrize("kernels", ["inductor", "triton"])
def test_layer_trains_like_the_eager_one(interpret: None, kernels: str) -> None:
    """Three training steps from one state: the kernels' outputs and buffers are as close
    to a float64 eager layer's as the float32 eager layer's are (twice its error, plus
    rounding): float32 EM differs from float64 by more than one fixed tolerance would
    allow on some batches (the eager path's one-pass expansions lose digits)."""
    eager = MixtureNorm2d(8, kernels="eager")
    other = MixtureNorm2d(8, kernels=kernels)
    exact = MixtureNorm2d(8, kernels="eager").double()
    for layer in (other, exact):
        layer.load_state_dict(eager.state_dict())
    centres = torch.tensor([[0.0], [20.0], [-20.0]]) + torch.randn(3, 8)
    for step in range(3):
        labels = torch.arange(36) % 3
        x = (centres[labels] + torch.randn(36, 8)).reshape(4, 3, 3, 8).permute(0, 3, 1, 2)
        outs = []
        for layer in (eager, other, exact):
            torch.manual_seed(step)
            outs.append(layer(x.contiguous().to(layer.running_var.dtype)).double())
        _assert_as_close_as_eager(outs[1], outs[0], outs[2])
    reference = exact.state_dict()
    for name, buf in other.state_dict().items():
        _assert_as_close_as_eager(buf, eager.state_dict()[name], reference[name])


@pytest.mark.slow  # interprets Triton kernels
def test_two_forwards_before_one_backward(interpret: None) -> None:
    """A discriminator's layers run on the real and on the fake batch before one backward:
    the two calls share their shape's plan and scratch buffers, not their saved tensors."""
    torch.manual_seed(0)
    eager, triton = MixtureNorm2d(8, kernels="eager"), MixtureNorm2d(8, kernels="triton")
    triton.load_state_dict(eager.state_dict())
    real, fake = torch.randn(4, 8, 3, 3) * 2 + 1, torch.randn(4, 8, 3, 3)
    grads = []
    for layer in (eager, triton):
        torch.manual_seed(1)  # (the first batch seeds the mixture by k-means++)
        leaves = [t.clone().requires_grad_() for t in (real, fake)]
        (layer(leaves[0]).square().sum() + layer(leaves[1]).cos().sum()).backward()
        grads.append([*(t.grad for t in leaves), layer.weight.grad, layer.bias.grad])
    for a, b in zip(*grads, strict=True):
        # (the bias gradient sums terms of both signs: float32 cancellation)
        torch.testing.assert_close(b, a, atol=2e-3, rtol=1e-4)


def _assert_as_close_as_eager(value: torch.Tensor, eager: torch.Tensor,
                              exact: torch.Tensor) -> None:
    if not exact.is_floating_point():
        assert torch.equal(value.to(exact.dtype), exact)
        return
    error = (value.double() - exact).abs().max().item()
    allowed = 2 * (eager.double() - exact).abs().max().item() + 1e-5
    assert error <= allowed, (error, allowed)


@pytest.mark.slow  # interprets Triton kernels
def test_triton_layer_under_bf16_autocast(interpret: None) -> None:
    """Statistics in float32 under autocast, output in the input's dtype, as eager."""
    x = torch.randn(4, 8, 3, 3).bfloat16()
    outs, grads = [], []
    for kernels in ("eager", "triton"):
        torch.manual_seed(0)
        layer = MixtureNorm2d(8, kernels=kernels)
        leaf = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(leaf)
        assert y.dtype == torch.bfloat16
        y.float().square().sum().backward()
        outs.append(y)
        grads.append(leaf.grad)
    torch.testing.assert_close(outs[1], outs[0], atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(grads[1], grads[0], atol=5e-2, rtol=5e-2)


def test_unknown_kernels_are_refused() -> None:
    with pytest.raises(ValueError, match="kernels must be one of"):
        MixtureNorm2d(4, kernels="cuda")


def test_triton_on_cpu_without_the_interpreter_is_refused(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        MixtureNorm2d(4, kernels="triton")(torch.randn(2, 4, 2, 2))


@pytest.mark.slow  # compiles with Inductor
def test_without_a_compiler_fused_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without a C++ compiler (Inductor's compiler set to a path that does not
    exist, its caches off so nothing compiled earlier is reused, and a kernel set that
    has compiled nothing yet): one warning, then the eager path's results."""
    import torch._inductor.config as inductor_config

    from gan_mn.norm import kernels

    monkeypatch.setattr(kernels, "INDUCTOR", kernels.InductorKernels())
    monkeypatch.setattr(kernels._Compiled, "failed", False)  # set back after the test
    fused, eager = MixtureNorm2d(4), MixtureNorm2d(4, kernels="eager")
    x = torch.randn(4, 4, 3, 3)
    no_compiler = {"cpp.cxx": ("/nonexistent/c++",), "force_disable_caches": True}
    with inductor_config.patch(no_compiler), warnings.catch_warnings(record=True) as caught:
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
    messages = [str(w.message) for w in caught if "compiling its fused kernels failed" in
                str(w.message)]
    assert len(messages) == 1, messages
    assert "No working C++ compiler" in messages[0]


@pytest.mark.slow  # compiles with Inductor
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


@pytest.mark.slow  # interprets Triton kernels
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("memory_format", FORMATS)
def test_triton_state_update_matches_eager(interpret: None, momentum: float | None,
                                           memory_format: torch.memory_format) -> None:
    """The state update folded into the kernels: running averages (cumulative with
    momentum None), the counter, the next warm start and the re-seeding of a dead
    component (one far from every sample: mass below one sample) at the sample
    ``pick_index`` names, as the eager update does."""
    x = torch.randn(4, 8, 3, 3).contiguous(memory_format=memory_format)
    start = Mixture(torch.tensor([0.5, 0.1, 0.4]), torch.randn(3, 8), torch.rand(3, 8) + 1)
    start.mean[1] += 1000.0
    initial = MixtureState(torch.full((3,), 1 / 3), torch.randn(3, 8), torch.rand(3, 8) + 1,
                           *(t.clone() for t in start), torch.tensor(4))
    states, reseeded = [], []
    for kernels in (EAGER, TRITON):
        state = MixtureState(*(t.clone() for t in initial))
        for _ in range(2):
            warm = Mixture(*(t.clone() for t in state[3:6]))
            MixtureNormFunction.apply(x, None, None, None, warm, EMSettings(1), kernels, None,
                                      None, StateUpdate(state, momentum))
            reseeded.append(state.em_mean[1].clone())
        states.append(state)
    for a, b in zip(*states, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert int(states[1].num_batches_tracked) == 6
    # after the first batch (the fifth counted), at that batch's sample
    picked = SampleView.of(x).pick(pick_index(torch.tensor(5), 3, 36))[1]
    torch.testing.assert_close(reseeded[2], picked)


@pytest.mark.slow  # interprets Triton kernels
@pytest.mark.parametrize(("k", "em_iters", "launches"), [(1, 1, 6), (3, 1, 6), (5, 2, 8)])
def test_a_triton_training_step_is_six_launches(interpret: None, k: int, em_iters: int,
                                                launches: int) -> None:
    """Forward, backward and state update of a seeded layer: two kernels per EM iteration,
    the output, three for the backward; the counter, the zeroing and the re-seeding picks
    are folded in (no torch operator that would launch a kernel on a GPU)."""
    from benchmarks.host_work import count_launches

    layer = MixtureNorm2d(8, k, em_iters=em_iters, kernels="triton")
    x = torch.randn(4, 8, 3, 5, requires_grad=True)
    cot = torch.randn(4, 8, 3, 5)
    layer(x).backward(cot)  # seeds the mixture

    def step() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).backward(cot)

    counted = count_launches(step)
    assert (counted["triton"], counted["torch"]) == (launches, 0), counted["ops"]
    assert int(layer.num_batches_tracked) == 2


def test_compiling_mn_is_announced_once(monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    from gan_mn.norm import kernels

    monkeypatch.setattr(kernels._Compiled, "announced", False)
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)  # (the message only)
    fused = kernels.InductorKernels()
    with caplog.at_level(logging.INFO, logger="gan_mn"):
        for _ in range(2):
            fused._forward(torch.randn(4, 3, 2, 2), None, None, None, None,
                           kernels.EMSettings(), True)
    assert caplog.text.count("compiling its fused kernels with Inductor") == 1


def test_many_components_run_eagerly_by_default() -> None:
    from gan_mn.norm.kernels import EAGER, INDUCTOR, select_kernels

    x = torch.randn(2, 3, 2, 2)
    assert select_kernels("auto", x, 8) is INDUCTOR
    assert select_kernels("auto", x, 20) is EAGER
    assert select_kernels("inductor", x, 20) is INDUCTOR  # asked for: done


@pytest.mark.slow  # interprets Triton kernels
@pytest.mark.parametrize("memory_format", FORMATS)
def test_triton_with_the_tiles_a_gpu_gets_matches_eager_at_16_components(
        interpret: None, memory_format: torch.memory_format) -> None:
    """The plan's own tiles, as for a 132-SM GPU (more than 8 components: 16 channels a
    step), on 40 channels (not a multiple of the tile) and 16 components. Float32 EM with
    16 components is ill-conditioned, so each result is held to float64 as closely as
    float32 eager is (gpu_check's bound: 4 x eager's error + 2e-6)."""
    torch.manual_seed(0)
    x = (torch.randn(8, 40, 6, 6) * 2).contiguous(memory_format=memory_format)
    start = Mixture(torch.full((16,), 1 / 16), torch.randn(16, 40), torch.rand(16, 40) + 1)
    affine = (torch.rand(40) + 0.5, torch.randn(40))
    planned = TritonKernels(processors=132)
    got = _run(planned, x, None, start, affine)
    eager = _run(EAGER, x, None, start, affine)
    exact = _run(EAGER, x.double(), None, Mixture(*(t.double() for t in start)),
                 tuple(t.double() for t in affine))
    for g, e, r in zip(got, eager, exact, strict=True):
        def error(t: torch.Tensor, r: torch.Tensor = r) -> float:
            return float((t.double() - r).abs().max() / r.abs().max().clamp_min(1e-30))
        assert error(g) <= 4 * error(e) + 2e-6, (error(g), error(e))
    assert next(iter(planned._plans.values())).dx_grid[1] == 3  # 40 channels, 16 a step
