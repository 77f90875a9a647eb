"""The reply's errcodes: the public contract with WeChat, shared by the wire and the store."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ErrCode"]


class ErrCode(IntEnum):
    """The reply's errcode: the public contract with WeChat (README lists them)."""

    OK = 0
    INVALID_REQUEST = 40001
    UNKNOWN_MERCHANT = 40002
    INVALID_SIGNATURE = 40003
    UNDECRYPTABLE = 40004
    INVALID_PAYLOAD = 40005
    CONFLICTING_DUPLICATE = 40009
    BODY_TOO_LARGE = 41300
    STORE_UNAVAILABLE = 50001
