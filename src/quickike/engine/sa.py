"""The state of one IKE SA and its CHILD SAs.

Plain slotted records: behaviour lives in tasks and in the engine, so that a
feature can be added as a task without editing this file, and so that 10,000
established SAs stay small (IKE_SA_INIT messages, nonces and the DH private
value are dropped as soon as IKE_AUTH no longer needs them).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from ..wire.enums import ExchangeType

if TYPE_CHECKING:
    from ..crypto.keys import IkeKeys
    from ..crypto.proposals import Suite
    from ..crypto.sk import SkProtector
    from .config import ChildConfig, ConnectionConfig
    from .dataplane import Selector
    from .tasks.base import Task
    from .timers import Timer

Address = tuple[str, int]


class IkeState(enum.Enum):
    CONNECTING = "CONNECTING"
    ESTABLISHED = "ESTABLISHED"
    REKEYING = "REKEYING"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DESTROYED = "DESTROYED"


class ChildState(enum.Enum):
    CREATED = "CREATED"
    INSTALLED = "INSTALLED"
    REKEYING = "REKEYING"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DESTROYED = "DESTROYED"


class Pending:
    """The one outstanding request of an IKE SA (window size 1)."""

    __slots__ = (
        "attempt", "datagrams", "exchange", "hint_resent", "last_sent", "message_id", "sent_at",
        "timer",
    )

    def __init__(
        self, exchange: ExchangeType, message_id: int, datagrams: list[bytes], sent_at: float
    ) -> None:
        self.exchange = exchange
        self.message_id = message_id
        self.datagrams = datagrams
        self.attempt = 0
        self.sent_at = sent_at
        #: when the latest (re)transmission left: a reply may answer any of them
        self.last_sent = sent_at
        #: resent early because of an INVALID_SPI hint since the last scheduled transmission
        self.hint_resent = False
        self.timer: Timer | None = None


class ChildSa:
    __slots__ = (
        "config",
        "expire_timer",
        "ike",
        "installed_at",
        "local_ts",
        "rekey_timer",
        "rekeyed_from",
        "remote_ts",
        "spi_in",
        "spi_out",
        "state",
        "suite",
        "uid",
    )

    def __init__(self, uid: int, ike: IkeSa, config: ChildConfig) -> None:
        self.uid = uid
        self.ike = ike
        self.config = config
        self.state = ChildState.CREATED
        self.spi_in = b""
        self.spi_out = b""
        self.suite: Suite | None = None
        self.local_ts: tuple[Selector, ...] = ()
        self.remote_ts: tuple[Selector, ...] = ()
        self.installed_at = 0.0
        self.rekey_timer: Timer | None = None
        self.expire_timer: Timer | None = None
        self.rekeyed_from: int | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def mode(self) -> str:
        """``tunnel`` or ``transport``, as configured (and negotiated: a mismatch is refused)."""
        return self.config.mode.value

    def __repr__(self) -> str:
        return f"<ChildSa {self.name}#{self.uid} {self.state.value} in={self.spi_in.hex()} out={self.spi_out.hex()}>"


class IkeSa:
    """One IKE SA. ``initiator`` is the I-flag role for this SA's SPIs.

    For an SA created by an IKE rekey, the rekey initiator becomes the
    "original initiator" of the new SA (RFC 7296 §2.18).
    """

    __slots__ = (
        "active",
        "auth_done",
        "children",
        "conn",
        "cookie",
        "created_at",
        "dpd_timer",
        "established_at",
        "ext",
        "frag_supported",
        "fragments",
        "half_open_key",
        "init_i",
        "init_r",
        "initiator",
        "keepalive_timer",
        "keys",
        "last_in",
        "last_out",
        "last_response",
        "local",
        "local_id",
        "msg_id_in",
        "msg_id_out",
        "nat_local",
        "nat_remote",
        "ni",
        "nr",
        "passive",
        "peer_hashes",
        "pending",
        "protector",
        "queued",
        "reauth_timer",
        "rekey_timer",
        "rekeyed_from",
        "remote",
        "remote_id",
        "spi_i",
        "spi_r",
        "state",
        "suite",
        "uid",
    )

    def __init__(
        self,
        uid: int,
        conn: ConnectionConfig | None,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        local: Address,
        remote: Address,
        now: float,
    ) -> None:
        self.uid = uid
        self.conn = conn
        self.initiator = initiator
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.local = local
        self.remote = remote
        self.state = IkeState.CONNECTING
        self.created_at = now
        self.established_at = 0.0
        self.suite: Suite | None = None
        self.keys: IkeKeys | None = None
        self.protector: SkProtector | None = None
        self.ni = b""
        self.nr = b""
        self.init_i = b""  # IKE_SA_INIT request as sent (RealMessage1), until IKE_AUTH is done
        self.init_r = b""  # IKE_SA_INIT response (RealMessage2)
        self.msg_id_out = 0
        self.msg_id_in = 0
        self.pending: Pending | None = None
        self.last_response: tuple[int, list[bytes]] | None = None
        self.queued: list[Task] = []
        self.active: list[Task] = []
        self.passive: list[Task] = []
        self.children: list[ChildSa] = []
        self.local_id = ""
        self.remote_id = ""
        self.auth_done = False
        self.nat_local = False
        self.nat_remote = False
        self.frag_supported = False
        self.peer_hashes: tuple[int, ...] = ()
        self.cookie = b""
        self.fragments: Any = None
        self.half_open_key: tuple[bytes, Address] | None = None
        self.last_in = now
        self.last_out = now
        self.rekey_timer: Timer | None = None
        self.reauth_timer: Timer | None = None
        self.dpd_timer: Timer | None = None
        self.keepalive_timer: Timer | None = None
        self.rekeyed_from: int | None = None
        #: storage for extensions (QCD keeps the peer's tokens here), None until used
        self.ext: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.conn.name if self.conn is not None else "?"

    @property
    def spi_local(self) -> bytes:
        return self.spi_i if self.initiator else self.spi_r

    @property
    def spi_remote(self) -> bytes:
        return self.spi_r if self.initiator else self.spi_i

    @property
    def usable(self) -> bool:
        return self.state in (IkeState.ESTABLISHED, IkeState.REKEYING)

    def ext_get(self, key: str) -> Any:
        return None if self.ext is None else self.ext.get(key)

    def ext_set(self, key: str, value: Any) -> None:
        if self.ext is None:
            self.ext = {}
        self.ext[key] = value

    def __repr__(self) -> str:
        return (
            f"<IkeSa {self.name}#{self.uid} {self.state.value} "
            f"{self.spi_i.hex()}_i {self.spi_r.hex()}_r>"
        )
