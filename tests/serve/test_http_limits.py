"""``serve``'s HTTP process against clients that send too much or too slowly, over real
sockets: a head too large or with too many headers is refused without the process growing,
a client that stops halfway is disconnected, and a notification is answered as ever.

Nothing sleeps: a test reads until the server closes, the socket's timeout a failure bound.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from arrears_router.config import load_config
from arrears_router.serve.server import HEAD_MAX_BYTES, HEAD_MAX_FIELDS
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import RouterProcess, write_config

SOCKET_TIMEOUT_S = 60.0
"""A failure bound only, well past the server's own timeouts."""
HUGE_HEAD_BYTES = 64 * 1024 * 1024
MEMORY_BOUND_KB = 100 * 1024
"""How much four huge heads may grow the HTTP process, at its peak: a generous bound (with no
limit, they grew it by hundreds of MB)."""
CALLBACK = "/ridecode/arrears"


@pytest.fixture
def server(tmp_path: Path, start_process: Callable[..., RouterProcess]) -> RouterProcess:
    process: RouterProcess = start_process(write_config(tmp_path / "config.toml"),
                                           "serve", "--port", "0")
    return process


def connect(server: RouterProcess) -> socket.socket:
    address = urlsplit(server.url)
    assert address.hostname is not None and address.port is not None
    return socket.create_connection((address.hostname, address.port), SOCKET_TIMEOUT_S)


def until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection (or resets it)."""
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return bytes(received)


def status(response: bytes) -> int | None:
    """The status of the first response in ``response``; None if there is none."""
    line = response.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 else None


def vm_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def notification(server: RouterProcess, transaction_id: str) -> bytes:
    merchant = load_config(server.config).merchants[0]
    return Notifier(merchant).notification(sample_payload(transaction_id))


def send_huge_head(server: RouterProcess) -> bytes:
    """A POST whose headers go on for 64 MB, in 8 KiB lines; what the server answers."""
    line = b"X-Pad: " + b"a" * (8192 - 9) + b"\r\n"
    with connect(server) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused on the way
            sock.sendall(f"POST {CALLBACK} HTTP/1.1\r\nHost: router\r\n".encode())
            for _ in range(HUGE_HEAD_BYTES // len(line)):
                sock.sendall(line)
            sock.sendall(b"Content-Length: 2\r\n\r\n{}")
        return until_closed(sock)


def test_huge_heads_are_refused_and_the_process_does_not_grow(server: RouterProcess) -> None:
    before_kb = vm_kb(server.pid, "VmRSS")

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: send_huge_head(server), range(4)))

    assert vm_kb(server.pid, "VmHWM") - before_kb < MEMORY_BOUND_KB
    assert [status(answer) in (431, None) for answer in answers] == [True] * 4, answers
    reply = httpx.post(server.url + CALLBACK, content=notification(server, "TX-AFTER-HUGE"),
                       timeout=SOCKET_TIMEOUT_S).json()
    assert reply["errcode"] == 0


def test_a_request_with_too_many_headers_is_refused(server: RouterProcess) -> None:
    fields = b"".join(b"X-Field-%d: v\r\n" % n for n in range(HEAD_MAX_FIELDS))
    with connect(server) as sock:  # with Host, one header too many
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: router\r\n" + fields + b"\r\n")
        assert status(until_closed(sock)) in (431, None)


def test_a_notification_with_a_few_kib_of_headers_is_answered(server: RouterProcess) -> None:
    headers = {f"X-Proxy-{n}": "v" * 40 for n in range(50)}  # 50 fields, about 3 KiB
    assert sum(len(k) + len(v) for k, v in headers.items()) < HEAD_MAX_BYTES

    with httpx.Client(timeout=SOCKET_TIMEOUT_S) as client:
        # First a body over max_body_bytes: answered before it is read, on a connection kept
        # alive for the next notification.
        too_large = client.post(server.url + CALLBACK, content=b"{" + b" " * 70_000 + b"}")
        answered = client.post(server.url + CALLBACK, headers=headers,
                               content=notification(server, "TX-HEADERS"))

    assert too_large.json()["errcode"] == 41300
    assert answered.json()["errcode"] == 0


def test_clients_that_stop_halfway_are_disconnected(server: RouterProcess) -> None:
    healthz = b"GET /healthz HTTP/1.1\r\nHost: router\r\n\r\n"
    sent = {
        "nothing": b"",
        "half a head": f"POST {CALLBACK} HTTP/1.1\r\nHost: router\r\nContent-Ty".encode(),
        "half a body": (f"POST {CALLBACK} HTTP/1.1\r\nHost: router\r\n"
                        "Content-Length: 1000\r\n\r\n").encode() + b'{"appid":',
        "a request, then nothing": healthz,
        "a request, its answer, then half a head": healthz,
    }
    connections = {what: connect(server) for what in sent}
    for what, data in sent.items():
        connections[what].sendall(data)
    kept_alive = connections["a request, its answer, then half a head"]
    answered = bytearray()
    while not answered.endswith(b'{"status":"ok"}'):
        answered += kept_alive.recv(65536)
    kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHo")

    closed_with = {}
    for what, sock in connections.items():
        with sock:
            closed_with[what] = status(until_closed(sock))  # a timeout: it was never closed

    assert closed_with == {
        "nothing": 408,
        "half a head": 408,
        "half a body": 408,
        "a request, then nothing": 200,  # and closed once idle
        "a request, its answer, then half a head": 408,
    }
