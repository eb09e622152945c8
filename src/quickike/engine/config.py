"""Configuration the engine consumes: frozen values, no parsing.

The control layer (``quickike.control.config``) turns swanctl.conf text into
these objects; the engine, the simulator and tests build them directly.  Every
duration is a float number of seconds and every default is strongSwan's, so a
``ConnectionConfig()`` built in a test behaves like an empty swanctl.conf
section would in charon.

Only the standard library and ``quickike.wire`` are imported: the engine must
be able to compare identities and traffic selectors without a certificate
library, which is why a tiny DER reader for Distinguished Names lives here.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias, Union

from quickike.wire.enums import IdType

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Raw (unvalidated) settings of sections whose keys a later feature defines.
#: Values are strings; nested sections are nested mappings.
RawTree: TypeAlias = Mapping[str, Union[str, "RawTree"]]


def _empty_map() -> Mapping[str, str]:
    return MappingProxyType({})


def _empty_tree() -> RawTree:
    return MappingProxyType({})


def _empty_tree_map() -> Mapping[str, RawTree]:
    return MappingProxyType({})


# --------------------------------------------------------------------------
# identities
# --------------------------------------------------------------------------

#: strongSwan's ID_ANY (``%any``).  Not an IANA number: it never goes on the
#: wire, it only appears in configured patterns.
ID_ANY: IdType = IdType(0)
#: IKEv1-era types strongSwan still accepts in configured patterns
#: (``10.0.0.0/8`` or ``10.0.0.1-10.0.0.9`` as a remote id).
ID_IPV4_ADDR_SUBNET: IdType = IdType(4)
ID_IPV6_ADDR_SUBNET: IdType = IdType(6)
ID_IPV4_ADDR_RANGE: IdType = IdType(7)
ID_IPV6_ADDR_RANGE: IdType = IdType(8)

_OID_EMAIL = bytes.fromhex("2a864886f70d010901")  # 1.2.840.113549.1.9.1
_TAG_PRINTABLE = 0x13
_TAG_IA5 = 0x16


class IdMatch(enum.IntEnum):
    """How well a concrete identity satisfies a configured one (higher is better).

    Used to pick the most specific connection or secret, as charon does.
    """

    NONE = 0
    ANY = 1
    WILDCARD = 2
    PERFECT = 3


@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity: the ID payload's type and data, plus how it was written.

    ``text`` is for humans and logs only; equality and hashing use the type
    and the encoded data.
    """

    id_type: IdType
    data: bytes
    text: str = field(default="", compare=False)

    @classmethod
    def any(cls) -> Identity:
        return cls(ID_ANY, b"", "%any")

    @classmethod
    def from_address(cls, addr: IPAddress) -> Identity:
        """The identity charon uses when none is configured and no cert exists."""
        id_type = IdType.IPV4_ADDR if addr.version == 4 else IdType.IPV6_ADDR
        return cls(id_type, addr.packed, str(addr))

    @property
    def is_any(self) -> bool:
        return self.id_type == ID_ANY

    @property
    def has_wildcards(self) -> bool:
        if self.is_any:
            return True
        if self.id_type in (IdType.FQDN, IdType.RFC822_ADDR):
            return self.data.startswith(b"*")
        if self.id_type == IdType.DER_ASN1_DN:
            rdns = _dn_rdns(self.data)
            return rdns is not None and any(value == b"*" for _, _, value in rdns)
        return self.id_type in (
            ID_IPV4_ADDR_SUBNET,
            ID_IPV6_ADDR_SUBNET,
            ID_IPV4_ADDR_RANGE,
            ID_IPV6_ADDR_RANGE,
        )

    def match(self, other: Identity) -> IdMatch:
        """How well ``other`` (a received, concrete identity) fits this pattern.

        Follows charon's rules: ``%any`` matches everything; FQDN and RFC822
        compare case-insensitively and accept one leading ``*`` wildcard; DNs
        compare RDN by RDN (case-insensitively for PrintableString and e-mail
        attributes, string type otherwise ignored) with ``*`` as a wildcard
        value; IP addresses may be matched by a configured subnet or range.
        """
        if self.is_any:
            return IdMatch.ANY
        if self.id_type in (ID_IPV4_ADDR_SUBNET, ID_IPV6_ADDR_SUBNET):
            return self._match_subnet(other)
        if self.id_type in (ID_IPV4_ADDR_RANGE, ID_IPV6_ADDR_RANGE):
            return self._match_range(other)
        if self.id_type != other.id_type:
            return IdMatch.NONE
        if self.id_type in (IdType.FQDN, IdType.RFC822_ADDR):
            return self._match_string(other)
        if self.id_type == IdType.DER_ASN1_DN:
            return _match_dn(self.data, other.data)
        return IdMatch.PERFECT if self.data == other.data else IdMatch.NONE

    def matches(self, other: Identity) -> bool:
        """True if ``other`` satisfies this (configured) identity."""
        return self.match(other) > IdMatch.NONE

    def _match_string(self, other: Identity) -> IdMatch:
        mine, theirs = self.data.lower(), other.data.lower()
        if mine == theirs:
            return IdMatch.PERFECT
        if mine == b"*":
            return IdMatch.ANY
        if mine.startswith(b"*") and len(theirs) >= len(mine) - 1 and theirs.endswith(mine[1:]):
            return IdMatch.WILDCARD
        return IdMatch.NONE

    def _match_subnet(self, other: Identity) -> IdMatch:
        size = 4 if self.id_type == ID_IPV4_ADDR_SUBNET else 16
        wanted = IdType.IPV4_ADDR if size == 4 else IdType.IPV6_ADDR
        if other.id_type != wanted or len(other.data) != size or len(self.data) != 2 * size:
            return IdMatch.NONE
        net, mask = self.data[:size], self.data[size:]
        if any((a ^ n) & m for a, n, m in zip(other.data, net, mask, strict=True)):
            return IdMatch.NONE
        return IdMatch.WILDCARD

    def _match_range(self, other: Identity) -> IdMatch:
        size = 4 if self.id_type == ID_IPV4_ADDR_RANGE else 16
        wanted = IdType.IPV4_ADDR if size == 4 else IdType.IPV6_ADDR
        if other.id_type != wanted or len(other.data) != size or len(self.data) != 2 * size:
            return IdMatch.NONE
        low, high = self.data[:size], self.data[size:]
        if not low <= other.data <= high:
            return IdMatch.NONE
        return IdMatch.PERFECT if low == high else IdMatch.WILDCARD

    def __str__(self) -> str:
        return self.text or f"{self.id_type}:{self.data.hex()}"


