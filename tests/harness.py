"""What tests that run ``arrears-router`` as an operator does share: its config on disk, its
commands, its ``serve`` and ``worker`` processes, installed plugin packages, and waiting.

- :func:`wait_until` polls a condition (or waits on a ``threading.Condition``) and fails
  naming what it awaited; nothing here sleeps to pass time.
- :func:`write_config` writes a ``config.toml`` from tables: one merchant (:data:`MERCHANT`)
  and a store beside the file unless told otherwise.
- :func:`cli` runs one command; :func:`cli_json` its ``--json`` lines.
- :class:`RouterProcess` is ``serve`` or ``worker``, up once it has said so on stdout;
  the ``start_process`` fixture (tests/conftest.py) stops every one it started.
- :func:`postgres_schema` gives a test a PostgreSQL store of its own (a schema), or skips it
  where ``$ARREARS_ROUTER_TEST_POSTGRES`` is unset.
- :func:`install_packages` pip-installs plugin packages offline into a folder, and
  :func:`python_path` puts folders on a child process's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from arrears_router.testkit import toml_text

T = TypeVar("T")

POSTGRES_ENV = "ARREARS_ROUTER_TEST_POSTGRES"
"""The PostgreSQL the tests may use (``.ci/run`` sets it): a URL whose user may create
schemas. Each test gets a schema of its own, dropped afterwards."""

DEADLINE_S = 30.0
"""A failure bound only: every wait ends as soon as its condition holds."""
POLL_S = 0.02

MERCHANT: dict[str, Any] = {
    "appid": "wx1",
    "mch_id": "m1",
    "sign_key": "k",
    "aes_key": "0123456789abcdef",
}
"""The one merchant of a config, unless a test names others (keys exist only in tests)."""
STORE = {"url": "sqlite:///router.db"}
"""The store of a config: a file beside it."""

PYTHON_M = (sys.executable, "-m", "arrears_router")
"""How the tests run ``arrears-router``: the installed package, from any working directory."""
CONSOLE_SCRIPT = (str(Path(sys.executable).with_name("arrears-router")),)
"""The ``arrears-router`` script itself: unlike ``python -m``, it keeps the working directory
off the path, as only ``-P`` does for the router's own child processes."""

READY = re.compile(r"^arrears-router (?:listening on (?P<url>\S+)|worker running)$", re.M)
ADMIN_READY = re.compile(r"^arrears-router admin listening on (?P<url>\S+)$", re.M)
"""``serve`` says so before it says it is up, when ``[admin]`` has a token."""
"""What ``serve`` and ``worker`` print on stdout once they are up."""


def wait_until(check: Callable[[], T], what: str, timeout: float = DEADLINE_S, *,
               changed: threading.Condition | None = None) -> T:
    """Return ``check()`` once it is truthy; fail naming ``what`` after ``timeout`` seconds.

    ``check`` is polled, unless ``changed`` is given: then it runs under that condition's
    lock each time the condition is notified.
    """
    if changed is not None:
        with changed:
            found = changed.wait_for(check, timeout)
    else:
        deadline = time.monotonic() + timeout
        while not (found := check()) and time.monotonic() < deadline:
            time.sleep(POLL_S)
    if not found:
        raise AssertionError(f"not within {timeout:g} s: {what}")
    return found


async def arrive(check: Callable[[], Awaitable[T]], what: str) -> T:
    """:func:`wait_until` for a test on the event loop: ``await check()`` until it is
    truthy, letting the loop run between polls; fail naming ``what`` after DEADLINE_S."""
    try:
        async with asyncio.timeout(DEADLINE_S):
            # Polled: what it waits for (a log line, a row) signals no event to await.
            while not (found := await check()):  # noqa: ASYNC110
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"not within {DEADLINE_S:g} s: {what}") from None
    return found


def write_config(path: Path, *, plugins: Mapping[str, Mapping[str, Any]] | None = None,
                 merchants: Sequence[Mapping[str, Any]] = (MERCHANT,),
                 store: Mapping[str, Any] = STORE, **tables: Mapping[str, Any]) -> Path:
    """Write ``path`` as a config.toml: ``[server]`` and other ``tables`` by name, ``[store]``,
    the ``merchants`` and ``[plugins.NAME]`` tables. Rewriting it is a live config edit.
    """
    document = {**tables, "store": store, "merchants": list(merchants),
                **({"plugins": plugins} if plugins else {})}
    # Replaced whole, as an editor saves: a router watching it never reads half a file.
    draft = path.with_name(f".{path.name}.draft")
    draft.write_text(toml_text(document), encoding="utf-8")
    draft.replace(path)
    return path


