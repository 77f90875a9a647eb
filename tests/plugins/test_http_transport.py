"""The kit's client on its aiohttp pool, against a raw local server that does what a far side
may: answer, repeat a header, stall, close a kept-alive connection, cut a body short, refuse.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from arrears_router import RetryableError
from arrears_router.http import HttpPlugin, PooledTransport

pytestmark = pytest.mark.anyio

TOKEN = "t0ken-s3cret"


@dataclass
class Seen:
    head: bytes
    body: bytes
    connection: int

    @property
    def lines(self) -> list[bytes]:
        return self.head.split(b"\r\n")

    def values(self, name: str) -> list[bytes]:
        prefix = name.lower().encode() + b":"
        return [line.split(b":", 1)[1].strip() for line in self.lines[1:]
                if line.lower().startswith(prefix)]


Reply = Callable[["RawServer", Seen, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request; False closes the connection."""


def answer(status: int = 200, body: bytes = b'{"ok":true}', *headers: str,
           length: int | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body) if length is None else length}",
            *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def ok(server: RawServer, seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(answer())
    return True


@dataclass
class RawServer:
    reply: Reply = ok
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    url: str = ""
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in self._writers:  # kept-alive connections too: nothing answers any more
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                    return
                seen = Seen(head, b"", number)
                if b"chunked" in b"".join(seen.values("transfer-encoding")):
                    seen.body = await _chunked(reader)
                elif length := seen.values("content-length"):
                    seen.body = await reader.readexactly(int(length[0]))
                self.seen.append(seen)
                if not await self.reply(self, seen, writer):
                    return
                await writer.drain()
        finally:
            self.open_now -= 1
            self._writers.discard(writer)
            writer.close()


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readexactly(2)
    return body


async def started(request_timeout: float = 5.0, **headers: str) -> HttpPlugin:
    plugin = HttpPlugin(request_timeout, headers)
    await plugin.router_started()
    return plugin


async def post(plugin: HttpPlugin, url: str, body: bytes = b'{"fee":450}',
               **headers: str) -> httpx.Response:
    request = plugin.client.build_request("POST", url, content=body, headers=headers)
    return await plugin.send(request, shown_url="http://far.example/x")


async def test_the_request_arrives_as_httpx_built_it_and_nothing_more() -> None:
    async with RawServer() as server:
        plugin = await started(**{"user-agent": "arrears-router-test"})
        request = plugin.client.build_request(
            "PUT", server.url + "/r/..%2Fadmin%3Fx%3D1?to=%2B86&k=a%3Db",
            content=b"raw bytes", headers=[("X-Tag", "a"), ("X-Tag", "b")],
        )
        response = await plugin.send(request, shown_url=server.url)
        await plugin.router_stopping()
    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert response.request is request
    (seen,) = server.seen
    # The path and query byte for byte: no encoding undone or added.
    assert seen.lines[0] == b"PUT /r/..%2Fadmin%3Fx%3D1?to=%2B86&k=a%3Db HTTP/1.1"
    assert seen.values("x-tag") == [b"a", b"b"]  # a repeated name stays two lines
    assert seen.values("user-agent") == [b"arrears-router-test"]
    assert seen.values("content-length") == [b"9"]
    assert seen.values("content-type") == []  # aiohttp's octet-stream is not added
    assert seen.values("host") == [server.url.removeprefix("http://").encode()]
    assert seen.body == b"raw bytes"


async def test_the_kits_build_request_sends_what_the_clients_would() -> None:
    async with RawServer() as server:
        plugin = await started(**{"User-Agent": "arrears-router-test", "X-Team": "ops"})
        url = httpx.URL(server.url + "/r/a%2Fb?k=a%3Db")  # parsed once, sent twice
        calls = [plugin.build_request("POST", url, content=b"one",
                                      headers={"user-agent": "theirs", "X-Key": "k1"}),
                 plugin.build_request("POST", url, content=b"two")]
        traced: list[str] = []

        async def trace(event: str, info: dict[str, Any]) -> None:
            traced.append(event)

        calls[0].extensions["trace"] = trace  # as sms does: this request's alone
        for request in calls:
            await plugin.send(request, shown_url=server.url)
        await plugin.router_stopping()
    assert traced == ["http11.send_request_body.complete"]
    assert "trace" not in calls[1].extensions
    assert calls[1].extensions["timeout"] == httpx.Timeout(5.0).as_dict()
    first, second = server.seen
    assert first.lines[0] == second.lines[0] == b"POST /r/a%2Fb?k=a%3Db HTTP/1.1"
    # A header of the call's replaces the client's of that name, whatever its case.
    assert (first.values("user-agent"), first.values("x-team"), first.values("x-key")) == (
        [b"theirs"], [b"ops"], [b"k1"])
    assert (second.values("user-agent"), second.values("x-key")) == (
        [b"arrears-router-test"], [])
    assert (first.body, first.values("content-length")) == (b"one", [b"3"])


async def test_a_repeated_answer_header_keeps_every_value() -> None:
    async def cookies(server: RawServer, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, b"{}", "Set-Cookie: a=1", "Set-Cookie: b=2", "Retry-After: 3"))
        return True

    async with RawServer(cookies) as server:
        plugin = await started()
        first = await post(plugin, server.url)
        await post(plugin, server.url)
        await plugin.router_stopping()
    assert first.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert first.headers["retry-after"] == "3"
    assert server.seen[1].values("cookie") == []  # send keeps no cookie between calls


