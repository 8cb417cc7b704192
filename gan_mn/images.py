"""Image helpers shared by training and metrics: ``[-1, 1]`` -> uint8, PNG grids, loggers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid

from gan_mn.files import atomic_write, image_format


def to_uint8(images: Tensor) -> Tensor:
    """Generator output in ``[-1, 1]`` to ``uint8`` ``[0, 255]`` (rounded, clamped)."""
    return images.detach().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def grid_image(images: Tensor, per_row: int | None = None) -> Tensor:
    """A ``uint8`` grid ``(3, H, W)`` of ``images`` (uint8, or floats in ``[-1, 1]``):
    ``per_row`` images per row (a class grid: one row per class), near-square by
    default."""
    nrow = per_row or max(1, math.ceil(math.sqrt(images.shape[0])))
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    return make_grid(images.cpu(), nrow=nrow, padding=2)


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write a ``uint8`` ``(3, H, W)`` image atomically (temporary file, then rename,
    which never leaves a half-written file, nor the temporary one), creating the folder,
    in the format the suffix names (PNG for training's own files)."""
    from PIL import Image

    fmt = image_format(path)
    pixels = Image.fromarray(image.permute(1, 2, 0).numpy())
    return atomic_write(path, lambda tmp: pixels.save(tmp, format=fmt))


def log_image(loggers: Iterable[Any], key: str, path: Path, step: int) -> None:
    """Send a saved image to every logger that takes images, through Lightning's logger
    API (``log_image`` on WandbLogger and others, ``add_image`` on TensorBoard)."""
    for logger in loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)], step=step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):
            from PIL import Image

            with Image.open(path) as img:
                array = torch.from_numpy(np.asarray(img)).permute(2, 0, 1)
            logger.experiment.add_image(key, array, global_step=step)
