"""Keep the README and docs/ honest: short, reachable, every link alive, nothing pointing
outside the repository, and the public API exactly as the plugin reference lists it."""

from __future__ import annotations

import importlib
import re
import subprocess
import tomllib
import types
from pathlib import Path

import pytest

import arrears_router

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

# The first thing a reader sees: set up and run the router, set up and run the suite.
README_HEAD = """\
# arrears-router

```sh
# set up, then run the router on its embedded default (SQLite, ./config.toml)
python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/arrears-router serve
# set up, then run the whole test suite (what CI runs: .ci/run)
python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest
```
"""

FENCED = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto: ...
# Notes kept beside the repository are not part of it: nothing here may name them. Each
# pattern is written so that it does not match itself.
OUTSIDE = re.compile(r"\.\./shared|/wor[k]/|\b(?:PROTOCOL|DESIGN|STYLE)\.md")


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(markdown: str) -> str:
    """Markdown without its code, where a `[x](y)` is not a link."""
    return INLINE_CODE.sub("", FENCED.sub("", markdown))


def links(page: Path) -> list[tuple[str, Path | None, str]]:
    """Each relative link of a page: as written, the file it names (None: this page), and
    its anchor."""
    found = []
    for target in LINK.findall(prose(text(page))):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        found.append((target, (page.parent / path).resolve() if path else None, anchor))
    return found


def linked_pages(page: Path) -> set[Path]:
    return {path for _, path, _ in links(page) if path is not None}


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    slugs = set()
    for heading in re.findall(r"^#+ (.+)$", FENCED.sub("", text(page)), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def test_readme_is_at_most_15000_characters() -> None:
    assert len(text(README)) <= 15_000


def test_readme_starts_with_the_two_commands() -> None:
    assert text(README).startswith(README_HEAD)


def test_there_are_docs() -> None:
    names = {page.relative_to(DOCS).as_posix() for page in PAGES}
    assert {"architecture.md", "plugins.md", "protocol.md", "performance.md"} <= names
    assert any(name.startswith("decisions/") for name in names)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO).as_posix())
def test_every_docs_page_is_reachable_from_the_readme(page: Path) -> None:
    from_readme = linked_pages(README)
    if page in from_readme:
        return
    assert page.parent.name == "decisions", "not linked from the README"
    assert any(page in linked_pages(linked) for linked in from_readme if linked.suffix == ".md"), (
        "a decision must be linked from a page the README links"
    )


@pytest.mark.parametrize(
    "page", [README, *PAGES], ids=lambda page: page.relative_to(REPO).as_posix()
)
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    for target, path, anchor in links(page):
        path = path or page
        assert path.is_relative_to(REPO), f"{target} leaves the repository"
        assert path.exists(), f"{target} names no file"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{target}: no such heading"


def repository_files() -> list[Path]:
    """Tracked files, and new ones not ignored (about to be committed)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],  # noqa: S607
            cwd=REPO, check=True, capture_output=True, timeout=60,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout: {exc}")
    return [REPO / name for name in listed.split("\0") if name and (REPO / name).is_file()]


def test_no_text_points_outside_the_repository() -> None:
    offending = []
    for path in repository_files():
        try:
            content = text(path)
        except UnicodeDecodeError:
            continue  # not text
        for number, line in enumerate(content.splitlines(), start=1):
            if found := OUTSIDE.search(line):
                offending.append(f"{path.relative_to(REPO)}:{number}: {found.group()}")
    assert not offending, "\n".join(offending)


def documented_api() -> list[str]:
    reference = text(DOCS / "plugins.md")
    found = re.search(r"^## Public API\n(.*?)(?=^## )", reference, re.M | re.S)
    assert found, "docs/plugins.md has no '## Public API' section"
    return re.findall(r"^- `(\w+)`", found.group(1), re.M)


def test_the_public_api_is_exactly_what_the_plugin_reference_lists() -> None:
    documented = documented_api()
    assert len(documented) == len(set(documented)), "a name is listed twice"
    assert sorted(arrears_router.__all__) == sorted(documented)
    exposed = [
        name for name, value in vars(arrears_router).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # its submodules
        and type(value).__module__ != "__future__"  # from __future__ import annotations
    ]
    assert sorted(exposed) == sorted(documented)


@pytest.mark.parametrize(
    "module", ["arrears_router.http", "arrears_router.postgres", "arrears_router.sqlite",
               "arrears_router.templates", "arrears_router.testkit"],
)
def test_every_name_of_a_public_module_is_in_the_plugin_reference(module: str) -> None:
    reference = text(DOCS / "plugins.md")
    missing = [name for name in importlib.import_module(module).__all__
               if not re.search(rf"`{name}\b", reference)]
    assert not missing, f"docs/plugins.md does not describe {module}: {missing}"


def test_the_readme_ships_the_example_plugins_pyproject() -> None:
    blocks = re.findall(r"^```toml\n(.*?)^```", text(README), re.M | re.S)
    shipped = [tomllib.loads(block) for block in blocks if "[build-system]" in block]
    example = tomllib.loads(text(REPO / "tests" / "example_plugin" / "pyproject.toml"))
    assert shipped == [example]
