"""Loading real traces: layout detection, parsing, the :class:`Trace` container, window splits.

Accepted layouts (detected from the header; ``Trace.layout`` names the one found):

- ``azure2019_vhive``: ``HashFunction,HashOwner,HashApp,minute_1..minute_N`` per-minute counts
  (the vHive/In-Vitro sampler's layout, as in the shipped 1,350-function day).
- ``azure2019``: ``HashOwner,HashApp,HashFunction[,Trigger],<k>..<k+N-1>`` per-minute counts with
  minute columns named by bare numbers (the published day files use ``1..1440``; cut windows may
  start anywhere, e.g. ``480..959``).
- ``azure2021``: ``app,func,end_timestamp,duration`` per-invocation records in seconds; the
  request time is the invocation start, ``end_timestamp - duration``.
- ``azure_llm_2023``: a ``TIMESTAMP`` column of datetime strings (Azure LLM inference trace).
- ``timestamps``: any CSV when ``time_col=`` is given (numeric seconds or datetime strings).

Trace time: per-minute layouts start at 0 at the first minute column (bin ``j`` covers
``[60 j, 60 (j + 1))``). Per-request layouts are re-based so that the earliest request is at 0,
and their ``duration_s`` is rounded up to the next whole second after the last request.
``Trace.origin_s`` says where trace time 0 lies in the source's own clock.
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.workloads._csv import (
    CsvText,
    TraceFormatError,
    looks_numeric,
    parse_datetimes,
    parse_floats,
    read_csv_text,
)

__all__ = [
    "LAYOUTS",
    "Trace",
    "TraceOrderWarning",
    "TraceFormatError",
    "load_trace",
    "shipped_trace_path",
    "split_windows",
]

class TraceOrderWarning(UserWarning):
    """A per-request trace had out-of-order times and was sorted (``Trace.was_sorted`` False)."""


LAYOUTS: dict[str, str] = {
    "azure2019_vhive": "HashFunction,HashOwner,HashApp,minute_1..minute_N (per-minute counts)",
    "azure2019": "HashOwner,HashApp,HashFunction[,Trigger],<minute numbers, e.g. 1..1440 or 480..959>",
    "azure2021": "app,func,end_timestamp,duration (one row per invocation, seconds)",
    "azure_llm_2023": "TIMESTAMP,... (one row per request, datetime strings)",
    "timestamps": "any CSV with time_col=<column> (seconds or datetimes) and optional model_col=",
}
SHIPPED: dict[str, str] = {
    "azure2019": "azure2019_day_1350fn_inv.csv.gz",
    "azure_llm_2023": "azure_llm_conv_2023.csv.gz",
    "azure2021_sample": "azure2021_sample_200.csv.gz",
}
_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_MINUTE_VHIVE = re.compile(r"minute_(\d+)")
_MINUTE_BARE = re.compile(r"\d+")


def shipped_trace_path(name: str) -> Path:
    """Path of a trace shipped in ``envs/data``: ``"azure2019"``, ``"azure_llm_2023"`` or
    ``"azure2021_sample"`` (``envs/data/README.md`` has their sources and licenses)."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped trace {name!r}; shipped traces: {sorted(SHIPPED)}")
    return _DATA_DIR / SHIPPED[name]


