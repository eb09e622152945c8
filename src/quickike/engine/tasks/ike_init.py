"""IKE_SA_INIT: proposals, key exchange, nonces, and the keys of the IKE SA.

Also owns the two IKE_SA_INIT retries of the initiator (COOKIE, RFC 7296
§2.6, and INVALID_KE_PAYLOAD, §1.2) and the two capability notifies that
only make sense in this exchange (fragmentation, RFC 7383; signature hash
algorithms, RFC 7427).
"""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING

from ...crypto.algorithms import DhKeyPair, dh_alg
from ...crypto.auth import supported_hashes
from ...crypto.errors import InvalidPublicValue, ProposalError
from ...crypto.keys import derive_ike_keys
from ...crypto.proposals import Suite, accept_selected, select_proposal, specs_to_sa_payload
from ...crypto.sk import SkProtector
from ...wire.enums import CertEncoding, DhGroup, ExchangeType, NotifyType
from ...wire.message import Message
from ...wire.payloads import CERTREQ, KE, SA, Nonce, Notify, notify
from ..config import AuthClass, Fragmentation
from .base import DropRequest, Outgoing, Status, Task, refusal, requested_group

if TYPE_CHECKING:
    from ..engine import Engine
    from ..sa import IkeSa

NONCE_SIZE = 32
MAX_RETRIES = 5
# members read per exchange as module constants: ``EnumClass.MEMBER`` goes through EnumType's
# attribute hook and costs several times a global lookup
_COOKIE = NotifyType.COOKIE
_INVALID_KE = NotifyType.INVALID_KE_PAYLOAD
_FRAG_SUPPORTED = NotifyType.IKEV2_FRAGMENTATION_SUPPORTED
_HASH_ALGS = NotifyType.SIGNATURE_HASH_ALGORITHMS
_FRAG_NO = Fragmentation.NO
_X25519 = DhGroup.CURVE25519


def hash_list(data: bytes) -> tuple[int, ...]:
    """The 16-bit numbers of the notify data (an odd last octet is ignored), in one unpack."""
    n = len(data) // 2
    return struct.unpack_from(f"!{n}H", data) if n else ()


