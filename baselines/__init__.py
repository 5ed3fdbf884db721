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

``ORACLES`` holds what is not a reference policy but may be evaluated beside them by name:
``hindsight`` (:class:`baselines.hindsight.Hindsight`), privileged, which reads every model's
future arrival times to measure the headroom over the best heuristic, and ``hindsight-minute``,
which knows only each trace minute's count of them. ``all`` means ``POLICIES``
alone, and teachers and a study's heuristics are drawn from ``POLICIES`` alone.

Every policy needs ``bind(env)`` (or ``env=``) before ``predict``: it reads the scenario's static
facts and the env's masks; a privileged one (``hindsight``) also reads the simulator.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial

from .base import DATAPATHS, DataPath, ObsView, Policy, ScalingPolicy, ScenarioFacts
from .hindsight import Hindsight
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
ORACLES: dict[str, Callable[..., Policy]] = {
    "hindsight": Hindsight,
    "hindsight-minute": partial(Hindsight, resolution_s=60.0, name="hindsight-minute"),
}


def check_policy_name(name: str) -> str:
    """``name`` if registered; else a ValueError listing the names and suggesting the closest."""
    if name not in POLICIES and name not in ORACLES:
        known = [*POLICIES, *ORACLES]
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown policy {name!r}; valid policies: {', '.join(known)}.{hint}")
    return name


def make_policy(name: str, env=None, **params) -> Policy:
    """Build the registered policy ``name`` with its keyword ``params``, bound to ``env`` if given.

    Raises:
        ValueError: Unknown name (the valid names and the closest are listed) or bad parameter.
    """
    name = check_policy_name(name)
    factory = POLICIES.get(name) or ORACLES[name]
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
    "Hindsight",
    "HybridHistogram",
    "KeepAlive",
    "ORACLES",
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
