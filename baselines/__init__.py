"""Hand-coded reference policies behind one interface (SB3's ``predict``).

``make_policy(name, env=None, **params)`` builds one by name; ``POLICIES`` maps the names to
their factories:

| name | what | source |
|---|---|---|
| ``baseline`` | reactive scaling, every cold start from cloud storage, no pool | San Juan & Wong 2023 |
| ``pool`` | reactive, remote memory pool kept warm, locality-blind placement | San Juan & Wong 2023 |
| ``hierarchical`` | reactive, hierarchical sourcing, locality-aware placement, warm pool | San Juan & Wong 2023 |
| ``keepalive`` | fixed keep-alive (``keep_alive_s``, 600 = AWS Lambda, 1200 = Azure) | Shahrad et al. 2020 |
| ``histogram`` | hybrid histogram pre-warm / keep-alive windows | Shahrad et al. 2020 |
| ``kpa`` | Knative KPA (target concurrency, stable/panic windows, scale to zero) | Knative |
| ``serverlessllm`` | startup-time-optimised placement (the ``fastest`` rule) | Fu et al. OSDI 2024 |
| ``overprovision`` | always-warm fleet sized for peak, never scales in | state of practice |
| ``random`` | masked uniform random | sanity floor |

Every policy needs ``bind(env)`` (or ``env=``) before ``predict``: it reads the scenario's static
facts and the env's masks; a privileged one (none is today) would also read the simulator.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from .base import DATAPATHS, DataPath, ObsView, Policy, ScalingPolicy, ScenarioFacts
from .keepalive import HybridHistogram, KeepAlive
from .kpa import KPA
from .reactive import Baseline, Hierarchical, Pool, ReactivePolicy
from .serverlessllm import ServerlessLLM
from .static import Overprovision, RandomPolicy

POLICIES: dict[str, Callable[..., Policy]] = {
    "baseline": Baseline,
    "pool": Pool,
    "hierarchical": Hierarchical,
    "keepalive": KeepAlive,
    "histogram": HybridHistogram,
    "kpa": KPA,
    "serverlessllm": ServerlessLLM,
    "overprovision": Overprovision,
    "random": RandomPolicy,
}


def check_policy_name(name: str) -> str:
    """``name`` if registered; else a ValueError listing the names and suggesting the closest."""
    if name not in POLICIES:
        close = difflib.get_close_matches(str(name), list(POLICIES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown policy {name!r}; valid policies: {', '.join(POLICIES)}.{hint}")
    return name


def make_policy(name: str, env=None, **params) -> Policy:
    """Build the registered policy ``name`` with its keyword ``params``, bound to ``env`` if given.

    Raises:
        ValueError: Unknown name (the valid names and the closest are listed) or bad parameter.
    """
    factory = POLICIES[check_policy_name(name)]
    try:
        return factory(env=env, **params)
    except TypeError as e:
        raise ValueError(f"policy {name!r}: {e}") from None


__all__ = [
    "DATAPATHS",
    "KPA",
    "POLICIES",
    "Baseline",
    "DataPath",
    "Hierarchical",
    "HybridHistogram",
    "KeepAlive",
    "ObsView",
    "Overprovision",
    "Policy",
    "Pool",
    "RandomPolicy",
    "ReactivePolicy",
    "ScalingPolicy",
    "ScenarioFacts",
    "ServerlessLLM",
    "check_policy_name",
    "make_policy",
]
