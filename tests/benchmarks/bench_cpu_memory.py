"""Kept freed memory on the CPU (``inference.device.keep_freed_memory``) against glibc's default.

Each variant runs in a fresh child process, because the setting is process-wide and cannot be
undone: the same U-Net training steps (the demo detector's network, patches of its card's size)
and the same sliding-window pass over a phantom case's model grid. Reported: wall and CPU time
per step (user and kernel) and page faults, after one warm-up step, and the ratio kept / default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

STEPS = 4
BATCH = 4

CHILD = r"""
import json, resource, sys, time
import numpy as np
import torch
torch.set_num_threads(2)
if sys.argv[1] == "kept":
    from napari_breastmri.inference.device import keep_freed_memory
    assert keep_freed_memory(), "no glibc mallopt here"
from monai.inferers import sliding_window_inference
from napari_breastmri.models.networks import LesionUNet
from napari_breastmri.training.tasks import get_task

spec = get_task("seg")
torch.manual_seed(0)
net = LesionUNet(in_channels=3, out_channels=1, features=spec.features)
opt = torch.optim.AdamW(net.parameters(), 1e-3)
x = torch.randn(BATCH, 3, *spec.patch_size)
y = (torch.rand(BATCH, 1, *spec.patch_size) > 0.95).float()

def measure(fn, n):
    rows = []
    for i in range(n + 1):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if i:  # the first one warms up (allocator, oneDNN kernels)
            rows.append([t1 - t0, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt])
    return np.median(np.array(rows), axis=0).tolist()

def train_step():
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

grid = torch.randn(1, 3, 48, 128, 128)
net.eval()
def window_pass():
    with torch.inference_mode():
        sliding_window_inference(grid, tuple(spec.patch_size), 4, net, overlap=0.5, mode="gaussian")
net.train()
out = {"train": measure(train_step, STEPS)}
net.eval()
out["infer"] = measure(window_pass, 2)
print(json.dumps(out))
"""


def _child(variant: str) -> dict[str, list[float]]:
    code = CHILD.replace("BATCH", str(BATCH)).replace("STEPS", str(STEPS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    res = subprocess.run(
        [sys.executable, "-c", code, variant],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def run() -> str:
    default, kept = _child("default"), _child("kept")
    rows = []
    for key, what in (("train", f"U-Net training step ({BATCH} patches)"), ("infer", "sliding-window pass")):
        d, k = default[key], kept[key]
        rows.append(
            f"| {what} | {d[0]:.2f} s ({d[1]:.2f} user + {d[2]:.2f} kernel), {d[3]:,.0f} faults "
            f"| {k[0]:.2f} s ({k[1]:.2f} user + {k[2]:.2f} kernel), {k[3]:,.0f} faults "
            f"| **{k[0] / d[0]:.2f}** |"
        )
    load = os.getloadavg()[0]
    return (
        "## CPU memory reuse (bench_cpu_memory)\n\n"
        "`inference.device.keep_freed_memory()` (glibc `mallopt`: no `mmap` for large blocks, no "
        "trimming), called by `breastmri train`, `analyze` and `explain` when they run as a process's "
        "command, against glibc's default, each in a fresh child process with 2 torch threads. "
        f"Medians after one warm-up (training: {STEPS} steps; sliding window: 2 passes over a "
        f"(48, 128, 128) model grid). Load average at the end: {load:.1f}.\n\n"
        "| work | glibc default: wall (CPU), page faults | memory kept | ratio kept / default, wall |\n"
        "|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "Why it matters: the default hands every freed activation back to the kernel, which must "
        "zero each page again on the next step. The price is that the process keeps its peak "
        "memory until it exits, so the viewer never calls it.\n"
    )


if __name__ == "__main__":
    print(run())
