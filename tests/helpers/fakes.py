"""Offline stand-ins for real data and networks: CIFAR-10's on-disk format, image
folders, and a tiny torch-fidelity feature extractor (see tiny_extractor.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

TINY_EXTRACTOR = str(Path(__file__).with_name("tiny_extractor.py"))


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 colour fields with some structure (not noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 4, 4, 3))
    idx = np.arange(size) * 4 // size
    return (coarse[:, idx][:, :, idx] * 255).astype(np.uint8)


def write_cifar10(root: Path, per_batch: int = 40) -> Path:
    """CIFAR-10's python format (5 train batches + test) with generated images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        images = smooth_images(per_batch, seed=i).transpose(0, 3, 1, 2).reshape(per_batch, -1)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": images, "labels": [j % 10 for j in range(per_batch)]}, f)
    return root


def write_image_folder(root: Path, n: int = 48, size: int = 40) -> Path:
    """``n`` PNG/JPEG images in nested class folders, not all square."""
    for i, image in enumerate(smooth_images(n, size, seed=7)):
        sub = root / f"class{i % 3}" / ("deep" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(image)
        if i % 4 == 0:
            img = img.resize((size + 8, size))  # a wide one: centre-cropped
        img.save(sub / f"img{i:03d}.{'jpg' if i % 5 == 0 else 'png'}")
    return root


def write_class_folder(root: Path, names: tuple[str, ...], per_class: int = 8) -> Path:
    """``per_class`` PNG images in one subfolder per class name (torchvision's
    ``ImageFolder`` layout)."""
    images = smooth_images(per_class * len(names), seed=3)
    for i, image in enumerate(images):
        sub = root / names[i % len(names)]
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"img{i:03d}.png")
    return root