def cli(*args: str, config: Path | None = None, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, check: bool = False,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``arrears-router ARGS [--config CONFIG]`` as a user does; ``check`` fails the test
    on a non-zero exit, showing its output. ``env`` adds to this process's environment.
    """
    command = [*PYTHON_M, *args, *(["--config", str(config)] if config else [])]
    result = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})},
                            capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"`arrears-router {' '.join(args)}` exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def cli_json(*args: str, config: Path, env: Mapping[str, str] | None = None,
             cwd: Path | None = None) -> list[dict[str, Any]]:
    """``arrears-router ARGS --json``, which must succeed: its lines, each a JSON object."""
    return json_lines(cli(*args, "--json", config=config, env=env, cwd=cwd, check=True).stdout)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def python_path(*folders: Path) -> dict[str, str]:
    """The environment a child process needs to import from ``folders`` first."""
    return {"PYTHONPATH": os.pathsep.join(
        filter(None, [*map(str, folders), os.environ.get("PYTHONPATH")]))}


def install_packages(target: Path, *sources: Path) -> Path:
    """pip-install the package folders ``sources`` (no dependencies, offline) into the folder
    ``target``, as a site of its own. Each is built from a copy, so no build output lands
    in the repository.
    """
    copies = target.parent / f"{target.name}-sources"
    for source in sources:
        shutil.copytree(source, copies / source.name,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), *(str(copies / s.name) for s in sources)],
        check=True, capture_output=True, timeout=300,
    )
    return target


_numbers = itertools.count(1)


class RouterProcess:
    """``arrears-router ARGS --config CONFIG`` (``serve`` or ``worker``) as a subprocess,
    up once it has said so on stdout. Its stdout and stderr go to files beside the config.

    ``own_session``: a session and process group of its own, as a terminal's foreground job,
    so that a signal can reach the whole group (Ctrl-C).
    """

    def __init__(self, config: Path, *args: str, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None, own_session: bool = False,
                 program: Sequence[str] = PYTHON_M) -> None:
        self.program = program
        self.config = config
        self.args = args
        self.cwd = cwd or config.parent
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.own_session = own_session
        self.popen: subprocess.Popen[bytes] | None = None
        self.url = ""
        """Where ``serve`` listens (``http://host:port``); empty for a worker."""
        self.admin_url = ""
        """Where its admin listener listens; empty when it has none."""
        self._name = f"{args[0]}-{next(_numbers)}"
        self._starts = 0

    @property
    def log(self) -> Path:
        """Its stderr (its log) since it was last started."""
        return self.config.parent / f"{self._name}-{self._starts}.log"

    @property
    def out(self) -> Path:
        """Its stdout since it was last started."""
        return self.config.parent / f"{self._name}-{self._starts}.stdout"

    @property
    def pid(self) -> int:
        assert self.popen is not None, "not running"
        return self.popen.pid

    def start(self) -> RouterProcess:
        """Start it and wait until it says it is up; fail with its output if it does not."""
        assert self.popen is None, "already running"
        self._starts += 1
        with self.out.open("wb") as out, self.log.open("wb") as log:
            self.popen = subprocess.Popen(
                [*self.program, *self.args, "--config", str(self.config)],
                cwd=self.cwd, env=self.env, stdout=out, stderr=log,
                start_new_session=self.own_session,
            )
        try:
            announced = wait_until(self._announced, f"`{self.command}` to say it is up")
        except AssertionError as exc:
            self.close()
            raise AssertionError(f"{exc}\n{self.output()}") from None
        self.url = announced.group("url") or ""
        admin = ADMIN_READY.search(self.out.read_text(errors="replace"))
        self.admin_url = admin.group("url") if admin else ""
        return self

    @property
    def command(self) -> str:
        return " ".join(["arrears-router", *self.args])

    def _announced(self) -> re.Match[str] | None:
        assert self.popen is not None
        if found := READY.search(self.out.read_text(errors="replace")):
            return found
        if (code := self.popen.poll()) is not None:
            self.popen = None
            raise AssertionError(f"`{self.command}` exited {code} before it was up")
        return None

    def output(self) -> str:
        return f"stdout:\n{self.out.read_text(errors='replace')}\nstderr:\n{self.log_text()}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, text: str) -> bool:
        return text in self.log_text()

    def wait(self, timeout: float = DEADLINE_S) -> int:
        """Wait for it to exit on its own; its exit code."""
        assert self.popen is not None, "not running"
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"`{self.command}` still running after {timeout:g} s\n"
                                 f"{self.output()}") from None
        self.popen = None
        return code

    def stop(self) -> int:
        """SIGTERM, and wait for a graceful exit; its exit code."""
        assert self.popen is not None, "not running"
        self.popen.terminate()
        return self.wait()

    def kill9(self) -> None:
        """SIGKILL to this process alone: no shutdown code runs, as in a power cut."""
        assert self.popen is not None, "not running"
        self.popen.kill()
        self.popen.wait()
        self.popen = None

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to its whole process group, as a terminal does (``own_session``)."""
        assert self.own_session, "shares the test's process group"
        os.killpg(self.pid, signum)

    def restart(self) -> int | None:
        """Stop it gracefully if it runs, then start it again; the stopped one's exit code."""
        code = self.stop() if self.popen is not None else None
        self.start()
        return code

    def close(self) -> None:
        """Teardown: leaves no process behind, whatever state it is in."""
        if self.popen is None:
            return
        if self.own_session:
            with contextlib.suppress(ProcessLookupError):  # the group may be gone already
                os.killpg(self.popen.pid, signal.SIGKILL)
        else:
            self.popen.terminate()
        try:
            self.popen.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.popen = None


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a new, empty schema in ``$ARREARS_ROUTER_TEST_POSTGRES``'s database, as
    the store's ``search_path``; dropped afterwards. Skips the test where the variable is
    unset (a laptop with no PostgreSQL); fails where it is set and the database is down."""
    import psycopg
    import pytest

    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need ${POSTGRES_ENV} (e.g."
                    " postgresql://postgres@127.0.0.1:5432/test); .ci/run sets it")
    schema = f"t_{os.getpid()}_{next(_SCHEMAS)}_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(base, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as db:
            db.execute("SET lock_timeout = '10s'")  # a test's leaked connection fails it
            db.execute(f"DROP SCHEMA {schema} CASCADE")


_SCHEMAS = itertools.count()
