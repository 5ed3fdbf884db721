"""The measurements behind ``benchmarks.calibrate_host``, one function per load-tier figure.

Rates are in GB/s with GB = 10^9 bytes (as in ``envs.sim.config``), times in seconds, medians
over repeats, three significant digits. Runtime initialisation and deserialisation run in a
fresh interpreter per repeat (``sys.executable``), as a cold start's process would; the
host-to-GPU copy and the disk reads run in this process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

READ_BUF = 16 << 20  # 16 MiB reads: large enough that the syscall count does not matter
MEMORY_FS = ("tmpfs", "ramfs", "devtmpfs")
COLD_RESIDENT_MAX = 0.02  # a "cold" read may find at most 2% of the file's pages cached

_INIT_CHILD = """
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
r = {"import_s": t1 - t0, "cuda_context_s": None}
if torch.cuda.is_available():
    torch.empty(1, device="cuda")
    torch.cuda.synchronize()
    r["cuda_context_s"] = time.perf_counter() - t1
print(json.dumps(r))
"""

_TOUCH_CHILD = """
import json, mmap, sys, time
import numpy as np
n = int(sys.argv[1])
t = time.perf_counter()
a = np.empty(n, dtype=np.uint8)
a[:: mmap.PAGESIZE] = 1  # one write per page: the kernel's cost of handing out fresh memory
print(json.dumps(time.perf_counter() - t))
"""

_DESER_CHILD = """
import io, json, sys, time
import torch
fmt, path = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    data = f.read()  # the weights in host memory: what the simulator's deserialise stage reads
if fmt == "torch":
    def load():
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
else:
    from safetensors.torch import load as st_load
    def load():
        return st_load(data)
out = []
for _ in range(2):  # the process's first load (a cold start's), then a second one
    t = time.perf_counter()
    sd = load()
    dt = time.perf_counter() - t
    out.append([sum(v.numel() * v.element_size() for v in sd.values()), dt])
    del sd
