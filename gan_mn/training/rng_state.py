"""``RNGState``: the Python, NumPy and torch random states in the checkpoint, so a resumed
run draws what an uninterrupted one would."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override


class RNGState(Callback):
    """Saves and restores the Python, NumPy and torch (CPU and CUDA) RNG states, so the
    noise after a resume is the noise an uninterrupted run would have drawn."""

    @override
    def state_dict(self) -> dict[str, Any]:
        # plain types and tensors only, so weights_only checkpoint loading accepts them
        kind, key, pos, has_gauss, gauss = np.random.get_state()
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss),
                      float(gauss)],
            "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        kind, key, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
