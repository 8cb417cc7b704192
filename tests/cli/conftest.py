"""The CLI's tests run `gan-mn` in this process (`gan_mn.cli.main`)."""

import os
from collections.abc import Iterator
from pathlib import Path

# Lightning adds a stderr handler to its logger when it is first imported, bound to the
# sys.stderr of that moment. Imported by a test's first in-process run, that would be the
# test's own capture (capsys), closed after the test: later runs' log lines would then end
# in "Logging error" tracebacks. Imported here, at collection, it is the session's stream.
import lightning.pytorch  # noqa: F401
import pytest


@pytest.fixture()
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)
