"""Hyperparameters per algorithm, in rl-baselines3-zoo's YAML layout.

``agents/hyperparams/<algo>.yml`` maps an env id (or ``default``) to a block::

    coldstart/ServerlessGPU-v1:
      n_timesteps: 200000          # zoo keys: n_timesteps, policy, n_envs, normalize
      policy: MlpPolicy
      n_envs: 4
      normalize: true              # or "dict(norm_obs=True, norm_reward=False)" or a mapping
      learning_rate: lin_3e-4      # zoo schedule: linear decay to 0 ("lin_<value>")
      policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.Tanh)"   # or a YAML mapping
      n_steps: 256                 # everything else goes to the algorithm's constructor

A block may also be keyed ``<env id>:<scenario>`` (``coldstart/ServerlessGPU-v1:paper``): it
is used for runs on that scenario (the name as given to ``--scenario``), ahead of the env id's
block, which is used if present, else ``default``. A run that replays a trace (``--trace``) on
a scenario's cluster first looks for ``<env id>:<scenario>:trace-<name>``
(``coldstart/ServerlessGPU-v1:paper:trace-azure2019``; ``<name>``: :func:`trace_label`), so a
trace-driven entry can have its own settings without changing the scenario's. Files are read with ``yaml.safe_load``;
zoo-style strings (``policy_kwargs``, ``normalize``) are parsed by a restricted evaluator that
accepts literals, ``dict(...)`` and a fixed list of torch names (:data:`SAFE_NAMES`), never
``eval``. Every error is a one-line ``ValueError`` naming the file, the key and the fix.
"""

from __future__ import annotations

import ast
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch as th
import yaml
from torch import nn

from envs import yamlvalues

from .algos import AlgoSpec, closest, get_algo

HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"
# Keys that are not constructor arguments: rl-zoo's four, and this project's ``action_prior``
# (initial logit bonus of the env's no-op choices, see :func:`agents.algos.apply_action_prior`)
# and ``actions`` (only ``native``: v1's own ``Discrete`` space, which every algorithm, DQN
# included, trains on; v0's ``full``/``composite`` choice is gone with v0).
ZOO_KEYS = ("n_timesteps", "policy", "n_envs", "normalize", "action_prior", "actions")
# This project's keys of the behaviour-cloning start (agents.imitation, train.py's pipeline):
# ``per_model`` trains on agents.model_vec_env.ModelsVecEnv (one sub-env per model, its own
# reward; ``n_envs`` then counts simulators); ``bc_teacher`` (a policy of baselines) plays
# ``bc_episodes`` training windows, the policy is cloned from them for ``bc_epochs`` (masked
# cross-entropy, inverse action frequency ^ ``bc_weight_exponent``) with its observation
# statistics frozen at the data's; the first ``critic_warmup`` steps then train the critic alone.
# ``bc_teacher: best`` picks the heuristic with the highest reward on the model-selection
# windows (``valid_episodes`` training-split windows) before cloning.
# ``bc_sharpen`` then scales the clone's logits until its greedy action has that mean probability
# on the teacher's steps (agents.imitation.sharpen: the greedy policy is unchanged, its samples
# leave it less often).
# ``bc_dagger_rounds`` rounds of DAgger follow the first clone: the clone plays
# ``bc_dagger_episodes`` training windows, the teacher labels its states, the clone is refitted
# on all the data for ``bc_dagger_epochs`` (agents.imitation.relabel). With
# ``bc_dagger_select: true`` the clone of every round (the first clone included) plays the
# model-selection windows and the best of them is kept (DAgger is not monotone: a later round
# can be worse), instead of the last round's.
# ``bc_blind`` names observation features (envs.layout) the clone's frozen statistics hide
# (agents.imitation.data_stats). ``bc_teacher_params`` (a dict, or its ``dict(...)`` text) are
# keyword arguments of the teacher's constructor (``baselines.make_policy``), e.g.
# ``dict(lead_steps=6)`` for ``hindsight-minute``; not with ``bc_teacher: best``.
BC_KEYS = ("per_model", "bc_teacher", "bc_teacher_params", "bc_episodes", "bc_epochs",
           "bc_weight_exponent", "bc_sharpen", "bc_dagger_rounds", "bc_dagger_episodes", "bc_dagger_epochs",
           "bc_dagger_select", "bc_blind", "critic_warmup")  # fmt: skip
