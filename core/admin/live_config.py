"""The config as the admin process reads it: current, without a restart.

A revoked token must stop working, and a merchant's fixed key must be the one a re-ingest
uses, as soon as the file says so. The file is stat'ed when asked (a few microseconds, and
ops calls are few) and read again only when it changed; an edit that does not load is logged
and the last good config stays, as in the engine.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from arrears_router.admin.tokens import Tokens
from arrears_router.config import Config, ConfigError, load_config
from arrears_router.logs import redact_secrets, secrets_in

__all__ = ["LiveConfig"]

log = logging.getLogger("arrears_router.admin")


class LiveConfig:
    def __init__(self, config: Config, path: Path) -> None:
        self.path = path
        self._config = config
        self._tokens = Tokens(config.admin.tokens)
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size, found.st_ino

    def _refresh(self) -> None:
        stamp = self._stamp()
        if stamp == self._seen or stamp is None:
            return
        self._seen = stamp
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            log.error("config not reloaded, the last good one stays: %s", exc)
            return
        redact_secrets(secrets_in(config))  # a new key or token is masked from now on
        self._config, self._tokens = config, Tokens(config.admin.tokens)
        log.info("config reloaded: %d admin token(s)", len(config.admin.tokens))

    @property
    def config(self) -> Config:
        self._refresh()
        return self._config

    @property
    def tokens(self) -> Tokens:
        self._refresh()
        return self._tokens
