"""IKE SA rekey with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18).

A new IKE SA with new SPIs and keys derived from the old SK_d and a fresh DH
inherits every CHILD SA; the rekey initiator then deletes the old SA. The
rekey initiator is the "original initiator" of the new SA (I flag, key
roles). Simultaneous rekeys are settled by nonces (§2.8.2): the SA built
from the lowest nonce is redundant and its creator deletes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...crypto.algorithms import DhKeyPair, dh_alg
from ...crypto.errors import InvalidPublicValue, ProposalError
from ...crypto.keys import derive_rekeyed_ike_keys
from ...crypto.proposals import Suite, accept_selected, select_proposal, specs_to_sa_payload
from ...crypto.sk import SkProtector
from ...wire.enums import DhGroup, ExchangeType, NotifyType, ProtocolId
from ...wire.message import Message
from ...wire.payloads import KE, SA, Nonce
from ..sa import IkeSa, IkeState
from .base import Outgoing, Status, Task, refusal, requested_group

if TYPE_CHECKING:
    from ..engine import Engine

NONCE_SIZE = 32


class IkeRekey(Task):
    __slots__ = ("dh", "group", "my_nonce", "new_sa", "new_spi", "peer_nonce", "retries", "suite")
    kind = "ike-rekey"

    def __init__(self, engine: Engine, sa: IkeSa, exchange: ExchangeType) -> None:
        super().__init__(engine, sa, exchange)
        self.dh: DhKeyPair | None = None
        self.group: DhGroup | None = None
        self.my_nonce = b""
        self.peer_nonce = b""
        self.new_spi = b""
        self.new_sa: IkeSa | None = None
        self.suite: Suite | None = None
        self.retries = 0
        self.keep_sa = True

    def _make_sa(self, spi_i: bytes, spi_r: bytes, initiator: bool, shared: bytes,
                 ni: bytes, nr: bytes) -> IkeSa:
        old, eng = self.sa, self.engine
        assert self.suite is not None and old.suite is not None and old.suite.prf is not None
        assert old.keys is not None
        _, keys = derive_rekeyed_ike_keys(old.suite.prf, old.keys.sk_d, self.suite, shared, ni, nr,
                                          spi_i, spi_r)
        new = IkeSa(eng.new_uid(), old.conn, initiator, spi_i, spi_r, old.local, old.remote, eng.now)
        new.suite = self.suite
        new.keys = keys
        new.protector = SkProtector(self.suite, keys, initiator, eng.rng)
        new.local_id, new.remote_id = old.local_id, old.remote_id
        new.nat_local, new.nat_remote = old.nat_local, old.nat_remote
        new.frag_supported, new.peer_hashes = old.frag_supported, old.peer_hashes
        new.auth_done = True
        new.rekeyed_from = old.uid
        eng.register_rekeyed(old, new)
        return new

    # ------------------------------------------------------------ initiator

    def build_i(self, out: Outgoing) -> Status:
        sa, eng = self.sa, self.engine
        if not sa.usable or sa.conn is None:
            return Status.DONE
        specs = eng.policy.ike_specs(sa.conn)
        if self.group is None:
            self.group = sa.suite.dh.id if sa.suite is not None and sa.suite.dh is not None else next(
                (g for s in specs for g in s.dh), DhGroup.CURVE25519)
        alg = dh_alg(self.group)
        if alg is None:
            return self.fail(f"DH group {self.group} not supported")
        if self.dh is None or self.dh.group != self.group:
            self.dh = alg.generate(eng.rng)
        if not self.new_spi:
            self.new_spi = eng.new_ike_spi()
            eng.reserve_ike_spi(self.new_spi)
        if not self.my_nonce:
            self.my_nonce = eng.rng.bytes(NONCE_SIZE)
        out.add(specs_to_sa_payload(specs, self.new_spi, first_dh=self.group), Nonce(self.my_nonce),
                KE(self.group, self.dh.public))
        sa.state = IkeState.REKEYING
        return Status.NEED_MORE

    def process_i(self, msg: Message) -> Status:
        sa, eng = self.sa, self.engine
        assert sa.conn is not None
        if sa.state == IkeState.REKEYING:
            sa.state = IkeState.ESTABLISHED
        invalid_ke = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None and self.retries < 2:
            wanted = requested_group(invalid_ke)
            if wanted is not None and wanted != self.group \
                    and wanted in {g for s in eng.policy.ike_specs(sa.conn) for g in s.dh}:
                self.retries += 1
                self.group, self.dh = wanted, None
                return Status.NEED_MORE
        for n in msg.notifies():
            if n.type.is_error:
                self._release()
                if sa.state != IkeState.DESTROYED:
                    eng.retry_ike_rekey_later(sa)
                return self.fail(f"peer refused the IKE rekey: {n.type}", n.type)
        sa_p, ke, nonce = msg.get(SA), msg.get(KE), msg.get(Nonce)
        if sa_p is None or ke is None or nonce is None or not 16 <= len(nonce.data) <= 256:
            self._release()
            return self.fail("IKE rekey response lacks SA, KE or Nonce", NotifyType.INVALID_SYNTAX)
        try:
            self.suite = accept_selected(sa_p, eng.policy.ike_specs(sa.conn))
        except ProposalError as e:
            self._release()
            return self.fail(f"unacceptable IKE proposal: {e}", NotifyType.NO_PROPOSAL_CHOSEN)
        if self.suite.protocol != ProtocolId.IKE or len(self.suite.spi) != 8 or self.suite.dh is None \
                or self.dh is None or ke.group != self.dh.group:
            self._release()
            return self.fail("malformed IKE rekey answer", NotifyType.INVALID_SYNTAX)
        try:
            shared = self.dh.shared(ke.data)
        except InvalidPublicValue as e:
            self._release()
            return self.fail(f"invalid KE: {e}", NotifyType.INVALID_SYNTAX)
        self.peer_nonce = nonce.data
        new = self._make_sa(self.new_spi, self.suite.spi, True, shared, self.my_nonce, self.peer_nonce)
        self.new_sa = new
        self.dh = None
        eng.ike_rekey_done(sa, new, initiator=True, nonces=(self.my_nonce, self.peer_nonce))
        return Status.DONE

    def _release(self) -> None:
        if self.new_spi:
            self.engine.release_ike_spi(self.new_spi)

    def abandoned(self) -> None:
        if self.new_sa is None:
            self._release()

    # ------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> Status:
        sa, eng = self.sa, self.engine
        if not sa.usable or sa.conn is None:
            return self.fail("IKE SA is not established", NotifyType.TEMPORARY_FAILURE)
        sa_p, ke, nonce = msg.get(SA), msg.get(KE), msg.get(Nonce)
        if sa_p is None or ke is None or nonce is None or not 16 <= len(nonce.data) <= 256:
            return self.fail("IKE rekey request lacks SA, KE or Nonce", NotifyType.INVALID_SYNTAX)
        suite = select_proposal(sa_p, eng.policy.ike_specs(sa.conn))
        if suite is None or suite.dh is None or len(suite.spi) != 8:
            return self.fail("no acceptable IKE proposal", NotifyType.NO_PROPOSAL_CHOSEN)
        if ke.group != suite.dh.id:
            self.group = suite.dh.id
            return self.fail("KE group mismatch", NotifyType.INVALID_KE_PAYLOAD)
        self.dh = suite.dh.generate(eng.rng)
        try:
            shared = self.dh.shared(ke.data)
        except InvalidPublicValue as e:
            return self.fail(f"invalid KE: {e}", NotifyType.INVALID_SYNTAX)
        self.suite = suite
        self.peer_nonce = nonce.data
        self.my_nonce = eng.rng.bytes(NONCE_SIZE)
        self.new_spi = eng.new_ike_spi()
        self.new_sa = self._make_sa(suite.spi, self.new_spi, False, shared, self.peer_nonce, self.my_nonce)
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        if self.error is not None:
            out.add(refusal(self.error, self.group))
            return Status.FAILED
        assert self.suite is not None and self.dh is not None and self.new_sa is not None
        out.add(self.suite.to_sa_payload(self.new_spi), Nonce(self.my_nonce), KE(self.dh.group, self.dh.public))
        self.dh = None
        self.engine.ike_rekey_done(self.sa, self.new_sa, initiator=False,
                                   nonces=(self.peer_nonce, self.my_nonce))
        return Status.DONE
