"""Image sources decoded once into ``uint8`` tensors ``(N, 3, H, W)``.

GAN training at 32-64 px touches every image thousands of times; decoding once and
keeping uint8 in memory (150 MB for CIFAR-10) makes the loader free and gives the
metrics exactly the images the model trains on.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from gan_mn.errors import UserError

log = logging.getLogger(__name__)

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
# CIFAR-10's class names in its label order (also the sorted names of a class-per-folder
# copy of it, so such a folder's labels are CIFAR-10's)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
SYNTHETIC_CLASSES = 10
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class DataError(UserError):
    """Data that cannot be used, with a message meant for the user as is."""


def load_cifar10(root: str | Path, split: str = "train", download: bool = True,
                 per_batch_file: int | None = None) -> Tensor:
    """CIFAR-10's images (:func:`load_cifar10_labelled` without the labels)."""
    return load_cifar10_labelled(root, split, download, per_batch_file)[0]


def load_cifar10_labelled(root: str | Path, split: str = "train", download: bool = True,
                          per_batch_file: int | None = None) -> tuple[Tensor, Tensor]:
    """CIFAR-10 images of ``split`` from ``root/cifar-10-batches-py``, downloading them
    with torchvision first if they are missing and ``download`` is set; with
    ``per_batch_file``, only the first that many of each batch file, in file order
    (1,017 of each training file: the 5,085-image subset of the committed studies).

    The batch files are read directly rather than through torchvision's dataset class,
    so any data in CIFAR-10's on-disk format works (torchvision insists on the official
    checksums). Returns the images and their labels (``int64``, CIFAR-10's order)."""
    if split not in CIFAR10_FILES:
        raise DataError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
    folder = Path(root).expanduser() / CIFAR10_DIR
    missing = [name for name in CIFAR10_FILES[split] if not (folder / name).is_file()]
    if missing and download:
        _download_cifar10(Path(root).expanduser())
        missing = [name for name in CIFAR10_FILES[split] if not (folder / name).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 {split} files missing in {folder}: {', '.join(missing)} "
                        f"(download cifar-10-python.tar.gz and extract it into {root}, "
                        "or allow --data.download)")
    arrays, labels = [], []
    for name in CIFAR10_FILES[split]:
        try:
            with open(folder / name, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            classes = np.asarray(entry["labels"], dtype=np.int64)
            if classes.shape != images.shape[:1]:
                raise ValueError(f"{len(classes)} labels for {len(images)} images")
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
            raise DataError(f"{folder / name} is not a CIFAR-10 batch file ({err})") from err
        if per_batch_file is not None and per_batch_file > len(images):
            raise DataError(f"--data.per_batch_file {per_batch_file} is more than the "
                            f"{len(images)} images of {folder / name}")
        arrays.append(images[:per_batch_file])
        labels.append(classes[:per_batch_file])
    return torch.from_numpy(np.concatenate(arrays)), torch.from_numpy(np.concatenate(labels))


def _download_cifar10(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    created = next((p for p in (root, *root.parents) if p.exists()), None)
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as err:  # network errors come in many types (URLError, OSError, HTTP)
        _remove_new_dirs(root, created)  # a failed download leaves no empty data/ behind
        raise DataError(f"CIFAR-10 is not in {root / CIFAR10_DIR} and downloading it failed "
                        f"({type(err).__name__}: {err}); download cifar-10-python.tar.gz "
                        f"elsewhere and extract it into {root}") from err


def _remove_new_dirs(path: Path, existing: Path | None) -> None:
    """Remove ``path`` and its parents up to ``existing`` if they are (still) empty."""
    while path != existing and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent


def synthetic_images(count: int = 1024, image_size: int = 32, seed: int = 0) -> Tensor:
    """Smooth random colour fields (4x4 noise, bilinearly upsampled): a dataset that
    needs no download, for smoke runs and tests. Not for measuring anything."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=gen)
    fine = torch.nn.functional.interpolate(coarse, size=(image_size, image_size),
                                           mode="bilinear", align_corners=False)
    return fine.mul(255).round().to(torch.uint8)


def synthetic_labels(images: Tensor, num_classes: int = SYNTHETIC_CLASSES) -> Tensor:
    """The synthetic data's modes: its images' brightness, in ``num_classes`` bands of
    equal size (the darkest tenth is class 0), so each class is a look a conditional
    generator can learn."""
    order = images.float().mean((1, 2, 3)).argsort(stable=True)
    labels = torch.empty(len(images), dtype=torch.int64)
    labels[order] = torch.arange(len(images)) * num_classes // len(images)
    return labels


def load_image_folder(root: str | Path, image_size: int = 32) -> Tensor:
    """The images of :func:`load_image_folder_labelled`."""
    return load_image_folder_labelled(root, image_size)[0]


def load_image_folder_labelled(root: str | Path, image_size: int = 32
                               ) -> tuple[Tensor, Tensor | None, tuple[str, ...]]:
    """Every image under ``root`` (recursively, sorted by path), as RGB, resized so its
    short side is ``image_size`` and centre-cropped to a square; with their labels and
    class names when the folder has torchvision's ``ImageFolder`` layout (every image in
    a subfolder of ``root``, one per class, classes in sorted order), else ``None`` and
    no names (a flat or mixed folder has no labels).

    Files that cannot be decoded are skipped with one warning that counts and names
    them: one bad file in a scraped folder should not cost a run."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    paths, broken = _image_files(folder)
    if broken:
        shown = ", ".join(str(p) for p in broken[:3]) + (" ..." if len(broken) > 3 else "")
        log.warning("skipped %d links to files that do not exist: %s", len(broken), shown)
    if not paths:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {folder}")
    images, bad, kept = [], [], []
    for path in paths:
        try:
            with warnings.catch_warnings():  # an oversized image is one more bad file
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    images.append(_square(_rgb8(img), image_size))
                    kept.append(path)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
                Image.DecompressionBombError, Image.DecompressionBombWarning):
            bad.append(path)
    if bad:
        shown = ", ".join(str(p) for p in bad[:3]) + (" ..." if len(bad) > 3 else "")
        log.warning("skipped %d of %d files that are not readable images: %s",
                    len(bad), len(paths), shown)
    if not images:
        raise DataError(f"none of the {len(paths)} image files under {folder} could be read")
    tops = [p.relative_to(folder).parts for p in kept]
    names = tuple(sorted({parts[0] for parts in tops})) if all(len(t) > 1 for t in tops) \
        else ()
    labels = torch.tensor([names.index(t[0]) for t in tops]) if names else None
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), labels, names


