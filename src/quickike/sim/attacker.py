"""The issue-202 attacker: a token maker that shares a secret is an oracle.

Powers, as the seed slides list them: it knows the SPIs (an on-path observer
near the victim sees every IKE header and ESP SPI), it can inject packets to
any gateway with a spoofed source, it can capture a gateway's reply before
it reaches its destination, and it can inject packets to the victim.

``naive`` is the slides' attack: a fake protected request with the victim's
SPIs (and the victim's address as source, which defeats the §5.2 binding of
the token to the taker's address) goes to the standby, which does not know
the SA and answers ``N(INVALID_IKE_SPI), N(QCD_TOKEN)``; the captured answer
is injected to the victim as if the active gateway had sent it.

``smart`` first makes the victim send a request (a spoofed, unprotected
INVALID_SPI naming its CHILD SPI starts its liveness check), then asks the
standby with that request's message ID, so the forged answer matches a
request the victim really has outstanding (defeats "require pending").

Every injection is recorded; a live IKE SA that the victim destroys within
``window`` seconds of one is an attack success.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ..engine import events as ev
from ..wire.enums import FLAG_INITIATOR, ExchangeType, NotifyType, PayloadType, ProtocolId
from ..wire.header import HEADER_SIZE, Header
from ..wire.message import Message
from ..wire.payloads import notify
from .packets import Packet
from .wireview import describe

if TYPE_CHECKING:
    from .node import Node
    from .tunnel import Tunnel
    from .world import World

_INFO = ExchangeType.INFORMATIONAL
STRATEGIES = ("naive", "smart")
#: seconds between seeing a packet and acting on it
REACTION = 0.0001


class Attacker:
    def __init__(self, world: World, name: str, ip: str, *, victim: Node, vip: str,
                 standby_ip: str, strategy: str = "naive", rng: random.Random,
                 window: float = 10.0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"attacker strategy must be one of {', '.join(STRATEGIES)}")
        self.world = world
        self.name = name
        self.ip = ip
        self.victim = victim
        self.vip = vip
        self.standby_ip = standby_ip
        self.strategy = strategy
        self.rng = rng
        self.window = window
        #: SPIs of the victim's newest IKE SA with the service address, and its role
        self.spis: tuple[bytes, bytes] | None = None
        self.victim_initiator = True
        self.esp_spi: bytes | None = None
        self.last_msg_id = 0
        self.awaiting_request = False
        self.awaiting_reply = False
        self.attempts = 0
        self.first_attack: float | None = None
        self.injections: list[tuple[float, bytes, bytes]] = []
        self.successes = 0
        self.failed_setups = 0
        #: (time, reason) of each successful attempt
        self.success_log: list[tuple[float, str]] = []
        self._credited: set[int] = set()
        world.network.add_tap(self._tap)
        world.teardown_hooks.append(self._teardown)

    # ------------------------------------------------------------ observing

    def _tap(self, pkt: Packet, now: float) -> bool:
        victim, vip = self.victim.ip, self.vip
        if pkt.src_ip == victim and pkt.dst_ip == vip and pkt.origin != self.name:
            if pkt.esp is not None:
                self.esp_spi = pkt.esp.spi
                return False
            view = describe(pkt.data)
            if view is None or view.response:
                return False
            if view.protected:
                self.last_msg_id = view.message_id
                if self.awaiting_request and view.exchange == _INFO:
                    self.awaiting_request = False
                    # it reacts to what it saw, a moment after the packet passed
                    self.world.sched.after(REACTION, self._ask_standby, view.message_id)
            return False
        if pkt.src_ip == vip and pkt.dst_ip == victim and pkt.esp is None:
            view = describe(pkt.data)
            if view is not None and view.response and view.exchange == ExchangeType.IKE_AUTH:
                self.spis = (view.spi_i, view.spi_r)
                self.victim_initiator = not view.initiator_flag
            return False
        if self.awaiting_reply and pkt.src_ip == self.standby_ip and pkt.dst_ip == victim:
            view = describe(pkt.data)
            if view is not None and view.has_token:
                self.awaiting_reply = False
                self.world.sched.after(REACTION, self._inject, pkt.data, view.spi_i, view.spi_r)
                return True  # captured: the victim never sees the standby's own copy
        return False

    # ------------------------------------------------------------ attacking

    def attack(self) -> None:
        """One attempt (scheduled by the scenario)."""
        if self.spis is None:
            self.world.stats["attack-no-spis"] += 1
            return
        self.attempts += 1
        if self.first_attack is None:
            self.first_attack = self.world.now
        self.world.trace.record(self.world.now, self.name, "attack", self.strategy)
        if self.strategy == "naive":
            self._ask_standby(self.last_msg_id + 1)
        else:
            self._provoke_request()

    def _send(self, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        self.world.network.send(Packet(src[0], src[1], dst[0], dst[1], data=data,
                                       origin=self.name, path_src=self.ip))

    def _ask_standby(self, message_id: int) -> None:
        assert self.spis is not None
        spi_i, spi_r = self.spis
        body = self.rng.randbytes(64)  # "IV | ciphertext | ICV" nobody can check without keys
        sk_len = 4 + len(body)
        flags = FLAG_INITIATOR if self.victim_initiator else 0
        header = Header(spi_i, spi_r, int(PayloadType.SK), _INFO, flags, message_id,
                        HEADER_SIZE + sk_len)
        data = header.encode() + bytes([0, 0]) + sk_len.to_bytes(2, "big") + body
        self.awaiting_reply = True
        self._send((self.victim.ip, 500), (self.standby_ip, 500), data)

    def _provoke_request(self) -> None:
        if self.esp_spi is None:
            self.world.stats["attack-no-esp-spi"] += 1
            return
        msg = Message(self.rng.randbytes(8), b"\x00" * 8, _INFO, FLAG_INITIATOR, 0,
                      [notify(NotifyType.INVALID_SPI, self.esp_spi, protocol=ProtocolId.ESP)])
        self.awaiting_request = True
        self._send((self.vip, 500), (self.victim.ip, 500), msg.encode())

    def _inject(self, data: bytes, spi_i: bytes, spi_r: bytes) -> None:
        self.injections.append((self.world.now, spi_i, spi_r))
        self._send((self.vip, 500), (self.victim.ip, 500), data)

    # ------------------------------------------------------------ scoring

    def _teardown(self, node: Node, t: Tunnel, e: ev.IkeSaDown, false: bool) -> None:
        if node is not self.victim or not false:
            return
        now = e.time
        for i, (when, spi_i, spi_r) in enumerate(self.injections):
            if i in self._credited or not 0 <= now - when <= self.window:
                continue
            if (spi_i, spi_r) == (e.spi_i, e.spi_r):
                self._credited.add(i)
                self.successes += 1
                self.success_log.append((now, e.reason))
                return

    def summary(self, window_end: float | None = None) -> dict[str, object]:
        first = self.injections[0][0] if self.injections else None
        outage = None
        if first is not None:
            t = self.victim.tunnels[0] if self.victim.tunnels else None
            end = window_end if window_end is not None else self.world.now
            outage = round(t.without_sa(first, end), 6) if t is not None else None
        return {
            #: seconds the victim's traffic had no CHILD SA between the first injection and the
            #: end of the attack phase
            "outage_caused": outage,
            "strategy": self.strategy,
            "attempts": self.attempts,
            "first_attack": self.first_attack,
            "injections": len(self.injections),
            "successes": self.successes,
            "success_times": [round(t, 6) for t, _ in self.success_log],
        }
