"""The one way evaluate and sample load a checkpoint: a GAN with its data settings."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gan_mn.files import CheckpointError, checkpoint_file
from gan_mn.torch_files import UnsafeFileError, load
from gan_mn.training.module import GAN


@dataclass
class LoadedRun:
    gan: GAN
    path: Path
    step: int
    ema: bool  # the state_dict holds Lightning WeightAveraging's averaged weights
    data_hparams: dict[str, Any] | None


def load_run(path: str | Path) -> LoadedRun:
    """Load a gan-mn Lightning checkpoint on the CPU (weights only: :mod:`gan_mn.torch_files`).
    Missing, truncated and foreign files raise ``CheckpointError``, unsafe ones
    ``UnsafeFileError``. The weights are those in ``state_dict``: the EMA ones when the
    run used ``WeightAveraging`` (which stores the averaged model there)."""
    path = checkpoint_file(path)
    try:
        ckpt = load(path)
    except UnsafeFileError:
        raise
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
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: its settings do not build a GAN with this version of "
                              f"gan-mn ({' '.join(str(err).split())})") from err
    mismatch = _mismatch(gan.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"{path}: its weights do not fit the model its own settings "
                              f"build ({mismatch})")
    gan.load_state_dict(state)
    gan.eval()
    return LoadedRun(gan=gan, path=path.resolve(), step=int(ckpt.get("global_step", 0)),
                     ema="averaging_state" in ckpt,
                     data_hparams=ckpt.get("datamodule_hyper_parameters"))


def _mismatch(expected: dict[str, Any], found: dict[str, Any], shown: int = 3) -> str:
    """How a state_dict differs from a model's, in a few words: counts and first names."""
    def few(keys: list[str]) -> str:
        more = f", ... {len(keys) - shown} more" if len(keys) > shown else ""
        return ", ".join(keys[:shown]) + more

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found)
                    if getattr(found[k], "shape", None) != expected[k].shape)
    parts = [f"{len(keys)} {what} ({few(keys)})" for keys, what in (
        (missing, "missing"), (unexpected, "unexpected"), (shapes, "of another shape"))
        if keys]
    return "; ".join(parts)
