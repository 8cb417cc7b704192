"""The graph-safe GAN step (``cuda_graph=True``) run eagerly, as on a CPU: the same update
as the plain step, bit for bit, with no host read in it; and the EMA callback against
Lightning's."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging

from gan_mn.data import GANDataModule
from gan_mn.training import EMA, GAN
from gan_mn.training.step import CapturedStep
from tests.helpers.reads import HostReads

TINY = {"z_dim": 8, "g_channels": (16, 8, 4), "d_channels": (4, 8, 16),
        "sample_every_n_steps": 0, "norm_kwargs": {"mn": {"kernels": "eager"}}}


def _train(tmp_path: Path, steps: int, callbacks: list[Callback], **model: object) -> GAN:
    torch.manual_seed(0)
    gan = GAN(**{**TINY, **model})
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, callbacks=callbacks)
    trainer.fit(gan, GANDataModule("synthetic", batch_size=8))
    return gan


class RecordCapturedStep(Callback):
    """Records the host reads made inside the captured step (from the second call on:
    the first initialises Adam's state)."""

    def __init__(self) -> None:
        self.reads = HostReads()
        self.adam_steps: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: object, batch_idx: int) -> None:
        captured = pl_module._captured
        if captured is not None and not hasattr(captured, "recorded"):
            fn = captured.fn
            reads = self.reads

            def recorded(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
                if captured.calls == 0:
                    return fn(*inputs)
                with reads:
                    return fn(*inputs)

            captured.fn, captured.recorded = recorded, True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.adam_steps = [s["step"] for opt in trainer.optimizers for s in opt.state.values()]


@pytest.mark.slow  # trains through Lightning
@pytest.mark.parametrize("ema", [False, True])
@pytest.mark.parametrize("g_norm", ["bn", "mn"])
def test_graph_safe_step_equals_the_plain_step(tmp_path: Path, g_norm: str, ema: bool) -> None:
    runs = []
    for graphed in (False, True):
        callbacks: list[Callback] = [EMA(decay=0.9)] if ema else []
        recorder = RecordCapturedStep()
        gan = _train(tmp_path / str(graphed), 10, [*callbacks, recorder], g_norm=g_norm,
                     cuda_graph=graphed)
        assert isinstance(gan._captured, CapturedStep) == graphed
        state = gan.state_dict()
        if ema:
            state |= {f"ema.{k}": v for k, v in callbacks[0]._average_model.state_dict().items()}
        runs.append(state)
        if graphed:
            assert gan._captured.calls == 10
            # Adam's step counts are CPU tensors (torch refuses capturable Adam on a CPU;
            # on a GPU they live on the device): reading them waits for nothing
            others = [r for r in recorder.reads.reads
                      if not any(r.tensor is s for s in recorder.adam_steps)]
            assert not others, [(r.op, r.stack[-3:]) for r in others]
            assert recorder.reads.reads  # the recorder saw the step (Adam's reads)
    assert runs[0].keys() == runs[1].keys()
    for key, value in runs[0].items():
        assert torch.equal(value, runs[1][key]), key


@pytest.mark.slow  # trains through Lightning
def test_ema_averages_as_lightnings_and_copies_counters(tmp_path: Path) -> None:
    """Floating-point tensors: bit for bit Lightning's ``EMAWeightAveraging``. Counters and
    flags are copied (``AveragedModel`` averages and truncates them)."""
    averages = []
    for callback in (EMAWeightAveraging(decay=0.7), EMA(decay=0.7)):
        gan = _train(tmp_path / type(callback).__name__, 4, [callback], g_norm="mn")
        averages.append(callback._average_model)
    theirs, ours = (dict(a.module.state_dict()) for a in averages)
    for key, value in ours.items():
        if value.is_floating_point():
            assert torch.equal(value, theirs[key]), key
    assert int(averages[1].n_averaged) == int(averages[0].n_averaged) == 4
    tracked = "generator.net.1.num_batches_tracked"
    assert int(ours[tracked]) == int(gan.state_dict()[tracked]) == 4
    assert bool(ours["generator.net.1.em_seeded"])


FAMILIES = {
    "sngan": {"arch": "sngan", "g_channels": (16, 8, 8, 4), "d_channels": (4, 8, 8),
              "d_norm": "sn", "loss": "hinge"},
    "resnet": {"arch": "resnet", "g_channels": (8, 8, 8, 8), "d_channels": (8, 8, 8, 8),
               "d_norm": "sn", "loss": "hinge"},
    "dcgan": {},
}


@pytest.mark.slow  # trains through Lightning
@pytest.mark.parametrize("d_steps", [1, 5])
@pytest.mark.parametrize("g_norm", ["bn", "mn"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_graph_safe_step_equals_the_plain_step_for_every_family(
        tmp_path: Path, family: str, g_norm: str, d_steps: int) -> None:
    """Several D steps per G step (a second graph for the batches of D alone), spectral
    norm, the ResNet, and the default (non-capturable) Adam on both sides."""
    states = []
    for graphed in (False, True):
        gan = _train(tmp_path / str(graphed), 4, [], g_norm=g_norm, cuda_graph=graphed,
                     d_steps=d_steps, **FAMILIES[family])
        if graphed:
            assert gan._captured.calls == 4
            assert gan._captured_d.calls == 4 * (d_steps - 1)
        states.append(gan.state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


@pytest.mark.slow  # trains through Lightning
def test_ema_copies_spectral_norm_vectors_and_averages_the_weights(tmp_path: Path) -> None:
    """(Checked during training: at the end of fit Lightning copies the average into the
    model.)"""
    ema = EMA(decay=0.9)
    seen: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    class Look(Callback):  # after the EMA's update (callbacks run in order)
        def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule,
                               *args: object) -> None:
            if trainer.global_step == 3:
                seen.append(({k: v.clone() for k, v in module.state_dict().items()},
                             ema._average_model.module.state_dict()))

    _train(tmp_path, 3, [ema, Look()], arch="sngan", g_channels=(16, 8, 8, 8),
           d_channels=(8, 8, 8), d_norm="sn", loss="hinge")
    (live, average), = seen
    vectors = [k for k in live if k.endswith(("._u", "._v"))]
    assert len(vectors) == 8
    for key in vectors:  # unit vectors, the live ones
        assert torch.equal(average[key], live[key])
        torch.testing.assert_close(average[key].norm(), torch.tensor(1.0))
    original = "discriminator.net.0.parametrizations.weight.original"
    assert not torch.equal(average[original], live[original])  # the weights are averaged
