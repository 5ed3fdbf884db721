"""The request-serving kernel: FIFO queues, dispatch, dynamic batching, timeouts.

Between two instance events (an instance becoming warm, a control step, ...) the set of serving
slots of every model is fixed, so serving the requests of that segment is a closed computation.
This kernel does it for all models in one call. It is compiled with numba because it runs once
per request: ``benchmarks/sim_throughput.py`` measures it (the pure-Python loop is several times
below the 500k requests/s target). Set ``NUMBA_DISABLE_JIT=1`` to step through it in Python.

Semantics, per model:

* Requests wait in one FIFO queue (arrival order).
* Dispatch is pull-based: the head of the queue starts at ``s = max(arrival, earliest slot free
  time)`` on the slot that is free at ``s`` with the least outstanding work; among idle slots
  (all with zero outstanding work) the most recently busy one wins, so surplus instances stay
  idle and can be reclaimed by keep-alive (what production platforms do).
* Dynamic batching: the slot takes every queued request that has arrived by ``s``, up to the
  model's ``max_batch``; the batch runs ``gpu_batch1 + (b - 1) * gpu_per_item`` seconds.
  CPU-fallback slots take one request at a time and run ``cpu`` seconds.
* A request whose wait would exceed ``timeout`` is dropped at ``arrival + timeout``.
* Cold-start wait of a request = the part of its wait before the model's current warm period
  began (``warm_since``); the rest of its wait is queueing.
* ``late[m]`` counts the requests of model ``m`` dispatched (GPU or CPU) with an end-to-end
  latency over the model's SLO, when they are dispatched, and ``late_s[m]`` sums by how much
  (latency - SLO); drops are counted in ``dropped``.

Request status codes: 0 = not yet started, 1 = served on a GPU, 2 = dropped, 3 = served on CPU.
"""

from __future__ import annotations

import numpy as np
from numba import njit

PENDING, SERVED_GPU, DROPPED, SERVED_CPU = 0, 1, 2, 3


@njit(cache=True, nogil=True)
def serve_segment(
    t1,
    arrivals,  # float64[total]  all models' arrivals, concatenated
    offsets,  # int64[M + 1]     model m owns arrivals[offsets[m]:offsets[m + 1]]
    head,  # int64[M]  (in/out) absolute index of the oldest request not started nor dropped
    arrived,  # int64[M] (in/out) absolute index one past the last request arrived by t1
    start,  # float64[total] (out) start of service (or drop time)
    finish,  # float64[total] (out) end of service
    cold_wait,  # float32[total] (out)
    status,  # int8[total] (out)
    slot_free,  # float64[M, S] (in/out) time each slot becomes free
    slot_on,  # int8[M, S]  1 = the slot serves this segment (GPU slots first, CPU slots after)
    slot_batch,  # int32[M, S] (out) size of the slot's last batch
    slot_busy,  # float64[M, S] (in/out) accumulated busy seconds
    n_gpu_slots,  # int: slots [0, n_gpu_slots) are GPUs, the rest CPU-fallback workers
    exec1,  # float64[M] batch-1 GPU time, s
    exec_item,  # float64[M] extra GPU time per extra batch member, s
    cpu_exec,  # float64[M] CPU time per request, s
    max_batch,  # int64[M]
    timeout,  # float: longest wait before a drop, s
    warm_since,  # float64[M] start of the model's current warm period (inf if cold)
    served,  # int64[M] (in/out) requests started
    dropped,  # int64[M] (in/out) requests dropped
    slo,  # float64[M] latency objective, s
    late,  # int64[M] (in/out) requests started whose latency will exceed the SLO
    late_s,  # float64[M] (in/out) their total lateness: latency - SLO, summed, s
):
    M = offsets.shape[0] - 1
    S = slot_free.shape[1]
    for m in range(M):
        end = offsets[m + 1]
        h = head[m]
        # Arrivals by t1.
        a_idx = arrived[m]
        while a_idx < end and arrivals[a_idx] <= t1:
            a_idx += 1
        arrived[m] = a_idx
        while h < a_idx:
            a = arrivals[h]
            # Earliest free slot.
            tfree = np.inf
            for s in range(S):
                if slot_on[m, s] == 1 and slot_free[m, s] < tfree:
                    tfree = slot_free[m, s]
            if tfree == np.inf:
                break
            st = tfree if tfree > a else a
            if st >= t1:
                break  # decided in a later segment, whose slots may differ
            if st - a > timeout:
                start[h] = a + timeout
                finish[h] = a + timeout
                status[h] = DROPPED
                dropped[m] += 1
                h += 1
                continue
            # Slot free at st with the latest free time (most recently busy).
            best = -1
            best_free = -np.inf
            for s in range(S):
                if slot_on[m, s] == 1 and slot_free[m, s] <= st and slot_free[m, s] > best_free:
                    best = s
                    best_free = slot_free[m, s]
            if best < n_gpu_slots:
                limit = max_batch[m]
            else:
                limit = 1
            b = 0
            j = h
            while j < a_idx and b < limit and arrivals[j] <= st:
                b += 1
                j += 1
            if best < n_gpu_slots:
                ex = exec1[m] + (b - 1) * exec_item[m]
                code = SERVED_GPU
            else:
                ex = cpu_exec[m]
                code = SERVED_CPU
            fin = st + ex
            ws = warm_since[m]
            for k in range(h, h + b):
                if fin - arrivals[k] > slo[m]:
                    late[m] += 1
                    late_s[m] += fin - arrivals[k] - slo[m]
                start[k] = st
                finish[k] = fin
                status[k] = code
                if code == SERVED_GPU:
                    c = (ws if ws < st else st) - arrivals[k]
                    cold_wait[k] = c if c > 0.0 else 0.0
                else:
                    cold_wait[k] = 0.0
            slot_free[m, best] = fin
            slot_batch[m, best] = b
            slot_busy[m, best] += ex
            served[m] += b
            h += b
        # Requests that can no longer start in time: dropped at arrival + timeout (< t1).
        while h < a_idx and arrivals[h] + timeout < t1:
            # No slot is free before t1 (the loop above stopped), so none could start it in time.
            start[h] = arrivals[h] + timeout
            finish[h] = arrivals[h] + timeout
            status[h] = DROPPED
            dropped[m] += 1
            h += 1
        head[m] = h


