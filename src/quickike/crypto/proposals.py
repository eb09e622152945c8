"""Proposals: strongSwan's keyword syntax, SA payloads, and RFC 7296 §2.7 selection.

Three shapes of the same thing:

* :class:`ProposalSpec` -- what the operator configured, possibly several
  algorithms per transform type, written in swanctl.conf keyword syntax
  (``aes256gcm16-prfsha256-x25519``, ``aes128-sha256-modp2048``, ``default``);
* the wire :class:`~quickike.wire.payloads.SA` payload built from specs, or
  received from the peer;
* :class:`Suite` -- the single algorithm of each type that both sides agreed
  on, which is what keys and protectors are built from.

Parsing follows strongSwan's ``proposal_create_from_string`` rules (read for
behaviour only): an IKE proposal without a PRF takes the PRF of each integrity
algorithm; AEAD and classic ciphers cannot share a proposal; INTEG is dropped
from AEAD proposals; ESP without ``esn``/``noesn`` means ``noesn``.
Deliberate difference: an ESP proposal with a classic cipher and no integrity
algorithm is rejected (strongSwan accepts it; RFC 8221 forbids it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from quickike.wire.enums import DhGroup, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType
from quickike.wire.payloads import SA, Proposal, Transform

from .algorithms import (
    DH_ALGS,
    ENCR_ALGS,
    INTEG_ALGS,
    PRF_ALGS,
    DhAlg,
    EncrAlg,
    IntegAlg,
    PrfAlg,
)
from .errors import ProposalError

# ------------------------------------------------------------------ keyword tables

EncrKey = tuple[EncrId, int | None]

# Enum members used per offered and answered transform, as module constants:
# ``EnumClass.MEMBER`` goes through EnumType's attribute hook and costs several times a
# global lookup.
_T_ENCR, _T_PRF, _T_INTEG, _T_DH, _T_ESN = (
    TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.DH, TransformType.ESN
)
_P_IKE, _P_ESP = ProtocolId.IKE, ProtocolId.ESP
_DH_NONE, _INTEG_NONE = DhGroup.NONE, IntegId.NONE
_NO_ESN, _ESN = EsnId.NO_ESN, EsnId.ESN
_CHACHA = EncrId.CHACHA20_POLY1305

_ENCR_KEYWORDS: dict[str, EncrKey] = {"aes": (EncrId.AES_CBC, 128)}
for _bits in (128, 192, 256):
    _ENCR_KEYWORDS[f"aes{_bits}"] = (EncrId.AES_CBC, _bits)
    for _eid, _icv, _alias in (
        (EncrId.AES_GCM_8, 8, 64),
        (EncrId.AES_GCM_12, 12, 96),
        (EncrId.AES_GCM_16, 16, 128),
    ):
        _ENCR_KEYWORDS[f"aes{_bits}gcm{_icv}"] = (_eid, _bits)
        _ENCR_KEYWORDS[f"aes{_bits}gcm{_alias}"] = (_eid, _bits)
    _ENCR_KEYWORDS[f"aes{_bits}gcm"] = (EncrId.AES_GCM_16, _bits)
_ENCR_KEYWORDS["chacha20poly1305"] = (EncrId.CHACHA20_POLY1305, None)

_INTEG_KEYWORDS: dict[str, IntegId] = {
    "sha": IntegId.HMAC_SHA1_96,
    "sha1": IntegId.HMAC_SHA1_96,
    "sha256": IntegId.HMAC_SHA2_256_128,
    "sha2_256": IntegId.HMAC_SHA2_256_128,
    "sha384": IntegId.HMAC_SHA2_384_192,
    "sha2_384": IntegId.HMAC_SHA2_384_192,
    "sha512": IntegId.HMAC_SHA2_512_256,
    "sha2_512": IntegId.HMAC_SHA2_512_256,
}
_PRF_KEYWORDS: dict[str, PrfId] = {alg.keyword: PrfId(i) for i, alg in PRF_ALGS.items()}
_DH_KEYWORDS: dict[str, DhGroup] = {alg.keyword: DhGroup(i) for i, alg in DH_ALGS.items()}
_DH_KEYWORDS.update(
    {"curve25519": DhGroup.CURVE25519, "curve448": DhGroup.CURVE448,
     "none": DhGroup.NONE, "modpnone": DhGroup.NONE}
)
_ESN_KEYWORDS: dict[str, EsnId] = {"esn": EsnId.ESN, "noesn": EsnId.NO_ESN}

#: strongSwan keywords for algorithms quickike does not implement (better error text).
_KNOWN_UNSUPPORTED = frozenset(
    {
        "null", "des", "3des", "cast128", "blowfish", "blowfish128", "blowfish192", "blowfish256",
        "aes128ctr", "aes192ctr", "aes256ctr", "aes128gmac", "aes192gmac", "aes256gmac",
        "chacha20poly1305compat", "camellia", "camellia128", "camellia192", "camellia256",
        "serpent", "twofish", "md5", "md5_128", "sha1_160", "sha256_96", "sha2_256_96", "aesxcbc",
        "aescmac", "camelliaxcbc", "prfmd5", "prfaesxcbc", "prfaescmac", "prfcamelliaxcbc",
        "modpnull", "modp768", "modp1024", "modp1536", "modp6144", "modp8192", "modp1024s160",
        "modp2048s224", "modp2048s256", "ecp192", "ecp224", "ecp224bp", "ecp256bp", "ecp384bp",
        "ecp512bp",
    }
)
_UNSUPPORTED_FAMILIES = re.compile(r"(aes|camellia)(128|192|256)?(ccm|ctr)\d*|ntru\d+|kyber\d")


def encr_of(key: EncrKey) -> EncrAlg:
    """The algorithm a configured (ID, key length) pair names; no length means 256 bits."""
    eid, bits = key
    return ENCR_ALGS[(int(eid), 256 if bits is None else bits)]


_PRF_OF_INTEG: dict[IntegId, PrfId] = {
    IntegId.HMAC_SHA1_96: PrfId.HMAC_SHA1,
    IntegId.HMAC_SHA2_256_128: PrfId.HMAC_SHA2_256,
    IntegId.HMAC_SHA2_384_192: PrfId.HMAC_SHA2_384,
    IntegId.HMAC_SHA2_512_256: PrfId.HMAC_SHA2_512,
}

# ------------------------------------------------------------------ configured proposals


@dataclass(slots=True)
class ProposalSpec:
    """A configured proposal; the order inside each list is the preference."""

    protocol: ProtocolId
    encr: list[EncrKey] = field(default_factory=list)
    integ: list[IntegId] = field(default_factory=list)
    prf: list[PrfId] = field(default_factory=list)
    dh: list[DhGroup] = field(default_factory=list)
    esn: list[EsnId] = field(default_factory=list)

    @property
    def aead(self) -> bool:
        return bool(self.encr) and all(encr_of(k).aead for k in self.encr)


T = TypeVar("T")


def _add(lst: list[T], item: T) -> None:
    if item not in lst:
        lst.append(item)


def _check(spec: ProposalSpec, text: str) -> ProposalSpec:
    """strongSwan's check_proposal(), restricted to IKE and ESP."""
    if spec.protocol == ProtocolId.IKE:
        if not spec.prf:
            for i in spec.integ:
                _add(spec.prf, _PRF_OF_INTEG[i])
        if not spec.prf:
            raise ProposalError(f"a PRF algorithm is mandatory in IKE proposals: {text!r}", text)
        spec.dh = [g for g in spec.dh if g != DhGroup.NONE]
        if not spec.dh:
            raise ProposalError(f"a DH group is mandatory in IKE proposals: {text!r}", text)
        if spec.esn:
            raise ProposalError(f"esn/noesn is not valid in IKE proposals: {text!r}", text)
    else:
        spec.prf = []
    if not spec.encr:
        raise ProposalError(f"an encryption algorithm is mandatory: {text!r}", text)
    aead = [encr_of(k).aead for k in spec.encr]
    if any(aead) and not all(aead):
        raise ProposalError(
            f"classic and AEAD encryption algorithms cannot share a proposal: {text!r}", text
        )
    if all(aead):
        spec.integ = []  # RFC 5282 §8: no INTEG transform in an all-AEAD proposal
    elif not spec.integ:
        raise ProposalError(
            f"an integrity algorithm is mandatory with classic encryption: {text!r}", text
        )
    if spec.protocol == ProtocolId.ESP and not spec.esn:
        spec.esn = [EsnId.NO_ESN]
    return spec


