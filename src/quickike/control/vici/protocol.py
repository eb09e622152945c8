"""strongSwan's VICI wire format: framing, packets and messages.

Written from the protocol description in strongSwan's vici README so that the
real ``swanctl`` and the PyPI ``vici`` package can talk to quickike unchanged.

Three layers, each strict about bounds because the socket is an attack surface
for any local user allowed to connect:

* transport: a 4-octet big-endian length, then that many octets (one packet);
  the length excludes itself and is capped (charon caps it at 512 KiB);
* packet: one type octet; named types carry an 8-bit-length name next;
* message: a flat sequence of typed elements describing a tree of sections,
  key/values and lists; values are opaque blobs with a 16-bit length.

Everything malformed raises :class:`ViciDecodeError`, nothing else, so a server
can drop the offending client and carry on.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

#: charon refuses segments above 512 KiB; clients (libvici, vici) use the same cap.
MAX_PACKET_SIZE = 512 * 1024
#: size of the transport length header
HEADER_SIZE = 4
#: names (packet names, keys, section and list names) have an 8-bit length
MAX_NAME_LENGTH = 0xFF
#: values have a 16-bit length
MAX_VALUE_LENGTH = 0xFFFF
#: nesting limit for sections; charon's own messages use at most 5 levels
MAX_DEPTH = 32

_LENGTH = struct.Struct("!I")
_VALUE_LENGTH = struct.Struct("!H")


class ViciError(Exception):
    """Base of every VICI error, so callers can catch the whole family at once."""


class ViciDecodeError(ViciError):
    """Malformed input: bad framing, unknown types, unbalanced or truncated elements."""


class ViciEncodeError(ViciError):
    """A message that cannot be represented on the wire (too long, wrong value type)."""


class ViciRequestError(ViciError):
    """A well-formed message whose field has the wrong shape for the command (e.g. a list
    where a value was expected, or ``timeout = soon``)."""


class PacketType(enum.IntEnum):
    CMD_REQUEST = 0
    CMD_RESPONSE = 1
    CMD_UNKNOWN = 2
    EVENT_REGISTER = 3
    EVENT_UNREGISTER = 4
    EVENT_CONFIRM = 5
    EVENT_UNKNOWN = 6
    EVENT = 7

    @property
    def named(self) -> bool:
        return self in _NAMED_TYPES


_NAMED_TYPES = frozenset(
    {
        PacketType.CMD_REQUEST,
        PacketType.EVENT_REGISTER,
        PacketType.EVENT_UNREGISTER,
        PacketType.EVENT,
    }
)


class ElementType(enum.IntEnum):
    SECTION_START = 1
    SECTION_END = 2
    KEY_VALUE = 3
    LIST_START = 4
    LIST_ITEM = 5
    LIST_END = 6


# Decoded messages: values stay bytes because VICI values are blobs (PSKs, DER
# certificates); the accessors below turn them into text where a command wants text.
Element: TypeAlias = "bytes | list[bytes] | Section"
Section: TypeAlias = "dict[str, Element]"

# What the encoder accepts: charon sends numbers as decimal strings, so ints are
# formatted; booleans become yes/no (charon's spelling); None means "leave the key out",
# which is how charon expresses "not applicable". Mappings become sections and other
# sequences lists, so a decoded Section is also a valid OutSection.
Scalar: TypeAlias = "str | bytes | bytearray | int"
OutValue: TypeAlias = "Scalar | Sequence[Scalar] | Mapping[str, OutValue] | None"
OutSection: TypeAlias = "Mapping[str, OutValue]"

# Text view of a decoded message, for display and for tests.
TextElement: TypeAlias = "str | list[str] | TextSection"
TextSection: TypeAlias = "dict[str, TextElement]"


@dataclass(frozen=True, slots=True)
class Packet:
    """One decoded packet; ``name`` is set exactly for the named packet types."""

    type: PacketType
    name: str | None = None
    message: Section = field(default_factory=dict)


# --------------------------------------------------------------------------- encoding


def _scalar_bytes(value: object, where: str) -> bytes:
    if isinstance(value, bool):
        return b"yes" if value else b"no"
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise ViciEncodeError(f"cannot encode {type(value).__name__} as a value of {where!r}")


def _name_bytes(name: object) -> bytes:
    if not isinstance(name, str):
        raise ViciEncodeError(f"names must be str, not {type(name).__name__}")
    raw = name.encode("utf-8")
    if len(raw) > MAX_NAME_LENGTH:
        raise ViciEncodeError(f"name longer than {MAX_NAME_LENGTH} octets: {name[:40]!r}...")
    return bytes((len(raw),)) + raw


def _value_bytes(value: object, where: str) -> bytes:
    raw = _scalar_bytes(value, where)
    if len(raw) > MAX_VALUE_LENGTH:
        raise ViciEncodeError(f"value of {where!r} longer than {MAX_VALUE_LENGTH} octets")
    return _VALUE_LENGTH.pack(len(raw)) + raw


def _encode_section(out: bytearray, section: OutSection, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ViciEncodeError(f"sections nested deeper than {MAX_DEPTH}")
    for key, value in section.items():
        if value is None:
            continue
        name = _name_bytes(key)
        if isinstance(value, Mapping):
            out.append(ElementType.SECTION_START)
            out += name
            _encode_section(out, value, depth + 1)
            out.append(ElementType.SECTION_END)
        elif isinstance(value, Sequence) and not isinstance(
            value, str | bytes | bytearray | memoryview
        ):
            out.append(ElementType.LIST_START)
            out += name
            for item in value:
                out.append(ElementType.LIST_ITEM)
                out += _value_bytes(item, key)
            out.append(ElementType.LIST_END)
        else:
            out.append(ElementType.KEY_VALUE)
            out += name
            out += _value_bytes(value, key)


def encode_message(message: OutSection) -> bytes:
    """Encode a section tree: mappings become sections, other sequences (not text or
    bytes) become lists, everything else a key/value."""
    out = bytearray()
    _encode_section(out, message, 0)
    return bytes(out)


def encode_packet(
    ptype: PacketType,
    name: str | None = None,
    message: OutSection | bytes | None = None,
    *,
    max_size: int = MAX_PACKET_SIZE,
) -> bytes:
    """Encode one packet *with* its transport length header, ready for the socket.

    ``message`` may be pre-encoded bytes so an event sent to many clients is encoded once.
    """
    out = bytearray(HEADER_SIZE)
    out.append(ptype)
    if ptype.named:
        if name is None:
            raise ViciEncodeError(f"{ptype.name} packets need a name")
        out += _name_bytes(name)
    elif name is not None:
        raise ViciEncodeError(f"{ptype.name} packets carry no name")
    if isinstance(message, bytes | bytearray):
        out += message
    elif message is not None:
        _encode_section(out, message, 0)
    length = len(out) - HEADER_SIZE
    if length > max_size:
        raise ViciEncodeError(f"packet of {length} octets exceeds the {max_size} octet limit")
    _LENGTH.pack_into(out, 0, length)
    return bytes(out)


# --------------------------------------------------------------------------- decoding


def frame_length(header: bytes, max_size: int = MAX_PACKET_SIZE) -> int:
    """Length announced by a 4-octet transport header, refusing empty or oversize packets."""
    if len(header) != HEADER_SIZE:
        raise ViciDecodeError(f"transport header must be {HEADER_SIZE} octets, got {len(header)}")
    (length,) = _LENGTH.unpack(header)
    if length == 0:
        raise ViciDecodeError("empty packet (no packet type)")
    if length > max_size:
        raise ViciDecodeError(f"packet of {length} octets exceeds the {max_size} octet limit")
    return int(length)


def _read_name(view: memoryview, pos: int, what: str) -> tuple[str, int]:
    if pos >= len(view):
        raise ViciDecodeError(f"truncated {what} name length at offset {pos}")
    length = view[pos]
    start = pos + 1
    end = start + length
    if end > len(view):
        raise ViciDecodeError(f"{what} name at offset {pos} runs past the end")
    try:
        return bytes(view[start:end]).decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise ViciDecodeError(f"{what} name at offset {pos} is not valid text") from exc


def _read_value(view: memoryview, pos: int, where: str) -> tuple[bytes, int]:
    if pos + 2 > len(view):
        raise ViciDecodeError(f"truncated value length of {where!r} at offset {pos}")
    (length,) = _VALUE_LENGTH.unpack_from(view, pos)
    start = pos + 2
    end = start + length
    if end > len(view):
        raise ViciDecodeError(f"value of {where!r} at offset {pos} runs past the end")
    return bytes(view[start:end]), end


def _claim(section: Section, name: str, pos: int) -> None:
    # Key names must be unique within a section; a duplicate would silently drop data.
    if name in section:
        raise ViciDecodeError(f"duplicate name {name!r} at offset {pos}")


def decode_message(data: bytes | bytearray | memoryview) -> Section:
    """Decode a message into nested dicts (sections), bytes (values) and lists of bytes."""
    view = memoryview(data)
    end = len(view)
    root: Section = {}
    current = root
    stack: list[Section] = []
    pos = 0
    while pos < end:
        start = pos
        etype = view[pos]
        pos += 1
        if etype == ElementType.SECTION_START:
            name, pos = _read_name(view, pos, "section")
            if len(stack) >= MAX_DEPTH:
                raise ViciDecodeError(f"sections nested deeper than {MAX_DEPTH} at offset {start}")
            _claim(current, name, start)
            child: Section = {}
            current[name] = child
            stack.append(current)
            current = child
        elif etype == ElementType.SECTION_END:
            if not stack:
                raise ViciDecodeError(f"section end without a section at offset {start}")
            current = stack.pop()
        elif etype == ElementType.KEY_VALUE:
            name, pos = _read_name(view, pos, "key")
            value, pos = _read_value(view, pos, name)
            _claim(current, name, start)
            current[name] = value
        elif etype == ElementType.LIST_START:
            name, pos = _read_name(view, pos, "list")
            _claim(current, name, start)
            items: list[bytes] = []
            while True:
                if pos >= end:
                    raise ViciDecodeError(f"list {name!r} at offset {start} is not closed")
                item_type = view[pos]
                pos += 1
                if item_type == ElementType.LIST_ITEM:
                    item, pos = _read_value(view, pos, name)
                    items.append(item)
                elif item_type == ElementType.LIST_END:
                    break
                else:
                    raise ViciDecodeError(
                        f"element type {item_type} inside list {name!r} at offset {pos - 1}"
                    )
            current[name] = items
        elif etype in (ElementType.LIST_ITEM, ElementType.LIST_END):
            raise ViciDecodeError(f"list element outside a list at offset {start}")
        else:
            raise ViciDecodeError(f"unknown element type {etype} at offset {start}")
    if stack:
        raise ViciDecodeError(f"{len(stack)} section(s) not closed at end of message")
    return root


def decode_packet(
    payload: bytes | bytearray | memoryview, max_size: int = MAX_PACKET_SIZE
) -> Packet:
    """Decode one packet given without its transport header."""
    view = memoryview(payload)
    if not view:
        raise ViciDecodeError("empty packet (no packet type)")
    if len(view) > max_size:
        raise ViciDecodeError(f"packet of {len(view)} octets exceeds the {max_size} octet limit")
    try:
        ptype = PacketType(view[0])
    except ValueError:
        raise ViciDecodeError(f"unknown packet type {view[0]}") from None
    pos = 1
    name: str | None = None
    if ptype.named:
        name, pos = _read_name(view, pos, "packet")
    return Packet(ptype, name, decode_message(view[pos:]))


# --------------------------------------------------------------------------- field access


def _value(section: Section, key: str) -> bytes | None:
    value = section.get(key)
    if value is None or isinstance(value, bytes):
        return value
    raise ViciRequestError(f"{key!r} must be a single value")


def get_str(section: Section, key: str) -> str | None:
    value = _value(section, key)
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ViciRequestError(f"{key!r} is not valid text") from None


def get_int(section: Section, key: str, default: int) -> int:
    text = get_str(section, key)
    if text is None or text == "":
        return default
    try:
        return int(text, 10)
    except ValueError:
        raise ViciRequestError(f"{key!r} must be an integer, got {text[:40]!r}") from None


_TRUE = frozenset({"yes", "true", "enabled", "1", "on"})
_FALSE = frozenset({"no", "false", "disabled", "0", "off"})


def get_bool(section: Section, key: str, default: bool = False) -> bool:
    text = get_str(section, key)
    if text is None or text == "":
        return default
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ViciRequestError(f"{key!r} must be yes or no, got {text[:40]!r}")


def get_list(section: Section, key: str) -> list[str]:
    """A list of text items; a single value counts as a one-item list (as charon reads it)."""
    value = section.get(key)
    if value is None:
        return []
    if isinstance(value, bytes):
        value = [value]
    if not isinstance(value, list):
        raise ViciRequestError(f"{key!r} must be a list")
    try:
        return [item.decode("utf-8") for item in value]
    except UnicodeDecodeError:
        raise ViciRequestError(f"an item of {key!r} is not valid text") from None


def as_text(section: Section) -> TextSection:
    """A copy with every blob decoded as UTF-8 (invalid octets replaced), for display."""
    out: TextSection = {}
    for key, value in section.items():
        if isinstance(value, bytes):
            out[key] = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            out[key] = [item.decode("utf-8", "replace") for item in value]
        else:
            out[key] = as_text(value)
    return out
