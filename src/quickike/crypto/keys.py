"""Key derivation of RFC 7296 §2.13, §2.14, §2.17 and §2.18.

Key material objects hide their contents from ``repr`` so that logging an SA
never leaks a key; the only deliberate exporter is the Wireshark key-log line,
which the operator has to ask for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .algorithms import EncrAlg, IntegAlg, PrfAlg
from .errors import CryptoError
from .proposals import Suite

_MAX_BLOCKS = 255  # the counter octet of prf+ must not wrap (§2.13)


def prf_plus(prf: PrfAlg, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+(K, S) = T1 | T2 | ..., T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n)."""
    if length < 0:
        raise CryptoError("negative prf+ length")
    blocks = -(-length // prf.output_size)
    if blocks > _MAX_BLOCKS:
        raise CryptoError(
            f"prf+ can produce at most {_MAX_BLOCKS * prf.output_size} octets with "
            f"{prf.keyword}, {length} requested"
        )
    keyed = prf.keyed(key)
    out: list[bytes] = []
    t = b""
    for n in range(1, blocks + 1):
        t = keyed(t + seed + bytes((n,)))
        out.append(t)
    return b"".join(out)[:length]


@dataclass(slots=True)
class IkeKeys:
    """The seven IKE SA keys; "i" keys protect what the original initiator sends."""

    sk_d: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_pi: bytes = field(repr=False)
    sk_pr: bytes = field(repr=False)

    def wireshark_line(self, spi_i: bytes, spi_r: bytes, suite: Suite) -> str:
        """One row of Wireshark's ``ikev2_decryption_table`` (interop-lab.md "Captures").

        Format: ``SPIi,SPIr,SK_ei,SK_er,"<encr>",SK_ai,SK_ar,"<integ>"`` in
        unquoted hex; AEAD rows carry key|salt as SK_e* and empty SK_a*.
        This exports secrets: write it only to an operator-requested key log.
        """
        return wireshark_line(spi_i, spi_r, suite.encr, suite.integ, self)


def wireshark_line(
    spi_i: bytes, spi_r: bytes, encr: EncrAlg, integ: IntegAlg | None, keys: IkeKeys
) -> str:
    integ_name = integ.wireshark_name if integ is not None else "NONE [RFC4306]"
    return ",".join(
        [
            spi_i.hex(),
            spi_r.hex(),
            keys.sk_ei.hex(),
            keys.sk_er.hex(),
            f'"{encr.wireshark_name}"',
            keys.sk_ai.hex(),
            keys.sk_ar.hex(),
            f'"{integ_name}"',
        ]
    )


def _integ_key_size(suite: Suite) -> int:
    """SK_a* / integ_* length: none with an AEAD (RFC 5282 §7.1) or without INTEG."""
    return 0 if suite.encr.aead or suite.integ is None else suite.integ.key_size


_IkeSizes = tuple[PrfAlg, int, int, int]


def _ike_sizes(suite: Suite) -> _IkeSizes:
    """(PRF, SK_d, SK_a*, SK_e* lengths); refuses a suite IKE keys cannot come from."""
    if suite.prf is None:
        raise CryptoError("an IKE suite needs a PRF")
    if not suite.encr.aead and suite.integ is None:
        raise CryptoError("a non-AEAD IKE suite needs an integrity algorithm")
    return suite.prf, suite.prf.key_size, _integ_key_size(suite), suite.encr.keymat_size


def _expand_ike(
    ike: _IkeSizes, skeyseed: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> IkeKeys:
    prf, d_len, a_len, e_len = ike
    total = d_len + 2 * a_len + 2 * e_len + 2 * d_len
    km = prf_plus(prf, skeyseed, ni + nr + spi_i + spi_r, total)
    sizes = (d_len, a_len, a_len, e_len, e_len, d_len, d_len)
    parts: list[bytes] = []
    pos = 0
    for n in sizes:
        parts.append(km[pos : pos + n])
        pos += n
    return IkeKeys(*parts)


def derive_ike_keys(
    suite: Suite, shared: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> tuple[bytes, IkeKeys]:
    """SKEYSEED = prf(Ni | Nr, g^ir) and the seven keys (§2.14).

    With an AEAD, SK_ai/SK_ar are empty and SK_ei/SK_er are key | salt
    (RFC 5282 §7.1, RFC 7634 §4).
    """
    sizes = _ike_sizes(suite)
    skeyseed = sizes[0].prf(ni + nr, shared)
    return skeyseed, _expand_ike(sizes, skeyseed, ni, nr, spi_i, spi_r)


def derive_rekeyed_ike_keys(
    old_prf: PrfAlg,
    old_sk_d: bytes,
    new_suite: Suite,
    shared: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
) -> tuple[bytes, IkeKeys]:
    """IKE SA rekey (§2.18): SKEYSEED = prf_old(SK_d_old, g^ir(new) | Ni | Nr).

    ``spi_i``/``ni`` belong to the initiator of the *rekey* exchange, who
    becomes the original initiator of the new IKE SA.
    """
    sizes = _ike_sizes(new_suite)
    skeyseed = old_prf.prf(old_sk_d, shared + ni + nr)
    return skeyseed, _expand_ike(sizes, skeyseed, ni, nr, spi_i, spi_r)


@dataclass(slots=True)
class ChildKeys:
    """KEYMAT of one CHILD SA pair (§2.17).

    ``encr_i``/``integ_i`` protect traffic from the *initiator of the exchange
    that created this CHILD SA* to its responder -- not necessarily from the
    original initiator of the IKE SA.  AEAD encryption keys include the salt;
    ``integ_*`` are then empty.
    """

    encr_i: bytes = field(repr=False)
    integ_i: bytes = field(repr=False)
    encr_r: bytes = field(repr=False)
    integ_r: bytes = field(repr=False)


def derive_child_keys(
    prf: PrfAlg,
    sk_d: bytes,
    suite: Suite,
    ni: bytes,
    nr: bytes,
    shared: bytes | None = None,
) -> ChildKeys:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr), initiator-to-responder keys first."""
    e_len = suite.encr.keymat_size
    a_len = _integ_key_size(suite)
    seed = (shared or b"") + ni + nr
    km = prf_plus(prf, sk_d, seed, 2 * (e_len + a_len))
    return ChildKeys(
        km[:e_len],
        km[e_len : e_len + a_len],
        km[e_len + a_len : 2 * e_len + a_len],
        km[2 * e_len + a_len :],
    )


__all__ = [
    "ChildKeys",
    "IkeKeys",
    "derive_child_keys",
    "derive_ike_keys",
    "derive_rekeyed_ike_keys",
    "prf_plus",
    "wireshark_line",
]
