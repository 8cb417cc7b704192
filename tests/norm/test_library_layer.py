"""MN as a library layer in someone else's training loop: cast to half precision, a
non-finite batch, torch.compile after a load, models converted for DDP."""

from __future__ import annotations

import itertools
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.sync import SyncMixtureNorm2d

STATE = ("running_weight", "running_mean", "running_var", "em_weight", "em_mean", "em_var")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_layer_cast_to_half_precision_works_in_train_and_eval(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 4, 4, 4)
    reference = MixtureNorm2d(4, 3, kernels="eager")
    reference(x)
    half = MixtureNorm2d(4, 3, kernels="eager")
    half.load_state_dict(reference.state_dict())
    half.to(dtype)
    assert half.weight.dtype == torch.float32 and half.em_mean.dtype == torch.float32
    for mode in (True, False):
        reference.train(mode)
        half.train(mode)
        y = half(x.to(dtype))
        assert y.dtype == dtype
        torch.testing.assert_close(y.float(), reference(x.to(dtype).float()),
                                   atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("kernels", ["eager", pytest.param("inductor", marks=pytest.mark.slow),
                                     pytest.param("triton", marks=pytest.mark.slow)])
def test_a_non_finite_batch_leaves_the_state_as_it_was(interpret: None, kernels: str) -> None:
    torch.manual_seed(0)
    layer = MixtureNorm2d(4, 3, kernels=kernels)
    x = torch.randn(16, 4, 4, 4)
    layer(x)
    before = {name: getattr(layer, name).clone() for name in STATE}
    for where, bad in (((0, 1, 2, 3), float("nan")), ((3, 0, 0, 0), float("inf"))):
        poisoned = x.clone()
        poisoned[where] = bad
        layer(poisoned)
        for name in STATE:
            assert torch.equal(getattr(layer, name), before[name]), (name, bad)
    assert torch.isfinite(layer(x)).all()  # the next clean batch trains as before
    assert not torch.equal(layer.em_mean, before["em_mean"])


@pytest.mark.slow  # compiles with Inductor
def test_torch_compile_fullgraph_after_load_state_dict() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 4, 4, 4)
    source = MixtureNorm2d(4, 3, kernels="eager")
    source(x)
    loaded = MixtureNorm2d(4, 3, kernels="eager")
    loaded.load_state_dict(source.state_dict())
    expected = MixtureNorm2d(4, 3, kernels="eager")
    expected.load_state_dict(source.state_dict())
    compiled = torch.compile(loaded, fullgraph=True, backend="eager")  # one graph or error
    torch.testing.assert_close(compiled(x), expected(x))


def test_convert_batchnorm_takes_syncbatchnorm_and_says_when_nothing_converted() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4), nn.ReLU())
    with torch.no_grad():
        model[1].running_mean.fill_(0.5)
    converted = MixtureNorm2d.convert_batchnorm(model, num_components=2)
    assert type(converted[1]) is SyncMixtureNorm2d
    assert torch.equal(converted[1].running_mean, torch.full((2, 4), 0.5))
    with pytest.warns(UserWarning, match="nothing was converted"):
        MixtureNorm2d.convert_batchnorm(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="LazyBatchNorm2d does not know its channels"):
        MixtureNorm2d.convert_batchnorm(nn.Sequential(nn.LazyBatchNorm2d()))
    lazy = nn.Sequential(nn.LazyBatchNorm2d())
    lazy(torch.randn(4, 3, 2, 2))  # now a BatchNorm2d of 3 channels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(MixtureNorm2d.convert_batchnorm(lazy)[0], MixtureNorm2d)


@pytest.mark.parametrize(("x", "message"), [
    (torch.ones(8, 4, 2, 2, dtype=torch.long), "input must be floating point, got torch.int64"),
    (torch.randn(1, 4, 1, 3), "num_components=3 needs more samples per channel than "
                              "components when training: the batch has 3 (N*H*W)"),
])
def test_inputs_mn_cannot_normalize_are_one_line(x: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MixtureNorm2d(4, 3, kernels="eager")(x)


def test_one_value_per_channel_is_refused_in_training_as_batchnorm_does() -> None:
    x = torch.randn(1, 4, 1, 1)
    layer = MixtureNorm2d(4, num_components=1, kernels="eager")
    with pytest.raises(ValueError, match=re.escape("the batch has 1 (N*H*W)")):
        layer(x)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm2d(4)(x)
    assert torch.equal(layer.running_var, torch.ones(1, 4))  # untouched
    assert torch.isfinite(layer.eval()(x)).all()  # eval mode takes any batch


@pytest.mark.parametrize("kernels", ["eager", pytest.param("inductor", marks=pytest.mark.slow),
                                     pytest.param("triton", marks=pytest.mark.slow)])
@pytest.mark.parametrize("k", [1, 3])
def test_every_stride_order_gives_the_contiguous_result(interpret: None, kernels: str,
                                                        k: int) -> None:
    """The same values laid out in any of the 24 dimension orders (strides such as
    (100, 25, 1, 5)): output, gradient and running statistics equal the contiguous
    input's, in training and in eval mode."""
    torch.manual_seed(0)
    base = torch.randn(3, 4, 5, 6)
    grad = torch.randn(3, 4, 5, 6)

    def run(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        torch.manual_seed(1)
        layer = MixtureNorm2d(4, num_components=k, kernels=kernels)
        x = x.detach().requires_grad_()
        y = layer(x)
        y.backward(grad)
        return y.detach(), x.grad, layer.running_mean, layer.running_var, layer.eval()(x)

    expected = run(base)
    assert torch.allclose(expected[0].mean((0, 2, 3)), torch.zeros(4), atol=1e-4)
    for order in itertools.permutations(range(4)):
        laid = base.permute(order).contiguous().permute(*torch.tensor(order).argsort())
        assert torch.equal(laid, base)
        for got, want in zip(run(laid), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5,
                                       msg=lambda m, o=order: f"order {o}: {m}")


def test_export_works_and_torchscript_is_documented_as_unsupported() -> None:
    """The README's drop-in claim names what takes the layer: torch.export does (eval
    mode, the deployed form); torch.jit.script does not, and the README says so."""
    layer = MixtureNorm2d(4, kernels="eager").eval()
    x = torch.randn(2, 4, 3, 3)
    exported = torch.export.export(layer, (x,))
    torch.testing.assert_close(exported.module()(x), layer(x))
    with pytest.raises(Exception, match="Tensor"):
        torch.jit.script(MixtureNorm2d(4))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "TorchScript (`torch.jit.script`, deprecated in PyTorch) does not" in readme
