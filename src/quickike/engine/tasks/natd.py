"""NAT detection (RFC 7296 §2.23) and the move to the NAT-T port.

Each side hashes the SPIs with the addresses it sees; a mismatch means a NAT
rewrote them. After IKE_SA_INIT both sides then talk on port 4500 with the
non-ESP marker and protect CHILD traffic with UDP encapsulation. ``encap =
yes`` fakes a NAT (as charon does) to force encapsulation, which is what
strongSwan's kernel-libipsec needs.
"""

from __future__ import annotations

from ...crypto.natd import natd_hash
from ...wire.enums import NotifyType
from ...wire.message import Message
from ...wire.payloads import notify
from .base import Outgoing, Status, Task

# module constants: ``NotifyType.X`` goes through EnumType's attribute hook (several times
# the cost of a global), and _check() compares every notify of the message with them
_NATD_SRC = NotifyType.NAT_DETECTION_SOURCE_IP
_NATD_DST = NotifyType.NAT_DETECTION_DESTINATION_IP
_COOKIE = NotifyType.COOKIE
_INVALID_KE = NotifyType.INVALID_KE_PAYLOAD


class Natd(Task):
    __slots__ = ()
    kind = "natd"

    def _hashes(self, spi_r: bytes) -> tuple[bytes, bytes]:
        sa = self.sa
        src = natd_hash(sa.spi_i, spi_r, sa.local[0], sa.local[1])
        dst = natd_hash(sa.spi_i, spi_r, sa.remote[0], sa.remote[1])
        return src, dst

    def _add(self, out: Outgoing, spi_r: bytes) -> None:
        src, dst = self._hashes(spi_r)
        if self.engine.encap_forced(self.sa.conn):
            src = self.engine.rng.bytes(20)  # a source hash nobody can match forces NAT-T
        out.add(notify(_NATD_SRC, src), notify(_NATD_DST, dst))

    def _check(self, msg: Message) -> bool:
        """Compare the peer's hashes with ours; False if the peer sent none."""
        sa = self.sa
        srcs = [n.data for n in msg.notifies() if n.type == _NATD_SRC]
        dst = msg.notify(_NATD_DST)
        if not srcs or dst is None:
            return False
        # the peer hashed with the SPIs of its message's header
        their_src = natd_hash(msg.spi_i, msg.spi_r, sa.remote[0], sa.remote[1])
        our_addr = natd_hash(msg.spi_i, msg.spi_r, sa.local[0], sa.local[1])
        sa.nat_remote = their_src not in srcs
        sa.nat_local = dst.data != our_addr
        return True

    def build_i(self, out: Outgoing) -> Status:
        self._add(out, b"\x00" * 8)
        return Status.NEED_MORE

    def process_i(self, msg: Message) -> Status:
        sa = self.sa
        if msg.notify(_COOKIE) or msg.notify(_INVALID_KE):
            return Status.NEED_MORE
        encap = self.engine.encap_forced(sa.conn)
        self._check(msg)
        if sa.nat_local or sa.nat_remote or encap:
            self.float_ports()
        return Status.DONE

    def process_r(self, msg: Message) -> Status:
        self._check(msg)
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        if self.sa.suite is not None:
            self._add(out, self.sa.spi_r)
        return Status.DONE

    def float_ports(self) -> None:
        """Move this SA to the NAT-T port (RFC 7296 §2.23), keeping custom ports as they are."""
        sa, eng = self.sa, self.engine
        rport = 4500 if sa.remote[1] == 500 else sa.remote[1]
        sa.local = (sa.local[0], eng.policy.nat_t_port(sa.local))
        sa.remote = (sa.remote[0], rport)
        eng.counters["nat-t"] += 1
