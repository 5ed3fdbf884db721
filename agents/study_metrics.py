"""The study's metrics: which figure of :func:`agents.evaluation.evaluate` each study metric is.

One definition, imported by :mod:`agents.study`, :mod:`agents.study_eval` and
:mod:`agents.study_report` (kept apart from :mod:`agents.study`, which runs as ``__main__``: a
report importing it would load the study's module a second time).
"""

from __future__ import annotations

from collections.abc import Callable

REWARD_KEY = "episode_reward"  # per-episode return in evaluate()'s ``per_episode`` entries


def _slo_attainment(row: dict, raw: dict, ctx: dict) -> float:
    return 1.0 - row["slo_violation_rate"]


Derive = Callable[[dict, dict, dict], float]
# study metric -> (evaluate() key, derivation where evaluate() does not report it, what the
# derivation computes). evaluate()'s latency, drop and goodput figures are env v1's drop-aware
# ones (envs/sim/metrics.py: a dropped request counts at the request timeout).
METRICS: dict[str, tuple[str, Derive | None, str]] = {
    "drop_rate": ("drop_rate", None, ""),
    "p99_latency_s": ("p99_latency_s", None, ""),
    "goodput_rps": ("goodput_rps", None, ""),
    "slo_attainment": ("slo_attainment", _slo_attainment, "1 - slo_violation_rate"),
    "cost_usd": ("cost_usd", None, ""),
}  # fmt: skip


def metric_values(row: dict, raw: dict, ctx: dict) -> tuple[dict, dict]:
    """``({metric: value}, {metric: source})`` of one policy's evaluate() result."""
    values, sources = {}, {}
    for name, (key, derive, what) in METRICS.items():
        if key in row:
            values[name], sources[name] = float(row[key]), f"evaluate() {key}"
        elif derive is not None:
            values[name], sources[name] = derive(row, raw, ctx), f"derived: {what}"
        else:
            raise KeyError(f"evaluate() results lack {key!r} and it has no derivation")
    return values, sources
