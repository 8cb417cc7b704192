"""``atomic_write``: the one way gan-mn writes a file that must never be seen half-written;
``writable``, ``image_format`` and ``checkpoint_file``: whether a path could be written
or read, asked before any slow work (this module imports neither torch nor Lightning)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from gan_mn.errors import UserError


def atomic_write(path: str | Path, writer: Callable[[Path], object],
                 durable: bool = False) -> Path:
    """``writer(tmp)`` fills a temporary file beside ``path``, which is then renamed onto
    it: a reader, a kill or a failed write sees the old complete file or the new one,
    never a partial one, and no temporary file is left behind. ``durable`` also fsyncs
    the file and the rename (checkpoints). Creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        writer(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except OSError as err:  # named by the user's path, not by our temporary file's
        if err.filename != str(tmp) and err.filename != tmp:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        _fsync(path.parent)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def writable(path: str | Path) -> Path | None:
    """None if ``path`` (a file or folder to be made) could be written; else the existing
    ancestor in the way (a file, or a folder without write access). Creates nothing."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing == path and path.is_dir():
        existing = path  # (a folder to write into)
    elif existing == path:
        existing = path.parent  # (a file to replace: its folder decides)
    ok = existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)
    return None if ok else existing


class CheckpointError(UserError):
    """A checkpoint that cannot be used, with a message meant for the user as is."""


def checkpoint_file(path: str | Path) -> Path:
    """``path`` if it is a file; ``CheckpointError`` (one line) for a directory or nothing.
    (Commands call it first: the cheapest mistake is reported before any slow check.)"""
    path = Path(path).expanduser()
    if path.is_dir():
        hint = " (e.g. its last.ckpt)" if (path / "last.ckpt").is_file() else ""
        raise CheckpointError(f"{path} is a directory, not a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


# The image formats a file name may ask for, by suffix.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def image_format(path: str | Path) -> str:
    """PIL's format name for ``path``'s suffix; ValueError (one line) for any other."""
    fmt = IMAGE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: the file name must end in one of "
                         f"{', '.join(IMAGE_FORMATS)} (the format written)")
    return fmt
