"""Calling a compiled kernel without numba's per-call type dispatch.

A numba dispatcher types every argument on every call before it runs the machine code compiled
for those types (``python -m benchmarks.step_parts``: a call of the observation's 26-argument
row kernel takes 2.0 us through the dispatcher, 1.2 us through its entry point). The hot kernels of the env's step take arguments of the same types on every
call (arrays allocated by the simulator with fixed dtypes, scalars of fixed kinds), so their
owners bind the compiled entry point once (:func:`bind`) and call it directly: the same machine
code, the same results, without the typing.

A bound entry point trusts its caller: every call must pass arguments of the types it was bound
with (arrays of the same dtype, dimensions and layout; a float or an int where a float was
bound; an int where an int was bound: a float there is truncated, not refused). Entry points do
not pickle: :class:`BoundKernels` drops them (attributes named ``_k_*``) and binds them again
when unpickled or deep-copied. With ``NUMBA_DISABLE_JIT=1`` :func:`bind` returns the plain
Python function.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher

PREFIX = "_k_"  # attributes holding bound entry points
_BOUND: dict = {}  # (kernel, argument keys) -> entry point: numba.typeof is slow (~5 us)


_FLAGS = 0x1 | 0x2 | 0x100 | 0x400  # C- and F-contiguous, aligned, writeable (numpy's bits)


def _key(a):
    """What numba's type of ``a`` depends on, cheaply: an array's dtype (byte order included),
    dimensions, layout, alignment and writeability; a scalar's Python type; else the value's
    numba type."""
    if type(a) is np.ndarray:
        return (a.dtype, a.ndim, a.flags.num & _FLAGS)
    if type(a) in (int, float, bool):
        return type(a)
    return numba.typeof(a)


def bind(kernel, *args):
    """``kernel``'s compiled entry point for the types of ``args`` (compiled, or loaded from
    numba's cache, if not yet), or ``kernel`` itself when it is not a numba dispatcher."""
    if not isinstance(kernel, Dispatcher):
        return kernel
    key = (kernel, tuple(_key(a) for a in args))
    ep = _BOUND.get(key)
    if ep is None:
        ep = _BOUND[key] = kernel.compile(tuple(numba.typeof(a) for a in args))
    return ep


class BoundKernels:
    """Mixin for an owner of bound entry points (attributes ``_k_*``, set by its
    ``_bind_kernels()``): pickles and deep-copies without them, binds them again after."""

    def _bind_kernels(self) -> None:
        raise NotImplementedError

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith(PREFIX)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_kernels()
