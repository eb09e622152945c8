"""Log lines an operator can follow one tunnel through.

Every engine event becomes one log record whose fields (the IKE SA's
unique id, SPIs, names) are kept as structured extras; the JSON formatter
writes them as one object per line, the text formatter in charon's spirit.
Key material never reaches a log: events carry none.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import Any, TextIO

from ..engine import events as ev

log = logging.getLogger("quickike")

_LEVELS = {
    ev.Dropped: logging.DEBUG,
    ev.MessageTrace: logging.DEBUG,
    ev.Retransmit: logging.INFO,
    ev.PeerDead: logging.WARNING,
    ev.IkeSetupFailed: logging.WARNING,
    ev.ChildSetupFailed: logging.WARNING,
}

#: event class -> short name used as the log "event" field
EVENT_NAMES = {
    ev.IkeSaUp: "ike-up",
    ev.IkeSaDown: "ike-down",
    ev.ChildSaUp: "child-up",
    ev.ChildSaDown: "child-down",
    ev.IkeSetupFailed: "ike-failed",
    ev.ChildSetupFailed: "child-failed",
    ev.MessageTrace: "message",
    ev.Dropped: "drop",
    ev.LivenessCheck: "liveness",
    ev.PeerDead: "dead-peer",
    ev.Retransmit: "retransmit",
    ev.ExtensionEvent: "ext",
}


def event_fields(e: ev.Event) -> dict[str, Any]:
    """JSON-friendly fields of an event (bytes as hex)."""
    out: dict[str, Any] = {"event": EVENT_NAMES.get(type(e), type(e).__name__)}
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, bytes):
            v = v.hex()
        elif isinstance(v, tuple) and v and isinstance(v[0], str) and f.name in ("local", "remote"):
            v = f"{v[0]}[{v[1]}]"
        elif isinstance(v, dict):
            v = {k: (x.hex() if isinstance(x, bytes) else x) for k, x in v.items()}
        out[f.name] = v
    if isinstance(e, ev.ExtensionEvent):
        out["event"] = f"{e.source}-{e.kind}"
    return out


def event_text(e: ev.Event) -> str:
    f = event_fields(e)
    name = f.pop("event")
    f.pop("time", None)
    if isinstance(e, ev.MessageTrace):
        arrow = "sending" if e.sent else "received"
        kind = "response" if e.response else "request"
        return (
            f"[{e.ike_uid or '-'}] {arrow} {e.exchange} {kind} {e.message_id} "
            f"[ {' '.join(e.payloads)} ] {'to' if e.sent else 'from'} {f['remote']} ({e.size} bytes)"
        )
    uid = f.pop("ike_uid", None)
    parts = " ".join(f"{k}={v}" for k, v in f.items() if v not in (None, "", (), {}))
    return f"[{uid if uid is not None else '-'}] {name} {parts}"


#: QCD events that happen for every tunnel set up: routine, so debug
_ROUTINE_EXT = frozenset({"token-given", "token-stored", "token-sent"})


class _EventMessage:
    """The text of an event, built only if a handler formats it as text."""

    __slots__ = ("event",)

    def __init__(self, event: ev.Event) -> None:
        self.event = event

    def __str__(self) -> str:
        return event_text(self.event)


def event_level(e: ev.Event) -> int:
    if isinstance(e, ev.ExtensionEvent) and e.kind in _ROUTINE_EXT:
        return logging.DEBUG
    return _LEVELS.get(type(e), logging.INFO)


def log_event(e: ev.Event) -> None:
    """Log one engine event; the text or the JSON fields are built only when written."""
    level = event_level(e)
    if not log.isEnabledFor(level):
        return
    log.log(level, _EventMessage(e), extra={"qi_event": e})


def record_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    """The structured fields of a record that carries an engine event (built once, cached)."""
    fields: dict[str, Any] | None = getattr(record, "qi_fields", None)
    if fields is None:
        event = getattr(record, "qi_event", None)
        if event is None:
            return None
        fields = event_fields(event)
        spis = getattr(record, "qi_spis", None)
        if spis is not None and "spi_i" not in fields:
            fields["spi_i"], fields["spi_r"] = spis[0].hex(), spis[1].hex()
        record.qi_fields = fields
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = record_fields(record)
        if fields is not None:
            obj.update(fields)
        else:
            obj["msg"] = record.getMessage()
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def setup_logging(
    level: str = "info", fmt: str = "text", file: str | None = None, stream: TextIO | None = None
) -> None:
    handler: logging.Handler = (
        logging.FileHandler(file) if file else logging.StreamHandler(stream or sys.stderr)
    )
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("quickike")
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.propagate = False
