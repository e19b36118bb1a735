"""Where the breasts are, from the image alone: the viewer colours curve types only there.

Why from the image: a real study has no truth. Why not from enhancement: the chest-wall muscle
and the heart enhance too, and leaving them out is the point.

The rule (a documented heuristic, no learning; numpy and SciPy only):

1. **Body**: pre-contrast voxels above the air threshold (see :func:`body_mask`: the kinetics
   module's rule or Otsu's threshold, whichever is higher), after a light smoothing, the largest
   connected piece, so noise specks in the air do not count.
2. **Anterior surface**: per axial slab and per left-right column, the most anterior body voxel.
3. **Chest-wall line**: the breasts are bumps on that surface; between them (the cleavage) and
   lateral to them the surface lies on the front of the chest wall. A quadratic in the left-right
   position, fitted with asymmetric weights (Eilers' asymmetric least squares: points anterior of
   the fit, i.e. the breasts, weigh 1 %), follows that lower envelope: the chest's front, which
   curves back laterally like a chest wall does (in the phantom, ``phantom.anatomy`` places the
   pectoral surface on such a parabola, with 4-9 mm of subcutaneous fat in front of it).
4. **Breast region**: per column, from the skin (the anterior surface) back to that line plus
   :data:`MARGIN_MM`, the fat between the skin line and the pectoral muscle, so tissue at the
   breast's base is kept and the muscle is not; the air in front of the skin is left out.

Slabs where the line cannot be fitted (fewer than :data:`MIN_COLUMNS` columns whose anterior
surface is in the field of view) are left unrestricted. The axes come from the study affine, so axial, sagittal and coronal studies work.
"""

from __future__ import annotations

import numpy as np

from ..types import Study

#: how far posterior of the fitted chest-front line the breast region reaches (mm)
MARGIN_MM = 4.0
#: weight of surface points anterior of the fit (the breasts) in the asymmetric fit
ANTERIOR_WEIGHT = 0.001
#: a slab needs this many left-right columns with body to fit its chest-wall line
MIN_COLUMNS = 8
_ITERATIONS = 20
#: the flattest chest wall assumed (mm; the phantom's are 240-420 mm, see phantom.anatomy)
MAX_CHEST_RADIUS_MM = 400.0
#: Gaussian smoothing (voxels) of the pre-contrast image before the air threshold
SMOOTH_VOXELS = 1.5
#: how much brighter (mean, geometric) the body must be than the air for Otsu's split to count
AIR_CONTRAST = 2.0
#: body pieces smaller than this fraction of the largest are noise in the air
MIN_PIECE_FRACTION = 0.05


def _axes(affine: np.ndarray) -> tuple[int, int, int, bool]:
    """Array axes (superior-inferior, anterior-posterior, left-right) of the (z, y, x) volume, and
    whether the anterior-posterior index grows towards posterior (LPS: +P)."""
    cols = np.asarray(affine, dtype=float)[:3, :3]
    ap = int(np.argmax(np.abs(cols[1])))
    rest = [i for i in range(3) if i != ap]
    lr = max(rest, key=lambda i: abs(cols[0, i]))
    si = next(i for i in rest if i != lr)
    return si, ap, lr, bool(cols[1, ap] > 0)


def tissue_mask(study_pre: np.ndarray, background_fraction: float = 0.1) -> np.ndarray:
    """Voxels above the air threshold (the kinetics module's rule: 10% of the 95th percentile)."""
    return np.asarray(study_pre) >= background_fraction * float(np.nanpercentile(study_pre, 95))


