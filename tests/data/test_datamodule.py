"""The data module: CIFAR-10's on-disk format, image folders, errors, reference keys."""

from __future__ import annotations

import logging
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_mn.data import DataError, GANDataModule, load_cifar10, load_image_folder
from tests.helpers.fakes import write_cifar10, write_image_folder


def test_cifar10_on_disk_format(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=10)
    train, test = load_cifar10(tmp_path, "train", False), load_cifar10(tmp_path, "test", False)
    assert train.shape == (50, 3, 32, 32) and train.dtype == torch.uint8
    assert test.shape == (10, 3, 32, 32)


def test_the_subset_is_the_first_images_of_each_batch_file_in_order(tmp_path: Path) -> None:
    """``--data.per_batch_file N``: the first N of each training file, file after file (the
    studies' subset is N = 1017), whatever the files hold beyond them."""
    write_cifar10(tmp_path, per_batch=20)
    whole = load_cifar10(tmp_path, "train", False)
    data = GANDataModule("cifar10", str(tmp_path), download=False, per_batch_file=7)
    expected = torch.cat([whole[i * 20:i * 20 + 7] for i in range(5)])
    assert torch.equal(data.load_images(), expected)
    assert torch.equal(load_cifar10(tmp_path, "test", False, per_batch_file=3),
                       load_cifar10(tmp_path, "test", False)[:3])
    with pytest.raises(DataError, match="more than the 20 images of"):
        load_cifar10(tmp_path, "train", False, per_batch_file=21)
    with pytest.raises(DataError, match="selects from CIFAR-10's batch files"):
        GANDataModule("imagefolder", str(tmp_path), per_batch_file=7)
    with pytest.raises(DataError, match="must be positive"):
        GANDataModule("cifar10", str(tmp_path), per_batch_file=0)


def test_cifar10_missing_names_files_without_network(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data_batch_1.*extract it into"):
        load_cifar10(tmp_path, "train", download=False)


def test_cifar10_download_failure_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match=r"downloading it failed.*URLError"):
        load_cifar10(tmp_path, "train", download=True)


def test_image_folder_recursive_resized_and_cropped(tmp_path: Path) -> None:
    write_image_folder(tmp_path, n=12, size=40)
    images = load_image_folder(tmp_path, 32)
    assert images.shape == (12, 3, 32, 32) and images.dtype == torch.uint8


def test_unreadable_images_are_skipped_with_a_counted_warning(tmp_path: Path, caplog) -> None:
    write_image_folder(tmp_path, n=6)
    (tmp_path / "class0" / "broken.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        images = load_image_folder(tmp_path, 32)
    assert images.shape[0] == 6
    assert "skipped 1 of 7" in caplog.text and "broken.png" in caplog.text


def test_a_dangling_link_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_image_folder(tmp_path / "images", n=4, size=32)
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with caplog.at_level(logging.WARNING):
        assert load_image_folder(folder).shape[0] == 4
    assert "skipped 1 links to files that do not exist" in caplog.text
    assert str(folder / "gone.png") in caplog.text


@pytest.mark.parametrize("make", ["missing", "empty", "no_images"])
def test_unusable_folders_raise(tmp_path: Path, make: str) -> None:
    root = tmp_path / "imgs"
    if make != "missing":
        root.mkdir()
    if make == "no_images":
        (root / "notes.txt").write_text("hello")
    with pytest.raises(DataError):
        load_image_folder(root, 32)


def test_batches_are_scaled_to_minus_one_one(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=8)
    dm = GANDataModule("cifar10", root=str(tmp_path), batch_size=16, download=False)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch.shape == (16, 3, 32, 32) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1 and batch.min() < -0.5 < 0.5 < batch.max()


def test_shuffling_follows_the_seed(tmp_path: Path) -> None:
    def first(seed: int) -> torch.Tensor:
        dm = GANDataModule("synthetic", batch_size=8, seed=seed)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))

    assert torch.equal(first(1), first(1)) and not torch.equal(first(1), first(2))


def test_too_few_images_for_a_batch(tmp_path: Path) -> None:
    write_image_folder(tmp_path, n=4)
    with pytest.raises(DataError, match="fewer than one batch"):
        GANDataModule("imagefolder", root=str(tmp_path), batch_size=8).setup("fit")


def test_batch_size_below_two_is_rejected() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        GANDataModule("synthetic", batch_size=1)


