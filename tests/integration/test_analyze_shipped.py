"""The shipped demo packages: each verifies and builds, and all of them run through analyze together.

Their accuracy is the training area's to measure (docs/models.md); here we check that what ships
loads through the safe path and produces well-formed findings on a phantom case.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_breastmri import progress
from napari_breastmri.models import registry
from napari_breastmri.models.package import load_package
from napari_breastmri.types import DEMO_LABEL

SHIPPED = registry.shipped()
pytestmark = pytest.mark.skipif(
    not SHIPPED, reason="no shipped demo packages in napari_breastmri/models/weights yet"
)


@pytest.mark.parametrize("info", SHIPPED, ids=[i.name for i in SHIPPED])
def test_shipped_package_verifies_and_is_labelled_demo(info: registry.PackageInfo) -> None:
    pkg = registry.verify(info.name)
    assert pkg.card.demo and DEMO_LABEL in (pkg.card.description + pkg.card.intended_use)
    assert pkg.card.weights.format in ("safetensors", "torch", "torchscript")


@pytest.mark.slow
def test_all_shipped_packages_run_on_a_phantom_case() -> None:
    import torch

    from napari_breastmri.phantom import generate_case

    torch.set_num_threads(2)
    # a case with a cancer, so the detector finds an index lesion for the region-reading models
    case = generate_case(11, shape=(32, 128, 128), spacing=(3.0, 1.6, 1.6), longitudinal=True, cancer=True)
    pkgs = [load_package(i.path, origin="shipped") for i in SHIPPED if i.task != "interactive-segment"]
    findings = progress.run(analyze_all(case, pkgs))
    assert findings.lesions, "the demo detector found no lesion on a case with a cancer"
    assert {m.name for m in findings.models} == {p.card.name for p in pkgs}
    assert all(m.demo and m.device == "cpu" for m in findings.models)
    by_model = {pred.model: pred for pred in findings.case_predictions.values()}
    for p in pkgs:
        if p.card.task == "classify":
            pred = by_model[p.card.label]
            assert set(pred.probabilities) == set(p.card.outputs.classes)
            if p.card.outputs.activation == "softmax":
                assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    for lesion in findings.lesions:
        z0, y0, x0, z1, y1, x1 = lesion.bbox
        assert 0 <= z0 < z1 <= 32 and 0 <= y0 < y1 <= 128 and 0 <= x0 < x1 <= 128
    if findings.label_mask is not None:
        assert findings.label_mask.shape == (32, 128, 128)
        assert set(np.unique(findings.label_mask)) - {0} <= {les.label for les in findings.lesions}


def analyze_all(case, pkgs):
    from napari_breastmri.inference.pipeline import analyze

    return analyze(case.study, pkgs, device="cpu", follow_up=case.follow_up.study)