def _image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image files under ``folder``, following symlinked folders (each real folder once,
    so a link to a parent does not loop), sorted by path; and the image-named links whose
    target does not exist."""
    found: list[Path] = []
    broken: list[Path] = []
    seen = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        named = [Path(top) / f for f in files if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
        found += [p for p in named if p.is_file()]
        broken += [p for p in named if p.is_symlink() and not p.exists()]
    return sorted(found), sorted(broken)


def _rgb8(img: Image.Image) -> Image.Image:
    """8-bit RGB from any mode PIL reads. High-bit-depth grayscale (16-bit PNGs open as
    ``I;16`` or ``I``) is scaled to 8 bits: ``convert("RGB")`` would clip it to white."""
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img, dtype=np.float64)
        wide = img.mode.startswith("I;16") or values.max(initial=0.0) > 255
        values = values / 257.0 if wide else values  # 65535 -> 255
        img = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))
    elif img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0  # [0, 1] floats or 0-255
        img = Image.fromarray(np.clip(np.round(values * scale), 0, 255).astype(np.uint8))
    return img.convert("RGB")


def _square(img: Image.Image, size: int) -> np.ndarray:
    """Resize the short side to ``size`` (antialiased) and centre-crop, as torchvision's
    ``Resize(size)`` + ``CenterCrop(size)`` do."""
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                         Image.Resampling.BICUBIC)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)
