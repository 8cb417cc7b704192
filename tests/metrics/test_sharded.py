"""Metrics over 2 processes (gloo): each generates half the batches, rank 0 computes once,
and the values are those of one process computing on all the samples."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gan_mn.data import UInt8Images
from gan_mn.metrics import MetricSettings, Protocol, compute_metrics, load_plugin
from gan_mn.metrics.sharded import compute_metrics_sharded
from gan_mn.models import Generator
from tests.fakes import TINY_EXTRACTOR, smooth_images

METRICS = ("isc", "fid", "kid", "prc")


def settings(cache: str) -> MetricSettings:
    return MetricSettings(100, METRICS, "tiny-test", cache_dir=cache, batch_size=16, seed=5,
                          kid_subset_size=50)


def setup() -> tuple[Generator, UInt8Images, Protocol]:
    load_plugin(TINY_EXTRACTOR)
    torch.manual_seed(0)
    generator = Generator(8, (16, 8, 4), norm="mn", norm_kwargs={"mn": {"kernels": "eager"}})
    generator(generator.sample_latent(16))  # seed MN's mixture, fill running statistics
    images = torch.from_numpy(smooth_images(120, seed=3)).permute(0, 3, 1, 2).contiguous()
    # 7 batches of 16 (the last one 4): the ranks get 4 and 3 of them
    return generator, UInt8Images(images), Protocol(100, "train", "tiny-test", "running", 5)


def single(cache: str) -> dict[str, float]:
    generator, reference, protocol = setup()
    return compute_metrics(generator, 8, reference, "ref", protocol, settings(cache))


def _worker(rank: int, port: int, cache: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    generator, reference, protocol = setup()
    calls = []
    generator.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))

    def gather(mine: Any) -> list[Any]:
        parts: list[Any] = [None, None]
        dist.all_gather_object(parts, mine)
        return parts

    values = compute_metrics_sharded(generator, 8, reference, "ref", protocol, settings(cache),
                                     rank=rank, world=2, gather=gather)
    torch.save({"values": values, "calls": calls}, f"{out}.{rank}")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    tmp = tmp_path_factory.mktemp("sharded")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp / "cache"), str(tmp / "out")), nprocs=2, join=True)
    return [torch.load(tmp / f"out.{r}") for r in range(2)], tmp


def test_two_ranks_equal_one_process(sharded: tuple[list[dict[str, Any]], Path]) -> None:
    results, tmp = sharded
    assert results[1]["values"] is None  # computed once, on rank 0
    ref = single(str(tmp / "cache-single"))
    got = results[0]["values"]
    assert got.keys() == ref.keys() and any(k.startswith("fid") for k in got)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-6), key
    # each rank generated only its own batches: 0, 2, 4, 6 (the short one) and 1, 3, 5
    assert sorted(results[0]["calls"]) == [4, 16, 16, 16]
    assert sorted(results[1]["calls"]) == [16, 16, 16]


def test_one_rank_is_compute_metrics(tmp_path: Path) -> None:
    generator, reference, protocol = setup()
    got = compute_metrics_sharded(generator, 8, reference, "ref", protocol,
                                  settings(str(tmp_path / "a")), rank=0, world=1,
                                  gather=lambda mine: [mine])
    ref = single(str(tmp_path / "b"))
    assert got == pytest.approx(ref, rel=1e-5, abs=1e-6)
