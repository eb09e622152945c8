"""Human-readable one-line summaries of IKE datagrams seen on the virtual wire.

Unprotected messages are decoded completely (that is where INVALID_SPI,
INVALID_IKE_SPI and QCD tokens travel); protected ones show their header and
``SK {...}``, whose contents only the endpoints' engine traces can name.
"""

from __future__ import annotations

from ..wire.enums import FLAG_INITIATOR, FLAG_RESPONSE, QCD_TOKEN, ExchangeType, PayloadType
from ..wire.errors import CodecError
from ..wire.framing import NON_ESP_MARKER
from ..wire.header import HEADER_SIZE, Header
from ..wire.message import decode_payloads
from ..wire.payloads import Notify

_SK = (int(PayloadType.SK), int(PayloadType.SKF))


def strip_marker(data: bytes) -> bytes:
    """IKE bytes without the non-ESP marker (an IKE SPI is never zero, so 4 zeros are one)."""
    return data[4:] if data[:4] == NON_ESP_MARKER and len(data) > 4 else data


def notify_name(n: Notify) -> str:
    if n.type == QCD_TOKEN:
        return "N(QCD_TOKEN)"
    return f"N({n.type})"


class IkeView:
    """The parts of an IKE message a diagram or a metric needs."""

    __slots__ = ("exchange", "header", "message_id", "payloads", "protected", "response", "spi_i",
                 "spi_r")

    def __init__(self, data: bytes) -> None:
        data = strip_marker(data)
        h = Header.decode(data)
        self.header = h
        self.spi_i = h.spi_i
        self.spi_r = h.spi_r
        self.exchange = ExchangeType(h.exchange)
        self.message_id = h.message_id
        self.response = bool(h.flags & FLAG_RESPONSE)
        self.protected = h.next_payload in _SK
        self.payloads: list[str] = []
        if not self.protected:
            try:
                payloads, _ = decode_payloads(h.next_payload, data, HEADER_SIZE)
            except CodecError:
                self.payloads = ["<malformed>"]
            else:
                self.payloads = [
                    notify_name(p) if isinstance(p, Notify) else str(PayloadType(p.payload_type))
                    for p in payloads
                ]

    @property
    def initiator_flag(self) -> bool:
        return bool(self.header.flags & FLAG_INITIATOR)

    @property
    def has_token(self) -> bool:
        return "N(QCD_TOKEN)" in self.payloads

    def key(self) -> tuple[bytes, bytes, int, bool]:
        return (self.spi_i, self.spi_r, self.message_id, self.response)


def describe(data: bytes) -> IkeView | None:
    try:
        return IkeView(data)
    except (CodecError, ValueError):
        return None


def unprotected_kind(view: IkeView) -> str:
    """INVALID_SPI / INVALID_IKE_SPI (+ QCD_TOKEN) or the payload list, for metrics."""
    names = [p for p in view.payloads if p.startswith("N(")]
    return "+".join(n[2:-1] for n in names) or "other"


__all__ = ["IkeView", "describe", "strip_marker", "unprotected_kind"]
