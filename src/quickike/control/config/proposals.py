"""Load-time check of proposal strings against the crypto layer's parser.

The strings stay in the configuration objects (the engine builds proposals
from them); checking them here only moves a typo's error from the first
negotiation to the config load, with ``file:line``.
"""

from __future__ import annotations

from collections.abc import Iterable

from quickike.crypto.errors import ProposalError
from quickike.crypto.proposals import parse_proposals
from quickike.wire.enums import ProtocolId


def check_proposals(items: Iterable[str], protocol: ProtocolId) -> str | None:
    """None if every proposal parses, else the parser's message for the first bad one."""
    for item in items:
        try:
            parse_proposals(item, protocol)
        except ProposalError as exc:
            return f"'{item}': {exc}"
    return None
