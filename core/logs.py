"""Logging for every process the router runs: one line per event, to standard error.

``[log] format`` is ``text`` (for people) or ``json`` (one object a line, for collectors);
either way each line carries the event's stable context keys (:data:`CONTEXT_KEYS`), taken
from ``extra=`` or from :func:`log_context`, which the intake and the dispatcher set around a
request and a delivery, so that whatever is logged inside, by a plugin or a library, is tied
to them.

Redaction is a filter on the one handler, not a convention: every record, from any logger
(a plugin's ``delivery.log``, a third-party library's, an uncaught exception's), has the
configured secrets, mainland mobile numbers, whole openids and URL credentials masked before
it is written.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TextIO

import msgspec

from arrears_router.http import mask_openid, mask_phones_in

__all__ = [
    "CONTEXT_KEYS",
    "LogFormat",
    "LogLevel",
    "add_context",
    "build_handler",
    "configure_logging",
    "log_context",
    "redact",
    "redact_secrets",
    "secrets_in",
]

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

CONTEXT_KEYS = ("request_id", "errcode", "mch_id", "transaction_id", "plugin", "delivery_id",
                "attempt", "duration_s")
"""The keys a line may carry besides time, level, logger and message; the only ones: a
collector's schema stays the same whatever a plugin passes."""

# A line per outgoing request or per file event would drown what matters.
_CHATTY = ("httpx", "httpcore", "watchfiles", "aiosqlite")

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "arrears_router_log_context", default={})  # noqa: B039 (never mutated: replaced whole)


class log_context:  # lower case: it reads as a function, `with log_context(plugin=...)`
    """Every record logged inside carries ``keys`` (and those of an enclosing context). Tasks
    started inside inherit them, as asyncio copies the context into each new task. A class,
    not a generator: it runs once per request and per delivery."""

    __slots__ = ("_keys", "_token")

    def __init__(self, **keys: Any) -> None:
        self._keys = keys

    def __enter__(self) -> None:
        self._token = _context.set({**_context.get(), **self._keys})

    def __exit__(self, *_: object) -> None:
        _context.reset(self._token)


def add_context(**keys: Any) -> None:
    """Add ``keys`` to the current context from here on (a duration, once it is known); inside
    a :func:`log_context`, whose exit takes them away again."""
    _context.set({**_context.get(), **keys})


# -- redaction

_MIN_SECRET = 8
"""A configured value shorter than this is not masked: too short to be a real key, and
masking ``demo`` or ``k`` everywhere would garble ordinary words."""
_SECRET_NAME = re.compile(r"key|secret|token|passw|auth|credential|cookie|phone", re.I)
_NEVER_SECRET = frozenset({"name", "scope"})
"""Keys beside a secret that say whose it is (an admin token's holder, the actor in the
audit log): shown in logs, whatever the table is called."""
# WeChat openids: 28 characters of the URL-safe alphabet, starting with 'o'.
_OPENID = re.compile(r"(?<![A-Za-z0-9_-])o[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])")
_URL_CREDENTIALS = re.compile(r"(://[^/\s:@]+):[^/\s@]+@")
_QUERY_SECRET = re.compile(r"([?&][^=&\s]*(?:token|key|secret|passw|auth)[^=&\s]*=)[^&#\s'\"]+",
                           re.I)
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None
_secrets_lock = threading.Lock()


def secrets_in(tree: Any) -> set[str]:
    """The values of a config (a struct, or what TOML gives) that no log line may show: every
    string under a key named like a secret (``sign_key``, ``aes_key``, ``secret_key``,
    ``token``, ``password``, an ``Authorization`` header, ``phones``...), and of a
    ``Bearer TOKEN`` or ``base64:KEY`` its last part too."""
    found: set[str] = set()

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, key not in _NEVER_SECRET and (
                    secret or bool(_SECRET_NAME.search(str(key)))))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item, secret)
        elif isinstance(node, str) and secret:
            words = node.split()
            found.update((node, words[-1] if words else node, node.partition(":")[2]))

    walk(msgspec.to_builtins(tree, enc_hook=str), False)  # str: a Duration, say
    return {value for value in found if len(value) >= _MIN_SECRET}