@njit(cache=True, nogil=True)
def next_cold_arrival(arrivals, offsets, arrived, n_serving, n_loading):
    """Arrival time of the next request (not yet arrived) of any model with no warm or loading
    instance: where the platform's activator must act (``FeatureSpec.autostart``); inf if none."""
    best = np.inf
    for m in range(offsets.shape[0] - 1):
        if n_serving[m] + n_loading[m] == 0 and arrived[m] < offsets[m + 1]:
            t = arrivals[arrived[m]]
            if t < best:
                best = t
    return best


@njit(cache=True, nogil=True)
def cold_with_queue(n_serving, n_loading, head, arrived, free_per_host):
    """Whether any model has queued requests and no warm or loading instance, while some host
    has a free GPU (the activator has something to do)."""
    if not _any_free(free_per_host):
        return False
    for m in range(head.shape[0]):
        if _cold_queued(m, n_serving, n_loading, head, arrived):
            return True
    return False


@njit(cache=True, nogil=True)
def _any_free(free_per_host):
    """Whether some host has a free GPU."""
    for h in range(free_per_host.shape[0]):
        if free_per_host[h] > 0:
            return True
    return False


@njit(cache=True, nogil=True)
def _cold_queued(m, n_serving, n_loading, head, arrived):
    """Model ``m`` has queued requests and no warm or loading instance."""
    return n_serving[m] + n_loading[m] == 0 and head[m] < arrived[m]


@njit(cache=True, nogil=True)
def cold_queued(n_serving, n_loading, head, arrived, out):
    """The models with queued requests and no warm or loading instance, in order, into
    ``out``; returns how many."""
    n = 0
    for m in range(head.shape[0]):
        if _cold_queued(m, n_serving, n_loading, head, arrived):
            out[n] = m
            n += 1
    return n


@njit(cache=True, nogil=True)
def activator_next(arrivals, offsets, head, arrived, n_serving, n_loading, free_per_host,
                   frees_at_events):  # fmt: skip
    """``-inf`` if the activator has something to do now (:func:`cold_with_queue`), else when
    it next may (:func:`next_cold_arrival`): the event loop's two questions in one call. With
    no free GPU, when a GPU can free only at an event (``frees_at_events``: no keep-alive, no
    draining instance, whose teardowns the loop's passes make), ``inf``: the activator cannot
    act before the next event, so the loop need not stop at the arrivals in between."""
    if cold_with_queue(n_serving, n_loading, head, arrived, free_per_host):
        return -np.inf
    if frees_at_events and not _any_free(free_per_host):
        return np.inf
    return next_cold_arrival(arrivals, offsets, arrived, n_serving, n_loading)


@njit(cache=True, nogil=True)
def has_work(arrivals, offsets, head, arrived, t1):
    """Whether :func:`serve_segment` up to ``t1`` would change anything: some model has a queue,
    or a request arriving by ``t1`` (a cheap call that saves the kernel's dispatch)."""
    for m in range(head.shape[0]):
        if head[m] < arrived[m]:
            return True
        if arrived[m] < offsets[m + 1] and arrivals[arrived[m]] <= t1:
            return True
    return False


@njit(cache=True, nogil=True)
def plan_and_serve(t_ev, t_end, now, frees_at_events, n_serving, n_loading, free_per_host,
                   arrivals, offsets, head, arrived, start, finish, cold_wait, status, slot_free,
                   slot_on, slot_batch, slot_busy, n_gpu_slots, exec1, exec_item, cpu_exec,
                   max_batch, timeout, warm_since, served, dropped, slo, late, late_s):  # fmt: skip
    """One pass of the event loop under the platform's activator, in one call, given its next
    event ``t_ev``: ``t_cold`` = when the activator next may act (:func:`activator_next`);
    ``-inf`` (act now) returns ``(-inf, nan)`` with nothing served. Else the segment ends at
    ``t_seg = min(t_ev, t_cold, t_end)``, served (:func:`serve_segment`, from ``arrivals`` on
    its arguments) when it does not lie before ``now`` and :func:`has_work` says it changes
    something. Returns ``(t_cold, t_seg)``."""
    t_cold = activator_next(arrivals, offsets, head, arrived, n_serving, n_loading,
                            free_per_host, frees_at_events)  # fmt: skip
    if t_cold == -np.inf:
        return t_cold, np.nan
    t_seg = min(t_ev, t_cold, t_end)
    if t_seg >= now and has_work(arrivals, offsets, head, arrived, t_seg):
        serve_segment(t_seg, arrivals, offsets, head, arrived, start, finish, cold_wait, status,
                      slot_free, slot_on, slot_batch, slot_busy, n_gpu_slots, exec1, exec_item,
                      cpu_exec, max_batch, timeout, warm_since, served, dropped, slo, late,
                      late_s)  # fmt: skip
    return t_cold, t_seg
