"""The data's classes: CIFAR-10's labels (of the subset too), an image folder's class
subfolders (a flat or mixed folder has none), the synthetic data's brightness bands; a
class-conditional data module yields ``(images, labels)`` and refuses data without labels
or with another number of classes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

from gan_mn.data import DataError, GANDataModule
from gan_mn.data.sources import (
    CIFAR10_CLASSES,
    load_cifar10_labelled,
    load_image_folder_labelled,
    synthetic_images,
    synthetic_labels,
)
from tests.helpers.fakes import smooth_images, write_cifar10, write_class_folder, write_image_folder


def test_cifar10_labels_follow_their_images_into_the_subset(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=20)
    images, labels = load_cifar10_labelled(tmp_path, "train", False)
    assert labels.dtype == torch.int64 and labels.shape == (100,)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        assert labels[20:40].tolist() == pickle.load(f)["labels"]
    sub_images, sub_labels = load_cifar10_labelled(tmp_path, "train", False, per_batch_file=7)
    keep = torch.cat([torch.arange(i * 20, i * 20 + 7) for i in range(5)])
    assert torch.equal(sub_images, images[keep]) and torch.equal(sub_labels, labels[keep])
    data = GANDataModule("cifar10", str(tmp_path), download=False, num_classes=10)
    data.load_images()
    assert torch.equal(data.labels, labels) and data.class_names == CIFAR10_CLASSES


def test_an_image_folder_has_the_classes_of_its_subfolders(tmp_path: Path) -> None:
    """Every image under a subfolder (nested deeper too) is of that subfolder's class,
    classes in sorted order; an unreadable file drops out with its label."""
    write_image_folder(tmp_path / "nested")  # class0..class2, some one folder deeper
    (tmp_path / "nested" / "class1" / "broken.png").write_bytes(b"not an image")
    images, labels, names = load_image_folder_labelled(tmp_path / "nested")
    assert names == ("class0", "class1", "class2") and len(labels) == len(images) == 48
    assert torch.bincount(labels).tolist() == [16, 16, 16]
    paths = sorted(p for p in (tmp_path / "nested").rglob("img*"))
    assert labels.tolist() == [int(p.relative_to(tmp_path / "nested").parts[0][-1])
                               for p in paths]


@pytest.mark.parametrize("layout", ["flat", "mixed"])
def test_a_folder_with_images_outside_class_subfolders_has_no_labels(
        tmp_path: Path, layout: str) -> None:
    for i, image in enumerate(smooth_images(4)):
        sub = tmp_path / ("a" if layout == "mixed" and i % 2 else "")
        sub.mkdir(exist_ok=True)
        Image.fromarray(image).save(sub / f"{i}.png")
    images, labels, names = load_image_folder_labelled(tmp_path)
    assert len(images) == 4 and labels is None and names == ()
    with pytest.raises(DataError, match=r"--model.num_classes 3 needs labelled data, and "
                                        "imagefolder .* has no labels"):
        GANDataModule("imagefolder", str(tmp_path), batch_size=2, num_classes=3).load_images()


def test_the_synthetic_classes_are_ten_equal_brightness_bands() -> None:
    images = synthetic_images(1024)
    labels = synthetic_labels(images)
    assert set(torch.bincount(labels).tolist()) == {102, 103}  # 1,024 in 10 bands
    brightness = images.float().mean((1, 2, 3))
    for c in range(9):  # every image of a class is darker than every image of the next
        assert brightness[labels == c].max() <= brightness[labels == c + 1].min()


def test_a_conditional_data_module_yields_images_with_their_labels(tmp_path: Path) -> None:
    write_class_folder(tmp_path, ("cat", "dog", "emu"), per_class=4)
    data = GANDataModule("imagefolder", str(tmp_path), batch_size=4, num_classes=3)
    data.setup("fit")
    batches = [data.on_after_batch_transfer(b, 0) for b in data.train_dataloader()]
    seen = torch.cat([labels for _, labels in batches])
    assert sorted(seen.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    for images, labels in batches:  # each label is its image's
        for image, label in zip(images, labels, strict=True):
            index = int(((data.images.float() / 127.5 - 1) - image).abs().flatten(1)
                        .sum(1).argmin())
            assert data.labels[index] == label
    plain = GANDataModule("imagefolder", str(tmp_path), batch_size=4)
    plain.setup("fit")
    assert isinstance(plain.on_after_batch_transfer(next(iter(plain.train_dataloader())), 0),
                      torch.Tensor)


def test_another_number_of_classes_than_the_data_has_is_refused(tmp_path: Path) -> None:
    write_class_folder(tmp_path, ("cat", "dog"), per_class=2)
    with pytest.raises(DataError, match=r"--model.num_classes is 10, but imagefolder .* has "
                                        "2 classes"):
        GANDataModule("imagefolder", str(tmp_path), batch_size=2, num_classes=10).load_images()
    with pytest.raises(DataError, match="num_classes must be 0 or a positive number"):
        GANDataModule("synthetic", num_classes=-1)