def redact_secrets(values: Iterable[str]) -> None:
    """Mask ``values`` in every line from now on, in every process that calls this (with its
    config at start and after each reload: an old key is still a secret, so none is dropped).
    """
    global _secret_pattern
    with _secrets_lock:
        new = {value for value in values if len(value) >= _MIN_SECRET} - _secrets
        if not new:
            return
        _secrets.update(new)
        # Longest first: a key that holds another is masked whole.
        _secret_pattern = re.compile("|".join(
            re.escape(value) for value in sorted(_secrets, key=len, reverse=True)))


def redact(text: str) -> str:
    """``text`` with secrets, URL credentials and secret query values as ``****``, mobile
    numbers as ``+86138****0000`` and openids as ``oRid****0001``."""
    if (pattern := _secret_pattern) is not None:
        text = pattern.sub("****", text)
    text = _URL_CREDENTIALS.sub(r"\1:****@", text)
    text = _QUERY_SECRET.sub(r"\1****", text)
    text = mask_phones_in(text)
    return _OPENID.sub(lambda found: mask_openid(found.group()), text)


class _Redacting(logging.Filter):
    """On the handler, so it sees every record whatever logger it came from: adds the context
    keys, then masks the message, the traceback and every string context value."""

    _tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if key not in record.__dict__:  # extra= wins over the context
                setattr(record, key, value)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call must not raise in the caller: shown as written
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key in CONTEXT_KEYS:
            if isinstance(value := record.__dict__.get(key), str):
                setattr(record, key, redact(value))
        return True


# -- formats


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    found = {key: record.__dict__[key] for key in CONTEXT_KEYS if key in record.__dict__}
    if isinstance(duration := found.get("duration_s"), float):
        found["duration_s"] = round(duration, 6)
    return found


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if context := _context_of(record):
            head, newline, rest = line.partition("\n")  # before a traceback, on the first line
            keys = " ".join(f"{key}={value}" for key, value in context.items())
            line = f"{head} [{keys}]{newline}{rest}"
        return line


class _JsonFormatter(logging.Formatter):
    """One msgspec-encoded object a line: time (ISO 8601, local, with its offset), level,
    logger, message, pid (``serve`` is two processes on one stream), the context keys, and
    ``exception``/``stack`` when there are."""

    _encode = msgspec.json.Encoder().encode

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created).astimezone().isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
            **_context_of(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return self._encode(line).decode()


class _RouterHandler(logging.StreamHandler[TextIO]):
    """Ours, so that configuring again replaces it and nothing else."""


def build_handler(format: LogFormat = "text", level: LogLevel = "info",
                  stream: TextIO | None = None) -> logging.Handler:
    handler = _RouterHandler(sys.stderr if stream is None else stream)
    handler.setLevel(level.upper())  # whatever level a plugin sets on its own logger
    handler.addFilter(_Redacting())
    handler.setFormatter(_JsonFormatter() if format == "json" else _TextFormatter())
    return handler


def configure_logging(format: LogFormat = "text", level: LogLevel = "info",
                      secrets: Iterable[str] = ()) -> None:
    """Log to standard error in ``format`` from ``level`` up, masking ``secrets`` besides what
    is always masked. Called again (once the config is read), it replaces what it set; a root
    logger configured by someone else (a program embedding the router, pytest) is left alone.
    """
    redact_secrets(secrets)
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _RouterHandler)]
    if len(ours) < len(root.handlers):
        return
    for handler in ours:
        root.removeHandler(handler)
    root.addHandler(build_handler(format, level))
    root.setLevel(level.upper())
    quiet = max(logging.WARNING, root.level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(quiet)
    if format == "json":
        # What would otherwise reach standard error around logging goes through it instead:
        # a line of JSON, redacted, rather than a raw traceback or warning.
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], exc: BaseException,
                  traceback: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, traceback)
        return
    logging.getLogger("arrears_router").critical("uncaught exception",
                                                 exc_info=(kind, exc, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None and not issubclass(args.exc_type, SystemExit):
        logging.getLogger("arrears_router").critical(
            "uncaught exception in thread %s", args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
