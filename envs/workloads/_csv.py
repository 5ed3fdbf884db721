"""Low-level CSV helpers for the trace loader: reading (gzip-transparent), numbers, datetimes.

Every error raised here is a :class:`TraceFormatError` (or ``FileNotFoundError``) naming the file,
and, for bad values, the data row (1-based, header excluded), the file line and the column.
"""

from __future__ import annotations

import csv
import datetime as _dt
import gzip
import math
import re
import zlib
from pathlib import Path

import numpy as np

__all__ = ["TraceFormatError", "CsvText", "parse_datetimes", "parse_floats", "read_csv_text"]

_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_DATETIME = re.compile(
    r"\s*(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*"
)


class TraceFormatError(ValueError):
    """A trace file that exists but cannot be read as any accepted layout."""


class CsvText:
    """A CSV file split into a header and its non-blank data lines.

    Attributes:
        path: The file, as given (for messages).
        header: Column names, stripped of whitespace and quotes.
        lines: Non-blank data lines, in file order.
        line_numbers: 1-based file line of each data line.
    """

    def __init__(self, path: str, header: list[str], lines: list[str], line_numbers: list[int]):
        self.path = path
        self.header = header
        self.lines = lines
        self.line_numbers = line_numbers

    def where(self, row: int) -> str:
        """Human description of 0-based data row ``row``: ``row 3 (line 4)``."""
        return f"row {row + 1} (line {self.line_numbers[row]})"

    def column(self, name: str, what: str) -> int:
        """Index of column ``name``; error listing the available columns if absent."""
        if name not in self.header:
            raise TraceFormatError(
                f"{self.path}: {what}={name!r} is not a column of this file; "
                f"available columns: {self.header}"
            )
        return self.header.index(name)

    def records(self) -> list[list[str]]:
        """All data lines parsed by the csv module, each checked to have the header's width."""
        rows = list(csv.reader(self.lines))
        width = len(self.header)
        for i, r in enumerate(rows):
            if len(r) != width:
                raise TraceFormatError(
                    f"{self.path}: {self.where(i)} has {len(r)} fields, the header has {width}"
                )
        return rows


def read_csv_text(path: str | Path) -> CsvText:
    """Read a (possibly gzip-compressed) CSV file into a :class:`CsvText`.

    Gzip is detected from the file's magic bytes, not its name.

    Raises:
        FileNotFoundError: The file does not exist (message names the path).
        TraceFormatError: The file cannot be decoded or has no header.
    """
    p = Path(path)
    name = str(path)
    if not p.is_file():
        raise FileNotFoundError(f"trace file not found: '{name}'")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise TraceFormatError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt deflate stream
            raise TraceFormatError(f"{name}: corrupt gzip data ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"{name}: not a UTF-8 text CSV file ({exc})") from exc
    all_lines = text.splitlines()
    first = next((i for i, line in enumerate(all_lines) if line.strip()), None)
    if first is None:
        raise TraceFormatError(f"{name}: empty trace file (no header and no rows)")
    header = [h.strip().strip('"').strip() for h in next(csv.reader([all_lines[first]]))]
    lines, numbers = [], []
    for i in range(first + 1, len(all_lines)):
        if all_lines[i].strip():
            lines.append(all_lines[i])
            numbers.append(i + 1)
    return CsvText(name, header, lines, numbers)


def _first_bad_float(values: list[str]) -> int:
    for i, v in enumerate(values):
        try:
            if math.isfinite(float(v)):
                continue
        except ValueError:
            pass
        return i
    return 0


def parse_floats(src: CsvText, values: list[str], column: str) -> np.ndarray:
    """Parse one column of numbers; error naming the first bad row and the column."""
    try:
        out = np.array(values, dtype=np.float64)
    except ValueError:
        row = _first_bad_float(values)
    else:
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size == 0:
            return out
        row = int(bad[0])
    raise TraceFormatError(
        f"{src.path}: {src.where(row)}, column '{column}': {values[row]!r} is not a finite number"
    )


def _match_datetime(s: str) -> int | None:
    """Nanoseconds since 1970-01-01 (UTC if an offset is given) of an ISO-like datetime string."""
    m = _DATETIME.fullmatch(s)
    if m is None:
        return None
    y, mo, d, h, mi, sec, frac, tz = m.groups()
    try:
        days = _dt.date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    hh, mm, ss = int(h), int(mi), int(sec or 0)
    if hh > 23 or mm > 59 or ss > 60:
        return None
    ns = ((days * 24 + hh) * 60 + mm) * 60 + ss
    ns = ns * 1_000_000_000 + (int(frac[:9].ljust(9, "0")) if frac else 0)
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        ns -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * 1_000_000_000
    return ns


def parse_datetimes(src: CsvText, values: list[str], column: str) -> np.ndarray:
    """Parse datetime strings to int64 nanoseconds since the Unix epoch.

    Accepted: ``YYYY-MM-DD[ T]HH:MM[:SS[.fraction]]`` with any number of fractional digits (the
    first 9 are kept, i.e. nanoseconds; the Azure LLM trace has 7) and an optional ``Z`` or
    ``+HH:MM`` offset (converted to UTC). Naive strings are taken as they are (no time zone).
    """
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        ns = _match_datetime(v)
        if ns is None:
            raise TraceFormatError(
                f"{src.path}: {src.where(i)}, column '{column}': {v!r} is neither a number of "
                "seconds nor a datetime like '2023-11-16 18:17:03.9799600'"
            )
        out[i] = ns
    return out


def looks_numeric(value: str) -> bool:
    """True if ``value`` parses as a float."""
    try:
        float(value)
    except ValueError:
        return False
    return True
