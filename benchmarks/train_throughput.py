"""Framework overhead: the GAN LightningModule's training step vs a bare PyTorch loop.

Same models (DCGAN, BN by default), same batches, same losses and optimiser calls; the
two are timed in alternating rounds in one process and the ratio of median per-step
times is printed (target <= 1.10x). The Lightning side runs as users run it: Trainer
with a CSV logger and its per-step ``self.log`` calls, no progress bar.

    python benchmarks/train_throughput.py [--norm bn] [--batch-size 64] [--steps 30] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from gan_mn.data import GANDataModule, UInt8Images
from gan_mn.training import GAN, LOSSES


class StepTimer(pl.Callback):
    """Wall time of the last ``measured`` batches (the first ``warmup`` are excluded)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds, self.count = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and not self.start:  # batch_idx restarts per epoch
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start
        self.count = trainer.global_step - self.warmup


def lightning_round(model: GAN, dm: GANDataModule, steps: int, warmup: int) -> float:
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(max_steps=steps + warmup, logger=CSVLogger(tmp), callbacks=[timer],
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp)
        trainer.fit(model, dm)
    return timer.seconds / timer.count


def bare_round(model: GAN, images: torch.Tensor, batch_size: int, steps: int,
               warmup: int) -> float:
    """The same algorithm as GAN.training_step, written out in plain PyTorch."""
    g, d, h = model.generator, model.discriminator, model.hparams
    opt_g = torch.optim.Adam(g.parameters(), lr=h.lr_g, betas=tuple(h.betas))
    opt_d = torch.optim.Adam(d.parameters(), lr=h.lr_d, betas=tuple(h.betas))
    loader = DataLoader(UInt8Images(images), batch_size=batch_size, shuffle=True, drop_last=True)
    it = iter(loader)
    start = 0.0
    for step in range(steps + warmup):
        if step == warmup:
            start = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        real = batch.float().div_(127.5).sub_(1.0)
        fake = g(g.sample_latent(real.shape[0]))
        loss_d = LOSSES[h.loss].discriminator(d(real), d(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        d.requires_grad_(False)
        loss_g = LOSSES[h.loss].generator(d(fake))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        d.requires_grad_(True)
        loss_d.detach(), loss_g.detach()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--norm", default="bn", choices=("bn", "mn", "none"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    dm = GANDataModule("synthetic", batch_size=a.batch_size)
    images = dm.load_images()
    lightning, bare = [], []
    for r in range(a.rounds):  # alternate, so drifts in machine load hit both sides
        bare.append(bare_round(GAN(g_norm=a.norm, d_norm=a.norm, sample_every_n_steps=0),
                               images, a.batch_size, a.steps, a.warmup))
        lightning.append(lightning_round(GAN(g_norm=a.norm, d_norm=a.norm,
                                             sample_every_n_steps=0), dm, a.steps, a.warmup))
        print(f"round {r + 1}: bare {bare[-1] * 1e3:.1f} ms/step, "
              f"lightning {lightning[-1] * 1e3:.1f} ms/step, ratio {lightning[-1] / bare[-1]:.3f}")
    ratio = statistics.median(lightning) / statistics.median(bare)
    print(f"median: bare {statistics.median(bare) * 1e3:.1f} ms/step, lightning "
          f"{statistics.median(lightning) * 1e3:.1f} ms/step -> {ratio:.3f}x "
          f"(DCGAN, {a.norm}, batch {a.batch_size}, torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
