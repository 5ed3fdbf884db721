"""RLlib PPO (new API stack) on the cold-start env, locally or on a Ray cluster.

``train.py --engine rllib`` calls :func:`main`. The env comes from
:func:`agents.rllib_env.make_env` (masked ``Dict`` observations) and the policy is RLlib's
``ActionMaskingTorchRLModule``, so a masked action is never sampled. A run folder::

    runs/<env>__rllib_ppo__<seed>__<unix time>/
        events.out.tfevents.*     TensorBoard: rollout/ train/ time/, cluster/, eval/ (the SB3 keys)
        args.yml, command.txt     the arguments and command line(s) (resumes append)
        checkpoints/step_<N>/     Algorithm.save_to_path (rllib_checkpoint.json) + coldstart_meta.json
        results.json, plots/      final evaluation against the reference heuristics

``cluster/`` and ``eval/`` are written by the SB3 path's own callbacks
(:class:`agents.callbacks.ClusterMetricsCallback`, :class:`~agents.callbacks.HeldOutEvalCallback`):
the env runners ship each finished episode's final ``info`` to the driver through RLlib's
metrics (``item_series``), and the driver feeds them to those callbacks, so both engines log the
same keys computed the same way.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from .cli import OneLineParser
from .rllib_env import ENV_ID, env_config, make_env
from .rllib_policy import META_FILE, RLlibPolicy, read_checkpoint_meta
from .training import UsageError, one_line, scenario_overrides

ENGINES = ("sb3", "rllib")
ALGO = "rllib_ppo"
FINAL_INFO_KEY = "coldstart_final_info"
# PPO settings of the SB3 default (agents/hyperparams/maskable_ppo.yml, measured there):
# 2048 steps per update, minibatch 512, 10 epochs, gamma 0.99, GAE 0.9, lr 3e-4, entropy 0.001,
# clip 0.2, two 64-unit hidden layers. RLlib has no VecNormalize: the env's features are already
# scaled (log1p, fractions; Box [0, 25]), so observations go in as they are (an assumption).
PPO = dict(
    minibatch_size=512, num_epochs=10, gamma=0.99, lambda_=0.9, lr=3e-4,
    entropy_coeff=0.001, clip_param=0.2,
)  # fmt: skip
HIDDEN = [64, 64]
DEFAULTS: dict[str, Any] = {
    "scenario": "small",
    "override": [],
    "timesteps": 800_000,  # the SB3 default budget (agents/hyperparams/maskable_ppo.yml)
    "num_env_runners": 2,
    "address": None,
    "seed": 0,
    "logdir": "runs",
    "resume": None,
    "eval_freq": 25_000,
    "eval_episodes": 5,
    "checkpoint_freq": 50_000,
    "train_batch_size": 2048,
    "hp": [],
    # On: measured on `small` on env v0 (README, Scale-out on Ray; not re-measured on v1):
    # held-out -84 at 53k steps with it, -120 at 53k and the no-op policy still at 150k without.
    "normalize_reward": True,
    "no_final_eval": False,
    "verbose": 0,
}
FIXED_ON_RESUME = ("scenario", "override", "seed", "train_batch_size", "hp", "normalize_reward")


def check_engine(name: str) -> str:
    """``name`` if it is one of :data:`ENGINES`.

    Raises:
        UsageError: An unknown engine, with the closest name.
    """
    if name in ENGINES:
        return name
    close = difflib.get_close_matches(str(name), ENGINES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"unknown --engine {name!r}: expected one of {', '.join(ENGINES)}{hint}")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="train.py --engine rllib",
        description="RLlib PPO (new API stack, action-masking RLModule) on "
        f"{ENV_ID}, on this machine or on a Ray cluster (--address).",
        epilog="examples:\n"
        "  python train.py --engine rllib --timesteps 200000 --num-env-runners 2\n"
        "  python train.py --engine rllib --address 10.0.0.1:6379 --num-env-runners 16\n"
        "  python train.py --engine rllib --resume runs/<run>",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--engine", help="rllib (this parser); sb3 is train.py's default")
    a("--scenario", help="preset name or scenario YAML (default: small)")
    a(
        "-o",
        "--override",
        action="append",
        metavar="KEY=VALUE",
        help="scenario override, repeatable",
    )
    a("--timesteps", type=int, help="total env steps of the run (default: 800000)")
    a(
        "--num-env-runners",
        type=int,
        help="RLlib env runners (Ray actors), 0 = sample in the driver (default: 2)",
    )
    a(
        "--address",
        help="join this Ray cluster (host:port of `ray start --head`, or auto); default: a local instance",
    )
    a("--seed", type=int, help="seed (default: 0)")
    a("--logdir", help="parent folder of run folders (default: runs)")
    a("--resume", metavar="CKPT", help="an RLlib checkpoint folder, or a run folder (its latest)")
    a(
        "--eval-freq",
        type=int,
        help="held-out evaluation every N env steps, 0 = never (default: 25000)",
    )
    a("--eval-episodes", type=int, help="episodes per evaluation (default: 5)")
    a(
        "--checkpoint-freq",
        type=int,
        help="checkpoint every N env steps, 0 = only at the end (default: 50000)",
    )
    a(
        "--train-batch-size",
        type=int,
        help="env steps per PPO update (default: 2048, as the SB3 default)",
    )
    a(
        "--hp",
        action="append",
        metavar="KEY=VALUE",
        help="PPO setting over the defaults, repeatable: lr=1e-4, num_epochs=5, use_kl_loss=false "
        "(PPOConfig.training keywords)",
    )
    a(
        "--normalize-reward",
        action=argparse.BooleanOptionalAction,
        help="scale training rewards by a running std of the return (gymnasium NormalizeReward; "
        "default: on)",
    )
    a("--no-final-eval", action="store_true", default=None, help="skip the final comparison")
    a("-v", "--verbose", type=int, help="1: a line per iteration and Ray's worker logs")
    return p


def check_address(address: str) -> None:
    """Fail fast, with one line, when nothing listens at ``host:port`` (``auto`` is left to Ray).

    Raises:
        UsageError: A malformed address or no listener.
    """
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address!r}: expected host:port (or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({e})") from None


def prepare(argv: list[str] | None) -> SimpleNamespace:
    """Parse and validate; resolve resume and the run folder. Raises UsageError."""
    given = {k: v for k, v in vars(build_parser().parse_args(argv)).items() if v is not None}
    if "engine" in given:
        if check_engine(given.pop("engine")) != "rllib":
            raise UsageError("--engine sb3 is train.py's own path, not agents.rllib_train")
    ckpt, meta, run_dir = None, None, None
    if given.get("resume"):
        try:
            ckpt, meta = read_checkpoint_meta(given["resume"])
        except ValueError as e:
            raise UsageError(f"--resume: {e}") from None
        # Where it ran is not part of the run: a resume may use another cluster.
        saved = {k: v for k, v in meta.get("args", {}).items() if k != "address"}
        for k in FIXED_ON_RESUME:
            if k in given and k in saved and given[k] != saved[k]:
                flag = "--" + k.replace("_", "-")
                raise UsageError(
                    f"--resume: the checkpoint was trained with {flag} {saved[k]!r}, not {given[k]!r}"
                )
        args = {**DEFAULTS, **saved, **given}
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    else:
        args = {**DEFAULTS, **given}
    for k in ("timesteps", "eval_episodes", "train_batch_size"):
        if args[k] < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be >= 1, got {args[k]}")
    for k in ("eval_freq", "checkpoint_freq", "num_env_runners"):
        if args[k] < 0:
            raise UsageError(f"--{k.replace('_', '-')} must be >= 0, got {args[k]}")
    overrides = scenario_overrides({**args, "trace": None, "time_col": None, "model_col": None})
    ppo_overrides(args["hp"])  # validate
    probe = make_env(env_config(args["scenario"], "train", overrides))
    shape = {"n_actions": int(probe.action_space.n),
             "obs_shape": list(probe.observation_space["observations"].shape)}  # fmt: skip
    probe.close()
    if meta is not None and any(meta.get(k) != v for k, v in shape.items()):
        raise UsageError(
            f"--resume: {ckpt} was trained on {meta.get('n_actions')} actions, observation "
            f"{meta.get('obs_shape')}; scenario {args['scenario']!r} has {shape['n_actions']}, {shape['obs_shape']}"
        )
    if args["address"]:
        check_address(args["address"])
    if run_dir is None:
        name = f"{ENV_ID.replace('/', '_')}__{ALGO}__{args['seed']}__{int(time.time())}"
        run_dir = Path(args["logdir"]) / name
        i = 1
        while run_dir.exists():
            run_dir, i = Path(args["logdir"]) / f"{name}_{i}", i + 1
    meta = {"env_id": ENV_ID, "algo": ALGO, "scenario": args["scenario"], "overrides": overrides,
            **shape, "env_steps": (meta or {}).get("env_steps", 0)}  # fmt: skip
    return SimpleNamespace(
        args=args, overrides=overrides, run_dir=Path(run_dir), resume_from=ckpt, meta=meta
    )


def ppo_overrides(items: list[str]) -> dict[str, Any]:
    """``--hp`` items as ``PPOConfig.training`` keywords.

    Raises:
        UsageError: A malformed item or a key that is not a PPOConfig setting.
    """
    from .hyperparams import parse_assignments

    try:
        hp = parse_assignments(items, "--hp")
    except ValueError as e:
        raise UsageError(e) from None
    if hp:
        from ray.rllib.algorithms.ppo import PPOConfig

        known = sorted(k for k in vars(PPOConfig()) if not k.startswith("_"))
        for k in hp:
            if k not in known:
                close = difflib.get_close_matches(k, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UsageError(f"--hp {k}: not a PPOConfig setting{hint}")
    return hp


def build_config(cfg: SimpleNamespace, seed: int):
    """The ``PPOConfig`` of a run (env, runners, masking RLModule, metrics callback)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule

    from .rllib_env import register

    args = cfg.args
    return (
        PPOConfig()
        .environment(register(), env_config=env_config(
            args["scenario"], "train", cfg.overrides, args.get("normalize_reward", False)))
        .env_runners(num_env_runners=args["num_env_runners"], num_envs_per_env_runner=1)
        .training(train_batch_size_per_learner=args["train_batch_size"],
                  **{**PPO, "minibatch_size": min(PPO["minibatch_size"], args["train_batch_size"]),
                     **ppo_overrides(args.get("hp") or [])})
        .rl_module(rl_module_spec=RLModuleSpec(
            module_class=ActionMaskingTorchRLModule,
            model_config={"fcnet_hiddens": HIDDEN, "head_fcnet_hiddens": [], "vf_share_layers": False}))
        .callbacks(on_episode_end=_ship_final_info)
        # A dead worker stops the run with its error (resume from the last checkpoint) instead of
        # RLlib restarting it silently.
        .fault_tolerance(restart_failed_env_runners=False, ignore_env_runner_failures=False)
        .debugging(seed=seed)
    )  # fmt: skip


