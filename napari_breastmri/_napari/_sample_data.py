"""Sample data: synthetic phantom cases (File > Open Sample), with their truth as hidden layers.

Everything here is labelled "synthetic demo - not for clinical use"; the truth layers start
hidden so a reader can look first and compare after.
"""

from __future__ import annotations

# the seed of the embedded demo case: one case everywhere (view --demo, analyze --demo, samples)
from ..phantom import DEMO_SEED
from ..types import DEMO_LABEL
from ._layers import LayerDataTuple, study_layers, truth_layers


def phantom_layers(seed: int = DEMO_SEED, protocol: str = "conventional", **kwargs) -> list[LayerDataTuple]:
    """Generate one phantom case and return its study layers plus hidden truth layers."""
    from ..phantom import generate_case

    case = generate_case(seed, protocol=protocol, **kwargs)
    study = case.study
    study.meta.setdefault("synthetic", True)
    study.meta.setdefault("demo_label", DEMO_LABEL)
    study.meta.setdefault("truth", case.truth)
    layers = study_layers(study)
    layers[0][1]["metadata"]["breastmri"]["truth"] = case.truth
    layers[0][1]["metadata"]["breastmri"]["label_mask"] = case.label_mask
    layers.extend(truth_layers(case.label_mask, case.truth, study.affine))
    return layers


def synthetic_case() -> list[LayerDataTuple]:
    """A conventional-protocol phantom (pre + 5 post-contrast phases)."""
    return phantom_layers(DEMO_SEED, "conventional")


def synthetic_ultrafast_case() -> list[LayerDataTuple]:
    """An ultrafast-protocol phantom (dense early frames, then conventional phases)."""
    return phantom_layers(DEMO_SEED + 1, "ultrafast")
