"""``python -m gan_mn``: the same as the ``gan-mn`` command."""

from gan_mn.cli import entry_point

entry_point()