def _der_tlv(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, start of value, end of value) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        return None
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            return None
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        return None
    return tag, pos, pos + length


def _dn_rdns(dn: bytes) -> list[tuple[bytes, int, bytes]] | None:
    """The (OID, string tag, value) attributes of a DER Name, in order; None if malformed."""
    outer = _der_tlv(dn, 0)
    if outer is None or outer[0] != 0x30 or outer[2] != len(dn):
        return None
    result: list[tuple[bytes, int, bytes]] = []
    pos = outer[1]
    while pos < outer[2]:
        rdn_set = _der_tlv(dn, pos)
        if rdn_set is None or rdn_set[0] != 0x31:
            return None
        inner = rdn_set[1]
        while inner < rdn_set[2]:
            seq = _der_tlv(dn, inner)
            if seq is None or seq[0] != 0x30:
                return None
            oid = _der_tlv(dn, seq[1])
            if oid is None or oid[0] != 0x06:
                return None
            value = _der_tlv(dn, oid[2])
            if value is None or value[2] != seq[2]:
                return None
            result.append((dn[oid[1] : oid[2]], value[0], dn[value[1] : value[2]]))
            inner = seq[2]
        pos = rdn_set[2]
    return result


def _match_dn(pattern: bytes, other: bytes) -> IdMatch:
    if pattern == other:
        return IdMatch.PERFECT
    mine, theirs = _dn_rdns(pattern), _dn_rdns(other)
    if mine is None or theirs is None or len(mine) != len(theirs):
        return IdMatch.NONE
    wildcards = 0
    for (m_oid, m_tag, m_val), (t_oid, t_tag, t_val) in zip(mine, theirs, strict=True):
        if m_oid != t_oid:
            return IdMatch.NONE
        if m_val == b"*":
            wildcards += 1
            continue
        caseless = m_tag == t_tag and (
            m_tag == _TAG_PRINTABLE or (m_tag == _TAG_IA5 and m_oid == _OID_EMAIL)
        )
        if (m_val.lower() != t_val.lower()) if caseless else (m_val != t_val):
            return IdMatch.NONE
    return IdMatch.WILDCARD if wildcards else IdMatch.PERFECT


