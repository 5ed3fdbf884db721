"""Workload generators: synthetic arrival processes and real-trace replay.

Every generator implements :class:`WorkloadGenerator`: ``gen(rng, n_models, duration_s,
start_s=0.0) -> Workload``, drawing all randomness from the injected ``numpy.random.Generator``.
Scenario files build them with :func:`make_workload`.
"""

from envs.workloads.base import WorkloadGenerator
from envs.workloads.factory import KINDS, make_workload
from envs.workloads.synthetic import (
    BurstyWorkload,
    ComposeWorkload,
    DiurnalWorkload,
    FlashSpikeWorkload,
    MMPPWorkload,
    PoissonWorkload,
    Popularity,
)
from envs.workloads.traces import (
    LAYOUTS,
    MAPPINGS,
    SUBMINUTE,
    Trace,
    TraceFormatError,
    TraceOrderWarning,
    TraceWorkload,
    function_to_model,
    load_trace,
    shipped_trace_path,
    split_windows,
)

__all__ = [
    "KINDS",
    "LAYOUTS",
    "MAPPINGS",
    "SUBMINUTE",
    "BurstyWorkload",
    "ComposeWorkload",
    "DiurnalWorkload",
    "FlashSpikeWorkload",
    "MMPPWorkload",
    "PoissonWorkload",
    "Popularity",
    "Trace",
    "TraceFormatError",
    "TraceOrderWarning",
    "TraceWorkload",
    "WorkloadGenerator",
    "function_to_model",
    "load_trace",
    "make_workload",
    "shipped_trace_path",
    "split_windows",
]
