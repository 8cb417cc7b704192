"""Launch a BN-vs-MN convergence study: every group x seed as a `gan-mn fit` run.

Resumable: a run whose ``last.ckpt`` has reached ``--steps`` is skipped, one that
stopped early continues with ``--ckpt_path last``; re-run the same command after a
kill. Runs go to ``OUT/runs/<label>-seed<S>/`` (``metrics.csv``, ``config.yaml``), each
launch is appended to ``OUT/manifest.json``; ``gan-mn compare OUT/runs/* --out OUT``
makes the report.

Example (the 3,000-step study, on the CIFAR-10 subset with the built-in proxy extractor;
``--`` passes the rest to ``gan-mn fit``):

    python benchmarks/convergence.py --out studies/subset-3k --dataset cifar10 \\
        --data-root data --extractor cifar10-proxy --groups bn mn-g --seeds 0 1 2 \\
        --steps 3000 --eval-every 500 --num-samples 2000 -- --data.per_batch_file 1017

The ablation (K, EM iterations, MN in D) uses the groups ``bn mn-g mn-g-k2 mn-g-k5
mn-g-em3 mn-gd`` with ``--steps 2000 --eval-every 250``; SNGAN's standard CNN ``sngan-bn
sngan-mn-g`` (``--reference sngan-bn`` in ``compare``), its ResNet ``resnet-bn
resnet-mn-g``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
import yaml

from gan_mn.files import atomic_write
from gan_mn.report.runs import metrics_rows, steps_done

ROOT = Path(__file__).resolve().parents[1]
# group -> (config, extra `gan-mn fit` options); each group's label is its name.
GROUPS: dict[str, tuple[str, list[str]]] = {
    "bn": ("dcgan_bn.yaml", []),
    "mn-g": ("dcgan_mn.yaml", []),  # K=3, one warm-started EM iteration per batch
    "mn-gd": ("dcgan_mn_gd.yaml", []),
    "mn-g-k2": ("dcgan_mn.yaml", ["--model.norm_kwargs", "{mn: {num_components: 2}}"]),
    "mn-g-k5": ("dcgan_mn.yaml", ["--model.norm_kwargs", "{mn: {num_components: 5}}"]),
    "mn-g-em3": ("dcgan_mn.yaml", ["--model.norm_kwargs", "{mn: {em_iters: 3}}"]),
    # SNGAN's families: spectral norm in D, hinge loss, 5 D steps per G step (the configs)
    "sngan-bn": ("sngan_bn.yaml", []),
    "sngan-mn-g": ("sngan_mn.yaml", []),
    "sngan-mn-g-k5": ("sngan_mn.yaml", ["--model.norm_kwargs", "{mn: {num_components: 5}}"]),
    "resnet-bn": ("resnet_bn.yaml", []),
    "resnet-mn-g": ("resnet_mn.yaml", []),
}


def finished_step(run_dir: Path) -> int:
    """The run's step: from last.ckpt, or for a committed run (checkpoints are not
    committed) the last step its metrics.csv logged; -1 if it has neither."""
    last = run_dir / "last.ckpt"
    if not last.is_file():
        return _logged_step(run_dir / "metrics.csv")
    try:
        return int(torch.load(last, map_location="cpu", weights_only=False, mmap=True)
                   .get("global_step", 0))
    except Exception:  # unreadable: treat as not started (Lightning writes atomically)
        return -1


def _logged_step(metrics: Path) -> int:
    """Steps done by the last row of a metrics.csv (``gan_mn.report.runs.steps_done``, with
    the run's D steps per G step from its config.yaml)."""
    if not metrics.is_file():
        return -1
    config = metrics.with_name("config.yaml")
    model = (yaml.safe_load(config.read_text()) or {}).get("model") or {} \
        if config.is_file() else {}
    d_steps = int(model.get("d_steps") or 1)
    steps = [s for r in metrics_rows(metrics) if (s := steps_done(r, d_steps)) is not None]
    return max(steps, default=-1)


def command(a: argparse.Namespace, group: str, seed: int, resume: bool) -> list[str]:
    config, options = GROUPS[group]
    cmd = [sys.executable, "-m", "gan_mn", "fit", "-c", str(ROOT / "configs" / config),
           *options, "--model.label", group,
           "--seed_everything", str(seed), "--trainer.max_steps", str(a.steps),
           "--data.dataset", a.dataset, "--data.root", a.data_root,
           "--metrics.every_n_steps", str(a.eval_every),
           "--metrics.num_samples", str(a.num_samples),
           "--metrics.feature_extractor", a.extractor, "--metrics.cache_dir", a.cache_dir,
           "--model.sample_every_n_steps", str(a.steps), "--checkpoint.every_n_train_steps",
           str(a.checkpoint_every), "--output_dir", str(Path(a.out) / "runs"),
           "--run_name", f"{group}-seed{seed}", "--wandb.mode", "disabled",
           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
           *a.extra]
    if a.plugin:
        cmd += ["--metrics.extractor_plugin", a.plugin]
    run_dir = ROOT / a.out / "runs" / f"{group}-seed{seed}"
    if resume:
        cmd += ["--ckpt_path", "last"]
    elif run_dir.is_dir() and any(run_dir.iterdir()):  # killed before its first checkpoint
        cmd += ["--overwrite", "true"]
    return cmd


def run_one(a: argparse.Namespace, group: str, seed: int) -> str:
    run_dir = ROOT / a.out / "runs" / f"{group}-seed{seed}"
    done = finished_step(run_dir)
    if done >= a.steps:
        return f"{run_dir.name}: already at step {done}"
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    start = time.time()
    log_file = ROOT / a.out / "logs" / f"{run_dir.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    lock = log_file.with_suffix(".lock")  # two launchers must not train one run twice
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = lock.read_text().strip()
        if owner.isdigit() and _alive(int(owner)):
            return f"{run_dir.name}: skipped, launcher {owner} is running it"
        lock.unlink(missing_ok=True)  # left by a killed launcher
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        with open(log_file, "a") as log:
            resume = (run_dir / "last.ckpt").is_file()
            rc = subprocess.call(command(a, group, seed, resume), env=env,
                                 stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    finally:
        lock.unlink(missing_ok=True)
    status = "ok" if rc == 0 else f"FAILED (exit {rc}, see {log_file})"
    return f"{run_dir.name}: {status} in {time.time() - start:.0f} s"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="study directory (runs/ and the report)")
    p.add_argument("--dataset", default="imagefolder", choices=("imagefolder", "cifar10"))
    p.add_argument("--data-root", required=True)
    p.add_argument("--extractor", default="inception-v3-compat")
    p.add_argument("--plugin", default=None, help="extractor plugin file or module")
    p.add_argument("--cache-dir", default="~/.cache/gan-mn/fidelity")
    p.add_argument("--groups", nargs="+", default=["bn", "mn-g"], choices=sorted(GROUPS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--parallel", type=int, default=1, help="runs at once")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1)),
                   help="torch threads per run")
    p.add_argument("extra", nargs="*", help="more `gan-mn fit` options, after --")
    a = p.parse_args()
    # fit runs in the repository root: paths relative to it, so that the runs' config.yaml
    # names no machine's absolute path
    a.data_root = _from_root(a.data_root)
    a.out = _from_root(a.out)
    if a.plugin and Path(a.plugin).exists():
        a.plugin = _from_root(a.plugin)
    jobs = [(g, s) for s in a.seeds for g in a.groups]  # seed-major: partial studies balance
    started = _now()
    with ThreadPoolExecutor(max_workers=a.parallel) as pool:
        lines = list(pool.map(lambda job: run_one(a, *job), jobs))
    for line in lines:
        print(line, flush=True)
    _record_launch(ROOT / a.out, started, lines)
    return 0


def _from_root(path: str) -> str:
    return os.path.relpath(Path(path).resolve(), ROOT)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _record_launch(out: Path, started: str, lines: list[str]) -> None:
    """Append this launch to ``OUT/manifest.json``: the command, the code version and
    package versions, when it started and ended, and what each run did; a study's
    README is written from it."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    path = out / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {"launches": []}
    packages = {}
    for name in ("gan-mn", "torch", "lightning", "torch-fidelity", "numpy", "scipy"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    manifest["launches"].append({
        "command": ["python", "benchmarks/convergence.py", *sys.argv[1:]],
        "commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(git("status",
                                                                            "--porcelain")),
        "packages": packages, "python": sys.version.split()[0],
        "machine": {"cpus": os.cpu_count(), "cuda": torch.cuda.is_available() and
                    torch.cuda.get_device_name(0)},
        "started": started, "finished": _now(), "runs": lines})
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))


if __name__ == "__main__":
    sys.exit(main())
