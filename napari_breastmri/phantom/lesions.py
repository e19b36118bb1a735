"""Lesions and axillary nodes: their random specification and their rasterisation.

Why a spec separate from pixels: the follow-up exam re-rasterises the same lesion (same shape
seed, same place) with a smaller size and lower Ktrans, so the response signature is the only
difference between the two exams. Each lesion is drawn in a small box around it, in millimetres
with a random rotation, with a soft edge (partial volume) and a Ktrans multiplier field for
heterogeneity or rim enhancement.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from .anatomy import Anatomy, AnatomySpec, grid_coords


@dataclass
class LesionSpec:
    """One lesion in canonical millimetres (z, y, x) with its kinetics."""

    kind: str  # "mass" | "nme"
    shape: str  # round | oval | irregular | spiculated | rim | segmental | focal
    diagnosis: str
    malignant: bool
    role: str  # index | satellite | benign | dcis
    side: str
    center: tuple[float, float, float]
    diameter: float  # longest diameter (mm)
    ktrans: float
    ve: float
    vp: float
    t10_15: float
    t10_30: float
    heterogeneity: float
    edema_mm: float = 0.0
    shape_seed: int = 0
    rotation: list = field(default_factory=lambda: np.eye(3).tolist())
    axis_ratios: tuple[float, float, float] = (1.0, 1.0, 1.0)
    direction: tuple[float, float, float] = (0.0, -1.0, 0.0)  # NME: towards the nipple
    curve_note: str = ""

    def t10(self, field_t: float) -> float:
        return self.t10_15 if field_t < 2.0 else self.t10_30

    def scaled(self, diam_factor: float, ktrans_factor: float) -> LesionSpec:
        return replace(
            self,
            diameter=self.diameter * diam_factor,
            ktrans=self.ktrans * ktrans_factor,
            edema_mm=self.edema_mm * diam_factor,
        )


@dataclass
class NodeSpec:
    """An axillary lymph node: enhancing (metastatic-looking) or normal with a fatty hilum."""

    side: str
    center: tuple[float, float, float]
    long_mm: float
    short_mm: float
    enhancing: bool
    shape_seed: int = 0
    rotation: list = field(default_factory=lambda: np.eye(3).tolist())


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def place(
    rng: np.random.Generator,
    anatomy: Anatomy,
    aspec: AnatomySpec,
    shape,
    spacing,
    side: str,
    radius: float,
    taken: list[tuple[tuple[float, float, float], float]],
    prefer_fgt: bool = True,
) -> tuple[tuple[float, float, float], float]:
    """A centre (mm) inside ``side``'s breast, clear of the skin, chest wall and other lesions.

    Shrinks the radius when the breast is too small for it. Returns (centre, radius).
    """
    k = 1 if side == "right" else 2
    Z, Y, X = grid_coords(shape, spacing)
    zz, yy, xx = np.nonzero(anatomy.breast[:, ::2, ::2] == k)
    yy, xx = yy * 2, xx * 2
    for attempt in range(8):
        r = radius * (0.88**attempt)
        idx = rng.integers(0, len(zz), size=96)
        for i in idx:
            iz, iy, ix = int(zz[i]), int(yy[i]), int(xx[i])
            if anatomy.depth[iz, iy, ix] < 0.75 * r + 5.0:
                continue
            if aspec.chest_y(float(X[0, 0, ix])) - float(Y[0, iy, 0]) < 0.75 * r + 4.0:
                continue
            if prefer_fgt and anatomy.fgt[iz, iy, ix] < 0.3 and rng.random() < 0.8:
                continue
            c = (float(Z[iz, 0, 0]), float(Y[0, iy, 0]), float(X[0, 0, ix]))
            if any(np.linalg.norm(np.subtract(c, oc)) < r + orr + 4.0 for oc, orr in taken):
                continue
            return c, r
    c = (float(Z[zz[0], 0, 0]), float(Y[0, yy[0], 0]), float(X[0, 0, xx[0]]))
    return c, radius * 0.3


def _box(center, reach_mm, shape, spacing):
    """Voxel slices of a box of half-size ``reach_mm`` around ``center`` (mm), clipped to the grid."""
    sl = []
    for c, n, d in zip(center, shape, spacing):
        ic = c / d + (n - 1) / 2.0
        half = reach_mm / d
        lo, hi = int(max(0, np.floor(ic - half))), int(min(n, np.ceil(ic + half) + 1))
        sl.append(slice(lo, max(lo, hi)))
    return tuple(sl)


def _local_coords(center, sl, shape, spacing, rotation):
    """Rotated local coordinates (3 arrays, mm) of the box voxels relative to ``center``."""
    Z, Y, X = grid_coords(shape, spacing)
    dz = Z[sl[0]] - center[0]
    dy = Y[:, sl[1]] - center[1]
    dx = X[:, :, sl[2]] - center[2]
    R = np.asarray(rotation, dtype=np.float32)
    # local = R^T (p - c)
    return [R[0, i] * dz + R[1, i] * dy + R[2, i] * dx for i in range(3)]


def _soft(dist_inside_mm: np.ndarray, edge_mm: float = 0.6) -> np.ndarray:
    """Partial-volume fraction from a signed inside distance (mm)."""
    return np.clip(dist_inside_mm / (2 * edge_mm) + 0.5, 0.0, 1.0).astype(np.float32)


def _smooth_noise(rng, box_shape, sigma) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(box_shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


@dataclass
class Raster:
    """One object's rasterisation in a box: fraction, Ktrans multiplier and necrosis share."""

    box: tuple[slice, slice, slice]
    frac: np.ndarray
    kmult: np.ndarray
    necrosis: np.ndarray | None = None
    edema: np.ndarray | None = None