# --------------------------------------------------------------------------
# addresses and traffic selectors
# --------------------------------------------------------------------------


class AddrKind(enum.Enum):
    ANY = "any"  # %any, %any4, %any6
    ADDRESS = "address"
    SUBNET = "subnet"
    RANGE = "range"
    DNS = "dns"  # resolved by the driver, never by the engine


@dataclass(frozen=True, slots=True)
class AddressSpec:
    """One entry of ``local_addrs`` / ``remote_addrs``.

    ``start``/``end`` bound the addresses it accepts (equal for ADDRESS, None
    for ANY and DNS); ``version`` restricts %any4 / %any6 (None = both).
    """

    kind: AddrKind
    text: str
    start: IPAddress | None = None
    end: IPAddress | None = None
    version: int | None = None

    @classmethod
    def any(cls) -> AddressSpec:
        return cls(AddrKind.ANY, "%any")

    @property
    def is_concrete(self) -> bool:
        """True if the spec names one host an initiator can send to."""
        return self.kind in (AddrKind.ADDRESS, AddrKind.DNS)

    def contains(self, addr: IPAddress) -> bool:
        if self.kind == AddrKind.ANY:
            return self.version is None or addr.version == self.version
        if self.start is None or self.end is None or self.start.version != addr.version:
            return False
        return int(self.start) <= int(addr) <= int(self.end)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class TrafficSelectorConfig:
    """A configured traffic selector (``local_ts`` / ``remote_ts`` entry).

    ``dynamic`` selectors have no addresses yet: the engine substitutes the
    tunnel's outer address (or a virtual IP) with :meth:`bind`.  Ports follow
    RFC 7296: ``start_port=65535, end_port=0`` is the OPAQUE selector.
    """

    dynamic: bool
    start: IPAddress | None = None
    end: IPAddress | None = None
    protocol: int = 0  # 0 = any
    start_port: int = 0
    end_port: int = 65535
    text: str = field(default="", compare=False)

    @classmethod
    def dynamic_any(cls) -> TrafficSelectorConfig:
        return cls(True, text="dynamic")

    @classmethod
    def from_network(
        cls, network: str, protocol: int = 0, start_port: int = 0, end_port: int = 65535
    ) -> TrafficSelectorConfig:
        net = ipaddress.ip_network(network, strict=False)
        return cls(False, net[0], net[-1], protocol, start_port, end_port, network)

    @property
    def is_opaque(self) -> bool:
        return self.start_port == 65535 and self.end_port == 0

    @property
    def version(self) -> int | None:
        return None if self.start is None else self.start.version

    def bind(self, addr: IPAddress) -> TrafficSelectorConfig:
        """This selector with ``dynamic`` replaced by one host address."""
        if not self.dynamic:
            return self
        return TrafficSelectorConfig(
            False, addr, addr, self.protocol, self.start_port, self.end_port, f"{addr}"
        )

    def contains(self, addr: IPAddress, protocol: int = 0, port: int | None = None) -> bool:
        if self.start is None or self.end is None or addr.version != self.start.version:
            return False
        if not int(self.start) <= int(addr) <= int(self.end):
            return False
        if self.protocol and protocol and self.protocol != protocol:
            return False
        return port is None or self.start_port <= port <= self.end_port

    def __str__(self) -> str:
        return self.text or ("dynamic" if self.dynamic else f"{self.start}-{self.end}")


# --------------------------------------------------------------------------
# enums of the connection model
# --------------------------------------------------------------------------


