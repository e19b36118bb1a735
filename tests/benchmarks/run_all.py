"""`make bench`: run every benchmark module and write docs/benchmarks.md.

Each ``tests/benchmarks/bench_*.py`` exposes ``run() -> str``, a Markdown section that reports
its figures as ratios against a peer measured in the same process or run (dcm2niix, SimpleITK,
scipy's curve_fit loop, plain MONAI ...). Benchmarks never gate CI; they document.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--only", nargs="*", help="module names (bench_io ...) to run")
    args = parser.parse_args(argv)
    import torch  # noqa: F401  (import before any viewer; it also fixes the thread count below)

    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if args.only:
        names = [n for n in names if n in args.only]
    sections = []
    for name in names:
        start = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"tests.benchmarks.{name}")
            sections.append(module.run())
        except Exception:  # a broken benchmark is reported in the document, not hidden
            sections.append(f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()}\n```\n")
        print(f"[bench] {name} done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    header = (
        "# Benchmarks\n\n"
        "Written by `make bench` (tests/benchmarks/run_all.py); every figure below comes from that "
        "command on the machine named here. Goals are stated as ratios against a peer run in the same "
        "process, so they do not depend on the machine's speed.\n\n"
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}, "
        f"cores available: {len(__import__('os').sched_getaffinity(0))}. "
        f"Date: {time.strftime('%Y-%m-%d')}.\n\n"
        "GPU figures cannot come from this command (CI has no GPU); those measured by hand on a lent "
        "GPU are in [benchmarks-gpu.md](benchmarks-gpu.md).\n\n"
    )
    Path(args.out).write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
