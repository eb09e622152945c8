"""``quickike demo``: two gateways on loopback tell the story of a tunnel.

No root needed: both daemons run in this process on 127.0.0.1 and 127.0.0.2
with real UDP sockets, configured from swanctl.conf text. The story is
printed as a sequence diagram built from the engines' message traces.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from ..control.config import load_config_text
from ..engine import events as ev
from ..tools.sequence import Arrow, render
from .daemon import Daemon

CONF = """
quickike {{
    port = {port}
    port_nat_t = {port_nat_t}
    state_dir = {state}
}}
connections {{
    site {{
        local_addrs = {me}
        remote_addrs = {peer}
        remote_port = {peer_port}
        proposals = aes128gcm16-prfsha256-x25519
        local {{
            auth = psk
            id = {my_id}
        }}
        remote {{
            auth = psk
            id = {peer_id}
        }}
        children {{
            net {{
                local_ts = {my_net}
                remote_ts = {peer_net}
                esp_proposals = aes128gcm16-esn
            }}
        }}
    }}
}}
secrets {{
    ike-site {{
        id-a = gw-a.example
        id-b = gw-b.example
        secret = "quickike demo pre-shared key, long enough"
    }}
}}
"""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    name: str
    host: str
    port: int
    daemon: Daemon | None = None
    events: list[ev.Event] = field(default_factory=list)


def _config(me: Gateway, peer: Gateway, state: str, my_net: str, peer_net: str) -> str:
    return CONF.format(
        port=me.port,
        port_nat_t=me.port + 1,
        state=state,
        me=me.host,
        peer=peer.host,
        peer_port=peer.port,
        my_id=f"gw-{me.name.lower()}.example",
        peer_id=f"gw-{peer.name.lower()}.example",
        my_net=my_net,
        peer_net=peer_net,
    )


async def _wait(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise TimeoutError("the demo's tunnel did not come up in time")
        await asyncio.sleep(0.005)


async def _story(tmp: str) -> tuple[list[Arrow], list[dict[str, object]]]:
    a = Gateway("A", "127.0.0.1", _free_port("127.0.0.1"))
    b = Gateway("B", "127.0.0.2", _free_port("127.0.0.2"))
    for gw, peer, mine, theirs in (
        (a, b, "10.1.0.0/16", "10.2.0.0/16"),
        (b, a, "10.2.0.0/16", "10.1.0.0/16"),
    ):
        cfg, _ = load_config_text(
            _config(gw, peer, f"{tmp}/{gw.name}", mine, theirs), f"<demo {gw.name}>"
        )
        gw.daemon = Daemon(cfg, trace=True, host=gw.host, ipv6=False)
        gw.daemon.observers = [gw.events.append]
        await gw.daemon.start()
    assert a.daemon is not None and b.daemon is not None and a.daemon.engine and b.daemon.engine
    timeline: list[dict[str, object]] = []
    arrows: list[Arrow] = []

    def note(text: str) -> None:
        assert a.daemon is not None
        arrows.append(Arrow(a.daemon._now(), True, "", text))
        timeline.append({"time": a.daemon._now(), "note": text})

    def count(gw: Gateway, kind: type) -> int:
        return sum(isinstance(e, kind) for e in gw.events)

    note("A initiates the tunnel")
    a.daemon.engine.initiate("site", None, a.daemon._now())
    a.daemon.pump()
    await _wait(lambda: count(a, ev.ChildSaUp) >= 1 and count(b, ev.ChildSaUp) >= 1)
    note("IKE SA and CHILD SA up on both gateways")
    child = next(e for e in a.events if isinstance(e, ev.ChildSaUp))
    note("A rekeys the CHILD SA")
    a.daemon.engine.rekey_child(child.child_uid, a.daemon._now())
    a.daemon.pump()
    await _wait(lambda: count(a, ev.ChildSaDown) >= 1 and count(b, ev.ChildSaDown) >= 1)
    ike = next(e for e in b.events if isinstance(e, ev.IkeSaUp))
    note("B rekeys the IKE SA")
    b.daemon.engine.rekey_ike(ike.ike_uid, b.daemon._now())
    b.daemon.pump()
    await _wait(lambda: count(a, ev.IkeSaDown) >= 1 and count(b, ev.IkeSaDown) >= 1)
    note("A deletes the tunnel")
    live = next(s for s in a.daemon.engine.ike_sas() if s.usable)
    a.daemon.engine.terminate_ike(live.uid, a.daemon._now())
    a.daemon.pump()
    await _wait(lambda: count(b, ev.IkeSaDown) >= 2)
    for e in a.events:
        if isinstance(e, ev.MessageTrace) and e.sent:
            label = f"{e.exchange} {'response' if e.response else 'request'} {e.message_id} [ {' '.join(e.payloads)} ]"
            arrows.append(Arrow(e.time, True, label))
            timeline.append({"time": e.time, "from": "A", "message": label})
    for e in b.events:
        if isinstance(e, ev.MessageTrace) and e.sent:
            label = f"{e.exchange} {'response' if e.response else 'request'} {e.message_id} [ {' '.join(e.payloads)} ]"
            arrows.append(Arrow(e.time, False, label))
            timeline.append({"time": e.time, "from": "B", "message": label})
    a.daemon.close()
    b.daemon.close()
    arrows.sort(key=lambda x: (x.time, x.label != ""))
    timeline.sort(key=lambda x: float(x["time"]))  # type: ignore[arg-type]
    return arrows, timeline


def run_demo(json_output: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="quickike-demo-") as tmp:
        arrows, timeline = asyncio.run(_story(tmp))
    if json_output:
        print(json.dumps(timeline, indent=2))
        return 0
    print("quickike demo: two gateways on loopback, real UDP, real IKEv2\n")
    print(render("gateway A 127.0.0.1", "gateway B 127.0.0.2", arrows, width=100))
    return 0
