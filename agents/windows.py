"""Which windows an evaluation plays, and what it says about the windows it played.

:func:`agents.evaluation.evaluate` either lets the env draw its windows at random from the
split's part of the scenario's span, or (``episodes="all"``) plays :func:`tiled_windows`: every
window of the held-out part of a trace, back to back. Either way :func:`coverage` records how
many windows and requests the figures cover and which windows held no request: in a sparse trace
a drawn window often holds none, and a table of dashes should say why
(:func:`empty_windows_note`, :func:`coverage_line`).
"""

from __future__ import annotations

__all__ = ["coverage", "coverage_line", "empty_windows_note", "merge", "tiled_windows"]



def tiled_windows(sc) -> list[tuple[float, float]]:
    """``(start_s, episode_s)`` of the consecutive episodes that tile the held-out part
    ``[span_s * (1 - held_out_fraction), span_s)`` of a trace scenario ``sc``.

    Full episodes last ``sc.episode_s``; the last lasts the rest rounded up to whole control
    steps, so it may reach up to one step past ``span_s`` (replayed as silence past the trace's
    end: :func:`evaluate` gives the trace workload ``pad_s``). Starts are trace seconds, lengths
    simulated seconds (``time_scale`` trace seconds each).

    Raises:
        ValueError: The workload is not a trace (a synthetic workload has no finite set of
            held-out requests to cover), the scenario has no held-out part, or ``episode_s`` is
            not a whole number of ``step_s``.
    """
    from envs.workloads.windows import tile

    kind = _kind(sc)
    if kind != "trace":
        raise ValueError(
            f"tiling the held-out part needs a trace workload, and scenario {sc.name!r} has a "
            f"{kind!r} one (replay a trace: --trace PATH, or a scenario whose workload has kind "
            "'trace')"
        )
    steps = sc.episode_s / sc.step_s
    if abs(steps - round(steps)) > 1e-9 * steps:
        raise ValueError(
            "tiling the held-out part needs episode_s to be a whole number of step_s, got "
            f"episode_s={sc.episode_s:g} and step_s={sc.step_s:g}"
        )
    lo, _ = sc.window_bounds("eval")
    ts = sc.time_scale
    # The env scores the requests at or after its window's start and before its end
    # (Simulator.open_window), so back-to-back windows score each request once, one exactly on
    # a boundary included.
    tiles = tile(lo, sc.span_s, sc.episode_s * ts, sc.step_s * ts)
    return [(t0, round(n / (sc.step_s * ts)) * sc.step_s) for t0, n in tiles]


def _kind(sc) -> str | None:
    return sc.workload.get("kind") if isinstance(sc.workload, dict) else None


def coverage(sc, eps: list[dict], tiled: bool) -> dict:
    """``results["windows"]``: the windows (trace or workload seconds) and requests the figures
    cover, and the windows that held no request. Arrivals do not depend on the policy, so one
    policy's episodes say it for all."""
    ts = sc.time_scale
    spans = [(e["start_s"], e["start_s"] + e["window_s"] * ts) for e in eps]
    empty = [i for i, e in enumerate(eps) if e["requests_arrived"] == 0]
    return {
        "mode": "all" if tiled else "drawn",
        "source": "trace" if _kind(sc) == "trace" else "workload",
        "count": len(eps),
        "requests": int(sum(e["requests_arrived"] for e in eps)),
        "empty": len(empty),
        "empty_episodes": empty,
        "empty_ranges_s": merge([spans[i] for i in empty]),
        # Tiled: the held-out part, and what the episodes played (the last may end one step
        # past the part, in silence past the trace's end).
        "part_s": [sc.window_bounds("eval")[0], sc.span_s] if tiled else None,
        "played_s": [spans[0][0], spans[-1][1]] if tiled else None,
    }


def merge(spans: list[tuple[float, float]]) -> list[list[float]]:
    """Overlapping or touching ``[t0, t1)`` ranges merged, in order."""
    out: list[list[float]] = []
    for t0, t1 in sorted(spans):
        if out and t0 <= out[-1][1] * (1 + 1e-12):
            out[-1][1] = max(out[-1][1], t1)
        else:
            out.append([t0, t1])
    return out


def _secs(x: float) -> str:
    """Seconds to the hundredth, thousands separated: ``1,373,250.75``, ``86,400``."""
    return f"{round(x, 2):,}".removesuffix(".0")


def empty_windows_note(results: dict, most: int = 4) -> str | None:
    """One line saying how many evaluated windows held no request and where (the first
    ``most`` merged ranges), or None when every window held one."""
    w = results.get("windows") or {}
    if not w.get("empty"):
        return None
    ranges = w["empty_ranges_s"]
    where = ", ".join(f"[{_secs(a)}, {_secs(b)})" for a, b in ranges[:most])
    if len(ranges) > most:
        where += f" and {len(ranges) - most} more range(s)"
    what = (
        "no latency figure is defined (shown as -)"
        if w["empty"] == w["count"]
        else "they add cost and reward to the means but no request to the latency figures"
    )
    hint = ""
    if w["mode"] == "drawn" and w.get("source") == "trace":
        hint = "; evaluate.py --windows all plays every held-out window"
    return (
        f"{w['empty']} of {w['count']} windows held no request (seconds {where} of the "
        f"{w.get('source', 'workload')}): {what}{hint}"
    )


def coverage_line(results: dict) -> str | None:
    """The footer's line on the windows and requests the figures cover."""
    w = results.get("windows")
    if not w:
        return None
    empty = f"{w['empty']} of them held no request" if w["empty"] else "none of them empty"
    if w["mode"] == "all":
        a, b = w["part_s"]
        where = (f"all {w['count']} consecutive windows of the held-out part [{_secs(a)}, "
                 f"{_secs(b)}) s of the trace")  # fmt: skip
    else:
        part = "held-out" if results.get("split") == "eval" else "training"
        where = f"{w['count']} window(s) drawn at random from the {part} part"
    return f"Figures cover {where} ({empty}) and {w['requests']:,} requests."
