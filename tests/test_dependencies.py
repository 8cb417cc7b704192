"""Every third-party module the package imports is declared in pyproject.toml's
dependencies (and every one the tests import, there or in the ``dev`` extra): a package
that arrives only as another's dependency can vanish with that package's next release,
and a fresh install then fails at import (scipy did, before it was declared)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# Triton comes with CUDA builds of torch (it is torch's dependency there, not ours), and
# gan-mn imports it only where it is present (norm.kernels checks first).
NOT_DECLARED = {"triton"}


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalized (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _declared(extras: tuple[str, ...] = ()) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in extras:
        names |= {_name(r) for r in project["optional-dependencies"][extra]}
    return names


def _third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Top-level modules imported anywhere under ``folder`` (function-level imports too),
    less the standard library and the project's own: module -> files importing it."""
    # the project's own: its folders, and the scripts beside benchmarks/gpu_check.py
    local = {p.name for p in ROOT.iterdir() if p.is_dir()} | {"gan_mn", "conftest"}
    local |= {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local | {"__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(folder)))
    return found


def _undeclared(folder: Path, declared: set[str]) -> list[str]:
    distributions = packages_distributions()
    missing = []
    for module, files in sorted(_third_party_imports(folder).items()):
        if module in NOT_DECLARED:
            continue
        # (a module not installed here, e.g. tomli on Python 3.11+: by its own name)
        provided_by = {_name(d) for d in distributions.get(module, [])} or {_name(module)}
        if not provided_by & declared:
            missing.append(f"{module} (from {sorted(provided_by)}; "
                           f"imported by {sorted(files)[0]})")
    return missing


def test_the_package_imports_only_declared_dependencies() -> None:
    imports = _third_party_imports(ROOT / "gan_mn")
    assert {"torch", "numpy", "scipy", "yaml"} <= set(imports)  # the scan sees imports
    assert not _undeclared(ROOT / "gan_mn", _declared())


def test_the_tests_import_only_declared_dependencies() -> None:
    assert "pytest" in _third_party_imports(ROOT / "tests")
    assert not _undeclared(ROOT / "tests", _declared(("dev",)))


def test_an_undeclared_import_is_found(tmp_path: Path) -> None:
    """The check itself: a function-level scipy import fails against dependencies
    without scipy, and passes against today's."""
    (tmp_path / "probe.py").write_text("def f():\n    from scipy import stats\n    return stats\n")
    missing = _undeclared(tmp_path, _declared() - {"scipy"})
    assert len(missing) == 1 and missing[0].startswith("scipy "), missing
    assert not _undeclared(tmp_path, _declared())
