"""Loading a burst the way current systems do: multicast (relay) and striped fetch, against
unicast, on two toy cases of the simulator.

    python -m benchmarks.burst_load                      # t5-3b, sequential stages
    python -m benchmarks.burst_load --model gpt2-xl --pipelined --fanout 2

Both cases use the simulator's defaults (``HostSpec``: NIC 2.5 GB/s, PCIe 10 GB/s;
``StartupSpec``: sandbox 0.57 s, runtime initialisation 4.48 s; the catalog's model):

* **burst**: host 0 holds the model in memory and ten other hosts cold-start it at the same
  instant from there. Time until the last is warm: ten unicasts sharing host 0's NIC, against
  one send relayed down a chain (``features.multicast``; a tree with ``--fanout``).
* **single**: three hosts hold the model and a fourth, whose NIC is faster than each sender's
  (11.7 GB/s: RDMA at 100 Gb/s, calibration.md), cold-starts it. Time to warm from one holder,
  against striped over all three (``features.striping``).

Every time is simulated (no wall clock): the run takes well under a second. The last line is
JSON: ``{"burst_unicast_s", "burst_multicast_s", "single_unicast_s", "single_striped_s", ...}``.
"""

from __future__ import annotations

import json

import numpy as np

from agents.cli import ExitingParser
from envs.sim import FeatureSpec, HostSpec, SimConfig, Simulator, StartupSpec, Workload, catalog

RECEIVERS = 10  # the burst's cold starts
HOLDERS = 3  # hosts holding the model in the single case
FAST_NIC_GB_PER_S = 11.7  # RDMA 100 Gb/s measured (calibration.md, linux-rdma/perftest #225)


def _warm_times(sim: Simulator, insts) -> list[float]:
    while any(i.ready_s == float("inf") for i in insts):
        sim.run_until(sim.now + 60.0)
    return [i.ready_s for i in insts]


def burst_s(model, *, multicast: bool, fanout: int = 1, pipelined: bool = False) -> float:
    """Seconds from the burst's start until the last of its cold starts is warm."""
    cfg = SimConfig(
        hosts=(HostSpec(),) * (RECEIVERS + 1),
        models=(model,),
        startup=StartupSpec(pipelined=pipelined),
        features=FeatureSpec(multicast=multicast, multicast_fanout=fanout),
    )
    sim = Simulator(cfg, Workload((np.zeros(0),), 1.0))
    sim.seed_copy(0, 0)
    insts = [sim.scale_up(0, h, "remote_mem") for h in range(1, RECEIVERS + 1)]
    return max(_warm_times(sim, insts))


def single_s(model, *, striping: bool, pipelined: bool = False) -> float:
    """Seconds until one cold start from remote memory is warm (three holders, fast receiver)."""
    hosts = (HostSpec(),) * HOLDERS + (HostSpec(nic_gb_per_s=FAST_NIC_GB_PER_S),)
    cfg = SimConfig(
        hosts=hosts,
        models=(model,),
        startup=StartupSpec(pipelined=pipelined),
        features=FeatureSpec(striping=striping),
    )
    sim = Simulator(cfg, Workload((np.zeros(0),), 1.0))
    for h in range(HOLDERS):
        sim.seed_copy(0, h)
    inst = sim.scale_up(0, HOLDERS, "remote_mem")
    return _warm_times(sim, [inst])[0]


def run(model_name: str = "t5-3b", fanout: int = 1, pipelined: bool = False) -> dict:
    (model,) = catalog.get_models([model_name])
    out = {
        "burst_unicast_s": burst_s(model, multicast=False, pipelined=pipelined),
        "burst_multicast_s": burst_s(model, multicast=True, fanout=fanout, pipelined=pipelined),
        "single_unicast_s": single_s(model, striping=False, pipelined=pipelined),
        "single_striped_s": single_s(model, striping=True, pipelined=pipelined),
    }
    out = {k: round(v, 3) for k, v in out.items()}
    out.update(model=model_name, size_gb=model.size_gb, pipelined=pipelined, fanout=fanout)
    return out


def main(argv: list[str] | None = None) -> None:
    p = ExitingParser(prog="python -m benchmarks.burst_load", label="burst_load",
                      description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--model", default="t5-3b", help="catalog model (default t5-3b)")
    p.add_argument("--fanout", type=int, default=1, help="multicast fanout (1: a chain)")
    p.add_argument("--pipelined", action="store_true", help="pipelined weight stages")
    a = p.parse_args(argv)
    if a.model not in catalog.CATALOG:
        try:
            catalog.get_models([a.model])
        except ValueError as e:
            p.error(str(e))
    if a.fanout < 1:
        p.error(f"--fanout must be >= 1, got {a.fanout}")
    res = run(a.model, a.fanout, a.pipelined)
    print(f"{res['model']} ({res['size_gb']} GB), {'pipelined' if a.pipelined else 'sequential'}")
    print(f"  burst of {RECEIVERS} from one holder, last warm: unicast {res['burst_unicast_s']} s,"
          f" multicast (fanout {a.fanout}) {res['burst_multicast_s']} s")  # fmt: skip
    print(f"  one load, {HOLDERS} holders, {FAST_NIC_GB_PER_S} GB/s receiver: one holder "
          f"{res['single_unicast_s']} s, striped {res['single_striped_s']} s")  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
