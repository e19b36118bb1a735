"""FTV of phantom lesions against the phantom's true enhancing volume: the table in docs/kinetics.md.

Why a module (and not a notebook): the unit test and the documentation draw the same box around
each lesion and apply the same rule for which lesions the "within 10 %" criterion is meaningful
on, so a change in either shows in both. Run ``python -m napari_breastmri.phantom.ftv_check
--seeds 1-24`` for the Markdown table.

When the criterion is meaningful (``ftv_limit`` returns None), and why the other lesions are
reported but not held to it (the reasons are physics of the measurement, not of the code):

* ``small``: a lesion under 10 mm has few voxels and most lie on its partial-volume shell, where
  one noisy voxel is already several % of the volume.
* ``weak``: the noise-free early enhancement of the lesion core is under 100 %, so much of the
  lesion sits within noise of the 70 % threshold and FTV counts a noise-decided share of it.
* ``bpe``: moderate background parenchymal enhancement reaches ~68 % noise-free (noise lifts half
  of it over 70 %) and marked BPE ~125 %; FTV counts the enhancing gland connected to the lesion
  inside the box (the BPE over-estimation the I-SPY investigators report; they draw exclusion
  regions by hand).
* ``oedema``: the phantom's peritumoral oedema halo enhances ~80 % noise-free (long T1, so a
  small absolute enhancement is a large percentage); FTV counts it, the truth (the lesion's own
  voxels) does not.
* ``nme``: non-mass enhancement is clumped; its FTV is a volume of clumps inside a box that also
  holds gland, and I-SPY's FTV is a mass measure.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import kinetics as kin
from ..types import DEMO_LABEL

#: the margin a reader leaves around a lesion when drawing an FTV box
BOX_MARGIN_MM = 3.0
MIN_DIAMETER_MM = 10.0
MIN_CORE_PE = 1.0
LIMIT_REASONS = {
    "nme": "non-mass enhancement (clumps in gland; FTV is a mass measure)",
    "small": f"diameter < {MIN_DIAMETER_MM:g} mm (the partial-volume shell dominates)",
    "weak": f"core PE < {100 * MIN_CORE_PE:.0f} % (much of the lesion is within noise of 70 %)",
    "bpe": "moderate/marked BPE in the box (FTV counts enhancing gland)",
    "oedema": "peritumoral oedema (enhances ~80 % in this phantom; FTV counts it)",
}


def reader_box(
    bbox: Sequence[int], spacing: Sequence[float], shape: Sequence[int], margin_mm: float = BOX_MARGIN_MM
):
    """The lesion's tight box grown by ``margin_mm`` on every side (whole voxels), clipped to the grid."""
    m = [int(np.ceil(margin_mm / float(s))) for s in spacing]
    lo = [max(0, int(bbox[a]) - m[a]) for a in range(3)]
    hi = [min(int(shape[a]), int(bbox[a + 3]) + m[a]) for a in range(3)]
    return lo + hi


def core_pe(truth: dict[str, Any], lesion: dict[str, Any]) -> float:
    """Noise-free early enhancement (fraction) of the lesion core from truth's mean curve."""
    curve = lesion["mean_curve"]
    early = truth["phase_labels"].index(truth["early_phase"])
    return float(curve[early] / curve[0] - 1.0) if curve[0] > 0 else 0.0


def ftv_limit(truth: dict[str, Any], lesion: dict[str, Any]) -> str | None:
    """Why the 10 % criterion is not meaningful for this lesion (a LIMIT_REASONS key), or None."""
    if lesion["type"] != "mass":
        return "nme"
    if lesion["diameter_mm"] < MIN_DIAMETER_MM:
        return "small"
    if core_pe(truth, lesion) < MIN_CORE_PE:
        return "weak"
    if truth["anatomy"]["bpe"] in ("moderate", "marked"):
        return "bpe"
    if lesion["role"] == "index" and truth.get("correlates", {}).get("edema_mm", 0.0) > 0:
        return "oedema"
    return None


def ftv_rows(cases: Iterable[Any], margin_mm: float = BOX_MARGIN_MM) -> list[dict[str, Any]]:
    """One row per lesion: FTV of a reader's box and of the tight box over the true enhancing volume."""
    rows = []
    for case in cases:
        study, truth = case.study, case.truth
        for les in truth["lesions"]:
            true_ml = float(les["enhancing_volume_ml"])
            box = reader_box(les["bbox"], study.spacing, study.shape, margin_mm)
            res = kin.ftv(study, box)
            tight = kin.ftv(study, les["bbox"]).volume_ml
            rows.append(
                {
                    "case": truth["case_id"],
                    "seed": int(truth["seed"]),
                    "lesion": les["id"],
                    "diagnosis": les["diagnosis"],
                    "shape": les["shape"],
                    "diameter_mm": float(les["diameter_mm"]),
                    "curve_type": les["curve_type"],
                    "core_pe": core_pe(truth, les),
                    "fat_sat": bool(truth["anatomy"]["fat_saturation"]),
                    "bpe": truth["anatomy"]["bpe"],
                    "true_ml": true_ml,
                    "ftv_ml": res.volume_ml,
                    "ratio": res.volume_ml / true_ml if true_ml > 0 else float("nan"),
                    "ratio_tight_box": tight / true_ml if true_ml > 0 else float("nan"),
                    "limit": ftv_limit(truth, les),
                }
            )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, held lesions first, with a summary line."""
    head = (
        "| case | lesion | diagnosis, shape | diam. mm | curve | core PE | fat-sat | BPE | true ml | FTV ml "
        "| FTV / true | tight box | criterion |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in sorted(rows, key=lambda r: (r["limit"] is not None, r["limit"] or "", r["seed"], r["lesion"])):
        held = "held" if r["limit"] is None else f"not held: {r['limit']}"
        lines.append(
            f"| {r['case']} | {r['lesion']} | {r['diagnosis']}, {r['shape']} | {r['diameter_mm']:.1f} "
            f"| {r['curve_type']} | {100 * r['core_pe']:.0f} % | {'yes' if r['fat_sat'] else 'no'} | {r['bpe']} "
            f"| {r['true_ml']:.3f} | {r['ftv_ml']:.3f} | **{r['ratio']:.3f}** | {r['ratio_tight_box']:.3f} | {held} |"
        )
    held = [r["ratio"] for r in rows if r["limit"] is None]
    summary = ""
    if held:
        worst = max(abs(x - 1.0) for x in held)
        inside = sum(abs(x - 1.0) <= 0.10 for x in held)
        summary = (
            f"\nHeld lesions: {inside}/{len(held)} within 10 % (ratio {min(held):.3f} to {max(held):.3f}, "
            f"worst |error| {100 * worst:.1f} %).\n"
        )
    return head + "\n".join(lines) + "\n" + summary


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the FTV / truth table for phantom cases (``--seeds 1-24``, three lesions each)."""
    from .case import generate_case

    ap = argparse.ArgumentParser(prog="python -m napari_breastmri.phantom.ftv_check", description=__doc__)
    ap.add_argument("--seeds", default="1-24", help="seeds, e.g. 1-24 or 1,5,9 (default 1-24)")
    ap.add_argument("--n-lesions", type=int, default=3)
    ap.add_argument("--margin-mm", type=float, default=BOX_MARGIN_MM)
    args = ap.parse_args(argv)
    cases = (generate_case(s, n_lesions=args.n_lesions) for s in _seeds(args.seeds))
    print(f"<!-- {DEMO_LABEL} -->")
    print(markdown_table(ftv_rows(cases, args.margin_mm)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
