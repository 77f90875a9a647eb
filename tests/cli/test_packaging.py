"""The distribution as pip installs it: the wheel built from this repository, installed into a
fresh virtual environment, holds one import package, ``arrears_router`` (the router from
core/, its built-in plugins from plugins/), and nothing generic such as ``core`` or ``plugins``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "core", "plugins")
"""What the build reads (pyproject.toml names the rest)."""

ENTRY_POINTS = """
import json
from importlib.metadata import distribution
from importlib.util import find_spec

print(json.dumps({
    "entry_points": sorted([e.group, e.name, e.value]
                           for e in distribution("arrears-router").entry_points),
    "generic": [name for name in ("core", "plugins") if find_spec(name) is not None],
}))
"""


def run(*command: str | Path, cwd: Path) -> str:
    # Without the test run's PYTHONPATH: this repository's editable-install metadata on it
    # would have pip find arrears-router installed already.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """site-packages of a new virtual environment with only the built wheel in it."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"  # a copy: the build leaves nothing in the repository
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", root / "dist", source, cwd=root)
    [wheel] = (root / "dist").glob("*.whl")
    run(sys.executable, "-m", "venv", "--without-pip", root / "venv", cwd=root)
    venv_python = root / "venv" / "bin" / "python"
    run(*pip, "--python", venv_python, "install", "--quiet", "--no-deps", "--no-index", wheel,
        cwd=root)
    [found] = (root / "venv" / "lib").glob("python3*/site-packages")
    return found


def test_one_import_package_arrears_router(site: Path) -> None:
    assert sorted(p.name for p in site.iterdir()) == [
        "arrears_router", "arrears_router-0.1.0.dist-info"]
    package = site / "arrears_router"
    for module in ("__init__.py", "hookspecs.py", "testkit.py", "cli/__init__.py",
                   "serve/engine_child.py", "plugins/__init__.py", "plugins/ledger.py"):
        assert (package / module).is_file(), module


def test_its_entry_points_name_arrears_router(site: Path) -> None:
    python = site.parents[2] / "bin" / "python"
    # -I: only the new environment, not this repository nor the test run's path
    found = json.loads(run(python, "-I", "-c", ENTRY_POINTS, cwd=site))
    assert found["entry_points"] == [
        ["console_scripts", "arrears-router", "arrears_router.cli:main"],
        ["pytest11", "arrears_router", "arrears_router.testkit"],
    ]
    assert found["generic"] == []
    script = (site.parents[2] / "bin" / "arrears-router").read_text()
    assert "from arrears_router.cli import main" in script
