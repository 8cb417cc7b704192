"""Cost of the metrics callback vs torch-fidelity's feature extraction alone.

The callback's evaluation (sample N images from the generator, extract features, FID/IS
against cached reference statistics, log, save a grid) is timed against extracting
features from N ready-made images with the same torch-fidelity extractor; alternating
rounds in one process, ratio of medians printed (target <= 1.15x). Generating the
images alone is timed too: the DCGAN generator's cost is intrinsic to any evaluation,
and is large next to a small extractor such as the CIFAR-10 proxy.

    python benchmarks/metrics_overhead.py --extractor cifar10-proxy \\
        [--num-samples 2000] [--rounds 3]

Inception-v3 (the default extractor) needs its weights; offline, ``--random-inception``
times the same network with random weights (torch-fidelity's architecture, so the cost
is the real one; the metric values are meaningless and not printed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import lightning.pytorch as pl
import torch
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from gan_mn.data import GANDataModule, UInt8Images
from gan_mn.metrics import FidelityCallback, load_plugin
from gan_mn.metrics.fidelity import generate
from gan_mn.training import GAN


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--extractor", default="inception-v3-compat")
    p.add_argument("--plugin", default=None)
    p.add_argument("--weights", default=None)
    p.add_argument("--random-inception", action="store_true",
                   help="inception-v3-compat with random weights (timing only, offline)")
    p.add_argument("--data-root", default=None, help="image folder (default: synthetic data)")
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    load_plugin(a.plugin)
    dm = (GANDataModule("imagefolder", root=a.data_root) if a.data_root
          else GANDataModule("synthetic"))
    with tempfile.TemporaryDirectory() as tmp:
        if a.random_inception:
            a.extractor, a.weights = "inception-v3-compat", random_inception(Path(tmp))
        callback = FidelityCallback(every_n_steps=1000, num_samples=a.num_samples,
                                    feature_extractor=a.extractor,
                                    feature_extractor_weights_path=a.weights, cache_dir=tmp)
        trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             default_root_dir=tmp, callbacks=[callback])
        model = GAN(sample_every_n_steps=0)
        trainer.fit(model, dm)
        callback.evaluate(trainer, model)  # fills the reference cache, warms up
        images = UInt8Images(generate(model.generator, a.num_samples, seed=1))
        full, alone, gen = [], [], []
        for r in range(a.rounds):
            t = time.perf_counter()
            callback.evaluate(trainer, model)
            full.append(time.perf_counter() - t)
            t = time.perf_counter()
            extractor = create_feature_extractor(a.extractor, _features(a.extractor), cuda=False,
                                                 feature_extractor_weights_path=a.weights)
            get_featuresdict_from_dataset(images, extractor, 100, False, False, False)
            alone.append(time.perf_counter() - t)
            t = time.perf_counter()
            generate(model.generator, a.num_samples, seed=2)
            gen.append(time.perf_counter() - t)
            print(f"round {r + 1}: callback {full[-1]:.2f} s, extraction alone "
                  f"{alone[-1]:.2f} s, ratio {full[-1] / alone[-1]:.3f}")
    full_s, alone_s, gen_s = (statistics.median(v) for v in (full, alone, gen))
    print(f"median: callback {full_s:.2f} s, extraction alone {alone_s:.2f} s -> "
          f"{full_s / alone_s:.3f}x ({a.num_samples} images, {a.extractor}, torch threads "
          f"{torch.get_num_threads()})")
    print(f"generating the images alone: {gen_s:.2f} s; callback minus generation vs "
          f"extraction: {(full_s - gen_s) / alone_s:.3f}x")


def random_inception(folder: Path) -> str:
    """A state dict for torch-fidelity's Inception-v3 with its initial random weights."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    cls = fe.FeatureExtractorInceptionV3
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(cls, "load_state_dict", lambda self, *a, **k: None):
        model = cls("inception-v3-compat", ["2048", "logits_unbiased"])
    path = folder / "inception-random.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def _features(extractor: str) -> list[str]:
    """The layers FID and IS read, as torch-fidelity resolves them for this extractor."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    cls = FEATURE_EXTRACTORS_REGISTRY[extractor]
    return sorted({cls.get_default_feature_layer_for_metric(m) for m in ("fid", "isc")})


if __name__ == "__main__":
    main()