class StartAction(enum.Flag):
    """``start_action``: what loading the configuration does (flags since 5.9.6: trap|start)."""

    NONE = 0
    TRAP = enum.auto()
    START = enum.auto()


class DpdAction(enum.Enum):
    """``dpd_action``: what a dead peer (DPD/retransmit timeout) does to the CHILD_SA."""

    CLEAR = "clear"
    TRAP = "trap"
    RESTART = "restart"


class CloseAction(enum.Enum):
    """``close_action``: what a CHILD_SA closed by the peer leads to."""

    NONE = "none"
    TRAP = "trap"
    START = "start"


class IpsecMode(enum.Enum):
    """Values equal :class:`quickike.engine.dataplane.Mode` so ``Mode(m.value)`` converts."""

    TUNNEL = "tunnel"
    TRANSPORT = "transport"


class Fragmentation(enum.Enum):
    """``fragmentation``: RFC 7383 use.  ACCEPT takes fragments but never sends any."""

    YES = "yes"
    ACCEPT = "accept"
    FORCE = "force"
    NO = "no"


class UniquePolicy(enum.Enum):
    NO = "no"
    NEVER = "never"
    KEEP = "keep"
    REPLACE = "replace"


class SendCertPolicy(enum.Enum):
    IFASKED = "ifasked"
    ALWAYS = "always"
    NEVER = "never"


class AuthClass(enum.Enum):
    PUBKEY = "pubkey"
    PSK = "psk"


class Revocation(enum.Enum):
    STRICT = "strict"
    IFURI = "ifuri"
    RELAXED = "relaxed"


# --------------------------------------------------------------------------
# connections
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """One local or remote authentication round (``local[-suffix] { }``).

    ``id=None`` on a local round means "not configured": use the subject of
    the first certificate, else the local IP address (charon's rule).  On a
    remote round the loader puts ``%any`` there instead.
    ``auth_spec`` is the raw ``auth`` value (e.g. ``ecdsa-384-sha384``,
    ``pubkey-sha256``) for signature-scheme constraints.
    """

    name: str = "local"
    round: int = 0
    auth: AuthClass = AuthClass.PUBKEY
    auth_spec: str = "pubkey"
    id: Identity | None = None
    certs: tuple[str, ...] = ()
    cacerts: tuple[str, ...] = ()
    pubkeys: tuple[str, ...] = ()
    revocation: Revocation = Revocation.RELAXED
    origin: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ChildConfig:
    """One CHILD_SA configuration (``children { NAME { } }``).

    Lifetime defaults follow charon: ``life_time = rekey_time * 1.1``,
    ``rand_time = life_time - rekey_time``; the same for bytes and packets.
    0 disables the respective limit.
    """

    name: str
    local_ts: tuple[TrafficSelectorConfig, ...] = (TrafficSelectorConfig(True, text="dynamic"),)
    remote_ts: tuple[TrafficSelectorConfig, ...] = (TrafficSelectorConfig(True, text="dynamic"),)
    esp_proposals: tuple[str, ...] = ("default",)
    mode: IpsecMode = IpsecMode.TUNNEL
    start_action: StartAction = StartAction.NONE
    dpd_action: DpdAction = DpdAction.CLEAR
    close_action: CloseAction = CloseAction.NONE
    rekey_time: float = 3600.0
    life_time: float = 3960.0
    rand_time: float = 360.0
    rekey_bytes: int = 0
    life_bytes: int = 0
    rand_bytes: int = 0
    rekey_packets: int = 0
    life_packets: int = 0
    rand_packets: int = 0
    inactivity: float = 0.0
    reqid: int = 0
    replay_window: int = 32
    policies: bool = True
    hostaccess: bool = False
    updown: str | None = None
    origin: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """One IKE connection (``connections { NAME { } }``).

    ``version`` is 2 or 0 (0: IKEv2, as charon initiates with IKEv2 and
    quickike answers nothing else).  ``proposals`` / ``esp_proposals`` keep
    strongSwan's keyword strings; the loader has already checked them with
    ``quickike.crypto.proposals.parse_proposals``.

    ``qcd`` enables RFC 6290 for this connection (quickike-specific, default
    yes); ``qcd_options`` holds the raw keys of its ``qcd_options { }``
    section for the QCD plug-in to interpret.
    """

    name: str
    version: int = 0
    local_addrs: tuple[AddressSpec, ...] = (AddressSpec(AddrKind.ANY, "%any"),)
    remote_addrs: tuple[AddressSpec, ...] = (AddressSpec(AddrKind.ANY, "%any"),)
    local_port: int = 500
    remote_port: int = 500
    proposals: tuple[str, ...] = ("default",)
    encap: bool = False
    mobike: bool = True
    dpd_delay: float = 0.0
    dpd_timeout: float = 0.0
    fragmentation: Fragmentation = Fragmentation.YES
    send_certreq: bool = True
    send_cert: SendCertPolicy = SendCertPolicy.IFASKED
    keyingtries: int = 1
    unique: UniquePolicy = UniquePolicy.NO
    rekey_time: float = 14400.0
    reauth_time: float = 0.0
    over_time: float = 1440.0
    rand_time: float = 1440.0
    local: tuple[AuthConfig, ...] = (AuthConfig(),)
    remote: tuple[AuthConfig, ...] = (AuthConfig(name="remote", id=Identity(ID_ANY, b"", "%any")),)
    children: tuple[ChildConfig, ...] = ()
    qcd: bool = True
    qcd_options: Mapping[str, str] = field(default_factory=_empty_map, hash=False)
    origin: str = field(default="", compare=False)

    def child(self, name: str) -> ChildConfig | None:
        for child in self.children:
            if child.name == name:
                return child
        return None

    @property
    def local_id(self) -> Identity | None:
        """Identity of the first local round (None: derive from cert or address)."""
        return self.local[0].id if self.local else None

    @property
    def remote_id(self) -> Identity:
        """Identity pattern of the first remote round (``%any`` if unset)."""
        if self.remote and self.remote[0].id is not None:
            return self.remote[0].id
        return Identity.any()


