"""What the CLI's tests share: the repository, the smoke config, and MN's eager kernels."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
# MN with its eager kernels: runs that do not test the compiled kernels (tests/norm does)
# skip compiling them, seconds per process.
EAGER_MN = ["--model.norm_kwargs", '{"mn": {"kernels": "eager"}}']
