"""The argument parser of ``evaluate``, ``sample`` and ``compare``."""

from __future__ import annotations

import argparse
from typing import NoReturn

from gan_mn.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``UsageError``) rather than the usage block and
    an exit: the ``gan-mn`` entry point prints them as every other user error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
