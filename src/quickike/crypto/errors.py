"""Typed errors of the crypto layer.

The engine maps each to a protocol reaction: IntegrityError means "drop the
message silently" (RFC 7296 §2.21), InvalidPublicValue means "drop or
INVALID_SYNTAX" (RFC 6989), AuthError means AUTHENTICATION_FAILED, and
ProposalError is a configuration mistake reported to the operator.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Anything the crypto layer refuses: bad lengths, bad padding, impossible sizes."""


class IntegrityError(CryptoError):
    """The ICV or AEAD tag of a protected message does not verify."""


class InvalidPublicValue(CryptoError):
    """A peer's KE data fails the RFC 6989 checks (range, curve membership, length)."""


class AuthError(CryptoError):
    """An AUTH payload, signature, certificate chain or identity does not verify."""


class ProposalError(ValueError):
    """A proposal string or a negotiated proposal is unacceptable.

    ``keyword`` names the offending keyword (or proposal text) so that a
    configuration error can point at the exact token.
    """

    def __init__(self, message: str, keyword: str = "") -> None:
        super().__init__(message)
        self.keyword = keyword


__all__ = ["AuthError", "CryptoError", "IntegrityError", "InvalidPublicValue", "ProposalError"]
