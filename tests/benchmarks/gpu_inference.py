"""GPU inference benchmark, run by hand on a lent GPU machine (not collected by ``make bench``).

The same figures as bench_inference, on CUDA: a full ``analyze`` of the default phantom case
on the GPU against the same ``analyze`` on that machine's CPU (same process), and our cancellable
sliding window against plain MONAI ``sliding_window_inference`` on the GPU (same network, input,
window, overlap, batch, autocast). CI never has a GPU, so this file is named outside the
``bench_*`` pattern; its output is pasted into docs/benchmarks.md with the machine it ran on.

    python -m tests.benchmarks.gpu_inference
"""

from __future__ import annotations

import os
import statistics
import time

N_REPEAT = 5


def _timed(fn, sync) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def run() -> str:
    import torch
    from monai.inferers import sliding_window_inference

    from napari_breastmri import progress
    from napari_breastmri.inference.device import inference
    from napari_breastmri.inference.pipeline import analyze
    from napari_breastmri.inference.sliding import sliding_window
    from napari_breastmri.models import registry
    from napari_breastmri.models.package import load_package
    from napari_breastmri.phantom import generate_case

    if not torch.cuda.is_available():
        return "## GPU inference (gpu_inference)\n\nNo CUDA device here; nothing measured.\n"
    dev = torch.device("cuda")
    sync = torch.cuda.synchronize
    case = generate_case(7, longitudinal=True)
    study, follow = case.study, case.follow_up.study
    pkgs = [load_package(i.path, origin="shipped") for i in registry.shipped()]

    def full(device: str):
        return progress.run(analyze(study, pkgs, device=device, follow_up=follow))

    full("cuda")  # warm-up: CUDA context, cuDNN autotuning, first allocations
    t_gpu = [_timed(lambda: full("cuda"), sync) for _ in range(3)]
    findings = full("cuda")
    per_model = ", ".join(f"{m.name} {m.seconds:.2f} s on {m.device}" for m in findings.models)
    t_cpu = [_timed(lambda: full("cpu"), sync) for _ in range(2)]

    seg = next(p for p in pkgs if p.card.task in ("segment", "detect"))
    net = seg.build(dev)
    x, _ = seg.prepare_input(study)
    x = x.to(dev)
    roi, ov, bs = seg.card.inputs.patch_size, seg.card.inputs.overlap, seg.card.inputs.sw_batch_size

    def ours():
        with inference(dev):
            return progress.run(sliding_window(net, x, roi, overlap=ov, batch_size=bs, device=dev))

    def plain():
        with inference(dev):
            return sliding_window_inference(x[None], roi, bs, net, overlap=ov, mode="gaussian")[0]

    diff = float((ours().float().cpu() - plain().float().cpu()).abs().max())
    t_ours, t_monai = [], []
    for i in range(N_REPEAT):
        pair = [(t_ours, ours), (t_monai, plain)]
        for times, fn in pair if i % 2 == 0 else reversed(pair):
            times.append(_timed(fn, sync))
    m_ours, m_monai = statistics.median(t_ours), statistics.median(t_monai)
    g, c = statistics.median(t_gpu), statistics.median(t_cpu)
    return (
        "## GPU inference (gpu_inference, run by hand on a lent GPU)\n\n"
        f"Device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}, "
        f"{len(os.sched_getaffinity(0))} CPU cores, torch CPU threads {torch.get_num_threads()}. "
        f"Shipped packages ({len(pkgs)}), phantom seed 7 with its follow-up exam, study {study.shape}.\n\n"
        "| figure | value | goal |\n|---|---|---|\n"
        f"| full `analyze` on CUDA, wall (median of {len(t_gpu)} after a warm-up) | {g:.2f} s | <= 30 s |\n"
        f"| the same `analyze` on this machine's CPU (median of {len(t_cpu)}) | {c:.2f} s | |\n"
        f"| **ratio CPU / CUDA** | **{c / g:.1f}** | |\n"
        f"| per model (CUDA) | {per_model} | |\n"
        f"| sliding window on CUDA, ours / plain MONAI (medians of {N_REPEAT}) | "
        f"{m_ours * 1000:.1f} ms / {m_monai * 1000:.1f} ms = **{m_ours / m_monai:.2f}** | <= 1.1 |\n"
        f"| max abs difference of the blended logits (bf16 autocast) | {diff:.2e} | equal within bf16 |\n"
    )


if __name__ == "__main__":
    print(run())
