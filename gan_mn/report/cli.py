"""``gan-mn compare RUN_DIR ... --out DIR``: the convergence report from run directories."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gan_mn.report.analysis import build_report
from gan_mn.report.render import write_report
from gan_mn.report.runs import ReportError, read_run


def compare_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gan-mn compare", description=__doc__)
    p.add_argument("runs", nargs="+", help="run directories (metrics.csv + config.yaml)")
    p.add_argument("--out", required=True, help="directory for the plots and report")
    p.add_argument("--reference", default=None, help="baseline label (default: bn)")
    p.add_argument("--fid-key", default=None, help="FID column when runs log several")
    p.add_argument("--isc-key", default=None, help="IS column when runs log several")
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: exists and is not a directory")
    report = build_report([read_run(r) for r in a.runs], a.reference, a.fid_key, a.isc_key)
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ReportError(f"--out {out}: cannot write there")
    for path in write_report(report, out):
        print(path)
    return 0
