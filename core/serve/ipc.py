"""Frames between ``serve``'s HTTP process and its engine, over a local socket pair.

A frame is a 9-byte header (payload length, sequence number, kind) and the payload. The
sequence number pairs a reply with its request, since many are in flight at once. Writes
made in one turn of the event loop leave in one system call: under load, a batch of
notifications crosses with one write each way, as they are committed with one fsync.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from enum import IntEnum

__all__ = ["FrameProtocol", "Framer", "Kind", "encode_frame", "take_frames"]

_HEADER = struct.Struct("<IIB")  # payload length, sequence number, kind
HEADER_SIZE = _HEADER.size


class Kind(IntEnum):
    READY = 0
    """Engine to HTTP process, once: the store is open and plugins have started."""
    RECEIVE = 1
    """A notification's body; the reply is the encoded reply to send to WeChat."""
    PING = 2
    """Can the store take a write now? The reply is empty, or the reason it cannot."""
    OK = 3
    FAILED = 4


def encode_frame(seq: int, kind: Kind, payload: bytes = b"") -> bytes:
    return _HEADER.pack(len(payload), seq, kind) + payload


def take_frames(buffer: bytearray) -> list[tuple[int, Kind, bytes]]:
    """Take each whole frame off the front of ``buffer``; a partial one stays for later."""
    frames = []
    offset = 0
    end = len(buffer)
    while end - offset >= HEADER_SIZE:
        length, seq, kind = _HEADER.unpack_from(buffer, offset)
        start = offset + HEADER_SIZE
        if end - start < length:
            break
        frames.append((seq, Kind(kind), bytes(buffer[start : start + length])))
        offset = start + length
    del buffer[:offset]
    return frames


class Framer:
    """Queues frames for a transport and writes them all at the end of the loop's turn."""

    __slots__ = ("_loop", "_pending", "_scheduled", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False
        self.transport: asyncio.WriteTransport | None = None

    def send(self, seq: int, kind: Kind, payload: bytes = b"") -> None:
        self._pending.append(encode_frame(seq, kind, payload))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(pending))


FrameHandler = Callable[[int, Kind, bytes], None]


class FrameProtocol(asyncio.Protocol):
    """Calls ``on_frame`` for each frame received and ``on_lost`` once the peer is gone."""

    def __init__(self, framer: Framer, on_frame: FrameHandler,
                 on_lost: Callable[[], None]) -> None:
        self._framer = framer
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._framer.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        for seq, kind, payload in take_frames(self._buffer):
            self._on_frame(seq, kind, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self._framer.transport = None
        self._on_lost()
