"""Frozen, validated configuration of a simulated GPU cluster.

Every field is checked on construction; an error names the class, the field, the value and the
allowed range. Units are in the names (``size_gb``, ``pcie_gb_per_s``, ``sandbox_s``). Bandwidths
are in gigabytes (10^9 bytes) per second, not gigabits.

Defaults are grounded in ``shared/calibration.md``; each cites its row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

TIERS = ("local_mem", "remote_mem", "disk", "cloud")
"""Load tiers a cold start can read weights from, nearest first. ``gpu`` (a warm instance) needs
no load and is not a source tier."""

SOURCING_RULES = ("hierarchical", "cloud")
# locality: the host whose nearest copy is the best tier (locality-aware autoscaling, San Juan &
# Wong 2023); least_loaded: most free GPUs; pack: fewest free GPUs; fastest: least estimated time
# to serve, the uncontended load plus the loads already in progress there (ServerlessLLM's
# startup-time-optimised placement, Fu et al. OSDI 2024).
PLACEMENT_RULES = ("locality", "least_loaded", "pack", "fastest")


class ConfigError(ValueError):
    """A configuration value is out of its allowed range."""


class SimError(ValueError):
    """A control call the simulator cannot carry out (no free GPU, tier without a copy, ...)."""


def _check(obj: object, name: str, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(
            f"{type(obj).__name__}.{name} must be {expected}, got {getattr(obj, name)!r}"
        )


def _num(obj: object, name: str, *, lo: float = 0.0, strict: bool = True, allow_none=False):
    v = getattr(obj, name)
    if v is None and allow_none:
        return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if strict else v >= lo)
    _check(obj, name, ok, f"a finite number {'>' if strict else '>='} {lo}")


def _int(obj: object, name: str, *, lo: int = 1) -> None:
    v = getattr(obj, name)
    _check(
        obj, name, isinstance(v, int) and not isinstance(v, bool) and v >= lo, f"an integer >= {lo}"
    )


@dataclass(frozen=True)
class ModelSpec:
    """One deployable model.

    Attributes:
        name: Unique name.
        size_gb: Weights size; also the GPU memory an instance needs.
        gpu_batch1_ms: GPU execution time of a batch of one.
        gpu_per_item_ms: Extra GPU time per additional request in a batch (linear batching model:
            ``t(b) = gpu_batch1_ms + (b - 1) * gpu_per_item_ms``).
        cpu_ms: Execution time of one request on the host CPU (CPU fallback, batch of one).
        max_batch: Largest batch an instance executes.
        slo_s: End-to-end latency objective of one request.
        deserialize_gb_per_s: Rate at which the framework turns weights in host memory into a
            loaded model (the stage that dominated the seed author's measurements).
    """

    name: str
    size_gb: float
    gpu_batch1_ms: float
    gpu_per_item_ms: float
    cpu_ms: float
    max_batch: int
    slo_s: float
    deserialize_gb_per_s: float

    def __post_init__(self) -> None:
        _check(self, "name", isinstance(self.name, str) and bool(self.name), "a non-empty string")
        for f in ("size_gb", "gpu_batch1_ms", "cpu_ms", "slo_s", "deserialize_gb_per_s"):
            _num(self, f)
        _num(self, "gpu_per_item_ms", strict=False)
        _int(self, "max_batch")

    def gpu_exec_s(self, batch: int) -> float:
        """GPU time of a batch of ``batch`` requests, in seconds."""
        return (self.gpu_batch1_ms + (batch - 1) * self.gpu_per_item_ms) / 1000.0


@dataclass(frozen=True)
class HostSpec:
    """A server: GPUs, host memory usable as a model cache, NIC, PCIe links, optional disk.

    Attributes:
        n_gpus: GPUs on the host; each runs at most one instance at a time.
        gpu_mem_gb: Memory of each GPU.
        cache_gb: Host DRAM usable as a model cache (the remote memory pool's share).
        nic_gb_per_s: NIC bandwidth, each direction (full duplex).
        pcie_gb_per_s: Host-to-GPU copy bandwidth of each GPU's own PCIe link.
        disk_gb_per_s: Local NVMe read bandwidth; 0 means no local disk.
        disk_cache_gb: Disk space usable as a model cache (ignored without a disk).
    """

    # Defaults: an AWS g5-class host with A10G GPUs (24 GB), priced in PriceSpec.
    n_gpus: int = 4
    gpu_mem_gb: float = 24.0  # A10G memory; g5.xlarge row of calibration.md (prices).
    cache_gb: float = 64.0  # Assumption: a quarter of a 256 GB host's DRAM lent to the pool.
    # TCP over 10-25 GbE (memcached pool): ~1.1-3 GB/s (calibration.md, derived); 2.5 = 25 GbE
    # minus protocol overhead, the seed author's pool was memcached over TCP.
    nic_gb_per_s: float = 2.5
    # Author's prototype measured ~9-10 GB/s pageable host->GPU (calibration.md, prototype table).
    pcie_gb_per_s: float = 10.0
    # NVMe PCIe 3.0, Intel P4500: 3.2 GB/s (calibration.md). 0 disables the disk tier.
    disk_gb_per_s: float = 3.2
    disk_cache_gb: float = 256.0  # Assumption: a modest share of a 1-4 TB NVMe drive.

    def __post_init__(self) -> None:
        _int(self, "n_gpus")
        for f in ("gpu_mem_gb", "nic_gb_per_s", "pcie_gb_per_s"):
            _num(self, f)
        for f in ("cache_gb", "disk_gb_per_s", "disk_cache_gb"):
            _num(self, f, strict=False)

    @property
    def has_disk(self) -> bool:
        return self.disk_gb_per_s > 0 and self.disk_cache_gb > 0


@dataclass(frozen=True)
class CloudStoreSpec:
    """The cloud object store every model can always be downloaded from.

    A download opens ``streams`` parallel ranged GETs, each capped at ``per_stream_gb_per_s``;
    all downloads share the store's ``egress_gb_per_s`` and each also crosses its host's NIC.
    """

    per_stream_gb_per_s: float = 0.093  # S3 one stream ~93 MB/s (dvassallo/s3-benchmark).
    # One plain GET per model file, as a baseline function's loader does (boto3/torch.hub style);
    # raise it to model parallel ranged GETs (~2.7 GB/s per instance at 25 Gb/s, same source).
    streams: int = 1
    ttfb_s: float = 0.02  # S3 p90 time to first byte ~20 ms (dvassallo/s3-benchmark).
    egress_gb_per_s: float = 12.5  # Assumption: the bucket serves up to 100 Gb/s to the cluster.

    def __post_init__(self) -> None:
        _num(self, "per_stream_gb_per_s")
        _int(self, "streams")
        _num(self, "ttfb_s", strict=False)
        _num(self, "egress_gb_per_s")

    @property
    def per_transfer_gb_per_s(self) -> float:
        return self.per_stream_gb_per_s * self.streams


@dataclass(frozen=True)
class StartupSpec:
    """Cold-start stages before the weights move.

    A cold start runs: sandbox start, runtime (CUDA + framework) initialisation, then the weight
    stages: fetch from the source tier, host-to-GPU copy, deserialisation. With
    ``pipelined=False`` the weight stages run one after another; with ``pipelined=True`` the
    weights move in ``pipeline_chunks`` chunks through all three stages at once, so the weight
    part takes ``max(T_i) + (sum(T_i) - max(T_i)) / pipeline_chunks`` without contention.
    """

    sandbox_s: float = 0.57  # container start on SSD, arXiv 2602.15214 (calibration.md).
    runtime_init_s: float = 4.48  # CUDA context + PyTorch init median, pytorch#22583.
    pipelined: bool = False
    pipeline_chunks: int = 16
    jitter_cv: float = 0.0  # Lognormal noise on sandbox/runtime times; 0 = exact (known answers).

    def __post_init__(self) -> None:
        _num(self, "sandbox_s", strict=False)
        _num(self, "runtime_init_s", strict=False)
        _check(self, "pipelined", isinstance(self.pipelined, bool), "a bool")
        _int(self, "pipeline_chunks")
        _num(self, "jitter_cv", strict=False)


@dataclass(frozen=True)
class PriceSpec:
    """Prices for the cost side of the reward."""

    gpu_usd_per_hour: float = 1.006  # A10G, g5.xlarge us-east-1 (calibration.md prices).
    host_mem_usd_per_gb_hour: float = 0.0044  # AWS Fargate memory price as proxy (calibration.md).
    egress_usd_per_gb: float = 0.0  # In-region S3 to EC2 transfer is free; set >0 to charge.

    def __post_init__(self) -> None:
        for f in ("gpu_usd_per_hour", "host_mem_usd_per_gb_hour", "egress_usd_per_gb"):
            _num(self, f, strict=False)


@dataclass(frozen=True)
class FeatureSpec:
    """Infrastructure features: what the platform offers, independent of the policy.

    Attributes:
        host_cache: Keep fetched models in host memory (and on disk if present).
        remote_pool: Let a host load from another host's memory (remote memory pooling).
        sourcing: ``"hierarchical"`` (local memory, remote memory, disk, cloud) or ``"cloud"``
            (every cold start downloads from cloud storage) when the caller names no tier.
        default_placement: Rule used when the caller names no host (see PLACEMENT_RULES).
        request_timeout_s: A request not started within this wait is dropped (and counted).
        keep_alive_s: Idle instances are torn down after this; ``None`` keeps them until the
            policy scales in.
        cpu_fallback: Serve requests on the host CPU while a model has no warm GPU instance.
        cpu_workers: CPU fallback workers per model.
        autostart: The platform starts an instance as soon as a request arrives for a model
            with none (warm, loading or draining): Knative's activator, AWS Lambda's on-demand
            start. The new instance goes where the model's placement rule says and loads from
            its source rule (``Simulator.set_rules``); with no free GPU that fits, the platform
            tries again whenever a GPU frees up; and a scale-in keeps one instance (warm or
            loading) of a model whose requests wait (``Simulator.removable``: Knative does not
            scale a revision with requests in its activator to zero), so no policy can refuse to
            serve by cancelling the platform's restarts. Off, a model with no instance queues
            until the policy scales it out (the simulator's own tests use that).
        multicast: Loads of one model whose fetch starts at the same instant from the same
            source (the same holder's memory, or cloud storage) share one transfer: the source
            sends the weights once and the receivers relay them on, as FaaSNet's function trees
            (Wang et al., USENIX ATC 2021) and the seed author's Flashpoint (calibration.md)
            do, instead of one unicast per receiver over the source's NIC. The relay moves at
            the pace of its slowest link (each relaying host's NIC sends once per child), and a
            receiver ``d`` hops from the source lands ``d`` pipeline chunks
            (``StartupSpec.pipeline_chunks``) after the first. With pipelined stages each
            receiver streams the weights into its GPU (PCIe, deserialisation) beside the relay
            and its fetch ends when both have. The source is read (and cloud egress paid) once.
            Loads that start their fetch later do not join a relay already moving (with
            ``jitter_cv > 0`` fetches rarely start together).
        multicast_fanout: Receivers each relaying host (and the source) sends to: 1 is a chain,
            where every link carries the model once at full rate; 2 or more a tree (FaaSNet's
            function trees), fewer hops but each sender's NIC split among its children.
        striping: A load from remote memory reads disjoint shards of the weights from
            several holders at once, as lambda-Scale (Yu et al., arXiv 2502.09922) and
            BlitzScale (Zhang et al., OSDI 2025) load from several sources: each shard crosses
            its sender's NIC, all cross the receiver's, so a receiver faster than each sender
            gets up to the senders' sum. Shards are sized to what each sender can give the
            receiver alone (so that, uncontended, they land together); under contention the
            last shard sets the pace. Needs ``remote_pool``.
        stripe_holders: Most holders one striped load reads from (those serving the fewest
            remote reads); ``None``: every holder.
    """

    host_cache: bool = True
    remote_pool: bool = True
    sourcing: str = "hierarchical"
    default_placement: str = "locality"
    # Assumption: 60 s, an interactive inference client's patience; calibration.md gives none.
    request_timeout_s: float = 60.0
    keep_alive_s: float | None = None
    cpu_fallback: bool = False
    cpu_workers: int = 1
    autostart: bool = False
    # Off by default: the seed paper's platform loads every cold start by unicast from one source.
    multicast: bool = False
    # Assumption: a chain. For a model much larger than a chunk a pipelined chain delivers at the
    # full link rate to every receiver (the bandwidth-optimal broadcast for long messages); a
    # tree (FaaSNet's function trees) trades that rate for fewer hops.
    multicast_fanout: int = 1
    striping: bool = False  # Off by default, as multicast.
    stripe_holders: int | None = None  # Assumption: every holder (no cap given by the papers).

    def __post_init__(self) -> None:
        flags = ("host_cache", "remote_pool", "cpu_fallback", "autostart", "multicast", "striping")
        for f in flags:
            _check(self, f, isinstance(getattr(self, f), bool), "a bool")
        _check(self, "sourcing", self.sourcing in SOURCING_RULES, f"one of {SOURCING_RULES}")
        _check(
            self,
            "default_placement",
            self.default_placement in PLACEMENT_RULES,
            f"one of {PLACEMENT_RULES}",
        )
        _num(self, "request_timeout_s")
        _num(self, "keep_alive_s", strict=False, allow_none=True)
        _int(self, "cpu_workers")
        _int(self, "multicast_fanout")
        v = self.stripe_holders
        ok = v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 2)
        _check(self, "stripe_holders", ok, "an integer >= 2, or None (every holder)")
        if self.striping and not (self.remote_pool and self.host_cache):
            raise ConfigError(
                "FeatureSpec.striping needs remote_pool and host_cache (a striped load reads "
                f"other hosts' memory), got remote_pool={self.remote_pool!r}, "
                f"host_cache={self.host_cache!r}"
            )


@dataclass(frozen=True)
class SimConfig:
    """A whole simulated cluster: hosts, model catalog, cloud store, stages, prices, features."""

    hosts: tuple[HostSpec, ...]
    models: tuple[ModelSpec, ...]
    cloud: CloudStoreSpec = field(default_factory=CloudStoreSpec)
    startup: StartupSpec = field(default_factory=StartupSpec)
    prices: PriceSpec = field(default_factory=PriceSpec)
    features: FeatureSpec = field(default_factory=FeatureSpec)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", tuple(self.hosts))
        object.__setattr__(self, "models", tuple(self.models))
        _check(self, "hosts", len(self.hosts) >= 1, "a non-empty sequence of HostSpec")
        _check(self, "models", len(self.models) >= 1, "a non-empty sequence of ModelSpec")
        for i, h in enumerate(self.hosts):
            if not isinstance(h, HostSpec):
                raise ConfigError(
                    f"SimConfig.hosts[{i}] must be a HostSpec, got {type(h).__name__}"
                )
        names = set()
        biggest_gpu = max(h.gpu_mem_gb for h in self.hosts)
        for i, m in enumerate(self.models):
            if not isinstance(m, ModelSpec):
                raise ConfigError(
                    f"SimConfig.models[{i}] must be a ModelSpec, got {type(m).__name__}"
                )
            if m.name in names:
                raise ConfigError(f"SimConfig.models[{i}].name {m.name!r} is used twice")
            names.add(m.name)
            if m.size_gb > biggest_gpu:
                raise ConfigError(
                    f"SimConfig.models[{i}] ({m.name!r}).size_gb = {m.size_gb} is larger than every "
                    f"GPU's memory (largest gpu_mem_gb = {biggest_gpu})"
                )

    @property
    def n_gpus(self) -> int:
        return sum(h.n_gpus for h in self.hosts)

    def replace(self, **changes) -> SimConfig:
        """A copy with top-level fields replaced (``dataclasses.replace``)."""
        import dataclasses

        return dataclasses.replace(self, **changes)


def field_names(cls) -> list[str]:
    """Names of a config dataclass's fields (for error messages listing valid keys)."""
    return [f.name for f in fields(cls)]
