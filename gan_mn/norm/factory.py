"""``make_norm``: the one way models and configs build a normalization layer, by kind
(:data:`NORM_KINDS`, where each kind is registered once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from gan_mn.errors import OptionError
from gan_mn.norm.conditional import ConditionalBatchNorm2d, ConditionalMixtureNorm2d
from gan_mn.norm.mixture import MixtureNorm2d
from gan_mn.norm.options import check_count, check_eps, check_flag, check_momentum
from gan_mn.registry import Registry

# kind -> builder (num_features, num_classes, options) -> the layer after a convolution
NORM_KINDS: Registry[Callable[[int, int, dict[str, Any]], nn.Module]] = Registry("norm kind")
# spectral norm's options (torch.nn.utils.parametrizations.spectral_norm) and their checks
SN_OPTIONS: dict[str, Callable[[Any], object]] = {
    "n_power_iterations": lambda v: check_count("n_power_iterations", v), "eps": check_eps}


def make_norm(kind: str, num_features: int, num_classes: int = 0, **kwargs: Any) -> nn.Module:
    """Build the norm layer that follows a layer: ``"bn"`` (``nn.BatchNorm2d``), ``"mn"``
    (:class:`MixtureNorm2d`) or nothing (``nn.Identity``) for ``"none"`` and ``"sn"``
    (spectral norm acts on the layer's weight instead; ``kwargs`` are its options,
    ``n_power_iterations`` and ``eps``, checked here).

    ``kwargs`` go to the layer's constructor (e.g. ``num_components=5`` for MN);
    ``"none"`` accepts none. With ``num_classes``, ``bn`` and ``mn`` are their
    class-conditional forms (:mod:`gan_mn.norm.conditional`), whose class embeddings are
    the affine part (no ``affine`` option). Errors are ``ValueError``s naming the bad
    argument.
    """
    return NORM_KINDS[kind](num_features, num_classes, kwargs)


def _none(num_features: int, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    if kwargs:
        raise OptionError(f"norm 'none' takes no arguments, got {sorted(kwargs)}")
    return nn.Identity()


def _spectral(num_features: int, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    for key, value in kwargs.items():
        if key not in SN_OPTIONS:
            raise OptionError(f"invalid argument for norm 'sn': {key!r} (its options are "
                              f"{', '.join(SN_OPTIONS)})")
        SN_OPTIONS[key](value)
    return nn.Identity()


def _check_batchnorm(kwargs: dict[str, Any]) -> None:
    """``nn.BatchNorm2d`` checks none of its options itself (MN's layer does)."""
    check_eps(kwargs.get("eps", 1e-5))
    check_momentum(kwargs.get("momentum", 0.1))
    for flag in ("affine", "track_running_stats"):
        check_flag(flag, kwargs.get(flag, True))


def _normalizer(kind: str, plain: type[nn.Module], conditional: type[nn.Module],
                check: Callable[[dict[str, Any]], None] | None = None
                ) -> Callable[[int, int, dict[str, Any]], nn.Module]:
    def build(num_features: int, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
        if check is not None:
            check(kwargs)
        cls = plain
        if num_classes:
            refused = [k for k in ("affine", "track_running_stats") if k in kwargs]
            if refused:
                raise OptionError(f"conditional {kind}: its class embeddings are its gain "
                                  f"and bias; it takes no {refused[0]} option")
            cls, kwargs = conditional, {"num_classes": num_classes, **kwargs}
        try:
            return cls(num_features, **kwargs)
        except TypeError as err:  # an argument the layer does not have
            raise OptionError(f"invalid argument for norm {kind!r}: {err}") from None
    return build


NORM_KINDS.register("bn", _normalizer("bn", nn.BatchNorm2d, ConditionalBatchNorm2d,
                                      _check_batchnorm))
NORM_KINDS.register("mn", _normalizer("mn", MixtureNorm2d, ConditionalMixtureNorm2d))
NORM_KINDS.register("sn", _spectral)
NORM_KINDS.register("none", _none)
