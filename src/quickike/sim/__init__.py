"""quickike's simulation lab: the real engine on a virtual network with a virtual clock.

Thousands of gateways (each a :class:`quickike.engine.Engine` with a seeded
random source) exchange real IKE datagrams and symbolic ESP over links with
latency, jitter, loss, reordering and duplication; they crash and reboot,
keeping only their persistent store; attackers with the issue-202 powers
spoof and capture; one seed gives one trace.  See docs/simulation.md.

    from quickike.sim import Params, run_scenario
    result = run_scenario("seed", Params(seed=1))
    result.metrics["detection"], print(result.diagram)
"""

from .network import LinkProfile, Nat, Network
from .node import Node, NodeStore
from .params import ParamError, Params
from .runner import RunResult, run_scenario
from .scenarios import SCENARIOS, Scenario, Setup
from .trace import Trace, TraceMode
from .traffic import Pattern, TrafficSpec
from .world import World

__all__ = [
    "SCENARIOS",
    "LinkProfile",
    "Nat",
    "Network",
    "Node",
    "NodeStore",
    "ParamError",
    "Params",
    "Pattern",
    "RunResult",
    "Scenario",
    "Setup",
    "Trace",
    "TraceMode",
    "TrafficSpec",
    "World",
    "run_scenario",
]
