"""``FiniteWatch``: a stop, without saving, on non-finite losses or statistics, found on the
device without a host read per step."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class NonFiniteError(RuntimeError):
    """Training produced NaN/Inf; the run stops without writing a checkpoint."""


class FiniteWatch:
    """Tracks, on the device and without a host sync, the first step at which a loss or
    a normalization statistic stopped being finite; ``check`` reads it back."""

    def __init__(self) -> None:
        self.first_bad: Tensor | None = None

    def observe(self, step: int, modules: list[nn.Module], *losses: Tensor) -> None:
        # one concatenation and one test, whatever the number of buffers: a few launches
        values = [t.detach().float().reshape(-1) for m in modules for t in m.buffers()
                  if t.is_floating_point()]
        values += [loss.detach().float().reshape(-1) for loss in losses]
        bad = ~torch.isfinite(torch.cat(values)).all()
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.long, device=bad.device)
        self.first_bad = torch.where(bad & (self.first_bad < 0), step, self.first_bad)

    def check(self) -> None:
        if self.first_bad is not None and (step := int(self.first_bad)) >= 0:
            raise NonFiniteError(
                f"non-finite loss or normalization statistics at step {step}: training "
                "stopped and no checkpoint was written after it")


def check_state_finite(state_dict: dict[str, Tensor], step: int) -> None:
    """Refuse to write a checkpoint holding NaN/Inf weights or statistics (one host read
    per checkpoint; the names are looked up only when something is wrong)."""
    floats = {k: v for k, v in state_dict.items() if isinstance(v, Tensor) and
              v.is_floating_point()}
    if not floats or bool(torch.stack([torch.isfinite(v).all() for v in floats.values()]).all()):
        return
    bad = [k for k, v in floats.items() if not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteError(f"non-finite values at step {step} in {', '.join(bad[:3])}"
                             f"{' ...' if len(bad) > 3 else ''}: training stopped and this "
                             "checkpoint was not written")
