"""Mixture Normalization in a model you already have: torchvision's ResNet-18, its every
BatchNorm2d converted to MixtureNorm2d in one line, trained a few steps as a CIFAR-10
classifier.

    python examples/mn_in_your_model.py                       # generated data, offline
    python examples/mn_in_your_model.py --data DIR --steps 200  # DIR/<class>/*.png

``--data`` takes any folder with one subfolder of images per class (CIFAR-10's in PNGs,
for example); without it, labelled colour fields are generated. Each step prints the loss;
the last line says how many layers became MN and the accuracy on the last batch.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
import torchvision

from gan_mn.data.sources import load_image_folder_labelled, synthetic_images, synthetic_labels
from gan_mn.norm import MixtureNorm2d


def data(folder: str | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Images in [-1, 1] with their labels, and the number of classes."""
    if folder:
        images, labels, names = load_image_folder_labelled(folder, 32)
        if labels is None:
            raise SystemExit(f"{folder}: needs one subfolder of images per class")
        classes = len(names)
    else:
        images = synthetic_images(512)
        labels, classes = synthetic_labels(images), 10
    return images.float() / 127.5 - 1.0, labels, classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a folder of class subfolders")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--components", type=int, default=3)
    parser.add_argument("--kernels", default="auto",
                        help="MN's kernels: auto (Triton on a GPU, Inductor on a CPU) or eager")
    a = parser.parse_args()
    torch.manual_seed(0)
    images, labels, classes = data(a.data)
    model = torchvision.models.resnet18(weights=None, num_classes=classes)
    model = MixtureNorm2d.convert_batchnorm(model, num_components=a.components,
                                            kernels=a.kernels)
    layers = sum(isinstance(m, MixtureNorm2d) for m in model.modules())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for step in range(a.steps):
        index = torch.randint(len(images), (a.batch_size,))
        logits = model(images[index])
        loss = F.cross_entropy(logits, labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step + 1}: loss {loss.item():.3f}")
    model.eval()  # running statistics, as BatchNorm's eval mode
    with torch.no_grad():
        accuracy = (model(images[index]).argmax(1) == labels[index]).float().mean()
    print(f"{layers} BatchNorm2d layers became MixtureNorm2d (K={a.components}); "
          f"eval accuracy on the last batch {accuracy:.2f}")


if __name__ == "__main__":
    main()
