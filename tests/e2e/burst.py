"""A burst of notifications that is still in flight when the server goes away.

Several sender threads, each on its own keep-alive connection, post distinct signed
notifications back to back and record what became of each transaction id: ``sent`` (posted,
answer or not), ``acked`` (answered errcode 0; its body is kept, to resend it as WeChat would)
and ``refused`` (any other answer). A sender stops when the ids run out or its connection
breaks, which is how it sees the server go; a break before :meth:`Burst.going_away` is an
``early_break``, a server that dropped a connection it should have kept.

The test says what differs: the ids (how they are numbered, how many), how a body is built,
and when to act (:meth:`Burst.wait_for_acks`); it asserts on what was recorded.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Burst:
    """Senders posting ``body_for(id)`` for each id of ``ids`` to ``url``; see the module."""

    url: str
    ids: Iterator[str]
    body_for: Callable[[str], bytes]
    timeout_s: float
    """Per request: a server that neither answers nor closes fails the test, not hangs it."""
    acked: dict[str, bytes] = field(default_factory=dict)
    sent: set[str] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)
    early_breaks: list[str] = field(default_factory=list)
    # One condition guards every field the senders write (and ``ids``, a plain iterator) and
    # wakes wait_for_acks on each ack, refusal or stopped sender.
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _going_away: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _running: int = 0

    def start(self, senders: int) -> None:
        self._threads = [threading.Thread(target=self._send, daemon=True)
                         for _ in range(senders)]
        self._running = senders
        for thread in self._threads:
            thread.start()

    def wait_for_acks(self, count: int, deadline_s: float) -> bool:
        """Wait for ``count`` acks; False if a refusal, the last sender stopping or the
        deadline comes first (no point waiting on: the test is failing)."""
        with self._changed:
            self._changed.wait_for(
                lambda: len(self.acked) >= count or bool(self.refused) or self._running == 0,
                deadline_s,
            )
            return len(self.acked) >= count

    def going_away(self) -> None:
        """The test is about to stop the server: a broken connection is expected from now."""
        self._going_away.set()

    def join(self, deadline_s: float) -> bool:
        """Wait for every sender to stop; False if one still runs ``deadline_s`` from now."""
        with self._changed:
            return self._changed.wait_for(lambda: self._running == 0, deadline_s)

    def _send(self) -> None:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        connection = http.client.HTTPConnection(parts.hostname, parts.port,
                                                timeout=self.timeout_s)
        try:
            while True:
                with self._changed:
                    transaction_id = next(self.ids, None)
                if transaction_id is None:
                    return
                body = self.body_for(transaction_id)
                with self._changed:
                    self.sent.add(transaction_id)  # before the request: it may be stored unanswered
                try:
                    connection.request("POST", parts.path, body=body,
                                       headers={"content-type": "application/json"})
                    response = connection.getresponse()
                    reply = json.loads(response.read())
                except (OSError, http.client.HTTPException) as exc:
                    if not self._going_away.is_set():
                        with self._changed:
                            self.early_breaks.append(f"{transaction_id}: {exc!r}")
                    return  # the server is gone or closed this connection: no reply, no ack
                with self._changed:
                    if reply.get("errcode") == 0:
                        self.acked[transaction_id] = body
                    else:
                        self.refused.append(f"{transaction_id}: {reply}")
                    self._changed.notify_all()
        finally:
            connection.close()
            with self._changed:
                self._running -= 1
                self._changed.notify_all()
