"""The one module that picks a device, and what happens when it runs out of memory.

nnU-Net's habits: CUDA when present, with autocast (bf16 where the GPU supports it, else fp16);
MPS on Apple silicon; else the CPU. ``torch.inference_mode()`` around every forward pass. When the
GPU runs out of memory, the same work is retried with half the sliding-window batch, down to one
window, and then on the CPU; every step is recorded as a message the viewer and the CLI show, so
the user always knows which device produced the result.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import BreastMRIError
from ..types import Progress

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


class DeviceUnavailable(BreastMRIError):
    """The device asked for (e.g. --device cuda) is not present on this machine."""


class OutOfMemory(BreastMRIError):
    """Even one window on the CPU did not fit in memory."""


@dataclass
class DeviceReport:
    """Where a computation finally ran, with which batch size, and what happened on the way."""

    requested: str
    device: str
    batch_size: int
    messages: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """One line for the user: "ran on cuda" or "ran on cpu (cuda out of memory ...)"."""
        text = f"ran on {self.device}"
        return f"{text} ({'; '.join(self.messages)})" if self.messages else text


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA if available, else MPS, else CPU; ``prefer`` (or $BREASTMRI_DEVICE) forces one.

    Asking for a device that is absent raises :class:`DeviceUnavailable` rather than silently
    running elsewhere: an explicit choice deserves an explicit answer.
    """
    import torch

    if prefer is None or str(prefer) in ("", "auto"):
        prefer = os.environ.get("BREASTMRI_DEVICE") or None
    if prefer is None or str(prefer) in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(prefer) if not isinstance(prefer, torch.device) else prefer
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            "CUDA was requested but no CUDA GPU is visible to torch; run with --device cpu."
        )
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceUnavailable(
            "MPS was requested but is not available on this machine; run with --device cpu."
        )
    return dev


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision on CUDA only (bf16 when supported, else fp16); a no-op elsewhere."""
    import torch

    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@contextlib.contextmanager
def inference(device: torch.device) -> Iterator[None]:
    """``torch.inference_mode()`` plus autocast on CUDA: wrap every forward pass in this."""
    import torch

    with torch.inference_mode(), autocast(device):
        yield


def is_oom(err: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError and the MPS/CPU 'out of memory' RuntimeErrors."""
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def _free(device: torch.device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _next_attempt(
    report: DeviceReport, device: torch.device, batch: int, err: BaseException
) -> tuple[Any, int]:
    import torch

    _free(device)
    if batch > 1:
        new = max(1, batch // 2)
        report.messages.append(
            f"{device.type} out of memory with {batch} windows per batch, retried with {new}"
        )
        return device, new
    if device.type != "cpu":
        report.messages.append(f"{device.type} out of memory with one window, fell back to the CPU")
        return torch.device("cpu"), 1
    raise OutOfMemory(
        "The model ran out of memory even on the CPU with one window at a time; close other programs or "
        "use a model with a smaller patch size."
    ) from err


def run_with_fallback(
    fn: Callable[[torch.device, int], T], *, device: torch.device, batch_size: int = 4
) -> tuple[T, DeviceReport]:
    """Call ``fn(device, batch_size)``; on out-of-memory halve the batch, then move to the CPU."""
    report = DeviceReport(requested=str(device), device=str(device), batch_size=batch_size)
    dev, batch = device, max(1, int(batch_size))
    while True:
        try:
            result = fn(dev, batch)
        except Exception as err:
            if not is_oom(err):
                raise
            dev, batch = _next_attempt(report, dev, batch, err)
            continue
        report.device, report.batch_size = str(dev), batch
        return result, report


def run_with_fallback_gen(
    factory: Callable[[torch.device, int], Generator[Progress, None, T]],
    *,
    device: torch.device,
    batch_size: int = 4,
) -> Generator[Progress, None, tuple[T, DeviceReport]]:
    """Generator form of :func:`run_with_fallback`: re-yields progress, restarts on out-of-memory."""
    report = DeviceReport(requested=str(device), device=str(device), batch_size=batch_size)
    dev, batch = device, max(1, int(batch_size))
    while True:
        try:
            result = yield from factory(dev, batch)
        except Exception as err:
            if not is_oom(err):
                raise
            dev, batch = _next_attempt(report, dev, batch, err)
            yield Progress("device", 0.0, report.messages[-1])
            continue
        report.device, report.batch_size = str(dev), batch
        return result, report


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the kernel.

    Why: a CPU training step or a sliding-window pass allocates activations of tens to hundreds
    of megabytes. glibc serves blocks that large with ``mmap`` and unmaps them when they are
    freed, so the next step page-faults every page again and the kernel zeroes it. Measured on
    this project's 2-core machine: about 600 000 page faults per U-Net step of 4 patches, and
    40-80 % of the CPU time spent in the kernel; with the heap kept, none after the first step
    (docs/benchmarks.md). The same as starting Python with ``MALLOC_MMAP_MAX_=0`` and a large
    ``MALLOC_TRIM_THRESHOLD_``. The price is that the process keeps its peak memory until it
    exits, so only the command-line runs call this, never the viewer. Returns False where there
    is no glibc (macOS, Windows, musl), which changes nothing.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
