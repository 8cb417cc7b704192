"""``make_norm``: the one way models and configs build a normalization layer."""

from __future__ import annotations

from typing import Any

from torch import nn

from gan_mn.norm.mixture import MixtureNorm2d

NORM_KINDS = ("bn", "mn", "none")


def make_norm(kind: str, num_features: int, **kwargs: Any) -> nn.Module:
    """Build ``"bn"`` (``nn.BatchNorm2d``), ``"mn"`` (:class:`MixtureNorm2d`) or ``"none"``.

    ``kwargs`` go to the layer's constructor (e.g. ``num_components=5`` for MN);
    ``"none"`` accepts none. Errors are ``ValueError``s naming the bad argument.
    """
    if kind not in NORM_KINDS:
        raise ValueError(f"norm kind must be one of {', '.join(NORM_KINDS)}; got {kind!r}")
    if kind == "none":
        if kwargs:
            raise ValueError(f"norm 'none' takes no arguments, got {sorted(kwargs)}")
        return nn.Identity()
    cls = nn.BatchNorm2d if kind == "bn" else MixtureNorm2d
    try:
        return cls(num_features, **kwargs)
    except TypeError as err:  # an argument the layer does not have
        raise ValueError(f"invalid argument for norm {kind!r}: {err}") from None
