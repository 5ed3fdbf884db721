"""coldstart-gym: a GPU cold-start cluster simulator and Gymnasium environments over it.

``import envs`` registers the Gymnasium ids in the ``coldstart`` namespace:

* ``coldstart/ServerlessGPU-v0``: takes ``scenario=`` (a preset name or YAML path), ``split=``
  (``"train"`` or ``"eval"``, the held-out windows) and keyword overrides of scenario keys.

``list_presets()`` names the scenario presets with a one-line description each.
"""

from gymnasium.envs.registration import register, registry

from .scenarios import Scenario, list_presets, load_scenario

ENV_IDS = ("coldstart/ServerlessGPU-v0",)

if "coldstart/ServerlessGPU-v0" not in registry:
    register(
        id="coldstart/ServerlessGPU-v0",
        entry_point="envs.env:ServerlessGPUEnv",
        disable_env_checker=False,
    )

__all__ = ["ENV_IDS", "Scenario", "list_presets", "load_scenario"]
