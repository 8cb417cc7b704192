"""The one way evaluate and sample load a checkpoint: a GAN with its data settings."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gan_mn.files import CheckpointError, checkpoint_file
from gan_mn.training.module import GAN


@dataclass
class LoadedRun:
    gan: GAN
    path: Path
    step: int
    ema: bool  # the state_dict holds Lightning WeightAveraging's averaged weights
    data_hparams: dict[str, Any] | None


def load_run(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedRun:
    """Load a gan-mn Lightning checkpoint. Missing, truncated and foreign files raise
    ``CheckpointError``. The weights are those in ``state_dict``: the EMA ones when the
    run used ``WeightAveraging`` (which stores the averaged model there)."""
    path = checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated zip, random bytes, pickle errors: all unusable
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a "
                              f"PyTorch file: {type(err).__name__})") from err
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not isinstance(hparams, dict) or not any(
            k.startswith("generator.") for k in state):
        raise CheckpointError(f"{path} is not a gan-mn training checkpoint "
                              "(no generator weights or hyper-parameters in it)")
    accepted = set(inspect.signature(GAN.__init__).parameters) - {"self"}
    try:
        gan = GAN(**{k: v for k, v in hparams.items() if k in accepted})
        gan.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} does not match this version of gan-mn's GAN ({err})"
                              ) from err
    gan.eval()
    return LoadedRun(gan=gan, path=path.resolve(), step=int(ckpt.get("global_step", 0)),
                     ema="averaging_state" in ckpt,
                     data_hparams=ckpt.get("datamodule_hyper_parameters"))
