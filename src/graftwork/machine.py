"""What machine a figure was measured on, and how much memory a run takes.

The machine description is recorded beside every throughput graftwork reports; `PeakMemory`
samples memory while a block runs. Resident memory and the core count come from `psutil`.
Two things `psutil` does not offer are read directly: the CPU model name (from /proc/cpuinfo
on Linux, `platform` elsewhere) and the heap in use, from glibc's `mallinfo2` (see
`heap_in_use_mb`).

Left out: per-thread and per-device breakdowns, swap, and GPUs other than CUDA device 0.
"""

from __future__ import annotations

import ctypes
import platform
import threading
from pathlib import Path

import psutil


def cpu_name() -> str:
    """The CPU model (speeds are only comparable on the same one); psutil has no model name."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe() -> dict:
    import torch

    return {
        "cpu": cpu_name(),
        "cores": psutil.cpu_count(logical=True),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    return psutil.Process().memory_info().rss / 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mallinfo2():
    try:
        libc = ctypes.CDLL(None)
        fn = libc.mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


_MALLINFO2 = _mallinfo2()


def heap_in_use_mb() -> float | None:
    """Bytes malloc has handed out and not had back (all arenas plus mmapped blocks), in MiB.

    Unlike RSS this leaves out memory the allocator keeps after it was freed: glibc rarely
    returns freed blocks of a fragmented heap to the OS, so after the first training steps RSS
    holds a high-water mark of every transient tensor rather than what is live. Tensors are
    malloc'd, so this is the CPU analogue of `torch.cuda.max_memory_allocated`. psutil has no
    such figure, so glibc's `mallinfo2` is called through ctypes. None where the C library is
    not glibc 2.33 or newer."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return (info.uordblks + info.hblkhd) / 2**20


class PeakMemory:
    """Peak resident memory, malloc'd memory in use (and GPU memory) while the `with` block runs.

    A thread samples both every `interval` seconds; `start_mb` / `heap_start_mb` are the values
    on entry, so `peak - start` is what the block itself needed on top of what was loaded
    before. RSS is what the OS charges (and what an out-of-memory kill sees); the heap in use
    is what live malloc'd memory (tensors, most buffers) holds (see `heap_in_use_mb`)."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.start_mb = self.peak_mb = 0.0
        self.heap_start_mb = self.heap_peak_mb = None
        self.gpu_peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _take(self) -> None:
        self.peak_mb = max(self.peak_mb, rss_mb())
        heap = heap_in_use_mb()
        if heap is not None:
            self.heap_peak_mb = max(self.heap_peak_mb or 0.0, heap)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def __enter__(self) -> PeakMemory:
        import torch

        self.start_mb = self.peak_mb = rss_mb()
        self.heap_start_mb = self.heap_peak_mb = heap_in_use_mb()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        self._stop.set()
        self._thread.join()
        self._take()
        if torch.cuda.is_available():
            self.gpu_peak_mb = torch.cuda.max_memory_allocated() / 2**20

    def as_dict(self) -> dict:
        heap = self.heap_start_mb is not None  # None: no mallinfo2 here, so never sampled
        return {
            "peak_rss_mb": round(self.peak_mb, 1),
            "rss_before_mb": round(self.start_mb, 1),
            "training_rss_mb": round(self.peak_mb - self.start_mb, 1),
            "peak_heap_mb": round(self.heap_peak_mb, 1) if heap else None,
            "training_heap_mb": round(self.heap_peak_mb - self.heap_start_mb, 1) if heap else None,
            "gpu_peak_mb": None if self.gpu_peak_mb is None else round(self.gpu_peak_mb, 1),
        }
