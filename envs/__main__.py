"""``python -m envs``: list the scenario presets with a one-line description each."""

from . import list_presets

if __name__ == "__main__":
    for name, desc in list_presets().items():
        print(f"{name:<10} {desc}")
