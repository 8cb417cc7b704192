"""``gan-mn evaluate`` and ``gan-mn sample``: checkpoint in, JSON or PNGs out.

torch, torchvision and Lightning are imported after the arguments are checked: ``--help``
and a mistyped path answer in about a second instead of ten."""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from gan_mn.cli.args import ArgumentParser
from gan_mn.errors import UserError
from gan_mn.files import checkpoint_file, image_format, writable
from gan_mn.metrics.protocol import MetricSettings

# evaluate's flags for MetricSettings fields where the name is not the field's own
FLAG_NAMES = {"feature_extractor_weights_path": "--feature-extractor-weights"}
FLAG_HELP = {"metrics": "comma list of isc,fid,kid,prc",
             "feature_extractor": "a torch-fidelity extractor; cifar10-proxy is built in and "
                                  "works offline (its values compare runs with each other "
                                  "only)",
             "feature_extractor_weights_path": "local weights file",
             "extractor_plugin": "Python file or module registering a torch-fidelity extractor",
             "norm_mode": "running or batch"}


def evaluate_parser() -> argparse.ArgumentParser:
    """evaluate's options: the checkpoint, where the reference is, and one flag per
    MetricSettings field (its defaults, today's spellings: ``--num-samples``, ...)."""
    p = ArgumentParser(prog="gan-mn evaluate", description=(
        "Score a checkpoint with torch-fidelity. Prints one JSON object on the last line "
        "and appends it to evaluations.jsonl beside the checkpoint."))
    p.add_argument("checkpoint")
    for field in dataclasses.fields(MetricSettings):
        flag = FLAG_NAMES.get(field.name, "--" + field.name.replace("_", "-"))
        default = field.default
        if field.name == "metrics":
            default = ",".join(MetricSettings.metrics)
        kind = int if isinstance(default, int) else str
        text = FLAG_HELP.get(field.name, "")
        p.add_argument(flag, dest=field.name, type=kind, default=default,
                       help=f"{text}{' ' if text else ''}(default: {default})")
    p.add_argument("--reference", default=None,
                   help="DIR of images, cifar10-train or cifar10-test "
                        "(default: the checkpoint's training data)")
    p.add_argument("--data-root", default=None, help="where CIFAR-10 is (or goes)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    return p


def evaluate_main(argv: list[str]) -> int:
    a = vars(evaluate_parser().parse_args(argv))
    checkpoint_file(a["checkpoint"])
    check_device(a["device"])
    log_path = Path(a["checkpoint"]).expanduser().parent / "evaluations.jsonl"
    if log_path.parent.is_dir() and not os.access(log_path.parent, os.W_OK):
        raise UserError(f"cannot append to {log_path}: {log_path.parent} is not writable "
                        "(copy the checkpoint somewhere writable)")
    settings = MetricSettings(**{f.name: a[f.name] for f in dataclasses.fields(MetricSettings)})
    from gan_mn.metrics.evaluate import evaluate_checkpoint

    record = evaluate_checkpoint(a["checkpoint"], settings, reference=a["reference"],
                                 data_root=a["data_root"], device=a["device"])
    line = json.dumps(_strict(record), sort_keys=True, allow_nan=False)
    print(line, flush=True)  # the result first: nothing after it can lose it
    with open(log_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # concurrent evaluations append whole lines
        f.write(line + "\n")
    return 0


def _strict(value: object) -> object:
    """NaN and infinities (e.g. an IS of collapsed samples) as null: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def sample_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="gan-mn sample",
                                description="Generate images from a checkpoint.")
    p.add_argument("checkpoint")
    p.add_argument("--num", type=int, default=64)
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="one grid image (.png, .jpg or .webp, by its name)")
    out.add_argument("--out-dir", help="a new folder of individual PNGs (for other FID tools)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class", dest="class_index", type=int, default=None, metavar="K",
                   help="class-conditional checkpoints: images of class K only (default: "
                        "a class-balanced sample; a --out grid of a multiple of K images then has "
                        "one row per class)")
    p.add_argument("--norm-mode", choices=("running", "batch"), default="running")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default="cpu")
    return p


# The most images one --out grid takes (64 x 64 tiles); --out-dir takes any number.
MAX_GRID = 4096


def check_device(device: str | None) -> None:
    """A device this machine has, before a checkpoint is read onto it."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a device (cpu, cuda, cuda:1, ...)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available on this machine; "
                        "use --device cpu")


def class_grid_order(num: int, classes: int) -> list[int]:
    """Images ``0 .. num-1`` of a class-balanced sample (image ``i`` of class
    ``i % classes``) reordered class by class: one grid row per class."""
    return sorted(range(num), key=lambda i: (i % classes, i))


def _per_row(num: int, classes: int | None) -> int | None:
    return num // classes if classes else None


def sample_main(argv: list[str]) -> int:
    a = sample_parser().parse_args(argv)
    if a.num < 1:
        raise UserError(f"--num must be positive, got {a.num}")
    if a.batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {a.batch_size}")
    for flag, value in (("--out", a.out), ("--out-dir", a.out_dir)):
        if value is not None and not value.strip():
            raise UserError(f"{flag} must name a {'file' if flag == '--out' else 'folder'}")
    if a.out and a.num > MAX_GRID:
        raise UserError(f"--num {a.num} is too many images for one grid (at most {MAX_GRID}); "
                        "use --out-dir for a folder of PNGs")
    if a.out_dir and Path(a.out_dir).exists() and any(Path(a.out_dir).iterdir()):
        raise UserError(f"--out-dir {a.out_dir} exists and is not empty")
    out = Path(a.out or a.out_dir)
    if a.out:
        image_format(a.out)  # before the (slow) sampling: a name we can honour
    blocking = writable(out)  # before the (slow) sampling, and without making anything
    if blocking is not None:
        raise UserError(f"cannot write {out}: {blocking} is not a writable directory")
    checkpoint_file(a.checkpoint)
    check_device(a.device)
    import torch

    from gan_mn.images import grid_image, save_png
    from gan_mn.metrics.fidelity import generate_batches
    from gan_mn.training import load_run

    run = load_run(a.checkpoint)
    classes = run.gan.generator.num_classes
    if a.class_index is not None and not 0 <= a.class_index < classes:
        raise UserError(f"--class {a.class_index}: the checkpoint's generator has classes "
                        f"0-{classes - 1}" if classes else
                        f"--class {a.class_index}: the checkpoint's generator is "
                        "unconditional (it was trained without --model.num_classes)")
    batches = generate_batches(run.gan.generator.to(a.device), a.num, a.seed, a.norm_mode,
                               a.batch_size, a.class_index)
    if a.out:
        # class-balanced (image i of class i % K): with --num a multiple of K, one grid
        # row per class
        by_class = classes if classes and a.class_index is None and a.num % classes == 0 \
            else None
        images = torch.cat(list(batches))
        if by_class:
            images = images[class_grid_order(len(images), by_class)]
        print(save_png(grid_image(images, _per_row(len(images), by_class)), a.out))
        return 0
    target = Path(a.out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:  # fill a hidden sibling as the images come, then rename: never a half-filled
        # --out-dir, and one batch in memory at a time
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # a folder as mkdir makes it (mkdtemp's is private)
        done = 0
        for batch in batches:
            for image in batch:
                save_png(image, tmp / f"{done:06d}.png")
                done += 1
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(target)
    return 0
