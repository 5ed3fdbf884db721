"""Compiled per-interval bookkeeping of :class:`envs.env.ServerlessGPUEnv`.

The demand features of the observation (:func:`demand_features`) are computed once per
interval for every model, a model's placement-state features (:func:`model_row`) in one call
when the placement state has moved (:class:`envs.observe.Observer`).

The request counts of ``info`` are taken over the requests that arrived in the measured window
(:meth:`envs.sim.Simulator.open_window`), from the simulator's per-request arrays; as numpy it
would be several array passes per interval.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .sim.cache import PINNED, PRESENT
from .sim.kernel import DROPPED, PENDING
from .sim.sourcing import best_load

PAIRWISE_BLOCK = 128  # numpy's pairwise summation adds blocks up to this long with 8 sums


@njit(cache=True, nogil=True)
def pairwise_sum(a):
    """``a.sum()`` of a 1-D float array of at most ``PAIRWISE_BLOCK`` entries, as numpy adds it
    (8 interleaved accumulators from 8 entries on), so a compiled total is the same float
    numpy's is. (numpy splits longer arrays in halves: not done here.)"""
    n = a.shape[0]
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    while i + 8 <= n:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for j in range(i, n):
        res += a[j]
    return res


@njit(cache=True, nogil=True)
def window_counts(status, finish, window_first, arrived, now, out, upto, final, late, late_s,
                  dropped, totals):  # fmt: skip
    """``out[:] = arrived, completed, dropped, pending`` (queued + in service) over the window's
    requests: model ``m``'s are ``[window_first[m], arrived[m])``; and the reward's running
    totals over every model: ``totals[:] = late.sum(), late_s.sum(), dropped.sum()`` (the same
    floats numpy's sums give: :func:`pairwise_sum`; ``nan`` for ``late_s`` past its length).

    Incremental (``now`` must not decrease between calls): a request dropped, or served and
    finished by ``now``, stays so. ``upto[m]`` (in/out, ``window_first`` at the window's start)
    is model ``m``'s first request not yet known to be final; ``final`` (in/out, zeros at the
    start) counts the completed and dropped ones before it. Only the rest is scanned."""
    n_arr = n_done = n_drop = 0
    f_done, f_drop = final[0], final[1]
    for m in range(arrived.shape[0]):
        i = upto[m]
        while i < arrived[m]:  # the final prefix grows
            s = status[i]
            if s == DROPPED:
                f_drop += 1
            elif s != PENDING and finish[i] <= now:
                f_done += 1
            else:
                break
            i += 1
        upto[m] = i
        for j in range(i, arrived[m]):
            s = status[j]
            if s == DROPPED:
                n_drop += 1
            elif s != PENDING and finish[j] <= now:
                n_done += 1
        n_arr += arrived[m] - window_first[m]
    final[0] = f_done
    final[1] = f_drop
    out[0] = n_arr
    out[1] = f_done + n_done
    out[2] = f_drop + n_drop
    out[3] = n_arr - out[1] - out[2]
    n_late = n_dropped = 0
    for m in range(late.shape[0]):
        n_late += late[m]
        n_dropped += dropped[m]
    totals[0] = n_late
    totals[1] = pairwise_sum(late_s) if late_s.shape[0] <= PAIRWISE_BLOCK else np.nan
    totals[2] = n_dropped


@njit(cache=True, nogil=True)
def demand_features(mat, cols, rates, arrived, head, offsets, arrivals, now, slo, idle, hi,
                    clock_cols, clock):  # fmt: skip
    """Fill every model's demand columns of ``mat`` (``(M, N_OBS)``) for the interval that
    starts at ``now``: ``cols`` = the indices of rate_step, rate_1min, rate_10min, queue,
    oldest_wait, since_last, then the columns of ``idle`` (``ModelStats.idle_features``, in
    ``envs.stats.IDLE_FEATURES``' order); and the cluster columns ``clock_cols`` (time of day,
    progress) of every row from ``clock``. Simulated time stands still within an interval, so
    these hold for all of its steps."""
    for m in range(mat.shape[0]):
        for j in range(clock_cols.shape[0]):
            mat[m, clock_cols[j]] = clock[j]
        for j in range(3):
            mat[m, cols[j]] = min(math.log1p(rates[j, m]), hi)
        q = arrived[m] - head[m]
        mat[m, cols[3]] = min(math.log1p(q), hi)
        wait = now - arrivals[head[m]] if q > 0 else 0.0
        mat[m, cols[4]] = min(wait / slo[m], 10.0) / 10.0
        since = now - arrivals[arrived[m] - 1] if arrived[m] > offsets[m] else now
        mat[m, cols[5]] = min(math.log1p(since), hi)
        for j in range(idle.shape[1]):
            mat[m, cols[6 + j]] = idle[m, j]


