"""The metrics ``compare`` can build its report on, all read as "lower is better":
FID (``fid...``), intra-class FID (``ifid...``), KID (``kid...``), and class accuracy
(``cacc...``) read as its complement, the class error ``1 - accuracy``, so that every
verdict (reaching a level, leading, the gap) has one direction."""

from __future__ import annotations

from gan_mn.run_log import ReportError, RunLog

LOWER_IS_BETTER = {"fid": "FID", "ifid": "intra-class FID", "kid": "KID"}
COMPLEMENTED = {"cacc": ("cerr", "class error")}  # accuracy -> error = 1 - accuracy


def metric_family(key: str) -> str:
    """``fid2k_train`` -> ``fid``: the letters before the sample count."""
    return key[:len(key) - len(key.lstrip("abcdefghijklmnopqrstuvwxyz"))]


def report_metric(runs: list[RunLog], key: str) -> tuple[list[RunLog], str, str]:
    """The runs with the column the report reads, its key and its name in the report's
    words: ``key`` itself for a lower-is-better metric, the complement of a class
    accuracy (``cacc2k_...`` -> ``cerr2k_...``, "class error")."""
    family = metric_family(key)
    if family in LOWER_IS_BETTER:
        return runs, key, LOWER_IS_BETTER[family]
    if family in COMPLEMENTED:
        prefix, name = COMPLEMENTED[family]
        error = prefix + key[len(family):]
        for run in runs:
            if key in run.columns:
                run.columns[error] = {s: 1.0 - v for s, v in run.columns[key].items()}
        return runs, error, name
    known = ", ".join([*LOWER_IS_BETTER, *COMPLEMENTED])
    raise ReportError(f"--metric {key}: the report needs a distance or an error, a column "
                      f"starting with one of {known} (IS is neither)")
