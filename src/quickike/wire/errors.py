"""The codec's single error type.

A responder has to answer malformed input with a specific notify (RFC 7296
§2.21), so the error carries that notify instead of leaving callers to guess
it from the message text.
"""

from __future__ import annotations

from .enums import NotifyType


class CodecError(ValueError):
    """Malformed or unsupported IKEv2 input.

    ``notify`` is the notify type a responder should answer with and ``data``
    its notification data (for UNSUPPORTED_CRITICAL_PAYLOAD: the payload type).
    """

    __slots__ = ("data", "notify")

    def __init__(
        self, message: str, notify: NotifyType = NotifyType.INVALID_SYNTAX, data: bytes = b""
    ) -> None:
        super().__init__(message)
        self.notify = notify
        self.data = data