# --------------------------------------------------------------------------
# secrets
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IkeSecret:
    """A pre-shared key (``secrets { ike-NAME { } }``).  Never printed."""

    name: str
    ids: tuple[Identity, ...]
    secret: bytes = field(repr=False)
    origin: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class PrivateKeySecret:
    """Passphrase for a private key file (``private-``, ``rsa-``, ``ecdsa-``, ``pkcs8-``, ``pkcs12-``)."""

    name: str
    kind: str
    file: str
    secret: bytes = field(repr=False)
    origin: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Secrets:
    ike: tuple[IkeSecret, ...] = ()
    private: tuple[PrivateKeySecret, ...] = ()

    def psk(self, me: Identity | None, other: Identity | None) -> bytes | None:
        """The best pre-shared key for the pair of identities, as charon picks it.

        A secret qualifies if at least one of the two identities matches one
        of its ids; secrets without ids match anything weakly.  The highest
        sum of match qualities wins; earlier secrets win ties.
        """
        best: tuple[int, bytes] | None = None
        for entry in self.ike:
            owners = entry.ids or (Identity.any(),)
            mine = _best_match(owners, me)
            theirs = _best_match(owners, other)
            if (me is not None or other is not None) and not mine and not theirs:
                continue
            score = int(mine) + int(theirs)
            if best is None or score > best[0]:
                best = (score, entry.secret)
        return None if best is None else best[1]


def _best_match(owners: tuple[Identity, ...], ident: Identity | None) -> IdMatch:
    if ident is None:
        return IdMatch.NONE
    return max(owner.match(ident) for owner in owners)


