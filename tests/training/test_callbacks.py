"""The training callbacks and helpers one by one, without a Trainer run: the non-finite
watch, the RNG state, atomic checkpoint writes, the EMA's update and the preemption save
(each is also exercised end to end through ``gan-mn fit`` in tests/cli)."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from torch.optim.swa_utils import AveragedModel

from gan_mn.errors import UserError
from gan_mn.training.checkpoint_io import AtomicCheckpointIO
from gan_mn.training.ema import EMA
from gan_mn.training.finite_watch import FiniteWatch, NonFiniteError, check_state_finite
from gan_mn.training.preemption import PreemptionCheckpoint
from gan_mn.training.rng_state import RNGState


def test_the_watch_reports_the_first_non_finite_step() -> None:
    layer = nn.BatchNorm2d(2)
    watch = FiniteWatch()
    watch.observe(1, [layer], torch.tensor(0.5))
    watch.check()  # all finite: nothing to say
    watch.observe(2, [layer], torch.tensor(float("nan")))
    layer.running_mean.fill_(float("inf"))
    watch.observe(3, [layer], torch.tensor(0.5))
    with pytest.raises(NonFiniteError, match="at step 2: training stopped"):
        watch.check()


def test_a_checkpoint_with_non_finite_values_is_refused_by_name() -> None:
    state = {"a.weight": torch.ones(2), "b.running_var": torch.tensor([1.0, float("nan")]),
             "steps": torch.tensor(3)}
    with pytest.raises(NonFiniteError, match=r"at step 7 in b.running_var: .* not written"):
        check_state_finite(state, 7)
    check_state_finite({"a.weight": torch.ones(2)}, 7)


def test_the_rng_state_restores_every_generator_and_loads_weights_only(
        tmp_path: Path) -> None:
    callback = RNGState()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = callback.state_dict()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    torch.save(state, tmp_path / "rng.pt")
    callback.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def half_then_fail(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(UserError, match=r"the disk is full .* writing .*last.ckpt at step 2 "
                                        r"failed and the previous last.ckpt is intact"):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left


def test_the_ema_update_averages_floats_and_copies_the_rest() -> None:
    """First update: a copy. Then ``decay * average + (1 - decay) * live`` for floating
    tensors; integer buffers and spectral norm's vectors are copied, not averaged."""
    torch.manual_seed(0)
    live = nn.Sequential(spectral_norm(nn.Linear(3, 3)), nn.BatchNorm1d(3))
    ema = EMA(decay=0.75)
    ema._average_model = AveragedModel(live, use_buffers=True)
    ema._update(live)
    before = {k: v.clone() for k, v in ema._average_model.module.state_dict().items()}
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
        live[1].num_batches_tracked.add_(5)
        live[0].parametrizations.weight[0]._u.mul_(-1)
    ema._update(live)
    after = ema._average_model.module.state_dict()
    now = live.state_dict()
    bias = "0.bias"
    assert torch.allclose(after[bias], 0.75 * before[bias] + 0.25 * now[bias])
    assert torch.equal(after["1.num_batches_tracked"], now["1.num_batches_tracked"])
    u = "0.parametrizations.weight.0._u"
    assert torch.equal(after[u], now[u])
    assert int(ema._average_model.n_averaged) == 2


class _Trainer(SimpleNamespace):
    def save_checkpoint(self, path: Path, weights_only: bool = False) -> None:
        self.saved.append((Path(path), self.global_step))


def test_preemption_saves_after_the_step_and_on_a_late_signal(tmp_path: Path) -> None:
    callback = PreemptionCheckpoint(tmp_path)
    trainer = _Trainer(received_sigterm=False, world_size=1, global_step=3, max_steps=10,
                       saved=[])
    callback.on_train_batch_end(trainer, None, None, None, 0)  # nothing asked: no save
    assert trainer.saved == []
    trainer.received_sigterm = True
    callback.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.saved == [(tmp_path / "last.ckpt", 3)]
    callback.on_exception(trainer, None, SIGTERMException())  # saved at this step already
    assert len(trainer.saved) == 1
    trainer.global_step = 4  # the signal came after the batch end: save at the stop
    callback.on_exception(trainer, None, SIGTERMException())
    assert trainer.saved[-1] == (tmp_path / "last.ckpt", 4)
    callback.on_exception(trainer, None, RuntimeError("a crash"))  # saves nothing
    assert len(trainer.saved) == 2
    done = _Trainer(received_sigterm=False, world_size=1, global_step=10, max_steps=10,
                    saved=[])
    callback.on_train_batch_end(done, None, None, None, 0)  # the last step is saved too
    assert done.saved == [(tmp_path / "last.ckpt", 10)]
