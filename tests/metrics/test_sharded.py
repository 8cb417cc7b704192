"""Metrics over 2 ranks: each generates half the batches, rank 0 computes once, and the
values are those of one process computing on all the samples."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch

from gan_mn.data import UInt8Images
from gan_mn.metrics import MetricSettings, Protocol, compute_metrics, load_plugin
from gan_mn.metrics.sharded import compute_metrics_sharded
from gan_mn.models import DCGANGenerator
from tests.helpers.fakes import TINY_EXTRACTOR, smooth_images

METRICS = ("isc", "fid", "kid", "prc")


def settings(cache: str) -> MetricSettings:
    return MetricSettings(100, METRICS, "tiny-test", cache_dir=cache, batch_size=16, seed=5,
                          kid_subset_size=50)


def setup() -> tuple[DCGANGenerator, UInt8Images, Protocol]:
    load_plugin(TINY_EXTRACTOR)
    torch.manual_seed(0)
    generator = DCGANGenerator(8, (16, 8, 4), norm="mn", norm_kwargs={"mn": {"kernels": "eager"}})
    generator(generator.sample_latent(16))  # seed MN's mixture, fill running statistics
    images = torch.from_numpy(smooth_images(120, seed=3)).permute(0, 3, 1, 2).contiguous()
    # 7 batches of 16 (the last one 4): the ranks get 4 and 3 of them
    return generator, UInt8Images(images), Protocol(100, "train", "tiny-test", "running", 5)


def single(cache: str) -> dict[str, float]:
    generator, reference, protocol = setup()
    return compute_metrics(generator, 8, reference, "ref", protocol, settings(cache))


def run_ranks(cache: str) -> list[dict[str, Any]]:
    """Both ranks of a 2-process run, as two threads of this process that exchange their
    features through ``gather`` (what ``all_gather_object`` does between processes; the
    real process group is exercised by tests/cli/test_ddp.py)."""
    generators = [setup()[0] for _ in range(2)]  # one model per rank, as in DDP
    _, reference, protocol = setup()
    calls: list[list[int]] = [[], []]
    for rank, generator in enumerate(generators):
        generator.register_forward_hook(lambda m, i, o, rank=rank: calls[rank].append(o.shape[0]))
    barrier, parts = threading.Barrier(2), [None, None]

    def gather(rank: int, mine: Any) -> list[Any]:
        parts[rank] = mine
        barrier.wait(timeout=120)  # a rank that failed earlier must not hang the other
        return list(parts)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(compute_metrics_sharded, generators[rank], 8, reference, "ref",
                               protocol, settings(cache), rank=rank, world=2,
                               gather=partial(gather, rank)) for rank in range(2)]
        values = [f.result(timeout=300) for f in futures]
    return [{"values": v, "calls": c} for v, c in zip(values, calls, strict=True)]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    tmp = tmp_path_factory.mktemp("sharded")
    return run_ranks(str(tmp / "cache")), tmp


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
