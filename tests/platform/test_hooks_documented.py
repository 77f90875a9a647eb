"""Keep the plugin contract honest: every hook documented, in the README and tested."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from arrears_router import hookspecs

REPO = Path(__file__).resolve().parents[2]
HOOKS = sorted(
    name for name, value in vars(hookspecs).items()
    if callable(value) and hasattr(value, "arrears_router_spec")
)


def test_there_are_hooks() -> None:
    assert HOOKS == [
        "arrears_paid", "delivery_dead", "payment_flagged", "router_started", "router_stopping"
    ]


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_documents_every_argument(hook: str) -> None:
    function = getattr(hookspecs, hook)
    doc = inspect.getdoc(function) or ""
    assert doc, f"{hook} has no docstring"
    for argument in inspect.signature(function).parameters:
        assert f":param {argument}:" in doc, f"{hook} does not document {argument}"


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_has_a_readme_section(hook: str) -> None:
    assert f"### `{hook}(" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_is_implemented_by_a_tested_plugin(hook: str) -> None:
    implemented = (REPO / "tests" / "sample_plugins.py").read_text()
    assert f"def {hook}(" in implemented
