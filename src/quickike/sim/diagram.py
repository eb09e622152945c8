"""A text sequence diagram of one tunnel, in the style of the seed slides.

Two columns (the survivor on the left), one arrow per IKE message, with
protected contents named from the endpoints' engine traces; runs of ESP
packets collapse into one line; packets that never arrived are marked
``x``; crashes, reboots, teardowns and the return of traffic are notes.
Messages of third parties (the standby, the attacker) appear on the side
whose address they use, tagged with who really sent them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import events as ev
from .node import Node
from .packets import Packet
from .tunnel import Tunnel
from .wireview import describe
from .world import World

_SHORT = {"NONCE": "Ni/Nr", "NOTIFY": "N", "DELETE": "D", "QUICK_CRASH_DETECTION": "QCD_TOKEN"}


@dataclass(slots=True)
class _Line:
    time: float
    left_to_right: bool = True
    label: str = ""
    note: str = ""
    fate: str = ""  # "" = delivered, else why it was lost
    esp: bool = False
    key: tuple[bytes, bytes, int, bool] | None = None


def _names(payloads: tuple[str, ...]) -> str:
    out = []
    for name in payloads:
        for long, short in _SHORT.items():
            name = name.replace(long, short)
        if name.startswith("N(") and name[2:-1] in ("NAT_DETECTION_SOURCE_IP",
                                                    "NAT_DETECTION_DESTINATION_IP",
                                                    "IKEV2_FRAGMENTATION_SUPPORTED",
                                                    "SIGNATURE_HASH_ALGORITHMS"):
            continue
        out.append(name)
    return ", ".join(out)


class DiagramRecorder:
    """Watches the network and the engines for one tunnel while the world runs."""

    def __init__(self, world: World, tunnel: Tunnel, left: str, right: str,
                 *, limit: int = 4000) -> None:
        self.world = world
        self.tunnel = tunnel
        self.left = left
        self.right = right
        self.limit = limit
        self.lines: list[_Line] = []
        self.truncated = False
        self._by_packet: dict[int, _Line] = {}
        self._inner: dict[tuple[bytes, bytes, int, bool], str] = {}
        self._by_key: dict[tuple[bytes, bytes, int, bool], _Line] = {}
        left_node = world.nodes.get(left)
        ips = {tunnel.a.ip, tunnel.b_addr, *(n.ip for n in tunnel.b_nodes)}
        for nat in world.network.nats.values():
            if tunnel.a.ip in nat.inside:
                ips.add(nat.public)
        self.ips = ips
        self._left_ips = {tunnel.a.ip} if left_node is tunnel.a else {tunnel.b_addr}
        if left_node is tunnel.a:
            for nat in world.network.nats.values():
                if tunnel.a.ip in nat.inside:
                    self._left_ips.add(nat.public)
        world.network.observer = self._observe
        world.event_hooks.append(self._event)
        world.note_hooks.append(self._note)

    # ------------------------------------------------------------ recording

    def _add(self, line: _Line) -> None:
        if len(self.lines) >= self.limit:
            self.truncated = True
            return
        self.lines.append(line)

    def _observe(self, what: str, pkt: Packet, detail: str) -> None:
        if what == "tx":
            if pkt.src_ip not in self.ips or pkt.dst_ip not in self.ips:
                return
            if pkt.esp is None and pkt.data == b"\xff":
                return
            ltr = pkt.src_ip in self._left_ips
            tag = self._tag(pkt)
            if pkt.esp is not None:
                line = _Line(self.world.now, ltr, f"{tag}ESP spi={pkt.esp.spi.hex()}", esp=True)
            else:
                view = describe(pkt.data)
                if view is None:
                    return
                key = view.key()
                if view.protected:
                    # a third party's SK payload is opaque bytes, whatever its header claims
                    inner = None if tag else self._inner.get(key)
                    body = f"SK {{{inner}}}" if inner is not None else "SK {...}"
                else:
                    body = _names(tuple(view.payloads))
                exch = str(view.exchange)
                kind = "response" if view.response else "request"
                label = f"{tag}{exch} {kind} #{view.message_id}: HDR, {body}".rstrip(", ")
                line = _Line(self.world.now, ltr, label,
                             key=key if view.protected and not tag else None)
                if line.key is not None:
                    self._by_key[key] = line
            self._by_packet[id(pkt)] = line
            self._add(line)
        elif what == "drop":
            dropped = self._by_packet.get(id(pkt))
            if dropped is not None and not dropped.fate:
                dropped.fate = detail
        elif what == "rx":
            arrived = self._by_packet.pop(id(pkt), None)
            if arrived is not None and arrived.fate == "":
                arrived.fate = "ok"

    def _tag(self, pkt: Packet) -> str:
        """Who really sent a packet and to whom, when that is not the two columns."""
        sender = pkt.origin
        holder = self.world.network.holder(pkt.dst_ip)
        dest = holder.name if holder is not None else pkt.dst_ip
        columns = (self.left, self.right)
        if sender in columns and dest in columns:
            return ""
        if dest in columns:
            return f"[{sender}] "
        return f"[{sender} -> {dest}] "

    def _event(self, node: Node, e: ev.Event) -> None:
        if isinstance(e, ev.MessageTrace):
            key = (e.spi_i, e.spi_r, e.message_id, e.response)
            names = _names(e.payloads)
            if e.protected:
                self._inner[key] = names
                line = self._by_key.get(key)
                if line is not None and "SK {...}" in line.label:
                    line.label = line.label.replace("SK {...}", f"SK {{{names}}}")
            return
        t = node.uid_tunnel.get(getattr(e, "ike_uid", -1)) if isinstance(
            e, ev.IkeSaUp | ev.ChildSaUp | ev.LivenessCheck | ev.PeerDead) else None
        if isinstance(e, ev.IkeSaDown):
            if e.established and self.tunnel.teardowns and self.tunnel.teardowns[-1][0] == e.time \
                    and self.tunnel.teardowns[-1][1] == node.name:
                self._add(_Line(e.time, note=f"{node.name} deletes IKE SA #{e.ike_uid} "
                                             f"({e.reason})"))
            return
        if t is not self.tunnel:
            if isinstance(e, ev.ExtensionEvent) and e.source == "qcd" and e.kind in (
                    "teardown", "token-rejected", "spoof-suspected", "dampened") \
                    and node.name in (self.left, self.right, self.tunnel.a.name):
                why = e.attrs.get("reason") or e.attrs.get("evidence") or e.attrs.get("mode", "")
                self._add(_Line(e.time, note=f"{node.name}: QCD {e.kind} ({why})"))
            return
        if isinstance(e, ev.IkeSaUp):
            self._add(_Line(e.time, note=f"{node.name}: IKE SA #{e.ike_uid} up"))
        elif isinstance(e, ev.LivenessCheck):
            self._add(_Line(e.time, note=f"{node.name}: liveness check ({e.why})"))
        elif isinstance(e, ev.PeerDead):
            self._add(_Line(e.time, note=f"{node.name}: peer declared dead"))

    def _note(self, time: float, node: str, text: str) -> None:
        if node in (self.left, self.right) or node in {n.name for n in self.tunnel.b_nodes} \
                or text.startswith((self.tunnel.name + " ", "network ")):
            self._add(_Line(time, note=f"{node} {text}" if node else text))

    # ------------------------------------------------------------ rendering

    def render(self, width: int = 110) -> str:
        # runs of ESP with the same outcome collapse into one line, counted per direction
        merged: list[_Line] = []
        counts: dict[int, list[int]] = {}
        for line in self.lines:
            prev = merged[-1] if merged else None
            if (line.esp and prev is not None and prev.esp
                    and (prev.fate in ("", "ok")) == (line.fate in ("", "ok"))
                    and (prev.fate in ("", "ok") or prev.fate == line.fate)):
                counts[id(prev)][0 if line.left_to_right else 1] += 1
                continue
            copy = _Line(line.time, line.left_to_right, line.label, line.note, line.fate,
                         line.esp, line.key)
            if line.esp:
                counts[id(copy)] = [1, 0] if line.left_to_right else [0, 1]
            merged.append(copy)
        inner = width - 12
        head = f"{'time':>10}  {self.left:<{inner // 2}}{self.right:>{inner - inner // 2}}"
        out = [head, f"{'':>10}  |{' ' * (inner - 2)}|"]
        for line in merged:
            stamp = f"{line.time:>9.3f}s"
            if line.note:
                out.append(f"{stamp}  {('-- ' + line.note + ' --').center(inner)}")
                continue
            label = line.label
            both = False
            if line.esp:
                right, left = counts[id(line)]
                if right + left > 1:
                    tag = label.split("ESP")[0]
                    if right and left:
                        both = True
                        label = f"{tag}ESP x{right} ->, x{left} <-"
                    else:
                        label = f"{tag}ESP x{right or left}"
            fate = f"  x {line.fate}" if line.fate not in ("", "ok") else ""
            room = inner - 6 - len(fate)
            if len(label) > room:
                label = label[: room - 3] + "..."
            label += fate
            pad = max(inner - 5 - len(label), 1)
            if both:
                half = pad // 2
                body = f"|<{'=' * half} {label} {'=' * (pad - half - 1)}>|"
            elif line.left_to_right:
                body = f"|-- {label} {'-' * (pad - 1)}>|"
            else:
                body = f"|<{'-' * (pad - 1)} {label} --|"
            out.append(f"{stamp}  {body}")
        if self.truncated:
            out.append(f"{'':>10}  ... (diagram truncated at {self.limit} lines)")
        return "\n".join(out)
