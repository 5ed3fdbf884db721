"""A vectorised MultiDiscrete action head for SB3 policies.

SB3's ``MultiCategoricalDistribution`` builds one ``torch.distributions.Categorical`` per
action entry and loops over them for every sample, log-probability and entropy. With the env's
``4 * max_models`` entries that Python loop, not the simulator, dominates PPO's wall time
(``python -m benchmarks.env_step`` measures both). :class:`FastMultiCategoricalDistribution`
computes the same quantities on one padded ``(batch, entries, max_choices)`` tensor: padded
choices get probability zero, so log-probabilities, entropies and samples are those of the
product of independent categoricals, exactly as SB3's.

Use :class:`FastMultiDiscretePolicy` as the policy class (``PPO(FastMultiDiscretePolicy, env)``,
or ``policy: FastMultiDiscretePolicy`` resolved by ``agents.algos``). For other action spaces it
is SB3's ``ActorCriticPolicy`` unchanged.
"""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import MultiCategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy


class FastMultiCategoricalDistribution(MultiCategoricalDistribution):
    """Product of independent categoricals over one padded tensor (same maths as SB3's)."""

    def __init__(self, action_dims: list[int]) -> None:
        super().__init__(action_dims)
        dims = np.asarray(action_dims, dtype=np.int64)
        self.n_entries = len(dims)
        self.max_choices = int(dims.max())
        rows = np.repeat(np.arange(len(dims)), dims)
        cols = np.concatenate([np.arange(n) for n in dims])
        self._rows = th.as_tensor(rows)
        self._cols = th.as_tensor(cols)
        self.logp: th.Tensor | None = None

    def proba_distribution(self, action_logits: th.Tensor) -> FastMultiCategoricalDistribution:
        b = action_logits.shape[0]
        padded = action_logits.new_full((b, self.n_entries, self.max_choices), float("-inf"))
        rows, cols = self._rows.to(action_logits.device), self._cols.to(action_logits.device)
        padded[:, rows, cols] = action_logits
        self.logp = th.log_softmax(padded, dim=-1)
        return self

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        idx = actions.long().view(-1, self.n_entries, 1)
        return self.logp.gather(-1, idx).squeeze(-1).sum(dim=-1)

    def entropy(self) -> th.Tensor:
        p = self.logp.exp()
        # Padded choices have p = 0 and logp = -inf: zero their logp *before* the product, so
        # neither the value nor the gradient sees 0 * -inf (th.where would still pass NaN back).
        return -(p * self.logp.masked_fill(p == 0, 0.0)).sum(dim=(-1, -2))

    def sample(self) -> th.Tensor:
        # Gumbel-max: argmax(logp + Gumbel noise) samples each categorical exactly.
        u = th.rand_like(self.logp).clamp_(min=1e-20, max=1.0 - 1e-7)
        return (self.logp - th.log(-th.log(u))).argmax(dim=-1)

    def mode(self) -> th.Tensor:
        return self.logp.argmax(dim=-1)


class FastMultiDiscretePolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` with :class:`FastMultiCategoricalDistribution` for
    MultiDiscrete action spaces (the layers and their shapes are identical)."""

    def __init__(self, observation_space, action_space, *args, **kwargs) -> None:
        super().__init__(observation_space, action_space, *args, **kwargs)
        if isinstance(action_space, spaces.MultiDiscrete):
            self.action_dist = FastMultiCategoricalDistribution(list(action_space.nvec.ravel()))
