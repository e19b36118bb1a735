"""Measure a trained classifier package again, with the current evaluation, on its own cases.

    python -m napari_breastmri.training.remeasure napari_breastmri/models/weights/demo-screening \
        --task screening --out /tmp/remeasured

Why: when the evaluation changes (stop 13: the temperature fitted to, and the metrics measured on,
the MC-dropout mean the pipeline reports), a package trained before can be measured the new way
without training it again. The validation and held-out cases are the ones ``breastmri train``
draws for the same ``--seed`` and counts (phantom seeds ``seed * 10000 + 5000 + i`` and
``900000000 + i``); the temperature is refitted and written into the package, the other weights
are kept, and the card's metrics are replaced and its ``training.evaluation_note`` says so. Also
prints a bootstrap 95 % interval of the ECE, which says how far a difference of calibration on
this many cases means anything.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cli import TEST_SEED0

NOTE = (
    "metrics re-measured by `python -m napari_breastmri.training.remeasure` (the current "
    "training.loops.evaluate_classifier: temperature fitted to the MC-dropout mean) on the validation "
    "and held-out cases of the recorded seed; the weights other than the temperature are the trained ones"
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("package", help="the package folder to measure")
    p.add_argument("--task", required=True, help="the training task it was made by (subtype, pcr, ...)")
    p.add_argument("--seed", type=int, default=7, help="the seed it was trained with [7]")
    p.add_argument("--val-cases", type=int, default=160, help="validation cases [160]")
    p.add_argument("--test-cases", type=int, default=100, help="held-out cases [100]")
    p.add_argument("--cache", default=None, help="cache folder for preprocessed phantom cases")
    p.add_argument("--workers", type=int, default=1, help="processes generating phantom cases [1]")
    p.add_argument("--out", required=True, help="folder to write the re-measured package into")
    return p.parse_args(argv)


def ece_interval(
    labels: np.ndarray, probs: np.ndarray, draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """The bootstrap 95 % interval of the ECE over the cases (resampled with replacement)."""
    from . import metrics as M

    rng = np.random.default_rng(seed)
    n = len(labels)
    values = [
        M.expected_calibration_error(labels[i], probs[i])
        for i in (rng.integers(0, n, n) for _ in range(draws))
    ]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def remeasure(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    from .. import progress
    from ..models.package import load_package, save_package
    from . import loops
    from .data import fill_phantom_cache, phantom_samples
    from .tasks import get_task

    spec = get_task(args.task)
    card = spec.parsed_card()
    cache = Path(args.cache) if args.cache else None
    val_seeds = [args.seed * 10_000 + 5_000 + i for i in range(args.val_cases)]
    test_seeds = [TEST_SEED0 + i for i in range(args.test_cases)]
    # the pair model reads the follow-up exam too (the baseline exam is the same either way)
    kw: dict[str, Any] = {"cache_dir": cache, "longitudinal": spec.longitudinal}
    if args.workers > 1:
        progress.run(fill_phantom_cache(val_seeds + test_seeds, {spec.key: card}, workers=args.workers, **kw))
    val = list(phantom_samples(val_seeds, card, **kw))
    test = list(phantom_samples(test_seeds, card, keep_truth=True, **kw))
    src = Path(args.package)
    net = load_package(src).build("cpu")
    t0 = time.perf_counter()
    metrics = loops.evaluate_classifier(spec, net, val, test)
    metrics["evaluated_on"] = "held-out synthetic phantom cases"
    pass_logits, labels = loops.mc_dropout_logits(net, test, loops.MC_PASSES, seed=1)
    interval = ece_interval(labels, loops.mean_probabilities(pass_logits, float(net.temperature)))
    doc = yaml.safe_load((src / "card.yaml").read_text(encoding="utf-8"))
    doc["metrics"] = metrics
    doc.setdefault("training", {})["eval_seconds"] = round(time.perf_counter() - t0, 1)
    doc["training"]["evaluation_note"] = NOTE
    save_package(Path(args.out), doc, net)
    return {"metrics": metrics, "ece_bootstrap_95": interval}


def main(argv: list[str] | None = None) -> int:
    import torch

    args = _parse(argv)
    torch.set_num_threads(2)
    out = remeasure(args)
    for key, value in out["metrics"].items():
        print(f"  {key}: {value}")
    low, high = out["ece_bootstrap_95"]
    print(f"  ece bootstrap 95 % interval: {low:.3f}-{high:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
