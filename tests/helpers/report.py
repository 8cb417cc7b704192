"""What the report's tests share: a run directory as `gan-mn fit` leaves it."""

from __future__ import annotations

from pathlib import Path

FID = "fid2k_train"
ISC = "isc2k"


def write_run(root: Path, label: str, seed: int, fids: dict[int, float],
              seconds_per_step: float = 1.0, extra_rows: str = "") -> Path:
    """A run directory as `gan-mn fit` leaves it: config.yaml and Lightning's metrics.csv
    (training rows every 50 steps with time, evaluation rows with FID/IS)."""
    run = root / f"{label}-seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"seed_everything: {seed}\nmodel:\n  label: {label}\n")
    rows = [f"{FID},{ISC},loss/d,step,time/train_seconds"]
    last = max(fids)
    for step in range(50, last + 1, 50):
        rows.append(f",,0.5,{step},{step * seconds_per_step}")
    for step, fid in sorted(fids.items()):
        rows.append(f"{fid},{10 - fid / 10},,{step},")
    (run / "metrics.csv").write_text("\n".join(rows) + "\n" + extra_rows)
    return run
