"""The ``gan-mn`` command: ``fit`` (LightningCLI) and ``evaluate``, ``sample``, ``compare``,
``study``, ``migrate``.

Errors the user can fix (``UserError``: bad data, settings, checkpoints, paths; and the
file-system errors a user causes) end with one line on stderr and exit status 2, not a
traceback; ``GAN_MN_DEBUG=1`` shows the traceback. Anything else is a bug: it keeps its
traceback and exits 1.
"""

from __future__ import annotations

import errno
import os
import sys
from argparse import ArgumentError

COMMANDS = ("fit", "evaluate", "sample", "compare", "study", "migrate")
USAGE = """usage: gan-mn {fit,evaluate,sample,compare,study,migrate} ... | --version

  fit -c CONFIG [--key value ...]  train (LightningCLI; `gan-mn fit --help` lists every key)
  evaluate CKPT [options]          IS/FID/KID/PRC of a checkpoint with torch-fidelity
  sample CKPT --num N --out F.png  generate a grid, or --out-dir DIR of PNGs
  compare RUN_DIR ... --out DIR    BN-vs-MN convergence report from run logs
  study --out DIR --data-root D    train every group x seed of a study (resumable)
  migrate RUN_DIR ...              rewrite runs saved by an earlier gan-mn, once
"""


# File-system errors that come from what the user asked for (a path, a full disk).
USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
               errno.EEXIST, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG}


def _user_errors() -> tuple[type[BaseException], ...]:
    from gan_mn.errors import UserError

    return (UserError, ArgumentError, OSError)


def _is_user_error(err: BaseException) -> bool:
    return not isinstance(err, OSError) or err.errno in USER_ERRNOS


def _one_line(err: BaseException) -> str:
    """jsonargparse's messages span lines (key, then reason): join them."""
    return " ".join(str(err).split())


def _show_progress_notes() -> None:
    """gan-mn's own notes (INFO and above, e.g. MN compiling its kernels) on stderr, once."""
    import logging

    logger = logging.getLogger("gan_mn")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("gan-mn: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    _show_progress_notes()
    from_sys = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from gan_mn import __version__

        print(f"gan-mn {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "evaluate":
            from gan_mn.cli.commands import evaluate_main

            return evaluate_main(rest)
        if command == "sample":
            from gan_mn.cli.commands import sample_main

            return sample_main(rest)
        if command == "compare":
            from gan_mn.cli.compare import compare_main

            return compare_main(rest)
        if command == "study":
            from gan_mn.cli.study import study_main

            return study_main(rest)
        if command == "migrate":
            from gan_mn.cli.migrate import migrate_main

            return migrate_main(rest)
        if command != "fit":
            print(f"gan-mn: error: unknown command {command!r}; the commands are "
                  f"{', '.join(COMMANDS)} (`gan-mn --help`)", file=sys.stderr)
            return 2
        return _fit(None if from_sys else argv)
    except _user_errors() as err:
        if os.environ.get("GAN_MN_DEBUG") or not _is_user_error(err):
            raise
        from gan_mn.errors import UsageError

        usage = isinstance(err, (ArgumentError, UsageError))
        hint = f" (see `gan-mn {command} --help`)" if usage else ""
        print(f"gan-mn: error: {_one_line(err)}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gan-mn: interrupted", file=sys.stderr)
        return 130


def _fit(args: list[str] | None) -> int:
    """Training's own endings, caught here only: an exception clause's class is looked up
    whenever an exception passes, so naming Lightning's in `main` made `compare --help`
    (argparse's SystemExit) import Lightning, about 7 s."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from gan_mn.cli.fit import GANCLI
    from gan_mn.training.finite_watch import NonFiniteError

    try:
        GANCLI(args=args)
        return 0
    except SIGTERMException:  # SIGTERM or Ctrl-C: PreemptionCheckpoint saved last.ckpt
        print("gan-mn: stopped by a signal; continue with the same command plus "
              "--ckpt_path last", file=sys.stderr)
        return 143
    except NonFiniteError as err:
        if os.environ.get("GAN_MN_DEBUG"):
            raise
        print(f"gan-mn: error: {_one_line(err)}", file=sys.stderr)
        return 1


def entry_point() -> None:
    sys.exit(main())