# Model selection: every ``valid_freq`` steps (0: never) the agent plays ``valid_episodes``
# fixed training-split windows; the best is kept as best_model.zip and is what the final
# comparison evaluates (agents.callbacks.BestOnValidation).
# ``eval_freq``: the default of train.py's --eval-freq for this block (model-steps count 18x faster
# than env steps on paper's per-model sub-envs, and each held-out evaluation plays whole hours).
SELECT_KEYS = ("valid_freq", "valid_episodes", "eval_freq")
PROJECT_KEYS = ZOO_KEYS + BC_KEYS + SELECT_KEYS
ACTIONS = ("native",)
NORMALIZE_KEYS = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "epsilon", "gamma")
# Names a zoo-style string may use (``activation_fn=nn.ReLU``, ``optimizer_class=th.optim.Adam``).
SAFE_NAMES: dict[str, Any] = {
    **{f"{p}.{a}": getattr(nn, a) for p in ("nn", "th.nn", "torch.nn")
       for a in ("ReLU", "Tanh", "ELU", "LeakyReLU", "SiLU", "GELU", "Sigmoid", "Identity")},
    **{f"{p}.optim.{o}": getattr(th.optim, o) for p in ("th", "torch")
       for o in ("Adam", "AdamW", "RMSprop", "SGD")},
    "True": True, "False": False, "None": None,
}  # fmt: skip


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise ValueError(f"unsupported expression {ast.unparse(node)!r}")


