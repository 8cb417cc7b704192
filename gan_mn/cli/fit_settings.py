"""The settings of a ``gan-mn fit`` that would fail only after its run directory exists:
checked first, each refused in one line (``RunError``)."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from gan_mn.cli.rundir import RunError
from gan_mn.norm.kernels import triton_available

log = logging.getLogger(__name__)


def check_settings(cfg: Any) -> None:
    """Trainer settings that would otherwise fail after the run directory exists."""
    max_steps = cfg.trainer.max_steps
    if max_steps is not None and max_steps != -1 and max_steps < 1:
        raise RunError(f"--trainer.max_steps must be a positive number of generator steps "
                       f"(or -1 for no limit), got {max_steps}")
    kernels = ((cfg.model.norm_kwargs or {}).get("mn") or {}).get("kernels")
    on_cpu = str(cfg.trainer.accelerator) == "cpu" or not torch.cuda.is_available()
    if kernels == "triton" and on_cpu and os.environ.get("TRITON_INTERPRET") != "1":
        raise RunError("MN kernels='triton' needs a CUDA GPU; use kernels='auto' here")
    if kernels == "triton" and not triton_available():
        raise RunError("MN kernels='triton' needs Triton (it comes with CUDA builds of torch); "
                       "use kernels='auto' here")
    if cfg.model.cuda_graph == "auto":
        obstacle = _graph_obstacle(cfg, on_cpu)
        cfg.model.cuda_graph = obstacle is None
        log.info("cuda_graph auto: %s", "capturing the training step as a CUDA graph"
                 if obstacle is None else f"running eagerly ({obstacle[0]})")
    elif cfg.model.cuda_graph and (obstacle := _graph_obstacle(cfg, on_cpu)) is not None:
        raise RunError(obstacle[1])


def _graph_obstacle(cfg: Any, on_cpu: bool) -> tuple[str, str] | None:
    """Why the training step cannot be captured as a CUDA graph here: a short reason and
    the one-line refusal of ``--model.cuda_graph true``; None if it can."""
    trainer = cfg.trainer
    if cfg.model.num_classes:
        return ("a class-conditional model", "--model.cuda_graph true: class-conditional "
                "models run eagerly; leave it off (or auto)")
    if on_cpu:
        return ("no CUDA GPU", "--model.cuda_graph true needs a CUDA GPU (it captures the "
                "training step as a CUDA graph); leave it off on this machine")
    if str(trainer.precision) not in ("None", "32", "32-true"):
        return (f"precision {trainer.precision}, not float32",
                f"--model.cuda_graph true runs in float32 only (--trainer.precision "
                f"32-true), got {trainer.precision}")
    devices = trainer.devices
    many = (isinstance(devices, int) and devices > 1) or \
        (isinstance(devices, (list, tuple)) and len(devices) > 1) or \
        (str(devices) in ("auto", "-1") and torch.cuda.device_count() > 1) or \
        (isinstance(devices, str) and devices.isdigit() and int(devices) > 1) or \
        (trainer.num_nodes or 1) > 1
    if many or "ddp" in str(trainer.strategy) or "fsdp" in str(trainer.strategy):
        return ("more than one GPU or process", "--model.cuda_graph true trains on one GPU "
                "in one process: set --trainer.devices 1 (DDP is not supported with it)")
    return None
