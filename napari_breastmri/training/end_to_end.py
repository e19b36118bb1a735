"""The shipped demos measured the way a user meets them: ``analyze`` on whole held-out cases.

Why besides the cards' metrics: a card's classifier metrics come from regions centred on the
*true* index lesion, but in the pipeline the region is centred on the lesion the *detector* found
(the largest one), so a missed or wrong detection costs the classifier too. This runs the shipped
packages together through :func:`napari_breastmri.inference.pipeline.analyze` on held-out phantom
cases (the follow-up exam included, for the pair model) and scores every case-level prediction
against the phantom's truth: AUC and ECE per model, and how often the region models had a
lesion to read.

    python -m napari_breastmri.training.end_to_end --cases 60 --out /tmp/e2e.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cli import TEST_SEED0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=60, help="held-out phantom cases (seeds from 900000000)")
    p.add_argument("--first", type=int, default=0, help="index of the first held-out seed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--out", default=None, help="also write the numbers as JSON here (updated after each case)"
    )
    p.add_argument("--rows", default=None, help="score the rows of an earlier --out file instead of running")
    return p.parse_args(argv)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from .. import progress
    from ..inference.pipeline import analyze
    from ..models import registry
    from ..models.package import load_package
    from ..phantom import generate_case
    from . import metrics as M

    torch.set_num_threads(args.threads)
    pkgs = [load_package(i.path, origin="shipped") for i in registry.shipped()]
    rows: list[dict[str, Any]] = json.loads(Path(args.rows).read_text())["rows"] if args.rows else []
    for k in range(0 if args.rows else args.cases):
        seed = TEST_SEED0 + args.first + k
        t0 = time.perf_counter()
        case = generate_case(seed, longitudinal=True)
        findings = progress.run(analyze(case.study, pkgs, device="cpu", follow_up=case.follow_up.study))
        preds = {p.model: p.probabilities for p in findings.case_predictions.values()}
        found = [les.bbox for les in findings.lesions]
        lesions = [
            {
                "kind": les["type"],
                "malignant": bool(les["malignant"]),
                "diameter_mm": les["diameter_mm"],
                "curve_type": les["curve_type"],
                "found": any(M.box_hits(b, les["bbox"]) for b in found),
            }
            for les in case.truth["lesions"]
        ]
        false_pos = sum(not any(M.box_hits(b, t["bbox"]) for t in case.truth["lesions"]) for b in found)
        rows.append(
            {
                "seed": seed,
                "labels": case.truth["labels"],
                "predictions": preds,
                "lesions": lesions,
                "false_positives": int(false_pos),
            }
        )
        if args.out:  # after every case: a long run stopped halfway keeps what it measured
            _save(args.out, {"rows": rows})
        print(
            f"[e2e] {seed}: {len(findings.lesions)} lesions, {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
    summary: dict[str, Any] = {"cases": len(rows), "models": {}}
    for pkg in pkgs:
        card = pkg.card
        if card.task != "classify":
            continue
        classes = card.outputs.classes
        got = [r for r in rows if r["labels"].get(card.target) in classes]
        ran = [r for r in got if card.label in r["predictions"]]
        entry: dict[str, Any] = {"target": card.target, "labelled_cases": len(got), "predicted": len(ran)}
        if ran:
            y = np.array([classes.index(r["labels"][card.target]) for r in ran])
            probs = np.array([[r["predictions"][card.label][c] for c in classes] for r in ran])
            probs = probs / probs.sum(axis=1, keepdims=True)  # rounded MC means sum to 1 +- 1e-4
            if len(np.unique(y)) > 1:
                entry["auc"] = round(float(M.auc(y, probs)), 4)
            entry["ece"] = round(float(M.expected_calibration_error(y, probs)), 4)
            entry["accuracy"] = round(float(M.accuracy(y, probs)), 4)
        summary["models"][card.label] = entry
    summary["detection"] = detection_table(rows)
    return {"summary": summary, "rows": rows}


def detection_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Found / total truth lesions by group (the cards' hit rule: box centre inside, or IoU > 0.1)."""
    les = [x for r in rows for x in r.get("lesions", [])]
    groups = {
        "all": les,
        "malignant": [x for x in les if x["malignant"]],
        "benign": [x for x in les if not x["malignant"]],
        "under 10 mm": [x for x in les if x["diameter_mm"] < 10],
        "10 mm or more": [x for x in les if x["diameter_mm"] >= 10],
        "persistent curve": [x for x in les if x["curve_type"] == "persistent"],
        "plateau or washout": [x for x in les if x["curve_type"] in ("plateau", "washout")],
        "non-mass": [x for x in les if x["kind"] != "mass"],
    }
    out: dict[str, Any] = {k: f"{sum(x['found'] for x in v)}/{len(v)}" for k, v in groups.items() if v}
    if any("false_positives" in r for r in rows):
        out["false_positives_per_case"] = round(
            sum(r.get("false_positives", 0) for r in rows) / max(1, len(rows)), 3
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    result = evaluate(args)
    print(json.dumps(result["summary"], indent=2))
    if args.out:
        _save(args.out, result)
    return 0


def _save(path: str, doc: dict[str, Any]) -> None:
    from .._atomic import write_text

    write_text(Path(path), json.dumps(doc, indent=1))


if __name__ == "__main__":
    sys.exit(main())
