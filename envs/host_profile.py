"""Host profiles: load-tier figures measured on a real machine, for scenario files to use.

A profile is the YAML that ``python -m benchmarks.calibrate_host --out PATH`` writes (format in
``envs/profiles/README.md``). Its sections are named after the simulator's specs and hold their
fields under the same names:

* ``host``: :class:`~envs.sim.config.HostSpec` fields (``pcie_gb_per_s``, ``disk_gb_per_s``,
  ``n_gpus``, ``gpu_mem_gb``). A scenario's host entry takes them with
  ``hosts: [{profile: PATH, count: 2, ...}]``; keys written in the entry win over the profile's.
* ``startup``: :class:`~envs.sim.config.StartupSpec` fields (``runtime_init_s``). Cluster-wide in
  the simulator, so a host entry does not carry them: copy them into the scenario's ``startup:``.
* ``model``: :class:`~envs.sim.config.ModelSpec` fields that depend on the host's loader rather
  than on the model (``deserialize_gb_per_s``). Per model in the simulator: give them per model,
  ``models: [{base: t5-3b, deserialize_gb_per_s: ...}]``.
* ``measured``: every raw figure of the run with its method (pinned and pageable copy, cold and
  warm disk reads, each loader's rate); ``meta``: date, machine, versions, what was skipped.

Every value is validated by the spec it belongs to; an error names the profile file, the
section, the field, the value and the expected range (:class:`~envs.sim.config.ConfigError`,
what scenario loading raises).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from pathlib import Path

import yaml

from . import yamlvalues
from .sim import catalog
from .sim.config import ConfigError, HostSpec, ModelSpec, StartupSpec

PROFILE_DIR = Path(__file__).parent / "profiles"
"""Shipped profiles: ``profile: NAME`` (no ``.yaml``) in a host entry names ``PROFILE_DIR/NAME.yaml``."""

FORMAT = 1
SPEC_SECTIONS: dict[str, type] = {"host": HostSpec, "startup": StartupSpec, "model": ModelSpec}
MODEL_FIELDS = ("deserialize_gb_per_s",)
"""ModelSpec fields a profile may hold: the ones set by the host's loader, not by the model."""
TOP_KEYS = ("format", *SPEC_SECTIONS, "measured", "meta")


def _unknown(where: str, key, valid) -> ConfigError:
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}; valid keys: {sorted(valid)}.{hint}")


def _valid_fields(section: str) -> list[str]:
    if section == "model":
        return list(MODEL_FIELDS)
    return [f.name for f in dataclasses.fields(SPEC_SECTIONS[section])]


def _check_section(where: str, section: str, values) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"{where}: {section} must be a mapping of {SPEC_SECTIONS[section].__name__} fields, "
            f"got {values!r}"
        )
    valid = _valid_fields(section)
    for k in values:
        if k not in valid:
            raise _unknown(f"{where}: {section}", k, valid)
    # The spec itself checks every value (one definition of each range): build it from its
    # defaults with the profile's fields in.
    try:
        if section == "model":
            dataclasses.replace(catalog.CATALOG[catalog.PROTOTYPE_MODELS[0]], **values)
        else:
            SPEC_SECTIONS[section](**values)
    except ConfigError as e:
        raise ConfigError(f"{where}: {section}: {e}") from None
    return dict(values)


def _check_measured(where: str, values) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: measured must be a mapping of figure names, got {values!r}")
    for k, v in values.items():
        if not isinstance(k, str):
            raise ConfigError(f"{where}: measured: keys must be strings, got {k!r}")
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(
                f"{where}: measured.{k} must be a finite number >= 0, a string or null, got {v!r}"
            )
    return dict(values)


def load_host_profile(path: str | os.PathLike) -> dict:
    """Read and validate a host profile.

    Returns:
        ``{"format": 1, "host": {...}, "startup": {...}, "model": {...}, "measured": {...},
        "meta": {...}}``, every section present (empty if the file has none).

    Raises:
        ConfigError: the file is missing or not YAML, or a key or value is invalid; the message
            names the file, the section and field, the value and the expected range.
    """
    path = Path(path)
    where = f"host profile {str(path)!r}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist (or is not a file)")
    try:
        with open(path) as f:
            data = yamlvalues.load(f)  # the scenarios' YAML reading: 1e1 is a float here too
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(e).split())})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot be read ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must hold a mapping of sections, got {type(data).__name__}")
    for k in data:
        if k not in TOP_KEYS:
            raise _unknown(where, k, TOP_KEYS)
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise ConfigError(f"{where}: format must be {FORMAT} (the only version), got {fmt!r}")
    out: dict = {"format": FORMAT}
    for section in SPEC_SECTIONS:
        out[section] = _check_section(where, section, data.get(section))
    out["measured"] = _check_measured(where, data.get("measured"))
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: meta must be a mapping, got {meta!r}")
    out["meta"] = dict(meta)
    return out


def resolve_profile_path(value, base_dir: str | os.PathLike) -> Path:
    """Where a host entry's ``profile:`` value points.

    A relative path is taken against ``base_dir`` (the scenario file's folder); a bare name with
    no ``.yaml``/``.yml`` suffix that is no file there names a shipped profile in
    :data:`PROFILE_DIR`.
    """
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConfigError(
            f"hosts entry: profile must be a path to a host profile YAML, got {value!r}"
        )
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = Path(base_dir) / p
    if not p.exists() and p.suffix not in (".yaml", ".yml") and Path(value).name == str(value):
        shipped = PROFILE_DIR / f"{value}.yaml"
        if shipped.exists():
            return shipped
    return p


def expand_host_entry(entry, base_dir: str | os.PathLike) -> dict:
    """A scenario's host entry with its ``profile:`` merged in.

    ``{"profile": "gpu-box.yaml", "count": 2, "cache_gb": 128}`` becomes the profile's ``host``
    fields updated by the entry's own keys (explicit keys win), without ``profile``. ``count``
    and every other key pass through for the scenario loader to check. An entry without
    ``profile`` (or one that is no mapping) comes back unchanged, so a loader may call this on
    every entry.

    Args:
        entry: One item of the scenario's ``hosts`` list.
        base_dir: The scenario file's folder; relative profile paths are resolved against it.

    Raises:
        ConfigError: the profile path is not a string, the file is missing, or it is invalid.
    """
    if not isinstance(entry, dict) or "profile" not in entry:
        return dict(entry) if isinstance(entry, dict) else entry
    path = resolve_profile_path(entry["profile"], base_dir)
    profile = load_host_profile(path)
    rest = {k: v for k, v in entry.items() if k != "profile"}
    return {**profile["host"], **rest}
