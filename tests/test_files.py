"""``atomic_write``: a failed write leaves neither a partial file nor a temporary one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan_mn.files import atomic_write


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path,
                                                             existing: bool) -> None:
    target = tmp_path / "sub" / "report.json"
    if existing:
        target.parent.mkdir()
        target.write_text("old")

    def half(tmp: Path) -> None:
        tmp.write_text("partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, half)
    assert (target.read_text() == "old") if existing else not target.exists()
    assert [p.name for p in target.parent.iterdir()] == (["report.json"] if existing else [])


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    assert atomic_write(target, lambda tmp: tmp.write_text("new"), durable=True) == target
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
