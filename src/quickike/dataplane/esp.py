"""ESP (RFC 4303) for one direction of one SA.

An :class:`EspEncryptor` protects outbound packets and an :class:`EspDecryptor`
unprotects inbound ones; a CHILD SA has one of each, built from its
:class:`~quickike.engine.dataplane.ChildSaSpec` by :func:`encryptor_for` and
:func:`decryptor_for`.

Transforms: AES-GCM with a 16-octet ICV (RFC 4106), ChaCha20-Poly1305
(RFC 7634) and AES-CBC with HMAC-SHA1-96 / HMAC-SHA2 (RFC 3602, 2404, 4868).
Keying material is cut as the engine cuts it: for AEADs the encryption key
is ``key || 4-octet salt``.

Why the API takes buffers and offsets: the data plane's hot path is
``read -> encrypt -> send`` per packet, and in Python the cost of a packet is
mostly the objects made for it.  ``seal_into`` reads the plaintext from the
caller's receive buffer (writing the ESP trailer into its tail room) and
writes the whole ESP packet into the caller's send buffer; ``open_into`` does
the reverse.  The AEAD objects, nonce and AAD buffers are made once per SA.
``seal``/``open`` are the allocating conveniences for tests and slow paths.

The AEAD IV is the 64-bit sequence number (unique per key, as RFC 4106 §3.1
and RFC 7634 §2 require); AES-CBC uses a random IV from the injected source.
"""

from __future__ import annotations

import hmac as _hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hmac import HMAC

from quickike.crypto.algorithms import integ_alg
from quickike.dataplane.errors import (
    AuthenticationFailed,
    MalformedPacket,
    SaExpired,
    UnsupportedSa,
)
from quickike.dataplane.replay import DEFAULT_WINDOW, ReplayWindow
from quickike.engine.dataplane import ChildCounters, ChildSaSpec, Expiry
from quickike.wire.enums import EncrId

__all__ = [
    "MAX_HEADROOM",
    "MAX_TAILROOM",
    "NH_DUMMY",
    "NH_IPV4",
    "NH_IPV6",
    "EspDecryptor",
    "EspEncryptor",
    "EspTransform",
    "Lifetime",
    "RandomBytes",
    "decryptor_for",
    "encryptor_for",
    "make_decryptor",
    "make_encryptor",
    "supported",
    "transform_for",
]

#: Next Header values of tunnel-mode ESP (RFC 4303 §2.6) and of TFC dummy packets.
NH_IPV4 = 4
NH_IPV6 = 41
NH_DUMMY = 59

#: Largest ESP header (SPI + sequence + IV) of any supported transform: AES-CBC.
MAX_HEADROOM = 8 + 16
#: Largest trailer + ICV: CBC padding (15) + pad length + next header + 32-octet ICV.
MAX_TAILROOM = 15 + 2 + 32

_LOW32 = 0xFFFFFFFF
_SEQ_MAX32 = _LOW32
_SEQ_MAX64 = (1 << 64) - 1
#: Soft-expire this many packets before the sequence number runs out, so the
#: engine can rekey in time (RFC 4303 §3.3.3: the counter must not cycle).
SEQ_SOFT_MARGIN = 1 << 22
_NEVER = 1 << 100

_AEAD_HDR = struct.Struct("!IIQ")  # SPI, low 32 bits of seq, 8-octet IV (= 64-bit seq)
_ESP_HDR = struct.Struct("!II")  # SPI, low 32 bits of seq
_ESN_AAD = struct.Struct("!III")  # SPI, high 32 bits, low 32 bits (RFC 4106 §5)
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
#: RFC 4303 §2.4 default padding: 1, 2, 3, ...; index = pad length.
_PADS = tuple(bytes(range(1, n + 1)) for n in range(256))
#: next header -> whole trailers (padding, pad length, next header) by pad length < 16
_TRAILERS: dict[int, tuple[bytes, ...]] = {}


def _trailers(next_header: int) -> tuple[bytes, ...]:
    t = _TRAILERS.get(next_header)
    if t is None:
        if not 0 <= next_header <= 255:
            raise ValueError(f"next header {next_header}")
        t = _TRAILERS[next_header] = tuple(_PADS[n] + bytes((n, next_header)) for n in range(16))
    return t


for _nh in (4, 41, 59):
    _trailers(_nh)
_HAS_INTO = hasattr(AESGCM, "encrypt_into") and hasattr(ChaCha20Poly1305, "decrypt_into")