@dataclass(frozen=True, eq=False)
class Trace:
    """A loaded trace: per function, per-minute counts or sorted per-request times.

    Attributes:
        path: The file it came from.
        layout: One of :data:`LAYOUTS`.
        function_ids: One id per function (row id, ``app/func``, or a ``model_col`` value).
        duration_s: Length of the trace in trace seconds (see the module docstring).
        origin_s: Trace time 0 in the source's clock: minutes-of-day ``(k - 1) * 60`` for a first
            minute column ``k``; the earliest value for numeric times; seconds since midnight of the
            earliest datetime for datetime strings.
        counts: ``(n_functions, n_bins)`` int64 per-minute counts, or ``None``.
        bin_s: Width of a count bin (60.0), or ``None``.
        times_s: All request times sorted ascending, or ``None`` for count layouts.
        function_index: Function of each entry of ``times_s``, or ``None``.
        was_sorted: False if the file's request times were out of order and the loader sorted
            them (stable sort; counts layouts are always True).
        out_of_order: How many rows' times (``time_col``) are earlier than the row before: 0 for
            a sorted file (and an Azure 2021 file sorted by ``end_timestamp``, whose start
            times are sorted here silently, as that layout requires).
        time_col: The column request times came from (per-request layouts).
    """

    path: str
    layout: str
    function_ids: tuple[str, ...]
    duration_s: float
    origin_s: float = 0.0
    counts: np.ndarray | None = None
    bin_s: float | None = None
    times_s: np.ndarray | None = None
    function_index: np.ndarray | None = None
    was_sorted: bool = True
    out_of_order: int = 0
    time_col: str | None = None

    @property
    def n_functions(self) -> int:
        return len(self.function_ids)

    @property
    def is_binned(self) -> bool:
        """True for per-minute count layouts."""
        return self.counts is not None

    @property
    def total_requests(self) -> int:
        if self.counts is not None:
            return int(self.counts.sum())
        return int(self.times_s.size)  # type: ignore[union-attr]

    def function_totals(self) -> np.ndarray:
        """Requests per function over the whole trace, shape ``(n_functions,)``."""
        if self.counts is not None:
            return self.counts.sum(axis=1)
        return np.bincount(self.function_index, minlength=self.n_functions)  # type: ignore[arg-type]

    def function_times(self, i: int) -> np.ndarray:
        """Sorted request times of function ``i`` (per-request layouts only)."""
        if self.times_s is None:
            raise ValueError(
                f"{self.path}: layout {self.layout!r} holds per-minute counts, not times"
            )
        return self.times_s[self.function_index == i]

    def windows(self, window_s: float, held_out_fraction: float) -> tuple[list[float], list[float]]:
        """Train and held-out window starts over this trace; see :func:`split_windows`."""
        return split_windows(self.duration_s, window_s, held_out_fraction)

    def __repr__(self) -> str:
        return (
            f"Trace(path={self.path!r}, layout={self.layout!r}, n_functions={self.n_functions}, "
            f"total_requests={self.total_requests}, duration_s={self.duration_s}, "
            f"was_sorted={self.was_sorted})"
        )


def split_windows(
    duration_s: float, window_s: float, held_out_fraction: float
) -> tuple[list[float], list[float]]:
    """Tile ``[0, duration_s)`` into back-to-back windows and hold out the last ones.

    The trace is cut into ``n = floor(duration_s / window_s)`` windows starting at ``0, window_s,
    2 window_s, ...``; the last ``ceil(held_out_fraction * n)`` of them (the end of the trace) are
    held out for evaluation and the others are for training, so no held-out second is ever
    trained on. A remainder shorter than ``window_s`` at the end is unused.

    Returns:
        ``(train_starts, heldout_starts)`` in trace seconds.

    Raises:
        ValueError: Non-positive sizes, a fraction outside [0, 1), or no training window left.
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"split_windows: duration_s must be > 0, got {duration_s!r}")
    if not (math.isfinite(window_s) and 0 < window_s <= duration_s):
        raise ValueError(f"split_windows: window_s must be in (0, {duration_s}], got {window_s!r}")
    if not 0 <= held_out_fraction < 1:
        raise ValueError(
            f"split_windows: held_out_fraction must be in [0, 1), got {held_out_fraction!r}"
        )
    n = int(math.floor(duration_s / window_s * (1 + 1e-12)))
    n_held = int(math.ceil(held_out_fraction * n - 1e-9))
    if n - n_held < 1:
        raise ValueError(
            f"split_windows: held_out_fraction={held_out_fraction} leaves no training window "
            f"({n} windows of {window_s} s in {duration_s} s)"
        )
    starts = [k * float(window_s) for k in range(n)]
    return starts[: n - n_held], starts[n - n_held :]


def _group_ids(values: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct values in order of first appearance, and each row's index into them."""
    uniq, first, inverse = np.unique(
        np.array(values, dtype=object).astype(str), return_index=True, return_inverse=True
    )
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return tuple(str(u) for u in uniq[order]), rank[inverse.ravel()]


def _minute_columns(src: CsvText, names: list[str], pattern: re.Pattern[str]) -> int:
    """Check the minute columns are consecutive numbers; return the first minute number."""
    numbers = []
    for name in names:
        m = pattern.fullmatch(name)
        if m is None:
            raise TraceFormatError(
                f"{src.path}: column {name!r} is not a minute column ({pattern.pattern})"
            )
        numbers.append(int(m.group(m.lastindex or 0)))
    for a, b, name in zip(numbers, numbers[1:], names[1:], strict=False):
        if b != a + 1:
            raise TraceFormatError(
                f"{src.path}: minute columns must be consecutive; {name!r} follows minute {a}"
            )
    return numbers[0]


