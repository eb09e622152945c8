"""Token making and comparing (RFC 6290 §5).

A token is a keyed hash of the IKE SPIs (§5.1), optionally with the taker's
address (§5.2), under a secret that survives reboots: the maker keeps no
per-SA state and can regenerate the token of any SPI pair after a crash.
HMAC rather than the RFC's bare ``HASH(secret | SPIs)`` because HMAC is the
standard keyed construction (no length-extension questions), and the RFC
leaves HASH open.  Tokens up to 32 octets are HMAC-SHA-256 truncated, longer
ones HMAC-SHA-512 truncated: truncated HMAC output is still a PRF output, so
tokens are indistinguishable from random and collisions between SPI pairs
are as unlikely as the length allows.

The taker keeps only SHA-256 digests of the tokens it holds (§9.1: "store
the token in a secure manner") and compares digests with
``hmac.compare_digest``.
"""

from __future__ import annotations

import functools
import hmac as _stdlib_hmac
import ipaddress
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives import hashes, hmac

from ..wire.enums import NotifyType, ProtocolId
from ..wire.payloads import Notify, notify
from .settings import TOKEN_LENGTH_MAX, TOKEN_LENGTH_MIN, TokenMethod

#: what a taker accepts on the wire (RFC 6290 §5: 16..128 octets)
WIRE_TOKEN_MIN = 16
WIRE_TOKEN_MAX = 128
#: tokens looked at per received message (§4.5 asks for at least 4)
TOKENS_PER_MESSAGE = 4

QCD = NotifyType.QUICK_CRASH_DETECTION


@functools.lru_cache(maxsize=4096)
def address_octets(address: str) -> bytes:
    """The taker's address as hashed by §5.2: 4 or 16 octets, IPv4-mapped IPv6 as IPv4.

    Cached: every token given to a peer parses its address text again, and a gateway
    talks to the same peers over and over (parsing costs more than the HMAC).
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.packed


def make_token(secret: bytes, spi_i: bytes, spi_r: bytes, *, length: int = 32,
               method: TokenMethod = TokenMethod.SPI, taker_address: str | None = None) -> bytes:
    """TOKEN_SECRET_DATA for one SPI pair under one secret generation."""
    if not TOKEN_LENGTH_MIN <= length <= TOKEN_LENGTH_MAX:
        raise ValueError(f"token length {length} outside {TOKEN_LENGTH_MIN}..{TOKEN_LENGTH_MAX}")
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise ValueError("IKE SPIs are 8 octets each")
    algorithm: hashes.HashAlgorithm = hashes.SHA256() if length <= 32 else hashes.SHA512()
    mac = hmac.HMAC(secret, algorithm)
    mac.update(spi_i + spi_r)
    if method is TokenMethod.SPI_ADDRESS:
        if taker_address is None:
            raise ValueError("the §5.2 method needs the taker's address")
        mac.update(address_octets(taker_address))
    return mac.finalize()[:length]


def token_notify(token: bytes) -> Notify:
    """N(QCD_TOKEN) with Protocol ID 1 as §4.1 says (erratum 3449's 0 is accepted on receipt)."""
    return notify(QCD, token, protocol=ProtocolId.IKE)


def token_digest(token: bytes) -> bytes:
    h = _SHA256.copy()
    h.update(token)
    return h.finalize()


#: an empty SHA-256 context that is only ever copied (cheaper than a new Hash per token)
_SHA256 = hashes.Hash(hashes.SHA256())


def received_tokens(notifies: Iterable[Notify]) -> tuple[list[bytes], int]:
    """The first four well-sized QCD tokens of a message, and how many were ignored.

    The Protocol ID and SPI fields are not looked at (erratum 3449).
    """
    tokens: list[bytes] = []
    ignored = 0
    for n in notifies:
        if n.type != QCD:
            continue
        if not WIRE_TOKEN_MIN <= len(n.data) <= WIRE_TOKEN_MAX or len(tokens) >= TOKENS_PER_MESSAGE:
            ignored += 1
            continue
        tokens.append(n.data)
    return tokens, ignored


def matches(tokens: Sequence[bytes], digests: Sequence[bytes]) -> bool:
    """True if any received token equals any held one; every pair is compared."""
    found = False
    for token in tokens:
        d = token_digest(token)
        for held in digests:
            found |= _stdlib_hmac.compare_digest(d, held)
    return found


__all__ = [
    "QCD",
    "TOKENS_PER_MESSAGE",
    "WIRE_TOKEN_MAX",
    "WIRE_TOKEN_MIN",
    "address_octets",
    "make_token",
    "matches",
    "received_tokens",
    "token_digest",
    "token_notify",
]
