"""The algorithm table: every name ``train.py --algo`` accepts, with what each needs.

| name | class | policy | notes |
|---|---|---|---|
| ``ppo`` | ``stable_baselines3.PPO`` | ``MlpPolicy`` | |
| ``a2c`` | ``stable_baselines3.A2C`` | ``MlpPolicy`` | |
| ``dqn`` | ``stable_baselines3.DQN`` | ``MlpPolicy`` | needs ``Discrete``: v1's own space |
| ``maskable_ppo`` | ``sb3_contrib.MaskablePPO`` | ``MlpPolicy`` | ``action_masks()`` through ``ActionMasker`` |
| ``recurrent_ppo`` | ``sb3_contrib.RecurrentPPO`` | ``MlpLstmPolicy`` | |

Every algorithm trains on ``coldstart/ServerlessGPU-v1``'s own ``Discrete`` space (one decision
per model per step, see the env's docstring); MaskablePPO reads its ``action_masks()``.

Example::

    spec = get_algo("maskable_ppo")
    model = spec.cls(spec.policy, vec_env, **hyperparams)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sb3_contrib import MaskablePPO, RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm


@dataclass(frozen=True)
class AlgoSpec:
    """One row of the table.

    Attributes:
        name: The ``--algo`` name.
        cls: The SB3 / sb3-contrib algorithm class.
        policy: Default policy name (the YAML ``policy:`` key overrides it).
        discrete: True if the algorithm needs a ``Discrete`` action space (v1's is one).
        masked: True if ``predict``/``learn`` take ``action_masks`` (MaskablePPO).
        recurrent: True if the policy carries an LSTM state between steps.
    """

    name: str
    cls: type[BaseAlgorithm]
    policy: str = "MlpPolicy"
    discrete: bool = False
    masked: bool = False
    recurrent: bool = False


ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec("ppo", PPO),
    "a2c": AlgoSpec("a2c", A2C),
    "dqn": AlgoSpec("dqn", DQN, discrete=True),
    "maskable_ppo": AlgoSpec("maskable_ppo", MaskablePPO, masked=True),
    "recurrent_ppo": AlgoSpec(
        "recurrent_ppo", RecurrentPPO, policy="MlpLstmPolicy", recurrent=True
    ),
}


def closest(name: str, valid) -> str:
    """`` Did you mean 'x'?`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def get_algo(name: str) -> AlgoSpec:
    """The table row for ``name`` (case-insensitive, ``-`` accepted for ``_``).

    Raises:
        ValueError: Unknown name; the message lists the valid names and the closest one.
    """
    key = str(name).lower().replace("-", "_")
    if key not in ALGOS:
        raise ValueError(
            f"unknown algorithm {name!r}; valid: {', '.join(ALGOS)}.{closest(key, ALGOS)}"
        )
    return ALGOS[key]


# Policy classes a hyperparameter file may name besides SB3's strings (MlpPolicy, MlpLstmPolicy).
CUSTOM_POLICIES = {
    # SB3's ActorCriticPolicy with a vectorised MultiDiscrete head (agents.distributions).
    "FastMultiDiscretePolicy": ("agents.distributions", ("ppo", "a2c")),
}


def resolve_policy(spec: AlgoSpec, policy: str) -> str | type:
    """``policy`` as SB3 takes it: the string, or the class for :data:`CUSTOM_POLICIES`.

    Raises:
        ValueError: A custom policy the algorithm cannot use.
    """
    if policy not in CUSTOM_POLICIES:
        return policy
    module, algos = CUSTOM_POLICIES[policy]
    if spec.name not in algos:
        raise ValueError(f"policy {policy} works with {', '.join(algos)}, not {spec.name}")
    import importlib

    return getattr(importlib.import_module(module), policy)


def apply_action_prior(model: BaseAlgorithm, preferred, strength: float) -> bool:
    """Add ``strength`` to the initial logit of each entry's ``preferred`` choice.

    SB3 initialises the action head with tiny weights (orthogonal, gain 0.01), so the initial
    policy is the softmax of the head's bias: uniform. On this env a uniform policy changes every
    model's instance count, placement, source and cache choice every step; most of those choices
    hurt only later (a cloud load, a dropped memory copy), which makes them slow to unlearn. A
    prior of 2 starts each entry at ``e^2 / (e^2 + n - 1)`` on the env's no-op choice (0.6 for the
    6 scale deltas, 0.88 for the source) while exploring the rest. Only the starting point moves:
    the policy class and what it can learn are unchanged.

    Args:
        model: An actor-critic model (PPO, A2C, MaskablePPO, RecurrentPPO).
        preferred: The env's no-op action: its index on a ``Discrete`` space, one choice per
            entry on a ``MultiDiscrete`` one.
        strength: Logit bonus, one number or one per entry (tiled to ``preferred``'s length);
            zeros leave the model untouched. On a ``Discrete`` space the largest bonus goes to
            the no-op.

    Returns:
        True if applied (False for models without an ``action_net``, e.g. DQN).
    """
    import numpy as np
    import torch as th
    from gymnasium import spaces

    net = getattr(model.policy, "action_net", None)
    preferred = np.asarray(preferred, dtype=np.int64).reshape(-1)
    bonus = np.resize(np.asarray(strength, dtype=np.float32).reshape(-1), preferred.shape)
    space = model.action_space
    if not bonus.any() or net is None:
        return False
    if isinstance(space, spaces.Discrete):  # v1: ``preferred`` is the no-op's index
        idx, bonus = th.as_tensor(preferred[:1], dtype=th.long), bonus.max(keepdims=True)
    elif isinstance(space, spaces.MultiDiscrete):
        nvec = space.nvec.reshape(-1)
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        idx = th.as_tensor(offsets + preferred, dtype=th.long)
    else:
        return False
    with th.no_grad():
        net.bias[idx] += th.as_tensor(bonus, dtype=net.bias.dtype)
    return True


def algo_of_class(cls: type) -> AlgoSpec | None:
    """The row whose class is ``cls`` (A2C and PPO share a policy class but not a model class)."""
    for spec in ALGOS.values():
        if spec.cls is cls:
            return spec
    return None
