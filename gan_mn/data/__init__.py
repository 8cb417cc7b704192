"""Training data: CIFAR-10 and image folders, decoded once into memory."""

from gan_mn.data.datamodule import GANDataModule, UInt8Images
from gan_mn.data.sources import DataError, load_cifar10, load_image_folder, synthetic_images

__all__ = ["DataError", "GANDataModule", "UInt8Images", "load_cifar10", "load_image_folder",
           "synthetic_images"]
