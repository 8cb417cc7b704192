"""The documentation a user follows: every relative link and image in README.md and docs/
resolves (file and heading); every command in the code blocks of README, docs/ and the
studies' READMEs names a config, script, subcommand and options that exist; and every
fit option (``--model.x``, ``--data.x``, ...) named in the docs, the package's docstrings
and messages, the benchmarks and the configs is one of fit's."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from functools import cache
from pathlib import Path

import pytest

from gan_mn.cli import COMMANDS as SUBCOMMANDS
from gan_mn.cli import main
from gan_mn.configs import resolve

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_anchor(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing_anchor = anchor and file.suffix == ".md" and anchor not in _anchors(file)
        if not file.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def _commands(page: Path) -> list[list[str]]:
    """The shell commands of a page's ``bash`` blocks, continuation lines joined,
    comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("#"):
                continue
            for part in re.split(r"&&|\|", line):
                if part.strip():
                    out.append(shlex.split(part))
    return out


@cache
def _help(subcommand: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        main([subcommand, "--help"])
    return buf.getvalue()


def _options(words: list[str]) -> list[str]:
    return [w.split("=")[0] for w in words if w.startswith("--")]


def test_every_readme_command_names_what_exists() -> None:
    checked = 0
    for words in _commands(ROOT / "README.md"):
        if words[0] == "gan-mn":
            sub = words[1]
            assert sub in SUBCOMMANDS, words
            if "-c" in words:  # a packaged config's name, or a file
                assert Path(resolve(words[words.index("-c") + 1])).is_file(), words
            split = words.index("--") if "--" in words else len(words)  # then fit's options
            for option in _options(words[2:split]):
                assert re.search(re.escape(option) + r"\b", _help(sub)), (option, words)
            for option in _options(words[split + 1:]):
                assert re.search(re.escape(option) + r"\b", _help("fit")), (option, words)
            checked += 1
        elif words[0] == "python" and words[1].startswith("benchmarks/"):
            script = ROOT / words[1]
            assert script.is_file(), words
            split = words.index("--") if "--" in words else len(words)
            mine, fit = words[2:split], words[split + 1:]
            for option in _options(mine):
                assert f'"{option}"' in script.read_text(), (option, words)
            for option in _options(fit):
                assert re.search(re.escape(option) + r"\b", _help("fit")), (option, words)
            checked += 1
    assert checked >= 10  # the README's training, evaluation and study commands


DOTTED = re.compile(r"--(?:model|data|trainer|metrics|checkpoint|wandb)\.[a-z_]+(?:\.[a-z_]+)*")
SOURCES = [*sorted((ROOT / "gan_mn").rglob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py")),
           *sorted((ROOT / "gan_mn" / "configs").glob("*.yaml"))]


def _fit_options() -> set[str]:
    return set(re.findall(r"--[a-z_]+(?:\.[a-z_]+)*", _help("fit")))


@pytest.mark.parametrize("path", [*PAGES, *SOURCES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_fit_option_named_anywhere_exists(path: Path) -> None:
    """Each ``--model.x`` / ``--data.x`` / ``--trainer.x`` ... in the docs, the package's
    docstrings and messages, the benchmarks and the configs is one of fit's options."""
    known = _fit_options()
    stale = sorted({o for o in DOTTED.findall(path.read_text())
                    if o not in known and not any(k.startswith(o + ".") for k in known)})
    assert not stale, stale


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "CHANGELOG.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_of_every_page_names_what_exists(page: Path) -> None:
    """The README check above, for every page of docs/ and every study's README."""
    for words in _commands(page):
        if words[0] == "gan-mn" and len(words) > 1 and words[1] in SUBCOMMANDS:
            sub = words[1]
            if "-c" in words:
                assert Path(resolve(words[words.index("-c") + 1])).is_file(), words
            split = words.index("--") if "--" in words else len(words)
            for option in _options(words[2:split]):
                assert re.search(re.escape(option) + r"\b", _help(sub)), (option, words)
            for option in _options(words[split + 1:]):
                assert re.search(re.escape(option) + r"\b", _help("fit")), (option, words)
        elif words[0] == "python" and len(words) > 1 and words[1].startswith(
                ("benchmarks/", "examples/")):
            script = ROOT / words[1]
            assert script.is_file(), words
            split = words.index("--") if "--" in words else len(words)
            for option in _options(words[2:split]):
                assert f'"{option}"' in script.read_text(), (option, words)


def _table(page: Path, header: str) -> list[list[str]]:
    """The rows of the table under ``header`` (its first line) in ``page``, cells
    stripped of their code marks."""
    lines = page.read_text().splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_docs_tables_of_registered_names_are_the_registries() -> None:
    """The families, norm kinds and losses in training.md's table and the study groups in
    compare.md's are exactly what is registered, in the order registered."""
    from gan_mn.cli.study import GROUPS
    from gan_mn.models import FAMILIES
    from gan_mn.norm import NORM_KINDS
    from gan_mn.training import LOSSES

    options = {_names(option)[0]: _names(names)
               for option, names in _table(ROOT / "docs" / "training.md", "| option | names |")}
    assert options == {"--model.arch": list(FAMILIES), "--model.g_norm": list(NORM_KINDS),
                       "--model.loss": list(LOSSES)}
    rows = _table(ROOT / "docs" / "compare.md", "| group | config | options |")
    assert [_names(group)[0] for group, _, _ in rows] == list(GROUPS)
    for group, config, given in rows:
        entry = GROUPS[_names(group)[0]]
        assert _names(config) == [entry.config.removesuffix(".yaml")], group
        words = [w for cell in _names(given) for w in shlex.split(cell)]
        assert words == entry.options, group
