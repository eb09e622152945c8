"""The Encrypted payload SK (RFC 7296 §3.14, RFC 5282, RFC 7634) and SKF (RFC 7383).

One :class:`SkProtector` per IKE SA holds the keys of both directions. CBC
ciphers and MACs are keyed once; an AEAD is keyed per message instead (about
1 µs): cryptography's AEAD objects hold a ready OpenSSL context of about
2.4 kB each, which for two directions was half the memory of an idle
established SA, while an established SA sends a protected message only every
few minutes (DPD, rekeys).

Layouts handled here (the codec leaves SK/SKF opaque):

* CBC + HMAC: ``hdr(4) | IV(16) | E(payloads | pad | padlen) | ICV``; the ICV
  covers the whole message from the IKE header to the pad length, after
  encryption, and is checked before anything is decrypted.  The IV is
  unpredictable: see :class:`~quickike.crypto.algorithms.CbcCipher`.
* AEAD: ``hdr(4) | IV(8) | E(payloads | pad | padlen) | tag``; nonce =
  salt | IV, AAD = IKE header through the SK header (for SKF: through its
  8-octet header), never the IV.  Outbound IVs are a per-key counter that
  starts at a random value, which makes them unique per key (RFC 5282 §3).
"""

from __future__ import annotations

import struct

from quickike.wire.enums import PayloadType
from quickike.wire.header import HEADER_SIZE, pack_header

from .algorithms import CbcCipher, KeyedMac
from .errors import CryptoError, IntegrityError
from .keys import IkeKeys
from .proposals import Suite
from .rng import RandomSource

_GENERIC = struct.Struct("!BBH")
_SKF_HDR = struct.Struct("!BBHHH")
_U32 = struct.Struct("!I")
_SK = int(PayloadType.SK)
_SKF = int(PayloadType.SKF)
_MASK64 = (1 << 64) - 1
_MAX_SK_LEN = 0xFFFF


