"""Class-conditional runs through the entry point: every family trains with conditional
BN and MN; missing or mismatched labels and a resume that changes the classes are one
line, exit 2, nothing written; evaluate scores intra-class FID and class accuracy with
the built-in classifier offline; sample draws one class or a class grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from gan_mn.cli import main
from gan_mn.data.sources import CIFAR10_CLASSES
from gan_mn.torch_files import load
from tests.helpers.cli import SMOKE, error, fast, step_of
from tests.helpers.fakes import smooth_images, write_class_folder

FAMILIES = {
    "dcgan": [],
    "dcgan-64": ["--data.image_size", "64", "--model.g_channels", "[32, 16, 8, 8]",
                 "--model.d_channels", "[8, 8, 16, 32]"],
    "sngan": ["--model.arch", "sngan", "--model.d_norm", "sn", "--model.g_channels",
              "[16, 8, 8, 8]", "--model.d_channels", "[8, 8, 8, 8, 8, 8, 8]"],
    "resnet": ["--model.arch", "resnet", "--model.d_norm", "sn", "--model.g_channels",
               "[16, 16, 16, 16]", "--model.d_channels", "[16, 16, 16, 16]"],
}


def fit(out: Path, *options: str) -> int:
    return main(["fit", "-c", SMOKE, "--output_dir", str(out), *fast(2), *options])


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("norm", ["bn", "mn"])
def test_every_family_trains_class_conditional(tmp_path: Path, family: str,
                                               norm: str) -> None:
    """Two steps on the synthetic data's 10 classes; the checkpoint has the class
    embeddings and the projection, and records the classes."""
    assert fit(tmp_path, "--model.num_classes", "10", "--model.g_norm", norm,
               "--run_name", "run", *FAMILIES[family]) == 0
    ckpt = tmp_path / "run" / "last.ckpt"
    assert step_of(ckpt) == 2
    saved = load(ckpt)
    assert saved["hyper_parameters"]["num_classes"] == 10
    assert saved["datamodule_hyper_parameters"]["num_classes"] == 10
    keys = saved["state_dict"].keys()
    assert any(k.endswith("embedding_gamma.weight") for k in keys)
    assert any(k.startswith("discriminator.projection.embed") for k in keys)
    assert saved["state_dict"]["fixed_labels"].tolist() == [c for c in range(10)
                                                            for _ in range(2)]


def _flat_folder(root: Path) -> Path:
    root.mkdir()
    for i, image in enumerate(smooth_images(20)):
        Image.fromarray(image).save(root / f"{i}.png")
    return root


@pytest.mark.parametrize(("options", "message"), [
    (["--model.num_classes", "5"], "--model.num_classes is 5, but synthetic has 10 classes"),
    (["--model.num_classes", "10", "--data.dataset", "imagefolder", "--data.root", "FLAT"],
     "--model.num_classes 10 needs labelled data, and imagefolder FLAT has no labels"),
    (["--model.num_classes", "10", "--model.g_norm", "none"],
     "takes the class through its norm layers: give it bn or mn, got none"),
    (["--model.num_classes", "10", "--model.cuda_graph", "true"],
     "class-conditional models run eagerly"),
    (["--model.num_classes", "-2"], "num_classes must be 0"),
    (["--model.num_classes", "10", "--metrics.every_n_steps", "1", "--metrics.num_samples",
      "12", "--metrics.feature_extractor", "cifar10-proxy"],
     "intra-class FID needs at least 2 images of each class: 12 samples for 10 classes"),
])
def test_unusable_labels_are_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str],
        message: str) -> None:
    flat = str(_flat_folder(tmp_path / "flat"))
    options = [flat if o == "FLAT" else o for o in options]
    out = tmp_path / "out"
    assert fit(out, *options) == 2
    assert message.replace("FLAT", flat) in error(capsys)
    assert not out.exists()


@pytest.mark.slow  # trains through Lightning
def test_a_resume_cannot_change_the_classes(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert fit(tmp_path, "--run_name", "run") == 0
    run = tmp_path / "run"
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert fit(tmp_path, "--run_name", "run", "--ckpt_path", "last",
               "--model.num_classes", "10", "--trainer.max_steps", "4") == 2
    assert "model.num_classes 0 -> 10" in error(capsys)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files


@pytest.fixture(scope="module")
def cifar_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step class-conditional run on 40 images in CIFAR-10's ten class folders."""
    root = tmp_path_factory.mktemp("conditional")
    data = write_class_folder(root / "data", CIFAR10_CLASSES, per_class=4)
    assert main(["fit", "-c", SMOKE, "--output_dir", str(root), "--run_name", "run",
                 *fast(2), "--model.num_classes", "10", "--data.dataset", "imagefolder",
                 "--data.root", str(data)]) == 0
    return root / "run" / "last.ckpt"


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_evaluate_scores_classes_offline(cifar_classes: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Intra-class FID and the built-in classifier's class accuracy beside IS and FID,
    on a class-balanced sample; the per-class reference statistics are cached."""
    args = ["evaluate", str(cifar_classes), "--num-samples", "20", "--metrics", "isc,fid",
            "--feature-extractor", "cifar10-proxy", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["ifid20_data_cifar10-proxy"] > 0
    assert 0 <= record["cacc20_cifar10-proxy"] <= 1
    assert record["fid20_data_cifar10-proxy"] > 0
    assert len(list(tmp_path.glob("*-class9-*stat-fid*"))) == 1
    assert main(args) == 0  # from the cache: the same values
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["ifid20_data_cifar10-proxy"] == record["ifid20_data_cifar10-proxy"]


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_sample_one_class_or_a_class_grid(cifar_classes: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", str(cifar_classes), "--num", "20", "--out",
                 str(tmp_path / "grid.png")]) == 0
    with Image.open(tmp_path / "grid.png") as grid:  # 10 rows of 2 (32 px, 2 px padding)
        assert grid.size == (2 + 2 * 34, 2 + 10 * 34)
    assert main(["sample", str(cifar_classes), "--num", "3", "--class", "4", "--out-dir",
                 str(tmp_path / "cats")]) == 0
    assert len(list((tmp_path / "cats").iterdir())) == 3
    assert main(["sample", str(cifar_classes), "--num", "3", "--class", "10", "--out",
                 str(tmp_path / "x.png")]) == 2
    assert "--class 10: the checkpoint's generator has classes 0-9" in error(capsys)
    assert not (tmp_path / "x.png").exists()


def test_one_class_sample_is_that_class() -> None:
    """``--class K``: every image from the generator with label K, the noise as ever."""
    from gan_mn.metrics.fidelity import generate_batches
    from gan_mn.models import build_models

    torch.manual_seed(0)
    generator, _ = build_models("dcgan", 8, (16, 8, 8), (8, 8, 16), "bn", "bn", None, 32,
                                num_classes=3)
    with torch.no_grad():
        generator.net[1].embedding_beta.weight.copy_(torch.arange(3.0)[:, None] * 5)
    images = torch.cat(list(generate_batches(generator, 6, 0, class_index=2)))
    balanced = torch.cat(list(generate_batches(generator, 6, 0)))
    assert torch.equal(images[2::3], balanced[2::3])  # image i is of class i % 3
    assert not torch.equal(images[0::3], balanced[0::3])
