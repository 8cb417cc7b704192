"""The packaged configs: ``-c NAME`` finds them from any folder, a path is kept as given,
and ``gan-mn --version`` reads the one version pyproject.toml declares."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from gan_mn.cli import main
from gan_mn.configs import FOLDER, names, resolve, resolve_args

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def test_a_name_finds_the_packaged_config_and_a_path_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert {"smoke", "dcgan_bn", "dcgan_mn", "sngan_mn", "resnet_bn"} <= set(names())
    assert resolve("smoke") == resolve("smoke.yaml") == str(FOLDER / "smoke.yaml")
    (tmp_path / "smoke.yaml").write_text("model: {label: mine}\n")  # a file here wins
    assert resolve("smoke.yaml") == "smoke.yaml"
    assert resolve("nope") == "nope" and resolve("dir/smoke.yaml") == "dir/smoke.yaml"
    assert resolve_args(["fit", "-c", "dcgan_mn", "--config=dcgan_bn", "--x", "-c"]) == [
        "fit", "-c", str(FOLDER / "dcgan_mn.yaml"), f"--config={FOLDER / 'dcgan_bn.yaml'}",
        "--x", "-c"]


def test_version_is_declared_once(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gan-mn {declared}\n" == f"gan-mn {version('gan-mn')}\n"
    assert "0.1.0" not in (root / "gan_mn" / "__init__.py").read_text()