def _parse_one(text: str, protocol: ProtocolId) -> ProposalSpec:
    spec = ProposalSpec(protocol)
    for raw in text.split("-"):
        kw = raw.strip().lower()
        if not kw:
            raise ProposalError(f"empty algorithm keyword in {text!r}", text)
        if kw in _ENCR_KEYWORDS:
            _add(spec.encr, _ENCR_KEYWORDS[kw])
        elif kw in _INTEG_KEYWORDS:
            _add(spec.integ, _INTEG_KEYWORDS[kw])
        elif kw in _PRF_KEYWORDS:
            _add(spec.prf, _PRF_KEYWORDS[kw])
        elif kw in _DH_KEYWORDS:
            _add(spec.dh, _DH_KEYWORDS[kw])
        elif kw in _ESN_KEYWORDS:
            if protocol != ProtocolId.ESP:
                raise ProposalError(f"{kw!r} is only valid in ESP proposals", kw)
            _add(spec.esn, _ESN_KEYWORDS[kw])
        elif kw in _KNOWN_UNSUPPORTED or _UNSUPPORTED_FAMILIES.fullmatch(kw):
            raise ProposalError(f"algorithm {kw!r} is not supported by quickike", kw)
        else:
            raise ProposalError(f"unknown algorithm keyword {kw!r}", kw)
    return _check(spec, text)


