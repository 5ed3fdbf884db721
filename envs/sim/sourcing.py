"""The sourcing rules, written once and compiled: where a cold start of a model loads from.

The simulator's control path (``Simulator.default_source``, ``choose_host("locality")``,
``best_load_s``) and the env's observation call these same functions, so the rule a policy
sees in its features is the rule the platform applies (numba: the env asks them every step).

Tiers are indices into :data:`envs.sim.config.TIERS`. The state they read is the simulator's
array mirror of the caches: ``mem`` and ``disk`` are ``int64[H, 3, M]`` (rows present, pinned,
readers: :class:`envs.sim.cache.ModelCache`).

Hierarchical sourcing (San Juan & Wong 2023): the target host's memory, then another host's
memory through the remote pool (the holder serving the fewest remote reads), then the local
disk, then cloud storage. ``cloud_only`` (``features.sourcing: cloud``) always answers cloud.
"""

from __future__ import annotations

import math

from numba import njit

LOCAL_MEM, REMOTE_MEM, DISK, CLOUD = range(4)  # == TIERS.index(...)


@njit(cache=True, nogil=True)
def remote_holder(m, h, mem, out_transfers):
    """Another host holding ``m`` in memory, the one serving the fewest remote reads (ties:
    the lowest index); -1 if none."""
    best = -1
    for r in range(mem.shape[0]):
        if r != h and mem[r, 0, m] == 1 and (best < 0 or out_transfers[r] < out_transfers[best]):
            best = r
    return best


@njit(cache=True, nogil=True)
def nearest_tier(m, h, mem, disk, has_disk, host_cache, remote_pool, cloud_only):
    """The tier a cold start of ``m`` on host ``h`` loads from under the sourcing rule."""
    if cloud_only or not host_cache:
        return CLOUD
    if mem[h, 0, m] == 1:
        return LOCAL_MEM
    if remote_pool:
        for r in range(mem.shape[0]):
            if r != h and mem[r, 0, m] == 1:
                return REMOTE_MEM
    if has_disk[h] and disk[h, 0, m] == 1:
        return DISK
    return CLOUD


@njit(cache=True, nogil=True)
def locality_host(m, free, fits, mem, disk, has_disk, host_cache, remote_pool, cloud_only):
    """Locality-aware placement: among hosts with a free GPU that fits ``m``, the one whose
    nearest copy is the best tier, then the most free GPUs, then the lowest index; -1 if none."""
    best = -1
    best_tier = 99
    for h in range(free.shape[0]):
        if free[h] > 0 and fits[h]:
            t = nearest_tier(m, h, mem, disk, has_disk, host_cache, remote_pool, cloud_only)
            if best < 0 or t < best_tier or (t == best_tier and free[h] > free[best]):
                best, best_tier = h, t
    return best


@njit(cache=True, nogil=True)
def load_estimate(m, h, tier, mem, out_transfers, t_local, t_remote, t_disk, t_cloud):
    """Uncontended cold-start time of ``m`` on ``h`` from ``tier``, from the simulator's tables
    (``Simulator.load_time_tables``; a remote load is sent by :func:`remote_holder`'s host)."""
    if tier == LOCAL_MEM:
        return t_local[m, h]
    if tier == REMOTE_MEM:
        r = remote_holder(m, h, mem, out_transfers)
        return t_remote[m, h, r if r >= 0 else mem.shape[0]]
    if tier == DISK:
        return t_disk[m, h]
    return t_cloud[m, h]


@njit(cache=True, nogil=True)
def best_load(m, free, fits, mem, disk, has_disk, host_cache, remote_pool, cloud_only,
              out_transfers, t_local, t_remote, t_disk, t_cloud):  # fmt: skip
    """Uncontended cold-start time of ``m`` where locality placement would put it now (from the
    tier the sourcing rule picks there); with no free GPU that fits, the best over every host
    that fits; inf if none fits."""
    h = locality_host(m, free, fits, mem, disk, has_disk, host_cache, remote_pool, cloud_only)
    if h >= 0:
        t = nearest_tier(m, h, mem, disk, has_disk, host_cache, remote_pool, cloud_only)
        return load_estimate(m, h, t, mem, out_transfers, t_local, t_remote, t_disk, t_cloud)
    best = math.inf
    for h in range(free.shape[0]):
        if fits[h]:
            t = nearest_tier(m, h, mem, disk, has_disk, host_cache, remote_pool, cloud_only)
            x = load_estimate(m, h, t, mem, out_transfers, t_local, t_remote, t_disk, t_cloud)
            best = min(best, x)
    return best
