"""Build workload generators from plain dicts (what scenario YAML files hold).

Example::

    make_workload({"kind": "poisson", "rate_rps": 5, "zipf_s": 1.0})
    make_workload({"kind": "trace", "path": "azure2019", "time_scale": 2.0})
    make_workload({"kind": "compose", "parts": [{"kind": "poisson", "rate_rps": 1},
                                                {"kind": "flash", "base_rate_rps": 0,
                                                 "spike_rate_rps": 50, "spike_every_s": 600,
                                                 "spike_duration_s": 20}]})
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from envs.workloads.base import WorkloadGenerator
from envs.workloads.synthetic import (
    BurstyWorkload,
    ComposeWorkload,
    DiurnalWorkload,
    FlashSpikeWorkload,
    MMPPWorkload,
    PoissonWorkload,
)
from envs.workloads.traces import TraceWorkload

__all__ = ["KINDS", "make_workload"]

KINDS: dict[str, type] = {
    "poisson": PoissonWorkload,
    "bursty": BurstyWorkload,
    "mmpp": MMPPWorkload,
    "diurnal": DiurnalWorkload,
    "flash": FlashSpikeWorkload,
    "trace": TraceWorkload,
    "compose": ComposeWorkload,
}


def _params(kind: str) -> tuple[list[str], list[str]]:
    """(all keys, required keys) accepted for ``kind`` besides ``kind`` itself."""
    cls = KINDS[kind]
    if kind == "trace":
        sig = inspect.signature(TraceWorkload.__init__)
        names = ["path" if n == "trace" else n for n in sig.parameters if n != "self"]
        return names, ["path"]
    fields = dataclasses.fields(cls)
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return [f.name for f in fields], required


def make_workload(spec: Mapping[str, Any]) -> WorkloadGenerator:
    """Build a generator from ``{"kind": ..., <parameters>}``.

    Kinds: ``poisson``, ``bursty``, ``mmpp``, ``diurnal``, ``flash`` (parameters = the fields of
    the matching class in :mod:`envs.workloads.synthetic`), ``trace`` (``path`` = file or shipped
    trace name, plus :class:`TraceWorkload`'s keyword arguments) and ``compose`` (``parts`` = a
    list of specs).

    Raises:
        ValueError: Not a mapping, missing/unknown ``kind`` (the closest valid kind is suggested),
            unknown or missing keys (the valid keys are listed), or invalid values.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"workload spec must be a mapping with a 'kind' key, got {spec!r}")
    if "kind" not in spec:
        raise ValueError(
            f"workload spec {dict(spec)!r} has no 'kind'; valid kinds: {sorted(KINDS)}"
        )
    kind = spec["kind"]
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown workload kind {kind!r}; valid kinds: {sorted(KINDS)}.{hint}")
    keys, required = _params(kind)
    args = {k: v for k, v in spec.items() if k != "kind"}
    for key in args:
        if key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown key {key!r} for workload kind {kind!r}; valid keys: {keys}.{hint}"
            )
    missing = [k for k in required if k not in args]
    if missing:
        raise ValueError(
            f"workload kind {kind!r} is missing required key(s) {missing}; valid keys: {keys}"
        )
    if kind == "trace":
        path = args.pop("path")
        return TraceWorkload(path, **args)
    if kind == "compose":
        parts = args["parts"]
        if isinstance(parts, (str, bytes, Mapping)) or not hasattr(parts, "__iter__"):
            raise ValueError(
                f"workload kind 'compose': parts must be a list of specs, got {parts!r}"
            )
        return ComposeWorkload(tuple(make_workload(p) for p in parts))
    return KINDS[kind](**args)