_DEFAULT_DH = [
    DhGroup.ECP_256, DhGroup.ECP_384, DhGroup.ECP_521, DhGroup.CURVE25519, DhGroup.CURVE448,
    DhGroup.MODP_3072, DhGroup.MODP_4096, DhGroup.MODP_2048,
]
_DEFAULT_PRF = [PrfId.HMAC_SHA2_256, PrfId.HMAC_SHA2_384, PrfId.HMAC_SHA2_512, PrfId.HMAC_SHA1]
_DEFAULT_INTEG = [
    IntegId.HMAC_SHA2_256_128, IntegId.HMAC_SHA2_384_192, IntegId.HMAC_SHA2_512_256,
    IntegId.HMAC_SHA1_96,
]
_CBC: list[EncrKey] = [(EncrId.AES_CBC, 128), (EncrId.AES_CBC, 192), (EncrId.AES_CBC, 256)]
_GCM16: list[EncrKey] = [(EncrId.AES_GCM_16, b) for b in (128, 192, 256)]
_AEAD_IKE: list[EncrKey] = [
    *_GCM16,
    (EncrId.CHACHA20_POLY1305, None),
    *[(EncrId.AES_GCM_12, b) for b in (128, 192, 256)],
    *[(EncrId.AES_GCM_8, b) for b in (128, 192, 256)],
]


def default_proposals(protocol: ProtocolId) -> list[ProposalSpec]:
    """What ``default`` expands to, modelled on strongSwan 5.9/6.0 within what quickike has.

    IKE (classic first, as strongSwan): aes128-aes192-aes256 with
    sha256-sha384-sha512-sha1, then aes{128,192,256}gcm16-chacha20poly1305-
    aes{128,192,256}gcm12-aes{128,192,256}gcm8; both with
    prfsha256-prfsha384-prfsha512-prfsha1 and
    ecp256-ecp384-ecp521-x25519-x448-modp3072-modp4096-modp2048.
    ESP (AEAD first, as strongSwan): aes128gcm16-aes192gcm16-aes256gcm16-noesn,
    then aes128-aes192-aes256-sha256-sha384-sha512-sha1-noesn.
    """
    if protocol == ProtocolId.IKE:
        return [
            ProposalSpec(protocol, list(_CBC), list(_DEFAULT_INTEG), list(_DEFAULT_PRF),
                         list(_DEFAULT_DH)),
            ProposalSpec(protocol, list(_AEAD_IKE), [], list(_DEFAULT_PRF), list(_DEFAULT_DH)),
        ]
    if protocol == ProtocolId.ESP:
        return [
            ProposalSpec(protocol, list(_GCM16), esn=[EsnId.NO_ESN]),
            ProposalSpec(protocol, list(_CBC), list(_DEFAULT_INTEG), esn=[EsnId.NO_ESN]),
        ]
    raise ProposalError(f"protocol {protocol} is not supported", str(protocol))