def body_mask(pre: np.ndarray) -> np.ndarray:
    """The body on the pre-contrast image: smoothed, above the air threshold, one piece.

    The threshold is the higher of the kinetics module's air rule
    (:func:`tissue_mask`: 10 % of the 95th percentile) and
    Otsu's threshold of the smoothed image's logarithm. Why both: with fat suppression the breasts
    are mostly dark and the air's noise floor reaches 10 % of the 95th percentile (phantom case 13);
    on the log scale the tissues (fat, gland, muscle, fluid) gather into one mode and air is the
    other, so Otsu splits air from body rather than one tissue from another. The largest connected pieces are
    kept (each at least :data:`MIN_PIECE_FRACTION` of the largest: a breast may touch the chest
    only through tissue below the threshold), so noise specks in the air do not count."""
    from scipy.ndimage import gaussian_filter, label
    from skimage.filters import threshold_otsu

    smooth = gaussian_filter(np.asarray(pre, dtype=np.float32), SMOOTH_VOXELS)
    step = max(1, int(round((smooth.size / 1_000_000) ** (1 / 3))))
    sample = smooth[::step, ::step, ::step]
    sample = np.log(sample[sample > 0])  # log: the tissues gather into one mode, air is the other
    body = tissue_mask(smooth)
    if sample.size:
        cut = float(threshold_otsu(sample))
        low, high = sample[sample <= cut], sample[sample > cut]
        # only a real air / body split: the two modes at least AIR_CONTRAST apart (a field of view
        # filled with tissue has one mode, and Otsu would cut it in two)
        if low.size and high.size and np.exp(high.mean() - low.mean()) >= AIR_CONTRAST:
            body &= smooth > np.exp(cut)
    labels, n = label(body)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = sizes >= MIN_PIECE_FRACTION * sizes.max()
        body = keep[labels]
    return body


def chest_front(surface_mm: np.ndarray, lr_mm: np.ndarray) -> np.ndarray | None:
    """The lower envelope of one slab's anterior surface (mm, growing posterior; NaN = no body):
    a quadratic in ``lr_mm`` fitted by asymmetric least squares, evaluated on every column.
    None when too few columns have body."""
    ok = np.isfinite(surface_mm)
    if ok.sum() < MIN_COLUMNS:
        return None
    x, y = lr_mm[ok], surface_mm[ok]
    weights = np.ones_like(y)
    coeffs = _fit(x, y, weights)
    for _ in range(_ITERATIONS):
        new = np.where(y < np.polyval(coeffs, x), ANTERIOR_WEIGHT, 1.0)
        if np.array_equal(new, weights):
            break
        weights = new
        coeffs = _fit(x, y, weights)
    return np.polyval(coeffs, lr_mm)


def _fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted quadratic (c, b, a) of y(x), curving back laterally at least as a chest wall of
    radius :data:`MAX_CHEST_RADIUS_MM` does: when the breasts cover most of the width, the chest's
    front shows only between them, which fixes its position but not its curvature."""
    sw = np.sqrt(weights)
    coeffs = np.polyfit(x, y, 2, w=sw)
    c_min = 1.0 / (2.0 * MAX_CHEST_RADIUS_MM)
    if coeffs[0] < c_min:
        b, a = np.polyfit(x, y - c_min * x**2, 1, w=sw)
        coeffs = np.array([c_min, b, a])
    return coeffs


def breast_region(study: Study, margin_mm: float = MARGIN_MM) -> np.ndarray:
    """Boolean (z, y, x) mask of the breasts: body anterior of the chest wall (see the module)."""
    si, ap, lr, posterior_up = _axes(study.affine)
    spacing = np.linalg.norm(np.asarray(study.affine, dtype=float)[:3, :3], axis=0)
    body = np.transpose(body_mask(study.data[0]), (si, ap, lr))
    if not posterior_up:  # work with the anterior-posterior index growing towards posterior
        body = body[:, ::-1, :]
    n_ap, n_lr = body.shape[1:]
    ap_mm = np.arange(n_ap) * spacing[ap]
    lr_mm = (np.arange(n_lr) - (n_lr - 1) / 2.0) * spacing[lr]
    has = body.any(axis=1)
    first = np.argmax(body, axis=1)
    # a column whose body starts at the field of view's anterior edge shows no surface there
    surface = np.where(has & (first > 0), first * spacing[ap], np.nan)  # (slabs, columns)
    region = np.zeros_like(body)
    depth_idx = np.arange(n_ap)[:, None]
    for s in range(body.shape[0]):
        if not has[s].any():
            continue
        front = chest_front(surface[s], lr_mm)
        if front is None:  # no chest-wall line: the slab is not restricted
            region[s] = True
            continue
        # each column from its skin (the first body voxel) back to the chest-wall line: no hole
        # filling, so dark tissue (glandular tissue without fat suppression) is kept too
        region[s] = has[s][None, :] & (depth_idx >= first[s][None, :])
        region[s] &= ap_mm[:, None] <= front[None, :] + margin_mm
    if not posterior_up:
        region = region[:, ::-1, :]
    return np.transpose(region, np.argsort((si, ap, lr)))
