"""Compiled per-interval bookkeeping of :class:`envs.env.ServerlessGPUEnv`.

The request counts of ``info`` are taken over the requests that arrived in the measured window
(:meth:`envs.sim.Simulator.open_window`), from the simulator's per-request arrays; as numpy it
would be several array passes per interval.
"""

from __future__ import annotations

from numba import njit

from .sim.kernel import DROPPED, PENDING


@njit(cache=True, nogil=True)
def window_counts(status, finish, window_first, arrived, now, out):
    """``out[:] = arrived, completed, dropped, pending`` (queued + in service) over the window's
    requests: model ``m``'s are ``[window_first[m], arrived[m])``."""
    n_arr = n_done = n_drop = 0
    for m in range(arrived.shape[0]):
        for i in range(window_first[m], arrived[m]):
            n_arr += 1
            s = status[i]
            if s == DROPPED:
                n_drop += 1
            elif s != PENDING and finish[i] <= now:
                n_done += 1
    out[0] = n_arr
    out[1] = n_done
    out[2] = n_drop
    out[3] = n_arr - n_done - n_drop
