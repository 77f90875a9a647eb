"""Import arrows point one way: from the command line down to the wire, never back up.

An arrow goes from caller to callee: serve hands a body to the wire's intake, which writes
to the store; the platform reads the store and calls the plugins. The command line sits on
top of all of them; the bench, which only its command imports, just below it. The public
surface plugins code against is at the bottom, so a plugin never drags the router's insides
in with it (``sqlite`` and ``postgres``, for plugins that keep tables in the store, sit above
the store).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "arrears_router"

# Each part of the package and the layer it sits in; a module may import its own layer or
# any below it. ``__init__`` is the public face and may gather names from below.
# The config sits with the wire: it checks the keys it reads with the wire's own parsers.
LAYERS: dict[str, int] = {
    "payment": 0, "delivery": 0, "errors": 0, "errcodes": 0, "commands": 0, "hookspecs": 0,
    "templates": 0, "http": 0, "logs": 0, "metrics": 0,
    "store": 1,
    "wire": 2, "config": 2, "plugins": 2, "sqlite": 2, "postgres": 2,
    "reconcile": 2,
    "platform": 3,
    "serve": 4,
    "admin": 5,
    "bench": 5,
    "cli": 6,
    "testkit": 7,
    "__main__": 7,
}


def modules() -> dict[str, Path]:
    found = {}
    for root, prefix in ((REPO / "core", PACKAGE), (REPO / "plugins", f"{PACKAGE}.plugins")):
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((prefix, *parts))] = path
    return found


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith(f"{PACKAGE}.")}


MODULES = modules()


def test_every_part_has_a_layer() -> None:
    parts = {part_of(module) for module in MODULES} - {"__init__"}
    assert parts <= set(LAYERS), parts - set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    part = part_of(module)
    if part == "__init__":
        return
    upward = sorted(
        name for name in imported(MODULES[module])
        if part_of(name) in LAYERS and LAYERS[part_of(name)] > LAYERS[part]
    )
    assert not upward, f"{module} (layer {LAYERS[part]}) imports from above it: {upward}"


def test_only_its_command_imports_the_bench() -> None:
    importers = sorted(
        module for module, path in MODULES.items()
        if part_of(module) != "bench" and any(part_of(name) == "bench" for name in imported(path))
    )
    assert importers == ["arrears_router.cli.bench"]
