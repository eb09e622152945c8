"""VICI codec: the README's example, round trips, interop with the vici package's own
serializer, and malformed input producing only ViciDecodeError."""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vici.protocol import FiniteStream
from vici.protocol import Message as ViciMessage

from quickike.control.vici.protocol import (
    MAX_DEPTH,
    MAX_PACKET_SIZE,
    Packet,
    PacketType,
    Section,
    ViciDecodeError,
    ViciEncodeError,
    ViciError,
    ViciRequestError,
    as_text,
    decode_message,
    decode_packet,
    encode_message,
    encode_packet,
    frame_length,
    get_bool,
    get_int,
    get_list,
    get_str,
)

# The encoding example from strongSwan's vici README, octet for octet.
README_EXAMPLE = bytes(
    [
        *(3, 4, *b"key1", 0, 6, *b"value1"),
        *(1, 8, *b"section1"),
        *(1, 11, *b"sub-section"),
        *(3, 4, *b"key2", 0, 6, *b"value2"),
        2,
        *(4, 5, *b"list1"),
        *(5, 0, 5, *b"item1"),
        *(5, 0, 5, *b"item2"),
        6,
        2,
    ]
)
README_TREE: Section = {
    "key1": b"value1",
    "section1": {"sub-section": {"key2": b"value2"}, "list1": [b"item1", b"item2"]},
}


def test_readme_example_encodes_octet_for_octet() -> None:
    assert encode_message(README_TREE) == README_EXAMPLE


def test_readme_example_decodes() -> None:
    assert decode_message(README_EXAMPLE) == README_TREE


def test_scalars_are_formatted_like_charon() -> None:
    message = decode_message(
        encode_message({"n": 42, "yes": True, "no": False, "s": "ä", "skip": None, "t": ("a", 1)})
    )
    assert message == {"n": b"42", "yes": b"yes", "no": b"no", "s": "ä".encode(), "t": [b"a", b"1"]}


def test_empty_names_and_empty_lists_are_valid() -> None:
    tree: Section = {"": {"": b""}, "empty": []}
    assert decode_message(encode_message(tree)) == tree


# --------------------------------------------------------------------------- packets


@pytest.mark.parametrize("ptype", list(PacketType))
def test_packet_round_trip_every_type(ptype: PacketType) -> None:
    name = "list-sa" if ptype.named else None
    frame = encode_packet(ptype, name, {"k": "v"})
    length = frame_length(frame[:4])
    assert length == len(frame) - 4
    assert decode_packet(frame[4:]) == Packet(ptype, name, {"k": b"v"})


def test_named_packet_layout() -> None:
    frame = encode_packet(PacketType.CMD_REQUEST, "version")
    assert frame == struct.pack("!I", 9) + b"\x00\x07version"


def test_named_packet_needs_name_and_unnamed_refuses_one() -> None:
    with pytest.raises(ViciEncodeError):
        encode_packet(PacketType.EVENT)
    with pytest.raises(ViciEncodeError):
        encode_packet(PacketType.CMD_RESPONSE, "x")


def test_preencoded_message_is_sent_verbatim() -> None:
    body = encode_message({"a": "b"})
    assert encode_packet(PacketType.EVENT, "log", body) == encode_packet(
        PacketType.EVENT, "log", {"a": "b"}
    )


# --------------------------------------------------------------------------- encode limits


def test_encode_rejects_oversize_name_value_and_packet() -> None:
    with pytest.raises(ViciEncodeError):
        encode_message({"x" * 256: "v"})
    with pytest.raises(ViciEncodeError):
        encode_message({"k": b"v" * 65536})
    big = {f"k{i}": b"v" * 60000 for i in range(10)}
    with pytest.raises(ViciEncodeError):
        encode_packet(PacketType.CMD_RESPONSE, message=big)
    assert len(encode_packet(PacketType.CMD_RESPONSE, message=big, max_size=1 << 20)) > 600000


def test_encode_rejects_unsupported_types_and_depth() -> None:
    with pytest.raises(ViciEncodeError):
        encode_message({"k": 1.5})  # type: ignore[dict-item]
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(MAX_DEPTH + 2):
        cursor["s"] = {}
        cursor = cursor["s"]
    with pytest.raises(ViciEncodeError):
        encode_message(deep)


# --------------------------------------------------------------------------- malformed input