async def test_connections_are_kept_alive_and_bounded_by_the_pool() -> None:
    async def slow(server: RawServer, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(answer())
        return True

    async with RawServer(slow) as server:
        plugin = await started()
        for _ in range(5):
            await post(plugin, server.url)
        assert server.connections == 1  # one connection, reused
        client = httpx.AsyncClient(transport=PooledTransport(max_connections=3))
        await asyncio.gather(*(client.post(server.url, content=b"x") for _ in range(12)))
        await client.aclose()
        await plugin.router_stopping()
    assert server.most_open <= 4  # the plugin's one, and the other pool's three at most
    assert len(server.seen) == 17


async def test_a_kept_alive_connection_the_server_closed_is_replaced() -> None:
    async def once(server: RawServer, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer())
        return False  # closes after answering, without saying Connection: close

    async with RawServer(once) as server:
        plugin = await started()
        for _ in range(3):
            await post(plugin, server.url)
            await asyncio.sleep(0.05)  # the close reaches the client while it is idle
        await plugin.router_stopping()
    assert [seen.connection for seen in server.seen] == [1, 2, 3]


async def test_connection_close_in_the_answer_is_honoured() -> None:
    async def closing(server: RawServer, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, b"{}", "Connection: close"))
        return False

    async with RawServer(closing) as server:
        plugin = await started()
        for _ in range(3):  # sent at once: no time to see the close but the header itself
            assert (await post(plugin, server.url)).status_code == 200
        await plugin.router_stopping()
    assert server.connections == 3