def _count_matrix(
    src: CsvText, n_str: int, minute_names: list[str]
) -> tuple[list[list[str]], np.ndarray]:
    """Split rows into ``n_str`` id fields and an int64 count matrix (fast path: ``np.loadtxt``)."""
    heads, rest = [], []
    for i, line in enumerate(src.lines):
        parts = line.split(",", n_str)
        if len(parts) <= n_str:
            raise TraceFormatError(
                f"{src.path}: {src.where(i)} has {len(parts)} fields, the header has {len(src.header)}"
            )
        heads.append([p.strip().strip('"') for p in parts[:n_str]])
        rest.append(parts[n_str])
    try:
        counts = np.loadtxt(rest, delimiter=",", dtype=np.int64, ndmin=2)
        if counts.shape[1] != len(minute_names):
            raise ValueError("width")
    except ValueError:
        counts = _count_matrix_slow(src, rest, minute_names)
    neg = np.argwhere(counts < 0)
    if neg.size:
        r, c = (int(x) for x in neg[0])
        raise TraceFormatError(
            f"{src.path}: {src.where(r)}, column '{minute_names[c]}': negative count {counts[r, c]}"
        )
    return heads, counts


def _count_matrix_slow(src: CsvText, rest: list[str], minute_names: list[str]) -> np.ndarray:
    """Parse counts one value at a time, reporting the first bad one (row and column)."""
    out = np.empty((len(rest), len(minute_names)), dtype=np.int64)
    for r, text in enumerate(rest):
        fields = text.split(",")
        if len(fields) != len(minute_names):
            raise TraceFormatError(
                f"{src.path}: {src.where(r)} has {len(fields)} minute values, "
                f"the header has {len(minute_names)} minute columns"
            )
        for c, v in enumerate(fields):
            try:
                x = float(v)
            except ValueError:
                x = math.nan
            if not (math.isfinite(x) and x == int(x)):
                raise TraceFormatError(
                    f"{src.path}: {src.where(r)}, column '{minute_names[c]}': {v.strip()!r} is not "
                    "an integer invocation count"
                )
            out[r, c] = int(x)
    return out


def _load_counts(src: CsvText, layout: str, model_col: str | None) -> Trace:
    n_str = 3 if layout == "azure2019_vhive" else (4 if "Trigger" in src.header[:4] else 3)
    minute_names = src.header[n_str:]
    pattern = _MINUTE_VHIVE if layout == "azure2019_vhive" else _MINUTE_BARE
    first_minute = _minute_columns(src, minute_names, pattern)
    if not src.lines:
        raise TraceFormatError(f"{src.path}: empty trace (header only, no rows)")
    heads, counts = _count_matrix(src, n_str, minute_names)
    id_names = src.header[:n_str]
    if model_col is not None:
        if model_col not in id_names:
            raise TraceFormatError(
                f"{src.path}: model_col={model_col!r} must be one of the id columns {id_names} "
                f"of a per-minute count file; columns found: {src.header[: n_str + 2]}..."
            )
        k = id_names.index(model_col)
        ids, group = _group_ids([h[k] for h in heads])
        grouped = np.zeros((len(ids), counts.shape[1]), dtype=np.int64)
        np.add.at(grouped, group, counts)
        counts = grouped
    elif layout == "azure2019_vhive":
        ids = tuple(h[0] for h in heads)
    else:
        ids = tuple(f"{h[1]}/{h[2]}" for h in heads)
    if counts.sum() == 0:
        raise TraceFormatError(f"{src.path}: empty trace (zero invocations in {len(heads)} rows)")
    return Trace(
        src.path,
        layout,
        ids,
        60.0 * counts.shape[1],
        60.0 * (first_minute - 1),
        counts=counts,
        bin_s=60.0,
    )


def _load_requests(
    src: CsvText, layout: str, time_col: str, model_col: str | None, strict_order: bool
) -> Trace:
    t_idx = src.column(time_col, "time_col")
    m_idx = src.column(model_col, "model_col") if model_col is not None else None
    rows = src.records()
    if not rows:
        raise TraceFormatError(f"{src.path}: empty trace (header only, no rows)")
    raw = [r[t_idx].strip() for r in rows]
    if layout == "azure2021":
        end = parse_floats(src, raw, "end_timestamp")
        dur = parse_floats(src, [r[src.header.index("duration")] for r in rows], "duration")
        neg = np.flatnonzero(dur < 0)
        if neg.size:
            i = int(neg[0])
            raise TraceFormatError(
                f"{src.path}: {src.where(i)}, column 'duration': negative {dur[i]}"
            )
        abs_t = end - dur
        origin = float(abs_t.min())
        rel = abs_t - origin
    elif looks_numeric(raw[0]):
        abs_t = parse_floats(src, raw, time_col)
        origin = float(abs_t.min())
        rel = abs_t - origin
    else:
        ns = parse_datetimes(src, raw, time_col)
        first = int(ns.min())
        rel = (ns - first).astype(np.float64) / 1e9
        origin = (first % (86_400 * 10**9)) / 1e9
    if m_idx is not None:
        ids, fidx = _group_ids([r[m_idx].strip() for r in rows])
    elif layout == "azure2021":
        a, f = src.header.index("app"), src.header.index("func")
        ids, fidx = _group_ids([f"{r[a].strip()}/{r[f].strip()}" for r in rows])
    else:
        ids, fidx = ("all",), np.zeros(len(rows), dtype=np.int64)
    down = np.flatnonzero(np.diff(rel) < 0)
    # Out of order in the file's own time column (what the warning counts): an Azure 2021 file
    # is sorted by end_timestamp, so its start times are out of order by design.
    n_disorder = int((np.diff(end) < 0).sum()) if layout == "azure2021" else int(down.size)
    if down.size and strict_order:
        i = int(down[0]) + 1
        raise TraceFormatError(
            f"{src.path}: {src.where(i)}: request time is earlier than the previous row's "
            f"(column '{time_col}'); strict_order=True rejects out-of-order files"
        )
    if down.size:
        order = np.argsort(rel, kind="stable")
        rel, fidx = rel[order], fidx[order]
    duration = float(math.floor(rel[-1]) + 1.0)
    return Trace(
        src.path,
        layout,
        ids,
        duration,
        origin,
        times_s=rel,
        function_index=np.asarray(fidx, dtype=np.int64),
        was_sorted=not down.size,
        out_of_order=n_disorder,
        time_col=time_col,
    )


