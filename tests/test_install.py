"""What a user gets from pip, away from this clone: the wheel holds the configs and the
built-in extractor's weights, and runs a fit by config name, a study and an offline
evaluation from a folder outside the clone. And ``gan-mn fit`` needs no statistics stack
(scipy, matplotlib): training does not import ``gan_mn.report``."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.fakes import write_image_folder

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow  # builds a wheel and runs real processes
def test_the_wheel_works_outside_the_clone(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info beside it
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "gan_mn", source / "gan_mn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("gan_mn-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"gan_mn/configs/smoke.yaml", "gan_mn/configs/dcgan_bn.yaml",
            "gan_mn/metrics/cifar10_proxy.pt"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")
               for n in names)
    site = tmp_path / "site"  # the wheel alone; this environment serves its dependencies
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)
    work = tmp_path / "work"  # a folder outside the clone, with no configs/ in it
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    where = _run(["-c", "import gan_mn; print(gan_mn.__file__)"], work, env)
    assert where.startswith(str(site)), where  # not the clone's source
    assert _run(["-m", "gan_mn", "--version"], work, env).strip() == "gan-mn 0.1.0"

    # fit by config name, an offline evaluation and a 2-step study, in one interpreter
    images = write_image_folder(tmp_path / "images", n=24, size=32)
    cache = str(tmp_path / "cache")
    script = f"""
import contextlib, io, json
from gan_mn.cli import main
assert main(["fit", "-c", "smoke", "--trainer.max_steps", "2", "--wandb.mode", "disabled",
             "--trainer.enable_progress_bar", "false"]) == 0
out = io.StringIO()
with contextlib.redirect_stdout(out):
    assert main(["evaluate", "checkpoints/smoke-seed0/last.ckpt", "--feature-extractor",
                 "cifar10-proxy", "--num-samples", "64", "--metrics", "isc,fid",
                 "--cache-dir", {cache!r}]) == 0
    assert main(["study", "--out", "study", "--data-root", {str(images)!r}, "--extractor",
                 "cifar10-proxy", "--cache-dir", {cache!r}, "--groups", "bn", "--seeds",
                 "0", "--steps", "2", "--eval-every", "2", "--num-samples", "16",
                 "--checkpoint-every", "2", "--threads", "1", "--", "--model.g_channels",
                 "[16, 8, 8]", "--model.d_channels", "[8, 8, 16]", "--model.z_dim", "8",
                 "--data.batch_size", "8"]) == 0
print(out.getvalue())
"""
    printed = _run(["-c", script], work, env).splitlines()
    assert (work / "checkpoints" / "smoke-seed0" / "last.ckpt").is_file()
    result = json.loads(next(line for line in printed if line.startswith("{")))
    assert result["fid64_train_cifar10-proxy"] > 0 and result["step"] == 2, result
    assert any("bn-seed0: ok" in line for line in printed), printed
    launch = json.loads((work / "study" / "manifest.json").read_text())["launches"][0]
    assert launch["commit"] is None and launch["packages"]["gan-mn"] == "0.1.0"


@pytest.mark.slow  # a fresh interpreter
def test_fit_imports_no_statistics_stack() -> None:
    """``gan-mn fit`` builds its parser without loading ``gan_mn.report``, and none of the
    gan_mn modules it loads imports scipy or matplotlib (anywhere in the module). Lightning
    itself imports both, through torchmetrics, where they are installed: so the check is
    on gan-mn's own modules, not on ``sys.modules`` as a whole."""
    code = """
import contextlib, io, sys
from gan_mn.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["fit", "--help"])
print("\\n".join(sorted(m for m in sys.modules if m.split(".")[0] == "gan_mn")))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = done.stdout.split()
    assert "gan_mn.cli.fit" in loaded and "gan_mn.run_log" in loaded
    assert not [m for m in loaded if m.startswith("gan_mn.report")]
    heavy = []
    for module in loaded:
        path = ROOT / Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            heavy += [f"{module}: {n}" for n in names
                      if n.split(".")[0] in ("scipy", "matplotlib")]
    assert not heavy
