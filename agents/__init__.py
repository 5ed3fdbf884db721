"""What SB3 needs around the cold-start env.

* :mod:`agents.algos`: the algorithm table (``ppo``, ``a2c``, ``dqn``, ``maskable_ppo``,
  ``recurrent_ppo``).
* :mod:`agents.hyperparams`: rl-zoo style YAML hyperparameters (``agents/hyperparams/*.yml``).
* :mod:`agents.wrappers`: the latency info and the env factory.
* :mod:`agents.callbacks`: ``cluster/`` metrics, held-out evaluation against the heuristics,
  hyperparameter text, latency histogram, atomic checkpoints.
* :mod:`agents.loading`: :func:`load_agent` (a model zip or run folder -> a policy with
  ``predict``), atomic saves.
* :mod:`agents.training`: the ``train.py`` command line and training loop.

Submodules are imported lazily so that ``import agents`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ALGOS", "AgentPolicy", "get_algo", "load_agent", "load_hyperparams"]

_WHERE = {
    "ALGOS": "algos",
    "get_algo": "algos",
    "AgentPolicy": "loading",
    "load_agent": "loading",
    "load_hyperparams": "hyperparams",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
