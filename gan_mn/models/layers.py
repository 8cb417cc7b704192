"""What every architecture family shares: per-layer norm kinds, the norm after a layer or
spectral norm on its weight, the latent a generator samples, and what class-conditional
models add (conditional norms in the generator, a projection head in the
discriminator)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_mn.errors import OptionError
from gan_mn.norm import ConditionalNorm2d, make_norm

NormSpec = str | Sequence[str]
NormKwargs = Mapping[str, Mapping[str, Any]]


def per_layer(norm: NormSpec, count: int, name: str) -> list[str]:
    """One norm kind per normalized layer: a single kind, or a list of ``count``."""
    kinds = [norm] * count if isinstance(norm, str) else list(norm)
    if len(kinds) != count:
        raise OptionError(f"{name} needs {count} norm kinds (one per layer), got {len(kinds)}")
    return kinds


def norm_after(kind: str, width: int, norm_kwargs: NormKwargs | None,
               num_classes: int = 0) -> nn.Module:
    """The norm layer after a layer of ``kind`` (``make_norm`` with that kind's arguments,
    its class-conditional form when ``num_classes``); ``sn`` normalises the layer's weight
    instead (see :class:`SpectralNorms`): none here."""
    return make_norm(kind, width, num_classes=num_classes,
                     **dict((norm_kwargs or {}).get(kind, {})))


def conditioned(layer: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """``layer(x, y)`` for a class-conditional norm, ``layer(x)`` for any other layer."""
    return layer(x, y) if isinstance(layer, ConditionalNorm2d) else layer(x)


class ConditionalSequential(nn.Sequential):
    """``nn.Sequential`` that hands the class labels to its conditional norms (the same
    modules, names and state dict as ``nn.Sequential``)."""

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        for layer in self:
            x = conditioned(layer, x, y)
        return x


def check_conditional_kinds(kinds: Sequence[str], num_classes: int) -> None:
    """A class-conditional generator takes the class through its norm layers: it needs
    at least one ``bn`` or ``mn`` layer."""
    if num_classes and not set(kinds) & {"bn", "mn"}:
        raise OptionError(f"a class-conditional generator (num_classes {num_classes}) takes "
                          "the class through its norm layers: give it bn or mn, got "
                          f"{'/'.join(sorted(set(kinds)))}")


class Projection(nn.Module):
    """The projection discriminator's class term (Miyato & Koyama, 2018):
    ``<embed(y), phi(x)>``, with ``phi(x)`` the features the head reads, summed over
    positions. Spectral norm on the embedding when the discriminator has it."""

    def __init__(self, num_classes: int, width: int, sn: SpectralNorms, kind: str) -> None:
        super().__init__()
        self.embed = sn(nn.Embedding(num_classes, width), kind)
        nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, features: Tensor, y: Tensor) -> Tensor:
        phi = features.sum((2, 3)) if features.dim() == 4 else features
        return (self.embed(y) * phi).sum(1)


class SpectralNorms:
    """The layers of a network that get spectral norm on their weight (kind ``sn``),
    applied by :meth:`apply` once the network is built and initialised: the power
    iteration then starts from the weights it will normalise, and initialising the others
    draws what it drew without spectral norm. torch's parametrization keeps its vectors
    as buffers, so checkpoints carry them."""

    def __init__(self, norm_kwargs: NormKwargs | None) -> None:
        self.options = dict((norm_kwargs or {}).get("sn", {}))
        self.layers: list[nn.Module] = []

    def __call__(self, layer: nn.Module, kind: str) -> nn.Module:
        if kind == "sn":
            self.layers.append(layer)
        return layer

    def apply(self) -> None:
        for layer in self.layers:
            spectral_norm(layer, **self.options)


def edge_kind(kinds: Sequence[str]) -> str:
    """The kind for a network's layers outside the per-layer list (its input and output
    layers): ``sn`` when every listed layer is ``sn`` (spectral norm on the whole network,
    as SNGAN does), otherwise none."""
    return "sn" if kinds and all(k == "sn" for k in kinds) else "none"


class LatentGenerator(nn.Module):
    """A generator of images from standard normal latents ``(N, z_dim)`` and, when
    class-conditional (``num_classes`` > 0), their class labels ``(N,)``."""

    def __init__(self, z_dim: int, num_classes: int = 0) -> None:
        super().__init__()
        if z_dim < 1:
            raise OptionError(f"z_dim must be positive, got {z_dim}")
        check_num_classes(num_classes)
        self.z_dim = z_dim
        self.num_classes = num_classes

    def sample_latent(self, n: int, device: torch.device | str | None = None) -> Tensor:
        """Standard normal latents for ``n`` images."""
        return torch.randn(n, self.z_dim, device=device)

    def sample_labels(self, n: int, device: torch.device | str | None = None,
                      generator: torch.Generator | None = None) -> Tensor | None:
        """Uniform class labels for ``n`` images (from the global RNG unless ``generator``
        is given, so they are seeded and resumed as the latents are); None when
        unconditional."""
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, (n,), device=device, generator=generator)

    def check_labels(self, y: Tensor | None) -> None:
        if self.num_classes and y is None:
            raise ValueError(f"this generator is class-conditional ({self.num_classes} "
                             "classes): call it with labels")
        if not self.num_classes and y is not None:
            raise ValueError("this generator is unconditional: it takes no labels")


def check_projection(projection: nn.Module | None, y: Tensor | None) -> None:
    """A class-conditional discriminator needs the labels; an unconditional one takes
    none."""
    if projection is not None and y is None:
        raise ValueError("this discriminator is class-conditional: call it with labels")
    if projection is None and y is not None:
        raise ValueError("this discriminator is unconditional: it takes no labels")


def check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise OptionError(f"num_classes must be 0 (unconditional) or a positive number of "
                          f"classes, got {num_classes!r}")
