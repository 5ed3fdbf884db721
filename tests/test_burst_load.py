"""``python -m benchmarks.burst_load``: its JSON, the effect it shows, and its known answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import burst_load
from envs.sim import HostSpec, StartupSpec, catalog


def test_the_command_prints_json_where_multicast_and_striping_win():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.burst_load"], capture_output=True, text=True, check=True
    ).stdout
    res = json.loads(out.strip().splitlines()[-1])
    for key in ("burst_unicast_s", "burst_multicast_s", "single_unicast_s", "single_striped_s"):
        assert res[key] > 0, key
    assert res["burst_multicast_s"] < res["burst_unicast_s"]
    assert res["single_striped_s"] < res["single_unicast_s"]


def test_the_figures_are_the_stages_summed_by_hand():
    # Sequential stages on the defaults: fixed + fetch + PCIe copy + deserialisation.
    m = catalog.CATALOG["t5-3b"]
    h, st = HostSpec(), StartupSpec()
    fixed = st.sandbox_s + st.runtime_init_s
    rest = m.size_gb / h.pcie_gb_per_s + m.size_gb / m.deserialize_gb_per_s
    one = m.size_gb / h.nic_gb_per_s  # one holder's NIC
    n = burst_load.RECEIVERS
    res = burst_load.run("t5-3b")
    assert res["burst_unicast_s"] == pytest.approx(fixed + n * one + rest, abs=1e-3)
    # A chain: one send, then a pipeline chunk per hop to the last of n receivers.
    hops = (n - 1) * one / st.pipeline_chunks
    assert res["burst_multicast_s"] == pytest.approx(fixed + one + hops + rest, abs=1e-3)
    assert res["single_unicast_s"] == pytest.approx(fixed + one + rest, abs=1e-3)
    striped = m.size_gb / min(burst_load.FAST_NIC_GB_PER_S, burst_load.HOLDERS * h.nic_gb_per_s)
    assert res["single_striped_s"] == pytest.approx(fixed + striped + rest, abs=1e-3)


@pytest.mark.parametrize(
    "argv, words", [(["--fanout", "0"], "--fanout must be >= 1"), (["--model", "gpt2"], "gpt2-xl")]
)
def test_bad_arguments_exit_2_with_one_line(argv, words):
    p = subprocess.run(
        [sys.executable, "-m", "benchmarks.burst_load", *argv], capture_output=True, text=True
    )
    assert p.returncode == 2 and not p.stdout
    assert len(p.stderr.strip().splitlines()) == 1 and words in p.stderr