def parse_proposals(text: str, protocol: ProtocolId) -> list[ProposalSpec]:
    """Comma-separated proposals in swanctl.conf keyword syntax, in preference order."""
    if protocol not in (ProtocolId.IKE, ProtocolId.ESP):
        raise ProposalError(f"protocol {protocol} is not supported", str(protocol))
    out: list[ProposalSpec] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ProposalError(f"empty proposal in {text!r}", text)
        if part.lower() == "default":
            out.extend(default_proposals(protocol))
        else:
            out.append(_parse_one(part, protocol))
    return out


def format_proposal(spec: ProposalSpec) -> str:
    """Canonical keywords; ``parse_proposals(format_proposal(s), s.protocol) == [s]``.

    Everything is explicit (an implied PRF or ``noesn`` is printed), so a log
    line shows exactly what is proposed.
    """
    words = [encr_of(k).keyword for k in spec.encr]
    words += [INTEG_ALGS[i].keyword for i in spec.integ]
    words += [PRF_ALGS[p].keyword for p in spec.prf]
    words += ["none" if g == DhGroup.NONE else DH_ALGS[g].keyword for g in spec.dh]
    words += ["esn" if e == EsnId.ESN else "noesn" for e in spec.esn]
    return "-".join(words)


# ------------------------------------------------------------------ negotiated suite


@dataclass(frozen=True, slots=True)
class Suite:
    """The negotiated algorithms of one SA (exactly one per transform type)."""

    protocol: ProtocolId
    number: int
    spi: bytes  # the SPI the peer put in its proposal
    encr: EncrAlg
    prf: PrfAlg | None
    integ: IntegAlg | None
    dh: DhAlg | None
    esn: bool = False

    def keyword(self) -> str:
        """strongSwan-style name for logs and VICI, e.g. ``aes128gcm16-prfsha256-x25519``."""
        words = [self.encr.keyword]
        if self.integ is not None:
            words.append(self.integ.keyword)
        if self.prf is not None:
            words.append(self.prf.keyword)
        if self.dh is not None:
            words.append(self.dh.keyword)
        if self.protocol == _P_ESP:
            words.append("esn" if self.esn else "noesn")
        return "-".join(words)

    def transforms(self) -> list[Transform]:
        ts = [Transform(_T_ENCR, int(self.encr.id), self.encr.key_length_attr)]
        if self.prf is not None:
            ts.append(Transform(_T_PRF, int(self.prf.id)))
        if self.integ is not None:
            ts.append(Transform(_T_INTEG, int(self.integ.id)))
        if self.dh is not None:
            ts.append(Transform(_T_DH, int(self.dh.id)))
        if self.protocol == _P_ESP:
            ts.append(Transform(_T_ESN, int(_ESN if self.esn else _NO_ESN)))
        return ts

    def to_sa_payload(self, spi: bytes) -> SA:
        """The responder's answer: one proposal with our SPI and the chosen transforms."""
        return SA([Proposal(self.number, self.protocol, spi, self.transforms())])


def specs_to_sa_payload(
    specs: Sequence[ProposalSpec],
    spi: bytes = b"",
    first_dh: DhGroup | None = None,
    *,
    include_dh: bool = True,
) -> SA:
    """Our offer: proposals numbered from 1 in preference order.

    ``first_dh`` (the group of the KE payload sent along) is moved to the front
    of its proposals. ``include_dh=False`` strips DH transforms, as CHILD SA
    proposals in IKE_AUTH carry none (their keys come from the IKE SA).
    Every AES transform carries the Key Length attribute: charon answers
    NO_PROPOSAL_CHOSEN otherwise (interop-lab.md).
    """
    proposals: list[Proposal] = []
    for n, spec in enumerate(specs, 1):
        ts: list[Transform] = []
        for key in spec.encr:
            ts.append(Transform(_T_ENCR, int(key[0]), encr_of(key).key_length_attr))
        ts += [Transform(_T_PRF, int(p)) for p in spec.prf]
        ts += [Transform(_T_INTEG, int(i)) for i in spec.integ]
        if include_dh:
            groups = list(spec.dh)
            if first_dh is not None and first_dh in groups:
                groups.remove(first_dh)
                groups.insert(0, first_dh)
            ts += [Transform(_T_DH, int(g)) for g in groups]
        ts += [Transform(_T_ESN, int(e)) for e in spec.esn]
        proposals.append(Proposal(n, spec.protocol, spi, ts))
    return SA(proposals)