class IkeInit(Task):
    __slots__ = ("dh", "group", "retries", "suite")
    kind = "ike-init"

    def __init__(self, engine: Engine, sa: IkeSa, exchange: ExchangeType) -> None:
        super().__init__(engine, sa, exchange)
        self.dh: DhKeyPair | None = None
        self.group: DhGroup | None = None
        self.retries = 0
        self.suite: Suite | None = None

    # ------------------------------------------------------------ initiator

    def build_i(self, out: Outgoing) -> Status:
        sa, eng = self.sa, self.engine
        assert sa.conn is not None
        specs = eng.policy.ike_specs(sa.conn)
        if self.group is None:
            self.group = next((g for s in specs for g in s.dh), _X25519)
        if self.dh is None or self.dh.group != self.group:
            alg = dh_alg(self.group)
            if alg is None:
                return self.fail(f"DH group {self.group} not supported")
            self.dh = alg.generate(eng.rng)
        if not sa.ni:
            sa.ni = eng.rng.bytes(NONCE_SIZE)
        if sa.cookie:
            out.add(notify(_COOKIE, sa.cookie))
        out.add(specs_to_sa_payload(specs, first_dh=self.group), KE(self.group, self.dh.public), Nonce(sa.ni))
        if sa.conn.fragmentation != _FRAG_NO:
            out.add(notify(_FRAG_SUPPORTED))
        out.add(_hash_notify())
        return Status.NEED_MORE

    def process_i(self, msg: Message) -> Status:
        sa, eng = self.sa, self.engine
        assert sa.conn is not None
        cookie = msg.notify(_COOKIE)
        if cookie is not None:
            if self.retries >= MAX_RETRIES or not 1 <= len(cookie.data) <= 64:
                return self.fail("responder keeps asking for cookies")
            self.retries += 1
            sa.cookie = cookie.data
            eng.counters["cookie-retries"] += 1
            return Status.NEED_MORE
        invalid_ke = msg.notify(_INVALID_KE)
        if invalid_ke is not None:
            wanted = requested_group(invalid_ke)
            ours = {g for s in eng.policy.ike_specs(sa.conn) for g in s.dh}
            if wanted is None or wanted not in ours or wanted == self.group or self.retries >= MAX_RETRIES:
                return self.fail(f"responder wants DH group {wanted}, which we do not offer",
                                 _INVALID_KE)
            self.retries += 1
            self.group = wanted
            self.dh = None
            eng.counters["invalid-ke-retries"] += 1
            return Status.NEED_MORE
        for n in msg.notifies():
            if n.type.is_error:
                return self.fail(f"responder answered {n.type}", n.type)
        sa_p, ke, nonce = msg.get(SA), msg.get(KE), msg.get(Nonce)
        if sa_p is None or ke is None or nonce is None:
            return self.fail("IKE_SA_INIT response lacks SA, KE or Nonce", NotifyType.INVALID_SYNTAX)
        try:
            suite = accept_selected(sa_p, eng.policy.ike_specs(sa.conn))
        except ProposalError as e:
            return self.fail(f"unacceptable proposal: {e}", NotifyType.NO_PROPOSAL_CHOSEN)
        if suite.dh is None or suite.dh.id != ke.group or ke.group != self.group:
            return self.fail("responder's KE does not match the chosen group", _INVALID_KE)
        if not 16 <= len(nonce.data) <= 256:
            return self.fail("responder's nonce has a bad length", NotifyType.INVALID_SYNTAX)
        assert self.dh is not None
        try:
            shared = self.dh.shared(ke.data)
        except InvalidPublicValue as e:
            return self.fail(f"invalid KE from responder: {e}", NotifyType.INVALID_SYNTAX)
        sa.nr = nonce.data
        _capabilities(sa, msg)
        install_keys(eng, sa, suite, shared)
        self.dh = None
        return Status.DONE

    # ------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> Status:
        sa, eng = self.sa, self.engine
        sa_p, ke, nonce = msg.get(SA), msg.get(KE), msg.get(Nonce)
        if sa_p is None or ke is None or nonce is None:
            raise DropRequest("IKE_SA_INIT request lacks SA, KE or Nonce")
        candidates = sa.ext_get("responder_candidates") or [sa.conn]
        suite: Suite | None = None
        for conn in candidates:
            suite = select_proposal(sa_p, eng.policy.ike_specs(conn))
            if suite is not None:
                sa.conn = conn
                break
        if suite is None or suite.dh is None:
            return self.fail("no acceptable proposal", NotifyType.NO_PROPOSAL_CHOSEN)
        if suite.dh.id != ke.group:
            self.group = suite.dh.id
            return self.fail(f"initiator guessed DH group {ke.group}, we want {suite.dh.id}",
                             _INVALID_KE)
        if not 16 <= len(nonce.data) <= 256:
            raise DropRequest("nonce length out of range")
        self.dh = suite.dh.generate(eng.rng)
        try:
            shared = self.dh.shared(ke.data)
        except InvalidPublicValue as e:
            # RFC 6989 / RFC 7296 §2.21.1: drop the message, keep no state
            raise DropRequest(f"invalid KE: {e}") from e
        sa.ni = nonce.data
        sa.nr = eng.rng.bytes(NONCE_SIZE)
        self.suite = suite
        _capabilities(sa, msg)
        install_keys(eng, sa, suite, shared)
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        sa = self.sa
        if self.error is not None:
            out.add(refusal(self.error, self.group))
            return Status.FAILED
        assert self.suite is not None and self.dh is not None
        out.add(self.suite.to_sa_payload(b""), KE(self.dh.group, self.dh.public), Nonce(sa.nr))
        if sa.frag_supported:
            out.add(notify(_FRAG_SUPPORTED))
        if sa.peer_hashes:
            out.add(_hash_notify())
        certreq = self._certreq()
        if certreq is not None:
            out.add(certreq)
        self.dh = None
        return Status.DONE

    def _certreq(self) -> CERTREQ | None:
        """CERTREQ for the CAs we trust, in the response (RFC 7296 §3.7).

        The initiator has not said who it is yet, so like charon we ask for
        every CA of the connections that may answer it. charon sends its
        certificate only when asked (``send_cert = ifasked``, the default):
        without this an initiating charon authenticates with a bare AUTH.
        """
        sa, eng = self.sa, self.engine
        hashes: list[bytes] = []
        for conn in sa.ext_get("responder_candidates") or [sa.conn]:
            if conn is None or conn.remote[0].auth != AuthClass.PUBKEY or not conn.send_certreq:
                continue
            hashes.extend(h for h in eng.credentials.certreqs(conn) if h not in hashes)
        return CERTREQ(CertEncoding.X509_SIGNATURE, b"".join(hashes)) if hashes else None


@functools.lru_cache(maxsize=1)
def _hash_data() -> bytes:
    return b"".join(int(h).to_bytes(2, "big") for h in supported_hashes())


def _hash_notify() -> Notify:
    return notify(_HASH_ALGS, _hash_data())


def _capabilities(sa: IkeSa, msg: Message) -> None:
    conn = sa.conn
    frag = msg.notify(_FRAG_SUPPORTED) is not None
    sa.frag_supported = frag and conn is not None and conn.fragmentation != _FRAG_NO
    hashes = msg.notify(_HASH_ALGS)
    sa.peer_hashes = hash_list(hashes.data) if hashes is not None else ()


def install_keys(engine: Engine, sa: IkeSa, suite: Suite, shared: bytes) -> None:
    """SKEYSEED and SK_* (§2.14) and the message protector of the new SA."""
    _, keys = derive_ike_keys(suite, shared, sa.ni, sa.nr, sa.spi_i, sa.spi_r)
    sa.suite = suite
    sa.keys = keys
    sa.protector = SkProtector(suite, keys, sa.initiator, engine.rng)
    engine.keys_derived(sa)
