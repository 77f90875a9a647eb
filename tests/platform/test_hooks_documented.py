"""Keep the plugin contract honest: every hook documented in its hookspec and in the plugin
reference, docs/plugins.md, with its arguments and an example."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from arrears_router import hookspecs

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "plugins.md"
HOOKS = sorted(
    name for name, value in vars(hookspecs).items()
    if callable(value) and hasattr(value, "arrears_router_spec")
)


def arguments(hook: str) -> list[str]:
    return list(inspect.signature(getattr(hookspecs, hook)).parameters)


def section(hook: str) -> tuple[str, str]:
    """The hook's heading in the reference, and the text under it up to the next heading."""
    text = REFERENCE.read_text(encoding="utf-8")
    found = re.search(rf"^### `{hook}\((.*?)\) -> [^`]+`\n(.*?)(?=^##)", text, re.M | re.S)
    assert found, f"docs/plugins.md has no section ### `{hook}(...) -> ...`"
    return found.group(1), found.group(2)


def test_there_are_hooks() -> None:
    assert HOOKS == [
        "arrears_paid", "delivery_dead", "payment_flagged", "reconciled", "register_commands",
        "router_started", "router_stopping",
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_documents_every_argument(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert doc, f"{hook} has no docstring"
    for argument in arguments(hook):
        assert f":param {argument}:" in doc, f"{hook} does not document {argument}"


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_has_a_section_in_the_plugin_reference(hook: str) -> None:
    signature, body = section(hook)
    documented = [name.strip() for name in signature.split(",") if name.strip()]
    assert documented == arguments(hook), f"the heading of {hook} names other arguments"
    for argument in documented:
        assert f"- `{argument}`" in body, f"docs/plugins.md: {hook} does not describe {argument}"
    assert "```python" in body, f"docs/plugins.md: {hook} has no example"
