"""What the command-line tools (``train.py``, ``evaluate.py``, the study, the benchmarks) share
about bad input.

Bad input is one line on stderr and exit status 2, found before anything is computed or
written: :class:`OneLineParser` turns argparse's usage block into a :class:`UsageError`, and the
checks here look at output paths and devices up front, so that a run never fails at its end
for a reason its start could have seen. Only the standard library is imported at module level
(``evaluate.py --help`` stays fast).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = [
    "ExitingParser",
    "OneLineParser",
    "UsageError",
    "check_device",
    "check_output",
    "one_line",
]


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def one_line(msg: object) -> str:
    """``msg`` with every run of whitespace (newlines included) folded into one space."""
    return " ".join(str(msg).split()) or type(msg).__name__


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise :class:`UsageError` (one line, no usage
    block); ``--help`` still prints and exits 0."""

    def error(self, message: str):
        raise UsageError(message)


class ExitingParser(argparse.ArgumentParser):
    """For a command with no cleanup to do (a benchmark): its errors, argparse's and its own
    ``p.error(...)``, print ``"<label>: error: <message>"`` as one line on stderr and exit 2.
    ``label`` defaults to ``prog``."""

    def __init__(self, *args, label: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.label = label or self.prog

    def error(self, message: str):
        print(f"{self.label}: error: {one_line(message)}", file=sys.stderr)
        raise SystemExit(2)


def check_output(path: str | os.PathLike, flag: str, *, folder: bool) -> Path:
    """Check, before any work, that ``path`` can be written: a file (``folder=False``) or a
    folder to create or fill (``folder=True``). Creates nothing.

    Raises:
        UsageError: ``path`` is the wrong kind of thing, lies under a file, or its nearest
            existing folder is not writable (the message names ``flag``, the path and why).
    """
    p = Path(path)
    if p.exists():
        if folder and not p.is_dir():
            raise UsageError(f"{flag} {str(path)!r}: exists and is not a folder")
        if not folder and p.is_dir():
            raise UsageError(f"{flag} {str(path)!r}: is a folder, expected a file path")
        target = p if folder else p.parent
    else:
        target = p.parent
        while not target.exists() and target != target.parent:
            target = target.parent
    if not target.is_dir():
        raise UsageError(f"{flag} {str(path)!r}: {str(target)!r} is a file, not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {str(path)!r}: folder {str(target)!r} is not writable")
    return p


def check_device(device: str, flag: str = "--device") -> str:
    """``device`` if torch can use it here (``cpu``, ``auto``, ``cuda[:i]``, ``mps``).

    Raises:
        UsageError: Not a torch device name, or that device is absent on this machine.
    """
    if device in ("cpu", "auto"):
        return device
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise UsageError(f"{flag} {device!r}: not a torch device ({one_line(e)})") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UsageError(f"{flag} {device!r}: torch sees no CUDA GPU on this machine; use cpu")
        if dev.index is not None and dev.index >= n:
            raise UsageError(
                f"{flag} {device!r}: torch sees {n} CUDA GPU(s) here, cuda:0..cuda:{n - 1}"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"{flag} {device!r}: MPS is not available on this machine; use cpu")
    elif dev.type != "cpu":
        raise UsageError(f"{flag} {device!r}: expected cpu, auto, cuda, cuda:<index> or mps")
    return device