MALFORMED = {
    "truncated name": bytes([3, 5, *b"ab"]),
    "missing name length": bytes([1]),
    "truncated value length": bytes([3, 1, *b"k", 0]),
    "value runs past end": bytes([3, 1, *b"k", 0, 9, *b"abc"]),
    "section end without section": bytes([2]),
    "section not closed": bytes([1, 1, *b"s", 3, 1, *b"k", 0, 0]),
    "list not closed": bytes([4, 1, *b"l", 5, 0, 1, *b"x"]),
    "key/value inside list": bytes([4, 1, *b"l", 3, 1, *b"k", 0, 0, 6]),
    "section inside list": bytes([4, 1, *b"l", 1, 1, *b"s", 2, 6]),
    "nested list": bytes([4, 1, *b"l", 4, 1, *b"m", 6, 6]),
    "list item outside list": bytes([5, 0, 0]),
    "list end outside list": bytes([6]),
    "unknown element type": bytes([7]),
    "element type zero": bytes([0]),
    "duplicate key": bytes([3, 1, *b"k", 0, 0, 3, 1, *b"k", 0, 0]),
    "duplicate section": bytes([1, 1, *b"s", 2, 1, 1, *b"s", 2]),
    "invalid utf-8 name": bytes([3, 2, 0xFF, 0xFE, 0, 0]),
    "too deep": bytes([1, 1, *b"s"] * (MAX_DEPTH + 1) + [2] * (MAX_DEPTH + 1)),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_messages_raise_vici_decode_error(data: bytes) -> None:
    with pytest.raises(ViciDecodeError):
        decode_message(data)


def test_depth_limit_is_inclusive() -> None:
    at_limit = bytes([1, 1, *b"s"] * MAX_DEPTH + [2] * MAX_DEPTH)
    decoded = decode_message(at_limit)
    for _ in range(MAX_DEPTH):
        inner = decoded["s"]
        assert isinstance(inner, dict)
        decoded = inner


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x08", b"\xff", b"\x00", b"\x00\x05ver", b"\x07\x03log\x02"],
    ids=["empty", "type 8", "type 255", "no name", "short name", "bad message"],
)
def test_malformed_packets(payload: bytes) -> None:
    with pytest.raises(ViciDecodeError):
        decode_packet(payload)


def test_frame_length_limits() -> None:
    assert frame_length(struct.pack("!I", MAX_PACKET_SIZE)) == MAX_PACKET_SIZE
    with pytest.raises(ViciDecodeError):
        frame_length(struct.pack("!I", MAX_PACKET_SIZE + 1))
    with pytest.raises(ViciDecodeError):
        frame_length(struct.pack("!I", 0))
    with pytest.raises(ViciDecodeError):
        frame_length(b"\x00\x00")
    with pytest.raises(ViciDecodeError):
        decode_packet(b"\x01" * 101, max_size=100)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_vici_decode_error(data: bytes) -> None:
    try:
        packet = decode_packet(data)
    except ViciDecodeError:
        return
    # whatever decoded must re-encode to the same octets
    assert encode_packet(packet.type, packet.name, packet.message)[4:] == data


# --------------------------------------------------------------------------- round trips

names = st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255)
values = st.binary(max_size=64)
sections: st.SearchStrategy[Section] = st.recursive(
    st.dictionaries(names, st.one_of(values, st.lists(values, max_size=4)), max_size=4),
    lambda children: st.dictionaries(
        names, st.one_of(values, st.lists(values, max_size=4), children), max_size=4
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(sections)
def test_round_trip(tree: Section) -> None:
    assert decode_message(encode_message(tree)) == tree


@settings(max_examples=300)
@given(sections, st.data())
def test_mutated_encodings_raise_only_vici_decode_error(tree: Section, data: st.DataObject) -> None:
    encoded = bytearray(encode_message(tree))
    if encoded:
        index = data.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(encoded)))
        encoded = encoded[:cut]
    try:
        decode_message(bytes(encoded))
    except ViciDecodeError:
        pass


def _plain(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {key: _plain(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_plain(item) for item in tree]
    return tree


@settings(max_examples=200)
@given(sections)
def test_interop_with_vici_package_serializer(tree: Section) -> None:
    """The PyPI vici package (MIT, by strongSwan's authors) reads what we write and we read
    what it writes."""
    ours = encode_message(tree)
    theirs = ViciMessage.serialize(OrderedDict(tree))
    assert ours == theirs
    assert _plain(ViciMessage.deserialize(FiniteStream(ours))) == tree


# --------------------------------------------------------------------------- field access


def test_accessors() -> None:
    request: Section = {
        "child": b"net",
        "timeout": b"-1",
        "force": b"yes",
        "off": b"no",
        "owners": [b"a", b"b"],
        "one": b"x",
        "sec": {},
        "bad": b"\xff",
    }
    assert get_str(request, "child") == "net"
    assert get_str(request, "missing") is None
    assert get_int(request, "timeout", 0) == -1
    assert get_int(request, "missing", 7) == 7
    assert get_bool(request, "force") is True
    assert get_bool(request, "off", True) is False
    assert get_bool(request, "missing", True) is True
    assert get_list(request, "owners") == ["a", "b"]
    assert get_list(request, "one") == ["x"]
    assert get_list(request, "missing") == []
    for call in (
        lambda: get_str(request, "sec"),
        lambda: get_str(request, "owners"),
        lambda: get_str(request, "bad"),
        lambda: get_int(request, "child", 0),
        lambda: get_bool(request, "child"),
        lambda: get_list(request, "sec"),
    ):
        with pytest.raises(ViciRequestError):
            call()


def test_errors_share_one_base() -> None:
    for cls in (ViciDecodeError, ViciEncodeError, ViciRequestError):
        assert issubclass(cls, ViciError)


def test_as_text() -> None:
    assert as_text({"a": b"\xc3\xa4", "l": [b"x"], "s": {"b": b"\xff"}}) == {
        "a": "ä",
        "l": ["x"],
        "s": {"b": "\ufffd"},
    }
