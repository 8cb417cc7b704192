"""``AtomicCheckpointIO``: a checkpoint is the old complete file or the new complete one,
never a partial one; a full disk is one line naming the file, the step and the space."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from gan_mn.errors import UserError
from gan_mn.files import atomic_write

LOW_DISK = 64 * 2**20  # torch.save on a full disk raises a bare RuntimeError: judge by space


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _errno_in_chain(err: BaseException | None, *codes: int) -> bool:
    while err is not None:
        if isinstance(err, OSError) and err.errno in codes:
            return True
        err = err.__cause__ or err.__context__
    return False


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the checkpoint's own directory, fsync, then
    ``os.replace``: a kill leaves either the old complete file or the new complete one.

    (Lightning's default writes through fsspec, whose local temporary file lives in the
    system temp directory; when that is another filesystem the final move is a copy.)
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        try:
            atomic_write(path, lambda tmp: torch.save(checkpoint, tmp), durable=True)
        except (OSError, RuntimeError) as err:
            free = _free_bytes(Path(path).parent)
            if not (_errno_in_chain(err, errno.ENOSPC, errno.EDQUOT)
                    or (free is not None and free < LOW_DISK)):
                raise
            kept = f"the previous {Path(path).name} is intact" if Path(path).is_file() else \
                "no earlier one exists"
            raise UserError(f"the disk is full ({(free or 0) / 2**20:.0f} MiB free): writing "
                            f"{path} at step {checkpoint.get('global_step')} failed and {kept}; "
                            "free some space and resume with --ckpt_path last") from err