# --------------------------------------------------------------------------
# daemon settings
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetransmitPolicy:
    """charon's retransmission schedule (strongswan.conf ``charon.retransmit_*``).

    After the n-th transmission (n = 0 for the original) the sender waits
    ``timeout * base**n`` seconds, capped at ``limit`` if set and shortened by
    a random fraction of up to ``jitter`` percent.  After ``tries``
    retransmissions a final wait of the same form ends in giving up.  Like
    charon, every wait is truncated to whole milliseconds.  With the defaults
    the packets leave at 0, 4, 11.2, 24.16, 47.488 and 89.478 s and the peer
    is declared dead at 165.06 s (docs.strongswan.org, "Retransmission").
    """

    timeout: float = 4.0
    base: float = 1.8
    tries: int = 5
    jitter: float = 0.0  # percent
    limit: float = 0.0  # seconds, 0 = no cap

    def wait(self, n: int, draw: float = 0.0) -> float:
        """Seconds to wait after transmission ``n``; ``draw`` in [0, 1) is the jitter sample."""
        ms = self.timeout * 1000.0 * self.base**n
        if self.limit:
            ms = min(ms, self.limit * 1000.0)
        if self.jitter:
            ms -= ms * (self.jitter / 100.0) * draw
        return math.floor(ms + 1e-6) / 1000.0

    def delays(self) -> tuple[float, ...]:
        """The ``tries + 1`` nominal waits (no jitter); the last one ends in giving up."""
        return tuple(self.wait(n) for n in range(self.tries + 1))

    def send_times(self) -> tuple[float, ...]:
        """Offsets from the first transmission of the original and every retransmission."""
        times = [0.0]
        for delay in self.delays()[:-1]:
            times.append(round(times[-1] + delay, 6))
        return tuple(times)

    def give_up_after(self) -> float:
        """Seconds from the first transmission until the exchange is abandoned."""
        return round(sum(self.delays()), 6)


@dataclass(frozen=True, slots=True)
class QcdSettings:
    """Daemon-wide Quick Crash Detection (RFC 6290) settings, ``quickike.qcd { }``.

    ``options`` keeps every raw key of the section (including ``enable`` and
    ``secret_length``) so the QCD plug-in can define more without a parser change.
    """

    enable: bool = True
    secret_length: int = 32
    options: RawTree = field(default_factory=_empty_tree, hash=False)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    enable: bool = False
    host: str = "127.0.0.1"
    port: int = 9464


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"  # debug, info, warning, error, critical
    format: LogFormat = LogFormat.TEXT
    file: str | None = None  # None = stderr


class DataplaneKind(enum.Enum):
    NONE = "none"  # IKE only, no packets protected
    USERSPACE = "userspace"  # ESP in userspace over TUN
    RECORDING = "recording"  # records what would be installed (tests, demos)


DEFAULT_STATE_DIR = "/var/lib/quickike"


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """``quickike { }``: the counterpart of strongswan.conf's ``charon { }``.

    Keys shared with charon keep its names and defaults (port, port_nat_t,
    retransmit_*, cookie_threshold, half_open_timeout, fragment_size,
    keep_alive).  ``extra`` holds unknown sub-sections verbatim for features
    that define their own keys.
    """

    port: int = 500
    port_nat_t: int = 4500
    retransmit: RetransmitPolicy = RetransmitPolicy()
    cookie_threshold: int = 10
    half_open_timeout: float = 30.0
    fragment_size: int = 1280
    keep_alive: float = 20.0
    state_dir: str = DEFAULT_STATE_DIR
    vici_socket: str = f"unix://{DEFAULT_STATE_DIR}/quickike.vici"
    qcd: QcdSettings = QcdSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    keylog: str | None = None
    dataplane: DataplaneKind = DataplaneKind.NONE
    extra: Mapping[str, RawTree] = field(default_factory=_empty_tree_map, hash=False)


@dataclass(frozen=True, slots=True)
class QuickikeConfig:
    """Everything one configuration load produced.

    ``sources`` lists every file read (the main file and all includes), so a
    SIGHUP handler can tell whether anything changed.  ``origins`` maps a
    dotted key path (``connections.gw.children.net.esp_proposals``) to the
    ``file:line`` it came from, for messages about raw options.
    """

    connections: Mapping[str, ConnectionConfig] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    secrets: Secrets = Secrets()
    settings: DaemonSettings = DaemonSettings()
    sources: tuple[str, ...] = ()
    origins: Mapping[str, str] = field(default_factory=_empty_map, hash=False, compare=False)

    def origin(self, path: str) -> str | None:
        return self.origins.get(path)
