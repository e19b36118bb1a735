"""A quick-look figure of a phantom case: pre-contrast, early subtraction, MIP, truth, curves.

Why here: the docs and reviewers need to *see* what the phantom makes without a viewer; this is
the figure in docs/phantom.md (``python -m napari_breastmri.phantom.figure SEED OUT.png``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..types import DEMO_LABEL
from .case import PhantomCase

TISSUE_COLOURS = ["#000000", "#f2c14e", "#c0504d", "#8b3a3a", "#9b7fd4", "#3c6e71", "#e377c2", "#7f7f7f"]


def case_figure(case: PhantomCase, path: str | Path, z: int | None = None) -> Path:
    """Write a 2 x 3 panel PNG of ``case`` (axial study grid) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    s = case.study
    lesions = case.truth["lesions"]
    if z is None:
        z = int(round(lesions[0]["center_zyx"][0])) if lesions else s.shape[0] // 2
    early = s.phase_labels.index(case.truth["early_phase"])
    sub = s.data[early] - s.data[0]
    hi = float(np.percentile(sub, 99.8))
    aspect = s.spacing[1] / s.spacing[2]
    fig, ax = plt.subplots(2, 3, figsize=(13.5, 9.2))
    ax[0, 0].imshow(s.data[0, z], cmap="gray", aspect=aspect)
    ax[0, 0].set_title(f"pre-contrast, slice {z}")
    ax[0, 1].imshow(sub[z], cmap="gray", vmin=0, vmax=hi, aspect=aspect)
    ax[0, 1].set_title(f"subtraction {s.phase_labels[early]} - pre")
    ax[0, 2].imshow(sub.max(axis=0), cmap="gray", vmin=0, vmax=hi * 1.2, aspect=aspect)
    ax[0, 2].set_title("subtraction MIP (all slices)")
    ax[1, 0].imshow(s.data[0, z], cmap="gray", aspect=aspect)
    for les in lesions:
        z0, y0, x0, z1, y1, x1 = les["bbox"]
        if z0 <= z < z1:
            m = case.label_mask[z] == les["id"]
            if m.any():
                ax[1, 0].contour(m, levels=[0.5], colors="red", linewidths=0.8)
            ax[1, 0].add_patch(
                plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=0.8)
            )
            ax[1, 0].text(x0, y0 - 3, f"{les['id']}: {les['shape']}", color="yellow", fontsize=8)
    ax[1, 0].set_title("truth: mask (red) and box (yellow)")
    if case.tissue is not None:
        ax[1, 1].imshow(
            case.tissue[z],
            cmap=ListedColormap(TISSUE_COLOURS),
            vmin=0,
            vmax=7,
            aspect=aspect,
            interpolation="nearest",
        )
        ax[1, 1].set_title("tissue classes (fat, skin, muscle, bone, lung, blood, FGT)")
    for les in lesions:
        t = np.asarray(s.times) / 60.0
        ax[1, 2].plot(
            t, les["mean_curve"], "o-", label=f"{les['id']} {les['diagnosis']}: {les['curve_type']}"
        )
    ax[1, 2].set_xlabel("time (min)")
    ax[1, 2].set_ylabel("noise-free mean signal")
    ax[1, 2].set_title("lesion curves (truth)")
    if lesions:
        ax[1, 2].legend(fontsize=8)
    for a in list(ax.flat)[:5]:
        a.axis("off")
    lab = case.truth["labels"]
    fig.suptitle(
        f"{case.case_id}  subtype={lab['subtype']}  pcr={lab['pcr']}  nodes={lab['lymph_node']}  "
        f"screening={lab['screening']}  BPE={case.truth['anatomy']['bpe']}  ({DEMO_LABEL})",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


if __name__ == "__main__":  # python -m napari_breastmri.phantom.figure SEED OUT.png [fu]
    from .case import generate_case

    seed, out = int(sys.argv[1]), sys.argv[2]
    c = generate_case(seed, longitudinal=len(sys.argv) > 3)
    case_figure(c.follow_up if len(sys.argv) > 3 else c, out)
