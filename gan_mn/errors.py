"""``UserError``: the one base class of errors a user can fix (bad settings, data, paths).

The ``gan-mn`` command prints these as one line and exits 2; anything else is a bug and
keeps its traceback (exit 1). A subclass of ``ValueError`` so that library callers
catching ``ValueError`` keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Something the user asked for cannot be done; the message says why, as is."""


class OptionError(ValueError):
    """A model or layer option out of its range, found where the model is built: a
    ``ValueError`` to the library's callers, and the one kind of ``ValueError`` that
    ``gan-mn fit`` reports as the user's mistake (any other is a bug)."""


class UsageError(UserError):
    """A command line that does not parse (``gan-mn CMD --help`` says what does)."""
