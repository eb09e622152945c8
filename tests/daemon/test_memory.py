"""What an established IKE SA keeps, so that 10,000 of them stay small (docs/benchmarks.md)."""

from __future__ import annotations

import gc
import tracemalloc

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from tests.engine.harness import Net, Node, pair

from quickike.engine import events as ev
from quickike.engine.dataplane import NullDataPlane


def _held_objects(obj: object) -> list[object]:
    """The attributes of a slotted object and, one level down, of what they hold."""
    out: list[object] = []
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            value = getattr(obj, name, None)
            out.append(value)
            out.extend(vars(value).values() if hasattr(value, "__dict__") else
                       [getattr(value, n, None) for c in type(value).__mro__
                        for n in getattr(c, "__slots__", ())])
    return out


def _established(count: int) -> tuple[Net, Node, Node]:
    net, a, b = pair(a_kw={"rekey_time": 0.0}, b_kw={"rekey_time": 0.0})
    for n in (a, b):
        n.engine.trace = False
        n.engine.dataplane = NullDataPlane()
    for _ in range(count):
        a.engine.initiate("gw", None, net.now)
    net.settle(max_rounds=10000)
    assert len(a.of(ev.ChildSaUp)) == count
    return net, a, b


def test_protectors_hold_no_openssl_aead_context() -> None:
    # each AESGCM object carries a ready OpenSSL context of about 2.4 kB outside Python's heap
    _, a, b = _established(3)
    for node in (a, b):
        for sa in node.engine.sas.values():
            prot = sa.protector
            assert prot is not None
            held = _held_objects(prot)
            assert len(held) > 10
            assert not any(isinstance(v, AESGCM | ChaCha20Poly1305) for v in held)


def test_python_objects_per_established_sa_stay_small() -> None:
    net, a, b = _established(20)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(200):
            a.engine.initiate("gw", None, net.now)
        net.settle(max_rounds=100000)
        a.events.clear()
        b.events.clear()
        net.wire.clear()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_end = grown / 200 / 2
    assert per_end < 8000, f"{per_end:.0f} bytes of Python objects per IKE+CHILD SA and end"


def test_sas_between_two_peers_share_their_selectors() -> None:
    _, a, _ = _established(5)
    children = [c for sa in a.engine.sas.values() for c in sa.children]
    assert len(children) == 5
    assert len({id(c.remote_ts[0]) for c in children}) == 1
