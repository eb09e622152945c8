"""The sans-I/O IKEv2 engine: SA manager, tasks, timers and events, no sockets, no clock."""

from .engine import Datagram, Engine, needs_marker
from .extension import Extension

__all__ = ["Datagram", "Engine", "Extension", "needs_marker"]
