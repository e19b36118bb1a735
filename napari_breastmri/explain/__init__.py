"""Explanations: CAM heatmaps of 3D networks on multi-phase breast MRI, and how far to trust them.

* :func:`compute_cam` (:mod:`.cam`): Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM, XGrad-CAM,
  Eigen-CAM, Score-CAM on the model's input grid, in [0, 1], hooks always released;
* :func:`explain_study` (:mod:`.study`): a package's heatmap placed on the study grid through
  world space, with per-phase attribution, CAM x kinetics and (optionally) faithfulness scores;
* :mod:`.faithfulness`: deletion/insertion AUC, pointing game, randomisation check, and
  :func:`describe`, the one-line plain-language reading shown in the viewer;
* :mod:`.attribution`: per-channel (per-phase) evidence, occlusion and integrated gradients.

Importing this package does not import torch; the functions do, when called.
"""

from .cam import METHODS, REFERENCES, compute_cam, display_name
from .faithfulness import describe
from .study import ExplanationError, explain_study

__all__ = [
    "METHODS",
    "REFERENCES",
    "ExplanationError",
    "compute_cam",
    "describe",
    "display_name",
    "explain_study",
]
