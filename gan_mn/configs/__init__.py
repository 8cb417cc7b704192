"""The configs that ship with gan-mn: ``gan-mn fit -c smoke`` finds ``smoke.yaml`` here
from any folder; a path to a YAML file (``-c my.yaml``) is used as it is."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def names() -> list[str]:
    """The packaged configs' names (``smoke``, ``dcgan_mn``, ...)."""
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


def resolve(value: str) -> str:
    """``value`` if it is a file; else the packaged config it names (``smoke`` or
    ``smoke.yaml``); else ``value`` unchanged, for the parser to refuse."""
    if Path(value).is_file() or "/" in value or "\\" in value:
        return value
    packaged = FOLDER / (value if value.endswith((".yaml", ".yml")) else f"{value}.yaml")
    return str(packaged) if packaged.is_file() else value


def resolve_args(argv: list[str]) -> list[str]:
    """A command line with each ``-c``/``--config`` value resolved (:func:`resolve`)."""
    out = list(argv)
    for i, word in enumerate(out):
        if word in ("-c", "--config") and i + 1 < len(out):
            out[i + 1] = resolve(out[i + 1])
        elif word.startswith("--config="):
            out[i] = "--config=" + resolve(word.split("=", 1)[1])
    return out
