"""``gan-mn fit``: LightningCLI over the GAN module and the data module.

Adds to Lightning's own options: ``--metrics.*`` (FidelityCallback), ``--checkpoint.*``
(ModelCheckpoint for ``last.ckpt``), ``--run_name``, ``--output_dir`` and ``--wandb.*``.
The run directory is ``<output_dir>/<run_name>``, the run name ``<label>-seed<seed>``
unless given, so the same command finds its run again with ``--ckpt_path last``.
"""

from __future__ import annotations

import json
import os
import sys
from inspect import signature
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.plugins.layer_sync import LayerSync
from typing_extensions import override

from gan_mn.cli.fit_settings import check_settings
from gan_mn.cli.output import quiet_third_parties
from gan_mn.cli.rundir import (
    WANDB_MODES,
    RunError,
    RunLock,
    make_loggers,
    record_resume,
    remove_run_files,
    resume_changes,
    run_files,
    truncate_metrics,
)
from gan_mn.configs import resolve_args
from gan_mn.data import GANDataModule
from gan_mn.files import writable
from gan_mn.labels import default_label, run_name
from gan_mn.metrics import FidelityCallback
from gan_mn.norm import MixtureNorm2d
from gan_mn.run_log import metrics_fields
from gan_mn.torch_files import check, checkpoint_entries, checkpoint_step
from gan_mn.training import GAN, MixtureDiagnostics
from gan_mn.training.checkpoint_io import AtomicCheckpointIO
from gan_mn.training.distributed import NormSync, unused_parameters_strategy
from gan_mn.training.finite_watch import NonFiniteError
from gan_mn.training.preemption import PreemptionCheckpoint
from gan_mn.training.rng_state import RNGState


class RunConfig(SaveConfigCallback):
    """Writes ``config.yaml`` when training starts, which for a resume is after the
    checkpoint has loaded: a resume that fails leaves the run's config as it was. Also
    records what the resume changed in ``resumes.jsonl``.

    The config holds what the user gave: the directories derived from ``--output_dir``
    and ``--run_name`` are written as null, ``cuda_graph: auto`` as ``auto`` (``derived``:
    each key with the value to write), so that a run
    directory copied elsewhere names no path of the machine it came from."""

    def __init__(self, *args: Any, changes: dict[str, Any] | None = None,
                 derived: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changes = changes
        self.config = as_saved(self.config, derived or {})

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Deferred to :meth:`on_train_start`."""

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().setup(trainer, pl_module, "fit")  # calls save_config on rank 0

    @override
    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                    stage: str) -> None:
        """The whole resolved config (trainer, metrics protocol, EMA...) on the wandb run,
        so that the dashboard describes the run by itself."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update({"config": _plain(self.config.as_dict())},
                                                allow_val_change=True)
        if self.changes is not None and trainer.is_global_zero:
            record_resume(Path(trainer.log_dir or "."), trainer.global_step, self.changes)


def as_saved(config: Any, derived: dict[str, Any]) -> Any:
    """``config`` as ``config.yaml`` records it: the ``derived`` keys as given there."""
    saved = config.clone()
    for key, value in derived.items():
        saved[key] = value
    return saved


class GANCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        quiet_third_parties()
        self.lock: RunLock | None = None
        try:
            super().__init__(GAN, GANDataModule, args=args, run=run, seed_everything_default=0,
                             save_config_callback=RunConfig,
                             save_config_kwargs={"overwrite": True},
                             auto_configure_optimizers=False)
        except NonFiniteError as err:  # say what the user can do from here
            last = Path(self.run_dir) / "last.ckpt"
            hint = (f"the last good checkpoint is {last}: resume it with --ckpt_path last"
                    if last.is_file() else "no checkpoint was saved before it")
            raise NonFiniteError(f"{err}; {hint}, or start again with --overwrite true and "
                                 "other settings (e.g. a lower learning rate)") from None
        finally:  # the process may go on (tests, notebooks): the run directory is free again
            if self.lock is not None:
                self.lock.release(remove_if_unused=True)

    @staticmethod
    @override
    def subcommands() -> dict[str, set[str]]:
        """``fit`` only: the unused validate/test/predict parsers took half a short fit."""
        return {"fit": LightningCLI.subcommands()["fit"]}

    @override
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Parse errors raise (main() prints them as one line) instead of usage + exit."""
        return super().init_parser(**{"exit_on_error": False, **kwargs})

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """``-c smoke``: a packaged config by name (:mod:`gan_mn.configs`), from any folder;
        a ``--ckpt_path`` file checked safe (:mod:`gan_mn.torch_files`) before it is read."""
        given = sys.argv[1:] if args is None else args
        if not isinstance(given, list):
            super().parse_arguments(parser, args)
            return
        self.config = parser.parse_args(resolve_args(given))
        sub = self.config.get("subcommand")
        seed = self.config[sub].get("seed_everything") if sub else None
        if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed < 2**32:
            raise RunError(f"--seed_everything must be between 0 and {2**32 - 1}, got {seed}")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if ckpt_path and Path(ckpt_path).is_file():  # before LightningCLI reads its hparams
            check(ckpt_path, "checkpoint")

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(FidelityCallback, "metrics")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0,
                             "checkpoint.every_n_train_steps": 1000,
                             "checkpoint.enable_version_counter": False})
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="run directory name (default: <label>-seed<seed>)")
        parser.add_argument("--output_dir", type=str, default="checkpoints",
                            help="parent of the run directory, relative to the working dir")
        parser.add_argument("--wandb.mode", type=Literal[WANDB_MODES], default="offline",
                            help="offline (default; `wandb sync` later), online or disabled")
        parser.add_argument("--wandb.project", type=str, default="gan-mn")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="start the run directory again from step 0, removing the "
                                 "run that is there")
        parser.add_argument("--mn_diagnostics", type=bool, default=True,
                            help="at every --trainer.log_every_n_steps, log each MN layer's "
                                 "mixture weights, effective number of components, posterior "
                                 "entropy, separation and components below one sample as "
                                 "mn/<layer>/<field> (nothing is computed at other steps; "
                                 "not with --model.cuda_graph)")
        parser.add_argument("--sync_norm", type=bool, default=True,
                            help="under DDP, synchronize MN and BN over all processes "
                                 "(SyncMixtureNorm2d, SyncBatchNorm)")
        parser.link_arguments("seed_everything", "data.seed")
        parser.link_arguments("data.image_size", "model.image_size")
        parser.link_arguments("model.num_classes", "data.num_classes")

    # --- run directory --------------------------------------------------------------------
    def _run_config(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    @override
    def before_instantiate_classes(self) -> None:
        cfg = self._run_config()
        label = cfg.model.label or default_label(cfg.model.g_norm, cfg.model.d_norm,
                                                 cfg.model.norm_kwargs, cfg.model.arch,
                                                 cfg.model.num_classes)
        cfg.model.label = label
        cfg.run_name = cfg.run_name or run_name(label, cfg.model.arch, cfg.seed_everything)
        run_dir = Path(cfg.output_dir) / cfg.run_name
        derived: dict[str, Any] = {"trainer.default_root_dir": None}
        if cfg.checkpoint.dirpath is None:
            derived["checkpoint.dirpath"] = None
        if cfg.model.cuda_graph == "auto":
            derived["model.cuda_graph"] = "auto"
        self.save_config_kwargs["derived"] = derived
        cfg.trainer.default_root_dir = str(run_dir)
        if cfg.checkpoint.dirpath is None:
            cfg.checkpoint.dirpath = str(run_dir)
        self.run_dir = run_dir
        if self.subcommand != "fit":
            return
        check_settings(cfg)
        if _launching_process():  # (DDP ranks started by Lightning find rank 0's files)
            self._check_run_dir(cfg, run_dir)

    def _check_run_dir(self, cfg: Any, run_dir: Path) -> None:
        """One run per directory, decided under its lock, taken before any slow work (data
        loading): new run, resume or refusal. A resume compares what it asks for with the
        run. A start refused or failed before training leaves no lock file behind (nor
        the directory, if it made it)."""
        _check_writable(run_dir)
        self.lock = RunLock(run_dir)
        self.lock.acquire()
        ckpt_path = cfg.get("ckpt_path")
        last = Path(cfg.checkpoint.dirpath) / "last.ckpt"
        present = run_files(run_dir)
        if ckpt_path is not None and cfg.overwrite:
            raise RunError("--overwrite starts a run from step 0: it cannot be combined with "
                           "--ckpt_path")
        if ckpt_path == "last" and not last.is_file():
            raise RunError(f"no run to resume in {run_dir}: it has no last.ckpt (start it "
                           "without --ckpt_path" + (", with --overwrite true to discard "
                                                    "what is there)" if present else ")"))
        if ckpt_path is not None and (run_dir / "metrics.csv").is_file():
            metrics_fields(run_dir / "metrics.csv")  # (one in an earlier format is refused)
        if ckpt_path is not None and (run_dir / "config.yaml").is_file():
            self.save_config_kwargs["changes"] = resume_changes(
                _plain(yaml.safe_load((run_dir / "config.yaml").read_text())),
                _plain(as_saved(cfg, self.save_config_kwargs["derived"]).as_dict()))
        if ckpt_path is None and present and not cfg.overwrite:
            how = "resume it with --ckpt_path last, " if last.is_file() else ""
            raise RunError(f"{run_dir} already holds a run ({', '.join(present)}); {how}start "
                           "it again from step 0 with --overwrite true, or pick another "
                           "--run_name or --output_dir")

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The run prepared (:meth:`prepare_run`), then the Trainer assembled
        (:meth:`trainer_arguments`), which writes and deletes nothing."""
        self.prepare_run()
        return super().instantiate_trainer(**self.trainer_arguments(kwargs))

    def prepare_run(self) -> None:
        """Everything decided before a file is written: the data loads (CIFAR-10
        downloads here, once), the metrics settings fit it, a resume is possible (steps
        left, the same images), and ``--overwrite`` clears the run directory, which the
        lock taken in :meth:`before_instantiate_classes` makes this process's alone."""
        if not _launching_process():  # (DDP ranks started by Lightning)
            return
        cfg = self._run_config()
        metrics: FidelityCallback = self._get(self.config_init, "metrics")
        self.datamodule.load_images()
        metrics.check_data(self.datamodule)
        self._check_resume(cfg)
        if cfg.overwrite:
            remove_run_files(self.run_dir)

    def trainer_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The Trainer's loggers, callbacks, plugins and strategy for this run."""
        cfg = self._run_config()
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        metrics: FidelityCallback = self._get(self.config_init, "metrics")
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = make_loggers(self.run_dir, cfg.run_name, cfg.wandb.project,
                                            cfg.wandb.mode, group=cfg.model.label,
                                            tags=_norm_tags(cfg.model))
        callbacks = list(trainer_cfg.get("callbacks") or [])
        if metrics.enabled and "fid" in metrics.metrics:
            fid_key = metrics.protocol(self.datamodule.metric_suffix()).fid_key()
            callbacks.append(ModelCheckpoint(
                dirpath=cfg.checkpoint.dirpath, monitor=fid_key, mode="min",
                filename="best-fid-step{step}", auto_insert_metric_name=False, save_top_k=1,
                every_n_train_steps=metrics.every_n_steps, enable_version_counter=False))
        if cfg.mn_diagnostics and not cfg.model.cuda_graph:
            callbacks.append(MixtureDiagnostics())
        # Resumable runs: RNG states in the checkpoint, a last.ckpt on SIGTERM/Ctrl-C,
        # checkpoints written atomically (unless the user brought a CheckpointIO).
        kwargs["callbacks"] = [*callbacks, RNGState(), PreemptionCheckpoint(cfg.checkpoint.dirpath)]
        plugins = trainer_cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        if cfg.sync_norm and not any(isinstance(p, LayerSync) for p in plugins):
            accelerator = str(trainer_cfg.get("accelerator") or "auto")
            cuda = accelerator in ("gpu", "cuda") or (
                accelerator == "auto" and torch.cuda.is_available())
            plugins.append(NormSync(batchnorm=cuda))  # applied by DDP strategies only
            kwargs["sync_batchnorm"] = False
        kwargs["plugins"] = plugins
        # each GAN backward leaves one network without gradients: DDP must allow that
        kwargs["strategy"] = unused_parameters_strategy(trainer_cfg.get("strategy", "auto"))
        return kwargs

    def _check_resume(self, cfg: Any) -> None:
        """A resume has steps left to train, on the images the run trained on (moved,
        they may be)."""
        path = _resume_path(cfg)
        if path is None or not path.is_file():
            return  # (no run to resume is refused elsewhere)
        ckpt = checkpoint_entries(path)
        done, max_steps = int(ckpt.get("global_step", 0)), cfg.trainer.max_steps
        if max_steps is not None and max_steps != -1 and max_steps <= done:
            raise RunError(f"nothing to train: the run is at step {done} and "
                           f"--trainer.max_steps is {max_steps}; raise it to continue")
        saved = (ckpt.get(type(self.datamodule).__qualname__) or {}).get("content")
        now = self.datamodule.content_digest()
        if saved is not None and saved != now:  # (older checkpoints do not record it)
            raise RunError(f"cannot resume on other images: the run trained on {saved} "
                           f"(size, count, pixel hash) and {self.datamodule.source_label()} "
                           f"holds {now}; point --data.root at the run's images (a moved "
                           "folder is fine), or start a new run")

    def after_fit(self) -> None:
        """Close the wandb run, so the next run in this process starts its own, and wait
        for wandb's service to write it out: ``finish`` alone returns while wandb-core may
        still be writing the offline record, which a caller reading it next (or a second
        run writing at the same time) would find holding only its header."""
        finished = False
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._experiment is not None:
                logger.experiment.finish()
                finished = True
        if finished:
            import wandb

            wandb.teardown()

    def before_fit(self) -> None:
        path = _resume_path(self._run_config())
        if path is None:
            return
        if not path.is_file():
            raise RunError(f"checkpoint to resume from not found: {path}")
        step = checkpoint_step(path)
        truncate_metrics(self.run_dir / "metrics.csv", step)


