"""The GAN LightningModule: steps, step counting, losses, EMA, sample grids."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

from gan_mn.data import GANDataModule
from gan_mn.labels import default_label
from gan_mn.norm import MixtureNorm2d
from gan_mn.training import EMA, GAN, LOSSES

TINY = {"z_dim": 8, "g_channels": (16, 8, 4), "d_channels": (4, 8, 16),
        "sample_every_n_steps": 0}


def fit(tmp_path: Path, model: GAN, steps: int, callbacks: list | None = None,
        batch_size: int = 8) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, callbacks=callbacks or [])
    trainer.fit(model, GANDataModule("synthetic", batch_size=batch_size))
    return trainer


@pytest.mark.slow  # trains through Lightning
@pytest.mark.parametrize(("g_norm", "d_norm"), [
    ("bn", "bn"), ("mn", "mn"), ("none", "none"), (["mn", "bn", "none"], ["none", "mn"])])
def test_one_training_step_updates_both_networks(tmp_path: Path, g_norm, d_norm) -> None:
    model = GAN(g_norm=g_norm, d_norm=d_norm, **TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = fit(tmp_path, model, steps=1)
    assert trainer.global_step == 1
    after = model.state_dict()
    for net in ("generator", "discriminator"):
        changed = [k for k in after if k.startswith(net) and "weight" in k
                   and not torch.equal(before[k], after[k])]
        assert changed, f"{net} weights did not move"
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    has_mn = any(isinstance(m, MixtureNorm2d) for m in model.modules())
    assert has_mn == ("mn" in (g_norm if isinstance(g_norm, list) else [g_norm])
                      + (d_norm if isinstance(d_norm, list) else [d_norm]))


@pytest.mark.slow  # trains through Lightning
def test_global_step_counts_generator_steps(tmp_path: Path) -> None:
    model = GAN(d_steps=2, **TINY)
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            seen.append(trainer.global_step)

    fit(tmp_path, model, steps=3, callbacks=[Spy()])
    assert seen == [0, 1, 1, 2, 2, 3]  # two discriminator batches per generator step


def test_losses_have_their_textbook_values() -> None:
    zero = torch.zeros(4)
    log2 = torch.log(torch.tensor(2.0))
    assert torch.allclose(LOSSES["ns"].discriminator(zero, zero), 2 * log2)
    assert torch.allclose(LOSSES["ns"].generator(zero), log2)
    big = torch.full((4,), 3.0)
    assert LOSSES["hinge"].discriminator(big, -big) == 0
    assert LOSSES["hinge"].generator(big) == -3
    with pytest.raises(ValueError, match="loss must be one of ns, hinge; got 'wasserstein'"):
        LOSSES["wasserstein"]


@pytest.mark.slow  # trains through Lightning
def test_the_loss_option_is_the_loss_trained(tmp_path: Path) -> None:
    """One step from the same weights, noise and batch with each loss: the
    discriminator's update differs, and with Adam's first step (each weight moves by
    -lr * sign of its gradient) matches the sign of the named loss's own gradient."""
    moved = {}
    for loss in ("ns", "hinge"):
        torch.manual_seed(0)
        model = GAN(loss=loss, **TINY)
        before = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
        fit(tmp_path / loss, model, steps=1)
        after = model.discriminator.state_dict()
        moved[loss] = {k: after[k] - before[k] for k in before if k.endswith("weight")}
    key = next(iter(moved["ns"]))
    assert not torch.equal(moved["ns"][key], moved["hinge"][key])

    torch.manual_seed(0)
    model = GAN(loss="hinge", **TINY)
    data = GANDataModule("synthetic", batch_size=8)
    data.setup("fit")
    real = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)
    fake = model.generator(model.generator.sample_latent(8))
    LOSSES["hinge"].discriminator(model.discriminator(real),
                                  model.discriminator(fake.detach())).backward()
    grad = dict(model.discriminator.named_parameters())[key].grad
    agree = torch.sign(-grad) == torch.sign(moved["hinge"][key])
    assert agree[grad.abs() > 1e-6].all()


