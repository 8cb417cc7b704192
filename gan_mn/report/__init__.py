"""BN-vs-MN convergence reports from the runs' own logs (``gan-mn compare``)."""

from gan_mn.report.analysis import Report, build_report
from gan_mn.run_log import ReportError, RunLog, read_run

__all__ = ["Report", "ReportError", "RunLog", "build_report", "read_run"]