def _ship_final_info(*, episode, metrics_logger, **kwargs) -> None:
    """RLlib callback (env runner side): the episode's final ``info`` to the driver."""
    info = episode.get_infos(-1)
    metrics_logger.log_value(FINAL_INFO_KEY, dict(info), reduce="item_series")


def init_ray(args: dict) -> None:
    """Join ``--address`` or start a local instance (loopback only if run in a fresh netns)."""
    import logging

    import ray

    kw = dict(
        log_to_driver=bool(args["verbose"]),
        logging_level=logging.WARNING if args["verbose"] else logging.ERROR,
    )
    # RLlib logs deprecation notices of its own example module at WARNING on every start.
    logging.getLogger("ray.rllib").setLevel(kw["logging_level"])
    if args["address"]:
        try:
            ray.init(address=args["address"], **kw)
        except (ConnectionError, RuntimeError) as e:
            raise UsageError(f"--address {args['address']}: {one_line(e)}") from None
        cpus = ray.cluster_resources().get("CPU", 0)
        if args["num_env_runners"] > cpus:
            ray.shutdown()
            raise UsageError(f"--num-env-runners {args['num_env_runners']}: the cluster at "
                             f"{args['address']} has {cpus:g} CPUs")  # fmt: skip
    else:
        ray.init(
            num_cpus=max(os.cpu_count() or 1, args["num_env_runners"]),
            include_dashboard=False,
            **kw,
        )


