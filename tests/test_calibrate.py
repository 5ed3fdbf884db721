"""Host calibration: the benchmark's profile round trip into a scenario, and bad input.

The figures themselves are the machine's (never asserted); what is tested is that every figure the
run measured reaches the simulator's specs under the field it names, that what it could not
measure is skipped with a note rather than guessed, and that bad input fails with one line.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import calibrate_host, calibrate_probes
from envs import host_profile
from envs.host_profile import expand_host_entry, load_host_profile
from envs.scenarios import scenario_from_dict
from envs.sim.config import ConfigError, HostSpec

SCENARIO = {"models": ["bert-base"], "workload": {"kind": "poisson", "rate_rps": 1.0}}


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    """One real run on this machine: --quick with the smallest checkpoint and one repeat."""
    d = tmp_path_factory.mktemp("calib")
    out = d / "host.yaml"
    argv = ["--quick", "--size-gb", "0.002", "--repeats", "1", "--dir", str(d), "--out", str(out)]
    assert calibrate_host.main(argv) == 0
    return out


def test_quick_run_writes_a_profile_the_loader_accepts(quick_profile):
    prof = load_host_profile(quick_profile)
    m, meta = prof["measured"], prof["meta"]
    for key in ("date", "hostname", "cpu", "torch", "command", "skipped"):
        assert key in meta, key
    assert m["framework_import_s"] > 0
    assert m["torch_load_gb_per_s"] > 0 and m["disk_warm_gb_per_s"] > 0
    assert prof["model"]["deserialize_gb_per_s"] == m["torch_load_gb_per_s"]  # --loader torch
    if importlib.util.find_spec("safetensors") is not None:
        assert m["safetensors_load_gb_per_s"] > 0
    else:
        assert any("safetensors" in s for s in meta["skipped"])
    assert not list(quick_profile.parent.glob("calibrate_host_*"))  # checkpoints removed
    import torch

    if torch.cuda.is_available():
        assert prof["host"]["pcie_gb_per_s"] == m["h2d_pageable_gb_per_s"]
        assert prof["startup"]["runtime_init_s"] == m["runtime_init_s"] > m["framework_import_s"]
    else:  # skipped with a note, never filled with the CPU-only figure
        assert "pcie_gb_per_s" not in prof["host"] and prof["startup"] == {}
        assert any("pcie_gb_per_s" in s for s in meta["skipped"])
        assert any("runtime_init_s" in s for s in meta["skipped"])
    if m["disk_gb_per_s"] is not None:  # a cold figure: cache dropped and checked, or O_DIRECT
        assert prof["host"]["disk_gb_per_s"] == m["disk_gb_per_s"]
        assert m["disk_method"]
    else:
        assert any("disk_gb_per_s" in s for s in meta["skipped"])


def test_profile_round_trip_into_a_scenario(quick_profile, tmp_path):
    prof = load_host_profile(quick_profile)
    scen_dir = tmp_path / "scenarios"
    scen_dir.mkdir()
    rel = os.path.relpath(quick_profile, scen_dir)  # relative to the scenario file's folder
    assert not Path(rel).is_absolute()
    entry = expand_host_entry({"profile": rel, "count": 2, "n_gpus": 2}, scen_dir)
    assert "profile" not in entry and entry["count"] == 2 and entry["n_gpus"] == 2
    sc = scenario_from_dict({**SCENARIO, "hosts": [entry]})
    assert len(sc.sim.hosts) == 2
    for host in sc.sim.hosts:
        assert host.n_gpus == 2  # the entry's explicit key wins over a GPU profile's
        for field, value in prof["host"].items():
            if field != "n_gpus":
                assert getattr(host, field) == value, field
    # The loader-dependent figures go where envs/profiles/README.md says.
    sc2 = scenario_from_dict(
        {
            **SCENARIO,
            "hosts": [entry],
            "startup": prof["startup"],
            "models": [{"base": "bert-base", **prof["model"]}],
        }  # fmt: skip
    )
    assert sc2.sim.models[0].deserialize_gb_per_s == prof["model"]["deserialize_gb_per_s"]


def test_scenario_file_uses_the_profile(quick_profile, tmp_path, monkeypatch):
    from envs.scenarios import load_scenario

    prof = load_host_profile(quick_profile)
    shutil.copy(quick_profile, tmp_path / "host.yaml")
    hosts = [{"profile": "host.yaml", "count": 2, "n_gpus": 2}, {"n_gpus": 1}]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**SCENARIO, "hosts": hosts}))
    monkeypatch.chdir("/")  # the profile path is taken against the scenario file's folder
    sc = load_scenario(str(tmp_path / "s.yaml"))
    assert [h.n_gpus for h in sc.sim.hosts] == [2, 2, 1]
    for field, value in prof["host"].items():
        if field != "n_gpus":
            assert getattr(sc.sim.hosts[0], field) == value, field
    assert sc.sim.hosts[2] == HostSpec(n_gpus=1)  # an entry without a profile: the defaults
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**SCENARIO, "hosts": [{"profile": "x"}]}))
    with pytest.raises(ConfigError, match="hosts.0.*x.*does not exist"):
        load_scenario(str(tmp_path / "bad.yaml"))


def test_table_lists_every_field_against_its_default(quick_profile):
    prof = load_host_profile(quick_profile)
    text = calibrate_host.table(prof)
    assert text.splitlines()[0].split() == ["field", "default", "measured", "ratio"]
    dflt = calibrate_host.defaults()
    assert dflt["host.pcie_gb_per_s"] == HostSpec().pcie_gb_per_s
    for key in dflt:
        assert key in text
    v = prof["host"].get("disk_gb_per_s")
    if v is not None:
        line = next(ln for ln in text.splitlines() if ln.startswith("host.disk_gb_per_s"))
        assert f"{v / dflt['host.disk_gb_per_s']:.2f}x" in line


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_explicit_keys_win_and_paths_resolve(tmp_path):
    _write(tmp_path / "p.yaml", {"host": {"pcie_gb_per_s": 25.0, "disk_gb_per_s": 7.0}})
    e = expand_host_entry({"profile": "p.yaml", "disk_gb_per_s": 0.0, "count": 3}, tmp_path)
    assert e == {"pcie_gb_per_s": 25.0, "disk_gb_per_s": 0.0, "count": 3}
    e = expand_host_entry({"profile": str(tmp_path / "p.yaml")}, "/nonexistent")  # absolute
    assert HostSpec(**e).pcie_gb_per_s == 25.0
    assert expand_host_entry({"n_gpus": 2}, tmp_path) == {"n_gpus": 2}  # no profile: unchanged
    assert expand_host_entry("junk", tmp_path) == "junk"  # the scenario loader rejects it


def test_shipped_profile_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(host_profile, "PROFILE_DIR", tmp_path)
    _write(tmp_path / "gpu-box.yaml", {"host": {"pcie_gb_per_s": 30.0}})
    assert expand_host_entry({"profile": "gpu-box"}, "/elsewhere") == {"pcie_gb_per_s": 30.0}


@pytest.mark.parametrize(
    "data, words",
    [
        ({"host": {"pcie_gb_per_s": -1.0}}, ["p.yaml", "host", "pcie_gb_per_s", "-1.0", "> 0"]),
        ({"host": {"pcie_gbps": 3.0}}, ["p.yaml", "unknown key 'pcie_gbps'", "pcie_gb_per_s"]),
        ({"startup": {"runtime_init_s": "slow"}}, ["startup", "runtime_init_s", "'slow'"]),
        ({"model": {"size_gb": 1.0}}, ["model", "unknown key 'size_gb'", "deserialize_gb_per_s"]),
        ({"model": {"deserialize_gb_per_s": 0}}, ["deserialize_gb_per_s", "got 0", "> 0"]),
        ({"measured": {"disk_cold_gb_per_s": -2}}, ["measured.disk_cold_gb_per_s", "-2"]),
        ({"hosts": {}}, ["unknown key 'hosts'", "Did you mean 'host'"]),
        ({"format": 2}, ["format must be 1", "2"]),
        ({"host": [1]}, ["host must be a mapping of HostSpec fields"]),
        ([1, 2], ["must hold a mapping"]),
    ],
)
def test_bad_profiles_name_file_field_value(tmp_path, data, words):
    p = _write(tmp_path / "p.yaml", data)
    with pytest.raises(ConfigError) as e:
        load_host_profile(p)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_missing_or_broken_profile_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml.*does not exist"):
        expand_host_entry({"profile": "nope.yaml"}, tmp_path)
    with pytest.raises(ConfigError, match="profile must be a path"):
        expand_host_entry({"profile": 3}, tmp_path)
    (tmp_path / "b.yaml").write_text("host: [unclosed")
    with pytest.raises(ConfigError, match="b.yaml.*not valid YAML"):
        load_host_profile(tmp_path / "b.yaml")


_HOST_FIELDS = {"pcie_gb_per_s": st.floats(0.1, 64), "disk_gb_per_s": st.floats(0, 14),
                "nic_gb_per_s": st.floats(0.1, 50), "n_gpus": st.integers(1, 8),
                "cache_gb": st.floats(0, 512)}  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(
    prof=st.fixed_dictionaries({}, optional=_HOST_FIELDS),
    explicit=st.fixed_dictionaries({}, optional=_HOST_FIELDS),
)
def test_merge_is_profile_updated_by_the_entry(prof, explicit):
    with tempfile.TemporaryDirectory() as d:
        _write(Path(d) / "p.yaml", {"host": prof})
        merged = expand_host_entry({"profile": "p.yaml", **explicit}, d)
    assert merged == {**prof, **explicit}
    spec = HostSpec(**merged)
    for k, v in merged.items():
        assert getattr(spec, k) == v
    assert dataclasses.asdict(spec).keys() >= merged.keys()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.calibrate_host", *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


@pytest.mark.parametrize(
    "args, word",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--out", "/nonexistent-dir/x.yaml"], "does not exist"),
        (["--size-gb", "0"], "--size-gb must be"),
        (["--size-gb", "9000"], "free memory"),
        (["--repeats", "0"], "--repeats must be"),
        (["--loader", "pickle"], "invalid choice"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, word, tmp_path):
    r = _cli(*args, "--dir", str(tmp_path))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], r.stderr
    assert r.stdout == "" and list(tmp_path.iterdir()) == []  # nothing written


def test_out_unwritable_and_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    cases = [(tmp_path, "is a folder"), (tmp_path / "file" / "x.yaml", "is not a folder")]
    if os.geteuid() != 0:  # root may write into a read-only folder
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        cases.append((ro / "x.yaml", "not writable"))
    for out, word in cases:
        with pytest.raises(SystemExit) as e:
            calibrate_host.main(["--quick", "--out", str(out), "--dir", str(tmp_path)])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0]


def test_resident_fraction_sees_the_cache_drop(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"\1" * (1 << 20))
    p.read_bytes()
    before = calibrate_probes.resident_fraction(p)
    if before is None:
        pytest.skip("mincore is not available here")
    assert before == 1.0
    assert calibrate_probes.drop_cache(p)
    assert calibrate_probes.resident_fraction(p) <= calibrate_probes.COLD_RESIDENT_MAX


def test_without_safetensors_the_checkpoint_is_torch_only(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # import raises ImportError
    files = calibrate_probes.write_checkpoints(tmp_path, 200_000)
    assert files["safetensors"] is None and files["torch"].exists()
    assert files["nbytes"] >= 200_000 * 0.9 and files["tensors"] >= 16  # >= 8 layers, 2 each


def test_a_memory_filesystem_is_no_disk(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"\2" * (1 << 20))
    r = calibrate_probes.disk_read(p, {"fs": "tmpfs", "device": None, "mount": None})
    assert r["disk_gb_per_s"] is None and "tmpfs" in r["note"]
    assert r["disk_warm_gb_per_s"] > 0
