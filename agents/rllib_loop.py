"""The training loop of :mod:`agents.rllib_train`: iterations, TensorBoard, evaluation, checkpoints.

TensorBoard goes through an SB3 logger and the SB3 path's own callbacks, driven from here:
:class:`agents.callbacks.ClusterMetricsCallback` gets each iteration's finished episodes' final
``info`` (shipped by the env runners), :class:`~agents.callbacks.HeldOutEvalCallback` evaluates
the live module on held-out windows every ``--eval-freq`` steps, and
:class:`~agents.callbacks.HyperparamsCallback` writes the settings at the start. RLlib's own
results are written under SB3's names: ``rollout/ep_rew_mean``, ``rollout/ep_len_mean``,
``time/fps``, ``time/iterations``, ``train/<learner stat>``, plus ``rollout/masked_actions_taken``
(0 under the masking RLModule).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .training import EVAL_SEED, one_line

LEARNER_KEYS = {  # RLlib learner stat -> SB3's train/ name
    "policy_loss": "policy_gradient_loss", "vf_loss": "value_loss", "entropy": "entropy",
    "mean_kl_loss": "approx_kl", "total_loss": "loss", "curr_kl_coeff": "kl_coeff",
}  # fmt: skip


class _ModelView:
    """What an SB3 callback reads from its model: ``logger`` and ``num_timesteps``."""

    def __init__(self, logger, algo, meta: dict) -> None:
        self.logger = logger
        self.algo = algo
        self.meta = meta
        self.num_timesteps = 0

    def get_env(self):
        return None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def record_iteration(
    logger, result: dict, infos: list[dict], wall_s: float, steps_iter: int
) -> None:
    """RLlib's result of one iteration under SB3's key names (see the module docstring)."""
    runners = result.get("env_runners", {})
    returns = [float(i["episode_reward"]) for i in infos if "episode_reward" in i]
    if returns:  # the env's units (RLlib's own mean is of the rewards the learner saw)
        logger.record("rollout/ep_rew_mean", float(np.mean(returns)))
    for src, dst in (("episode_len_mean", "rollout/ep_len_mean"),):
        if _finite(runners.get(src)):
            logger.record(dst, float(runners[src]))
    taken = [float(i["masked_actions_taken"]) for i in infos if "masked_actions_taken" in i]
    if taken:
        logger.record("rollout/masked_actions_taken", float(np.sum(taken)))
    learner = result.get("learners", {}).get("default_policy", {})
    for src, dst in LEARNER_KEYS.items():
        if _finite(learner.get(src)):
            logger.record(f"train/{dst}", float(learner[src]))
    logger.record("time/iterations", int(result.get("training_iteration", 0)))
    logger.record("time/fps", steps_iter / wall_s if wall_s > 0 else float("nan"))
    timers = result.get("timers", {})
    for src, dst in (
        ("env_runner_sampling_timer", "time/sample_s"),
        ("learner_update_timer", "time/learn_s"),
    ):
        if _finite(timers.get(src)):
            logger.record(dst, float(timers[src]))


def _references() -> dict[str, Any]:
    from .training import _references as refs

    return refs()


def train(cfg: SimpleNamespace, build_config, save_checkpoint) -> int:
    """Build (or restore) the algorithm and train to ``--timesteps``; returns the exit status.

    A Ray error during an iteration (a worker that died, an exception in the env) ends the run
    with status 1 and one line naming the error and the last checkpoint to resume from. SIGINT
    or SIGTERM lets the iteration finish, checkpoints and returns 0 (a second one stops at once).
    """
    import ray
    from stable_baselines3.common.logger import configure

    from .callbacks import ClusterMetricsCallback, HeldOutEvalCallback, HyperparamsCallback
    from .rllib_train import ALGO, FINAL_INFO_KEY, HIDDEN, PPO, policy_of, ppo_overrides

    args, meta = cfg.args, cfg.meta
    done = int(meta["env_steps"])
    seed = args["seed"] + done  # fresh training windows on resume (as the SB3 path)
    algo = build_config(cfg, seed).build_algo()
    last_ckpt: Path | None = cfg.resume_from
    if cfg.resume_from is not None:
        algo.restore_from_path(str(Path(cfg.resume_from).resolve()))
    where = args["address"] or "a local Ray instance"
    what = "Resuming" if cfg.resume_from else "Training"
    print(f"{what} {ALGO} (RLlib, masked Discrete({meta['n_actions']})) on {args['scenario']} to "
          f"{args['timesteps']} steps with {args['num_env_runners']} env runners on {where} "
          f"-> {cfg.run_dir}")  # fmt: skip
    logger = configure(str(cfg.run_dir), ["tensorboard"] + (["stdout"] if args["verbose"] else []))
    view = _ModelView(logger, algo, meta)
    view.num_timesteps = done
    cluster = ClusterMetricsCallback()
    cluster.init_callback(view)
    hp = {"algo": ALGO, **PPO, **ppo_overrides(args.get("hp") or [])}
    hp.update(fcnet_hiddens=HIDDEN, train_batch_size=args["train_batch_size"])
    hyper = HyperparamsCallback(hp, {k: v for k, v in args.items() if k != "resume"})
    hyper.init_callback(view)
    hyper.on_training_start({}, {})
    evaluator = None
    if args["eval_freq"] > 0:
        evaluator = HeldOutEvalCallback(
            lambda v: policy_of(v.algo, v.meta), args["scenario"], cfg.overrides,
            args["eval_freq"], args["eval_episodes"], EVAL_SEED, _references(),
        )  # fmt: skip
        evaluator.init_callback(view)
    last_saved, t_start = done, time.perf_counter()
    stop: list[str] = []

    def on_signal(signum, frame):  # finish the iteration, checkpoint, exit 0 (as the SB3 path)
        stop.append(signal.Signals(signum).name)
        signal.signal(
            signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        )

    main_thread = threading.current_thread() is threading.main_thread()  # else no handlers
    sigs = (signal.SIGINT, signal.SIGTERM) if main_thread else ()
    old = {s: signal.signal(s, on_signal) for s in sigs}
    try:
        while view.num_timesteps < args["timesteps"] and not stop:
            t0 = time.perf_counter()
            try:
                result = algo.train()
            except ray.exceptions.RayError as e:
                resume = (
                    f"; resume with: python train.py --engine rllib --resume {last_ckpt}"
                    if last_ckpt
                    else ""
                )
                print(f"train.py: error: a Ray worker failed at {view.num_timesteps} steps: "
                      f"{type(e).__name__}: {one_line(e)[:400]}{resume}", file=sys.stderr)  # fmt: skip
                return 1
            wall = time.perf_counter() - t0
            sampled = int(result["env_runners"].get("num_env_steps_sampled", 0))
            view.num_timesteps += sampled
            infos = list(result["env_runners"].get(FINAL_INFO_KEY) or [])
            cluster.update_locals({"infos": infos})
            cluster.on_step()
            record_iteration(logger, result, infos, wall, sampled)
            if evaluator is not None:
                evaluator.on_step()  # dumps the logs when it evaluates
            if logger.name_to_value:
                logger.dump(view.num_timesteps)
            if args["verbose"]:
                ret = result["env_runners"].get("episode_return_mean", float("nan"))
                print(f"iter {result['training_iteration']}: {view.num_timesteps} steps, "
                      f"return {ret:.2f}, {sampled / wall:.0f} steps/s")  # fmt: skip
            freq = args["checkpoint_freq"]
            if freq > 0 and view.num_timesteps - last_saved >= freq:
                last_ckpt, last_saved = (
                    save_checkpoint(algo, cfg, view.num_timesteps),
                    view.num_timesteps,
                )
        if last_saved != view.num_timesteps or last_ckpt is None:
            last_ckpt = save_checkpoint(algo, cfg, view.num_timesteps)
        dt = time.perf_counter() - t_start
        print(f"Trained to {view.num_timesteps} steps in {dt:.0f} s; checkpoint: {last_ckpt}")
        if stop:
            print(f"Stopped by {stop[0]}; resume with:\n"
                  f"  python train.py --engine rllib --resume {cfg.run_dir}")  # fmt: skip
            return 0
        if not args["no_final_eval"]:
            from .training import final_evaluation

            final_evaluation(
                SimpleNamespace(args={**args, "no_progress": True}, overrides=cfg.overrides, run_dir=cfg.run_dir),
                policy_of(algo, {**meta, "env_steps": view.num_timesteps}),
            )  # fmt: skip
        return 0
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        logger.close()
        algo.stop()