print(json.dumps(out))
"""


def sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


def _child(code: str, *args: str) -> object:
    r = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        tail = " ".join(r.stderr.strip().splitlines()[-1:])
        raise RuntimeError(f"measurement subprocess failed (status {r.returncode}): {tail}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def mem_available_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def fs_type(path: Path) -> dict:
    """Filesystem type, device and mount point holding ``path`` (Linux ``/proc/mounts``)."""
    real, best = os.path.realpath(path), {"fs": None, "device": None, "mount": None}
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fs = line.split()[:3]
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best["mount"] or ""):
                    best = {"fs": fs, "device": dev, "mount": mnt}
    except OSError:
        pass
    return best


def runtime_init(repeats: int) -> dict:
    """``import torch`` and the CUDA context, each in a fresh interpreter."""
    runs = [_child(_INIT_CHILD) for _ in range(repeats)]
    imp = [r["import_s"] for r in runs]
    cuda = [r["cuda_context_s"] for r in runs]
    out = {
        "framework_import_s": sig(statistics.median(imp)),
        "framework_import_first_s": sig(imp[0]),
        "cuda_context_s": None,
        "runtime_init_s": None,
    }
    if all(c is not None for c in cuda):
        out["cuda_context_s"] = sig(statistics.median(cuda))
        out["runtime_init_s"] = sig(
            statistics.median(i + c for i, c in zip(imp, cuda, strict=True))
        )
    return out


def gpu_info() -> dict | None:
    import torch

    if not torch.cuda.is_available():
        return None
    p = torch.cuda.get_device_properties(0)
    return {"n_gpus": torch.cuda.device_count(), "gpu_mem_gb": sig(p.total_memory / 1e9),
            "gpu": p.name}  # fmt: skip


def host_to_gpu(nbytes: int, repeats: int) -> dict:
    """Copy ``nbytes`` from host memory to GPU 0, from a pageable and from a pinned buffer."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8)
    src.fill_(7)  # touch every page, so the copy does not also pay the first page faults
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    out = {"h2d_copy_gb": sig(nbytes / 1e9)}
    for kind, buf in (("pageable", src), ("pinned", src.pin_memory())):
        dst.copy_(buf, non_blocking=True)  # warm-up: driver staging buffers, lazy init
        torch.cuda.synchronize()
        times = []
        for _ in range(max(repeats, 3)):
            t = time.perf_counter()
            dst.copy_(buf, non_blocking=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        out[f"h2d_{kind}_gb_per_s"] = sig(nbytes / 1e9 / statistics.median(times))
    return out


def write_checkpoints(folder: Path, nbytes: int, seed: int = 0) -> dict:
    """A transformer-like fp16 state dict of about ``nbytes``, saved by torch and safetensors.

    Weights of (rows, 4096) with a 4096-entry bias each, at least 8 layers; the bytes are
    random (a compressing filesystem would otherwise inflate the disk figure).
    """
    import torch

    cols = 4096
    elems = max(nbytes // 2, 8 * 2 * cols)  # at least 8 layers of one row and a bias
    rows = int(min(4096, max(1, elems // (8 * cols) - 1)))  # 8 * (rows + 1) * cols <= elems
    layers = max(1, round(elems / (rows * cols + cols)))
    g = torch.Generator().manual_seed(seed)
    block = torch.randint(0, 256, (rows * cols * 2,), dtype=torch.uint8, generator=g)
    block = block.view(torch.float16).reshape(rows, cols)
    sd = {}
    for i in range(layers):
        sd[f"layers.{i}.weight"] = block.clone()
        sd[f"layers.{i}.bias"] = block[i % rows].clone()
    out = {"nbytes": sum(v.numel() * v.element_size() for v in sd.values()),
           "tensors": len(sd), "torch": folder / "ckpt.pt", "safetensors": None}  # fmt: skip
    torch.save(sd, out["torch"])
    try:
        from safetensors.torch import save_file
    except ImportError:
        pass
    else:
        out["safetensors"] = folder / "ckpt.safetensors"
        save_file(sd, out["safetensors"])
    del sd
    for key in ("torch", "safetensors"):
        if out[key] is not None:
            fd = os.open(out[key], os.O_RDONLY)
            try:
                os.fsync(fd)  # written back, so the cache pages are clean and can be dropped
            finally:
                os.close(fd)
    return out


def _read(path: Path, direct: bool = False) -> tuple[int, float]:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
    buf = mmap.mmap(-1, READ_BUF)  # page-aligned, as O_DIRECT requires
    total = 0
    try:
        t = time.perf_counter()
        while True:
            n = os.readv(fd, [buf])
            total += n
            if n == 0 or (direct and n < READ_BUF):  # O_DIRECT: a short read is EOF
                break
        return total, time.perf_counter() - t
    finally:
        os.close(fd)
        buf.close()


def resident_fraction(path: Path) -> float | None:
    """Share of the file's pages in the page cache (``mincore``), or None where unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]  # fmt: skip
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        size = os.path.getsize(path)
        fd = os.open(path, os.O_RDONLY)
    except (OSError, AttributeError, TypeError):
        return None
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return None
        try:
            vec = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            return float((np.frombuffer(vec, dtype=np.uint8) & 1).mean())
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def drop_cache(path: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def disk_read(path: Path, fs: dict) -> dict:
    """Cold (page cache dropped, checked), O_DIRECT and warm (cached) sequential reads."""
    out = {"disk_fs": fs["fs"], "disk_device": fs["device"], "disk_resident_before_read": None,
           "disk_cold_gb_per_s": None, "disk_direct_gb_per_s": None,
           "disk_warm_gb_per_s": None, "disk_gb_per_s": None, "disk_method": None}  # fmt: skip
    note = None
    dropped = drop_cache(path)
    resident = resident_fraction(path) if dropped else None
    out["disk_resident_before_read"] = None if resident is None else sig(resident)
    n, dt = _read(path)
    if dropped and resident is not None and resident <= COLD_RESIDENT_MAX:
        out["disk_cold_gb_per_s"] = sig(n / 1e9 / dt)
    if hasattr(os, "O_DIRECT"):
        try:
            n2, dt2 = _read(path, direct=True)
            out["disk_direct_gb_per_s"] = sig(n2 / 1e9 / dt2)
        except OSError as e:
            note = f"O_DIRECT read failed ({e.strerror})"
    n3, dt3 = _read(path)  # the file is cached now: a memory-speed figure, not the disk's
    out["disk_warm_gb_per_s"] = sig(n3 / 1e9 / dt3)
    if fs["fs"] in MEMORY_FS:
        note = f"--dir is on {fs['fs']} (memory, not a disk); pass --dir on the disk to measure"
    elif out["disk_cold_gb_per_s"] is not None:
        out["disk_gb_per_s"] = out["disk_cold_gb_per_s"]
        out["disk_method"] = (
            f"buffered read after fsync + posix_fadvise(DONTNEED); mincore: "
            f"{100 * resident:.1f}% of pages cached before the read"
        )
    elif out["disk_direct_gb_per_s"] is not None:
        out["disk_gb_per_s"] = out["disk_direct_gb_per_s"]
        out["disk_method"] = "O_DIRECT read (the page cache could not be dropped or checked)"
    else:
        note = note or "the page cache could not be dropped or bypassed: no cold figure"
    return {**out, "note": note}


def deserialize(fmt: str, path: Path, repeats: int) -> dict:
    """Load the checkpoint from bytes already in host memory; fresh interpreter per repeat."""
    runs = [_child(_DESER_CHILD, fmt, str(path)) for _ in range(repeats)]
    first = [n / 1e9 / dt for (n, dt), _ in runs]
    second = [n / 1e9 / dt for _, (n, dt) in runs]
    return {f"{fmt}_load_gb_per_s": sig(statistics.median(first)),
            f"{fmt}_load_second_gb_per_s": sig(statistics.median(second))}  # fmt: skip


def first_touch(nbytes: int, repeats: int) -> dict:
    """Rate at which a fresh process gets ``nbytes`` of new memory (one write per page).

    A diagnostic beside the first-load rates: a fresh process's first load allocates every
    tensor anew. In a virtual machine whose memory the hypervisor backs lazily, pages the guest
    never used before cost far more than reused ones, so this figure can vary between runs.
    """
    runs = [_child(_TOUCH_CHILD, str(nbytes)) for _ in range(repeats)]
    return {"first_touch_gb_per_s": sig(nbytes / 1e9 / statistics.median(runs))}


def machine_meta(work: Path) -> dict:
    import torch

    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    try:
        import safetensors

        st = safetensors.__version__
    except ImportError:
        st = None
    cuda = torch.cuda.is_available()
    mem = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        mem = sig(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "mem_total_gb": mem,
        "gpu": str(torch.cuda.get_device_name(0)) if cuda else None,
        "cuda": str(torch.version.cuda) if cuda else None,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "safetensors": st,
        "dir": str(work),
        "dir_fs": fs_type(work)["fs"],
    }
