"""The command table: one handler per VICI command, translating charon's request and
reply shapes to calls on :class:`~quickike.control.vici.backend.ViciBackend`.

Handlers raise :class:`BackendError` or :class:`ViciRequestError` for failures the user
should read; the server turns those into ``success = no`` / ``errmsg`` replies, the
way charon reports failures, so swanctl prints them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from .backend import (
    BackendError,
    InitiateRequest,
    LogRecord,
    SaSelector,
    SharedSecret,
    TerminateRequest,
    TerminateResult,
    ViciBackend,
)
from .protocol import (
    OutSection,
    OutValue,
    Section,
    get_bool,
    get_int,
    get_list,
    get_str,
)

T = TypeVar("T")

#: loglevel charon uses for control-log when the request names none
DEFAULT_LOGLEVEL = 1
#: shared secret types charon's load-shared accepts
SHARED_TYPES = frozenset({"ike", "eap", "xauth", "ntlm", "ppk"})


class CommandContext(Protocol):
    """What a handler may do besides computing its reply."""

    @property
    def closed(self) -> bool:
        """The client went away (or was dropped); stop streaming."""
        ...

    def stream(self, event: str, message: OutSection) -> None:
        """Send an event to the requesting client only, if it registered for ``event``."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task the server owns (cancelled when the server closes)."""
        ...


Handler = Callable[[CommandContext, Section], "OutSection | Awaitable[OutSection]"]

SUCCESS: dict[str, OutValue] = {"success": "yes"}


def failure(errmsg: str, **extra: OutValue) -> dict[str, OutValue]:
    return {"success": "no", **extra, "errmsg": errmsg}


class ControlLog:
    """Forwards backend progress as ``control-log`` events to one client, at or below the
    requested loglevel, until the command has answered (later lines would arrive after the
    reply, where swanctl and vici no longer expect them)."""

    __slots__ = ("_active", "_ctx", "_level")

    def __init__(self, ctx: CommandContext, level: int) -> None:
        self._ctx = ctx
        self._level = level
        self._active = True

    def __call__(self, record: LogRecord) -> None:
        if not self._active or record.level > self._level or self._ctx.closed:
            return
        self._ctx.stream(
            "control-log",
            {
                "group": record.group,
                "level": record.level,
                "ikesa-name": record.ike_name,
                "ikesa-uniqueid": record.ike_uniqueid,
                "msg": record.msg,
            },
        )

    def stop(self) -> None:
        self._active = False


async def run_bounded(
    ctx: CommandContext, coro: Coroutine[Any, Any, T], timeout_ms: int
) -> tuple[bool, T | None]:
    """charon's timeout rule for initiate/terminate: 0 waits for the result, a negative
    timeout returns at once, a positive one waits that many milliseconds. The operation
    itself carries on in the background after an early return. Returns (done, result)."""
    task = ctx.spawn(coro)
    if timeout_ms < 0:
        return False, None
    if timeout_ms == 0:
        return True, await task
    done, _ = await asyncio.wait({task}, timeout=timeout_ms / 1000)
    if not done:
        return False, None
    return True, task.result()


def _selector(request: Section) -> SaSelector:
    ike_id = get_int(request, "ike-id", 0)
    child_id = get_int(request, "child-id", 0)
    return SaSelector(
        ike=get_str(request, "ike"),
        ike_id=ike_id or None,
        child=get_str(request, "child"),
        child_id=child_id or None,
    )


def _text(value: OutValue) -> str | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, str | int):
        return str(value)
    return None


def _filter_sa(
    name: str, body: Mapping[str, OutValue], selector: SaSelector
) -> Mapping[str, OutValue] | None:
    """The list-sa body restricted to what the request's filters select, or None."""
    if selector.ike is not None and name != selector.ike:
        return None
    if selector.ike_id is not None and _text(body.get("uniqueid")) != str(selector.ike_id):
        return None
    if not selector.targets_children:
        return body
    children = body.get("child-sas")
    kept: dict[str, OutValue] = {}
    if isinstance(children, Mapping):
        for key, child in children.items():
            if not isinstance(child, Mapping):
                continue
            if selector.child is not None and _text(child.get("name")) != selector.child:
                continue
            if selector.child_id is not None and _text(child.get("uniqueid")) != str(
                selector.child_id
            ):
                continue
            kept[key] = child
    if not kept:
        return None
    return {**body, "child-sas": kept}