def _resume_path(cfg: Any) -> Path | None:
    """The checkpoint a fit resumes from, or None for a new run."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return None
    return Path(cfg.checkpoint.dirpath) / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)


def _norm_tags(model: Any) -> list[str]:
    """wandb tags: the norms of G and D and MN's component count, to filter runs by."""
    def kinds(norm: Any) -> str:
        return norm if isinstance(norm, str) else "+".join(sorted(set(norm)))

    tags = [f"arch:{model.arch}", f"G:{kinds(model.g_norm)}", f"D:{kinds(model.d_norm)}"]
    if "mn" in f"{kinds(model.g_norm)}+{kinds(model.d_norm)}":
        options = (model.norm_kwargs or {}).get("mn") or {}
        default = signature(MixtureNorm2d).parameters["num_components"].default
        tags.append(f"K={options.get('num_components', default)}")
    return tags


def _plain(tree: Any) -> Any:
    """Config values as JSON data (lists, not tuples; paths as strings), for comparing."""
    return json.loads(json.dumps(tree, default=str))


def _launching_process() -> bool:
    """Whether this is the process a user started (DDP: global rank 0), which holds the
    run directory's lock; ranks that Lightning launches carry their rank in the environment."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK",
                                                        "SLURM_PROCID"))


def _check_writable(run_dir: Path) -> None:
    """Fail before training, not at the first checkpoint an hour later. Creates nothing
    (so a run that fails later leaves nothing, and DDP ranks do not race)."""
    blocking = writable(run_dir)
    if blocking is not None:
        raise RunError(f"cannot write the run directory {run_dir}: {blocking} is not a "
                       "writable directory")


__all__ = ["GANCLI", "RunConfig", "RunError"]