def save_checkpoint(algo, cfg: SimpleNamespace, steps: int) -> Path:
    """``checkpoints/step_<steps>`` via RLlib's ``save_to_path``, then our meta beside it (its
    presence marks a complete checkpoint for :func:`agents.rllib_policy.resolve_checkpoint`)."""
    path = cfg.run_dir / "checkpoints" / f"step_{steps}"
    algo.save_to_path(str(path.resolve()))
    meta = {
        **cfg.meta,
        "env_steps": steps,
        "args": {k: v for k, v in cfg.args.items() if k != "resume"},
    }
    tmp = path / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path / META_FILE)
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train.py --engine rllib``; returns the exit status."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        cfg = prepare(argv)
        init_ray(cfg.args)
    except UsageError as e:
        print(f"train.py: error: {one_line(e)}", file=sys.stderr)
        return 2
    import ray

    from .rllib_loop import train

    try:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        (cfg.run_dir / "args.yml").write_text(yaml.safe_dump(
            {k: v for k, v in sorted(cfg.args.items()) if k != "resume"}))  # fmt: skip
        with open(cfg.run_dir / "command.txt", "a") as f:
            f.write(shlex.join(["python", *sys.argv]) + "\n")
        return train(cfg, build_config, save_checkpoint)
    finally:
        ray.shutdown()


def policy_of(algo, meta: dict) -> RLlibPolicy:
    """The live algorithm's module behind the ``predict`` interface."""
    return RLlibPolicy(algo.get_module(), meta, name=ALGO)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
