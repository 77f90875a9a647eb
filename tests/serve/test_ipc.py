"""The frames between serve's HTTP process and its engine."""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arrears_router.serve.ipc import FrameProtocol, Framer, Kind, encode_frame, take_frames

pytestmark = pytest.mark.anyio

_frames = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.sampled_from(list(Kind)), st.binary(max_size=300)),
    max_size=20,
)


def _encoded(frames: list[tuple[int, Kind, bytes]]) -> bytes:
    """What a Framer writes for these frames, read back from a real socket pair."""

    async def write() -> bytes:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        framer = Framer(loop)
        closed = asyncio.Event()
        transport, _ = await loop.create_unix_connection(
            lambda: FrameProtocol(framer, lambda *_: None, closed.set), sock=ours)
        for seq, kind, payload in frames:
            framer.send(seq, kind, payload)
        await asyncio.sleep(0)  # the frames leave at the end of this turn of the loop
        transport.close()
        await closed.wait()
        theirs.setblocking(True)
        chunks = []
        while chunk := theirs.recv(65536):
            chunks.append(chunk)
        theirs.close()
        return b"".join(chunks)

    return asyncio.run(write())


@given(_frames, st.integers(1, 64))
def test_frames_come_through_whole_however_the_bytes_are_split(
    frames: list[tuple[int, Kind, bytes]], piece: int
) -> None:
    wire = _encoded(frames)
    buffer = bytearray()
    received = []
    for start in range(0, len(wire), piece):
        buffer += wire[start:start + piece]
        received += take_frames(buffer)
    assert received == frames
    assert buffer == b""
    assert wire == b"".join(encode_frame(*frame) for frame in frames)


def test_a_partial_frame_waits_in_the_buffer() -> None:
    wire = _encoded([(7, Kind.RECEIVE, b"body")])
    buffer = bytearray(wire[:-1])
    assert take_frames(buffer) == []
    assert buffer == wire[:-1]
    buffer += wire[-1:]
    assert take_frames(buffer) == [(7, Kind.RECEIVE, b"body")]


async def test_frames_sent_in_one_turn_leave_in_one_write() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    framer = Framer(loop)
    transport, _ = await loop.create_unix_connection(
        lambda: FrameProtocol(framer, lambda *_: None, lambda: None), sock=ours)
    writes: list[bytes] = []
    real_write = transport.write
    transport.write = lambda data: (writes.append(bytes(data)), real_write(data))[1]  # type: ignore[method-assign]
    for seq in range(5):
        framer.send(seq, Kind.OK, b"x")
    await asyncio.sleep(0)
    assert len(writes) == 1
    assert [seq for seq, _, _ in take_frames(bytearray(writes[0]))] == [0, 1, 2, 3, 4]
    transport.close()
    theirs.close()


async def test_the_peer_closing_is_reported_once() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    lost = asyncio.Event()
    received: list[tuple[int, Kind, bytes]] = []
    await loop.create_unix_connection(
        lambda: FrameProtocol(Framer(loop), lambda *f: received.append(f), lost.set),
        sock=ours)
    theirs.sendall(encode_frame(1, Kind.READY))
    theirs.close()
    await lost.wait()
    assert received == [(1, Kind.READY, b"")]
