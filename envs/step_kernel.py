"""The per-step bookkeeping of :class:`envs.env.ServerlessGPUEnv`, compiled.

The env splits its work per step into what depends on placement state only (masks, instances
loading, memory copies, the best source's load time, free GPUs and cache), which it caches
against :attr:`envs.sim.Simulator.version`, and what has to be recomputed every step: the
action's validity, and the observation's features that move with time (arrival rates, queues,
oldest waits, busy and idle instances) with the request totals of ``info`` and the reward. This
module does the second part in two compiled calls; as numpy it was ~30 small-array calls a step,
more than the rest of the step (``python -m benchmarks.env_step`` measures it).
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True, nogil=True)
def check_action(a, nvec, mask, mask_cols, active_cols, ok, active):
    """Validate a flat MultiDiscrete action against the mask.

    Args:
        a: int64[4K] the action.
        nvec: int64[4K] choices per entry.
        mask: bool[K * block] the flat action mask.
        mask_cols: int64[4K] column of choice 0 of each entry in ``mask``.
        active_cols: bool[K * block] choices that do something (a non-zero scale delta, a
            cache choice other than ``hold``).
        ok: bool[4K] (out) each entry's choice is valid.
        active: bool[K] (out) the slot has a valid choice that does something.

    Returns:
        ``-1 - i`` if entry ``i`` is outside ``[0, nvec[i])``, else the number of invalid
        (masked) entries.
    """
    n = a.shape[0]
    for i in range(n):
        if a[i] < 0 or a[i] >= nvec[i]:
            return -1 - i
    bad = 0
    for k in range(active.shape[0]):
        active[k] = False
    for i in range(n):
        c = mask_cols[i] + a[i]
        ok[i] = mask[c]
        if not mask[c]:
            bad += 1
        elif active_cols[c]:
            active[i // 4] = True
    return bad


@njit(cache=True, nogil=True)
def fill_dynamic(
    out,  # float32[K * n_feat + n_cluster] (in/out) the observation; model m's block at m*n_feat
    n_feat,  # features per model slot
    now,  # simulated time, s
    step_s,  # control interval, s
    arrivals,  # float64[total] all arrivals (Simulator.arrivals)
    offsets,  # int64[M + 1] model m's requests are arrivals[offsets[m]:offsets[m + 1]]
    arrived,  # int64[M] absolute index one past the last arrived request
    head,  # int64[M] absolute index of the oldest waiting request
    prev_arrived,  # int64[M] (in/out) ``arrived`` at the previous step
    rates,  # float64[3, M] (in/out) last-step rate, 1-min EMA, 10-min EMA (req/s)
    alpha,  # float64[2] EMA weights of the 1- and 10-minute rates
    slo,  # float64[M] SLO, s
    slot_free,  # float64[M, S] time each serving slot is free
    slot_on,  # int8[M, S] 1 for a warm instance's slot
    slot_batch,  # int32[M, S] size of the slot's last batch
    n_gpu,  # GPU slots are [0, n_gpu)
    n_serving,  # int64[M] warm instances
    served,  # int64[M] requests started
    dropped,  # int64[M] requests dropped
    late,  # int64[M] requests started late (latency > SLO)
    high,  # clip value of every feature
    totals,  # int64[5] (out) arrived, started, dropped, late, in service: over all models
):
    """Write features 1-7 (rates, queue, oldest wait, warm idle, warm busy) of each model, and
    the request totals (``Simulator.request_counts`` without its numpy calls)."""
    M = arrived.shape[0]
    S = slot_free.shape[1]
    n_arr = n_srv = n_drop = n_late = n_in = 0
    for m in range(M):
        a = arrived[m]
        r = (a - prev_arrived[m]) / step_s
        prev_arrived[m] = a
        rates[0, m] = r
        rates[1, m] += alpha[0] * (r - rates[1, m])
        rates[2, m] += alpha[1] * (r - rates[2, m])
        h = head[m]
        q = a - h
        wait = now - arrivals[h] if q > 0 else 0.0
        busy = 0
        for s in range(S):
            if slot_free[m, s] > now:
                n_in += slot_batch[m, s]
                if s < n_gpu and slot_on[m, s] == 1:
                    busy += 1
        b = m * n_feat
        out[b + 1] = min(math.log1p(rates[0, m]), high)
        out[b + 2] = min(math.log1p(rates[1, m]), high)
        out[b + 3] = min(math.log1p(rates[2, m]), high)
        out[b + 4] = min(math.log1p(q), high)
        out[b + 5] = min(wait / slo[m], 10.0) / 10.0
        out[b + 6] = (n_serving[m] - busy) / n_gpu
        out[b + 7] = busy / n_gpu
        n_arr += a - offsets[m]
        n_srv += served[m]
        n_drop += dropped[m]
        n_late += late[m]
    totals[0] = n_arr
    totals[1] = n_srv
    totals[2] = n_drop
    totals[3] = n_late
    totals[4] = n_in