# ------------------------------------------------------------------ selection (§2.7, §3.3.6)

_ALLOWED_TYPES: dict[ProtocolId, frozenset[TransformType]] = {
    ProtocolId.IKE: frozenset(
        {TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.DH}
    ),
    ProtocolId.ESP: frozenset(
        {TransformType.ENCR, TransformType.INTEG, TransformType.DH, TransformType.ESN}
    ),
}


@dataclass(slots=True)
class _Offer:
    """One received proposal, reduced to the transforms we understand (offered order)."""

    proposal: Proposal
    types: set[int] = field(default_factory=set)
    encr: list[EncrKey] = field(default_factory=list)
    prf: list[PrfId] = field(default_factory=list)
    integ: list[IntegId] = field(default_factory=list)  # may contain IntegId.NONE
    dh: list[DhGroup] = field(default_factory=list)  # may contain DhGroup.NONE
    esn: list[EsnId] = field(default_factory=list)
    skipped: int = 0  # transforms we did not understand


def _digest(p: Proposal) -> _Offer | None:
    """None if the proposal contains a transform *type* we do not know (§3.3.6)."""
    offer = _Offer(p)
    for t in p.transforms:
        ttype = int(t.type)
        if ttype not in (1, 2, 3, 4, 5):
            return None
        offer.types.add(ttype)
        if t.attributes:  # an attribute we do not understand: transform unacceptable
            offer.skipped += 1
            continue
        tid = int(t.id)
        # the enum members come from the algorithm tables (a dict lookup) rather than from
        # Enum.__call__, which costs several times more and runs for every offered transform
        if ttype == _T_ENCR:
            if tid == _CHACHA:
                encr = ENCR_ALGS[(tid, 256)] if t.key_length is None else None
            else:
                encr = ENCR_ALGS.get((tid, t.key_length)) if t.key_length is not None else None
            if encr is not None:
                offer.encr.append((encr.id, t.key_length))
                continue
        elif ttype == _T_PRF:
            prf = PRF_ALGS.get(tid)
            if prf is not None:
                offer.prf.append(prf.id)
                continue
        elif ttype == _T_INTEG:
            integ = INTEG_ALGS.get(tid)
            if integ is not None or tid == 0:
                offer.integ.append(integ.id if integ is not None else _INTEG_NONE)
                continue
        elif ttype == _T_DH:
            dh = DH_ALGS.get(tid)
            if dh is not None or tid == 0:
                offer.dh.append(dh.id if dh is not None else _DH_NONE)
                continue
        elif ttype == _T_ESN and tid in (0, 1):
            offer.esn.append(_ESN if tid == 1 else _NO_ESN)
            continue
        offer.skipped += 1
    return offer


def _common(ours: Sequence[T], theirs: Sequence[T], prefer_ours: bool) -> list[T]:
    if prefer_ours:
        return [x for x in ours if x in theirs]
    return [x for x in theirs if x in ours]


