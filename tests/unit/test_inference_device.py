"""Device choice and the out-of-memory fallback (OOM is simulated: CI has no GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_breastmri import progress
from napari_breastmri.inference import device as dev
from napari_breastmri.inference.pipeline import analyze

from .test_models_helpers import OOMNet, blob_study, threshold_package

OOM = torch.cuda.OutOfMemoryError


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BREASTMRI_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert dev.pick_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert dev.pick_device().type == "cpu"
    assert dev.pick_device("cpu").type == "cpu"
    monkeypatch.setenv("BREASTMRI_DEVICE", "cpu")
    assert dev.pick_device(None).type == "cpu"


def test_asking_for_an_absent_gpu_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(dev.DeviceUnavailable, match="--device cpu"):
        dev.pick_device("cuda")


def test_autocast_only_on_cuda() -> None:
    import contextlib

    assert isinstance(dev.autocast(torch.device("cpu")), contextlib.nullcontext)


def test_oom_halves_the_batch_then_falls_back_to_cpu() -> None:
    seen: list[tuple[str, int]] = []

    def work(device: torch.device, batch: int) -> str:
        seen.append((device.type, batch))
        if device.type == "cuda":
            raise OOM("CUDA out of memory (simulated)")
        return "done"

    result, report = dev.run_with_fallback(work, device=torch.device("cuda"), batch_size=4)
    assert result == "done"
    assert seen == [("cuda", 4), ("cuda", 2), ("cuda", 1), ("cpu", 1)]
    assert report.device == "cpu" and report.requested == "cuda"
    assert "fell back to the CPU" in report.message and "retried with 2" in report.message


def test_oom_recovers_with_a_smaller_batch_on_the_same_device() -> None:
    def work(device: torch.device, batch: int) -> int:
        if batch > 1:
            raise RuntimeError("MPS backend out of memory (simulated)")
        return batch

    result, report = dev.run_with_fallback(work, device=torch.device("mps"), batch_size=3)
    assert result == 1 and report.device == "mps" and len(report.messages) == 1


def test_oom_on_cpu_with_one_window_is_a_clear_error_and_other_errors_pass_through() -> None:
    def oom(device: torch.device, batch: int) -> None:
        raise OOM("simulated")

    with pytest.raises(dev.OutOfMemory, match="even on the CPU"):
        dev.run_with_fallback(oom, device=torch.device("cpu"), batch_size=1)

    def broken(device: torch.device, batch: int) -> None:
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        dev.run_with_fallback(broken, device=torch.device("cuda"), batch_size=2)


def test_generator_fallback_restarts_and_reports() -> None:
    def work(device: torch.device, batch: int):
        yield progress.Progress("x", 0.5, "")
        if device.type == "cuda":
            raise OOM("simulated")
        return device.type

    steps: list[str] = []
    result, report = progress.run(
        dev.run_with_fallback_gen(work, device=torch.device("cuda"), batch_size=2),
        lambda p: steps.append(p.message),
    )
    assert result == "cpu" and report.device == "cpu"
    assert any("fell back to the CPU" in s for s in steps)


def test_pipeline_retries_with_smaller_sliding_window_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake model that runs out of memory above one window per batch: the run still completes."""
    study, labels = blob_study()
    pkg = threshold_package(tmp_path, sw_batch_size=4)
    fake = OOMNet(max_batch=1)
    monkeypatch.setattr(pkg, "build", lambda device="cpu": fake)
    findings = progress.run(analyze(study, [pkg], device="cpu"))
    run = findings.models[0]
    assert run.device == "cpu"
    assert run.notes == [
        "cpu out of memory with 4 windows per batch, retried with 2",
        "cpu out of memory with 2 windows per batch, retried with 1",
    ]
    assert fake.calls[:2] == [4, 2] and set(fake.calls[2:]) == {1}
    assert len(findings.lesions) == 2
    assert np.array_equal(findings.label_mask > 0, labels > 0)


_FAULTS_CHILD = r"""
import resource, sys
import torch
torch.set_num_threads(1)
if sys.argv[1] == "kept":
    from napari_breastmri.inference.device import keep_freed_memory
    assert keep_freed_memory()
from napari_breastmri.models.networks import LesionUNet
net = LesionUNet(3, 1, (8, 16, 32, 64))
x = torch.randn(2, 3, 32, 64, 64)
for i in range(8):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net(x).sum().backward()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_kept_freed_memory_stops_the_page_faults_of_repeated_steps() -> None:
    """The same forward/backward step, repeated: with the default allocator every step faults its
    activations in again; with freed memory kept, the steps after a warm-up fault (almost) none.

    The last four of eight steps are summed: with memory kept the warm-up took one to four steps
    here (a single last step still faulted 6 144 times in one run of three), while the default
    faulted 2 000-30 000 times in every step."""

    def late_step_faults(variant: str) -> int:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        res = subprocess.run([sys.executable, "-c", _FAULTS_CHILD, variant], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        return sum(int(v) for v in res.stdout.split()[-4:])

    default, kept = late_step_faults("default"), late_step_faults("kept")
    assert default > 20_000  # the activations of one step are tens of megabytes
    assert kept < default / 10


def test_keep_freed_memory_is_a_no_op_without_glibc(monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert dev.keep_freed_memory() is False
