"""Configuration validation: every error names class.field and the offending value."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import host, model, toy_config

from envs.sim import (
    CATALOG,
    CloudStoreSpec,
    ConfigError,
    FeatureSpec,
    HostSpec,
    ModelSpec,
    PriceSpec,
    SimConfig,
    StartupSpec,
    get_models,
)
from envs.sim.catalog import PROTOTYPE_MODELS
from envs.sim.config import field_names

BAD_FIELDS = [
    # (class, base kwargs, field, bad value)
    (ModelSpec, "model", "name", ""),
    (ModelSpec, "model", "size_gb", -1.0),
    (ModelSpec, "model", "size_gb", 0),
    (ModelSpec, "model", "gpu_batch1_ms", float("nan")),
    (ModelSpec, "model", "gpu_per_item_ms", -0.5),
    (ModelSpec, "model", "cpu_ms", float("inf")),
    (ModelSpec, "model", "max_batch", 0),
    (ModelSpec, "model", "max_batch", 2.5),
    (ModelSpec, "model", "slo_s", "1"),
    (ModelSpec, "model", "deserialize_gb_per_s", 0.0),
    (HostSpec, "host", "n_gpus", 0),
    (HostSpec, "host", "n_gpus", True),
    (HostSpec, "host", "gpu_mem_gb", -24.0),
    (HostSpec, "host", "cache_gb", -1.0),
    (HostSpec, "host", "nic_gb_per_s", 0.0),
    (HostSpec, "host", "pcie_gb_per_s", None),
    (HostSpec, "host", "disk_gb_per_s", -3.2),
    (HostSpec, "host", "disk_cache_gb", float("nan")),
    (CloudStoreSpec, None, "per_stream_gb_per_s", 0.0),
    (CloudStoreSpec, None, "streams", 0),
    (CloudStoreSpec, None, "ttfb_s", -0.02),
    (CloudStoreSpec, None, "egress_gb_per_s", float("inf")),
    (StartupSpec, None, "sandbox_s", -1.0),
    (StartupSpec, None, "runtime_init_s", float("nan")),
    (StartupSpec, None, "pipelined", 1),
    (StartupSpec, None, "pipeline_chunks", 0),
    (StartupSpec, None, "jitter_cv", -0.1),
    (PriceSpec, None, "gpu_usd_per_hour", -1.0),
    (PriceSpec, None, "host_mem_usd_per_gb_hour", float("nan")),
    (PriceSpec, None, "egress_usd_per_gb", -0.01),
    (FeatureSpec, None, "host_cache", "yes"),
    (FeatureSpec, None, "remote_pool", 0),
    (FeatureSpec, None, "cpu_fallback", None),
    (FeatureSpec, None, "sourcing", "nearest"),
    (FeatureSpec, None, "default_placement", "random"),
    (FeatureSpec, None, "request_timeout_s", 0.0),
    (FeatureSpec, None, "keep_alive_s", -5.0),
    (FeatureSpec, None, "cpu_workers", 0),
]


def _base_kwargs(kind):
    if kind == "model":
        return dataclasses.asdict(model())
    if kind == "host":
        return dataclasses.asdict(host())
    return {}


@pytest.mark.parametrize(
    "cls,kind,fname,value",
    BAD_FIELDS,
    ids=[f"{c.__name__}.{f}={v!r}" for c, _, f, v in BAD_FIELDS],
)
def test_config_error_names_class_field_and_value(cls, kind, fname, value):
    kwargs = _base_kwargs(kind)
    kwargs[fname] = value
    with pytest.raises(ConfigError) as exc:
        cls(**kwargs)
    msg = str(exc.value)
    assert f"{cls.__name__}.{fname}" in msg
    assert repr(value) in msg
    assert "must be" in msg
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize("cls", [CloudStoreSpec, StartupSpec, PriceSpec, FeatureSpec, HostSpec])
def test_defaults_are_valid(cls):
    obj = cls()
    assert set(field_names(cls)) == {f.name for f in dataclasses.fields(obj)}


def test_boundary_values_accepted():
    FeatureSpec(keep_alive_s=None)
    FeatureSpec(keep_alive_s=0.0)
    HostSpec(cache_gb=0.0, disk_gb_per_s=0.0, disk_cache_gb=0.0)
    StartupSpec(sandbox_s=0.0, runtime_init_s=0.0, jitter_cv=0.0)
    CloudStoreSpec(ttfb_s=0.0)
    PriceSpec(0.0, 0.0, 0.0)
    model(gpu_per_item_ms=0.0)
    assert not HostSpec(disk_gb_per_s=3.0, disk_cache_gb=0.0).has_disk
    assert not HostSpec(disk_gb_per_s=0.0, disk_cache_gb=10.0).has_disk
    assert HostSpec().has_disk


def test_model_larger_than_every_gpu_is_a_config_error():
    with pytest.raises(ConfigError) as exc:
        toy_config(
            hosts=[host(gpu_mem_gb=8.0), host(gpu_mem_gb=16.0)],
            models=[model("ok", size=12.0), model("huge", size=16.5)],
        )
    msg = str(exc.value)
    assert "SimConfig.models[1]" in msg and "'huge'" in msg and "16.5" in msg
    assert "16.0" in msg
    # Fits the largest GPU only: accepted (scale_up refuses the smaller host at run time).
    toy_config(hosts=[host(gpu_mem_gb=8.0), host(gpu_mem_gb=16.0)], models=[model(size=16.0)])


def test_duplicate_model_names():
    with pytest.raises(ConfigError, match=r"SimConfig\.models\[1\]\.name 'a' is used twice"):
        toy_config(models=[model("a"), model("a", size=1.0)])


def test_simconfig_containers():
    with pytest.raises(ConfigError, match=r"SimConfig\.hosts"):
        SimConfig(hosts=(), models=(model(),))
    with pytest.raises(ConfigError, match=r"SimConfig\.models"):
        SimConfig(hosts=(host(),), models=[])
    with pytest.raises(ConfigError, match=r"SimConfig\.hosts\[1\] must be a HostSpec, got dict"):
        SimConfig(hosts=[host(), {"n_gpus": 1}], models=[model()])
    with pytest.raises(ConfigError, match=r"SimConfig\.models\[0\] must be a ModelSpec, got str"):
        SimConfig(hosts=[host()], models=["bert-base"])
    cfg = SimConfig(hosts=[host(n_gpus=2), host(n_gpus=3)], models=[model()])
    assert isinstance(cfg.hosts, tuple) and isinstance(cfg.models, tuple)
    assert cfg.n_gpus == 5
    assert cfg.replace(features=FeatureSpec(keep_alive_s=1.0)).features.keep_alive_s == 1.0


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        host().n_gpus = 3


def test_unknown_catalog_name_suggests_the_closest():
    with pytest.raises(ValueError) as exc:
        get_models(["bert-base", "bert-bse"])
    msg = str(exc.value)
    assert "'bert-bse'" in msg and "Did you mean 'bert-base'?" in msg
    assert "valid models" in msg
    with pytest.raises(ValueError) as exc:
        get_models(["zzzzzz"])
    assert "Did you mean" not in str(exc.value)


def test_catalog_entries_are_consistent():
    assert set(PROTOTYPE_MODELS) <= set(CATALOG)
    for name, spec in CATALOG.items():
        assert spec.name == name
        assert re.fullmatch(r"[a-z0-9.\-]+", name)
    models = get_models(list(CATALOG))
    # The whole catalog fits the default host's GPUs.
    SimConfig(hosts=(HostSpec(),), models=models)


def test_gpu_exec_s_linear_batching():
    m = model(gpu_batch1_ms=20.0, gpu_per_item_ms=5.0)
    assert m.gpu_exec_s(1) == pytest.approx(0.020)
    assert m.gpu_exec_s(4) == pytest.approx(0.035)


def test_cloud_per_transfer_rate():
    assert CloudStoreSpec(per_stream_gb_per_s=0.1, streams=8).per_transfer_gb_per_s == (
        pytest.approx(0.8)
    )
