from quickike.engine import events as ev

from .harness import pair


def test_psk_ike_and_child_come_up():
    net, a, b = pair()
    a.engine.initiate("gw", None, net.now)
    net.settle()
    for n in (a, b):
        assert len(n.of(ev.IkeSaUp)) == 1, n.events
        assert len(n.of(ev.ChildSaUp)) == 1, n.events
    (ca,), (cb,) = a.of(ev.ChildSaUp), b.of(ev.ChildSaUp)
    assert ca.spi_in == cb.spi_out and ca.spi_out == cb.spi_in
    sa, sb = a.dataplane.children[ca.spi_in], b.dataplane.children[cb.spi_in]
    assert sa.encr_key_out == sb.encr_key_in and sa.encr_key_in == sb.encr_key_out
