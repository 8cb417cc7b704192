"""The package's import graph stays layered: each package imports only packages below it
(function-level imports included), no module imports itself back through others at
import time, and compare's side (report, runs, run_log) never imports torch or Lightning."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gan_mn"
# A package may import only packages with a smaller number.
LAYERS = {"errors": 0, "configs": 0, "registry": 0.5, "files": 1, "torch_files": 1,
          "images": 2, "norm": 1, "data": 1, "runs": 1, "run_log": 2, "labels": 2, "models": 2,
          "report": 3, "training": 3, "metrics": 4, "cli": 5, "__main__": 6}
NO_TORCH = ("report", "runs", "run_log", "files", "errors", "configs", "registry")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules ``path`` imports (at import time only, if ``top_level_only``)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_each_package_imports_only_lower_ones() -> None:
    modules = _modules()
    assert {_package(m) for m in modules} - {"gan_mn"} == set(LAYERS)
    upward = []
    for module, path in modules.items():
        for target in _imports(path, top_level_only=False):
            if target in modules and _package(target) != _package(module) \
                    and _package(target) != "gan_mn" \
                    and LAYERS[_package(target)] >= LAYERS.get(_package(module), 99):
                upward.append(f"{module} -> {target}")
    assert not upward


def test_no_import_cycle_at_import_time() -> None:
    modules = _modules()
    graph = {m: {t for t in _imports(p, top_level_only=True) if t in modules and t != m}
             for m, p in modules.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError(" -> ".join([*path[path.index(module):], module]))
        if module in done:
            return
        for target in graph[module]:
            visit(target, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_the_report_side_never_imports_torch_or_lightning() -> None:
    heavy = []
    for module, path in _modules().items():
        if _package(module) in NO_TORCH:
            heavy += [f"{module} -> {t}" for t in _imports(path, top_level_only=False)
                      if t.split(".")[0] in ("torch", "lightning", "torchvision")]
    assert not heavy