@njit(cache=True, nogil=True)
def state_features(row, c0, m, slot_on, slot_free, now, n_gpu, n_loading, mem_state, n_hosts):
    """``row[c0 : c0 + 5]`` = model ``m``'s warm idle, warm busy and loading instances / GPUs,
    and the hosts holding it in memory, and pinned there, / hosts (``Simulator.counts`` and
    ``mem_state``'s PRESENT and PINNED planes, ``envs.sim.cache``)."""
    idle = busy = 0
    for g in range(n_gpu):
        if slot_on[m, g] == 1:
            if slot_free[m, g] > now:
                busy += 1
            else:
                idle += 1
    held = pinned = 0
    for h in range(mem_state.shape[0]):
        held += mem_state[h, PRESENT, m]
        pinned += mem_state[h, PINNED, m]
    row[c0] = idle / n_gpu
    row[c0 + 1] = busy / n_gpu
    row[c0 + 2] = n_loading[m] / n_gpu
    row[c0 + 3] = held / n_hosts
    row[c0 + 4] = pinned / n_hosts


@njit(cache=True, nogil=True)
def model_row(mat, m, cols, cluster, now, n_gpu, cache_cap, rule, cloud, slot_on, slot_free,
              n_loading, mem_used, free, fits, mem, disk, has_disk, host_cache, pool,
              cloud_only, out_transfers, hp, mp, sp, stripes):  # fmt: skip
    """Model ``m``'s placement-state features in ``mat[m]`` (``(M, N_OBS)``), in one call:
    :func:`state_features` at ``cols[0]``, the load time (``Simulator.best_load_s`` / 60 s,
    clipped to 5) at ``cols[1]``, the one-hot of placement rule ``rule`` over ``cols[3]``
    columns from ``cols[2]`` and the ``cloud`` source flag after them; with ``cluster``, also
    every row's free GPUs (``cols[4]``) and free pool memory (``cols[5]``) shares. The
    arguments from ``free`` on are ``Simulator.best_load_args()``."""
    if cluster:
        n_free = 0
        for h in range(free.shape[0]):
            n_free += free[h]
        used = 0.0
        for h in range(mem_used.shape[0]):
            used += mem_used[h]
        share = (cache_cap - used) / cache_cap if cache_cap > 0 else 0.0
        for i in range(mat.shape[0]):
            mat[i, cols[4]] = n_free / n_gpu
            mat[i, cols[5]] = share
    row = mat[m]
    state_features(row, cols[0], m, slot_on, slot_free, now, n_gpu, n_loading, mem,
                   mem.shape[0])  # fmt: skip
    t = best_load(m, free, fits[m], mem, disk, has_disk, host_cache, pool, cloud_only or cloud,
                  out_transfers, hp, mp, sp, stripes)  # fmt: skip
    row[cols[1]] = min(t / 60.0, 5.0)
    for i in range(cols[3]):
        row[cols[2] + i] = 1.0 if i == rule else 0.0
    row[cols[2] + cols[3]] = 1.0 if cloud else 0.0


@njit(cache=True, nogil=True)
def free_gpu_fits(fits, free_per_host, m):
    """Whether a host whose GPUs fit model ``m`` (``fits[m, h]``) has a free GPU."""
    for h in range(free_per_host.shape[0]):
        if fits[m, h] and free_per_host[h] > 0:
            return True
    return False
