"""What the charon proof found, replayed between two engines in memory with a driven clock.

These need neither root nor strongSwan: they pin the engine behaviour that the namespace tests
showed charon depends on, at the speed of unit tests (and with the minute-long waits that the
real daemons cannot afford).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from engine.harness import Net, Node, child, config, conn
from quickike.crypto.certs import certreq_hash
from quickike.engine import events as ev
from quickike.engine.config import AuthClass, AuthConfig
from quickike.engine.engine import Datagram
from quickike.engine.sa import IkeSa, IkeState
from quickike.wire.enums import CertEncoding, ExchangeType
from quickike.wire.message import decode_message
from quickike.wire.payloads import CERTREQ

from .pki import Pki

_INFORMATIONAL = int(ExchangeType.INFORMATIONAL)


def _usable(node: Node) -> list[IkeSa]:
    return [sa for sa in node.engine.ike_sas() if sa.usable]


def _state(sa: IkeSa) -> IkeState:
    return sa.state


def _pair(seed_a: int, seed_b: int) -> tuple[Net, Node, Node]:
    net = Net()
    ca = conn("gw", "192.0.2.1", "192.0.2.2", "a.example", "b.example", children=(child(),))
    cb = conn("gw", "192.0.2.2", "192.0.2.1", "b.example", "a.example",
              children=(child(local="10.2.0.0/16", remote="10.1.0.0/16"),))  # fmt: skip
    a = net.add("A", "192.0.2.1", config(ca), seed=seed_a)
    b = net.add("B", "192.0.2.2", config(cb), seed=seed_b)
    a.engine.initiate("gw", None, net.now)
    net.settle()
    assert len(_usable(a)) == 1 and len(_usable(b)) == 1
    return net, a, b


def _informational_request_from(node: Node) -> Callable[[Datagram], bool]:
    def keep(d: Datagram) -> bool:
        data = d.data[4:] if d.data[:4] == b"\0\0\0\0" else d.data
        request = data[18] == _INFORMATIONAL and not data[19] & 0x20
        return not (d.local[0] == node.ip and request)

    return keep


def test_a_redundant_ike_sa_the_peer_never_deletes_is_forgotten() -> None:
    """Simultaneous IKE rekeys (RFC 7296 §2.8.2) where the peer's new SA loses: the peer
    should delete it, but charon 5.9.8 sometimes aborts its rekey silently instead (when our
    Delete of the old SA arrives before its rekey response, "peer did not notice IKE_SA rekey
    collision, abort active rekeying"). Here B's Deletes never arrive; A must not keep the
    redundant SA forever."""
    for seed in range(1, 40):
        net, a, b = _pair(seed, seed + 100)
        net.filter = _informational_request_from(b)  # B's Deletes get lost, as charon's never come
        (sa_a,), (sa_b,) = _usable(a), _usable(b)
        assert a.engine.rekey_ike(sa_a.uid, net.now) and b.engine.rekey_ike(sa_b.uid, net.now)
        net.settle()  # both requests cross: a collision on both sides
        assert a.engine.counters["ike-rekey-collisions"] == 1
        theirs = [sa for sa in a.engine.ike_sas()
                  if sa.state == IkeState.REKEYED and not sa.initiator]  # fmt: skip
        if theirs:  # B's new SA was the redundant one
            break
    else:
        raise AssertionError("no seed made the peer's new IKE SA the redundant one")
    (redundant,) = theirs
    (winner,) = _usable(a)
    assert winner.initiator and not redundant.children and winner.children
    net.advance(59.0)
    assert _state(redundant) == IkeState.REKEYED  # the peer gets its chance first
    net.advance(2.0)
    assert _state(redundant) == IkeState.DESTROYED
    assert redundant.spi_local not in a.engine.sas
    assert _usable(a) == [winner] and winner.state == IkeState.ESTABLISHED


def _init_answer(remote: AuthConfig | None, seed: int = 1) -> list[object]:
    """The payloads of B's IKE_SA_INIT response to A (B authenticates A with ``remote``)."""
    net = Net()
    ca = conn("gw", "192.0.2.1", "192.0.2.2", "a.example", "b.example", children=(child(),))
    cb = conn("gw", "192.0.2.2", "192.0.2.1", "b.example", "a.example",
              children=(child(local="10.2.0.0/16", remote="10.1.0.0/16"),))  # fmt: skip
    if remote is not None:
        cb = dataclasses.replace(cb, remote=(remote,))
    a = net.add("A", "192.0.2.1", config(ca), seed=seed)
    b = net.add("B", "192.0.2.2", config(cb), seed=seed + 1)
    a.engine.initiate("gw", None, net.now)
    net.step()  # A's IKE_SA_INIT request reaches B, B's answer goes on the wire
    answer = next(d for _, d in net.wire if d.local[0] == b.ip)
    return list(decode_message(answer.data).payloads)


def test_a_responder_with_certificate_auth_asks_for_the_initiator_s_certificate(
    tmp_path: Path,
) -> None:
    """charon initiates with ``send_cert = ifasked`` (its default) and sends no CERT unless the
    IKE_SA_INIT response carries a CERTREQ (charon then authenticates with a bare AUTH and
    quickike refuses it: "peer sent no certificate"). quickike must ask, naming its CAs."""
    pki = Pki.build("ecdsa", ("a.example",))
    (tmp_path / "ca.pem").write_bytes(pki.root.cert_pem())
    pubkey = AuthConfig(name="remote", auth=AuthClass.PUBKEY, auth_spec="pubkey",
                        cacerts=(str(tmp_path / "ca.pem"),))  # fmt: skip
    certreqs = [p for p in _init_answer(pubkey) if isinstance(p, CERTREQ)]
    assert len(certreqs) == 1
    assert certreqs[0].encoding == CertEncoding.X509_SIGNATURE
    assert certreqs[0].data == certreq_hash(pki.root.cert)
    # a responder that authenticates its peers with a pre-shared key asks for nothing
    assert not [p for p in _init_answer(None) if isinstance(p, CERTREQ)]


def test_the_responder_picks_the_child_config_that_fits_best() -> None:
    """A host CHILD configured after a subnet CHILD that contains it: a request for the host
    selectors gets the host configuration (charon's choice too), not the first that narrows.
    Picking the subnet CHILD made quickike refuse charon's PFS proposal for the host CHILD
    (NO_PROPOSAL_CHOSEN: the subnet CHILD had no DH group)."""
    net = Net()
    host_esp = "aes128gcm16-ecp256"
    ca = conn("gw", "192.0.2.1", "192.0.2.2", "a.example", "b.example", children=(
        child(), child("host", local="10.1.0.1/32", remote="10.2.0.1/32", esp=host_esp)))  # fmt: skip
    cb = conn("gw", "192.0.2.2", "192.0.2.1", "b.example", "a.example", children=(
        child(local="10.2.0.0/16", remote="10.1.0.0/16"),
        child("host", local="10.2.0.1/32", remote="10.1.0.1/32", esp=host_esp)))  # fmt: skip
    a = net.add("A", "192.0.2.1", config(ca), seed=1)
    b = net.add("B", "192.0.2.2", config(cb), seed=2)
    a.engine.initiate("gw", None, net.now)  # IKE_AUTH brings up "net"
    net.settle()
    a.engine.initiate("gw", "host", net.now)  # CREATE_CHILD_SA with a KE (PFS)
    net.settle()
    ups = [e for e in b.events if isinstance(e, ev.ChildSaUp)]
    assert [e.name for e in ups] == ["net", "host"]
    assert ups[1].suite.startswith(host_esp) and ups[1].local_ts == ("10.2.0.1/32",)
