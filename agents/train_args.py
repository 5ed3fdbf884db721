"""train.py's command line: its defaults, the seeds of its evaluations, and the parser.

:mod:`agents.training` reads it (and re-exports the names below).
"""

from __future__ import annotations

import argparse
from typing import Any

from .algos import ALGOS
from .cli import OneLineParser

DEFAULTS: dict[str, Any] = {
    "algo": "maskable_ppo",
    "scenario": "paper",
    "override": [],
    "timesteps": None,  # from the hyperparameter file
    "n_envs": None,  # from the hyperparameter file
    "vec_env": "dummy",
    "seed": 0,
    "logdir": "runs",
    "hyperparams": None,
    "hp": [],
    "normalize": None,  # from the hyperparameter file
    "device": "cpu",
    "threads": 1,
    "eval_freq": None,  # the hyperparameter block's eval_freq, else EVAL_FREQ
    "eval_episodes": 5,
    "checkpoint_freq": 50_000,
    "keep_checkpoints": 5,  # assumption: enough to step back past a bad stretch, few files
    "log_interval": None,  # about every 1000 steps
    "no_final_eval": False,
    "no_progress": False,
    "verbose": 0,
    "trace": None,
    "time_col": None,
    "model_col": None,
    "resume": None,
}
# What a resumed run takes from its args.yml and may not change.
FIXED_ON_RESUME = ("algo", "scenario", "override", "seed", "hyperparams", "hp", "normalize",
                   "n_envs", "trace", "time_col", "model_col")  # fmt: skip
EVAL_SEED = 20_000  # periodic evaluation: episodes seeded 20000, 20001, ... on held-out windows
FINAL_EVAL_SEED = 10_000  # final comparison: 10000, 10001, ... (training resets use --seed + i)
EVAL_FREQ = 25_000  # default --eval-freq where the hyperparameter block names none
VALID_SEED = 30_000  # model selection (valid_freq): training-split windows seeded 30000, 30001, ...


_Parser = OneLineParser  # one line, no usage block (shared with evaluate.py)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="train.py",
        description=(
            "Train an SB3 agent on coldstart/ServerlessGPU-v1, then compare it with every "
            "reference heuristic on held-out windows. With no arguments: the 'paper' scenario's "
            "pipeline (behaviour cloning of histogram, DAgger, then MaskablePPO with per-model "
            "credit and model selection; agents/hyperparams/maskable_ppo.yml), about 8-11 minutes "
            "on 2 CPU cores."
        ),
        epilog=(
            "examples:\n"
            "  python train.py\n"
            "  python train.py --algo dqn --timesteps 100000 --normalize\n"
            "  python train.py --scenario small -o episode_s=600 --n-envs 8 --vec-env subproc\n"
            "  python train.py --trace my.csv --time-col t --model-col model -o episode_s=600\n"
            "  python train.py --resume runs/<run>          # after Ctrl-C: same curves, same folder\n"
            "  tensorboard --logdir runs"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a = p.add_argument
    a("--algo", help=f"algorithm: {', '.join(ALGOS)} (default: {DEFAULTS['algo']})")
    a(
        "--scenario",
        help="preset name (small, paper, azure) or a scenario YAML path (default: paper)",
    )
    a(
        "-o",
        "--override",
        action="append",
        metavar="KEY=VALUE",
        help="scenario override, repeatable: episode_s=600, reward__drop_usd=1, workload__rate_high_rps=8",
    )
    a(
        "--timesteps",
        type=int,
        help="total env steps of the run (model-steps with per_model) (default: n_timesteps "
        "of the hyperparameter file)",
    )
    a("--n-envs", type=int, help="parallel envs (default: n_envs of the hyperparameter file)")
    a(
        "--vec-env",
        choices=("dummy", "subproc"),
        help="DummyVecEnv (one process) or SubprocVecEnv (default: dummy)",
    )
    a("--seed", type=int, help="seed of the model and the training envs (default: 0)")
    a("--logdir", help="parent folder of run folders (default: runs)")
    a(
        "--hyperparams",
        metavar="FILE",
        help="hyperparameter YAML (rl-zoo layout; default: agents/hyperparams/<algo>.yml)",
    )
    a(
        "--hp",
        action="append",
        metavar="KEY=VALUE",
        help="hyperparameter override, repeatable: n_steps=128, learning_rate=1e-4",
    )
    a(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        help="VecNormalize observations and rewards; statistics saved with the model (default: the file's normalize)",
    )
    a(
        "--resume",
        metavar="PATH",
        help="continue a run folder (or model zip): same folder, TensorBoard curves and step count",
    )
    a(
        "--device",
        help="torch device: cpu, cuda, auto (default: cpu; MLP policies are faster on CPU)",
    )
    a("--threads", type=int, help="torch CPU threads (default: 1, fastest for small MLPs)")
    a(
        "--eval-freq",
        type=int,
        help="held-out evaluation every N env steps, 0 = never (default: the hyperparameter "
        "block's eval_freq, else 25000)",
    )
    a("--eval-episodes", type=int, help="episodes per evaluation, periodic and final (default: 5)")
    a(
        "--checkpoint-freq",
        type=int,
        help="checkpoint every N env steps, 0 = never (default: 50000)",
    )
    a(
        "--keep-checkpoints",
        type=int,
        metavar="N",
        help="keep the N most recent checkpoints, delete older ones; 0 = keep all (default: 5)",
    )
    a(
        "--log-interval",
        type=int,
        help="SB3's log_interval: rollouts (on-policy) or episodes (dqn) between log writes "
        "(default: about every 1000 env steps)",
    )
    a(
        "--no-final-eval",
        action="store_true",
        default=None,
        help="skip the final comparison with the heuristics",
    )
    a("--no-progress", action="store_true", default=None, help="no progress bar")
    a(
        "-v",
        "--verbose",
        type=int,
        help="1: SB3's log table on stdout and evaluation lines (default: 0)",
    )
    g = p.add_argument_group("trace workload (replaces the scenario's workload)")
    g.add_argument(
        "--trace", metavar="PATH", help="CSV trace file or shipped name (azure2019, azure_llm_2023)"
    )
    g.add_argument(
        "--time-col", metavar="C", help="column of request times (generic timestamp traces)"
    )
    g.add_argument(
        "--model-col", metavar="C", help="column naming the function/model of each request"
    )
    return p
