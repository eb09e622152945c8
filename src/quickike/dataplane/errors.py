"""Typed reasons for dropping a packet or refusing an SA.

The data plane runs inside a long-lived daemon fed by the network, so every
bad packet must end in one of these (counted, then dropped), never in an
unexpected exception that could stop the reader.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "DataPlaneError",
    "EspError",
    "MalformedPacket",
    "SaExpired",
    "UnsupportedSa",
]


class DataPlaneError(Exception):
    """Base of every error the data plane raises on purpose."""


class UnsupportedSa(DataPlaneError):
    """A ChildSaSpec asks for something this data plane cannot do (transform, mode, keys)."""


class EspError(DataPlaneError):
    """A packet could not be protected or unprotected; the packet is dropped."""


class MalformedPacket(EspError):
    """Too short, misaligned, or a trailer that does not add up."""


class AuthenticationFailed(EspError):
    """ICV (or AEAD tag) mismatch: forged, corrupted, or the wrong key/ESN guess."""


class SaExpired(EspError):
    """The SA reached its hard lifetime or its last sequence number and carries no more packets."""