@pytest.mark.parametrize("kwargs", [{"d_steps": 0}, {"loss": "wgan"},
                                    {"norm_kwargs": {"mn": {"num_components": 0}}},
                                    {"norm_kwargs": {"mn": {"no_such_option": 1}}},
                                    {"norm_kwargs": {"layernorm": {}}}])
def test_invalid_settings_raise_value_error(kwargs) -> None:
    with pytest.raises(ValueError):
        GAN(**{**TINY, **kwargs})


def test_labels_from_norms() -> None:
    assert default_label("bn", "bn") == "bn"
    assert default_label("mn", "bn") == "mn-g"
    assert default_label("mn", "mn") == "mn-gd"
    # norm options that are not the defaults make the name (kernels changes no result)
    assert default_label("mn", "bn", {"mn": {"num_components": 5}}) == "mn-g-k5"
    assert default_label("mn", "bn", {"mn": {"num_components": 3, "em_iters": 3,
                                             "kernels": "eager"}}) == "mn-g-em3"
    assert default_label("bn", "bn", {"mn": {"num_components": 5}}) == "bn"  # MN unused
    assert default_label("bn", "bn", {"bn": {"momentum": 0.01}}) == "bn-momentum0.01"
    assert default_label("mn", "bn", {"bn": {"momentum": 0.01}}) == "mn-g-bn-momentum0.01"
    assert default_label(["mn", "bn", "mn"], "bn") == "g-bn+mn_d-bn"


@pytest.mark.slow  # trains through Lightning
@pytest.mark.parametrize("callback", [EMAWeightAveraging, EMA])
def test_ema_generator_is_sampled_and_averages_mn_buffers(tmp_path: Path, callback: type
                                                          ) -> None:
    """The averaged MN running mean is the EMA of the live one's values after each step
    (decay 0.5: a_1 = x_1, a_t = 0.5 a_{t-1} + 0.5 x_t), with Lightning's callback and
    with gan-mn's."""
    model = GAN(g_norm="mn", **TINY)
    ema = callback(decay=0.5)
    live: list[torch.Tensor] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
            mn = next(m for m in model.generator.modules() if isinstance(m, MixtureNorm2d))
            live.append(mn.running_mean.clone())

    fit(tmp_path, model, steps=3, callbacks=[Record(), ema])
    # after fit, Lightning copies the average into the model; the averaged copy is sampled
    sampler = model.sampling_generator()
    assert sampler is ema._average_model.module.generator
    mn = next(m for m in sampler.modules() if isinstance(m, MixtureNorm2d))
    expected = live[0]
    for value in live[1:]:
        expected = 0.5 * expected + 0.5 * value
    torch.testing.assert_close(mn.running_mean, expected)
    assert not torch.equal(mn.running_mean, live[-1])


@pytest.mark.slow  # trains through Lightning
def test_sample_grid_is_written_every_n_steps(tmp_path: Path) -> None:
    model = GAN(**{**TINY, "sample_every_n_steps": 2, "num_grid_samples": 4})
    fit(tmp_path, model, steps=4)
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["step_0000002.png", "step_0000004.png"]
    assert model.training and model.generator.training  # grid sampling restored the mode


def test_only_option_errors_become_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """An option out of range is the user's mistake (exit 2 through the CLI); any other
    ValueError while building the models is a bug and stays one (its traceback kept)."""
    from gan_mn.errors import OptionError, UserError
    from gan_mn.training import module

    with pytest.raises(UserError, match="arch must be one of"):
        GAN(arch="vgg")
    assert issubclass(OptionError, ValueError) and not issubclass(OptionError, UserError)

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("an internal bug")

    monkeypatch.setattr(module, "build_models", broken)
    with pytest.raises(ValueError, match="an internal bug") as caught:
        GAN()
    assert not isinstance(caught.value, UserError)