RandomBytes = Callable[[int], bytes]
ExpiryHook = Callable[[Expiry], None]
Readable = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class EspTransform:
    """The negotiated transform as the packet code needs it."""

    encr_id: int
    integ_id: int
    key_len: int  # cipher key, without salt
    salt_len: int
    iv_len: int
    align: int  # payload + trailer is a multiple of this (RFC 4303 §2.4)
    icv_len: int
    integ_key_len: int = 0

    @property
    def aead(self) -> bool:
        return self.integ_id == 0

    @property
    def header_len(self) -> int:
        return 8 + self.iv_len

    @property
    def overhead(self) -> int:
        """Worst-case octets ESP adds to a payload (no UDP/IP)."""
        return self.header_len + self.align - 1 + 2 + self.icv_len


def transform_for(encr_id: int, key_bits: int, integ_id: int) -> EspTransform:
    """Map IANA ids to a transform, refusing anything we cannot do correctly."""
    if encr_id == EncrId.AES_GCM_16:
        if key_bits not in (128, 192, 256):
            raise UnsupportedSa(f"AES-GCM key length {key_bits} bits")
        if integ_id:
            raise UnsupportedSa("AES-GCM with a separate integrity transform")
        return EspTransform(encr_id, 0, key_bits // 8, 4, 8, 4, 16)
    if encr_id == EncrId.CHACHA20_POLY1305:
        if key_bits not in (0, 256):
            raise UnsupportedSa(f"ChaCha20-Poly1305 key length {key_bits} bits")
        if integ_id:
            raise UnsupportedSa("ChaCha20-Poly1305 with a separate integrity transform")
        return EspTransform(encr_id, 0, 32, 4, 8, 4, 16)
    if encr_id == EncrId.AES_CBC:
        if key_bits not in (128, 192, 256):
            raise UnsupportedSa(f"AES-CBC key length {key_bits} bits")
        integ = integ_alg(integ_id)  # the HMACs of RFC 2404 and RFC 4868
        if integ is None:
            raise UnsupportedSa(f"AES-CBC with integrity transform {integ_id}")
        return EspTransform(encr_id, integ_id, key_bits // 8, 0, 16, 16, integ.icv_size,
                            integ.key_size)
    raise UnsupportedSa(f"ESP encryption transform {encr_id}")


def supported(encr_id: int, key_bits: int, integ_id: int) -> bool:
    """Whether this data plane can run the transform (for filtering ESP proposals)."""
    try:
        transform_for(encr_id, key_bits, integ_id)
    except UnsupportedSa:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Lifetime:
    """Per-SA limits; 0 = unlimited.  Bytes are inner (plaintext) packet octets."""

    soft_bytes: int = 0
    hard_bytes: int = 0
    soft_packets: int = 0
    hard_packets: int = 0


def _check_keys(t: EspTransform, encr_key: bytes, integ_key: bytes) -> None:
    if len(encr_key) != t.key_len + t.salt_len:
        raise UnsupportedSa(
            f"encryption key is {len(encr_key)} octets, transform needs {t.key_len + t.salt_len}"
        )
    if len(integ_key) != t.integ_key_len:
        raise UnsupportedSa(
            f"integrity key is {len(integ_key)} octets, transform needs {t.integ_key_len}"
        )


def _make_aead(t: EspTransform, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if t.encr_id == EncrId.CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    return AESGCM(key)


def _hash_of(t: EspTransform) -> hashes.HashAlgorithm:
    integ = integ_alg(t.integ_id)
    assert integ is not None  # transform_for accepted it
    return integ.hash


class _EspSa:
    """Bookkeeping shared by both directions: SPI, transform, lifetime state."""

    __slots__ = (
        "_hard_bytes",
        "_hard_packets",
        "_next_bytes",
        "_next_packets",
        "_on_expiry",
        "_soft_bytes",
        "_soft_packets",
        "counters",
        "dead",
        "esn",
        "soft_fired",
        "spi",
        "spi_int",
        "transform",
    )

    def __init__(
        self,
        transform: EspTransform,
        spi: bytes,
        esn: bool,
        counters: ChildCounters | None,
        lifetime: Lifetime,
        on_expiry: ExpiryHook | None,
    ) -> None:
        if len(spi) != 4 or spi == b"\0\0\0\0":
            raise UnsupportedSa("ESP SPI must be 4 octets and not 0")
        self.transform = transform
        self.spi = bytes(spi)
        self.spi_int = _U32.unpack(spi)[0]
        self.esn = esn
        self.counters = counters if counters is not None else ChildCounters()
        self._soft_bytes = lifetime.soft_bytes
        self._hard_bytes = lifetime.hard_bytes
        self._soft_packets = lifetime.soft_packets
        self._hard_packets = lifetime.hard_packets
        self._on_expiry = on_expiry
        self.soft_fired = False
        self.dead = False
        self._next_packets = _NEVER
        self._next_bytes = _NEVER
        self._rearm()

    def _keys(self, encr_key: bytes, integ_key: bytes) -> None:
        """Build the per-SA cipher objects (once: they are the expensive part)."""
        raise NotImplementedError

    @property
    def header_len(self) -> int:
        return self.transform.header_len

    def _rearm(self) -> None:
        """Next thresholds worth stopping at: the soft limit until it fired, then the hard one."""
        sp = self._soft_packets if self._soft_packets and not self.soft_fired else _NEVER
        sb = self._soft_bytes if self._soft_bytes and not self.soft_fired else _NEVER
        self._next_packets = min(sp, self._hard_packets or _NEVER)
        self._next_bytes = min(sb, self._hard_bytes or _NEVER)

    def _limit(self, packets: int, nbytes: int, seq_hard: bool) -> None:
        """A threshold was reached: expire softly once, or die hard (RFC 4301 §4.4.2.1)."""
        hard = (
            seq_hard
            or (self._hard_packets and packets >= self._hard_packets)
            or (self._hard_bytes and nbytes >= self._hard_bytes)
        )
        if hard:
            if not self.dead:
                self.dead = True
                self._next_packets = self._next_bytes = _NEVER
                if self._on_expiry is not None:
                    self._on_expiry(Expiry.HARD)
            return
        if not self.soft_fired:
            self.soft_fired = True
            if self._on_expiry is not None:
                self._on_expiry(Expiry.SOFT)
        self._rearm()


class EspEncryptor(_EspSa):
    """Outbound SA: sequence numbers, padding, encryption, ICV."""

    __slots__ = ("_random", "_seq_max", "_seq_soft", "seq")

    def __init__(
        self,
        transform: EspTransform,
        spi: bytes,
        encr_key: bytes,
        integ_key: bytes,
        *,
        esn: bool,
        counters: ChildCounters | None,
        lifetime: Lifetime,
        on_expiry: ExpiryHook | None,
        random_bytes: RandomBytes,
        next_seq: int,
        seq_soft_margin: int,
    ) -> None:
        super().__init__(transform, spi, esn, counters, lifetime, on_expiry)
        self._random = random_bytes
        self._keys(encr_key, integ_key)
        self._seq_max = _SEQ_MAX64 if esn else _SEQ_MAX32
        if not 1 <= next_seq <= self._seq_max:
            raise ValueError(f"first sequence number {next_seq} out of range")
        #: last sequence number used (0 before the first packet)
        self.seq = next_seq - 1
        self._seq_soft = max(1, self._seq_max - seq_soft_margin)

    def seal_into(
        self,
        src: memoryview,
        offset: int,
        length: int,
        next_header: int,
        out: memoryview,
        now: float,
    ) -> int:
        """Protect ``src[offset:offset+length]`` into ``out[0:]``, return the ESP length.

        ``src`` must have :data:`MAX_TAILROOM` writable octets after the payload
        (the trailer is written there) and ``out`` room for the payload plus
        :data:`MAX_HEADROOM` + :data:`MAX_TAILROOM`.  Raises SaExpired when
        the SA has no packets left (hard lifetime, last sequence number).
        """
        raise NotImplementedError

    def seal(self, payload: Readable, next_header: int, now: float) -> bytes:
        """Allocating form of :meth:`seal_into`."""
        n = len(payload)
        src = memoryview(bytearray(n + MAX_TAILROOM))
        src[:n] = payload
        out = memoryview(bytearray(n + MAX_HEADROOM + MAX_TAILROOM))
        end = self.seal_into(src, 0, n, next_header, out, now)
        return bytes(out[:end])

    def _limit(self, packets: int, nbytes: int, seq_hard: bool) -> None:
        super()._limit(packets, nbytes, seq_hard)
        if self.soft_fired:  # stop re-checking the sequence soft limit on every packet
            self._seq_soft = self._seq_max

    def _next(self) -> int:
        if self.dead:
            raise SaExpired("outbound SA expired")
        # the packet that uses the last number marks the SA dead (see _account), so
        # the counter can never pass its maximum (RFC 4303 §3.3.3: it must not cycle)
        seq = self.seq = self.seq + 1
        return seq

    def _account(self, length: int, seq: int, now: float) -> None:
        c = self.counters
        packets = c.packets_out = c.packets_out + 1
        nbytes = c.bytes_out = c.bytes_out + length
        c.last_out = now
        if packets >= self._next_packets or nbytes >= self._next_bytes or seq >= self._seq_soft:
            self._limit(packets, nbytes, seq >= self._seq_max)


class _AeadEncryptor(EspEncryptor):
    __slots__ = ("_aad", "_aead", "_nonce")

    def _keys(self, encr_key: bytes, integ_key: bytes) -> None:
        t = self.transform
        self._aead = _make_aead(t, encr_key[: t.key_len])
        self._nonce = bytearray(encr_key[t.key_len :] + bytes(8))
        self._aad = bytearray(12)

    def seal_into(
        self,
        src: memoryview,
        offset: int,
        length: int,
        next_header: int,
        out: memoryview,
        now: float,
    ) -> int:
        # the hot path: _next/_account inlined, one slice assignment for the trailer
        if self.dead:
            raise SaExpired("outbound SA expired")
        seq = self.seq = self.seq + 1
        p = offset + length
        pad = -(length + 2) & 3
        end = p + pad + 2
        src[p:end] = (_TRAILERS.get(next_header) or _trailers(next_header))[pad]
        spi = self.spi_int
        _AEAD_HDR.pack_into(out, 0, spi, seq & _LOW32, seq)
        nonce = self._nonce
        _U64.pack_into(nonce, 4, seq)
        aad: Readable
        if self.esn:
            aad = self._aad
            _ESN_AAD.pack_into(aad, 0, spi, seq >> 32, seq & _LOW32)
        else:
            aad = out[0:8]
        total = end - offset + 32
        if _HAS_INTO:
            self._aead.encrypt_into(nonce, src[offset:end], aad, out[16:total])
        else:  # cryptography without encrypt_into
            out[16:total] = self._aead.encrypt(bytes(nonce), bytes(src[offset:end]), bytes(aad))
        c = self.counters
        packets = c.packets_out = c.packets_out + 1
        nbytes = c.bytes_out = c.bytes_out + length
        c.last_out = now
        if packets >= self._next_packets or nbytes >= self._next_bytes or seq >= self._seq_soft:
            self._limit(packets, nbytes, seq >= self._seq_max)
        return total


class _CbcEncryptor(EspEncryptor):
    __slots__ = ("_cipher", "_hmac")

    def _keys(self, encr_key: bytes, integ_key: bytes) -> None:
        self._cipher = algorithms.AES(encr_key)
        self._hmac = HMAC(integ_key, _hash_of(self.transform))

    def seal_into(
        self,
        src: memoryview,
        offset: int,
        length: int,
        next_header: int,
        out: memoryview,
        now: float,
    ) -> int:
        seq = self._next()
        p = offset + length
        pad = -(length + 2) & 15
        end = p + pad + 2
        src[p:end] = (_TRAILERS.get(next_header) or _trailers(next_header))[pad]
        iv = self._random(16)
        _ESP_HDR.pack_into(out, 0, self.spi_int, seq & _LOW32)
        out[8:24] = iv
        ct = Cipher(self._cipher, modes.CBC(iv)).encryptor().update(src[offset:end])
        cend = 24 + len(ct)
        out[24:cend] = ct
        mac = self._hmac.copy()
        mac.update(out[0:cend])
        if self.esn:
            # RFC 4303 §2.2.1: the high bits count in the ICV but are not sent
            mac.update(_U32.pack(seq >> 32))
        icv_len = self.transform.icv_len
        out[cend : cend + icv_len] = mac.finalize()[:icv_len]
        self._account(length, seq, now)
        return cend + icv_len


class EspDecryptor(_EspSa):
    """Inbound SA: anti-replay, ICV, decryption, trailer checks."""

    __slots__ = ("auth_failures", "window")

    def __init__(
        self,
        transform: EspTransform,
        spi: bytes,
        encr_key: bytes,
        integ_key: bytes,
        *,
        esn: bool,
        counters: ChildCounters | None,
        lifetime: Lifetime,
        on_expiry: ExpiryHook | None,
        window: int,
    ) -> None:
        super().__init__(transform, spi, esn, counters, lifetime, on_expiry)
        self._keys(encr_key, integ_key)
        self.window = ReplayWindow(window, esn=esn)
        #: ICV failures seen (a burst may mean a wrong ESN guess or an attack)
        self.auth_failures = 0

    def open_into(
        self, pkt: memoryview, length: int, out: memoryview, now: float
    ) -> tuple[int, int]:
        """Unprotect ``pkt[0:length]`` (SPI already matched) into ``out[0:]``.

        Returns ``(next_header, payload_length)``.  ``out`` needs ``length``
        octets.  Raises ReplayError, AuthenticationFailed, MalformedPacket or
        SaExpired; the replay window only moves for authenticated packets.
        """
        raise NotImplementedError

    def open(self, packet: Readable, now: float) -> tuple[int, bytes]:
        """Allocating form of :meth:`open_into`."""
        out = memoryview(bytearray(len(packet)))
        nh, n = self.open_into(memoryview(packet), len(packet), out, now)
        return nh, bytes(out[:n])

    def _trailer(self, out: memoryview, end: int, now: float) -> tuple[int, int]:
        """Check the decrypted trailer ending at ``out[end]`` and account the packet."""
        pad = out[end - 2]
        nh = out[end - 1]
        plen = end - 2 - pad
        if plen < 0:
            raise MalformedPacket("pad length larger than the payload")
        if pad and out[plen : end - 2] != _PADS[pad]:
            raise MalformedPacket("padding is not 1, 2, 3, ...")
        c = self.counters
        packets = c.packets_in = c.packets_in + 1
        nbytes = c.bytes_in = c.bytes_in + plen
        c.last_in = now
        if packets >= self._next_packets or nbytes >= self._next_bytes:
            self._limit(packets, nbytes, False)
        return nh, plen


class _AeadDecryptor(EspDecryptor):
    __slots__ = ("_aad", "_aead", "_nonce")

    def _keys(self, encr_key: bytes, integ_key: bytes) -> None:
        t = self.transform
        self._aead = _make_aead(t, encr_key[: t.key_len])
        self._nonce = bytearray(encr_key[t.key_len :] + bytes(8))
        self._aad = bytearray(12)

    def open_into(
        self, pkt: memoryview, length: int, out: memoryview, now: float
    ) -> tuple[int, int]:
        # the hot path: header in one unpack, trailer check and accounting inlined
        if self.dead:
            raise SaExpired("inbound SA expired")
        if length < 36 or (length - 32) & 3:  # header, one trailer word, tag
            raise MalformedPacket(f"ESP packet of {length} octets")
        _, seql, iv = _AEAD_HDR.unpack_from(pkt, 0)
        window = self.window
        seq = window.check(seql)
        nonce = self._nonce
        _U64.pack_into(nonce, 4, iv)
        aad: Readable
        if self.esn:
            aad = self._aad
            _ESN_AAD.pack_into(aad, 0, self.spi_int, seq >> 32, seql)
        else:
            aad = pkt[0:8]
        end = length - 32
        try:
            if _HAS_INTO:
                self._aead.decrypt_into(nonce, pkt[16:length], aad, out[:end])
            else:  # cryptography without decrypt_into
                out[:end] = self._aead.decrypt(bytes(nonce), bytes(pkt[16:length]), bytes(aad))
        except InvalidTag:
            self.auth_failures += 1
            raise AuthenticationFailed("ESP ICV mismatch") from None
        window.update(seq)
        pad = out[end - 2]
        plen = end - 2 - pad
        if pad:
            if plen < 0:
                raise MalformedPacket("pad length larger than the payload")
            if out[plen : end - 2] != _PADS[pad]:
                raise MalformedPacket("padding is not 1, 2, 3, ...")
        c = self.counters
        packets = c.packets_in = c.packets_in + 1
        nbytes = c.bytes_in = c.bytes_in + plen
        c.last_in = now
        if packets >= self._next_packets or nbytes >= self._next_bytes:
            self._limit(packets, nbytes, False)
        return out[end - 1], plen


class _CbcDecryptor(EspDecryptor):
    __slots__ = ("_cipher", "_hmac")

    def _keys(self, encr_key: bytes, integ_key: bytes) -> None:
        self._cipher = algorithms.AES(encr_key)
        self._hmac = HMAC(integ_key, _hash_of(self.transform))

    def open_into(
        self, pkt: memoryview, length: int, out: memoryview, now: float
    ) -> tuple[int, int]:
        if self.dead:
            raise SaExpired("inbound SA expired")
        icv_len = self.transform.icv_len
        clen = length - 24 - icv_len
        if clen < 16 or clen & 15:
            raise MalformedPacket(f"ESP packet of {length} octets")
        window = self.window
        seql = _U32.unpack_from(pkt, 4)[0]
        seq = window.check(seql)
        mac = self._hmac.copy()
        mac.update(pkt[0 : length - icv_len])
        if self.esn:
            mac.update(_U32.pack(seq >> 32))
        if not _hmac.compare_digest(mac.finalize()[:icv_len], pkt[length - icv_len : length]):
            self.auth_failures += 1
            raise AuthenticationFailed("ESP ICV mismatch")
        dec = Cipher(self._cipher, modes.CBC(bytes(pkt[8:24]))).decryptor()
        out[0:clen] = dec.update(pkt[24 : 24 + clen])
        window.update(seq)
        return self._trailer(out, clen, now)


def make_encryptor(
    transform: EspTransform,
    spi: bytes,
    encr_key: bytes,
    integ_key: bytes = b"",
    *,
    esn: bool = False,
    counters: ChildCounters | None = None,
    lifetime: Lifetime = Lifetime(),
    on_expiry: ExpiryHook | None = None,
    random_bytes: RandomBytes = os.urandom,
    next_seq: int = 1,
    seq_soft_margin: int = SEQ_SOFT_MARGIN,
) -> EspEncryptor:
    """Outbound SA for ``transform``; ``random_bytes`` feeds the AES-CBC IVs."""
    _check_keys(transform, encr_key, integ_key)
    cls = _AeadEncryptor if transform.aead else _CbcEncryptor
    return cls(
        transform,
        spi,
        encr_key,
        integ_key,
        esn=esn,
        counters=counters,
        lifetime=lifetime,
        on_expiry=on_expiry,
        random_bytes=random_bytes,
        next_seq=next_seq,
        seq_soft_margin=seq_soft_margin,
    )


def make_decryptor(
    transform: EspTransform,
    spi: bytes,
    encr_key: bytes,
    integ_key: bytes = b"",
    *,
    esn: bool = False,
    counters: ChildCounters | None = None,
    lifetime: Lifetime = Lifetime(),
    on_expiry: ExpiryHook | None = None,
    window: int = DEFAULT_WINDOW,
) -> EspDecryptor:
    """Inbound SA for ``transform`` with an anti-replay window of ``window`` packets."""
    _check_keys(transform, encr_key, integ_key)
    cls = _AeadDecryptor if transform.aead else _CbcDecryptor
    return cls(
        transform,
        spi,
        encr_key,
        integ_key,
        esn=esn,
        counters=counters,
        lifetime=lifetime,
        on_expiry=on_expiry,
        window=window,
    )


def _lifetime(spec: ChildSaSpec) -> Lifetime:
    return Lifetime(spec.soft_bytes, spec.hard_bytes, spec.soft_packets, spec.hard_packets)


def encryptor_for(
    spec: ChildSaSpec,
    *,
    counters: ChildCounters | None = None,
    on_expiry: ExpiryHook | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> EspEncryptor:
    """The outbound half of a CHILD SA (``spi_out``, ``*_key_out``)."""
    t = transform_for(spec.encr_id, spec.encr_key_bits, spec.integ_id)
    return make_encryptor(
        t,
        spec.spi_out,
        spec.encr_key_out,
        spec.integ_key_out,
        esn=spec.esn,
        counters=counters,
        lifetime=_lifetime(spec),
        on_expiry=on_expiry,
        random_bytes=random_bytes,
    )


def decryptor_for(
    spec: ChildSaSpec,
    *,
    counters: ChildCounters | None = None,
    on_expiry: ExpiryHook | None = None,
    window: int = DEFAULT_WINDOW,
) -> EspDecryptor:
    """The inbound half of a CHILD SA (``spi_in``, ``*_key_in``)."""
    t = transform_for(spec.encr_id, spec.encr_key_bits, spec.integ_id)
    return make_decryptor(
        t,
        spec.spi_in,
        spec.encr_key_in,
        spec.integ_key_in,
        esn=spec.esn,
        counters=counters,
        lifetime=_lifetime(spec),
        on_expiry=on_expiry,
        window=window,
    )
