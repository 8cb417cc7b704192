"""make_norm builds every kind by name and rejects bad names and arguments clearly."""

from __future__ import annotations

import pytest
from torch import nn

from gan_mn.norm import MixtureNorm2d, make_norm


def test_builds_each_kind() -> None:
    bn = make_norm("bn", 8, momentum=0.2)
    assert isinstance(bn, nn.BatchNorm2d) and bn.momentum == 0.2
    mn = make_norm("mn", 8, num_components=5, eps=1e-3)
    assert isinstance(mn, MixtureNorm2d) and mn.num_components == 5 and mn.eps == 1e-3
    assert isinstance(make_norm("none", 8), nn.Identity)


@pytest.mark.parametrize(("kind", "kwargs", "match"), [
    ("gn", {}, "norm kind"),
    ("BN", {}, "norm kind"),
    ("bn", {"num_components": 3}, "num_components"),
    ("mn", {"bogus": 1}, "bogus"),
    ("none", {"eps": 1e-5}, "none"),
    ("mn", {"num_components": 0}, "num_components"),
])
def test_rejects_bad_requests(kind: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_norm(kind, 8, **kwargs)
