"""The one way gan-mn reads a torch file it may not have written: a checkpoint someone
shared, or a metrics cache file. Always ``weights_only=True``: a pickle can carry code
(``__reduce__``), and torch's restricted unpickler refuses any object but tensors, plain
containers and the few types allowed here, before anything from the file runs.
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_mn.errors import UserError


class UnsafeFileError(UserError):
    """A file that holds objects a checkpoint or cache should not (it could run code)."""


def _numpy_types() -> list[Any]:
    """What a numpy array pickles to (torch-fidelity caches its FID statistics as arrays):
    the array's reconstructor, its type, and the dtypes of the numbers it may hold."""
    reconstruct = np.zeros(1).__reduce__()[0]
    dtypes = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32,
                                            np.int64, np.uint8, np.bool_)]
    return [reconstruct, np.ndarray, np.dtype, *dtypes]


@contextmanager
def _allowed() -> Any:
    with torch.serialization.safe_globals(_numpy_types()):
        yield


def load(path: str | Path, what: str = "checkpoint", lazy: bool = False) -> Any:
    """``torch.load`` of ``path`` on the CPU with ``weights_only=True``. A file holding
    other objects raises :class:`UnsafeFileError` (one line; nothing from it ran); other
    failures (a truncated or foreign file) propagate, for the caller to word. ``lazy``
    maps the tensors' data instead of reading it (for the entries beside them)."""
    try:
        with _allowed():
            if lazy:
                try:
                    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError:  # not a zip archive: no mapping, read it all
                    pass
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _refusal(path, what, _unsafe_globals(path)) from err


def check(path: str | Path, what: str) -> None:
    """Refuse ``path`` (:class:`UnsafeFileError`) if it names types a weights-only load
    would not allow, for a file that another library loads with ``weights_only=False``
    (torch-fidelity's cache). Reads the pickle, not the tensors; a file that is not a
    ``torch.save`` archive is loaded with :func:`load` instead, which decides."""
    try:
        with _allowed():
            found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip archive (legacy format, truncated): the unpickler decides
        load(path, what)
        return
    if found:
        raise _refusal(path, what, list(found))


def _refusal(path: str | Path, what: str, found: list[str]) -> UnsafeFileError:
    detail = f" ({', '.join(found[:3])})" if found else ""
    return UnsafeFileError(
        f"{path}: holds objects a {what} should not{detail}, which could run code when "
        "loaded; refused, nothing from it was run (load only files from sources you trust)")


def _unsafe_globals(path: str | Path) -> list[str]:
    """The types ``path`` names that are not allowed (read without unpickling them)."""
    try:
        with _allowed():
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a file too broken to list: the refusal stands without the names
        return []


def checkpoint_entries(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint's entries (its step, hyperparameters, callbacks' and
    datamodule's states), its tensors mapped, not read: the one light read of what a
    checkpoint says about its run."""
    ckpt = load(path, lazy=True)
    return ckpt if isinstance(ckpt, dict) else {}


def checkpoint_step(path: str | Path) -> int:
    """The generator steps a Lightning checkpoint has trained (its ``global_step``)."""
    return int(checkpoint_entries(path).get("global_step", 0))
