"""The engine as the HTTP process sees it: started, supervised, asked, stopped.

An engine that dies is started again, with a growing pause; meanwhile each notification is
answered 50001, which WeChat sends again, and ``/readyz`` says why. A notification in flight
when it died may or may not have been committed: its retry then reads "already stored".

An engine that stalls (stopped, or its loop stuck) is never waited on past a deadline: each
notification it has not answered within ``ANSWER_TIMEOUT_S`` is answered 50001, well inside
WeChat's 5 s; what waits for it in this process's memory is bounded (``MAX_BUFFERED_BYTES``);
``/readyz`` says 503; and one silent for ``STALL_KILL_S`` is killed, so that it restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

from arrears_router.errcodes import ErrCode
from arrears_router.metrics import count_notification
from arrears_router.platform.deadlines import Deadlines
from arrears_router.serve.children import keep_running, stop_child
from arrears_router.serve.ipc import FrameProtocol, Framer, Kind
from arrears_router.store import StoreError
from arrears_router.wire.envelope import encode_reply, readable_nonce
from arrears_router.wire.intake import store_unavailable

__all__ = ["EngineProcess"]

log = logging.getLogger("arrears_router.engine")

START_TIMEOUT_S = 120.0
"""A first start migrates the store, which can take a while on a big one."""
STOP_TIMEOUT_S = 60.0
"""Deliveries in flight finish within their plugins' timeouts before the engine exits."""
ANSWER_TIMEOUT_S = 3.0
"""WeChat waits 5 s for a reply; the rest is for the network and the HTTP process."""
PING_TIMEOUT_S = 1.0
MAX_BUFFERED_BYTES = 16 * 1024 * 1024
"""Notifications written to the engine that it has not yet read, at most: past this, a
notification is answered 50001 at once rather than kept in memory for an engine that is behind."""
WATCHDOG_INTERVAL_S = 5.0
STALL_KILL_S = 30.0
WARN_EVERY_S = 1.0
"""A reason for answering 50001 is logged when it changes, and at most this often while it
lasts: a stalled engine under load would otherwise write a line per notification."""

_Answer = tuple[Kind, bytes]


class _Link:
    """One started engine's socket: the requests sent on it that wait for a reply."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.framer = Framer(loop)
        self.ready: asyncio.Future[None] = loop.create_future()
        self.up = False
        self._pending: dict[int, asyncio.Future[_Answer]] = {}
        self._seq = 0
        self._deadlines = Deadlines()
        self._loop = loop
        self.last_heard = loop.time()
        """When the engine last sent anything."""

    def protocol(self) -> FrameProtocol:
        return FrameProtocol(self.framer, self._on_frame, self._on_lost)

    def _on_frame(self, seq: int, kind: Kind, payload: bytes) -> None:
        self.last_heard = self._loop.time()
        if kind is Kind.READY:
            self.up = True
            if not self.ready.done():
                self.ready.set_result(None)
            return
        future = self._pending.pop(seq, None)
        if future is not None and not future.done():
            future.set_result((kind, payload))

    def _on_lost(self) -> None:
        self.up = False
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_result((Kind.FAILED, b"the engine is gone"))

    async def ask(self, kind: Kind, payload: bytes, within_s: float) -> _Answer:
        """The engine's answer, or FAILED saying why there is none within ``within_s``."""
        transport = self.framer.transport
        if transport is not None and transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            return Kind.FAILED, b"the engine is behind: it has not read what it was sent"
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        future: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        self.framer.send(seq, kind, payload)
        watch = self._deadlines.watch(within_s)
        try:
            return await future
        except asyncio.CancelledError:
            if not watch.expired:
                raise
            del self._pending[seq]  # a late answer finds no one waiting
            return Kind.FAILED, f"the engine did not answer within {within_s:g} s".encode()
        finally:
            self._deadlines.end(watch)

    def close(self) -> None:
        if self.framer.transport is not None:
            self.framer.transport.close()


class EngineProcess:
    def __init__(self, command: Sequence[str]) -> None:
        """:param command: starts the engine; ``--fd N`` (its end of the socket) is added."""
        self._command = list(command)
        self._link: _Link | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._supervising: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._stopping = False
        self._warned: tuple[bytes, float] = (b"", float("-inf"))
        """The last reason logged for answering 50001, and when."""

    @property
    def down_reason(self) -> str:
        """Why the engine cannot take a notification now; empty while it can."""
        if self._link is None:
            return "the engine has not started"
        if not self._link.up:
            return "the engine is not running; it is being restarted"
        return ""

    # -- lifecycle

    async def start(self) -> None:
        """Start the engine and wait until it is ready; raise StoreError if it cannot be."""
        await self._spawn()
        self._supervising = asyncio.create_task(self._supervise())
        self._watching = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._supervising, self._watching):
            if task is not None:
                task.cancel()
        if self._link is not None:
            self._link.close()  # the engine finishes what it holds, then exits
        if self._process is not None:
            await stop_child(self._process, STOP_TIMEOUT_S, "engine", log)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[EngineProcess]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command, "--fd", str(theirs.fileno()), pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._process = process
        link = _Link(loop)
        await loop.create_unix_connection(link.protocol, sock=ours)
        exited: asyncio.Future[Any] = asyncio.ensure_future(process.wait())
        await asyncio.wait({link.ready, exited}, timeout=START_TIMEOUT_S,
                           return_when=asyncio.FIRST_COMPLETED)
        if not link.ready.done():
            exited.cancel()
            link.close()
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise StoreError(
                f"the engine did not start (exit status {process.returncode}); its log is above"
            )
        self._link = link

    def _running_process(self) -> asyncio.subprocess.Process:
        assert self._process is not None
        return self._process

    async def _supervise(self) -> None:
        """Start the engine again whenever it dies."""
        await keep_running("engine", log, self._running_process, self._spawn,
                           failed=(StoreError, OSError))

    async def _watch(self) -> None:
        """Kill an engine that has answered nothing for ``STALL_KILL_S``: it restarts."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            link, process = self._link, self._process
            if link is None or not link.up or process is None or process.returncode is not None:
                continue  # not started yet, or being restarted
            await self._ask(Kind.PING, within_s=PING_TIMEOUT_S)  # any answer is a sign of life
            if loop.time() - link.last_heard >= STALL_KILL_S:
                log.error("the engine has not answered for %.0f s; killing it", STALL_KILL_S)
                process.kill()

    async def _ask(self, kind: Kind, payload: bytes = b"", *, within_s: float) -> _Answer:
        link = self._link
        if link is None or not link.up:
            return Kind.FAILED, self.down_reason.encode()
        return await link.ask(kind, payload, within_s)

    # -- what the HTTP app asks

    async def receive(self, body: bytes) -> bytes:
        """The encoded reply to one notification's body."""
        kind, reply = await self._ask(Kind.RECEIVE, body, within_s=ANSWER_TIMEOUT_S)
        if kind is Kind.OK:
            return reply
        self._warn(reply)
        count_notification(ErrCode.STORE_UNAVAILABLE)  # the engine counts its own replies
        return encode_reply(store_unavailable(readable_nonce(body)))

    def _warn(self, reason: bytes) -> None:
        now = asyncio.get_running_loop().time()
        last, at = self._warned
        if reason != last or now - at >= WARN_EVERY_S:
            log.warning("answered 50001: %s", reason.decode(errors="replace"))
            self._warned = (reason, now)

    async def ping(self) -> None:
        kind, reason = await self._ask(Kind.PING, within_s=PING_TIMEOUT_S)
        if kind is not Kind.OK:
            raise StoreError(reason.decode(errors="replace"))
