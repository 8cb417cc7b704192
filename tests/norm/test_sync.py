"""SyncMixtureNorm2d on 2 CPU processes (gloo) against MixtureNorm2d on the whole batch."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gan_mn.norm import MixtureNorm2d, SyncMixtureNorm2d, revert_sync
from tests.helpers.activations import clustered

CASES = {  # name: (num_components, detach_posteriors, seeded, channels_last)
    "k3": (3, True, True, False),
    "k3-channels-last": (3, True, True, True),
    "k1-is-batchnorm": (1, True, True, False),
    "k3-through-posteriors": (3, False, True, False),
    "k3-first-seeding": (3, True, False, False),
}


def make_case(name: str) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """A start state, an (8, 4, 4, 4) batch of 3 clusters and an upstream gradient."""
    k, detach, seeded, channels_last = CASES[name]
    torch.manual_seed(1)  # k-means++ seeding draws from the global RNG
    gen = torch.Generator().manual_seed(1)
    centres = torch.tensor([[-4.0, 0, 1, 2], [0.0, 4, -1, 0], [4.0, -3, 0, 1]])
    x, _ = clustered(8, centres, torch.tensor([0.5, 1.0, 0.7]), [0.5, 0.3, 0.2],
                     generator=gen)
    layer = MixtureNorm2d(4, num_components=k, detach_posteriors=detach, kernels="eager")
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5, generator=gen)
        layer.bias.uniform_(-0.5, 0.5, generator=gen)
    if seeded:  # a mixture fitted to another batch, as after some training
        layer(x + 0.1 * torch.randn(x.shape, generator=gen))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return layer.state_dict(), x, torch.randn(x.shape, generator=gen)


def run(layer: nn.Module, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (y * g).sum().backward()
    return {"y": y.detach(), "dx": x.grad, "dweight": layer.weight.grad,
            "dbias": layer.bias.grad,
            **{k: v.clone() for k, v in layer.state_dict().items()}}


def single(name: str) -> dict[str, torch.Tensor]:
    state, x, g = make_case(name)
    k, detach, *_ = CASES[name]
    layer = MixtureNorm2d(4, num_components=k, detach_posteriors=detach, kernels="eager")
    layer.load_state_dict(state)
    torch.manual_seed(0)
    return run(layer, x, g)


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    results = {}
    for name in CASES:
        state, x, g = make_case(name)
        k, detach, *_ = CASES[name]
        layer = SyncMixtureNorm2d(4, num_components=k, detach_posteriors=detach, kernels="eager")
        layer.load_state_dict(state)
        torch.manual_seed(0)  # the first rank's k-means++ draw is the single process's
        half = slice(4 * rank, 4 * rank + 4)
        results[name] = run(layer, x[half], g[half])
    torch.save(results, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = str(tmp_path_factory.mktemp("sync") / "result")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(port, out), nprocs=2, join=True)
    return [torch.load(f"{out}.{r}") for r in range(2)]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.slow  # real processes
@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][2]])
def test_two_halves_equal_the_whole_batch(synced: list[dict[str, Any]], name: str) -> None:
    ref = single(name)
    parts = [synced[r][name] for r in range(2)]
    for key in ("y", "dx"):
        assert rel(torch.cat([p[key] for p in parts]), ref[key]) < 1e-4, key
    # parameter gradients stay per process (DDP sums/averages them), as SyncBatchNorm's
    for key in ("dweight", "dbias"):
        assert rel(parts[0][key] + parts[1][key], ref[key]) < 1e-4, key
    # both processes end with the single process's mixture and running statistics
    for key in ("running_weight", "running_mean", "running_var", "em_weight", "em_mean",
                "em_var", "num_batches_tracked"):
        for p in parts:
            assert rel(p[key].double(), ref[key].double()) < 1e-4, key


@pytest.mark.slow  # real processes
def test_first_seeding_is_the_same_on_every_rank(synced: list[dict[str, Any]]) -> None:
    """Unseeded, each rank would seed k-means++ on its own half; the first rank's
    mixture is broadcast, so both normalize with, and keep, one mixture."""
    a, b = (synced[r]["k3-first-seeding"] for r in range(2))
    for key in ("em_weight", "em_mean", "em_var", "running_weight", "running_mean",
                "running_var", "em_seeded"):
        assert torch.equal(a[key], b[key]), key
    assert bool(a["em_seeded"]) and torch.isfinite(torch.cat([a["y"], b["y"]])).all()


def test_convert_and_revert_keep_parameters_and_buffers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), MixtureNorm2d(4), nn.Sequential(
        nn.BatchNorm2d(4), MixtureNorm2d(4, num_components=2)))
    model[1].running_mean.fill_(3.0)
    synced = SyncMixtureNorm2d.convert_sync_mixturenorm(model)
    assert isinstance(synced[1], SyncMixtureNorm2d)
    assert isinstance(synced[2][1], SyncMixtureNorm2d)
    assert isinstance(synced[2][0], nn.BatchNorm2d)
    assert synced[1].weight is model[1].weight and synced[1].running_mean is model[1].running_mean
    assert synced[2][1].num_components == 2
    back = revert_sync(nn.SyncBatchNorm.convert_sync_batchnorm(synced))
    assert type(back[1]) is MixtureNorm2d and back[1].weight is model[1].weight
    assert type(back[2][0]) is nn.BatchNorm2d and back[2][0].weight is model[2][0].weight
    assert back.state_dict().keys() == model.state_dict().keys()


def test_without_a_process_group_it_is_mixture_norm() -> None:
    state, x, g = make_case("k3")
    layer = SyncMixtureNorm2d(4, kernels="eager")
    layer.load_state_dict(state)
    torch.manual_seed(0)
    ours = run(layer, x, g)
    ref = single("k3")
    assert torch.allclose(ours["y"], ref["y"]) and torch.allclose(ours["dx"], ref["dx"])

