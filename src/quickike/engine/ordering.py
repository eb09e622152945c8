"""Payload order inside the messages we build.

Tasks add payloads in whatever order they run; the peer expects the order of
RFC 7296's exchange diagrams (and a COOKIE, if any, must come first, §2.6).
A stable sort by a per-exchange rank gives that without coupling the tasks.
"""

from __future__ import annotations

from ..wire.enums import ExchangeType, NotifyType, PayloadType
from ..wire.payloads import Notify, Payload

_N = int(PayloadType.NOTIFY)
# plain ints: ``EnumClass.MEMBER`` goes through EnumType's attribute hook, and order() runs
# for every message sent
_IDI = int(PayloadType.IDi)
_AUTH = int(ExchangeType.IKE_AUTH)
#: notify types below this are errors (RFC 7296 §3.10.1, NotifyType.is_error)
_FIRST_STATUS = 16384

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


#: an IKE_AUTH response: IDr leads, before the certificates (RFC 7296 §1.2: IDr, [CERT,] AUTH)
_AUTH_RESPONSE_RANKS: dict[int, int] = {**_RANKS[ExchangeType.IKE_AUTH], PayloadType.IDr: 9}
_NO_RANKS: dict[int, int] = {}


def order(exchange: int, payloads: list[Payload]) -> list[Payload]:
    ranks = _RANKS.get(exchange)
    if ranks is None or len(payloads) < 2:
        return payloads
    nranks = _NOTIFY_RANKS.get(exchange, _NO_RANKS)
    if exchange == _AUTH and all(p.payload_type != _IDI for p in payloads):
        ranks = _AUTH_RESPONSE_RANKS

    notify_rank = ranks[_N]

    # called for every payload of every message sent: NotifyType.is_error's test inline
    def rank(p: Payload) -> int:
        if type(p) is Notify:
            t = p.type
            if t < _FIRST_STATUS:
                return 1  # errors first: that is where peers look for them
            return nranks.get(t, notify_rank)
        return ranks.get(p.payload_type, 50)

    return sorted(payloads, key=rank)
