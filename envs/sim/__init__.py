"""A deterministic discrete-event simulator of GPU inference cold starts (no RL imports).

Modules, one concept each: :mod:`.config` (validated specs), :mod:`.catalog` (default models),
:mod:`.engine` (event queue), :mod:`.links` (shared links, fair sharing), :mod:`.cache` (model
copies under capacity), :mod:`.kernel` (request serving), :mod:`.sourcing` (where a load reads
from, how long it takes), :mod:`.fetch` (how weights move: unicast, striped, multicast),
:mod:`.lifecycle` (stages of instances and prefetches), :mod:`.accounting` (GPU time, memory,
cost, counts), :mod:`.simulator` (the cluster, its event loop and control interface),
:mod:`.metrics`, :mod:`.workload`.
"""

from .catalog import CATALOG, get_models
from .config import (
    PLACEMENT_RULES,
    SOURCING_RULES,
    TIERS,
    CloudStoreSpec,
    ConfigError,
    FeatureSpec,
    HostSpec,
    ModelSpec,
    PriceSpec,
    SimConfig,
    StartupSpec,
)
from .metrics import latencies, summary
from .simulator import SimError, Simulator
from .workload import Workload

__all__ = [
    "CATALOG",
    "PLACEMENT_RULES",
    "SOURCING_RULES",
    "TIERS",
    "CloudStoreSpec",
    "ConfigError",
    "FeatureSpec",
    "HostSpec",
    "ModelSpec",
    "PriceSpec",
    "SimConfig",
    "SimError",
    "Simulator",
    "StartupSpec",
    "Workload",
    "get_models",
    "latencies",
    "summary",
]
