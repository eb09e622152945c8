"""Payload order inside the messages we build.

Tasks add payloads in whatever order they run; the peer expects the order of
RFC 7296's exchange diagrams (and a COOKIE, if any, must come first, §2.6).
A stable sort by a per-exchange rank gives that without coupling the tasks.
"""

from __future__ import annotations

from ..wire.enums import ExchangeType, NotifyType, PayloadType
from ..wire.payloads import Notify, Payload

_N = int(PayloadType.NOTIFY)

_RANKS: dict[int, dict[int, int]] = {
    ExchangeType.IKE_SA_INIT: {
        PayloadType.SA: 10, PayloadType.KE: 11, PayloadType.NONCE: 12, PayloadType.CERTREQ: 14,
        _N: 13, PayloadType.VENDOR: 15,
    },
    ExchangeType.IKE_AUTH: {
        PayloadType.IDi: 10, PayloadType.CERT: 11, PayloadType.CERTREQ: 13, PayloadType.IDr: 14,
        PayloadType.AUTH: 15, PayloadType.CP: 17, PayloadType.SA: 18, PayloadType.TSi: 19,
        PayloadType.TSr: 20, _N: 21, PayloadType.VENDOR: 22,
    },
    ExchangeType.CREATE_CHILD_SA: {
        PayloadType.SA: 10, PayloadType.NONCE: 11, PayloadType.KE: 12, PayloadType.TSi: 13,
        PayloadType.TSr: 14, _N: 15,
    },
    ExchangeType.INFORMATIONAL: {PayloadType.DELETE: 10, _N: 11, PayloadType.CP: 12},
}

#: notifies with a fixed place regardless of their type's default
_NOTIFY_RANKS: dict[int, dict[int, int]] = {
    ExchangeType.IKE_SA_INIT: {NotifyType.COOKIE: 0},
    ExchangeType.IKE_AUTH: {NotifyType.INITIAL_CONTACT: 12, NotifyType.QUICK_CRASH_DETECTION: 16},
    ExchangeType.CREATE_CHILD_SA: {NotifyType.REKEY_SA: 1, NotifyType.USE_TRANSPORT_MODE: 9},
}


def order(exchange: int, payloads: list[Payload]) -> list[Payload]:
    ranks = _RANKS.get(exchange)
    if ranks is None or len(payloads) < 2:
        return payloads
    nranks = _NOTIFY_RANKS.get(exchange, {})
    if exchange == ExchangeType.IKE_AUTH and all(p.payload_type != PayloadType.IDi for p in payloads):
        # a response: IDr leads, before the certificates (RFC 7296 §1.2: IDr, [CERT,] AUTH)
        ranks = {**ranks, PayloadType.IDr: 9}

    def rank(p: Payload) -> int:
        if type(p) is Notify:
            if p.type.is_error:
                return 1  # errors first: that is where peers look for them
            return nranks.get(p.type, ranks[_N])
        return ranks.get(p.payload_type, 50)

    return sorted(payloads, key=rank)
