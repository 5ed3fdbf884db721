"""coldstart-gym: a GPU cold-start cluster simulator and Gymnasium environments over it.

``import envs`` registers the Gymnasium ids in the ``coldstart`` namespace:

* ``coldstart/ServerlessGPU-v1``: takes ``scenario=`` (a preset name or YAML path), ``split=``
  (``"train"`` or ``"eval"``, the held-out windows) and keyword overrides of scenario keys.
  (v0 is retired: see the env's Version History.)

``list_presets()`` names the scenario presets with a one-line description each.
"""

from gymnasium.envs.registration import register, registry

from .scenarios import Scenario, list_presets, load_scenario

ENV_ID = "coldstart/ServerlessGPU-v1"
ENV_IDS = (ENV_ID,)

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="envs.env:ServerlessGPUEnv", disable_env_checker=False)

__all__ = ["ENV_ID", "ENV_IDS", "Scenario", "list_presets", "load_scenario"]