class SkProtector:
    """Protects and unprotects the messages of one IKE SA.

    ``original_initiator`` is True on the side that initiated the IKE SA (or
    the exchange that rekeyed it into existence, RFC 7296 §2.18): that side
    sends with SK_ei/SK_ai and receives with SK_er/SK_ar.
    """

    __slots__ = (
        "_aead",
        "_block",
        "_encr",
        "_icv",
        "_in_cbc",
        "_in_key",
        "_in_mac",
        "_iv",
        "_iv_size",
        "_out_cbc",
        "_out_key",
        "_out_mac",
        "_rng",
        "suite",
    )

    def __init__(
        self, suite: Suite, keys: IkeKeys, original_initiator: bool, rng: RandomSource
    ) -> None:
        self.suite = suite
        self._rng = rng
        encr = suite.encr
        if original_initiator:
            out_e, out_a, in_e, in_a = keys.sk_ei, keys.sk_ai, keys.sk_er, keys.sk_ar
        else:
            out_e, out_a, in_e, in_a = keys.sk_er, keys.sk_ar, keys.sk_ei, keys.sk_ai
        self._aead = encr.aead
        self._iv_size = encr.iv_size
        self._block = encr.block_size
        self._encr = encr
        #: AEAD keying material (key | salt) per direction; the cipher is made per message
        self._out_key = b""
        self._in_key = b""
        self._out_cbc: CbcCipher | None = None
        self._in_cbc: CbcCipher | None = None
        self._out_mac: KeyedMac | None = None
        self._in_mac: KeyedMac | None = None
        if encr.aead:
            # refuse a bad key length now, not at the first message (the same check as
            # aead_cipher's, without building a cipher object that would be thrown away)
            if len(out_e) != encr.keymat_size or len(in_e) != encr.keymat_size:
                raise CryptoError(f"{encr.keyword} needs {encr.keymat_size} octets of key material")
            self._out_key, self._in_key = out_e, in_e
            self._icv = encr.icv_size
            self._iv = int.from_bytes(rng.bytes(8), "big")
        else:
            if suite.integ is None:
                raise CryptoError(f"{encr.keyword} needs an integrity algorithm")
            self._out_cbc = encr.cbc_cipher(out_e)
            self._in_cbc = encr.cbc_cipher(in_e)
            self._out_mac = suite.integ.keyed(out_a)
            self._in_mac = suite.integ.keyed(in_a)
            self._icv = suite.integ.icv_size
            self._iv = 0

    # ---------------------------------------------------------------- sizes

    def _body_len(self, inner_len: int) -> int:
        """IV | ciphertext (payloads, minimal pad, pad length) | ICV."""
        if self._aead:
            return self._iv_size + inner_len + 1 + self._icv
        bs = self._block
        return self._iv_size + (inner_len + bs) // bs * bs + self._icv

    def message_size(self, inner_len: int, prefix_len: int = 0) -> int:
        """Length of the whole protected message for ``inner_len`` octets of payloads."""
        return HEADER_SIZE + prefix_len + 4 + self._body_len(inner_len)

    def overhead(self, inner_len: int) -> int:
        """Octets the IKE header and the SK payload add to ``inner_len`` octets of payloads."""
        return self.message_size(inner_len) - inner_len

    def max_fragment_payload(self, max_datagram: int) -> int:
        """Most plaintext octets one SKF message of ``max_datagram`` octets can carry."""
        avail = max_datagram - HEADER_SIZE - 8 - self._iv_size - self._icv
        if self._aead:
            return avail - 1
        return avail // self._block * self._block - 1

    # ---------------------------------------------------------------- core

    def _seal(self, head: bytes, inner: bytes) -> bytes:
        """``head`` is everything up to and including the SK/SKF header, lengths final."""
        if self._aead:
            iv = self._iv.to_bytes(8, "big")
            self._iv = (self._iv + 1) & _MASK64
            return head + iv + self._encr.aead_cipher(self._out_key).seal(iv, inner + b"\x00", head)
        assert self._out_cbc is not None and self._out_mac is not None
        pad = -(len(inner) + 1) % self._block
        msg = head + self._out_cbc.seal(self._rng.bytes(16), inner + bytes(pad) + bytes((pad,)))
        return msg + self._out_mac.mac(msg)

    def _open(self, data: bytes, body_start: int) -> bytes:
        """Verify and decrypt ``data[body_start:]``; returns payloads without padding."""
        body_len = len(data) - body_start
        if self._aead:
            if body_len < self._iv_size + 1 + self._icv:
                raise CryptoError(f"encrypted payload of {body_len} octets is too short")
            iv = data[body_start : body_start + self._iv_size]
            cipher = self._encr.aead_cipher(self._in_key)
            pt = cipher.open(iv, data[body_start + self._iv_size :], data[:body_start])
        else:
            assert self._in_cbc is not None and self._in_mac is not None
            bs, icv = self._block, self._icv
            ct_len = body_len - self._iv_size - icv
            if ct_len < bs or ct_len % bs:
                raise CryptoError(f"encrypted payload of {body_len} octets is not block aligned")
            if not self._in_mac.verify(data[:-icv], data[-icv:]):
                raise IntegrityError("ICV mismatch")
            iv = data[body_start : body_start + self._iv_size]
            pt = self._in_cbc.open(iv, data[body_start + self._iv_size : -icv])
        pad = pt[-1]
        if pad + 1 > len(pt):
            raise CryptoError(f"pad length {pad} exceeds the {len(pt)} decrypted octets")
        return pt[: len(pt) - pad - 1]

    # ---------------------------------------------------------------- SK

    def protect(
        self,
        spi_i: bytes,
        spi_r: bytes,
        exchange: int,
        flags: int,
        message_id: int,
        first_inner: int,
        inner: bytes,
        unprotected_prefix: bytes = b"",
        prefix_first: int = 0,
    ) -> bytes:
        """The complete protected message: header, [unprotected payloads,] SK.

        ``inner`` is the encoded inner payload chain whose first type is
        ``first_inner``.  ``unprotected_prefix`` is an encoded chain sent in
        the clear before SK (rare); its first type goes in ``prefix_first``
        and its last Next field is rewritten to SK here.
        """
        prefix = _chain_to_sk(unprotected_prefix, prefix_first)
        sk_len = 4 + self._body_len(len(inner))
        if sk_len > _MAX_SK_LEN:
            raise CryptoError(f"SK payload of {sk_len} octets does not fit; fragment it")
        total = HEADER_SIZE + len(prefix) + sk_len
        head = (
            pack_header(
                spi_i, spi_r, prefix_first if prefix else _SK, exchange, flags, message_id, total
            )
            + prefix
            + _GENERIC.pack(first_inner, 0, sk_len)
        )
        return self._seal(head, inner)

    def unprotect(self, data: bytes | memoryview, sk_offset: int) -> tuple[int, bytes]:
        """(first inner payload type, inner payload chain) of a received message.

        ``sk_offset`` is where the SK generic header starts (``Message.sk_offset``).
        Raises IntegrityError for a bad ICV/tag and CryptoError for anything
        malformed; nothing else, whatever the input.
        """
        try:
            buf = bytes(data)
            n = len(buf)
            if not HEADER_SIZE <= sk_offset <= n - 4:
                raise CryptoError(f"SK offset {sk_offset} outside a {n}-octet message")
            if _U32.unpack_from(buf, 24)[0] != n:
                raise CryptoError("IKE header length does not match the message")
            nxt, _, sk_len = _GENERIC.unpack_from(buf, sk_offset)
            if sk_offset + sk_len != n:
                raise CryptoError("SK payload length does not reach the end of the message")
            return nxt, self._open(buf, sk_offset + 4)
        except CryptoError:
            raise
        except Exception as e:  # a bug or an odd input must not escape as anything else
            raise CryptoError(f"cannot unprotect message: {e!r}") from e

    # ---------------------------------------------------------------- SKF (RFC 7383)

    def protect_fragments(
        self,
        spi_i: bytes,
        spi_r: bytes,
        exchange: int,
        flags: int,
        message_id: int,
        first_inner: int,
        inner: bytes,
        max_datagram: int,
    ) -> list[bytes]:
        """Split ``inner`` into SKF messages of at most ``max_datagram`` octets each.

        ``max_datagram`` counts the IKE message only (subtract the non-ESP
        marker and IP/UDP headers first).  Fragment 1 carries the inner type
        in its Next field, the others 0 (RFC 7383 §2.5).
        """
        chunk = self.max_fragment_payload(max_datagram)
        if chunk < 1:
            raise CryptoError(f"{max_datagram} octets leave no room for fragment data")
        pieces = [inner[i : i + chunk] for i in range(0, len(inner), chunk)] or [b""]
        total = len(pieces)
        if total > 0xFFFF:
            raise CryptoError(f"{total} fragments exceed the 16-bit fragment counter")
        out: list[bytes] = []
        for number, piece in enumerate(pieces, 1):
            skf_len = 8 + self._body_len(len(piece))
            head = pack_header(
                spi_i, spi_r, _SKF, exchange, flags, message_id, HEADER_SIZE + skf_len
            ) + _SKF_HDR.pack(first_inner if number == 1 else 0, 0, skf_len, number, total)
            out.append(self._seal(head, piece))
        return out

    def unprotect_fragment(
        self, data: bytes | memoryview, skf_offset: int
    ) -> tuple[int, int, int, bytes]:
        """(fragment number, total fragments, next payload, plaintext) of one SKF message."""
        try:
            buf = bytes(data)
            n = len(buf)
            if not HEADER_SIZE <= skf_offset <= n - 8:
                raise CryptoError(f"SKF offset {skf_offset} outside a {n}-octet message")
            if _U32.unpack_from(buf, 24)[0] != n:
                raise CryptoError("IKE header length does not match the message")
            nxt, _, skf_len, number, total = _SKF_HDR.unpack_from(buf, skf_offset)
            if skf_offset + skf_len != n:
                raise CryptoError("SKF payload length does not reach the end of the message")
            if not 1 <= number <= total:
                raise CryptoError(f"fragment {number} of {total} is impossible")
            return number, total, nxt, self._open(buf, skf_offset + 8)
        except CryptoError:
            raise
        except Exception as e:
            raise CryptoError(f"cannot unprotect fragment: {e!r}") from e


def _chain_to_sk(prefix: bytes, prefix_first: int) -> bytes:
    """Point the last generic header of an encoded chain at SK."""
    if not prefix:
        return b""
    if not prefix_first:
        raise CryptoError("an unprotected prefix needs the type of its first payload")
    off, last, n = 0, -1, len(prefix)
    while off < n:
        if n - off < 4:
            raise CryptoError("unprotected prefix ends inside a payload header")
        length = int.from_bytes(prefix[off + 2 : off + 4], "big")
        if length < 4 or off + length > n:
            raise CryptoError("unprotected prefix has a bad payload length")
        last, off = off, off + length
    buf = bytearray(prefix)
    buf[last] = _SK
    return bytes(buf)


__all__ = ["SkProtector"]
