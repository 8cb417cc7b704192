"""The norm layers' argument checks, in one place (BN's, MN's, the conditional layers'
and spectral norm's): ``OptionError``s (``ValueError``) whose messages name the option."""

from __future__ import annotations

from numbers import Real
from typing import Any

from gan_mn.errors import OptionError


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_eps(eps: Any) -> float:
    if not (_number(eps) and eps > 0):
        raise OptionError(f"eps must be a positive number, got {eps!r}")
    return float(eps)


def check_momentum(momentum: Any) -> float | None:
    """A running-average factor in [0, 1], or None for a cumulative average."""
    if momentum is not None and not (_number(momentum) and 0.0 <= momentum <= 1.0):
        raise OptionError(f"momentum must be a number in [0, 1] or None, got {momentum!r}")
    return momentum


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"{name} must be true or false, got {value!r}")
    return value


def check_count(name: str, value: Any, least: int = 1) -> int:
    """An integer of at least ``least`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        kind = "a positive integer" if least == 1 else f"an integer of at least {least}"
        if least == 0:
            kind = "a non-negative integer"
        raise OptionError(f"{name} must be {kind}, got {value!r}")
    return value
