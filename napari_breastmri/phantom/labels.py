"""Case labels and their INVENTED image correlates.

Nothing here is clinical knowledge to be relied on: the tables below are made up (loosely
flavoured by the literature) so that a small 3D CNN can learn each label from the image and an
explanation can be checked against a known cause. docs/phantom.md states them in prose.

Why the labels drive the image and not the reverse: the generator first draws the labels of a
case (subtype, pCR, node status), then draws the index lesion's size, shape, rim, oedema,
satellites and kinetics from label-dependent distributions, with a share of cases drawn from
another subtype's morphology so that the mapping is learnable but not perfect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUBTYPES = ["luminal_a", "luminal_b", "her2_enriched", "triple_negative"]
PCR = ["no_pcr", "pcr"]
LYMPH_NODE = ["negative", "positive"]
SCREENING = ["normal", "needs_review"]
CLASSES = {"subtype": SUBTYPES, "pcr": PCR, "lymph_node": LYMPH_NODE, "screening": SCREENING}

#: INVENTED subtype traits of the index (malignant) mass.
#: diam: longest diameter (mm); shapes: probabilities; ktrans (/min), ve, vp: uniform ranges;
#: het: coefficient of variation of Ktrans inside the lesion; edema / satellite: probabilities;
#: p_pcr / p_node: prior probability of pCR and of positive axillary nodes.
SUBTYPE_TRAITS: dict[str, dict] = {
    "luminal_a": {
        "diam": (6.0, 12.0),
        "shapes": {"spiculated": 0.65, "irregular": 0.2, "oval": 0.15},
        "ktrans": (0.12, 0.22),
        "ve": (0.35, 0.45),
        "vp": (0.01, 0.03),
        "het": (0.08, 0.2),
        "edema": 0.0,
        "satellite": 0.0,
        "p_pcr": 0.12,
        "p_node": 0.2,
    },
    "luminal_b": {
        "diam": (13.0, 20.0),
        "shapes": {"irregular": 0.6, "spiculated": 0.25, "round": 0.15},
        "ktrans": (0.35, 0.6),
        "ve": (0.35, 0.45),
        "vp": (0.02, 0.05),
        "het": (0.15, 0.3),
        "edema": 0.2,
        "satellite": 0.1,
        "p_pcr": 0.25,
        "p_node": 0.45,
    },
    "her2_enriched": {
        "diam": (20.0, 28.0),
        "shapes": {"irregular": 0.6, "oval": 0.25, "round": 0.15},
        "ktrans": (0.8, 1.3),
        "ve": (0.22, 0.3),
        "vp": (0.05, 0.09),
        "het": (0.2, 0.35),
        "edema": 0.35,
        "satellite": 0.85,
        "p_pcr": 0.55,
        "p_node": 0.5,
    },
    "triple_negative": {
        "diam": (28.0, 40.0),
        "shapes": {"rim": 0.85, "round": 0.075, "oval": 0.075},
        "ktrans": (0.9, 1.4),
        "ve": (0.22, 0.3),
        "vp": (0.04, 0.08),
        "het": (0.25, 0.4),
        "edema": 0.9,
        "satellite": 0.0,
        "p_pcr": 0.45,
        "p_node": 0.4,
    },
}
SUBTYPE_PRIOR = [0.3, 0.25, 0.2, 0.25]
#: share of cancers whose morphology is drawn from another subtype (label noise in the image)
MORPHOLOGY_SWAP = 0.08
#: share of luminal A cancers with a persistent (benign-looking) curve: a documented exception
LUMINAL_A_PERSISTENT = 0.25
#: share of benign masses with a plateau/washout curve (vascular fibroadenoma, papilloma)
BENIGN_SUSPICIOUS_CURVE = 0.15


@dataclass
class CaseLabels:
    """Labels of one case; subtype / pcr / lymph_node are None for a case with no invasive cancer."""

    cancer: bool
    subtype: str | None
    pcr: str | None
    lymph_node: str | None
    screening: str = "normal"

    def as_dict(self) -> dict:
        return {
            "subtype": self.subtype,
            "pcr": self.pcr,
            "lymph_node": self.lymph_node,
            "screening": self.screening,
        }


def draw_labels(rng: np.random.Generator, cancer: bool) -> CaseLabels:
    """Draw subtype, then pCR and node status from subtype priors (screening is set later)."""
    if not cancer:
        return CaseLabels(False, None, None, None)
    subtype = str(rng.choice(SUBTYPES, p=SUBTYPE_PRIOR))
    traits = SUBTYPE_TRAITS[subtype]
    pcr = "pcr" if rng.random() < traits["p_pcr"] else "no_pcr"
    node = "positive" if rng.random() < traits["p_node"] else "negative"
    return CaseLabels(True, subtype, pcr, node)


def morphology_subtype(rng: np.random.Generator, subtype: str) -> str:
    """The subtype whose traits shape the image: usually the true one, sometimes another."""
    if rng.random() < MORPHOLOGY_SWAP:
        others = [s for s in SUBTYPES if s != subtype]
        return str(rng.choice(others))
    return subtype


#: INVENTED pCR correlates. At baseline a responder's tumour is smaller, enhances more strongly
#: (Ktrans x1.3) and more homogeneously (heterogeneity x0.5). In the early-treatment exam a
#: responder's tumour shrinks to 35-60 % of its diameter with Ktrans at 20-45 %; a non-responder
#: stays at 80-102 % with Ktrans at 65-100 % (10 % of non-responders are partial responders).
PCR_BASELINE = {
    "pcr": {"ktrans": 1.3, "het": 0.5, "diam": 0.85},
    "no_pcr": {"ktrans": 0.95, "het": 1.2, "diam": 1.05},
}
PCR_FOLLOW_UP = {
    "pcr": {"diam": (0.35, 0.6), "ktrans": (0.2, 0.45)},
    "no_pcr": {"diam": (0.8, 1.02), "ktrans": (0.65, 1.0)},
    "partial": {"diam": (0.55, 0.75), "ktrans": (0.45, 0.65)},
}
PARTIAL_RESPONDERS = 0.1
