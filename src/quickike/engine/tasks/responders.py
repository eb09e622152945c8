"""Which tasks answer a request on an established IKE SA.

As in charon's task manager, the responder looks at the exchange type and
the payloads: an IKE proposal in CREATE_CHILD_SA is an IKE rekey, N(REKEY_SA)
a CHILD rekey, anything else a new CHILD; Delete payloads in INFORMATIONAL
are deletes, notifies are reported, and an empty request is a liveness
check that needs nothing but the (empty) answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.enums import ExchangeType, NotifyType, ProtocolId
from ...wire.message import Message
from ...wire.payloads import SA, Delete
from .base import Task
from .child_create import ChildCreate
from .child_delete import ChildDelete
from .child_rekey import ChildRekey
from .ike_delete import IkeDelete
from .ike_rekey import IkeRekey
from .informational import Informational

if TYPE_CHECKING:
    from ..engine import Engine
    from ..sa import IkeSa


def tasks_for_request(engine: Engine, sa: IkeSa, msg: Message) -> list[Task]:
    exchange = msg.exchange
    tasks: list[Task] = []
    if exchange == ExchangeType.CREATE_CHILD_SA:
        sa_p = msg.get(SA)
        rekey = msg.notify(NotifyType.REKEY_SA)
        if sa_p is not None and sa_p.proposals and sa_p.proposals[0].protocol == ProtocolId.IKE:
            tasks.append(IkeRekey(engine, sa, exchange))
        elif rekey is not None:
            old = engine.children_out.get(rekey.spi)
            tasks.append(ChildRekey(engine, sa, exchange, old if old is not None and old.ike is sa else None))
        else:
            tasks.append(ChildCreate(engine, sa, exchange, None))
    elif exchange == ExchangeType.INFORMATIONAL:
        deletes = msg.all(Delete)
        if any(d.protocol == ProtocolId.IKE for d in deletes):
            tasks.append(IkeDelete(engine, sa, exchange))
        elif deletes:
            tasks.append(ChildDelete(engine, sa, exchange))
        tasks.append(Informational(engine, sa, exchange))
    else:
        tasks.append(Informational(engine, sa, exchange))
    for t in tasks:
        t.responder = True
    return tasks
