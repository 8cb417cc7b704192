"""Model widths and image sizes: what the models can make trains, the rest is one line
naming the option and the sizes, exit 2, nothing written (through the entry point)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan_mn.cli import main
from tests.helpers.cli import EAGER_MN, SMOKE, error

QUIET = [*EAGER_MN, "--wandb.mode", "disabled", "--trainer.enable_progress_bar", "false"]


@pytest.mark.parametrize(("options", "message"), [
    (["--model.arch", "sngan", "--model.d_norm", "sn"],
     "--model.g_channels has 3 widths: the sngan generator makes 4 x 2^2 = 16-pixel images, "
     "but --data.image_size is 32 (give 4 widths"),
    (["--model.arch", "resnet"],  # trained 16-px images against 32-px data before
     "the resnet generator makes 4 x 2^2 = 16-pixel images, but --data.image_size is 32"),
    (["--model.arch", "sngan", "--model.g_channels", "[32, 16, 8, 8]",
      "--model.d_channels", "[8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]"],
     "--model.d_channels has 13 widths: the SNGAN discriminator halves the image 6 times"),
    (["--model.g_channels", "[0, 16, 8]"],
     "--model.g_channels must be a list of positive integers, got [0, 16, 8]"),
    (["--model.d_channels", "[-1, 16, 32]"],
     "--model.d_channels must be a list of positive integers, got [-1, 16, 32]"),
    (["--model.arch", "resnet", "--model.g_channels", "[16, 16, 0, 16]"],
     "--model.g_channels must be a list of positive integers"),
])
def test_widths_are_checked_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str],
        message: str) -> None:
    out = tmp_path / "out"
    assert main(["fit", "-c", SMOKE, "--output_dir", str(out), *QUIET, *options]) == 2
    assert message in error(capsys)
    assert not out.exists()


@pytest.mark.slow  # trains through Lightning
def test_widths_that_fit_train_in_a_directory_named_for_the_family(tmp_path: Path) -> None:
    """The smoke-sized SNGAN: 4 generator widths make 32 pixels. Its run directory names
    the family, so it never meets (or --overwrite deletes) the DCGAN smoke run."""
    assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path), *QUIET,
                 "--model.arch", "sngan", "--model.g_channels", "[32, 16, 8, 8]",
                 "--model.d_channels", "[8, 16, 16]", "--model.d_norm", "sn",
                 "--trainer.max_steps", "1", "--model.sample_every_n_steps", "0"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["sngan-smoke-seed0"]


@pytest.mark.parametrize("size", [16, pytest.param(64, marks=pytest.mark.slow)])  # (64 trains)
def test_image_sizes_of_the_dcgan_family(tmp_path: Path, size: int,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """64 pixels trains with one more block on each side; sizes the models cannot make
    are refused in one line before anything is written."""
    widths = ["--model.g_channels", "[16, 8, 8, 4]", "--model.d_channels", "[4, 8, 8, 16]"]
    rc = main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path / "out"), *QUIET,
               "--trainer.max_steps", "2", "--model.sample_every_n_steps", "0",
               "--data.image_size", str(size), *(widths if size == 64 else [])])
    if size == 16:
        assert rc == 2 and "image_size must be one of [32, 64]" in error(capsys)
        assert not (tmp_path / "out").exists()
        return
    assert rc == 0
    from gan_mn.training import load_run

    gan = load_run(tmp_path / "out" / "smoke-seed0" / "last.ckpt").gan
    assert gan.generator(gan.generator.sample_latent(2)).shape == (2, 3, 64, 64)
