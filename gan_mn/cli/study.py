"""``gan-mn study``: a BN-vs-MN convergence study, every group x seed as a ``gan-mn fit``
run, in ``OUT/runs/<group>-seed<S>/``; ``gan-mn compare OUT/runs/* --out OUT`` reports it.

Resumable: a run that reached ``--steps`` is skipped, one that stopped early continues
from its ``last.ckpt``; run the same command again after a kill. A run another process is
training (its run directory's lock, :class:`gan_mn.cli.rundir.RunLock`) is skipped. Each
launch is appended to ``OUT/manifest.json``: the command, the code version (the git
commit when it started), package versions, the machine, start and end, and what each run
did.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from gan_mn.cli.args import ArgumentParser
from gan_mn.configs import FOLDER as CONFIGS
from gan_mn.errors import UserError
from gan_mn.files import atomic_write
from gan_mn.registry import Registry
from gan_mn.run_log import metrics_fields, metrics_rows, steps_done


class Group(NamedTuple):
    """A study group: its packaged config and extra ``gan-mn fit`` options (its label is
    its name)."""

    config: str
    options: list[str]


GROUPS: Registry[Group] = Registry("group")
K2, K5, EM3 = (["--model.norm_kwargs", f"{{mn: {{{option}}}}}"]
               for option in ("num_components: 2", "num_components: 5", "em_iters: 3"))
GROUPS.register("bn", Group("dcgan_bn.yaml", []))
# K=3, one warm-started EM iteration per batch
GROUPS.register("mn-g", Group("dcgan_mn.yaml", []))
GROUPS.register("mn-gd", Group("dcgan_mn_gd.yaml", []))
GROUPS.register("mn-g-k2", Group("dcgan_mn.yaml", K2))
GROUPS.register("mn-g-k5", Group("dcgan_mn.yaml", K5))
GROUPS.register("mn-g-em3", Group("dcgan_mn.yaml", EM3))
# SNGAN's families: spectral norm in D, hinge loss, 5 D steps per G step (the configs)
GROUPS.register("sngan-bn", Group("sngan_bn.yaml", []))
GROUPS.register("sngan-mn-g", Group("sngan_mn.yaml", []))
GROUPS.register("sngan-mn-g-k5", Group("sngan_mn.yaml", K5))
GROUPS.register("resnet-bn", Group("resnet_bn.yaml", []))
GROUPS.register("resnet-mn-g", Group("resnet_mn.yaml", []))
# class-conditional DCGAN on CIFAR-10's 10 classes: conditional BN or MN in G, a
# projection discriminator (BN in D)
GROUPS.register("cbn", Group("dcgan_bn.yaml", ["--model.num_classes", "10"]))
GROUPS.register("cmn-g", Group("dcgan_mn.yaml", ["--model.num_classes", "10"]))
GROUPS.register("cmn-g-k5", Group("dcgan_mn.yaml", ["--model.num_classes", "10", *K5]))


# What the study sets for every run, and the study option that sets it: given after --,
# they would conflict (a run stopped at another step than --steps, then refused on resume).
STUDY_SETS = {
    "-c": "--groups", "--config": "--groups", "--model.label": "--groups",
    "--seed_everything": "--seeds", "--trainer.max_steps": "--steps",
    "--data.dataset": "--dataset", "--data.root": "--data-root",
    "--metrics.every_n_steps": "--eval-every", "--metrics.num_samples": "--num-samples",
    "--metrics.feature_extractor": "--extractor", "--metrics.extractor_plugin": "--plugin",
    "--metrics.cache_dir": "--cache-dir", "--checkpoint.every_n_train_steps":
    "--checkpoint-every", "--output_dir": "--out", "--run_name": "--out",
    "--ckpt_path": "(a study resumes by itself)", "--overwrite": "(a study resumes by itself)"}
NORM_KWARGS = "--model.norm_kwargs"
MAX_SEED = 2**32 - 1  # what torch and numpy seed with


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="gan-mn study", description=(
        "Train every group x seed of a BN-vs-MN study (resumable); options after -- go "
        "to every `gan-mn fit`."))
    p.add_argument("--out", required=True, help="study directory (runs/, logs/, manifest)")
    p.add_argument("--dataset", default="imagefolder", choices=("imagefolder", "cifar10"))
    p.add_argument("--data-root", required=True)
    p.add_argument("--extractor", default="inception-v3-compat",
                   help="torch-fidelity extractor (cifar10-proxy is built in and offline)")
    p.add_argument("--plugin", default=None, help="extractor plugin file or module")
    p.add_argument("--cache-dir", default="~/.cache/gan-mn/fidelity")
    p.add_argument("--groups", nargs="+", default=["bn", "mn-g"], choices=GROUPS.names())
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--parallel", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1),
                   help="torch threads per run (default: every core)")
    return p


def study_main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    a = parser().parse_args(argv[:split])
    a.extra = argv[split + 1:]
    check_options(a)
    jobs = [(g, s) for s in a.seeds for g in a.groups]  # seed-major: partial studies balance
    started, version = _now(), code_version()
    children = Children()
    with children.stopped_by_sigterm(), ThreadPoolExecutor(max_workers=a.parallel) as pool:
        lines = list(pool.map(lambda job: run_one(a, *job, children), jobs))
    for line in lines:
        print(line, flush=True)
    record_launch(Path(a.out), argv, started, lines, version)
    if children.stopped:
        print("gan-mn: study stopped by a signal; run the same command again to resume",
              file=sys.stderr)
        return 143
    return 0 if not any("FAILED" in line for line in lines) else 1


class Children:
    """The ``fit`` processes a study runs. On SIGTERM each is sent SIGTERM too (it saves
    its ``last.ckpt``), the study waits for them, starts no more, and still records the
    launch: a rerun resumes every run where it stopped."""

    def __init__(self) -> None:
        self.running: set[subprocess.Popen[bytes]] = set()
        self.stopped = False
        self.guard = threading.Lock()

    @contextmanager
    def stopped_by_sigterm(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # (signals reach the main thread only)
            return
        previous = signal.signal(signal.SIGTERM, self._stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _stop(self, signum: int, frame: object) -> None:
        with self.guard:
            self.stopped = True
            for child in self.running:
                child.send_signal(signal.SIGTERM)

    def call(self, cmd: list[str], **kwargs: Any) -> int | None:
        """Run ``cmd`` to its end; None (not started) once the study is stopping."""
        with self.guard:
            if self.stopped:
                return None
            child = subprocess.Popen(cmd, **kwargs)
            self.running.add(child)
        try:
            return child.wait()
        finally:
            with self.guard:
                self.running.discard(child)


def check_options(a: argparse.Namespace) -> None:
    """Every refusal before anything is written, each in one line."""
    for name in ("steps", "eval_every", "num_samples", "checkpoint_every", "parallel",
                 "threads"):
        if getattr(a, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got "
                            f"{getattr(a, name)}")
    if a.eval_every > a.steps:
        raise UserError(f"--eval-every {a.eval_every} is more than --steps {a.steps}: the runs "
                        "would never be evaluated")
    for name, values in (("seeds", a.seeds), ("groups", a.groups)):
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            raise UserError(f"--{name} lists {', '.join(twice)} more than once")
    bad = [s for s in a.seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise UserError(f"--seeds must be between 0 and {MAX_SEED}, got {bad[0]}")
    for word in a.extra:
        name = word.split("=")[0]
        if name in STUDY_SETS:
            raise UserError(f"{name} after -- conflicts with what the study sets for every "
                            f"run; use {STUDY_SETS[name]}")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    for folder in (out, *out.resolve().parents):
        if (folder / "last.ckpt").is_file() or ((folder / "config.yaml").is_file()
                                                and (folder / "metrics.csv").is_file()):
            raise UserError(f"--out {out} is inside the run directory {folder}: put the "
                            "study in a folder of its own")
    fit_options([], a.extra)  # a --model.norm_kwargs that is not a mapping: refused here


def fit_options(group: list[str], extra: list[str]) -> list[str]:
    """The group's ``gan-mn fit`` options, then the user's. A ``--model.norm_kwargs`` in
    both is merged key by key: jsonargparse would replace the group's whole mapping (the
    ``mn-g-k5`` group, given ``{mn: {kernels: eager}}``, trained with K=3)."""
    import yaml

    words, merged = [], {}
    for word, value in _pairs([*group, *extra]):
        if word != NORM_KWARGS:
            words += [word] if value is None else [word, value]
            continue
        try:
            given = yaml.safe_load(value or "") or {}
        except yaml.YAMLError:
            given = None
        if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
            raise UserError(f"{NORM_KWARGS} {value!r}: expected a mapping of norm kinds to "
                            "options, e.g. '{mn: {kernels: eager}}'")
        for kind, options in given.items():
            merged[kind] = {**merged.get(kind, {}), **options}
    return [*words, NORM_KWARGS, json.dumps(merged)] if merged else words


def _pairs(words: list[str]) -> list[tuple[str, str | None]]:
    """``[--key, value, --key=value, word]`` as (word, value) pairs; only
    ``--model.norm_kwargs`` is split off (the rest keep their order and form)."""
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == NORM_KWARGS and i + 1 < len(words):
            pairs.append((word, words[i + 1]))
            i += 2
            continue
        if word.startswith(NORM_KWARGS + "="):
            pairs.append((NORM_KWARGS, word.split("=", 1)[1]))
        else:
            pairs.append((word, None))
        i += 1
    return pairs


def finished_step(run_dir: Path) -> int:
    """The run's step: from last.ckpt, or for a committed run (checkpoints are not
    committed) the last step its metrics.csv logged; -1 if it has neither."""
    from gan_mn.torch_files import UnsafeFileError, checkpoint_step

    last = run_dir / "last.ckpt"
    if not last.is_file():
        metrics = run_dir / "metrics.csv"
        if not metrics.is_file():
            return -1
        metrics_fields(metrics)  # (one in an earlier format is refused)
        steps = [s for r in metrics_rows(metrics) if (s := steps_done(r)) is not None]
        return max(steps, default=-1)
    try:
        return checkpoint_step(last)
    except UnsafeFileError:  # refused in one line: nothing from it may run, not even fit's
        raise
    except Exception:  # unreadable: treat as not started (checkpoints are written atomically)
        return -1


def command(a: argparse.Namespace, group: str, seed: int, run_dir: Path) -> list[str]:
    """The ``gan-mn fit`` of one run: its group's config and options, the study's
    schedule, and a resume (or a clean start of a run killed before its first
    checkpoint)."""
    config, options = GROUPS[group]
    cmd = [sys.executable, "-m", "gan_mn", "fit", "-c", str(CONFIGS / config),
           "--model.label", group, "--seed_everything", str(seed),
           "--trainer.max_steps", str(a.steps), "--data.dataset", a.dataset,
           "--data.root", a.data_root, "--metrics.every_n_steps", str(a.eval_every),
           "--metrics.num_samples", str(a.num_samples), "--metrics.feature_extractor",
           a.extractor, "--metrics.cache_dir", a.cache_dir,
           "--model.sample_every_n_steps", str(a.steps),
           "--checkpoint.every_n_train_steps", str(a.checkpoint_every),
           "--output_dir", str(run_dir.parent), "--run_name", run_dir.name,
           "--wandb.mode", "disabled", "--trainer.enable_progress_bar", "false",
           "--trainer.enable_model_summary", "false", *fit_options(options, a.extra)]
    if a.plugin:
        cmd += ["--metrics.extractor_plugin", a.plugin]
    if (run_dir / "last.ckpt").is_file():
        cmd += ["--ckpt_path", "last"]
    elif run_dir.is_dir() and any(p.name != ".lock" for p in run_dir.iterdir()):
        cmd += ["--overwrite", "true"]  # killed before its first checkpoint
    return cmd


def run_one(a: argparse.Namespace, group: str, seed: int, children: Children) -> str:
    from gan_mn.cli.rundir import RunError, RunLock

    run_dir = Path(a.out) / "runs" / f"{group}-seed{seed}"
    done = finished_step(run_dir)
    if done >= a.steps:
        return f"{run_dir.name}: already at step {done}"
    lock = RunLock(run_dir)  # the run's own lock, as fit takes it: is someone training it?
    try:
        lock.acquire()
    except RunError:
        return f"{run_dir.name}: skipped, another process is training it"
    lock.release(remove_if_unused=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    log_file = Path(a.out) / "logs" / f"{run_dir.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log_file, "a") as log:
        rc = children.call(command(a, group, seed, run_dir), env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    took = f"in {time.time() - start:.0f} s"
    if rc is None:
        return f"{run_dir.name}: not started, the study was stopped"
    if rc == 143:
        return f"{run_dir.name}: stopped by a signal at step {finished_step(run_dir)} {took}"
    if rc == 2 and "is in use by another gan-mn fit" in _last_line(log_file):
        return f"{run_dir.name}: skipped, another process is training it"  # (it started first)
    status = "ok" if rc == 0 else f"FAILED (exit {rc}, see {log_file})"
    return f"{run_dir.name}: {status} {took}"


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def code_version() -> dict[str, object]:
    """The git commit of the clone gan-mn runs from, and whether its tree differs from it
    (None outside a clone). Read when a launch starts: the tree may move while its runs
    train, and the runs are the start's code."""
    clone = Path(__file__).resolve().parents[2]  # (an installed package is in no clone)

    def git(*args: str) -> str | None:
        if not (clone / ".git").exists():
            return None
        try:
            return subprocess.run(["git", *args], cwd=clone, capture_output=True,
                                  text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = git("rev-parse", "HEAD")
    return {"commit": commit,
            "uncommitted_changes": None if commit is None else bool(git("status", "--porcelain"))}


def record_launch(out: Path, argv: list[str], started: str, lines: list[str],
                  version: dict[str, object]) -> None:
    """Append this launch to ``OUT/manifest.json`` (``version``: :func:`code_version` at
    its start); a study's README is written from it."""
    path = out / "manifest.json"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".manifest.lock", "a") as lock:  # concurrent launches: one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        _append_launch(path, argv, started, lines, version)


def _append_launch(path: Path, argv: list[str], started: str, lines: list[str],
                   version: dict[str, object]) -> None:
    import torch

    manifest = json.loads(path.read_text()) if path.is_file() else {"launches": []}
    packages = {}
    for name in ("gan-mn", "torch", "lightning", "torch-fidelity", "numpy", "scipy"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    manifest["launches"].append({
        "command": ["gan-mn", "study", *argv],
        **version,
        "packages": packages, "python": sys.version.split()[0],
        "machine": {"cpus": os.cpu_count(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                    else None},
        "started": started, "finished": _now(), "runs": lines})
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))
