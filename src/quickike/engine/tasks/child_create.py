"""CHILD SA creation, in IKE_AUTH or CREATE_CHILD_SA, and its rekey variant.

The initiator proposes ESP algorithms with its inbound SPI and selectors
from its configuration; the responder picks a proposal, narrows the
selectors (RFC 7296 §2.9) and both derive KEYMAT (§2.17), with a fresh DH
when the proposal asks for PFS. A failure here is the CHILD's alone
(§2.21.3): the IKE SA stays up.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import TYPE_CHECKING

from ...crypto.algorithms import DhKeyPair, dh_alg
from ...crypto.errors import InvalidPublicValue, ProposalError
from ...crypto.keys import derive_child_keys
from ...crypto.proposals import (
    ProposalSpec,
    Suite,
    accept_selected,
    select_proposal,
    specs_to_sa_payload,
)
from ...wire.enums import DhGroup, ExchangeType, NotifyType, ProtocolId
from ...wire.message import Message
from ...wire.payloads import KE, SA, Nonce, TrafficSelector, TSi, TSr, notify
from .. import events as ev
from ..config import ChildConfig, IpsecMode
from ..dataplane import ChildSaSpec, Mode, Selector
from ..policy import from_wire, to_selector, to_wire
from ..sa import ChildSa, IkeState
from ..selectors import covered, match_score, narrow
from .base import Outgoing, Status, Task, refusal, requested_group

if TYPE_CHECKING:
    from ..engine import Engine
    from ..sa import IkeSa

NONCE_SIZE = 32
#: a module constant: ``ExchangeType.IKE_AUTH`` goes through EnumType's attribute hook, and
#: _in_auth() is asked several times per CHILD SA
_AUTH = ExchangeType.IKE_AUTH

#: address text -> address object; parsing showed up in profiles of 10,000 CHILD SAs
_ip = functools.lru_cache(maxsize=65536)(ipaddress.ip_address)


class ChildCreate(Task):
    __slots__ = (
        "child",
        "config",
        "dh",
        "group",
        "my_nonce",
        "packet_ts",
        "peer_nonce",
        "retries",
        "shared",
        "spi_in",
        "spi_out",
        "suite",
        "ts_local",
        "ts_remote",
    )
    kind = "child-create"

    def __init__(self, engine: Engine, sa: IkeSa, exchange: ExchangeType,
                 config: ChildConfig | None) -> None:
        super().__init__(engine, sa, exchange)
        self.config = config
        self.child: ChildSa | None = None
        self.spi_in = b""
        self.spi_out = b""
        self.suite: Suite | None = None
        self.dh: DhKeyPair | None = None
        self.group: DhGroup | None = None
        self.shared: bytes | None = None
        self.my_nonce = b""
        self.peer_nonce = b""
        self.ts_local: list[Selector] = []
        self.ts_remote: list[Selector] = []
        #: (source, destination) of the packet that triggered an acquire, proposed first
        self.packet_ts: tuple[Selector, Selector] | None = None
        self.retries = 0
        self.keep_sa = True

    # ------------------------------------------------------------ shared

    def _in_auth(self) -> bool:
        return self.exchange == _AUTH

    def _host(self, addr: tuple[str, int]) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return _ip(addr[0])

    def _proposal_dh(self, specs: list[ProposalSpec]) -> DhGroup | None:
        for spec in specs:
            for g in spec.dh:
                if g != DhGroup.NONE:
                    return DhGroup(g)
        return None

    def _install(self, initiator_of_exchange: bool) -> None:
        sa, eng = self.sa, self.engine
        assert self.suite is not None and sa.keys is not None and sa.suite is not None
        assert sa.suite.prf is not None and self.config is not None
        if self._in_auth():
            ni, nr = sa.ni, sa.nr
        elif initiator_of_exchange:
            ni, nr = self.my_nonce, self.peer_nonce
        else:
            ni, nr = self.peer_nonce, self.my_nonce
        keys = derive_child_keys(sa.suite.prf, sa.keys.sk_d, self.suite, ni, nr, self.shared)
        if initiator_of_exchange:
            e_out, a_out, e_in, a_in = keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r
        else:
            e_out, a_out, e_in, a_in = keys.encr_r, keys.integ_r, keys.encr_i, keys.integ_i
        child = ChildSa(eng.new_child_uid(), sa, self.config)
        child.spi_in, child.spi_out = self.spi_in, self.spi_out
        child.suite = self.suite
        child.local_ts = tuple(self.ts_local)
        child.remote_ts = tuple(self.ts_remote)
        self._before_install(child)
        cfg = self.config
        spec = ChildSaSpec(
            ike_uid=sa.uid,
            child_uid=child.uid,
            name=cfg.name,
            spi_in=child.spi_in,
            spi_out=child.spi_out,
            encr_id=int(self.suite.encr.id),
            encr_key_bits=self.suite.encr.key_bits,
            integ_id=int(self.suite.integ.id) if self.suite.integ is not None else 0,
            esn=self.suite.esn,
            encr_key_in=e_in,
            integ_key_in=a_in,
            encr_key_out=e_out,
            integ_key_out=a_out,
            local_ts=child.local_ts,
            remote_ts=child.remote_ts,
            local_addr=(self._host(sa.local), sa.local[1]),
            remote_addr=(self._host(sa.remote), sa.remote[1]),
            encap=bool(sa.nat_local or sa.nat_remote or eng.encap_forced(sa.conn)),
            mode=Mode(cfg.mode.value),
            soft_bytes=cfg.rekey_bytes,
            hard_bytes=cfg.life_bytes,
            soft_packets=cfg.rekey_packets,
            hard_packets=cfg.life_packets,
        )
        eng.install_child(child, spec)
        self.child = child
        self._after_install(child)

    def _before_install(self, child: ChildSa) -> None:
        """Hook for the rekey variant."""

    def _after_install(self, child: ChildSa) -> None:
        """Hook for the rekey variant."""

    def _failed(self, reason: str, error: NotifyType | None) -> Status:
        eng = self.engine
        name = self.config.name if self.config is not None else "?"
        eng.emit(ev.ChildSetupFailed(eng.now, self.sa.uid, name, reason, int(error) if error else None))
        eng.counters["child-failed"] += 1
        return self.fail(reason, error)

    # ------------------------------------------------------------ initiator

    def initiator_selectors(self) -> tuple[list[Selector], list[Selector]]:
        sa = self.sa
        assert self.config is not None
        local = [s for t in self.config.local_ts if (s := to_selector(t, self._host(sa.local))) is not None]
        remote = [s for t in self.config.remote_ts if (s := to_selector(t, self._host(sa.remote))) is not None]
        if self.packet_ts is not None:
            src, dst = self.packet_ts
            if covered([src], local) and covered([dst], remote):  # RFC 7296 §2.9
                local.insert(0, src)
                remote.insert(0, dst)
        return local, remote

    def add_rekey_notify(self, out: Outgoing) -> None:
        """Hook for the rekey variant."""

    def build_i(self, out: Outgoing) -> Status:
        sa, eng = self.sa, self.engine
        if self.config is None or sa.state in (IkeState.DESTROYED, IkeState.DELETING):
            return Status.DONE
        if not self.abort_check():
            return Status.DONE
        if self._in_auth() and sa.auth_done:
            # the IKE SA is already up (e.g. a queued CHILD after IKE_AUTH): use CREATE_CHILD_SA
            self.exchange = ExchangeType.CREATE_CHILD_SA
        specs = eng.policy.esp_specs(self.config)
        if not self.spi_in:
            self.spi_in = eng.new_child_spi()
            eng.reserve_child_spi(self.spi_in)
        if self._in_auth():
            out.add(specs_to_sa_payload(specs, self.spi_in, include_dh=False))
        else:
            if not self.my_nonce:
                self.my_nonce = eng.rng.bytes(NONCE_SIZE)
            if self.group is None:
                self.group = self._proposal_dh(specs)
            out.add(specs_to_sa_payload(specs, self.spi_in, first_dh=self.group), Nonce(self.my_nonce))
            if self.group is not None:
                alg = dh_alg(self.group)
                if alg is None:
                    return self._failed(f"DH group {self.group} not supported", None)
                if self.dh is None or self.dh.group != self.group:
                    self.dh = alg.generate(eng.rng)
                out.add(KE(self.group, self.dh.public))
        self.add_rekey_notify(out)
        local, remote = self.proposed_selectors()
        if not local or not remote:
            return self._failed("no traffic selectors to propose", None)
        self.ts_local, self.ts_remote = local, remote
        out.add(TSi([to_wire(s) for s in local]), TSr([to_wire(s) for s in remote]))
        if self.config.mode == IpsecMode.TRANSPORT:
            out.add(notify(NotifyType.USE_TRANSPORT_MODE))
        return Status.NEED_MORE

    def proposed_selectors(self) -> tuple[list[Selector], list[Selector]]:
        return self.initiator_selectors()

    def abort_check(self) -> bool:
        """False if the task became pointless while queued."""
        return True

    def process_i(self, msg: Message) -> Status:
        sa, eng = self.sa, self.engine
        if not sa.auth_done:
            return Status.FAILED if self._in_auth() else Status.DONE
        assert self.config is not None
        invalid_ke = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None and not self._in_auth() and self.retries < 2:
            wanted = requested_group(invalid_ke)
            groups = {g for s in eng.policy.esp_specs(self.config) for g in s.dh}
            if wanted is not None and wanted in groups and wanted != self.group:
                self.retries += 1
                self.group = wanted
                self.dh = None
                return Status.NEED_MORE
        for n in msg.notifies():
            if n.type.is_error:
                self._release()
                return self._failed(f"peer refused the CHILD SA: {n.type}", n.type)
        sa_p, tsi, tsr = msg.get(SA), msg.get(TSi), msg.get(TSr)
        if sa_p is None or tsi is None or tsr is None:
            if self._in_auth() and sa_p is None:
                self._release()
                return self._failed("responder created no CHILD SA", None)
            self._release()
            return self._failed("response lacks SA or TS", NotifyType.INVALID_SYNTAX)
        try:
            self.suite = accept_selected(sa_p, eng.policy.esp_specs(self.config), skip_dh=self._in_auth())
        except ProposalError as e:
            self._release()
            return self._failed(f"unacceptable ESP proposal: {e}", NotifyType.NO_PROPOSAL_CHOSEN)
        if self.suite.protocol != ProtocolId.ESP or len(self.suite.spi) != 4:
            self._release()
            return self._failed("responder's ESP proposal has a bad SPI", NotifyType.INVALID_SYNTAX)
        self.spi_out = self.suite.spi
        got_local = [from_wire(t) for t in tsi.selectors if isinstance(t, TrafficSelector)]
        got_remote = [from_wire(t) for t in tsr.selectors if isinstance(t, TrafficSelector)]
        if not covered(got_local, self.ts_local) or not covered(got_remote, self.ts_remote):
            self._release()
            return self._failed("responder's traffic selectors exceed our proposal", NotifyType.TS_UNACCEPTABLE)
        self.ts_local, self.ts_remote = got_local, got_remote
        if not self._in_auth():
            nonce = msg.get(Nonce)
            if nonce is None or not 16 <= len(nonce.data) <= 256:
                self._release()
                return self._failed("response lacks a valid nonce", NotifyType.INVALID_SYNTAX)
            self.peer_nonce = nonce.data
            if self.suite.dh is not None:
                ke = msg.get(KE)
                if ke is None or self.dh is None or ke.group != self.suite.dh.id or self.dh.group != ke.group:
                    self._release()
                    return self._failed("responder's KE does not match", NotifyType.INVALID_KE_PAYLOAD)
                try:
                    self.shared = self.dh.shared(ke.data)
                except InvalidPublicValue as e:
                    self._release()
                    return self._failed(f"invalid KE: {e}", NotifyType.INVALID_SYNTAX)
        self._install(initiator_of_exchange=True)
        return Status.DONE

    def _release(self) -> None:
        if self.spi_in:
            self.engine.release_child_spi(self.spi_in)

    def abandoned(self) -> None:
        if self.child is None:
            self._release()

    # ------------------------------------------------------------ responder

    def select_config(self, tsi: list[Selector], tsr: list[Selector]) -> tuple[ChildConfig, list[Selector], list[Selector]] | None:
        sa = self.sa
        conn = sa.conn
        if conn is None:
            return None
        me, peer = self._host(sa.local), self._host(sa.remote)
        # the best fit, not the first: a subnet CHILD must not swallow a request for a host
        # CHILD configured after it (charon rates the same way, so both pick alike)
        best: tuple[int, ChildConfig, list[Selector], list[Selector]] | None = None
        for cfg in conn.children:
            allowed_remote = [s for t in cfg.remote_ts if (s := to_selector(t, peer)) is not None]
            allowed_local = [s for t in cfg.local_ts if (s := to_selector(t, me)) is not None]
            n_remote = narrow(tsi, allowed_remote)
            n_local = narrow(tsr, allowed_local)
            if n_remote and n_local:
                score = match_score(tsi, allowed_remote) + match_score(tsr, allowed_local)
                if best is None or score > best[0]:
                    best = (score, cfg, n_local, n_remote)
        return None if best is None else best[1:]

    def process_r(self, msg: Message) -> Status:
        eng = self.engine
        sa_p, tsi, tsr = msg.get(SA), msg.get(TSi), msg.get(TSr)
        if sa_p is None:
            if self._in_auth():
                return Status.DONE  # childless IKE_AUTH (RFC 6023)
            return self._failed("CREATE_CHILD_SA without SA", NotifyType.INVALID_SYNTAX)
        if tsi is None or tsr is None:
            return self._failed("CHILD SA request without traffic selectors", NotifyType.INVALID_SYNTAX)
        if self.config is None:
            picked = self.select_config(
                [from_wire(t) for t in tsi.selectors if isinstance(t, TrafficSelector)],
                [from_wire(t) for t in tsr.selectors if isinstance(t, TrafficSelector)],
            )
            if picked is None:
                return self._failed("traffic selectors unacceptable", NotifyType.TS_UNACCEPTABLE)
            self.config, self.ts_local, self.ts_remote = picked
        else:
            self.ts_local = [from_wire(t) for t in tsr.selectors if isinstance(t, TrafficSelector)]
            self.ts_remote = [from_wire(t) for t in tsi.selectors if isinstance(t, TrafficSelector)]
        suite = select_proposal(sa_p, eng.policy.esp_specs(self.config), skip_dh=self._in_auth())
        if suite is None or suite.protocol != ProtocolId.ESP or len(suite.spi) != 4:
            return self._failed("no acceptable ESP proposal", NotifyType.NO_PROPOSAL_CHOSEN)
        if (msg.notify(NotifyType.USE_TRANSPORT_MODE) is not None) != (self.config.mode == IpsecMode.TRANSPORT):
            return self._failed("IPsec mode mismatch", NotifyType.NO_PROPOSAL_CHOSEN)
        if not self._in_auth():
            nonce = msg.get(Nonce)
            if nonce is None or not 16 <= len(nonce.data) <= 256:
                return self._failed("request lacks a valid nonce", NotifyType.INVALID_SYNTAX)
            self.peer_nonce = nonce.data
            self.my_nonce = eng.rng.bytes(NONCE_SIZE)
            if suite.dh is not None:
                ke = msg.get(KE)
                if ke is None or ke.group != suite.dh.id:
                    self.group = suite.dh.id
                    return self._failed("initiator's KE group is not the chosen one",
                                        NotifyType.INVALID_KE_PAYLOAD)
                self.dh = suite.dh.generate(eng.rng)
                try:
                    self.shared = self.dh.shared(ke.data)
                except InvalidPublicValue as e:
                    return self._failed(f"invalid KE: {e}", NotifyType.INVALID_SYNTAX)
        self.suite = suite
        self.spi_out = suite.spi
        self.spi_in = eng.new_child_spi()
        return self.check_rekey_r(msg)

    def check_rekey_r(self, msg: Message) -> Status:
        """Hook for the rekey variant."""
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        sa = self.sa
        if self._in_auth() and not sa.auth_done:
            return Status.DONE  # IKE_AUTH failed; IkeAuth answers
        if self.error is not None:
            out.add(refusal(self.error, self.group))
            return Status.FAILED
        if self.suite is None:
            return Status.DONE  # childless
        out.add(self.suite.to_sa_payload(self.spi_in))
        if not self._in_auth():
            out.add(Nonce(self.my_nonce))
            if self.dh is not None:
                out.add(KE(self.dh.group, self.dh.public))
        out.add(TSi([to_wire(s) for s in self.ts_remote]), TSr([to_wire(s) for s in self.ts_local]))
        assert self.config is not None
        if self.config.mode == IpsecMode.TRANSPORT:
            out.add(notify(NotifyType.USE_TRANSPORT_MODE))
        self._install(initiator_of_exchange=False)
        return Status.DONE