def rasterise_lesion(spec: LesionSpec, shape, spacing) -> Raster:
    """Draw one lesion (fraction, Ktrans multiplier, necrotic core, oedema halo) in its box."""
    rng = np.random.default_rng(spec.shape_seed)
    a = spec.diameter / 2.0
    radii = [a * r for r in spec.axis_ratios]
    spic = spec.shape == "spiculated"
    reach = a * (1.9 if spic else 1.25) + spec.edema_mm + 3.0
    if spec.kind == "nme":
        reach = a + 3.0
    sl = _box(spec.center, reach, shape, spacing)
    u = _local_coords(spec.center, sl, shape, spacing, spec.rotation)
    box_shape = u[0].shape if u[0].ndim == 3 else np.broadcast_shapes(u[0].shape, u[1].shape, u[2].shape)
    u = [np.broadcast_to(ui, box_shape) for ui in u]
    rr = np.sqrt(sum(ui**2 for ui in u)) + 1e-6
    q = np.sqrt(sum((ui / ri) ** 2 for ui, ri in zip(u, radii)))  # normalised ellipsoid radius
    mean_r = float(np.mean(radii))
    if spec.kind == "nme":
        return _rasterise_nme(spec, rng, sl, u, q, box_shape, spacing, mean_r)
    if spec.shape in ("irregular", "spiculated"):
        lob = np.zeros(box_shape, dtype=np.float32)
        for _ in range(5):
            v = rng.standard_normal(3)
            v /= np.linalg.norm(v)
            cos_t = (u[0] * v[0] + u[1] * v[1] + u[2] * v[2]) / rr
            lob += rng.uniform(0.05, 0.14) * np.cos(
                rng.uniform(2, 5) * np.arccos(np.clip(cos_t, -1, 1)) + rng.uniform(0, 6.3)
            )
        q = q / (1.0 + lob + 0.06 * _smooth_noise(rng, box_shape, 1.5))
    frac = _soft((1.0 - q) * mean_r)
    if spic:
        n_sp = int(rng.integers(8, 18))
        for _ in range(n_sp):
            v = rng.standard_normal(3)
            v /= np.linalg.norm(v)
            length = a * rng.uniform(0.5, 0.95)
            width = rng.uniform(0.6, 1.1)
            along = u[0] * v[0] + u[1] * v[1] + u[2] * v[2]
            perp = np.sqrt(np.maximum(rr**2 - along**2, 0.0))
            t = np.clip((along - 0.6 * a) / length, 0.0, None)
            inside = np.where((along > 0) & (t < 1.0), width * (1.0 - t) - perp, -9.0)
            np.maximum(frac, _soft(inside, 0.4), out=frac)
    noise = _smooth_noise(rng, box_shape, 1.2)
    kmult = 1.0 + spec.heterogeneity * noise
    necrosis = None
    if spec.shape == "rim":
        core = 0.55 + 0.1 * noise
        kmult = np.where(q < core + 0.15, 0.35 + 0.65 * np.clip((q - core) / 0.15, 0, 1), 1.25) * (
            1.0 + 0.5 * spec.heterogeneity * noise
        )
        necrosis = np.clip((core - q) / 0.1 + 0.5, 0.0, 1.0).astype(np.float32) * (frac > 0)
    else:
        kmult = kmult * (1.0 - 0.25 * spec.heterogeneity * np.clip(1.0 - q, 0, 1))  # a slightly quieter core
    edema = None
    if spec.edema_mm > 0:
        d_out = (q - 1.0) * mean_r  # mm outside the surface (approx.)
        halo = np.clip(1.0 - d_out / spec.edema_mm, 0.0, 1.0) * (d_out > -1.0)
        edema = (0.8 * halo * np.clip(0.75 + 0.35 * _smooth_noise(rng, box_shape, 2.0), 0, 1)).astype(
            np.float32
        )
    return Raster(sl, frac, np.clip(kmult, 0.2, 2.0).astype(np.float32), necrosis, edema)


