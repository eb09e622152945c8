"""Quick Crash Detection (RFC 6290) as an engine extension.

Maker side: our token goes to the peer under protection (IKE_AUTH, IKE
rekey, INFORMATIONAL); after a reboot, a protected request for SPIs we no
longer know is answered in the clear with ``N(INVALID_IKE_SPI),
N(QCD_TOKEN)+`` (one token per kept secret generation), rate-limited, and
never for an SA that exists here (§9.2).  With the optional persistent SPI
map, ESP for a lost CHILD SA gets ``N(INVALID_SPI), N(QCD_TOKEN)+`` (§8.2).

Taker side: the peer's tokens are held (as digests) with the IKE SA; an
unprotected INVALID_IKE_SPI / INVALID_SPI carrying a matching token condemns
the SA, which is then deleted silently and re-created.  Everything else stays
RFC 7296: a hint without a valid token only starts the engine's rate-limited
liveness check.  Between "valid token" and "teardown" stand the seed issue
202 defences, each an option (``settings.ConnPolicy``): the token must answer
a request we have outstanding, we wait a moment for a genuine protected reply
that would prove the token spoofed, repeated teardowns per peer are dampened,
and the replacement SA is built before the old one goes.

The extension does no file I/O per message: the secret is read when it is
attached and written only on rotation; the SPI map store is injected.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..engine.config import CloseAction, DpdAction, StartAction
from ..engine.events import ExtensionEvent
from ..engine.extension import Extension
from ..engine.ratelimit import KeyedBuckets, TokenBucket
from ..engine.sa import IkeState
from ..wire.enums import ExchangeType, NotifyType
from ..wire.payloads import Notify, Payload, notify
from .keyring import KeyringNote, SecretKeyring
from .settings import (
    ConnPolicy,
    Deployment,
    OverLimit,
    QcdConfigError,
    QcdPolicy,
    Role,
    TokenMethod,
    connection_policy,
)
from .spimap import ChildSpiMap
from .state import Acceptance, Dampening, SaState, peek_state, state_of
from .store import SecretSet, SecretStore, SecretStoreError
from .tasks import QcdAuth, QcdRekey, QcdTokenUpdate
from .tokens import QCD, make_token, matches, received_tokens, token_digest, token_notify

if TYPE_CHECKING:
    from ..engine.config import ConnectionConfig
    from ..engine.engine import Engine
    from ..engine.sa import ChildSa, IkeSa
    from ..engine.tasks.base import Task
    from ..wire.header import Header
    from ..wire.message import Message
    from .status import QcdStatus

log = logging.getLogger("quickike.qcd")

Address = tuple[str, int]
RandomBytes = Callable[[int], bytes]

_AUTH = ExchangeType.IKE_AUTH
_CCSA = ExchangeType.CREATE_CHILD_SA
_INFO = ExchangeType.INFORMATIONAL
_ZERO_SPI = b"\x00" * 8
#: SPI-map rows older than this at start are from lives long gone
_SPI_MAP_TTL = 2 * 86400.0
#: retry interval of a periodic rotation that failed to write
_ROTATE_RETRY = 300.0


class QcdExtension(Extension):
    """RFC 6290 maker and taker; ``secret_store`` is constructed by the driver."""

    name = "qcd"

    def __init__(self, policy: QcdPolicy | None, secret_store: SecretStore,
                 child_spi_map: ChildSpiMap | None = None, *,
                 random_bytes: RandomBytes | None = None) -> None:
        self.policy = policy if policy is not None else QcdPolicy()
        self.store = secret_store
        self.spi_map = child_spi_map
        self._random_bytes = random_bytes
        self.keyring: SecretKeyring | None = None
        self.engine: Engine | None = None
        self.started = 0.0
        p = self.policy
        self.reply_src = KeyedBuckets(p.reply_rate, p.reply_burst)
        self.reply_all = TokenBucket(p.reply_rate_global, p.reply_burst_global)
        self.verify_src = KeyedBuckets(p.verify_rate, p.verify_burst)
        self.verify_all = TokenBucket(p.verify_rate_global, p.verify_burst_global)
        self.dampening = Dampening()
        self._conn_cache: dict[str, tuple[ConnectionConfig, ConnPolicy]] = {}
        #: connection name -> (teardown time, detection time, mode) until its new SA is up
        self._rebuilding: dict[str, tuple[float, float, str]] = {}

    # ------------------------------------------------------------------ set-up

    @property
    def eng(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("QCD extension used before it was attached to an engine")
        return self.engine

    @property
    def enabled(self) -> bool:
        return self.policy.enable and self.keyring is not None

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self.started = engine.now
        if not self.policy.enable:
            log.info("QCD is disabled (quickike.qcd.enable = no): plain RFC 7296 behaviour")
            return
        for conn in engine.policy.connections():
            self.conn_policy(conn)  # a bad qcd_options key stops the start, naming the key
        keyring = SecretKeyring(self.store, secret_length=self.policy.secret_length,
                                random_bytes=self._random_bytes or engine.rng.bytes)
        self._report(keyring.open(engine.wall_clock()), keyring)
        self.keyring = keyring
        if self.policy.deployment is Deployment.HOT_STANDBY \
                and self.policy.token_method is TokenMethod.SPI:
            log.warning("QCD deployment is hot-standby with token_method = spi: a standby that "
                        "shares this secret answers anyone who knows a tunnel's SPIs with its "
                        "token (seed issue 202); token_method = spi-address binds tokens to the "
                        "peer's address (RFC 6290 §9.2)")
        if self.spi_map is not None:
            try:
                self.spi_map.purge(engine.wall_clock() - _SPI_MAP_TTL)
            except (sqlite3.Error, OSError) as e:
                self._spi_map_failed("purge", e)
        self._arm_rotation()

    def status(self) -> QcdStatus:
        """What ``quickike qcd show`` prints (see :func:`quickike.qcd.status.qcd_show`)."""
        from .status import qcd_show

        return qcd_show(self.eng)

    def conn_policy(self, conn: ConnectionConfig) -> ConnPolicy:
        """The connection's QCD policy; bad options stop the start, later ones switch QCD off."""
        cached = self._conn_cache.get(conn.name)
        if cached is not None and cached[0] is conn:
            return cached[1]
        try:
            policy = connection_policy(conn, self.policy)
        except QcdConfigError as e:
            if self.keyring is None:
                raise  # at start: refuse, naming the key
            # a reloaded configuration the loader did not validate: no QCD rather than a guess
            log.error("QCD off for connection %s: %s", conn.name, e)
            self._count("config-errors")
            policy = replace(self.policy.conn, role=Role.NONE)
        self._conn_cache[conn.name] = (conn, policy)
        return policy

    def _role(self, sa: IkeSa) -> Role:
        if not self.enabled or sa.conn is None:
            return Role.NONE
        return self.conn_policy(sa.conn).role

    def makes(self, sa: IkeSa) -> bool:
        return self._role(sa).makes

    def takes(self, sa: IkeSa) -> bool:
        return self._role(sa).takes

    # ------------------------------------------------------------------ events

    def _event(self, kind: str, sa: IkeSa | None = None, /, **attrs: object) -> None:
        eng = self.eng
        eng.emit(ExtensionEvent(eng.now, "qcd", kind, sa.uid if sa is not None else None, attrs))

    def _count(self, what: str, n: int = 1) -> None:
        self.eng.counters["qcd:" + what] += n

    def _report(self, notes: list[KeyringNote], keyring: SecretKeyring) -> None:
        for note in notes:
            gen = keyring.secrets.current if keyring.is_open else None
            attrs: dict[str, object] = {"location": self.store.location}
            if gen is not None:
                attrs.update(generation=gen.number, fingerprint=gen.fingerprint)
            if note.kind == "secret-corrupt":
                log.error("QCD secret %s is unusable (%s): moved to %s and replaced by a new "
                          "secret; tokens handed out before it will no longer verify",
                          self.store.location, note.detail, note.moved_to)
                self._count("secret-corrupt")
                attrs.update(reason=note.detail, moved_to=note.moved_to)
                attrs.pop("generation", None)
                attrs.pop("fingerprint", None)
            elif note.kind == "secret-created":
                log.warning("QCD secret created in %s (first start)", self.store.location)
                self._count("secret-created")
            elif note.kind == "secret-rotated":
                log.info("QCD secret rotated: generation %s, fingerprint %s",
                         attrs.get("generation"), attrs.get("fingerprint"))
                self._count("secret-rotations")
            else:
                log.info("QCD secret loaded from %s: generation %s, fingerprint %s",
                         self.store.location, attrs.get("generation"), attrs.get("fingerprint"))
            self._event(note.kind, **attrs)

    # ------------------------------------------------------------------ rotation

    def _arm_rotation(self) -> None:
        period = self.policy.rotate_period
        if period <= 0 or self.keyring is None:
            return
        eng = self.eng
        due_wall = self.keyring.secrets.current.created + period
        when = max(eng.now, due_wall - (eng.wall_clock() - eng.now))
        eng.schedule(when, self._rotation_due)

    def _rotation_due(self) -> None:
        try:
            self.rotate()
        except SecretStoreError:
            self.eng.schedule(self.eng.now + min(self.policy.rotate_period, _ROTATE_RETRY),
                              self._rotation_due)
            return
        self._arm_rotation()

    def rotate(self) -> SecretSet:
        """A new secret generation (``quickike qcd rotate``); raises SecretStoreError."""
        keyring = self.keyring
        if keyring is None:
            raise SecretStoreError("QCD is disabled: there is no secret to rotate")
        try:
            notes = keyring.rotate(self.eng.wall_clock())
        except SecretStoreError as e:
            log.error("QCD secret rotation failed: %s (the previous secret stays in use)", e)
            self._count("secret-rotate-failed")
            self._event("secret-rotate-failed", reason=str(e))
            raise
        self._report(notes, keyring)
        kept = set(keyring.secrets.numbers())
        for sa in self.eng.ike_sas():
            st = peek_state(sa)
            if st is None or st.given_generation is None or st.given_generation in kept:
                continue
            # §4.4: the peer's token can no longer be regenerated after a reboot
            self._queue_update(sa, st, "rotation")
        return keyring.secrets

    def _queue_update(self, sa: IkeSa, st: SaState, why: str) -> None:
        if st.update_queued or not sa.usable or not self.makes(sa):
            return
        st.update_queued = True
        self.eng.queue_task(sa, QcdTokenUpdate(self.eng, sa, self, why))

    # ------------------------------------------------------------------ tokens (TokenAgent)

    def _tokens_for(self, spi_i: bytes, spi_r: bytes, taker: str,
                    generations: int | None = None) -> list[bytes]:
        assert self.keyring is not None
        p = self.policy
        gens = self.keyring.secrets.generations[:generations]
        return [make_token(g.secret, spi_i, spi_r, length=p.token_length, method=p.token_method,
                           taker_address=taker) for g in gens]

    def give(self, sa: IkeSa, exchange: str, why: str) -> Notify | None:
        if not self.makes(sa) or self.keyring is None:
            return None
        gen = self.keyring.secrets.current
        (token,) = self._tokens_for(sa.spi_i, sa.spi_r, sa.remote[0], 1)
        st = state_of(sa)
        st.given_generation = gen.number
        st.given_address = sa.remote[0]
        st.update_queued = False
        self._count("tokens-given")
        self._event("token-given", sa, exchange=exchange, why=why, generation=gen.number)
        return token_notify(token)

    def take(self, sa: IkeSa, msg: Message, exchange: str) -> None:
        if not self.takes(sa):
            return
        tokens, ignored = received_tokens(msg.notifies())
        if ignored:
            self._count("tokens-ignored", ignored)
        if not tokens:
            return
        st = state_of(sa)
        replaced = bool(st.peer_digests)
        for token in reversed(tokens):
            st.hold(token_digest(token))
        self._count("tokens-stored")
        self._event("token-stored", sa, exchange=exchange, count=len(tokens), replaced=replaced)

    # ------------------------------------------------------------------ engine hooks: tasks

    def initiator_tasks(self, sa: IkeSa, exchange: ExchangeType, tasks: list[Task]) -> list[Task]:
        if self._role(sa) is Role.NONE:
            return []
        if exchange == _AUTH:
            auth = next((t for t in tasks if t.kind == "ike-auth"), None)
            return [QcdAuth(self.eng, sa, self, auth)] if auth is not None else []
        if exchange == _CCSA:
            return [QcdRekey(self.eng, sa, self, t) for t in tasks if t.kind == "ike-rekey"]
        return []

    def responder_tasks(self, sa: IkeSa, exchange: ExchangeType, request: Message,
                        tasks: list[Task]) -> list[Task]:
        if not self.enabled:
            return []
        if exchange == _AUTH:
            # the connection may still change with the peer's identity: decide in build_r
            auth = next((t for t in tasks if t.kind == "ike-auth"), None)
            return [QcdAuth(self.eng, sa, self, None)] if auth is not None else []
        if exchange == _CCSA and self._role(sa) is not Role.NONE:
            return [QcdRekey(self.eng, sa, self, t) for t in tasks if t.kind == "ike-rekey"]
        return []

    # ------------------------------------------------------------------ engine hooks: SA life

    def protected_message(self, sa: IkeSa, msg: Message) -> None:
        if self._role(sa) is Role.NONE:
            return
        now = self.eng.now
        st = peek_state(sa)
        p = sa.pending
        if msg.is_response and p is not None and p.message_id == msg.message_id and p.attempt == 0:
            state_of(sa).sample_rtt(now - p.sent_at)  # Karn: first transmissions only
        elif not msg.is_response and msg.exchange == _AUTH and (st is None or st.rtt is None):
            state_of(sa).sample_rtt(now - sa.created_at)  # responder: INIT answer -> AUTH request
        st = peek_state(sa)
        if st is not None:
            st.first_hint = None
            if st.acceptance is not None:
                self._spoofed(sa, st, "protected IKE message")
            elif st.replacing:
                # too late to keep this SA, and harmless (its replacement reaches the same live
                # peer), but the token that condemned it was false: the operator must know
                self._count("spoof-suspected")
                log.warning("QCD: the peer of condemned IKE SA %s#%d is alive: the token was "
                            "spoofed or leaked (the SA is being replaced anyway)", sa.name, sa.uid)
                self._event("spoof-suspected", sa, evidence="protected IKE message during "
                            "replacement", via="", source=sa.remote, waited=0.0)
        if msg.exchange == _INFO and any(n.type == QCD for n in msg.notifies()):
            self.take(sa, msg, "INFORMATIONAL")  # §4.4: gratuitous tokens under protection
        if (self.policy.token_method is TokenMethod.SPI_ADDRESS and st is not None
                and st.given_address is not None and st.given_address != sa.remote[0]):
            self._queue_update(sa, st, "address-change")  # §5.2 token is bound to the address

    def established(self, sa: IkeSa) -> None:
        if not self.enabled or sa.conn is None:
            return
        entry = self._rebuilding.pop(sa.conn.name, None)
        if entry is None:
            return
        teardown_at, detection, mode = entry
        took = self.eng.now - teardown_at
        self._count("reestablished")
        self._event("reestablished", sa, reestablish_time=took, detection_time=detection,
                    mode=mode)

    def ike_rekeyed(self, old: IkeSa, new: IkeSa, initiator: bool) -> None:
        if not self.enabled:
            return
        st = peek_state(old)
        if st is not None and st.rtt is not None:
            state_of(new).rtt = st.rtt
        if self.spi_map is not None and self.makes(new):
            for child in new.children:
                self._map_put(child, new)

    def destroyed(self, sa: IkeSa, reason: str) -> None:
        st = peek_state(sa)
        if st is not None and st.acceptance is not None:
            if st.acceptance.timer is not None:
                st.acceptance.timer.cancel()
            st.acceptance = None

    def child_installed(self, child: ChildSa) -> None:
        if self.spi_map is not None and self.enabled and self.makes(child.ike):
            self._map_put(child, child.ike)

    def child_removed(self, child: ChildSa, reason: str) -> None:
        if self.spi_map is None or not self.enabled:
            return
        try:
            self.spi_map.remove(child.spi_in)
        except (sqlite3.Error, OSError) as e:
            self._spi_map_failed("remove", e)

    def _map_put(self, child: ChildSa, ike: IkeSa) -> None:
        assert self.spi_map is not None
        try:
            self.spi_map.put(child.spi_in, ike.spi_i, ike.spi_r, self.eng.wall_clock())
        except (sqlite3.Error, OSError) as e:
            self._spi_map_failed("write", e)

    def _spi_map_failed(self, what: str, e: Exception) -> None:
        log.error("QCD CHILD SPI map %s failed: %s (ESP after a reboot falls back to a plain "
                  "INVALID_SPI)", what, e)
        self._count("spi-map-errors")

    # ------------------------------------------------------------------ maker after a reboot

    def _reply_allowed(self, source: str) -> bool:
        now = self.eng.now
        return self.reply_src.allow(source, now) and self.reply_all.allow(now)

    def _is_known(self, spi_i: bytes, spi_r: bytes) -> bool:
        """§9.2: any SA (established, half-open, being rekeyed) that owns either SPI."""
        eng = self.eng
        return (spi_i in eng.sas or spi_r in eng.sas or spi_i in eng.reserved_spis
                or spi_r in eng.reserved_spis)

    def _may_reply(self, spi_i: bytes, spi_r: bytes, source: str) -> bool | None:
        """True: send tokens; False: fall back to the engine's plain answer; None: stay silent."""
        if not self.enabled or not self.policy.conn.role.makes:
            return False
        if spi_r == _ZERO_SPI:
            return False  # no responder SPI: not a request on an IKE SA (RFC 7296 §2.21.4)
        if self._is_known(spi_i, spi_r):
            self._count("tokens-withheld-known-sa")
            return False
        window = self.policy.reply_window
        if window > 0 and self.eng.now - self.started > window:
            self._count("tokens-withheld-window")
            return False
        if not self._reply_allowed(source):
            self._count("tokens-rate-limited")
            return None if self.policy.over_limit is OverLimit.SILENT else False
        return True

    def unknown_sa_request(self, header: Header, data: bytes, local: Address,
                           remote: Address) -> bool:
        if not self.enabled:
            return False
        verdict = self._may_reply(header.spi_i, header.spi_r, remote[0])
        if verdict is None:
            return True
        if not verdict:
            return False
        tokens = self._tokens_for(header.spi_i, header.spi_r, remote[0])
        payloads: list[Payload] = [notify(NotifyType.INVALID_IKE_SPI),
                                   *(token_notify(t) for t in tokens)]
        self.eng.send_unprotected_response(header, payloads, local, remote)
        self._count("tokens-sent")
        self._event("token-sent", via="invalid-ike-spi", remote=remote, exchange=str(header.exchange),
                    message_id=header.message_id, spi_i=header.spi_i.hex(),
                    spi_r=header.spi_r.hex(), tokens=len(tokens))
        return True

    def unknown_esp_spi(self, spi: bytes, local: Address, remote: Address) -> bool:
        if not self.enabled or self.spi_map is None:
            return False
        try:
            entry = self.spi_map.get(spi)
        except (sqlite3.Error, OSError) as e:
            self._spi_map_failed("read", e)
            return False
        if entry is None:
            return False
        verdict = self._may_reply(entry.spi_i, entry.spi_r, remote[0])
        if verdict is None:
            return True
        if not verdict:
            return False
        tokens = self._tokens_for(entry.spi_i, entry.spi_r, remote[0])
        self.eng.send_invalid_spi(spi, local, remote, extra=[token_notify(t) for t in tokens],
                                  spis=(entry.spi_i, entry.spi_r))
        self._count("tokens-sent")
        self._event("token-sent", via="invalid-spi", remote=remote, spi=spi.hex(),
                    spi_i=entry.spi_i.hex(), spi_r=entry.spi_r.hex(), tokens=len(tokens))
        return True

    # ------------------------------------------------------------------ taker

    def unprotected_message(self, sa: IkeSa | None, msg: Message, local: Address,
                            remote: Address) -> bool:
        if not self.enabled:
            return False
        n_ike = msg.notify(NotifyType.INVALID_IKE_SPI)
        n_spi = msg.notify(NotifyType.INVALID_SPI)
        if n_ike is None and n_spi is None:
            return False
        via = "invalid-ike-spi" if n_ike is not None else "invalid-spi"
        now = self.eng.now
        live = sa is not None and sa.state != IkeState.DESTROYED
        if live and sa is not None and self.takes(sa):
            st = state_of(sa)
            if st.first_hint is None:
                st.first_hint = now
        if not any(n.type == QCD for n in msg.notifies()):
            return False  # a bare hint: the engine's liveness check (RFC 7296 §2.21)
        self._count("tokens-received")
        if not (self.verify_src.allow(remote[0], now) and self.verify_all.allow(now)):
            self._count("verify-rate-limited")
            return False
        reason = self._verify(sa if live else None, msg, via, n_spi)
        if reason is not None:
            self._reject(sa if live else None, via, remote, reason)
            return False
        assert sa is not None
        st = state_of(sa)
        if st.acceptance is not None or st.replacing:
            self._count("tokens-duplicate")
            return True  # already condemned: nothing more to do, no other action
        cp = self.conn_policy(sa.conn) if sa.conn is not None else self.policy.conn
        if cp.require_pending and not self._answers_pending(sa, msg, via):
            # valid, but not an answer to anything we asked: only a liveness check may follow
            self._reject(sa, via, remote, "unsolicited", valid=True)
            return False
        self._accept(sa, st, cp, via, remote)
        return True

    def _verify(self, sa: IkeSa | None, msg: Message, via: str, n_spi: Notify | None) -> str | None:
        """None if a token matches one held for ``sa``, else why not."""
        if sa is None:
            return "no-sa"
        if not self.takes(sa):
            return "qcd-off"
        spis_match = msg.spi_i == sa.spi_i and msg.spi_r == sa.spi_r
        if via == "invalid-spi" and not spis_match:
            assert n_spi is not None
            child = self.eng.children_out.get(n_spi.data[:4]) or self.eng.children_out.get(n_spi.spi)
            if child is None or child.ike is not sa:
                return "spi-mismatch"
        elif not spis_match:
            return "spi-mismatch"
        st = peek_state(sa)
        if st is None or not st.peer_digests:
            return "no-token-held"
        tokens, ignored = received_tokens(msg.notifies())
        if ignored:
            self._count("tokens-ignored", ignored)
        if not tokens:
            return "bad-length"
        if not matches(tokens, st.peer_digests):
            return "mismatch"
        return None

    def _answers_pending(self, sa: IkeSa, msg: Message, via: str) -> bool:
        """Seed 202 defence 1: the reply copies the SPIs, exchange and message ID we sent."""
        p = sa.pending
        return (via == "invalid-ike-spi" and msg.is_response and p is not None
                and int(p.exchange) == int(msg.exchange) and p.message_id == msg.message_id)

    def _reject(self, sa: IkeSa | None, via: str, source: Address, reason: str, *,
                valid: bool = False) -> None:
        self._count("tokens-rejected")
        self._count("tokens-rejected:" + reason)
        log.info("QCD token via %s from %s not taken: %s", via, source[0], reason)
        self._event("token-rejected", sa, via=via, source=source, reason=reason, valid=valid)

    def _peer_key(self, sa: IkeSa) -> tuple[str, str]:
        return (sa.name, sa.remote_id or sa.remote[0])

    def _accept(self, sa: IkeSa, st: SaState, cp: ConnPolicy, via: str, source: Address) -> None:
        eng = self.eng
        now = eng.now
        p = sa.pending
        starts = [now]
        if st.first_hint is not None:
            starts.append(st.first_hint)
        if p is not None:
            starts.append(p.sent_at)
        acc = Acceptance(now, via, source, min(starts))
        # seed 202 defence 2: leave room for the genuine answer to the request that is out
        deadline = now + cp.accept_delay
        if st.rtt is not None:
            sent = p.last_sent if p is not None else now  # no request out: the probe leaves now
            deadline = max(deadline, sent + cp.accept_rtt_factor * st.rtt)
        deadline = min(deadline, now + cp.accept_delay_max)
        # defence 4: dampening per peer may push it further
        not_before = self.dampening.not_before(self._peer_key(sa), cp.dampening,
                                               cp.dampening_max, now)
        if not_before > deadline:
            deadline = not_before
            acc.dampened = True
        acc.deadline = deadline
        st.acceptance = acc
        self._count("tokens-accepted")
        log.info("QCD token via %s from %s verified for IKE SA %s#%d", via, source[0], sa.name,
                 sa.uid)
        self._event("token-accepted", sa, via=via, source=source, wait=deadline - now)
        if acc.dampened:
            self._count("dampened")
            self._event("dampened", sa, until=deadline)
        if deadline <= now:
            self._teardown(sa, st, acc)
            return
        if sa.pending is None:
            eng.start_liveness_check(sa, "qcd-verify")  # a live peer will prove the token false
        acc.timer = eng.schedule(deadline, self._deadline, sa)

    def _deadline(self, sa: IkeSa) -> None:
        st = peek_state(sa)
        acc = st.acceptance if st is not None else None
        if sa.state == IkeState.DESTROYED or st is None or acc is None:
            return
        if self.eng.last_inbound(sa) > acc.arrived:
            self._spoofed(sa, st, "inbound ESP")
            return
        self._teardown(sa, st, acc)

    def _spoofed(self, sa: IkeSa, st: SaState, evidence: str) -> None:
        acc = st.acceptance
        if acc is None:
            return
        st.acceptance = None
        if acc.timer is not None:
            acc.timer.cancel()
        self._count("spoof-suspected")
        log.warning("QCD token via %s from %s for IKE SA %s#%d was valid but the peer is alive "
                    "(%s): token spoofed or leaked, SA kept", acc.via, acc.source[0], sa.name,
                    sa.uid, evidence)
        self._event("spoof-suspected", sa, via=acc.via, source=acc.source, evidence=evidence,
                    waited=self.eng.now - acc.arrived)

    def _restarts_at_once(self, sa: IkeSa) -> bool:
        """Would the engine re-create this SA by itself (see Engine.reestablish)?"""
        for child in sa.children:
            c = child.config
            if StartAction.START in c.start_action or c.close_action == CloseAction.START \
                    or c.dpd_action == DpdAction.RESTART:
                return True
        return sa.initiator and not sa.children

    def _teardown(self, sa: IkeSa, st: SaState, acc: Acceptance) -> None:
        eng = self.eng
        now = eng.now
        st.acceptance = None
        cp = self.conn_policy(sa.conn) if sa.conn is not None else self.policy.conn
        repeat = self.dampening.record(self._peer_key(sa), cp.dampening, cp.dampening_max, now)
        detection = now - acc.detect_start
        at_once = self._restarts_at_once(sa)
        if not sa.usable:
            mode = "delete"
        elif cp.rekey_before_delete and at_once:
            mode = "make-before-break"
        else:
            mode = "break-before-make" if at_once else "wait-for-traffic"
        self._count("teardowns")
        log.warning("QCD: peer %s of IKE SA %s#%d rebooted (detected in %.3fs); deleting it "
                    "silently (%s)", sa.remote[0], sa.name, sa.uid, detection, mode)
        self._event("teardown", sa, via=acc.via, source=acc.source, detection_time=detection,
                    mode=mode, repeat=repeat, children=len(sa.children))
        if sa.conn is not None and mode != "delete":
            self._rebuilding[sa.conn.name] = (now, detection, mode)
        if mode == "delete":
            eng.destroy_ike(sa, "qcd", restart=False)
            return
        try:
            if mode == "make-before-break":
                st.replacing = True
                eng.reestablish(sa, "qcd", make_before_break=True, silent=True)
                if sa.state != IkeState.DESTROYED:
                    eng.schedule(now + cp.replace_timeout, self._replace_timeout, sa)
            else:
                eng.reestablish(sa, "qcd")
        except ValueError as e:  # e.g. no concrete remote address to initiate to
            log.warning("QCD: cannot re-create %s: %s", sa.name, e)
            self._event("reestablish-failed", sa, reason=str(e))
            if sa.state != IkeState.DESTROYED:
                eng.destroy_ike(sa, "qcd", restart=False)

    def _replace_timeout(self, sa: IkeSa) -> None:
        if sa.state != IkeState.DESTROYED:
            self._count("replace-timeouts")
            self._event("replace-timeout", sa)
            self.eng.destroy_ike(sa, "qcd", restart=False)


__all__ = ["QcdExtension"]
