"""The bench's attacker: a bounded flood of the costliest requests an outsider can send.

A real merchant's appid and mch_id (they are no secret), as many small fields as the body
limit lets in, and a sign of the right length that is wrong: before the sign fails, the
router must read and count every field. Sent at a fixed rate on connections of its own, while
the bench's client measures valid notifications beside it.
"""

from __future__ import annotations

import asyncio
import contextlib

from arrears_router.bench.client import HOST, http_requests, parse_head, reply_errcode
from arrears_router.config import MerchantConfig
from arrears_router.errcodes import ErrCode

__all__ = ["Flood", "field_flood", "flood"]

_CONNECTIONS = 4


class Flood:
    """What the attacker sent, and how the router answered it."""

    def __init__(self) -> None:
        self.sent = 0
        """Floods answered (one cut off in flight when the phase ends is not counted)."""
        self.refused = 0
        """Answered errcode 40001 (too many fields) or 41300 (too large): refused cheaply."""
        self.other = 0


def field_flood(merchant: MerchantConfig, max_body_bytes: int) -> bytes:
    """The largest field flood the router's body limit lets in."""
    head = (f'{{"appid":"{merchant.appid}","mch_id":"{merchant.mch_id}","nonce_str":"n",'
            f'"encrypted_data":"x","iv":"y","sign":"{"0" * 64}"').encode()
    fields = bytearray(head)
    n = 0
    while len(fields) + 20 < max_body_bytes:
        fields += b',"k%d":%d' % (n, n)
        n += 1
    return bytes(fields) + b"}"


async def flood(port: int, body: bytes, rate: float, flood_stats: Flood) -> None:
    """Send ``body`` ``rate`` times a second until cancelled."""
    request = http_requests([body])[0]
    interval = _CONNECTIONS / rate

    async def sender(offset: float) -> None:
        await asyncio.sleep(offset)
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while True:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                _, length = parse_head(head[:-4])
                code = reply_errcode(await reader.readexactly(length))
                flood_stats.sent += 1  # counted once answered: the last may be cut off
                if code in (ErrCode.INVALID_REQUEST, ErrCode.BODY_TOO_LARGE):
                    flood_stats.refused += 1
                else:
                    flood_stats.other += 1
                await asyncio.sleep(interval)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    await asyncio.gather(*(sender(i * interval / _CONNECTIONS) for i in range(_CONNECTIONS)))