def _match(
    spec: ProposalSpec, offer: _Offer, prefer_ours: bool, skip_dh: bool
) -> Suite | None:
    p = offer.proposal
    proto = spec.protocol
    if p.protocol != proto or proto not in _ALLOWED_TYPES:
        return None
    if proto == _P_IKE and len(p.spi) not in (0, 8):
        return None
    if proto == _P_ESP and len(p.spi) != 4:
        return None
    if not offer.types <= _ALLOWED_TYPES[proto]:
        return None

    prf: PrfAlg | None = None
    if proto == _P_IKE:
        prfs = _common(spec.prf, offer.prf, prefer_ours)
        if not prfs:
            return None
        prf = PRF_ALGS[prfs[0]]

    dh: DhAlg | None = None
    if proto == _P_IKE:
        groups = _common(spec.dh, [g for g in offer.dh if g != _DH_NONE], prefer_ours)
        if not groups:
            return None
        dh = DH_ALGS[groups[0]]
    elif not skip_dh:
        ours_dh = spec.dh or [_DH_NONE]
        if _T_DH not in offer.types:
            if _DH_NONE not in ours_dh:
                return None
        else:
            groups = _common(ours_dh, offer.dh, prefer_ours)
            if not groups:
                return None
            dh = None if groups[0] == _DH_NONE else DH_ALGS[groups[0]]

    esn = False
    if proto == _P_ESP:
        esns = _common(spec.esn or [_NO_ESN], offer.esn, prefer_ours)
        if not esns:
            return None
        esn = esns[0] == _ESN

    for key in _common(spec.encr, offer.encr, prefer_ours):
        encr = encr_of(key)
        integ: IntegAlg | None = None
        if encr.aead:
            # RFC 5282 §8: with an AEAD, INTEG is absent or NONE.
            if _T_INTEG in offer.types and _INTEG_NONE not in offer.integ:
                continue
        else:
            real = [i for i in offer.integ if i != _INTEG_NONE]
            integs = _common(spec.integ, real, prefer_ours)
            if not integs:
                continue
            integ = INTEG_ALGS[integs[0]]
        return Suite(proto, p.number, p.spi, encr, prf, integ, dh, esn)
    return None


def select_proposal(
    offered: SA,
    ours: Sequence[ProposalSpec],
    *,
    prefer_ours: bool = True,
    skip_dh: bool = False,
) -> Suite | None:
    """Pick one proposal and one transform per type (RFC 7296 §2.7, §3.3.6).

    With ``prefer_ours`` (strongSwan's default) our first spec that any offered
    proposal satisfies wins, and within it our algorithm order; otherwise the
    peer's order wins.  Unknown transform ids and attributes make only that
    transform unacceptable; an unknown transform type rejects its proposal.
    ``skip_dh`` ignores DH transforms (CHILD SA in IKE_AUTH).  None means
    NO_PROPOSAL_CHOSEN.
    """
    offers = [o for o in (_digest(p) for p in offered.proposals) if o is not None]
    if prefer_ours:
        for spec in ours:
            for offer in offers:
                suite = _match(spec, offer, True, skip_dh)
                if suite is not None:
                    return suite
    else:
        for offer in offers:
            for spec in ours:
                suite = _match(spec, offer, False, skip_dh)
                if suite is not None:
                    return suite
    return None


def accept_selected(
    answer: SA, ours: Sequence[ProposalSpec], *, skip_dh: bool = False
) -> Suite:
    """Initiator side: the responder's single proposal must be one we offered (§3.3.6)."""
    if len(answer.proposals) != 1:
        raise ProposalError(
            f"responder returned {len(answer.proposals)} proposals instead of one", "SA"
        )
    p = answer.proposals[0]
    seen: set[int] = set()
    for t in p.transforms:
        if int(t.type) in seen:
            raise ProposalError(f"responder returned several {t.type} transforms", str(t.type))
        seen.add(int(t.type))
    offer = _digest(p)
    if offer is None or offer.skipped:
        raise ProposalError("responder chose a transform we did not offer", "SA")
    if skip_dh and TransformType.DH in offer.types:
        offer.types.discard(TransformType.DH)
    candidates = list(ours)
    if 1 <= p.number <= len(ours):  # the numbered spec first, but accept any consistent one
        candidates.insert(0, ours[p.number - 1])
    for spec in candidates:
        suite = _match(spec, offer, True, skip_dh)
        if suite is not None:
            return suite
    raise ProposalError("responder's proposal is not one we offered", "SA")


__all__ = [
    "ProposalSpec",
    "Suite",
    "accept_selected",
    "default_proposals",
    "encr_of",
    "format_proposal",
    "parse_proposals",
    "select_proposal",
    "specs_to_sa_payload",
]
