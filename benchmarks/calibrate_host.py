"""Calibrate the simulator's load tiers to the machine this runs on; write a host profile.

    python -m benchmarks.calibrate_host                       # 4 GB checkpoint, 3 repeats
    python -m benchmarks.calibrate_host --quick --out me.yaml # 0.25 GB, 2 repeats: under a minute
    python -m benchmarks.calibrate_host --dir /nvme/tmp       # measure the disk that holds --dir

What it measures, and which simulator field each figure sets (``envs/profiles/README.md``):

* host-to-GPU copy, pageable and pinned (``host.pcie_gb_per_s``: pageable unless
  ``--copy pinned``), with GPU count and memory (``host.n_gpus``, ``host.gpu_mem_gb``); skipped
  without CUDA;
* runtime initialisation in a fresh interpreter: ``import torch`` and the CUDA context
  (``startup.runtime_init_s`` = their sum); without CUDA only the import is measured and
  ``runtime_init_s`` is skipped, since the import alone understates the stage;
* deserialisation of a generated checkpoint already in host memory, in a fresh interpreter per
  repeat: ``torch.load`` and ``safetensors.torch.load`` (``model.deserialize_gb_per_s``: the
  loader named by ``--loader``), beside the rate at which a fresh process gets new memory
  (``first_touch_gb_per_s``, a diagnostic: a first load allocates all of its tensors);
* local disk read of the checkpoint file (``host.disk_gb_per_s``): a file just written sits in
  the page cache, so its pages are dropped first (``posix_fadvise(DONTNEED)`` after ``fsync``)
  and ``mincore`` checks that none remain; an ``O_DIRECT`` read is a second cold figure and a
  re-read the warm (page cache) one. Only a verified cold figure sets ``disk_gb_per_s``.

It prints a table of each field's default, the measured value and their ratio, then one JSON
line with the profile. Bad input exits with status 2 and one line on stderr, having written
nothing (a measurement that fails exits 1, one line); the generated files are removed in every
case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from agents.cli import OneLineParser, UsageError
from benchmarks import calibrate_probes as probe

QUICK = {"size_gb": 0.25, "repeats": 2, "copy_gb": 0.25}
FULL = {"size_gb": 4.0, "repeats": 3, "copy_gb": 1.0}
MEM_FACTOR = 2.5  # peak resident memory per checkpoint byte: the bytes read + the loaded copy


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m benchmarks.calibrate_host", description=__doc__.split("\n")[0]
    )
    a = p.add_argument
    a("--quick", action="store_true", help=f"small run: {QUICK}")
    a("--size-gb", type=float, default=None, help="checkpoint size in GB (default 4; quick 0.25)")
    a("--repeats", type=int, default=None, help="fresh-process repeats per figure (3; quick 2)")
    a("--dir", default=None, help="folder on the disk to measure (default: the temp folder)")
    a("--out", default=None, help="write the host profile (YAML) here")
    a(
        "--loader",
        choices=("torch", "safetensors"),
        default="torch",
        help="loader whose rate becomes deserialize_gb_per_s (default torch, as the catalog's)",
    )
    a(
        "--copy",
        choices=("pageable", "pinned"),
        default="pageable",
        help="host-to-GPU figure that becomes pcie_gb_per_s (default pageable, as the default's)",
    )
    return p


def _check_args(a) -> tuple[dict, Path, Path | None]:
    cfg = dict(QUICK if a.quick else FULL)
    if a.size_gb is not None:
        if not (a.size_gb > 0 and a.size_gb <= 1e4):
            raise UsageError(f"--size-gb must be a number in (0, 10000], got {a.size_gb}")
        cfg["size_gb"] = a.size_gb
    if a.repeats is not None:
        if a.repeats < 1:
            raise UsageError(f"--repeats must be an integer >= 1, got {a.repeats}")
        cfg["repeats"] = a.repeats
    cfg["copy_gb"] = min(cfg["copy_gb"], cfg["size_gb"])
    work = Path(a.dir) if a.dir else Path(tempfile.gettempdir())
    if not work.is_dir() or not os.access(work, os.W_OK | os.X_OK):
        raise UsageError(f"--dir {str(work)!r} is not a writable folder")
    out = None
    if a.out is not None:
        out = Path(a.out)
        parent = out.parent if str(out.parent) else Path(".")
        if out.is_dir():
            raise UsageError(f"--out {a.out!r} is a folder; give a file path for the profile")
        if not parent.exists():
            raise UsageError(f"--out {a.out!r}: folder {str(parent)!r} does not exist")
        if not parent.is_dir():
            raise UsageError(f"--out {a.out!r}: {str(parent)!r} is not a folder")
        if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
            raise UsageError(f"--out {a.out!r} is not writable")
    need_gb = MEM_FACTOR * cfg["size_gb"]
    avail_gb = probe.mem_available_gb()
    if avail_gb is not None and need_gb > avail_gb:
        raise UsageError(
            f"--size-gb {cfg['size_gb']} needs about {need_gb:.1f} GB of free memory, "
            f"{avail_gb:.1f} GB available; pass a smaller --size-gb"
        )
    free_gb = shutil.disk_usage(work).free / 1e9
    if 2.05 * cfg["size_gb"] > free_gb:
        raise UsageError(
            f"--size-gb {cfg['size_gb']} needs {2 * cfg['size_gb']:.1f} GB free in {str(work)!r}, "
            f"{free_gb:.1f} GB free"
        )
    return cfg, work, out


def measure(
    cfg: dict, work: Path, loader: str = "torch", copy: str = "pageable", command: str = ""
) -> dict:
    """Run every measurement; return the profile (sections as in ``envs.host_profile``)."""
    skipped: list[str] = []
    measured: dict = {"checkpoint_gb": None, "repeats": cfg["repeats"]}
    host: dict = {}
    startup: dict = {}
    model: dict = {}

    phases: dict[str, float] = {}  # wall seconds of each part of the run, for the user
    lap = time.perf_counter()

    def done(name: str) -> None:
        nonlocal lap
        now = time.perf_counter()
        phases[name] = round(now - lap, 1)
        lap = now

    init = probe.runtime_init(cfg["repeats"])
    done("runtime_init")
    measured.update(init)
    if init["cuda_context_s"] is None:
        skipped.append(
            "startup.runtime_init_s: no CUDA device; framework_import_s (import torch in a fresh "
            "interpreter) is measured alone and understates the stage"
        )
    else:
        startup["runtime_init_s"] = init["runtime_init_s"]

    gpu = probe.gpu_info()
    if gpu is None:
        skipped.append("host.pcie_gb_per_s, host.n_gpus, host.gpu_mem_gb: no CUDA device")
    else:
        host["n_gpus"], host["gpu_mem_gb"] = gpu["n_gpus"], gpu["gpu_mem_gb"]
        h2d = probe.host_to_gpu(int(cfg["copy_gb"] * 1e9), cfg["repeats"])
        measured.update(h2d)
        host["pcie_gb_per_s"] = h2d[f"h2d_{copy}_gb_per_s"]
        done("host_to_gpu")

    tmp = Path(tempfile.mkdtemp(prefix="calibrate_host_", dir=work))
    try:
        files = probe.write_checkpoints(tmp, int(cfg["size_gb"] * 1e9))
        measured["checkpoint_gb"] = probe.sig(files["nbytes"] / 1e9)
        measured["checkpoint_tensors"] = files["tensors"]
        done("write_checkpoints")
        if files["safetensors"] is None:
            skipped.append(
                "measured.safetensors_load_gb_per_s: the safetensors package is not installed"
            )
        disk = probe.disk_read(files["torch"], probe.fs_type(work))
        note = disk.pop("note")
        measured.update(disk)
        if disk["disk_gb_per_s"] is None:
            skipped.append(f"host.disk_gb_per_s: {note}")
        else:
            host["disk_gb_per_s"] = disk["disk_gb_per_s"]
        done("disk_read")
        measured.update(probe.first_touch(min(files["nbytes"], 10**9), cfg["repeats"]))
        done("first_touch")
        for fmt in ("torch", "safetensors"):
            if files[fmt] is not None:
                measured.update(probe.deserialize(fmt, files[fmt], cfg["repeats"]))
                done(f"deserialize_{fmt}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = measured.get(f"{loader}_load_gb_per_s")
    if rate is None:
        skipped.append(f"model.deserialize_gb_per_s: loader {loader!r} not measured")
    else:
        model["deserialize_gb_per_s"] = rate
    meta = probe.machine_meta(work)
    meta.update(
        command=command,
        deserialize_loader=loader,
        pcie_copy=copy,
        skipped=skipped,
        phase_s=phases,
    )
    return {"format": 1, "host": host, "startup": startup, "model": model,
            "measured": measured, "meta": meta}  # fmt: skip


def defaults() -> dict[str, float]:
    """The simulator's defaults for the fields a profile sets (their single definitions)."""
    from envs.sim import catalog
    from envs.sim.config import HostSpec, StartupSpec

    h, s = HostSpec(), StartupSpec()
    rates = sorted(catalog.CATALOG[m].deserialize_gb_per_s for m in catalog.PROTOTYPE_MODELS)
    mid = len(rates) // 2
    return {
        "host.n_gpus": h.n_gpus,
        "host.gpu_mem_gb": h.gpu_mem_gb,
        "host.pcie_gb_per_s": h.pcie_gb_per_s,
        "host.disk_gb_per_s": h.disk_gb_per_s,
        "startup.runtime_init_s": s.runtime_init_s,
        # Catalog: the seed author's prototype rates (median of the six models).
        "model.deserialize_gb_per_s": round((rates[mid - 1] + rates[mid]) / 2, 3),
    }


