"""The demo packages' metrics as Markdown, read from their cards (for docs/models.md).

Why generated: the numbers in the docs must be the numbers in the shipped cards, which are the
numbers the training run measured; copying them by hand invites drift. Run::

    python -m napari_breastmri.training.report napari_breastmri/models/weights

and paste (or redirect) the output into docs/models.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: the issue's acceptance targets: metric key -> (comparison, value)
TARGETS: dict[str, tuple[str, float]] = {
    "lesion_sensitivity_at_1fp": (">=", 0.9),
    "dice_mean": (">=", 0.75),
    "auc_macro": (">=", 0.85),
    "auc": (">=", 0.8),
    "ece": ("<=", 0.1),
}


def _verdict(key: str, value: Any, target: str) -> str:
    if key not in TARGETS or value is None:
        return ""
    if key == "auc" and target != "pcr":
        return ""  # the AUC target is stated for pCR only
    op, goal = TARGETS[key]
    ok = value >= goal if op == ">=" else value <= goal
    return f" (target {op} {goal}: {'met' if ok else 'MISSED'})"


def _size(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def package_section(folder: Path) -> str:
    """One package: what it is, its metrics with the targets, how it was trained."""
    from ..models.card import load_card

    card = load_card(folder)
    t = card.training
    lines = [
        f"### {card.name} ({card.task}, target `{card.target}`)",
        "",
        f"{card.description}",
        "",
        f"- channels `{card.inputs.channels}`, spacing {card.inputs.spacing_mm} mm, "
        f"resize_to {card.inputs.resize_to}, patch {card.inputs.patch_size}"
        + (
            f", region {card.inputs.roi['size_mm']} mm around the {card.inputs.roi['around']}"
            if card.inputs.roi
            else ""
        )
        + "; network "
        f"`{card.network.factory}` {card.network.kwargs}; CAM layer `{card.cam.target_layer}`; "
        f"uncertainty {card.uncertainty.method} x{card.uncertainty.passes}",
        f"- package size {_size(folder):.2f} MB",
        f"- trained with: `{t.get('command', '?')}`",
        f"- time on this machine ({t.get('machine', '?')}): {t.get('seconds', '?')} s in all "
        f"(data {t.get('data_seconds', '?')} s shared by the tasks of one run, training "
        f"{t.get('train_seconds', '?')} s, held-out evaluation {t.get('eval_seconds', '?')} s)",
        f"- data: {t.get('data', '?')}",
    ]
    if t.get("init"):
        lines.append(f"- fine-tuned from: {t['init']}")
    if t.get("lineage"):
        lines.append("- lineage (each stage fine-tuned from the one before):")
        lines += [f"  - {stage}" for stage in t["lineage"]]
    if t.get("selection"):
        lines.append(f"- selection: {t['selection']}")
    if t.get("missed_training_lesions"):
        counts = ", ".join(map(str, t["missed_training_lesions"]))
        lines.append(
            f"- training lesions missed (start, half-way, end): {counts} of {t.get('training_lesions', '?')}"
            f" (lesion sampling: {t.get('lesion_sampling', '?')})"
        )
    elif t.get("lesion_sampling"):
        lines.append(f"- lesion sampling: {t['lesion_sampling']} (`--lesion-sampling`)")
    if t.get("evaluation_note"):
        lines.append(f"- evaluation: {t['evaluation_note']}")
    lines += [
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key, value in card.metrics.items():
        lines.append(f"| {key} | {value}{_verdict(key, value, card.target)} |")
    return "\n".join(lines) + "\n"


def models_markdown(weights_dir: str | Path) -> str:
    weights_dir = Path(weights_dir)
    folders = sorted(p for p in weights_dir.iterdir() if (p / "card.yaml").is_file())
    total = sum(_size(p) for p in folders)
    head = f"Shipped demo packages: {len(folders)}, {total:.2f} MB in all.\n\n"
    return head + "\n".join(package_section(p) for p in folders)


if __name__ == "__main__":
    print(
        models_markdown(
            sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / "models" / "weights"
        )
    )
