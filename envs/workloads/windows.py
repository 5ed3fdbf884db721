"""Tiling a stretch of a workload's time into consecutive episode windows.

:func:`tile` is what ``evaluate.py --windows all`` evaluates: instead of drawing a few windows at
random from the held-out part of a trace (which, in a sparse trace, may all fall in a quiet
spell), it plays every window of the part back to back, so every request of the part is scored
in exactly one episode.
"""

from __future__ import annotations

import math

__all__ = ["tile"]


def tile(lo: float, hi: float, window_s: float, quantum_s: float) -> list[tuple[float, float]]:
    """Consecutive windows ``(start, length)`` covering ``[lo, hi)`` without gaps or overlaps.

    Every window starts where the one before ended (``start_k = lo + k * window_s``) and lasts
    ``window_s``, except the last, which lasts the remainder rounded up to a whole ``quantum_s``
    (an episode is a whole number of control steps). The last window may therefore end up to one
    quantum past ``hi``; nothing is left out.

    Args:
        lo, hi: The stretch, ``lo < hi`` (source seconds: trace seconds for a trace).
        window_s: Length of a full window, a whole number of ``quantum_s``.
        quantum_s: The unit every length is a multiple of (a control step, in source seconds).

    Raises:
        ValueError: Non-finite or non-positive sizes, ``hi <= lo``, or ``window_s`` not a whole
            number of ``quantum_s``.
    """
    for name, v in (("lo", lo), ("hi", hi), ("window_s", window_s), ("quantum_s", quantum_s)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ValueError(f"tile: {name} must be a finite number, got {v!r}")
    if not hi > lo:
        raise ValueError(f"tile: the stretch [{lo:g}, {hi:g}) is empty")
    if not (quantum_s > 0 and window_s > 0):
        raise ValueError(f"tile: window_s and quantum_s must be > 0, got {window_s}, {quantum_s}")
    steps = window_s / quantum_s
    if abs(steps - round(steps)) > 1e-9 * max(1.0, steps) or round(steps) < 1:
        raise ValueError(
            f"tile: window_s={window_s:g} must be a whole number of quantum_s={quantum_s:g}"
        )
    # Full windows that fit (tolerating rounding), then the rounded-up rest if any.
    n_full = int(math.floor((hi - lo) / window_s * (1 + 1e-12)))
    out = [(lo + k * window_s, float(window_s)) for k in range(n_full)]
    start = lo + n_full * window_s
    rest = hi - start
    if rest > 1e-9 * window_s:  # not just rounding
        out.append((start, math.ceil(rest / quantum_s * (1 - 1e-12)) * quantum_s))
    return out