def table(profile: dict) -> str:
    """Field, default, measured, ratio (measured / default) for every field a profile sets."""
    rows = [("field", "default", "measured", "ratio")]
    for key, dflt in defaults().items():
        section, name = key.split(".")
        v = profile[section].get(name)
        if v is None:
            rows.append((key, f"{dflt:g}", "skipped", "-"))
        else:
            rows.append((key, f"{dflt:g}", f"{v:g}", f"{v / dflt:.2f}x"))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows)


def write_profile(profile: dict, out: Path) -> None:
    import yaml

    m = profile["meta"]
    head = (
        f"# coldstart-gym host profile, measured on {m['hostname']} at {m['date']}\n"
        f"# by `{m['command']}`.\n"
        "# host: merged into a scenario's host entry, hosts: [{profile: THIS_FILE, count: N}];\n"
        "# startup and model: copy into the scenario's startup: and models: entries\n"
        "# (envs/profiles/README.md).\n"
    )
    body = yaml.safe_dump(profile, sort_keys=False, default_flow_style=False, width=100)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(head + body)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    try:
        a = build_parser().parse_args(argv)
        cfg, work, out = _check_args(a)
    except UsageError as e:
        print(f"calibrate_host: error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    t0 = time.perf_counter()
    args = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.calibrate_host", *args])
    try:
        profile = measure(cfg, work, loader=a.loader, copy=a.copy, command=command)
    except (OSError, RuntimeError) as e:  # a failed measurement, not bad input: status 1
        print(f"calibrate_host: measurement failed: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(1) from None
    profile["meta"]["wall_s"] = round(time.perf_counter() - t0, 1)
    print(table(profile))
    for s in profile["meta"]["skipped"]:
        print(f"skipped: {s}")
    if out is not None:
        try:
            write_profile(profile, out)
        except OSError as e:
            msg = f"calibrate_host: error: cannot write --out {str(out)!r}: {e.strerror}"
            print(msg, file=sys.stderr)
            raise SystemExit(2) from None
        print(f"wrote {out}")
    print(json.dumps(profile))
    return 0


if __name__ == "__main__":
    main()