def _detect(src: CsvText, time_col: str | None) -> str:
    h = src.header
    if time_col is not None:
        return "timestamps"
    if h[:3] == ["HashFunction", "HashOwner", "HashApp"] and len(h) > 3:
        return "azure2019_vhive"
    if h[:3] == ["HashOwner", "HashApp", "HashFunction"] and len(h) > 3 + (h[3:4] == ["Trigger"]):
        return "azure2019"
    if {"app", "func", "end_timestamp", "duration"} <= set(h):
        return "azure2021"
    if "TIMESTAMP" in h:
        return "azure_llm_2023"
    shown = h if len(h) <= 12 else [*h[:12], f"... ({len(h)} columns)"]
    accepted = "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items())
    raise TraceFormatError(
        f"{src.path}: unknown trace layout; columns found: {shown}. Accepted layouts: {accepted}"
    )


@functools.lru_cache(maxsize=8)
def _load_cached(
    path: str, _stamp: tuple[int, int], time_col: str | None, model_col: str | None, strict: bool
) -> Trace:
    src = read_csv_text(path)
    layout = _detect(src, time_col)
    if layout in ("azure2019_vhive", "azure2019"):
        trace = _load_counts(src, layout, model_col)
    else:
        col = time_col or {"azure2021": "end_timestamp", "azure_llm_2023": "TIMESTAMP"}[layout]
        trace = _load_requests(src, layout, col, model_col, strict)
    for arr in (trace.counts, trace.times_s, trace.function_index):
        if arr is not None:
            arr.flags.writeable = False
    return trace


def load_trace(
    path: str | os.PathLike[str],
    *,
    time_col: str | None = None,
    model_col: str | None = None,
    strict_order: bool = False,
) -> Trace:
    """Load a trace file (plain or gzip), detecting its layout from the header.

    Args:
        path: A CSV file (``.gz`` read transparently), or a shipped trace name (``"azure2019"``,
            ``"azure_llm_2023"``) when no file of that name exists.
        time_col: Column of request times; forces the generic ``timestamps`` layout. Values are
            numbers of seconds or datetime strings (see the module docstring for the re-basing).
        model_col: Column whose distinct values become the trace's functions (order of first
            appearance). For per-minute layouts it must be an id column (e.g. ``HashApp``) and the
            counts of equal values are summed.
        strict_order: Reject (instead of sort) per-request files whose times are out of order.
            By default such files are sorted (stable) and ``Trace.was_sorted`` is False.

    Returns:
        The :class:`Trace`; its arrays are read-only. Loads are cached by path, size and mtime.

    Raises:
        FileNotFoundError: No such file (and not a shipped name).
        TraceFormatError: Unknown layout, bad values (row, line and column named), unknown
            column names, empty traces. Every message names the file.
    """
    p = Path(os.fspath(path))
    if not p.exists() and str(path) in SHIPPED:
        p = shipped_trace_path(str(path))
    if not p.is_file():
        raise FileNotFoundError(f"trace file not found: '{os.fspath(path)}'")
    st = p.stat()
    trace = _load_cached(str(p), (st.st_size, st.st_mtime_ns), time_col, model_col, strict_order)
    if trace.out_of_order:
        warnings.warn(
            f"{trace.path}: {trace.out_of_order} of {trace.total_requests} request times "
            f"(column '{trace.time_col}') are earlier than the row before; the trace was sorted "
            "(stable) before replay (strict_order=True rejects such files)",
            TraceOrderWarning,
            stacklevel=2,
        )
    return trace
