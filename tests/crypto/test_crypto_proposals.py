"""Proposal strings, SA payloads and RFC 7296 §2.7 / §3.3.6 selection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quickike.crypto import (
    ProposalError,
    ProposalSpec,
    accept_selected,
    default_proposals,
    format_proposal,
    parse_proposals,
    select_proposal,
    specs_to_sa_payload,
)
from quickike.wire import SA, Attribute, Proposal, Transform, decode_payloads, encode_payloads
from quickike.wire.enums import (
    DhGroup,
    EncrId,
    EsnId,
    IntegId,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
)

IKE, ESP = ProtocolId.IKE, ProtocolId.ESP
T = TransformType


def one(text: str, protocol: ProtocolId = IKE) -> ProposalSpec:
    specs = parse_proposals(text, protocol)
    assert len(specs) == 1
    return specs[0]


def wire_roundtrip(sa: SA) -> SA:
    """Encode and decode through the codec, as the peer would see it."""
    first, data = encode_payloads([sa])
    payloads, _ = decode_payloads(first, data)
    out = payloads[0]
    assert isinstance(out, SA)
    return out


# ---------------------------------------------------------------- parsing and printing


@pytest.mark.parametrize(
    ("text", "protocol"),
    [
        ("aes256gcm16-prfsha256-x25519", IKE),
        ("chacha20poly1305-prfsha256-ecp256", IKE),
        ("aes128gcm16-esn", ESP),
        ("aes128gcm16-noesn", ESP),
        ("aes256-sha256-prfsha256-modp2048", IKE),
        ("aes128-aes256-sha256-sha1-prfsha256-prfsha1-ecp256-modp3072", IKE),
        ("aes256gcm16-aes128gcm16-esn-noesn", ESP),
        ("aes128-sha256-modp2048-noesn", ESP),
    ],
)
def test_canonical_strings_round_trip_exactly(text: str, protocol: ProtocolId) -> None:
    spec = one(text, protocol)
    assert format_proposal(spec) == text
    assert parse_proposals(format_proposal(spec), protocol) == [spec]


def test_ike_sha256_implies_prfsha256() -> None:
    spec = one("aes128-sha256-modp2048")
    assert spec.encr == [(EncrId.AES_CBC, 128)]
    assert spec.integ == [IntegId.HMAC_SHA2_256_128]
    assert spec.prf == [PrfId.HMAC_SHA2_256]
    assert spec.dh == [DhGroup.MODP_2048]
    assert format_proposal(spec) == "aes128-sha256-prfsha256-modp2048"
    assert parse_proposals(format_proposal(spec), IKE) == [spec]
    # An explicit PRF wins over the implied one.
    assert one("aes128-sha256-prfsha512-modp2048").prf == [PrfId.HMAC_SHA2_512]


def test_esp_without_esn_keyword_means_noesn() -> None:
    spec = one("aes256-sha256", ESP)
    assert spec.esn == [EsnId.NO_ESN]
    assert spec.prf == [] and spec.dh == []
    assert format_proposal(spec) == "aes256-sha256-noesn"


def test_aliases_and_order_independence() -> None:
    assert one("aes-sha-modp2048") == one("aes128-sha1-prfsha1-modp2048")
    assert one("aes128gcm128-prfsha256-curve25519") == one("aes128gcm16-prfsha256-x25519")
    a = one("aes256gcm16-aes192gcm16-prfsha384-prfsha256-ecp384-modp3072")
    b = one("aes256gcm16-prfsha384-ecp384-aes192gcm16-prfsha256-modp3072")
    assert a == b
    assert a.encr == [(EncrId.AES_GCM_16, 256), (EncrId.AES_GCM_16, 192)]


def test_aead_ike_proposal_drops_integ_after_deriving_prf() -> None:
    spec = one("aes128gcm16-sha256-x25519")  # strongSwan: PRF from sha256, INTEG removed
    assert spec.integ == [] and spec.prf == [PrfId.HMAC_SHA2_256]


def test_several_proposals_keep_their_order() -> None:
    specs = parse_proposals("aes256gcm16-prfsha256-x25519, aes128-sha256-modp2048", IKE)
    assert [format_proposal(s) for s in specs] == [
        "aes256gcm16-prfsha256-x25519",
        "aes128-sha256-prfsha256-modp2048",
    ]


def test_default_proposals() -> None:
    ike = parse_proposals("default", IKE)
    assert ike == default_proposals(IKE)
    assert len(ike) == 2 and not ike[0].aead and ike[1].aead  # classic first for IKE
    assert DhGroup.CURVE25519 in ike[0].dh and DhGroup.MODP_2048 in ike[0].dh
    esp = parse_proposals("default", ESP)
    assert len(esp) == 2 and esp[0].aead and not esp[1].aead  # AEAD first for ESP
    assert all(s.esn == [EsnId.NO_ESN] for s in esp)
    # 'default' can be combined with explicit proposals
    mixed = parse_proposals("aes256gcm16-prfsha256-x25519,default", IKE)
    assert len(mixed) == 3
    for spec in ike + esp:  # every default prints and parses back
        assert parse_proposals(format_proposal(spec), spec.protocol) == [spec]


@pytest.mark.parametrize(
    ("text", "protocol", "bad"),
    [
        ("aes128-sha256-foo", IKE, "foo"),
        ("aes128-sha256-modp2048-bogus42", ESP, "bogus42"),
        ("3des-sha1-modp2048", IKE, "3des"),
        ("aes128-sha256-modp1024", IKE, "modp1024"),
        ("aes128ccm16-prfsha256-ecp256", IKE, "aes128ccm16"),
        ("aes128-sha256-modp2048-esn", IKE, "esn"),
        ("aes128--sha256-modp2048", IKE, "aes128--sha256-modp2048"),
    ],
)
def test_bad_keyword_is_named(text: str, protocol: ProtocolId, bad: str) -> None:
    with pytest.raises(ProposalError) as exc:
        parse_proposals(text, protocol)
    assert exc.value.keyword == bad
    assert bad in str(exc.value)


@pytest.mark.parametrize(
    ("text", "protocol"),
    [
        ("aes128-sha256", IKE),  # no DH
        ("aes128gcm16-x25519", IKE),  # AEAD without PRF
        ("aes128-prfsha256-x25519", IKE),  # classic without integrity
        ("aes128-aes128gcm16-sha256-prfsha256-x25519", IKE),  # classic and AEAD mixed
        ("aes128", ESP),  # classic ESP without integrity (rejected deliberately)
        ("sha256-modp2048", IKE),  # no encryption
        ("", IKE),
        ("aes128-sha256-modp2048,", IKE),
    ],
)
def test_incomplete_proposals_are_errors(text: str, protocol: ProtocolId) -> None:
    with pytest.raises(ProposalError):
        parse_proposals(text, protocol)


def test_ah_is_not_supported() -> None:
    with pytest.raises(ProposalError):
        parse_proposals("sha256", ProtocolId.AH)


# ---------------------------------------------------------------- building SA payloads


def test_specs_to_sa_payload_numbers_and_key_lengths() -> None:
    specs = parse_proposals(
        "aes128-aes256-sha256-modp2048-ecp256-x25519,chacha20poly1305-prfsha256-x25519", IKE
    )
    sa = wire_roundtrip(specs_to_sa_payload(specs, first_dh=DhGroup.CURVE25519))
    assert [p.number for p in sa.proposals] == [1, 2]
    first = sa.proposals[0]
    assert first.protocol == IKE and first.spi == b""
    encr = first.transforms_of(T.ENCR)
    assert [(t.id, t.key_length) for t in encr] == [(12, 128), (12, 256)]
    # the KE group is promoted to the front of the DH list
    assert [t.id for t in first.transforms_of(T.DH)] == [31, 14, 19]
    chacha = sa.proposals[1].transforms_of(T.ENCR)[0]
    assert chacha.id == EncrId.CHACHA20_POLY1305 and chacha.key_length is None  # RFC 7634
    assert not sa.proposals[1].transforms_of(T.INTEG)


def test_specs_to_sa_payload_esp_with_spi_and_without_dh() -> None:
    specs = parse_proposals("aes128gcm16-modp2048-esn-noesn", ESP)
    sa = specs_to_sa_payload(specs, spi=b"\x01\x02\x03\x04", include_dh=False)
    p = sa.proposals[0]
    assert p.spi == b"\x01\x02\x03\x04"
    assert not p.transforms_of(T.DH)
    assert [t.id for t in p.transforms_of(T.ESN)] == [1, 0]
    with_dh = specs_to_sa_payload(specs, spi=b"\x01\x02\x03\x04")
    assert [t.id for t in with_dh.proposals[0].transforms_of(T.DH)] == [14]


# ---------------------------------------------------------------- selection


def offer(text: str, protocol: ProtocolId = IKE, spi: bytes = b"") -> SA:
    return wire_roundtrip(specs_to_sa_payload(parse_proposals(text, protocol), spi=spi))


def test_simple_match_and_suite_fields() -> None:
    suite = select_proposal(offer("aes256gcm16-prfsha256-x25519"), parse_proposals("default", IKE))
    assert suite is not None
    assert suite.keyword() == "aes256gcm16-prfsha256-x25519"
    assert suite.encr.aead and suite.integ is None
    assert suite.prf is not None and suite.prf.id == PrfId.HMAC_SHA2_256
    assert suite.dh is not None and suite.dh.id == DhGroup.CURVE25519
    assert suite.number == 1


def test_mismatch_gives_none() -> None:
    ours = parse_proposals("aes256gcm16-prfsha384-ecp384", IKE)
    assert select_proposal(offer("aes128gcm16-prfsha256-x25519"), ours) is None
    assert select_proposal(offer("aes256gcm16-prfsha384-x25519"), ours) is None  # DH differs
    assert select_proposal(offer("aes256gcm16-prfsha256-ecp384"), ours) is None  # PRF differs


def test_prefer_ours_versus_prefer_theirs() -> None:
    ours = parse_proposals("aes256gcm16-prfsha256-x25519,aes128-sha256-modp2048", IKE)
    theirs = offer("aes128-sha256-modp2048,aes256gcm16-prfsha256-x25519")
    mine = select_proposal(theirs, ours)
    assert mine is not None and mine.keyword() == "aes256gcm16-prfsha256-x25519"
    assert mine.number == 2  # the number of the peer's proposal
    peer = select_proposal(theirs, ours, prefer_ours=False)
    assert peer is not None and peer.keyword() == "aes128-sha256-prfsha256-modp2048"
    assert peer.number == 1


def test_algorithm_order_inside_a_proposal() -> None:
    ours = parse_proposals("aes256-aes128-sha512-sha256-prfsha512-prfsha256-ecp384-ecp256", IKE)
    theirs = offer("aes128-aes256-sha256-sha512-prfsha256-prfsha512-ecp256-ecp384")
    mine = select_proposal(theirs, ours)
    assert mine is not None and mine.keyword() == "aes256-sha512-prfsha512-ecp384"
    peer = select_proposal(theirs, ours, prefer_ours=False)
    assert peer is not None and peer.keyword() == "aes128-sha256-prfsha256-ecp256"


def _proposal(number: int, transforms: list[Transform], protocol: ProtocolId = IKE,
              spi: bytes = b"") -> Proposal:
    return Proposal(number, protocol, spi, transforms)


IKE_GCM_REST = [Transform(T.PRF, 5), Transform(T.DH, 31)]


def test_unknown_transform_ids_and_attributes_are_ignored() -> None:
    ours = parse_proposals("aes128gcm16-aes256gcm16-prfsha256-x25519", IKE)
    sa = SA([_proposal(1, [
        Transform(T.ENCR, 1024, 128),  # private-use id: not understood
        Transform(T.ENCR, 20, 128, [Attribute(99, 1)]),  # unknown attribute: transform unusable
        Transform(T.ENCR, 20),  # AES-GCM without Key Length: unusable
        Transform(T.ENCR, 20, 256),
        Transform(T.PRF, 999), *IKE_GCM_REST, Transform(T.DH, 4444),
    ])])
    suite = select_proposal(wire_roundtrip(sa), ours)
    assert suite is not None and suite.keyword() == "aes256gcm16-prfsha256-x25519"
    only_unknown = SA([_proposal(1, [Transform(T.ENCR, 1024, 128), *IKE_GCM_REST])])
    assert select_proposal(only_unknown, ours) is None


def test_unknown_transform_type_rejects_only_that_proposal() -> None:
    ours = parse_proposals("aes128gcm16-prfsha256-x25519", IKE)
    sa = SA([
        _proposal(1, [Transform(T.ENCR, 20, 128), *IKE_GCM_REST, Transform(TransformType(6), 1)]),
        _proposal(2, [Transform(T.ENCR, 20, 128), *IKE_GCM_REST]),
    ])
    suite = select_proposal(wire_roundtrip(sa), ours)
    assert suite is not None and suite.number == 2


def test_aead_with_integ_none_is_accepted_with_real_integ_is_not() -> None:
    ours = parse_proposals("aes128gcm16-prfsha256-x25519", IKE)
    with_none = SA([_proposal(1, [Transform(T.ENCR, 20, 128), Transform(T.INTEG, 0),
                                  *IKE_GCM_REST])])
    suite = select_proposal(with_none, ours)
    assert suite is not None and suite.integ is None
    with_real = SA([_proposal(1, [Transform(T.ENCR, 20, 128), Transform(T.INTEG, 12),
                                  *IKE_GCM_REST])])
    assert select_proposal(with_real, ours) is None


def test_missing_mandatory_types_gives_none() -> None:
    ours_ike = parse_proposals("aes128-sha256-modp2048", IKE)
    no_dh = SA([_proposal(1, [Transform(T.ENCR, 12, 128), Transform(T.PRF, 5),
                              Transform(T.INTEG, 12)])])
    assert select_proposal(no_dh, ours_ike) is None
    no_integ = SA([_proposal(1, [Transform(T.ENCR, 12, 128), Transform(T.PRF, 5),
                                 Transform(T.DH, 14)])])
    assert select_proposal(no_integ, ours_ike) is None
    ours_esp = parse_proposals("aes128gcm16", ESP)
    no_esn = SA([_proposal(1, [Transform(T.ENCR, 20, 128)], ESP, b"\x00\x00\x00\x01")])
    assert select_proposal(no_esn, ours_esp) is None


def test_protocol_and_spi_size_must_fit() -> None:
    ours_esp = parse_proposals("aes128gcm16", ESP)
    assert select_proposal(offer("aes128gcm16", ESP, spi=b"\x00\x00\x00\x01"), ours_esp)
    assert select_proposal(offer("aes128gcm16", ESP, spi=b""), ours_esp) is None
    assert select_proposal(offer("aes128gcm16-prfsha256-x25519"), ours_esp) is None
    ours_ike = parse_proposals("aes128gcm16-prfsha256-x25519", IKE)
    rekey = select_proposal(offer("aes128gcm16-prfsha256-x25519", spi=bytes(range(8))), ours_ike)
    assert rekey is not None and rekey.spi == bytes(range(8))


def test_esp_dh_rules() -> None:
    spi = b"\x00\x00\x00\x07"
    no_pfs = parse_proposals("aes128gcm16", ESP)
    pfs = parse_proposals("aes128gcm16-modp2048", ESP)
    optional = parse_proposals("aes128gcm16-modp2048-none", ESP)
    offered_none = offer("aes128gcm16-none-modp2048", ESP, spi)
    offered_14 = offer("aes128gcm16-modp2048", ESP, spi)
    offered_plain = offer("aes128gcm16", ESP, spi)

    s = select_proposal(offered_none, no_pfs)
    assert s is not None and s.dh is None
    assert select_proposal(offered_14, no_pfs) is None
    s = select_proposal(offered_14, pfs)
    assert s is not None and s.dh is not None and s.dh.id == DhGroup.MODP_2048
    assert select_proposal(offered_plain, pfs) is None
    s = select_proposal(offered_plain, optional)
    assert s is not None and s.dh is None
    # IKE_AUTH: DH transforms do not matter
    s = select_proposal(offered_14, no_pfs, skip_dh=True)
    assert s is not None and s.dh is None and s.spi == spi


def test_esn_choice() -> None:
    spi = b"\x00\x00\x00\x07"
    s = select_proposal(offer("aes128gcm16-esn-noesn", ESP, spi), parse_proposals("aes128gcm16-esn", ESP))
    assert s is not None and s.esn and s.keyword() == "aes128gcm16-esn"
    assert select_proposal(offer("aes128gcm16-esn", ESP, spi), parse_proposals("aes128gcm16", ESP)) is None


def test_real_capture_offer() -> None:
    # SA payload of the IKE_SA_INIT request in /work/shared/reference/captures/ikev2_nat_t.pcapng
    # (frame 0, another implementation): AES-GCM-16/256, PRF-HMAC-SHA-256, ECP-256.
    data = bytes.fromhex(
        "0000002800000024010100030300000c01000014800e0100030000080200000500000008040000"
        "13"
    )
    payloads, _ = decode_payloads(PayloadType.SA, data)
    sa = payloads[0]
    assert isinstance(sa, SA)
    suite = select_proposal(sa, parse_proposals("default", IKE))
    assert suite is not None and suite.keyword() == "aes256gcm16-prfsha256-ecp256"
    # The same request from ikev2_notify_redirect.pcap offers group 28 (brainpool): no match.
    data28 = data[:-1] + b"\x1c"
    payloads, _ = decode_payloads(PayloadType.SA, data28)
    assert isinstance(payloads[0], SA)
    assert select_proposal(payloads[0], parse_proposals("default", IKE)) is None


# ---------------------------------------------------------------- answer and acceptance


def test_responder_answer_is_accepted_by_initiator() -> None:
    ours_i = parse_proposals("aes128-sha256-modp2048,aes256gcm16-prfsha384-ecp384", IKE)
    ours_r = parse_proposals("aes256gcm16-prfsha384-ecp384", IKE)
    suite_r = select_proposal(wire_roundtrip(specs_to_sa_payload(ours_i)), ours_r)
    assert suite_r is not None and suite_r.number == 2
    answer = wire_roundtrip(suite_r.to_sa_payload(b""))
    assert len(answer.proposals) == 1 and answer.proposals[0].number == 2
    assert answer.proposals[0].transforms_of(T.ENCR)[0].key_length == 256
    suite_i = accept_selected(answer, ours_i)
    assert suite_i.keyword() == suite_r.keyword() == "aes256gcm16-prfsha384-ecp384"


def test_esp_answer_carries_our_spi_and_esn() -> None:
    ours = parse_proposals("aes128-sha256-esn", ESP)
    suite = select_proposal(offer("aes128-sha256-esn", ESP, b"\xaa\xbb\xcc\xdd"), ours)
    assert suite is not None and suite.spi == b"\xaa\xbb\xcc\xdd"
    answer = suite.to_sa_payload(b"\x11\x22\x33\x44")
    assert answer.proposals[0].spi == b"\x11\x22\x33\x44"
    got = accept_selected(wire_roundtrip(answer), ours)
    assert got.spi == b"\x11\x22\x33\x44" and got.esn and got.integ is not None


def test_accept_selected_rejects_what_we_did_not_offer() -> None:
    ours = parse_proposals("aes128gcm16-prfsha256-x25519", IKE)
    good = [Transform(T.ENCR, 20, 128), Transform(T.PRF, 5), Transform(T.DH, 31)]
    assert accept_selected(SA([_proposal(1, good)]), ours).keyword() == (
        "aes128gcm16-prfsha256-x25519"
    )
    cases = [
        SA([_proposal(1, good), _proposal(2, good)]),  # two proposals
        SA([_proposal(1, [Transform(T.ENCR, 20, 256), *good[1:]])]),  # other key size
        SA([_proposal(1, [*good, Transform(T.DH, 19)])]),  # two DH transforms
        SA([_proposal(1, [Transform(T.ENCR, 1024), *good[1:]])]),  # unknown id
        SA([_proposal(1, good[:2])]),  # DH missing
        SA([]),
    ]
    for sa in cases:
        with pytest.raises(ProposalError):
            accept_selected(sa, ours)


# ---------------------------------------------------------------- robustness

_transform = st.builds(
    Transform,
    st.sampled_from([1, 2, 3, 4, 5, 6, 0, 241]).map(TransformType),
    st.sampled_from([0, 1, 2, 5, 12, 13, 14, 18, 19, 20, 28, 31, 1024]),
    st.sampled_from([None, 0, 128, 192, 256, 300]),
    st.lists(st.builds(Attribute, st.integers(0, 20), st.integers(0, 300)), max_size=1),
)
_proposal_st = st.builds(
    Proposal,
    st.integers(0, 255),
    st.sampled_from([IKE, ESP, ProtocolId.AH, ProtocolId(9)]),
    st.sampled_from([b"", b"\x00\x00\x00\x01", bytes(8), b"\x01"]),
    st.lists(_transform, max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(proposals=st.lists(_proposal_st, max_size=4), prefer_ours=st.booleans(),
       skip_dh=st.booleans())
def test_selection_never_crashes_and_picks_offered_transforms(
    proposals: list[Proposal], prefer_ours: bool, skip_dh: bool
) -> None:
    sa = SA(proposals)
    for protocol in (IKE, ESP):
        ours = default_proposals(protocol) + parse_proposals(
            "aes128gcm16-modp2048-none" if protocol == ESP else "aes128-sha1-modp2048", protocol
        )
        suite = select_proposal(sa, ours, prefer_ours=prefer_ours, skip_dh=skip_dh)
        if suite is None:
            continue
        wanted = {(int(t.type), t.id, t.key_length) for t in suite.transforms()
                  if not (t.type == T.DH and skip_dh)}
        assert any(
            p.number == suite.number and p.protocol == protocol and p.spi == suite.spi
            and wanted <= {(int(t.type), t.id, t.key_length) for t in p.transforms
                           if not t.attributes}
            for p in proposals
        )
        try:
            accept_selected(suite.to_sa_payload(suite.spi), ours, skip_dh=skip_dh)
        except ProposalError:
            pytest.fail("our own answer must be acceptable to our own proposals")
