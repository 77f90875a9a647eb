"""The lint and type gates run with the suite, so CI and a developer's laptop agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=300,
        check=False, env=env,
    )


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", "core", "plugins", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def import_tree(root: Path) -> Path:
    """``arrears_router`` laid out as it is installed, in links: mypy reads folders, and the
    editable install maps the package onto core/ and plugins/ with an import hook it cannot
    follow."""
    package = root / "arrears_router"
    package.mkdir()
    for entry in (REPO / "core").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "plugins").symlink_to(REPO / "plugins")
    return root


def test_mypy_strict_finds_nothing(tmp_path: Path) -> None:
    tree = import_tree(tmp_path)
    env = {**os.environ, "MYPYPATH": str(tree)}
    result = run("mypy", "-p", "arrears_router", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