async def test_no_answer_within_request_timeout_is_retryable() -> None:
    async def stall(server: RawServer, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async with RawServer(stall) as server:
        plugin = await started(request_timeout=0.3)
        with pytest.raises(RetryableError) as caught:
            await post(plugin, server.url + f"/x?token={TOKEN}")
        # A client of its own, with httpx's read timeout: httpx's error.
        client = httpx.AsyncClient(transport=PooledTransport(), timeout=0.2)
        with pytest.raises(httpx.ReadTimeout):
            await client.post(server.url, content=b"x")
        await client.aclose()
        await plugin.router_stopping()
    assert str(caught.value) == "no answer from http://far.example/x within request_timeout 0.3 s"


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_refused_connection_is_retryable_and_named() -> None:
    url = refused_url()
    plugin = await started()
    with pytest.raises(RetryableError) as caught:
        await post(plugin, url + f"/x?token={TOKEN}")
    with pytest.raises(httpx.ConnectError):
        await plugin.client.post(url, content=b"x")
    await plugin.router_stopping()
    assert str(caught.value).startswith("ConnectError: cannot reach http://far.example/x: ")
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("reply", ["close", "cut", "garbage"])
async def test_an_answer_cut_short_or_not_http_is_retryable_without_the_query(reply: str) -> None:
    async def bad(server: RawServer, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if reply == "cut":  # promises 100 bytes, sends 2
            writer.write(answer(200, b"{}", length=100))
        elif reply == "garbage":
            writer.write(b"SMTP ready\r\n\r\n")
        return False

    async with RawServer(bad) as server:
        plugin = await started()
        with pytest.raises(RetryableError) as caught:
            await post(plugin, server.url + f"/x?token={TOKEN}")
        with pytest.raises(httpx.RemoteProtocolError) as direct:
            await plugin.client.post(server.url + f"/x?token={TOKEN}", content=b"x")
        await plugin.router_stopping()
    assert str(caught.value).startswith("RemoteProtocolError: cannot reach http://far.example/x")
    assert TOKEN not in str(caught.value)
    assert TOKEN not in str(direct.value)


async def test_large_bodies_go_and_come_whole() -> None:
    big = bytes(range(256)) * (6 * 4096)  # 6 MiB

    async def echo(server: RawServer, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, seen.body))
        return True

    async with RawServer(echo) as server:
        plugin = await started()
        response = await post(plugin, server.url, big)
        async with plugin.client.stream("POST", server.url, content=big) as streamed:
            chunks = [chunk async for chunk in streamed.aiter_raw()]
        assert (await post(plugin, server.url, b"small")).content == b"small"  # still usable
        await plugin.router_stopping()
    assert server.seen[0].body == big
    assert response.content == big
    assert len(chunks) > 1
    assert b"".join(chunks) == big


async def test_a_streamed_request_body_is_sent_chunked() -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            yield part

    async with RawServer() as server:
        plugin = await started()
        request = plugin.client.build_request("POST", server.url, content=parts())
        assert (await plugin.send(request, shown_url=server.url)).status_code == 200
        await plugin.router_stopping()
    (seen,) = server.seen
    assert seen.values("transfer-encoding") == [b"chunked"]
    assert seen.body == b"one,two,three"


async def test_a_compressed_answer_is_decoded_once_and_redirects_are_not_followed() -> None:
    async def gzipped(server: RawServer, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.lines[0].startswith(b"POST /moved"):
            writer.write(answer(302, b"", "Location: /elsewhere"))
        else:
            writer.write(answer(200, gzip.compress(b'{"zipped":1}'), "Content-Encoding: gzip"))
        return True

    async with RawServer(gzipped) as server:
        plugin = await started()
        assert (await post(plugin, server.url)).json() == {"zipped": 1}
        moved = await post(plugin, server.url + "/moved")
        await plugin.router_stopping()
    assert (moved.status_code, moved.headers["location"]) == (302, "/elsewhere")
    assert len(server.seen) == 2


async def test_a_trace_is_told_when_the_body_has_left_and_only_then() -> None:
    events: list[str] = []

    async def trace(event: str, info: dict[str, Any]) -> None:
        events.append(event)

    async with RawServer() as server:
        plugin = await started()
        request = plugin.client.build_request("POST", server.url, content=b"body")
        request.extensions["trace"] = trace
        await plugin.send(request, shown_url=server.url)
        assert events == ["http11.send_request_body.complete"]
        assert server.seen[0].body == b"body"
    refused = plugin.client.build_request("POST", refused_url(), content=b"body")
    refused.extensions["trace"] = trace
    with pytest.raises(RetryableError):
        await plugin.send(refused, shown_url=server.url)
    await plugin.router_stopping()
    assert events == ["http11.send_request_body.complete"]


async def test_proxies_from_the_environment_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    async with RawServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "direct.example")
        plugin = await started()
        await post(plugin, "http://accounts.example/unblock?rider=1")
        with pytest.raises(RetryableError):  # not through the proxy: no such host
            await post(plugin, "http://direct.example/x")
        await plugin.router_stopping()
    (seen,) = proxy.seen
    assert seen.lines[0] == b"POST http://accounts.example/unblock?rider=1 HTTP/1.1"


async def test_send_before_the_router_started_is_retryable() -> None:
    plugin = HttpPlugin(5.0)
    with pytest.raises(RetryableError, match="not started"):
        await plugin.send(httpx.Request("GET", "http://127.0.0.1:9/"), shown_url="x")
