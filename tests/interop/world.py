"""One interop test's world: a gateway pair with charon on B and quickike on A.

Per test, because tests change charon's strongswan.conf (cookies, retransmits, receive delays)
and quickike's daemon settings, and because a fresh pair costs well under a second. Both
daemons are SIGKILLed when the test ends (the lab then deletes the namespaces): charon's orderly
SIGTERM takes about two seconds, which over the whole suite would cost more than the tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from needs import require_strongswan, require_tun
from quickike.lab.charon import Charon, CharonSettings, render_tree
from quickike.lab.netns import GatewayPair, Lab, LabError

from .daemon import QuickikeDaemon
from .pki import Pki
from .topology import CH_ID, QI_ID, Side, charon_config, quickike_config


class Interop:
    """One test's world: the pair, at most one charon (B) and one quickike (A)."""

    def __init__(self, lab: Lab, *, ipv6: bool = False) -> None:
        require_strongswan()
        require_tun()  # charon's kernel-libipsec needs a TUN device
        self.lab = lab
        pair = lab.gateway_pair(hosts=True, ipv6=ipv6)
        if ipv6:  # IKE over IPv6; the protected LANs stay IPv4 (both gateways have v4 LAN addresses)
            pair = dataclasses.replace(pair, wire_a=pair.wire6_a, wire_b=pair.wire6_b)
        self.pair: GatewayPair = pair
        self.charon: Charon | None = None
        self.quickike: QuickikeDaemon | None = None

    def start_charon(
        self,
        side: Side,
        *,
        settings: CharonSettings | None = None,
        pki: Pki | None = None,
    ) -> Charon:
        """charon on B; with ``pki`` its credentials go in swanctl's folders and the
        configuration is loaded with ``swanctl --load-all`` as an operator would."""
        conns, secrets = charon_config(self.pair, side)
        if pki is not None:
            text = render_tree({"connections": conns}) + "\n"
            charon = Charon(self.pair.gw_b, settings=settings, swanctl_text=text, label="b")
            own = pki.install_charon(charon.dir, CH_ID)
            conns["gw"]["local"]["certs"] = own
            charon.swanctl_text = render_tree({"connections": conns}) + "\n"
        else:
            charon = Charon(self.pair.gw_b, settings=settings, connections=conns,
                            secrets=secrets, label="b")  # fmt: skip
        self.charon = charon
        return charon.start()

    def make_quickike(self, side: Side, *, settings: dict[str, Any] | None = None,
                      pki: Pki | None = None) -> QuickikeDaemon:  # fmt: skip
        """quickike on A, not yet started (a test may still add files)."""
        if pki is not None:
            qi = QuickikeDaemon(self.pair.gw_a, connections={}, settings=settings, label="a")
            side.certs, side.cacerts = pki.install_quickike(qi.dir, QI_ID)
        conns, secrets = quickike_config(self.pair, side)
        if pki is None:
            qi = QuickikeDaemon(self.pair.gw_a, connections=conns, secrets=secrets,
                                settings=settings, label="a")  # fmt: skip
        else:
            qi.tree["connections"] = conns
        self.quickike = qi
        return qi

    def start_quickike(self, side: Side, *, settings: dict[str, Any] | None = None,
                       pki: Pki | None = None) -> QuickikeDaemon:  # fmt: skip
        return self.make_quickike(side, settings=settings, pki=pki).start()

    def close(self) -> None:
        for proc in (self.charon.process if self.charon else None,
                     self.quickike.process if self.quickike else None):  # fmt: skip
            if proc is not None and proc.alive():
                with contextlib.suppress(LabError):
                    proc.kill()


_PKI_CACHE: dict[tuple[str, int], Pki] = {}


def pki_for(kind: str, intermediates: int = 0) -> Pki:
    """One hierarchy per key kind for the whole session (RSA 4096 keys are slow to make)."""
    key = (kind, intermediates)
    if key not in _PKI_CACHE:
        _PKI_CACHE[key] = Pki.build(kind, (QI_ID, CH_ID), intermediates=intermediates)
    return _PKI_CACHE[key]