def test_reference_key_tracks_content_not_just_the_name(tmp_path: Path) -> None:
    a, b = write_image_folder(tmp_path / "a" / "imgs", n=6), tmp_path / "b" / "imgs"
    write_image_folder(b, n=6)
    key_a = GANDataModule("imagefolder", root=str(a)).content_key()
    assert key_a == GANDataModule("imagefolder", root=str(a)).content_key()
    assert key_a == GANDataModule("imagefolder", root=str(b)).content_key()  # same pixels
    next(b.rglob("*.png")).unlink()
    assert key_a != GANDataModule("imagefolder", root=str(b)).content_key()
    assert key_a != GANDataModule("imagefolder", root=str(a), image_size=16).content_key()


def test_image_folder_decodes_what_users_have(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """16-bit grayscale and palette PNGs become the right 8-bit RGB; symlinked folders are
    followed once (a link to a parent does not loop); an oversized image (a decompression
    bomb) is skipped with the counted warning, not a failure."""
    from PIL import Image

    real = tmp_path / "elsewhere"
    real.mkdir()
    Image.fromarray(np.full((32, 32), 32768, dtype=np.uint16)).save(real / "gray16.png")
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).convert("P").save(
        real / "palette.png")
    root = tmp_path / "data"
    root.mkdir()
    (root / "linked").symlink_to(real, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(root / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 64x64 is > 2x that: a "bomb"
    with caplog.at_level("WARNING"):
        images = load_image_folder(root, 32)
    assert images.shape == (2, 3, 32, 32)
    means = sorted(float(m) for m in images.float().mean((1, 2, 3)))
    assert means == pytest.approx([128, 200], abs=1.5)  # 32768/257, not clipped to 255
    assert "skipped 1 of 3 files" in caplog.text and "huge.png" in caplog.text


def _host_batches(images: torch.Tensor, seed: int, epoch: int, skip: int = 0,
                  batch_size: int = 8) -> list[torch.Tensor]:
    """Batches as the loader made them before images were gathered by index: the same
    sampler over a dataset of images, collated on the host."""
    from torch.utils.data import DataLoader

    from gan_mn.data import UInt8Images
    from gan_mn.data.sampler import ResumableSampler

    sampler = ResumableSampler(UInt8Images(images), seed=seed)
    sampler.resume(epoch, skip)
    return list(DataLoader(UInt8Images(images), batch_size=batch_size, sampler=sampler,
                           drop_last=True))


def test_batches_gathered_by_index_are_the_same_images_in_the_same_order() -> None:
    """The loader yields indices; the images are gathered where they live (the training
    device; here the CPU): two epochs and a resumed epoch match the host-collated
    batches image for image."""
    dm = GANDataModule("synthetic", batch_size=8, seed=3)
    dm.setup("fit")
    images = dm.load_images()
    loader = dm.train_dataloader()
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        gathered = [dm.on_after_batch_transfer(b, 0) for b in loader]
        expected = [dm.on_after_batch_transfer(b, 0) for b in _host_batches(images, 3, epoch)]
        assert len(gathered) == len(expected) == len(images) // 8
        for a, b in zip(gathered, expected, strict=True):
            assert torch.equal(a, b)
    loader.sampler.resume(1, 40)  # a resume 5 batches into epoch 1
    resumed = [dm.on_after_batch_transfer(b, 0) for b in loader]
    expected = [dm.on_after_batch_transfer(b, 0) for b in _host_batches(images, 3, 1, 40)]
    assert len(resumed) == len(expected) == len(images) // 8 - 5
    assert all(torch.equal(a, b) for a, b in zip(resumed, expected, strict=True))


def test_images_too_large_for_the_gpu_stay_on_the_host_pinned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """(A trainer on a CUDA device with little free memory, faked: no GPU needed.)"""
    from types import SimpleNamespace

    from gan_mn.data import UInt8Images
    from gan_mn.data.datamodule import Indices

    dm = GANDataModule("synthetic", batch_size=8)
    dm.setup("fit")
    fit_loop = SimpleNamespace(restarting=False)
    trainer = SimpleNamespace(world_size=1, global_rank=0, fit_loop=fit_loop,
                              strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    dm.trainer = trainer
    free = {"bytes": 10 * dm.load_images().nbytes}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free["bytes"], 0))
    loader = dm.train_dataloader()
    assert isinstance(loader.dataset, Indices) and loader.pin_memory  # indices, pinned
    free["bytes"] = dm.load_images().nbytes  # more than a quarter of what is free
    loader = dm.train_dataloader()
    assert isinstance(loader.dataset, UInt8Images) and loader.pin_memory
