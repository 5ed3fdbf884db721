"""Train an SB3 agent on ``coldstart/ServerlessGPU-v1`` and compare it with the heuristics.

A thin shim over :mod:`agents.training` (rl-baselines3-zoo keeps ``train.py`` the same way)::

    python train.py                      # MaskablePPO on the default scenario, then the comparison
    python train.py --algo dqn --timesteps 100000
    python train.py --resume runs/<run>  # continue after Ctrl-C / SIGTERM
    python train.py --help               # every option
"""

import sys

from agents.training import main

if __name__ == "__main__":
    sys.exit(main())
