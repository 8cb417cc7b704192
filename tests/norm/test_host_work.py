"""The Triton layer's host work per training step, held to its per-shape plan's counts:
at most 6 new tensors (output, posteriors, one statistics buffer, three gradients), 30
Python calls into gan_mn and 12 tensor arguments per launch. Counted with the launches
recorded, not run (``benchmarks/host_work.py``); timings live in
``benchmarks/norm_host.py``."""

from __future__ import annotations

import pytest
import torch

from benchmarks.host_work import count_host_work, layer_step, stubbed_launches
from gan_mn.norm import MixtureNorm2d

KERNELS = ["mn_stats", "mn_finalize", "mn_output", "mn_grad_reduce", "mn_grad_tables",
           "mn_grad_input"]


@pytest.mark.parametrize(("k", "affine", "memory_format"), [
    (3, True, torch.contiguous_format), (3, True, torch.channels_last),
    (1, True, torch.contiguous_format), (5, False, torch.contiguous_format)])
def test_a_triton_layer_step_is_within_the_plans_counts(
        interpret: None, k: int, affine: bool, memory_format: torch.memory_format) -> None:
    layer = MixtureNorm2d(64, k, affine=affine, kernels="triton")
    x = torch.randn(8, 64, 4, 4).contiguous(memory_format=memory_format).requires_grad_()
    # (the gradient comes in the output's memory format, as from the next layer)
    step = layer_step(layer, x, torch.randn_like(x))
    with stubbed_launches() as launches:
        step()  # seeds the mixture, makes the plan
        step()
        work = count_host_work(step, launches)
    assert [launch.kernel for launch in work.launches] == KERNELS
    assert work.allocations <= 6, work.operator_names
    # no views, no copies: the allocations and AccumulateGrad's detaches of x's, the
    # weight's and the bias's new gradients
    assert set(work.operator_names) <= {"empty", "empty_like", "detach"}, work.operator_names
    assert work.python_calls <= 30
    assert max(launch.tensors for launch in work.launches) <= 12, work.launches


def test_the_counts_see_what_they_count(interpret: None) -> None:
    """The counter is not blind: a step that makes a view, a copy and a Python call more
    is counted so."""
    layer = MixtureNorm2d(8, 3, kernels="triton")
    x = torch.randn(4, 8, 3, 3, requires_grad=True)
    step = layer_step(layer, x, torch.randn(4, 8, 3, 3))
    with stubbed_launches() as launches:
        step()
        base = count_host_work(step, launches)
        more = count_host_work(lambda: (step(), _python_call(x)), launches)
    assert more.allocations == base.allocations + 1
    assert more.operators == base.operators + 2
    assert more.python_calls == base.python_calls + 1
    assert len(more.launches) == len(base.launches) == 6


def _python_call(x: torch.Tensor) -> torch.Tensor:
    from gan_mn.norm.layout import SampleView  # (gan_mn code: counted)

    SampleView.is_channels_last(x)
    return x[0].clone()
