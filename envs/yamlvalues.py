"""One YAML reading for every value a user writes: scenario files, hyperparameter files, and the
``KEY=VALUE`` items of ``-o/--override`` and ``--hp`` in both command-line tools.

PyYAML implements YAML 1.1's float pattern to the letter, which wants a dot and a signed
exponent: ``1.0e+9`` is a float but ``1e1``, ``1e-4`` and ``1.0e9`` are strings, so a rate written
``1e1`` was a string in a scenario file (then rejected) and a number after ``--hp`` (which
converted it). :class:`Loader` adds those exponent spellings as floats, everywhere alike.
``.inf`` and ``.nan`` are floats as in YAML 1.1; the fields that need finite numbers reject them
with the field's name (``envs.sim.config``, ``envs.scenarios``, ``agents.hyperparams``).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["Loader", "load", "parse_assignments"]


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no arbitrary objects) that also reads ``1e1``, ``1e-4``, ``2.5E9``
    as floats."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load(stream) -> Any:
    """``yaml.safe_load`` with :class:`Loader`'s number spellings (text or an open file)."""
    return yaml.load(stream, Loader=Loader)  # noqa: S506 - Loader derives from SafeLoader


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["a=1", "b__c=1e1"]`` -> ``{"a": 1, "b__c": 10.0}``, values read by :func:`load`.

    Args:
        items: The ``KEY=VALUE`` strings, in command-line order (a later key wins).
        flag: The flag they came from (``--override``, ``--hp``), for error messages.

    Raises:
        ValueError: One line naming ``flag`` and the item: no ``=``, an empty key, or a value
            that is not YAML.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: needs KEY=VALUE")
        try:
            out[key] = load(value) if value.strip() else None
        except yaml.YAMLError as e:
            first = " ".join(str(e).split())
            raise ValueError(f"{flag} {item!r}: the value is not YAML ({first})") from None
    return out
