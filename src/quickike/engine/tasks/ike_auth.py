"""IKE_AUTH: identities, certificates and AUTH (RFC 7296 §2.15, RFC 7427).

Selects the connection among the responder's candidates by the peer's
identity, checks the AUTH payload with a pre-shared key or a certificate
chained to a configured CA, and handles INITIAL_CONTACT (§2.4): the peer
says it has no other SA with us, so SAs we still hold for it are stale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...crypto.auth import psk_auth, signed_octets, verify_psk_auth
from ...crypto.errors import AuthError, CryptoError
from ...wire.enums import AuthMethod, CertEncoding, ExchangeType, NotifyType
from ...wire.message import Message
from ...wire.payloads import AUTH, CERT, CERTREQ, Identification, IDi, IDr, notify
from ..config import AuthClass, ConnectionConfig, Identity
from ..policy import identity_of
from ..sa import IkeState
from .base import Outgoing, Status, Task

if TYPE_CHECKING:
    from ..engine import Engine
    from ..sa import IkeSa


class IkeAuth(Task):
    __slots__ = ("initial_contact", "my_id", "peer_id")
    kind = "ike-auth"

    def __init__(self, engine: Engine, sa: IkeSa, exchange: ExchangeType) -> None:
        super().__init__(engine, sa, exchange)
        self.my_id: Identity | None = None
        self.peer_id: Identity | None = None
        self.initial_contact = False

    # ------------------------------------------------------------ helpers

    def _my_identity(self, conn: ConnectionConfig) -> Identity:
        creds = self.engine.credentials
        subject = creds.local_subject(conn) if conn.local[0].auth == AuthClass.PUBKEY else None
        return self.engine.policy.local_identity(conn, self.sa.local, subject)

    def _auth_payloads(self, conn: ConnectionConfig, id_payload: Identification, out: Outgoing,
                       real_message: bytes, peer_nonce: bytes, sk_p: bytes) -> str | None:
        """Add CERT and AUTH for our side; returns an error text on failure."""
        sa, eng = self.sa, self.engine
        assert sa.suite is not None and sa.suite.prf is not None
        prf = sa.suite.prf
        octets = signed_octets(real_message, peer_nonce, prf, sk_p, id_payload.body())
        local = conn.local[0]
        if local.auth == AuthClass.PSK:
            assert self.my_id is not None
            secret = eng.policy.psk(self.my_id, self.peer_id or conn.remote_id)
            if secret is None:
                return f"no pre-shared key for {self.my_id} - {self.peer_id or conn.remote_id}"
            out.add(AUTH(AuthMethod.PSK, psk_auth(prf, secret, octets)))
            return None
        try:
            certs, method, data = eng.credentials.sign(conn, octets, sa.peer_hashes)
        except (CryptoError, OSError, ValueError) as e:
            return f"cannot sign AUTH: {e}"
        for der in certs:
            out.add(CERT(CertEncoding.X509_SIGNATURE, der))
        out.add(AUTH(method, data))
        return None

    def _verify(self, conn: ConnectionConfig, msg: Message, id_payload: Identification,
                real_message: bytes, my_nonce: bytes, sk_p: bytes) -> str | None:
        """Check the peer's AUTH; returns an error text on failure."""
        sa, eng = self.sa, self.engine
        auth = msg.get(AUTH)
        if auth is None:
            return "no AUTH payload"
        assert sa.suite is not None and sa.suite.prf is not None
        prf = sa.suite.prf
        octets = signed_octets(real_message, my_nonce, prf, sk_p, id_payload.body())
        remote = conn.remote[0]
        assert self.peer_id is not None
        if auth.method == AuthMethod.PSK:
            if remote.auth != AuthClass.PSK:
                return "peer used a pre-shared key but we require a certificate"
            assert self.my_id is not None
            secret = eng.policy.psk(self.my_id, self.peer_id)
            if secret is None:
                return f"no pre-shared key for {self.my_id} - {self.peer_id}"
            try:
                verify_psk_auth(prf, secret, octets, auth.data)
            except AuthError:
                return "pre-shared key AUTH mismatch"
            return None
        if remote.auth != AuthClass.PUBKEY:
            return f"peer used {auth.method} but we require a pre-shared key"
        certs = [c.data for c in msg.all(CERT)]
        try:
            eng.credentials.verify(conn, self.peer_id, certs, auth.method, auth.data, octets, eng.wall_clock())
        except (AuthError, CryptoError, ValueError) as e:
            return f"signature AUTH failed: {e}"
        return None

    # ------------------------------------------------------------ initiator

    def build_i(self, out: Outgoing) -> Status:
        sa, eng = self.sa, self.engine
        conn = sa.conn
        assert conn is not None and sa.keys is not None
        self.my_id = self._my_identity(conn)
        idi = IDi(self.my_id.id_type, self.my_id.data)
        out.add(idi)
        remote_id = conn.remote_id
        if not remote_id.is_any and not remote_id.has_wildcards:
            out.add(IDr(remote_id.id_type, remote_id.data))
        if conn.remote[0].auth == AuthClass.PUBKEY and conn.send_certreq:
            for req in eng.credentials.certreqs(conn):
                out.add(CERTREQ(CertEncoding.X509_SIGNATURE, req))
        if eng.wants_initial_contact(sa):
            out.add(notify(NotifyType.INITIAL_CONTACT))
        err = self._auth_payloads(conn, idi, out, sa.init_i, sa.nr, sa.keys.sk_pi)
        if err is not None:
            return self.fail(err)
        return Status.NEED_MORE

    def process_i(self, msg: Message) -> Status:
        sa, eng = self.sa, self.engine
        conn = sa.conn
        assert conn is not None and sa.keys is not None
        for n in msg.notifies():
            if n.type.is_error and n.type not in _CHILD_ERRORS:
                return self.fail(f"responder answered {n.type}", n.type)
        idr = msg.get(IDr)
        if idr is None:
            return self.fail("IKE_AUTH response without IDr", NotifyType.INVALID_SYNTAX)
        self.peer_id = identity_of(idr)
        if not conn.remote_id.matches(self.peer_id):
            return self.fail(f"responder identity {self.peer_id} does not match {conn.remote_id}",
                             NotifyType.AUTHENTICATION_FAILED)
        err = self._verify(conn, msg, idr, sa.init_r, sa.ni, sa.keys.sk_pr)
        if err is not None:
            eng.counters["auth-failed"] += 1
            return self.fail(err, NotifyType.AUTHENTICATION_FAILED)
        sa.local_id = str(self.my_id)
        sa.remote_id = str(self.peer_id)
        eng.established(sa)
        return Status.DONE

    # ------------------------------------------------------------ responder

    def process_r(self, msg: Message) -> Status:
        sa, eng = self.sa, self.engine
        assert sa.keys is not None
        idi = msg.get(IDi)
        if idi is None or msg.get(AUTH) is None:
            return self.fail("IKE_AUTH request without IDi or AUTH", NotifyType.AUTHENTICATION_FAILED)
        self.peer_id = identity_of(idi)
        idr = msg.get(IDr)
        wanted_me = identity_of(idr) if idr is not None else None
        candidates: list[ConnectionConfig] = sa.ext_get("responder_candidates") or [sa.conn]
        # prefer the connection chosen in IKE_SA_INIT, then the other candidates
        ordered = [sa.conn, *(c for c in candidates if c is not sa.conn)]
        errors: list[str] = []
        for conn in ordered:
            if conn is None or not conn.remote_id.matches(self.peer_id):
                continue
            my_id = self._my_identity(conn)
            if wanted_me is not None and not my_id.matches(wanted_me) and not wanted_me.matches(my_id):
                continue
            self.my_id = my_id
            err = self._verify(conn, msg, idi, sa.init_i, sa.nr, sa.keys.sk_pi)
            if err is None:
                sa.conn = conn
                break
            errors.append(f"{conn.name}: {err}")
        else:
            eng.counters["auth-failed"] += 1
            why = "; ".join(errors) or f"no connection accepts identity {self.peer_id}"
            return self.fail(why, NotifyType.AUTHENTICATION_FAILED)
        self.initial_contact = msg.notify(NotifyType.INITIAL_CONTACT) is not None
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        sa, eng = self.sa, self.engine
        if self.error is not None:
            out.add(notify(self.error))
            return Status.FAILED
        conn = sa.conn
        assert conn is not None and sa.keys is not None and self.my_id is not None
        idr = IDr(self.my_id.id_type, self.my_id.data)
        out.add(idr)
        err = self._auth_payloads(conn, idr, out, sa.init_r, sa.ni, sa.keys.sk_pr)
        if err is not None:
            out.payloads = [p for p in out.payloads if not isinstance(p, IDr | CERT)]
            out.add(notify(NotifyType.AUTHENTICATION_FAILED))
            return self.fail(err, NotifyType.AUTHENTICATION_FAILED)
        sa.local_id = str(self.my_id)
        sa.remote_id = str(self.peer_id)
        if self.initial_contact:
            eng.initial_contact(sa)
        eng.established(sa)
        return Status.DONE

    def abandoned(self) -> None:
        if self.sa.state == IkeState.CONNECTING:
            self.engine.counters["setup-abandoned"] += 1


#: errors in an IKE_AUTH response that concern only the CHILD SA (§2.21.3)
_CHILD_ERRORS = frozenset(
    {
        NotifyType.NO_PROPOSAL_CHOSEN,
        NotifyType.TS_UNACCEPTABLE,
        NotifyType.SINGLE_PAIR_REQUIRED,
        NotifyType.INTERNAL_ADDRESS_FAILURE,
        NotifyType.FAILED_CP_REQUIRED,
        NotifyType.INVALID_SELECTORS,
        NotifyType.NO_ADDITIONAL_SAS,
        NotifyType.TEMPORARY_FAILURE,
    }
)
