"""Kinetics of breast DCE-MRI: forward physics, quantitative fits, maps on the study grid.

Why one package: the phantom generates images with the same forward model that the fits invert,
and the viewer, report and explain code read the same maps. Everything is vectorised numpy on
the study grid ((phase, z, y, x) float32), importable with no GUI and no torch.
"""

from .breast import body_mask, breast_region, tissue_mask
from .fit import TOFTS_BOUNDS, fit_patlak, fit_tofts
from .ftv import SER_BIN_COLOURS, SER_BIN_NAMES, SER_BINS, FTVResult, ftv
from .maps import (
    CURVE_NAMES,
    MAP_NAMES,
    Curve,
    bolus_arrival,
    check_study,
    classify_curves,
    curve,
    curve_types,
    enhancement_maps,
    mip,
    phase_indices,
    subtractions,
    ultrafast_maps,
)
from .physics import (
    DEFAULT_HCT,
    PARKER,
    cumulative_integral,
    exp_conv,
    parker_aif,
    parker_aif_plasma,
    patlak_concentration,
    signal_to_concentration,
    spgr_signal,
    tofts_concentration,
)
from .quant import ToftsMaps, tofts_maps

__all__ = [
    "body_mask",
    "breast_region",
    "tissue_mask",
    "CURVE_NAMES",
    "MAP_NAMES",
    "SER_BINS",
    "SER_BIN_COLOURS",
    "SER_BIN_NAMES",
    "Curve",
    "ToftsMaps",
    "FTVResult",
    "bolus_arrival",
    "check_study",
    "classify_curves",
    "curve",
    "curve_types",
    "enhancement_maps",
    "ftv",
    "mip",
    "phase_indices",
    "subtractions",
    "tofts_maps",
    "ultrafast_maps",
    "DEFAULT_HCT",
    "PARKER",
    "TOFTS_BOUNDS",
    "cumulative_integral",
    "exp_conv",
    "fit_patlak",
    "fit_tofts",
    "parker_aif",
    "parker_aif_plasma",
    "patlak_concentration",
    "signal_to_concentration",
    "spgr_signal",
    "tofts_concentration",
]