def _rasterise_nme(spec, rng, sl, u, q, box_shape, spacing, mean_r) -> Raster:
    """Non-mass enhancement: clumped enhancement inside a segment pointing at the nipple."""
    region = _soft((1.0 - q) * mean_r, 1.0)
    clumps = _smooth_noise(rng, box_shape, 0.9) + 0.5 * _smooth_noise(rng, box_shape, 2.5)
    thr = 0.0 if spec.shape == "segmental" else -0.4
    frac = region * np.clip((clumps - thr) / 0.4 + 0.5, 0.0, 1.0)
    kmult = 1.0 + spec.heterogeneity * _smooth_noise(rng, box_shape, 1.0)
    return Raster(sl, frac.astype(np.float32), np.clip(kmult, 0.2, 2.0).astype(np.float32))


def rasterise_node(spec: NodeSpec, shape, spacing) -> Raster:
    """An axillary node: an ellipsoid; a normal node keeps a fatty (non-enhancing) hilum."""
    rng = np.random.default_rng(spec.shape_seed)
    radii = [spec.long_mm / 2, spec.short_mm / 2, spec.short_mm / 2 * rng.uniform(0.85, 1.0)]
    sl = _box(spec.center, spec.long_mm / 2 + 3.0, shape, spacing)
    u = _local_coords(spec.center, sl, shape, spacing, spec.rotation)
    box_shape = np.broadcast_shapes(u[0].shape, u[1].shape, u[2].shape)
    u = [np.broadcast_to(ui, box_shape) for ui in u]
    q = np.sqrt(sum((ui / ri) ** 2 for ui, ri in zip(u, radii)))
    frac = _soft((1.0 - q) * float(np.mean(radii)))
    if not spec.enhancing:
        hil = [radii[0] * 0.55, radii[1] * 0.5, radii[2] * 0.5]
        off = [u[0] - 0.25 * radii[0], u[1] + 0.25 * radii[1], u[2]]
        qh = np.sqrt(sum((ui / ri) ** 2 for ui, ri in zip(off, hil)))
        frac = frac * (1.0 - _soft((1.0 - qh) * float(np.mean(hil))))
    return Raster(sl, frac, np.ones(box_shape, dtype=np.float32))