def _entries(messages: Iterable[OutSection]) -> Iterable[tuple[str, Mapping[str, OutValue]]]:
    for message in messages:
        for name, body in message.items():
            if isinstance(body, Mapping):
                yield name, body


class StandardCommands:
    """charon's commands (those swanctl and the vici package use) plus quickike's own."""

    def __init__(self, backend: ViciBackend) -> None:
        self.backend = backend

    def table(self) -> dict[str, Handler]:
        table: dict[str, Handler] = {
            "version": self.version,
            "stats": self.stats,
            "reload-settings": self.reload_settings,
            "list-sas": self.list_sas,
            "list-conns": self.list_conns,
            "get-conns": self.get_conns,
            "initiate": self.initiate,
            "terminate": self.terminate,
            "rekey": self.rekey,
            "load-conn": self.load_conn,
            "unload-conn": self.unload_conn,
            "load-shared": self.load_shared,
            "unload-shared": self.unload_shared,
            "get-shared": self.get_shared,
            "clear-creds": self.clear_creds,
            # swanctl --load-all asks for these before deciding what to (un)load; quickike
            # keeps no private keys, CAs or pools over VICI, so the lists are empty.
            "get-keys": lambda ctx, req: {"keys": []},
            "get-authorities": lambda ctx, req: {"authorities": []},
            "get-pools": lambda ctx, req: {},
            "qcd-show": self.qcd_show,
            "qcd-rotate": self.qcd_rotate,
        }
        for command in (
            "load-cert",
            "load-key",
            "unload-key",
            "load-token",
            "load-authority",
            "unload-authority",
            "load-pool",
            "unload-pool",
        ):
            table[command] = _unsupported(command)
        return table

    # -- queries

    def version(self, ctx: CommandContext, request: Section) -> OutSection:
        return self.backend.version()

    def stats(self, ctx: CommandContext, request: Section) -> OutSection:
        return self.backend.stats()

    def list_sas(self, ctx: CommandContext, request: Section) -> OutSection:
        selector = _selector(request)
        for name, body in _entries(self.backend.list_sas()):
            if ctx.closed:
                break
            selected = _filter_sa(name, body, selector)
            if selected is not None:
                ctx.stream("list-sa", {name: selected})
        return {}

    def list_conns(self, ctx: CommandContext, request: Section) -> OutSection:
        wanted = get_str(request, "ike")
        for name, body in _entries(self.backend.list_conns()):
            if ctx.closed:
                break
            if wanted is None or name == wanted:
                ctx.stream("list-conn", {name: body})
        return {}

    def get_conns(self, ctx: CommandContext, request: Section) -> OutSection:
        return {"conns": list(self.backend.get_conns())}

    def get_shared(self, ctx: CommandContext, request: Section) -> OutSection:
        return {"keys": list(self.backend.get_shared())}

    def qcd_show(self, ctx: CommandContext, request: Section) -> OutSection:
        return self.backend.qcd_show()

    def qcd_rotate(self, ctx: CommandContext, request: Section) -> OutSection:
        return {**SUCCESS, **self.backend.qcd_rotate()}

    # -- control

    async def initiate(self, ctx: CommandContext, request: Section) -> OutSection:
        child = get_str(request, "child")
        ike = get_str(request, "ike")
        timeout = get_int(request, "timeout", 0)
        level = get_int(request, "loglevel", DEFAULT_LOGLEVEL)
        if not child and not ike:
            return failure("missing configuration name")
        log = ControlLog(ctx, level)
        what = f"CHILD_SA '{child}'" if child else f"IKE_SA '{ike}'"
        try:
            done, _ = await run_bounded(
                ctx,
                self.backend.initiate(
                    InitiateRequest(child or None, ike or None, get_bool(request, "init-limits")),
                    log,
                ),
                timeout,
            )
        except BackendError as exc:
            return failure(str(exc) or f"establishing {what} failed")
        finally:
            log.stop()
        if not done and timeout > 0:
            return failure(f"{what} not established after {timeout}ms")
        return SUCCESS

    async def terminate(self, ctx: CommandContext, request: Section) -> OutSection:
        selector = _selector(request)
        if selector.empty:
            return failure("missing terminate selector")
        timeout = get_int(request, "timeout", 0)
        log = ControlLog(ctx, get_int(request, "loglevel", DEFAULT_LOGLEVEL))
        try:
            done, result = await run_bounded(
                ctx,
                self.backend.terminate(TerminateRequest(selector, get_bool(request, "force")), log),
                timeout,
            )
        finally:
            log.stop()
        if not done:
            if timeout > 0:
                return failure(f"terminating SA not completed after {timeout}ms")
            return SUCCESS
        assert isinstance(result, TerminateResult)
        counts: dict[str, OutValue] = {
            "matches": result.matches,
            "terminated": result.terminated,
        }
        if result.matches == 0:
            return failure("no matching SAs to terminate found", **counts)
        if result.terminated < result.matches:
            text = (
                "terminating SA failed"
                if result.matches == 1
                else "not all matching SAs could be terminated"
            )
            return failure(text, **counts)
        return {**SUCCESS, **counts}

    def rekey(self, ctx: CommandContext, request: Section) -> OutSection:
        selector = _selector(request)
        if selector.empty:
            return failure("missing rekey selector")
        matches = self.backend.rekey(selector, get_bool(request, "reauth"))
        if matches == 0:
            return failure("no matching SAs to rekey found", matches=0)
        return {**SUCCESS, "matches": matches}

    def reload_settings(self, ctx: CommandContext, request: Section) -> OutSection:
        self.backend.reload_settings()
        return SUCCESS

    # -- configuration and credentials

    def load_conn(self, ctx: CommandContext, request: Section) -> OutSection:
        if not request:
            return failure("missing connection definition")
        for name, config in request.items():
            if not isinstance(config, dict):
                return failure(f"invalid connection definition {name!r}: expected a section")
        for name, config in request.items():
            assert isinstance(config, dict)
            self.backend.load_conn(name, config)
        return SUCCESS

    def unload_conn(self, ctx: CommandContext, request: Section) -> OutSection:
        name = get_str(request, "name")
        if not name:
            return failure("missing connection name to unload")
        self.backend.unload_conn(name)
        return SUCCESS

    def load_shared(self, ctx: CommandContext, request: Section) -> OutSection:
        kind = (get_str(request, "type") or "").lower()
        if kind not in SHARED_TYPES:
            return failure(f"invalid credential type '{kind}'" if kind else "missing type")
        data = request.get("data")
        if not isinstance(data, bytes) or not data:
            return failure("missing shared key data")
        secret = SharedSecret(
            id=get_str(request, "id") or None,
            type=kind,
            data=data,
            owners=tuple(get_list(request, "owners")),
        )
        self.backend.load_shared(secret)
        return SUCCESS

    def unload_shared(self, ctx: CommandContext, request: Section) -> OutSection:
        secret_id = get_str(request, "id")
        if not secret_id:
            return failure("missing shared secret id")
        self.backend.unload_shared(secret_id)
        return SUCCESS

    def clear_creds(self, ctx: CommandContext, request: Section) -> OutSection:
        for secret_id in list(self.backend.get_shared()):
            self.backend.unload_shared(secret_id)
        return SUCCESS


def _unsupported(command: str) -> Handler:
    def handler(ctx: CommandContext, request: Section) -> OutSection:
        return failure(f"{command} is not supported by quickike")

    return handler


def standard_commands(backend: ViciBackend) -> dict[str, Handler]:
    return StandardCommands(backend).table()


__all__ = [
    "SUCCESS",
    "CommandContext",
    "ControlLog",
    "Handler",
    "StandardCommands",
    "failure",
    "run_bounded",
    "standard_commands",
]
