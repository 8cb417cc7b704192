"""LightningDataModule for GAN training: CIFAR-10 or any image folder, in ``[-1, 1]``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from gan_mn.data.sampler import ResumableSampler
from gan_mn.data.sources import (
    CIFAR10_CLASSES,
    SYNTHETIC_CLASSES,
    DataError,
    load_cifar10,
    load_cifar10_labelled,
    load_image_folder_labelled,
    synthetic_images,
    synthetic_labels,
)


class UInt8Images(Dataset):
    """Indexable view of a ``uint8`` image tensor (with its labels, ``(image, label)``
    pairs, when given); conversion to float happens per batch on the training device
    (see ``GANDataModule.on_after_batch_transfer``)."""

    def __init__(self, images: Tensor, labels: Tensor | None = None) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    @override
    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, Tensor]:
        if self.labels is None:
            return self.images[index]
        return self.images[index], self.labels[index]


class Indices(Dataset):
    """The indices ``0 .. n-1``: batches of image indices, gathered from the images where
    they live (see ``GANDataModule.on_after_batch_transfer``)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    @override
    def __getitem__(self, index: int) -> int:
        return index


# The share of a GPU's free memory the training images may take there.
DEVICE_SHARE = 0.25


class GANDataModule(pl.LightningDataModule):
    """Training images for the GAN.

    Args:
        dataset: ``cifar10`` (torchvision download into ``root`` on first use) or
            ``imagefolder`` (every image under ``root``, recursively) or ``synthetic``
            (1,024 generated colour fields: no data needed, for smoke runs and tests).
        root: where the data is (or goes, for CIFAR-10).
        split: CIFAR-10 split; ignored for image folders.
        image_size: side of the square images the models see (CIFAR-10 is 32).
        batch_size: real images per discriminator step.
        num_workers: DataLoader workers; images are in memory, so 0 is usually fastest.
        download: allow downloading CIFAR-10 when it is missing.
        per_batch_file: CIFAR-10 only: the first this many images of each batch file
            (1017 for the training split: the 5,085-image subset the committed studies
            were trained on).
        seed: seeds the shuffling order, independently of the global seed.
        num_classes: 0, or the classes of a class-conditional model (set from
            ``--model.num_classes``): batches are then ``(images, labels)``, and the data
            must have labels and that many classes. Labels: CIFAR-10's; an image folder's
            subfolders (one per class, sorted); the synthetic data's 10 brightness bands.
    """

    def __init__(self, dataset: Literal["cifar10", "imagefolder", "synthetic"] = "cifar10",
                 root: str = "data", split: Literal["train", "test"] = "train",
                 image_size: int = 32, batch_size: int = 64, num_workers: int = 0,
                 download: bool = True, per_batch_file: int | None = None,
                 seed: int = 0, num_classes: int = 0) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) \
                or num_classes < 0:
            raise DataError(f"num_classes must be 0 or a positive number, got {num_classes!r}")
        if per_batch_file is not None and dataset != "cifar10":
            raise DataError(f"--data.per_batch_file selects from CIFAR-10's batch files; "
                            f"the dataset is {dataset!r}")
        if per_batch_file is not None and per_batch_file < 1:
            raise DataError(f"--data.per_batch_file must be positive, got {per_batch_file}")
        if batch_size < 2:
            raise DataError(f"batch_size must be at least 2 (BN/MN need a batch), "
                             f"got {batch_size}")
        if image_size < 1:
            raise DataError(f"image_size must be positive, got {image_size}")
        if num_workers < 0:
            raise DataError(f"num_workers must be >= 0, got {num_workers}")
        self.save_hyperparameters()
        self.images: Tensor | None = None
        self.labels: Tensor | None = None  # the images' classes, where the data has them
        self.class_names: tuple[str, ...] = ()
        self._content_key: str | None = None
        self._on_device: dict[torch.device, Tensor] = {}  # the images where batches gather
        self._labels_on: dict[torch.device, Tensor] = {}  # and their labels

    def load_images(self) -> Tensor:
        """The whole dataset as ``uint8`` ``(N, 3, S, S)``, loaded once."""
        if self.images is None:
            h = self.hparams
            if h.dataset == "cifar10":
                if h.image_size != 32:
                    raise DataError(f"CIFAR-10 images are 32x32; image_size={h.image_size} "
                                    "is not supported for it")
                images, self.labels = load_cifar10_labelled(h.root, h.split, h.download,
                                                            h.per_batch_file)
                self.class_names = CIFAR10_CLASSES
            elif h.dataset == "imagefolder":
                images, self.labels, self.class_names = load_image_folder_labelled(
                    h.root, h.image_size)
            elif h.dataset == "synthetic":
                images = synthetic_images(1024, h.image_size)
                self.labels = synthetic_labels(images)
                self.class_names = tuple(str(c) for c in range(SYNTHETIC_CLASSES))
            else:
                raise DataError(f"unknown dataset {h.dataset!r} (cifar10, imagefolder, synthetic)")
            self._check_classes()
            self.images = images
        return self.images

    def _check_classes(self) -> None:
        """A class-conditional run needs labelled data with as many classes as its model."""
        wanted = self.hparams.num_classes
        if not wanted:
            return
        if self.labels is None:
            raise DataError(f"--model.num_classes {wanted} needs labelled data, and "
                            f"{self.source_label()} has no labels (an image folder needs "
                            "one subfolder per class, with every image inside one)")
        if len(self.class_names) != wanted:
            raise DataError(f"--model.num_classes is {wanted}, but {self.source_label()} has "
                            f"{len(self.class_names)} classes")

    @property
    def conditional(self) -> bool:
        return bool(self.hparams.num_classes)

    @override
    def prepare_data(self) -> None:
        if self.hparams.dataset == "cifar10":  # download once, on one process
            load_cifar10(self.hparams.root, self.hparams.split, self.hparams.download)

    @override
    def setup(self, stage: str) -> None:
        n = self.load_images().shape[0]
        if n < self.hparams.batch_size:
            images = "image" if n == 1 else "images"
            raise DataError(f"{self.source_label()} has {n} {images}, fewer than one batch "
                            f"({self.hparams.batch_size})")

    @override
    def train_dataloader(self) -> DataLoader:
        """Shuffled by (seed, epoch); on a resume, continues the interrupted epoch where the
        checkpoint left it, so a resumed run sees the batches an uninterrupted one would.

        The loader yields batches of image indices: the images live on the training
        device (on a GPU, if they take at most a quarter of its free memory; CIFAR-10
        is 150 MB) and each batch is gathered there, with no copy of images per step.
        Images too large for the GPU stay in host memory: the loader yields the images
        themselves, pinned for an asynchronous copy. The order is the same either way.
        """
        h = self.hparams
        trainer = self.trainer  # None outside a Trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        images = self.load_images()
        gather = device.type != "cuda" or images.nbytes <= DEVICE_SHARE * \
            torch.cuda.mem_get_info(device)[0]
        dataset = Indices(images.shape[0]) if gather else \
            UInt8Images(images, self.labels if self.conditional else None)
        sampler = ResumableSampler(dataset, seed=h.seed, num_replicas=world, rank=rank)
        if trainer is not None and trainer.fit_loop.restarting:
            # The epoch in progress (epochs processed so far) and its batches done. (Not
            # Lightning's "epochs ready": after a resume from the end of an epoch it counts
            # one epoch fewer, so a second resume would restart the epoch it was inside.)
            epoch = trainer.fit_loop.epoch_progress.current.processed
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed * h.batch_size
            if done >= len(sampler):  # stopped after an epoch's last batch: the next is due
                epoch, done = epoch + 1, 0
            sampler.resume(epoch, done)
        # Its own generator: creating loader iterators must not draw on the global RNG
        # (the training noise), or resumed and uninterrupted runs would diverge.
        return DataLoader(dataset, batch_size=h.batch_size, sampler=sampler, drop_last=True,
                          generator=torch.Generator().manual_seed(h.seed),
                          num_workers=h.num_workers, persistent_workers=h.num_workers > 0,
                          pin_memory=device.type == "cuda")

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int
                                ) -> Tensor | tuple[Tensor, Tensor]:
        """A batch of indices gathered from the images (and labels) on its device (copied
        there once), or a batch of images (and labels); uint8 ``[0, 255]`` -> float
        ``[-1, 1]``, on the device. Class-conditional: ``(images, labels)``."""
        labels = None
        if isinstance(batch, (tuple, list)):
            batch, labels = batch
        elif batch.dtype == torch.int64:
            if batch.device not in self._on_device:
                self._on_device[batch.device] = self.load_images().to(batch.device)
                if self.conditional:
                    self._labels_on[batch.device] = self.labels.to(batch.device)
            if self.conditional:
                labels = self._labels_on[batch.device].index_select(0, batch)
            batch = self._on_device[batch.device].index_select(0, batch)
        images = batch.float().div_(127.5).sub_(1.0)
        return images if labels is None else (images, labels)

    # --- what the metrics need: the reference images and a key that identifies them ---
    def source_label(self) -> str:
        """Where the images come from, for people: ``cifar10-train (data)``, ``imagefolder
        DIR`` or ``synthetic`` (in evaluate's record and messages)."""
        h = self.hparams
        if h.dataset == "cifar10":
            return f"cifar10-{h.split} ({h.root})"
        return f"imagefolder {h.root}" if h.dataset == "imagefolder" else "synthetic"

    def content_key(self) -> str:
        """The reference-statistics cache key: identifies the images by content (a hash
        of the decoded pixels) as well as by name, so two datasets, splits, sizes or edits
        never share a key."""
        h = self.hparams
        name = {"cifar10": f"cifar10-{h.split}", "synthetic": "synthetic"}.get(
            h.dataset, Path(h.root).expanduser().resolve().name)
        return f"{name}-{self.content_digest()}"

    def content_digest(self) -> str:
        """The images alone, wherever they are: size, count and a hash of the decoded
        pixels (a folder moved elsewhere keeps it; other images do not)."""
        if self._content_key is None:  # hashing 150 MB once per run is enough
            images = self.load_images()
            digest = hashlib.sha1(images.numpy().tobytes()).hexdigest()[:12]
            self._content_key = f"{images.shape[-1]}px-{images.shape[0]}-{digest}"
        return self._content_key

    @override
    def state_dict(self) -> dict[str, Any]:
        """What the checkpoint records of the data: its content, so that a resume can
        refuse other images."""
        return {"content": self.content_digest()}

    def metric_suffix(self) -> str:
        """The reference's short name in metric keys (``fid10k_<this>``): the CIFAR-10
        split, an image folder's name, or ``train`` for the synthetic data."""
        h = self.hparams
        if h.dataset == "imagefolder":
            return Path(h.root).expanduser().resolve().name
        return h.split if h.dataset == "cifar10" else "train"
