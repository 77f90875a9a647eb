"""Plugins import ``arrears_router`` as a stranger's plugin does: its public surface alone.

The built-ins (plugins/) and the example plugin package are read with ``ast``, so that an
import hidden in a function or under ``TYPE_CHECKING`` counts too.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PUBLIC = frozenset({
    "arrears_router", "arrears_router.http", "arrears_router.postgres", "arrears_router.sqlite",
    "arrears_router.templates", "arrears_router.testkit",
})
BUILTINS = "arrears_router.plugins"
EXAMPLE = REPO / "tests" / "example_plugin" / "src"
SOURCES = sorted((REPO / "plugins").glob("*.py")) + sorted(EXAMPLE.rglob("*.py"))


def package_of(path: Path) -> str:
    """The package a source file's relative imports start from."""
    if path.parent == REPO / "plugins":
        return BUILTINS
    return ".".join(path.parent.relative_to(EXAMPLE).parts)


def violations(source: str, package: str) -> list[str]:
    """Every import in ``source`` past the public surface, as ``LINE: module[.name]``. A
    built-in plugin may import the other built-ins' modules, as a package imports its own.
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: {alias.name}" for alias in node.names
                      if not _allowed(alias.name, package)]
        elif isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            found += [f"{node.lineno}: {module}.{alias.name}" for alias in node.names
                      if not _allowed_from(module, alias.name, package)]
    return found


def _allowed(module: str, package: str) -> bool:
    if module != "arrears_router" and not module.startswith("arrears_router."):
        return True  # not ours: the stdlib, httpx, msgspec, the plugin's own package
    if package == BUILTINS and (module == BUILTINS or module.startswith(BUILTINS + ".")):
        return True
    return module in PUBLIC


def _allowed_from(module: str, name: str, package: str) -> bool:
    if not _allowed(module, package):
        return False
    if module not in PUBLIC or name == "*":  # not ours, or only what __all__ names
        return True
    # `from arrears_router import http` names a public module; anything else, its __all__.
    return f"{module}.{name}" in PUBLIC or name in importlib.import_module(module).__all__


def test_the_sources_checked_include_every_builtin_and_the_example() -> None:
    names = {path.name for path in SOURCES}
    assert {"unlock.py", "sms.py", "webhook.py", "ledger.py", "ledger_books.py",
            "ledger_sqlite.py", "ledger_postgres.py"} <= names
    assert EXAMPLE / "arrears_receipt_log" / "__init__.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(REPO)))
def test_a_plugin_imports_only_the_public_surface(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), package_of(path)) == []


def test_internal_modules_and_private_names_are_caught() -> None:
    source = (
        "import arrears_router.store\n"
        "from arrears_router.platform.registry import Registry\n"
        "from arrears_router import Commands, store, http\n"
        "from arrears_router.http import display_url, _URL_IN_TEXT\n"
        "from arrears_router.plugins import ledger_books\n"
        "def late() -> None:\n"
        "    from arrears_router.wire import cipher\n"
    )
    caught = [
        "1: arrears_router.store",
        "2: arrears_router.platform.registry.Registry",
        "3: arrears_router.store",
        "4: arrears_router.http._URL_IN_TEXT",
        "7: arrears_router.wire.cipher",
    ]
    assert sorted(violations(source, "arrears_receipt_log")) == sorted(
        [*caught, "5: arrears_router.plugins.ledger_books"])  # a built-in: not a stranger's
    assert sorted(violations(source, BUILTINS)) == sorted(caught)
    assert violations("from .ledger_books import Books\n", BUILTINS) == []
