"""Addresses (``local_addrs``/``remote_addrs``) and traffic selectors (``local_ts``/``remote_ts``).

Traffic selector syntax as in swanctl.conf(5): an address part (CIDR subnet,
single address, ``a-b`` range or ``dynamic``) followed by an optional
``[proto/port]``.  Protocols are names or numbers, ``any`` or empty for all;
ports are numbers, ``a-b`` ranges, service names, ``any``, or ``opaque``
(RFC 4301 OPAQUE: start 65535, end 0).  For ICMP and ICMPv6 the "port" is the
message type, encoded as RFC 4301 section 4.4.1.3 prescribes (type in the
high byte, any code in the low byte).  An empty address part (``[udp]``)
means ``dynamic``.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from quickike.engine.config import AddressSpec, AddrKind, IPAddress, TrafficSelectorConfig

_PROTOCOLS = {
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "ipencap": 4,
    "tcp": 6,
    "udp": 17,
    "ipv6": 41,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "ospf": 89,
    "sctp": 132,
    "udplite": 136,
}
_SERVICES = {
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "dns": 53,
    "http": 80,
    "ntp": 123,
    "snmp": 161,
    "bgp": 179,
    "https": 443,
    "isakmp": 500,
    "syslog": 514,
    "l2tp": 1701,
    "ipsec-nat-t": 4500,
}
_ICMP = (1, 58)
_TS = re.compile(r"^(?P<addr>[^\[\]]*)(?:\[(?P<pp>[^\[\]]*)\])?$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")


def parse_address_spec(text: str) -> AddressSpec:
    s = text.strip()
    lowered = s.lower()
    if lowered == "%any":
        return AddressSpec(AddrKind.ANY, s)
    if lowered in ("%any4", "%any6"):
        return AddressSpec(AddrKind.ANY, s, version=int(lowered[-1]))
    if "/" in s:
        try:
            net = ipaddress.ip_network(s, strict=False)
        except ValueError:
            raise ValueError(f"'{s}' is not a subnet") from None
        return AddressSpec(AddrKind.SUBNET, s, net[0], net[-1])
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        pass
    else:
        return AddressSpec(AddrKind.ADDRESS, s, addr, addr)
    span = _range(s)
    if span is not None:
        return AddressSpec(AddrKind.RANGE, s, span[0], span[1])
    if not _HOSTNAME.match(s):
        raise ValueError(f"'{s}' is not an address, subnet, range or DNS name")
    return AddressSpec(AddrKind.DNS, s)


def _range(s: str) -> tuple[IPAddress, IPAddress] | None:
    if "-" not in s:
        return None
    low_text, _, high_text = s.partition("-")
    try:
        low = ipaddress.ip_address(low_text.strip())
        high = ipaddress.ip_address(high_text.strip())
    except ValueError:
        return None
    if low.version != high.version:
        raise ValueError(f"'{s}' mixes IPv4 and IPv6")
    if int(low) > int(high):
        raise ValueError(f"'{s}' is an empty range (start above end)")
    return low, high


def parse_traffic_selector(text: str) -> TrafficSelectorConfig:
    s = text.strip()
    match = _TS.match(s)
    if not match:
        raise ValueError(f"'{s}' is not a traffic selector")
    protocol, start_port, end_port = 0, 0, 65535
    if match.group("pp") is not None:
        protocol, start_port, end_port = _proto_port(match.group("pp"))
    addr = match.group("addr").strip()
    if addr.lower() in ("", "dynamic", "%dynamic"):
        return TrafficSelectorConfig(True, None, None, protocol, start_port, end_port, s)
    span = _range(addr)
    if span is None:
        try:
            net = ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise ValueError(f"'{addr}' is not a subnet, address or range") from None
        span = (net[0], net[-1])
    return TrafficSelectorConfig(False, span[0], span[1], protocol, start_port, end_port, s)


def _proto_port(text: str) -> tuple[int, int, int]:
    proto_text, _, port_text = text.partition("/")
    protocol = _protocol(proto_text.strip())
    port_text = port_text.strip()
    if port_text.lower() in ("", "any"):
        return protocol, 0, 65535
    if port_text.lower() == "opaque":
        return protocol, 65535, 0
    low_text, dash, high_text = port_text.partition("-")
    low = _port(low_text.strip(), protocol)
    high = _port(high_text.strip(), protocol) if dash else low
    if low > high:
        raise ValueError(f"port range '{port_text}' is empty (start above end)")
    if protocol in _ICMP:
        if low > 255 or high > 255:
            raise ValueError(f"ICMP type '{port_text}' is above 255")
        return protocol, low << 8, (high << 8) | 0xFF
    return protocol, low, high


def _protocol(name: str) -> int:
    lowered = name.lower()
    if lowered in ("", "any"):
        return 0
    if lowered.isascii() and lowered.isdigit():
        number = int(lowered)
        if number > 255:
            raise ValueError(f"protocol {number} is above 255")
        return number
    if lowered in _PROTOCOLS:
        return _PROTOCOLS[lowered]
    try:
        return socket.getprotobyname(lowered)
    except (OSError, UnicodeError, ValueError):
        raise ValueError(f"unknown protocol '{name}'") from None


def _port(name: str, protocol: int) -> int:
    if name.isascii() and name.isdigit():
        number = int(name)
        if number > 65535:
            raise ValueError(f"port {number} is above 65535")
        return number
    if not name:
        raise ValueError("empty port")
    lowered = name.lower()
    if lowered in _SERVICES:
        return _SERVICES[lowered]
    proto_name = {6: "tcp", 17: "udp"}.get(protocol)
    try:
        if proto_name:
            return socket.getservbyname(lowered, proto_name)
        return socket.getservbyname(lowered)
    except (OSError, UnicodeError, ValueError):
        raise ValueError(f"unknown service '{name}'") from None