def _safe(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _safe(node.operand)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_safe(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_safe(k): _safe(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args or any(kw.arg is None for kw in node.keywords):
            raise ValueError("dict(...) takes keyword arguments only")
        return {kw.arg: _safe(kw.value) for kw in node.keywords}
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        if name in SAFE_NAMES:
            return SAFE_NAMES[name]
        raise ValueError(f"name {name!r} is not allowed (allowed: {', '.join(SAFE_NAMES)})")
    raise ValueError(f"unsupported expression {ast.unparse(node)!r}")


def safe_eval(text: str) -> Any:
    """Evaluate a zoo-style string such as ``"dict(net_arch=[64, 64], activation_fn=nn.Tanh)"``.

    Only literals, lists, tuples, dicts, ``dict(key=value, ...)`` and :data:`SAFE_NAMES`.

    Raises:
        ValueError: Anything else (a call other than ``dict``, an unknown name, bad syntax).
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"cannot parse {text!r}: {e.msg}") from None
    return _safe(tree.body)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _resolve_names(value: Any) -> Any:
    """Inside a YAML mapping, strings such as ``"nn.ReLU"`` become the torch object."""
    if isinstance(value, dict):
        return {k: _resolve_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_names(v) for v in value]
    if isinstance(value, str) and value in SAFE_NAMES:
        return SAFE_NAMES[value]
    return value


def linear_schedule(initial: float):
    """Linear decay from ``initial`` to 0 over training (rl-zoo's ``lin_<value>``)."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


# Ranges of the algorithms' numeric arguments, checked before a model is built: SB3 takes most
# of them unchecked and fails mid-run (n_epochs=-1 trains nothing, gamma=nan poisons the loss).
# (kind, low, high, low_open, high_open); "int" needs an integer. Every other number given to an
# algorithm must at least be finite.
_INF = float("inf")
RANGES: dict[str, tuple[str, float, float, bool, bool]] = {
    "learning_rate": ("float", 0, _INF, True, True),
    "n_steps": ("int", 1, _INF, False, True),
    "batch_size": ("int", 1, _INF, False, True),
    "n_epochs": ("int", 1, _INF, False, True),
    "gamma": ("float", 0, 1, False, False),
    "gae_lambda": ("float", 0, 1, False, False),
    "clip_range": ("float", 0, _INF, True, True),
    "clip_range_vf": ("float", 0, _INF, True, True),
    "ent_coef": ("float", 0, _INF, False, True),
    "vf_coef": ("float", 0, _INF, False, True),
    "max_grad_norm": ("float", 0, _INF, True, True),
    "target_kl": ("float", 0, _INF, True, True),
    "rms_prop_eps": ("float", 0, _INF, True, True),
    "buffer_size": ("int", 1, _INF, False, True),
    "learning_starts": ("int", 0, _INF, False, True),
    "tau": ("float", 0, 1, True, False),
    "train_freq": ("int", 1, _INF, False, True),
    "gradient_steps": ("int", -1, _INF, False, True),
    "target_update_interval": ("int", 1, _INF, False, True),
    "exploration_fraction": ("float", 0, 1, False, False),
    "exploration_initial_eps": ("float", 0, 1, False, False),
    "exploration_final_eps": ("float", 0, 1, False, False),
    "stats_window_size": ("int", 1, _INF, False, True),
    "sde_sample_freq": ("int", -1, _INF, False, True),
}


def _in_range(where: str, key: str, v: Any) -> Any:
    """``v`` if it is a valid value of ``key`` (see :data:`RANGES`); schedules, ``None`` and
    non-numbers pass (the algorithm checks their types).

    Raises:
        ValueError: Naming the key, the value and the allowed range.
    """
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return v
    if not math.isfinite(v):
        raise ValueError(f"{where}: {key} must be a finite number, got {v!r}")
    if key not in RANGES:
        return v
    kind, lo, hi, lo_open, hi_open = RANGES[key]
    if kind == "int":
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int):
            raise ValueError(f"{where}: {key} must be an integer >= {lo:g}, got {v!r}")
    bad = (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi)
    if key == "gradient_steps" and v == 0:
        bad = True
    if bad:
        if hi == _INF:
            rng = f"{'>' if lo_open else '>='} {lo:g}"
        else:
            rng = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        extra = " (-1: as many as env steps)" if key == "gradient_steps" else ""
        raise ValueError(f"{where}: {key} must be {'an integer' if kind == 'int' else 'a number'} "
                         f"{rng}{extra}, got {v!r}")  # fmt: skip
    return v


@dataclass
class Hyperparams:
    """Resolved hyperparameters of one run.

    Attributes:
        algo: The algorithm's table row.
        source: ``"<file> [<block>]"``, where they came from.
        raw: The block as written (plus CLI overrides): what ``config.yml`` saves, loadable again.
        n_timesteps: Training budget.
        policy: Policy name.
        n_envs: Parallel envs.
        normalize: ``VecNormalize`` kwargs, or ``None`` for no normalisation.
        actions: ``"native"`` (the env's own ``Discrete`` space).
        action_prior: Initial logit bonus of the env's no-op action (the largest of the four
            numbers ``(scale, placement, source, cache)`` is used); zeros = SB3's uniform start.
        kwargs: The algorithm constructor's keyword arguments (schedules and policy_kwargs resolved).
        per_model: Train on :class:`agents.model_vec_env.ModelsVecEnv` (``n_envs`` simulators).
        bc: ``{"teacher", "episodes", "epochs", "weight_exponent"}`` of the behaviour-cloning
            start, or ``None`` (the policy starts from its random initialisation).
        critic_warmup: Steps at the start that train the critic alone (the actor frozen).
        valid_freq: Steps between model-selection evaluations (0: no selection).
        valid_episodes: Training-split windows each of them plays.
        eval_freq: The block's default for ``--eval-freq`` (None: train.py's own).
    """

    algo: AlgoSpec
    source: str
    raw: dict
    n_timesteps: int
    policy: str
    n_envs: int
    normalize: dict | None
    action_prior: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    actions: str = "native"
    kwargs: dict = field(default_factory=dict)
    per_model: bool = False
    bc: dict | None = None
    critic_warmup: int = 0
    valid_freq: int = 0
    valid_episodes: int = 5
    eval_freq: int | None = None


def _bc(raw: dict, spec: AlgoSpec, where: str) -> tuple[bool, dict | None, int]:
    """``(per_model, bc, critic_warmup)`` of a block (see :data:`BC_KEYS`).

    Raises:
        ValueError: A bad value, a ``bc_*`` key without ``bc_teacher``, or cloning with an
            algorithm other than MaskablePPO (the clone's loss reads the action masks).
    """
    per_model = raw.get("per_model", False)
    if not isinstance(per_model, bool):
        raise ValueError(f"{where}: per_model must be true or false, got {per_model!r}")

    def integer(key: str, default: int, lo: int) -> int:
        v = raw.get(key, default)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{where}: {key} must be an integer >= {lo}, got {v!r}")
        return v

    warmup = integer("critic_warmup", 0, 0)
    teacher = raw.get("bc_teacher")
    if teacher is None:
        extra = [k for k in BC_KEYS if k.startswith("bc_") and k in raw]
        if extra:
            raise ValueError(f"{where}: {extra[0]} needs bc_teacher (a policy of baselines)")
        return per_model, None, warmup
    import baselines

    try:
        if teacher != "best":  # best: chosen on the validation windows (agents.training_bc)
            baselines.check_policy_name(teacher)
    except ValueError as e:
        raise ValueError(f"{where}: bc_teacher: {e}") from None
    params = _teacher_params(raw.get("bc_teacher_params"), teacher, where)
    if not spec.masked:
        raise ValueError(f"{where}: bc_teacher needs maskable_ppo (the clone's loss reads the "
                         f"action masks), not {spec.name}")  # fmt: skip
    w = raw.get("bc_weight_exponent", 0.5)
    if isinstance(w, str) and _number(w) is not None:
        w = _number(w)
    if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0.0 <= w <= 1.0:
        raise ValueError(f"{where}: bc_weight_exponent must be a number in [0, 1], got {w!r}")
    sharp = raw.get("bc_sharpen")
    if isinstance(sharp, str) and _number(sharp) is not None:
        sharp = _number(sharp)
    if sharp is not None and (not isinstance(sharp, (int, float)) or isinstance(sharp, bool)
                              or not 0.0 < sharp < 1.0):  # fmt: skip
        raise ValueError(f"{where}: bc_sharpen must be a probability in (0, 1) or null (no "
                         f"sharpening), got {sharp!r}")  # fmt: skip
    select = raw.get("bc_dagger_select", False)
    if not isinstance(select, bool):
        raise ValueError(f"{where}: bc_dagger_select must be true or false, got {select!r}")
    from envs import layout

    names = (*layout.MODEL_FEATURES, *layout.CLUSTER_FEATURES)
    blind = raw.get("bc_blind") or []
    if isinstance(blind, str):
        blind = [blind]
    if not isinstance(blind, list) or any(b not in names for b in blind):
        bad = next((b for b in blind if b not in names), blind) if isinstance(blind, list) else blind
        raise ValueError(f"{where}: bc_blind must list observation features, got {bad!r}; "
                         f"valid: {', '.join(names)}.{closest(str(bad), names)}")  # fmt: skip
    bc = {"teacher": teacher, "teacher_params": params,
          "episodes": integer("bc_episodes", 10, 1),
          "blind": [str(b) for b in blind],
          "epochs": integer("bc_epochs", 15, 1), "weight_exponent": float(w),
          "sharpen": None if sharp is None else float(sharp),
          "dagger_rounds": integer("bc_dagger_rounds", 0, 0),
          "dagger_episodes": integer("bc_dagger_episodes", 5, 1),
          "dagger_epochs": integer("bc_dagger_epochs", 10, 1),
          "dagger_select": select}  # fmt: skip
    return per_model, bc, warmup


def _teacher_params(value: Any, teacher: str, where: str) -> dict:
    """``bc_teacher_params`` checked: a dict of keyword arguments the teacher accepts (built
    once here, so that a bad name or value fails before any training)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = safe_eval(value)
        except ValueError as e:
            raise ValueError(f"{where}: bc_teacher_params: {e}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{where}: bc_teacher_params must be a dict of keyword arguments, "
                         f"e.g. dict(lead_steps=6), got {value!r}")  # fmt: skip
    if value and teacher == "best":
        raise ValueError(f"{where}: bc_teacher_params needs a named bc_teacher, not 'best' "
                         f"(the heuristics take different parameters)")  # fmt: skip
    import baselines

    try:
        baselines.make_policy(teacher, **value)
    except ValueError as e:
        raise ValueError(f"{where}: bc_teacher_params: {e}") from None
    return dict(value)


def _normalize(value: Any, where: str) -> dict | None:
    if isinstance(value, str):
        try:
            value = safe_eval(value)
        except ValueError as e:
            raise ValueError(f"{where}: normalize: {e}") from None
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: normalize must be true/false or a mapping, got {value!r}")
    for k in value:
        if k not in NORMALIZE_KEYS:
            raise ValueError(
                f"{where}: unknown normalize key {k!r}; valid: {', '.join(NORMALIZE_KEYS)}."
                f"{closest(k, NORMALIZE_KEYS)}"
            )
    return dict(value)


PRIOR_ENTRIES = ("scale", "placement", "source", "cache")


def _prior(value: Any, where: str) -> tuple[float, ...]:
    """``action_prior``: one number for every entry, or ``{scale: 0, source: 3, ...}``."""

    def number(v: Any) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{where}: action_prior values must be numbers >= 0, got {v!r}")
        return float(v)

    if isinstance(value, dict):
        for k in value:
            if k not in PRIOR_ENTRIES:
                raise ValueError(
                    f"{where}: unknown action_prior entry {k!r}; valid: "
                    f"{', '.join(PRIOR_ENTRIES)}.{closest(k, PRIOR_ENTRIES)}"
                )
        return tuple(number(value.get(k, 0.0)) for k in PRIOR_ENTRIES)
    return (number(value),) * len(PRIOR_ENTRIES)


def trace_label(trace: str) -> str:
    """``trace-<name>`` of a ``--trace`` (a shipped name or a path: its file name up to the first
    dot): the study's label of a trace-driven entry and the suffix of its hyperparameter block."""
    return "trace-" + Path(trace).name.split(".")[0]


def read_block(
    algo: str,
    env_id: str,
    path: str | Path | None = None,
    scenario: str | None = None,
    trace: str | None = None,
) -> tuple[dict, str]:
    """The raw block for ``<env_id>:<scenario>:trace-<name>`` (with a ``trace``), else
    ``<env_id>:<scenario>``, else ``env_id``, else ``default``, of ``path`` (else the
    algorithm's file).

    Raises:
        ValueError: Missing or unreadable file, invalid YAML, no matching block.
    """
    spec = get_algo(algo)
    p = Path(path) if path is not None else HYPERPARAMS_DIR / f"{spec.name}.yml"
    if not p.is_file():
        raise ValueError(f"hyperparameter file {str(p)!r} does not exist")
    try:
        data = yamlvalues.load(p.read_text())
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"hyperparameter file {str(p)!r} is not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise ValueError(f"hyperparameter file {str(p)!r} must hold a mapping of env ids to blocks")
    keys = [env_id, "default"]
    if scenario:
        keys[:0] = [f"{env_id}:{scenario}"]
        if trace:
            keys[:0] = [f"{env_id}:{scenario}:{trace_label(trace)}"]
    key = next((k for k in keys if k in data), None)
    if key is None:
        raise ValueError(
            f"hyperparameter file {str(p)!r} has no {env_id!r} or 'default' block "
            f"(keys: {', '.join(map(str, data))})"
        )
    block = data[key] or {}
    if not isinstance(block, dict):
        raise ValueError(f"hyperparameter file {str(p)!r}: block {key!r} must be a mapping")
    return dict(block), f"{p} [{key}]"


def resolve(algo: str, raw: dict, source: str = "<dict>") -> Hyperparams:
    """Validate a raw block and turn it into constructor arguments.

    Raises:
        ValueError: An unknown key (the closest valid one is suggested) or a bad value.
    """
    spec = get_algo(algo)
    where = f"hyperparameters {source}"
    valid = set(inspect.signature(spec.cls.__init__).parameters) - {
        "self", "policy", "env", "tensorboard_log", "verbose", "seed", "device", "_init_setup_model"
    }  # fmt: skip
    kwargs: dict[str, Any] = {}
    for k, v in raw.items():
        if k in PROJECT_KEYS:
            continue
        if k not in valid:
            raise ValueError(
                f"{where}: {k!r} is not a {spec.cls.__name__} argument.{closest(k, valid)}"
            )
        if k == "policy_kwargs":
            if isinstance(v, str):
                try:
                    v = safe_eval(v)
                except ValueError as e:
                    raise ValueError(f"{where}: policy_kwargs: {e}") from None
            if not isinstance(v, dict):
                raise ValueError(f"{where}: policy_kwargs must be a mapping, got {v!r}")
            v = _resolve_names(v)
        elif isinstance(v, str) and _number(v) is not None:
            v = _number(v)  # YAML 1.1 reads 1e-4 (no dot) as a string
        elif isinstance(v, str) and v.startswith("lin_"):
            try:
                v = linear_schedule(float(v[4:]))
            except ValueError:
                raise ValueError(f"{where}: {k}: bad schedule {v!r} (use lin_<number>)") from None
        kwargs[k] = _in_range(where, k, v)

    def integer(key: str, default: int) -> int:
        v = raw.get(key, default)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{where}: {key} must be an integer >= 1, got {v!r}")
        return v

    prior = _prior(raw.get("action_prior", 0.0), where)
    actions = raw.get("actions", "native")
    if actions not in ACTIONS:
        raise ValueError(f"{where}: actions must be one of {', '.join(ACTIONS)}, got {actions!r}")
    policy = raw.get("policy", spec.policy)
    if not isinstance(policy, str):
        raise ValueError(f"{where}: policy must be a policy name, got {policy!r}")
    per_model, bc, warmup = _bc(raw, spec, where)
    valid_freq = raw.get("valid_freq", 0)
    if isinstance(valid_freq, float) and valid_freq.is_integer():
        valid_freq = int(valid_freq)
    if not isinstance(valid_freq, int) or isinstance(valid_freq, bool) or valid_freq < 0:
        raise ValueError(f"{where}: valid_freq must be an integer >= 0 (0: no model selection), "
                         f"got {valid_freq!r}")  # fmt: skip
    return Hyperparams(
        algo=spec,
        source=source,
        raw=dict(raw),
        n_timesteps=integer("n_timesteps", 100_000),
        policy=policy,
        n_envs=integer("n_envs", 1),
        normalize=_normalize(raw.get("normalize", False), where),
        action_prior=prior,
        actions=actions,
        kwargs=kwargs,
        per_model=per_model,
        bc=bc,
        critic_warmup=warmup,
        valid_freq=valid_freq,
        valid_episodes=integer("valid_episodes", 5),
        eval_freq=None if raw.get("eval_freq") is None else integer("eval_freq", 1),
    )


def load_hyperparams(
    algo: str,
    env_id: str,
    path: str | Path | None = None,
    overrides: dict | None = None,
    scenario: str | None = None,
    trace: str | None = None,
) -> Hyperparams:
    """Read, override (``{"n_steps": 128}``) and resolve the hyperparameters of ``algo`` (the
    block of ``scenario``, or of ``scenario`` replaying ``trace``, if the file has one, see
    :func:`read_block`).

    Raises:
        ValueError: See :func:`read_block` and :func:`resolve`.
    """
    raw, source = read_block(algo, env_id, path, scenario, trace)
    raw.update(overrides or {})
    return resolve(algo, raw, source)


def parse_assignments(items: list[str] | None, what: str) -> dict:
    """``["n_steps=128", "gamma=0.95"]`` -> ``{"n_steps": 128, "gamma": 0.95}``: the one
    ``KEY=VALUE`` parser of both command-line tools (:func:`envs.yamlvalues.parse_assignments`).

    Raises:
        ValueError: An item without ``=`` or a value that is not valid YAML.
    """
    return yamlvalues.parse_assignments(items, what)
