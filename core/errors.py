"""What a plugin may raise to say how a delivery went wrong."""

from __future__ import annotations

__all__ = ["PermanentError", "RetryableError"]


class RetryableError(Exception):
    """Try this delivery again later; ``retry_after`` (seconds) overrides the backoff.

    Any other exception a plugin raises counts as retryable too.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying cannot help (the request itself is refused): the delivery is dead at once."""
