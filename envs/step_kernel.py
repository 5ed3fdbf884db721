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

import numpy as np
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
        active: int64[K] (out) the first ``n_active`` entries: the slots (ascending) with a
            valid choice that does something.

    Returns:
        ``(bad, n_active)``: ``bad`` is ``-1 - i`` if entry ``i`` is outside ``[0, nvec[i])``,
        else the number of invalid (masked) entries; ``n_active`` counts the active slots.
    """
    n = a.shape[0]
    for i in range(n):
        if a[i] < 0 or a[i] >= nvec[i]:
            return -1 - i, 0
    bad = 0
    n_active = 0
    for i in range(n):
        c = mask_cols[i] + a[i]
        ok[i] = mask[c]
        if not mask[c]:
            bad += 1
        elif active_cols[c]:
            k = i // 4
            if n_active == 0 or active[n_active - 1] != k:
                active[n_active] = k
                n_active += 1
    return bad, n_active


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
    struct_feats,  # float32[M, 4] features 8-11 (fill_structure)
    cluster,  # float64[5] the cluster features, written after the model slots
):
    """Write features 1-11 of each model (rates, queue, oldest wait, warm idle, warm busy, and
    the placement-state features given), the cluster features given, and the request totals
    (``Simulator.request_counts`` without its numpy calls)."""
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
        for i in range(4):
            out[b + 8 + i] = struct_feats[m, i]
        n_arr += a - offsets[m]
        n_srv += served[m]
        n_drop += dropped[m]
        n_late += late[m]
    totals[0] = n_arr
    totals[1] = n_srv
    totals[2] = n_drop
    totals[3] = n_late
    totals[4] = n_in
    n = out.shape[0] - cluster.shape[0]
    for i in range(cluster.shape[0]):
        out[n + i] = cluster[i]


@njit(cache=True, nogil=True)
def fill_structure(
    mask,  # bool[K * block] (out) rows of real models overwritten; padding rows left as they are
    block,  # choices per model slot: scale deltas, rules + hosts, 2 sources, 4 cache choices
    feats,  # float32[M, 4] (out) loading / G, copies / H, pinned copies / H, load time / 60 s
    cluster,  # float64[5] (out) [0] free GPUs / G, [1] free cache / cache capacity
    deltas,  # int64[nd] scale deltas
    n_rules,  # placement rules before the per-host choices
    free,  # int64[H] free GPUs per host
    size_ok,  # bool[M, H] the model's weights fit the host's GPUs
    n_loading,  # int64[M]
    n_serving,  # int64[M]
    mem,  # int64[H, 3, M] memory caches: present, pinned, readers (envs.sim.cache.ModelCache)
    mem_used,  # float64[H]
    mem_cap,  # float64[H]
    disk,  # int64[H, 3, M] disk caches
    pending,  # int64[M, H] prefetches on their way
    out_transfers,  # int64[H] remote-memory reads each host is serving
    sizes,  # float64[M]
    t_local,  # float64[M, H] Simulator.load_time_tables()
    t_remote,  # float64[M, H, H + 1]
    t_disk,  # float64[M, H]
    t_cloud,  # float64[M, H]
    host_cache,  # bool
    remote_pool,  # bool
    n_gpu,  # GPUs in the cluster
):
    """Masks and placement-state features of every real model (what ``_refresh_structure``
    caches against ``Simulator.version``)."""
    M = feats.shape[0]
    H = free.shape[0]
    nd = deltas.shape[0]
    # Room per host: free memory plus unpinned, unread copies (ModelCache.room_gb).
    room = np.empty(H)
    for h in range(H):
        r = mem_cap[h] - mem_used[h]
        for k in range(M):
            if mem[h, 0, k] == 1 and mem[h, 1, k] == 0 and mem[h, 2, k] == 0:
                r += sizes[k]
        room[h] = r
    for m in range(M):
        b = m * block
        any_fit = False
        for h in range(H):
            fit = free[h] > 0 and size_ok[m, h]
            mask[b + nd + n_rules + h] = fit
            any_fit = any_fit or fit
        has_inst = n_loading[m] + n_serving[m] > 0
        for i in range(nd):
            d = deltas[i]
            mask[b + i] = d == 0 or (d > 0 and any_fit) or (d < 0 and has_inst)
        for i in range(n_rules):
            mask[b + nd + i] = True
        c = b + nd + n_rules + H
        mask[c] = True  # sources
        mask[c + 1] = True
        mask[c + 2] = True  # cache: release, hold, keep
        mask[c + 3] = True
        mask[c + 4] = True
        can_prefetch = False
        if host_cache:
            for h in range(H):
                if mem[h, 0, m] == 0 and pending[m, h] == 0 and sizes[m] <= room[h] + 1e-9:
                    can_prefetch = True
                    break
        mask[c + 5] = can_prefetch
        # Copies and the best source's uncontended load time (the env's _best_load_s).
        n_hold = 0
        n_pin = 0
        first = -1
        free_holder = False
        other = -1
        for h in range(H):
            if mem[h, 0, m] == 1:
                n_hold += 1
                n_pin += mem[h, 1, m]
                if first < 0:
                    first = h
                if free[h] > 0:
                    free_holder = True
            elif other < 0:
                other = h
        load = -1.0
        if host_cache and n_hold > 0:
            if free_holder:
                load = t_local[m, first]
            elif remote_pool and H > 1:
                if other < 0:
                    other = first
                # Simulator._remote_holder: the other holder serving the fewest remote reads.
                src = H  # none
                for r in range(H):
                    if r != other and mem[r, 0, m] == 1:
                        if src == H or out_transfers[r] < out_transfers[src]:
                            src = r
                load = t_remote[m, other, src]
        if load < 0.0 and host_cache:
            for h in range(H):
                if disk[h, 0, m] == 1:
                    load = t_disk[m, h]
                    break
        if load < 0.0:
            load = t_cloud[m, 0]
        feats[m, 0] = n_loading[m] / n_gpu
        feats[m, 1] = n_hold / H
        feats[m, 2] = n_pin / H
        feats[m, 3] = min(load / 60.0, 5.0)
    total_free = 0
    for h in range(H):
        total_free += free[h]
    cluster[0] = total_free / n_gpu
    cap = 0.0
    free_mem = 0.0
    for h in range(H):
        cap += mem_cap[h]
        free_mem += mem_cap[h] - mem_used[h]
    cluster[1] = free_mem / cap if cap > 0 else 0.0
