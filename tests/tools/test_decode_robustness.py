"""Whatever the input, the decoder reports problems as lines and never raises."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from quickike.tools.decode import (
    Decoder,
    Problems,
    capture_datagrams,
    is_capture,
    read_capture,
    render_text,
    sample_path,
    split_stream,
)

from .test_decode_cli import RFC7634_LINE, RFC7634_MSG

SAMPLE = sample_path().read_bytes()
MAGICS = [b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a"]


def _pipeline(data: bytes, keys: bool = False) -> None:
    problem = Problems(io.StringIO())
    from quickike.tools.decode import load_keys

    table = load_keys([("k", RFC7634_LINE)], problem) if keys else {}
    decoder = Decoder(table, problem)
    if is_capture(data[:4]):
        dgs = capture_datagrams(read_capture(data, "f", problem), "f", {4500}, problem)
    else:
        dgs = split_stream(data, "f", problem)
    for dg in dgs:
        view = decoder.datagram(dg)
        if view is not None:
            render_text(view, full=False)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MAGICS), st.binary(max_size=300))
def test_random_capture_files(magic: bytes, body: bytes) -> None:
    _pipeline(magic + body)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255)), max_size=6),
    st.integers(0, len(SAMPLE)),
)
def test_mutated_sample(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SAMPLE)
    for pos, val in flips:
        data[pos] = val
    _pipeline(bytes(data[: max(cut, 4)]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(RFC7634_MSG) - 1), st.integers(0, 255)), max_size=3))
def test_mutated_protected_message_with_keys(flips: list[tuple[int, int]]) -> None:
    data = bytearray(RFC7634_MSG)
    for pos, val in flips:
        data[pos] = val
    _pipeline(bytes(data), keys=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_raw_input(data: bytes) -> None:
    _pipeline(data)
