"""Values that charon 5.9.8 hex-dumps into its log at level 4, read back as bytes.

At ``ike = 4`` charon logs, per IKE SA, ``shared Diffie Hellman secret``, ``SKEYSEED`` and
``Sk_d``/``Sk_ai``/``Sk_ar``/``Sk_ei``/``Sk_er``/``Sk_pi``/``Sk_pr secret`` (Sk_ai/Sk_ar only
for non-AEAD suites), and for PSK authentication ``IDx'``, ``SK_p``, ``octets = ...`` and
``AUTH = ...``. Nonces are not logged; take them from the capture. A dump looks like::

    00:03:50.123 13[IKE] SKEYSEED => 32 bytes @ 0x7fabc000aa00
    00:03:50.123 13[IKE]    0: E7 B6 70 24 81 31 02 71 59 0F 1B 5D AB 60 D6 54  ..p$.1.qY..].`.T

Worker threads interleave their lines, so dumps are followed per thread number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_LINE = re.compile(r"(?:^|\s)(?P<thread>\d{2,})\[(?P<group>[A-Z]{2,4})\] (?:<[^>]*> )?(?P<msg>.*)$")
_HEAD = re.compile(r"^(?P<label>\S.*?) => (?P<size>\d+) bytes @ \S+$")
_DUMP = re.compile(r"^\s*(?P<offset>\d+): (?P<rest>.*)$")

IKE_KEY_LABELS = {
    "shared Diffie Hellman secret": "dh_shared_secret",
    "SKEYSEED": "skeyseed",
    "Sk_d secret": "sk_d",
    "Sk_ai secret": "sk_ai",
    "Sk_ar secret": "sk_ar",
    "Sk_ei secret": "sk_ei",
    "Sk_er secret": "sk_er",
    "Sk_pi secret": "sk_pi",
    "Sk_pr secret": "sk_pr",
}


class KeyLogError(ValueError):
    """A hex dump in the log is cut short or malformed."""


@dataclass(frozen=True, slots=True)
class LoggedValue:
    thread: int
    group: str
    label: str
    data: bytes
    line: int


@dataclass(slots=True)
class _Open:
    group: str
    label: str
    size: int
    line: int
    data: bytearray


def parse_hexdumps(lines: Iterable[str]) -> list[LoggedValue]:
    """Every ``label => N bytes`` dump in log order (order of their first line)."""
    open_dumps: dict[int, _Open] = {}
    done: list[LoggedValue] = []

    def finish(thread: int) -> None:
        dump = open_dumps.pop(thread)
        if len(dump.data) != dump.size:
            raise KeyLogError(
                f"line {dump.line}: {dump.label!r} has {len(dump.data)} of {dump.size} bytes"
            )
        done.append(LoggedValue(thread, dump.group, dump.label, bytes(dump.data), dump.line))

    for number, text in enumerate(lines, start=1):
        match = _LINE.search(text.rstrip("\n"))
        if match is None:
            continue
        thread = int(match["thread"])
        msg = match["msg"]
        current = open_dumps.get(thread)
        if current is not None and len(current.data) < current.size:
            dump_line = _DUMP.match(msg)
            if dump_line is not None and int(dump_line["offset"]) == len(current.data):
                count = min(16, current.size - len(current.data))
                hex_part = dump_line["rest"][: 3 * count - 1]
                try:
                    current.data += bytes.fromhex(hex_part)
                except ValueError as exc:
                    raise KeyLogError(f"line {number}: bad hex dump {hex_part!r}") from exc
                if len(current.data) == current.size:
                    finish(thread)
                continue
            finish(thread)  # raises: the dump was cut short
        head = _HEAD.match(msg)
        if head is not None:
            open_dumps[thread] = _Open(
                match["group"], head["label"], int(head["size"]), number, bytearray()
            )
            if int(head["size"]) == 0:
                finish(thread)
    for thread in list(open_dumps):
        finish(thread)
    done.sort(key=lambda v: v.line)
    return done


def ike_keys(values: Iterable[LoggedValue]) -> list[dict[str, bytes]]:
    """One dict per IKE key derivation in the log (first SA first), keyed like IKE_KEY_LABELS."""
    sets: list[dict[str, bytes]] = []
    for value in values:
        name = IKE_KEY_LABELS.get(value.label)
        if name is None:
            continue
        if name == "dh_shared_secret" or not sets or name in sets[-1]:
            sets.append({})
        sets[-1][name] = value.data
    return sets


def psk_auth_values(values: Iterable[LoggedValue]) -> list[dict[str, bytes]]:
    """The PSK AUTH computations in log order: {id_prime, sk_p, octets, auth} each.

    Both peers log the initiator's AUTH first (the responder verifies it before it computes
    its own), so index 0 is the initiator's and index 1 the responder's on either side.
    """
    names = {"IDx'": "id_prime", "SK_p": "sk_p", "AUTH = prf(prf(secret, keypad), octets)": "auth"}
    out: list[dict[str, bytes]] = []
    for value in values:
        key = "octets" if value.label.startswith("octets = ") else names.get(value.label, "")
        if not key:
            continue
        if key == "id_prime" or not out:
            out.append({})
        out[-1][key] = value.data
    return out
