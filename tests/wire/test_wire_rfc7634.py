"""RFC 7634 Appendix B: the protected INFORMATIONAL carrying N(SET_WINDOW_SIZE).

Only the outer structure is the codec's business; decryption is tested with
the crypto layer (and by ``quickike decode`` in tests/tools).
"""

from __future__ import annotations

from quickike.wire import (
    HEADER_SIZE,
    Encrypted,
    ExchangeType,
    Header,
    Notify,
    NotifyType,
    PayloadType,
    decode_message,
    decode_payloads,
    encode_payloads,
)

# "The IKE Message" of Appendix B, transcribed from the RFC's hex dump
RFC7634_B_MESSAGE = bytes.fromhex(
    "c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d7"
    "2e202500000000090000004529000029"
    "1011121314151617610394701f8d017f"
    "7c12924889 6b71bfe25236efd7cdc670"
    "66906315b2".replace(" ", "")
)
# "The Notify Payload" (plaintext inside SK, before the pad length octet)
RFC7634_B_NOTIFY = bytes.fromhex("0000000c000040010000000a")


def test_outer_message_fields() -> None:
    m = decode_message(RFC7634_B_MESSAGE)
    assert m.spi_i == bytes(range(0xC0, 0xC8))
    assert m.spi_r == bytes(range(0xD0, 0xD8))
    assert m.exchange == ExchangeType.INFORMATIONAL
    assert m.flags == 0x00 and not m.is_initiator and not m.is_response
    assert m.message_id == 9
    assert len(RFC7634_B_MESSAGE) == 0x45
    assert len(m.payloads) == 1
    sk = m.payloads[0]
    assert isinstance(sk, Encrypted)
    assert sk.next_inner == PayloadType.NOTIFY
    assert not sk.critical
    # IV (8) | ciphertext (13) | ICV (16)
    assert sk.data[:8] == bytes(range(0x10, 0x18))
    assert sk.data[8:21].hex() == "610394701f8d017f7c12924889"
    assert sk.data[21:].hex() == "6b71bfe25236efd7cdc670669063 15b2".replace(" ", "")
    assert m.sk_offset == HEADER_SIZE


def test_aad_is_header_plus_sk_generic_header() -> None:
    m = decode_message(RFC7634_B_MESSAGE)
    aad = RFC7634_B_MESSAGE[: m.sk_offset + 4]
    assert aad.hex() == "c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d72e20250000000009000000452900 0029".replace(
        " ", ""
    )


def test_header_decode_alone() -> None:
    h = Header.decode(RFC7634_B_MESSAGE)
    assert (h.next_payload, h.exchange, h.flags, h.message_id, h.length) == (46, 37, 0, 9, 69)
    assert h.encode() == RFC7634_B_MESSAGE[:HEADER_SIZE]


def test_re_encodes_identically() -> None:
    assert decode_message(RFC7634_B_MESSAGE).encode() == RFC7634_B_MESSAGE


def test_inner_notify_chain() -> None:
    payloads, sk = decode_payloads(PayloadType.NOTIFY, RFC7634_B_NOTIFY)
    assert sk == -1
    assert payloads == [Notify(NotifyType.SET_WINDOW_SIZE, (10).to_bytes(4, "big"))]
    assert encode_payloads(payloads) == (PayloadType.NOTIFY, RFC7634_B_NOTIFY)
