"""Anti-replay window (RFC 4303 §3.4.3, Appendix A) including ESN inference."""

from __future__ import annotations

import pytest

from quickike.dataplane.replay import DEFAULT_WINDOW, ReplayError, ReplayWindow


def accept(w: ReplayWindow, seql: int) -> int:
    seq = w.check(seql)
    w.update(seq)
    return seq


def test_default_window_is_1024() -> None:
    assert DEFAULT_WINDOW == 1024
    assert ReplayWindow().size == 1024


def test_in_order_and_duplicates() -> None:
    w = ReplayWindow()
    for s in range(1, 50):
        assert accept(w, s) == s
    for s in (1, 17, 49):
        with pytest.raises(ReplayError, match="duplicate"):
            w.check(s)


def test_zero_is_never_accepted() -> None:
    w = ReplayWindow()
    with pytest.raises(ReplayError):
        w.check(0)
    accept(w, 5)
    with pytest.raises(ReplayError):
        w.check(0)


def test_reordering_inside_window_is_accepted_once() -> None:
    w = ReplayWindow(64)
    accept(w, 100)
    accept(w, 60)  # 100 - 60 = 40 < 64
    with pytest.raises(ReplayError):
        w.check(60)
    assert w.seen(60) and not w.seen(61)


def test_left_edge_of_window() -> None:
    w = ReplayWindow(1024)
    accept(w, 2000)
    accept(w, 2000 - 1023)  # last slot inside the window
    with pytest.raises(ReplayError, match="left of the window"):
        w.check(2000 - 1024)


def test_window_slides_and_forgets() -> None:
    w = ReplayWindow(32)
    accept(w, 10)
    accept(w, 12)
    accept(w, 40)  # shift 28: 12 is still inside, 10 not
    assert w.seen(12) and not w.seen(11)
    with pytest.raises(ReplayError):
        w.check(12)
    w.check(11)  # not seen, still inside (40 - 11 = 29 < 32)
    with pytest.raises(ReplayError, match="left"):
        w.check(8)
    accept(w, 40 + 5000)  # a jump larger than the window clears it
    assert w.bitmap == 1 and w.top == 5040


def test_check_does_not_move_the_window() -> None:
    """Forged packets pass the replay check but must not advance it (update only after ICV)."""
    w = ReplayWindow()
    accept(w, 5)
    assert w.check(1_000_000) == 1_000_000
    assert w.top == 5
    accept(w, 6)


@pytest.mark.parametrize("size", [31, 1 << 31])
def test_bad_sizes(size: int) -> None:
    with pytest.raises(ValueError):
        ReplayWindow(size)


# --- ESN (Appendix A2.2) -------------------------------------------------------------------


def test_esn_case_a_same_and_next_subspace() -> None:
    w = ReplayWindow(1024, esn=True)
    w.update((7 << 32) | 5000)
    assert w.check(4500) == (7 << 32) | 4500  # Seql >= Bl: Seqh = Th
    assert w.check(6000) == (7 << 32) | 6000
    assert w.check(100) == (8 << 32) | 100  # Seql < Bl: Seqh = Th + 1


def test_esn_wrap_of_the_low_32_bits() -> None:
    """The sender crosses 2^32: the receiver infers Seqh + 1 and keeps late packets in Th."""
    w = ReplayWindow(1024, esn=True)
    w.update(0xFFFFF000)  # as if 2^32 - 4096 packets had arrived
    for s in range(0xFFFFFF00, 0x1_0000_0000):
        accept(w, s)
    assert w.top == 0xFFFFFFFF
    # the next packets carry small Seql; they belong to subspace 1
    assert accept(w, 0) == 1 << 32
    assert accept(w, 1) == (1 << 32) | 1
    # Case B now (Tl < W - 1): a late packet from before the wrap maps to Th - 1
    assert w.check(0xFFFFFE80) == 0xFFFFFE80  # not seen: never sent in this test
    with pytest.raises(ReplayError, match="duplicate"):
        w.check(0xFFFFFFF0)
    with pytest.raises(ReplayError, match="duplicate"):
        w.check(0)
    # a packet far ahead in the new subspace
    assert accept(w, 5000) == (1 << 32) | 5000
    assert w.seen((1 << 32) | 5000) and not w.seen(1 << 32)  # slid out of the window


def test_esn_case_b_at_the_very_start() -> None:
    """Before anything arrived Th = 0, Tl = 0 < W - 1: huge Seql would need Th - 1 < 0."""
    w = ReplayWindow(1024, esn=True)
    with pytest.raises(ReplayError):
        w.check(0xFFFFFFFF)
    with pytest.raises(ReplayError):
        w.check(0)
    assert accept(w, 1) == 1


def test_esn_top_of_64_bit_space() -> None:
    w = ReplayWindow(64, esn=True)
    w.update((1 << 64) - 1)
    with pytest.raises(ReplayError):
        w.check(3)  # would be subspace 2^32: beyond 2^64 - 1
