"""How far to trust a heatmap: deletion/insertion, pointing game, randomisation, CAM x kinetics.

* **Deletion / insertion** (Petsiuk et al., RISE 2018): voxels are removed (all channels at once,
  replaced by a *baseline*: each channel's mean, or a blurred copy) in the heatmap's order, most
  important first, in ``steps`` equal bites; the target's probability is recorded after each. A
  faithful map makes the probability fall fast: a *low* deletion AUC (area under probability vs
  fraction removed). Insertion starts from the baseline and puts voxels back: a *high* AUC is
  good. Both are compared with the same curves for a random ordering of the voxels.
* **Pointing game** (Zhang et al. 2016): a hit when the heatmap's maximum lies inside the true
  lesion (mask or box), or within ``tolerance_mm`` of it (default 5 mm, about two voxels of a
  breast DCE grid), measured in world millimetres so anisotropic voxels count fairly.
* **Model randomisation** (Adebayo et al., Sanity Checks for Saliency Maps, 2018): weights are
  re-initialised from the output layer backwards (cascading) or all at once, and the heatmap is
  recomputed; the Spearman rank correlation with the original should drop. A correlation of
  ``RANDOMISATION_FLAG`` or more flags the map as possibly showing the input rather than the model.
* **CAM x kinetics**: the share of heatmap mass (sum of heat) in washout, plateau, persistent and
  non-enhancing voxels (``kinetics.curve_types``), and inside the lesion versus the background
  parenchyma (tissue above the air threshold that is not lesion).

:func:`describe` turns the numbers stored in a Heatmap into one plain-language sentence.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import Cancelled
from ..geometry import bbox_world_corners, voxel_to_world
from ..types import Heatmap

#: a randomised model's heatmap correlating this much (Spearman) with the real one is flagged
RANDOMISATION_FLAG = 0.5
#: default pointing-game tolerance around the truth, world millimetres
POINTING_TOLERANCE_MM = 5.0
CURVE_NAMES = {0: "non_enhancing", 1: "persistent", 2: "plateau", 3: "washout"}


# ------------------------------------------------------------------------------ deletion/insertion


def _baseline(x: Any, kind: str) -> Any:
    import torch

    if kind == "mean":
        return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True).expand_as(x)
    if kind == "blur":
        from scipy import ndimage

        arr = x.detach().cpu().numpy()
        sigma = [0, 0] + [max(1.0, s / 8) for s in arr.shape[2:]]
        return torch.as_tensor(ndimage.gaussian_filter(arr, sigma), device=x.device)
    if kind == "zero":
        return torch.zeros_like(x)
    raise ValueError(f"unknown baseline {kind!r}; use mean, blur or zero")


def deletion_insertion(
    model: Any,
    x: Any,
    heatmap: np.ndarray | None,
    target: Any,
    steps: int = 16,
    baseline: str = "mean",
    batch_size: int = 4,
    seed: int = 0,
    spatial_dims: int = 3,
    should_cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Deletion and insertion curves and AUCs; ``heatmap=None`` gives a random voxel order.

    ``x`` (C, *spatial) on the model grid, ``heatmap`` on the same grid. Ties in the heatmap are
    broken at random (seeded) so flat regions do not follow the array order. Costs
    ``2 * (steps + 1)`` forward passes, in batches of ``batch_size``; ``should_cancel()`` is asked
    before each batch and raises :class:`~napari_breastmri.errors.Cancelled` when True (a viewer
    closing must not wait for a minute of forward passes).
    """
    import torch

    from ._torch_cam import eval_mode

    rng = np.random.default_rng(seed)
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    if x.ndim == spatial_dims + 1:
        x = x[None]
    if x.shape[0] != 1:
        raise ValueError("deletion/insertion curves are made for one input at a time, not a batch")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = x.to(device)
    n = int(np.prod(x.shape[2:]))
    jitter = rng.random(n) * 1e-6
    order = np.argsort(
        -(jitter if heatmap is None else np.asarray(heatmap, dtype=float).ravel() + jitter), kind="stable"
    )
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    rank_t = torch.as_tensor(rank.reshape(x.shape[2:]), device=device)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    base = _baseline(x, baseline)
    curves: dict[str, list[float]] = {"deletion": [], "insertion": []}
    with eval_mode(model), torch.no_grad():
        for mode in ("deletion", "insertion"):
            for start in range(0, len(fractions), batch_size):
                _check(should_cancel)
                batch = []
                for f in fractions[start : start + batch_size]:
                    removed = (rank_t < int(round(f * n)))[None, None]
                    if mode == "deletion":
                        batch.append(torch.where(removed, base, x))
                    else:
                        batch.append(torch.where(removed, x, base))
                probs = target.probability(model(torch.cat(batch)))
                curves[mode].extend(float(p) for p in probs.detach().cpu())
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    return {
        "fractions": fractions.tolist(),
        "deletion": curves["deletion"],
        "insertion": curves["insertion"],
        "deletion_auc": float(trapezoid(curves["deletion"], fractions)),
        "insertion_auc": float(trapezoid(curves["insertion"], fractions)),
    }


# ------------------------------------------------------------------------------ pointing game


def pointing_game(
    heatmap: np.ndarray,
    affine: np.ndarray,
    truth_mask: np.ndarray | None = None,
    truth_box: Sequence[int] | None = None,
    tolerance_mm: float = POINTING_TOLERANCE_MM,
) -> dict[str, float]:
    """Hit (1.0) when the heatmap's maximum is within ``tolerance_mm`` of the truth; also the distance.

    The truth is a mask on the heatmap's grid or a box [z0, y0, x0, z1, y1, x1] (voxels, end
    exclusive). Distance is from the peak voxel's centre to the nearest truth voxel centre (0
    inside the truth), in mm through ``affine``.
    """
    heat = np.asarray(heatmap, dtype=float)
    if heat.max() <= 0:
        return {"pointing_hit": 0.0, "pointing_distance_mm": float("inf")}
    peak = np.array(np.unravel_index(int(np.argmax(heat)), heat.shape), dtype=float)
    if truth_mask is not None:
        pts = np.argwhere(np.asarray(truth_mask) > 0).astype(float)
    elif truth_box is not None:
        z0, y0, x0, z1, y1, x1 = (int(v) for v in truth_box)
        grid = np.mgrid[z0:z1, y0:y1, x0:x1].reshape(3, -1).T
        pts = grid.astype(float)
    else:
        raise ValueError("the pointing game needs a truth mask or box")
    if len(pts) == 0:
        return {"pointing_hit": 0.0, "pointing_distance_mm": float("inf")}
    world = voxel_to_world(affine, pts)
    dist = float(np.min(np.linalg.norm(world - voxel_to_world(affine, peak), axis=1)))
    return {"pointing_hit": float(dist <= tolerance_mm), "pointing_distance_mm": dist}


def box_to_grid(
    box: Sequence[int], src_affine: np.ndarray, dst_affine: np.ndarray, dst_shape: Sequence[int]
) -> list[int]:
    """The smallest box on another grid that encloses ``box`` (through its world corners)."""
    from ..geometry import world_to_voxel

    corners = world_to_voxel(dst_affine, bbox_world_corners(src_affine, box))
    lo = np.floor(corners.min(axis=0) + 0.5).astype(int)
    hi = np.ceil(corners.max(axis=0) + 0.5).astype(int)
    lo = np.clip(lo, 0, np.asarray(dst_shape))
    hi = np.clip(np.maximum(hi, lo + 1), 0, np.asarray(dst_shape))
    return [int(v) for v in (*lo, *hi)]


# ------------------------------------------------------------------------------ randomisation


def spearman(a: np.ndarray, b: np.ndarray, max_voxels: int = 50_000, seed: int = 0) -> float:
    """Spearman rank correlation of two maps (a seeded voxel sample when they are large)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.size > max_voxels:
        idx = np.random.default_rng(seed).choice(a.size, max_voxels, replace=False)
        a, b = a[idx], b[idx]
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(stats.spearmanr(a, b).statistic)


def _param_modules(model: Any) -> list[tuple[str, Any]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))
    ]


def _check(should_cancel: Callable[[], bool] | None) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled("The faithfulness checks were cancelled.")


def randomised_copy(model: Any, upto: int | None = None, seed: int = 0) -> Any:
    """A deep copy with the last ``upto`` parameterised layers re-initialised (None: all)."""
    import torch

    clone = copy.deepcopy(model)
    layers = _param_modules(clone)
    chosen = layers if upto is None else layers[len(layers) - upto :]
    torch.manual_seed(seed)
    for _, module in chosen:
        module.reset_parameters()
    return clone


def randomisation_check(
    model: Any,
    x: Any,
    target: Any,
    method: str,
    layer: Any,
    heatmap: np.ndarray,
    cascade_steps: int = 3,
    seeds: Sequence[int] = (0, 1, 2),
    spatial_dims: int = 3,
    should_cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Spearman correlation of ``heatmap`` with heatmaps of progressively randomised copies.

    ``should_cancel()`` is asked before each randomised copy (raises ``Cancelled`` when True).

    ``cascade`` lists (layers randomised from the top, mean rho over ``seeds``) at
    ``cascade_steps`` points; the last is the fully randomised model, whose mean rho is
    ``randomisation_spearman``. One random draw is a noisy judge (a random network still reacts to
    a bright lesion), hence the mean over seeds. ``randomisation_flag`` is 1.0 when that rho is
    at least :data:`RANDOMISATION_FLAG`: the map may show the input more than the model.
    """
    from ._torch_cam import compute_cam, find_layer

    layer_name, _ = find_layer(model, layer)
    n = len(_param_modules(model))
    points = sorted({max(1, int(round(n * k / cascade_steps))) for k in range(1, cascade_steps + 1)})
    cascade, per_seed = [], []
    for upto in points:
        rhos = []
        for seed in seeds:
            _check(should_cancel)
            clone = randomised_copy(model, upto, seed)
            other = compute_cam(clone, x, target, method, layer_name, spatial_dims=spatial_dims)
            rhos.append(spearman(heatmap, other, seed=seed))
        cascade.append((upto, float(np.mean(rhos))))
        per_seed.append(rhos)
    rho = cascade[-1][1]
    return {
        "cascade": cascade,
        "per_seed": per_seed,
        "n_layers": n,
        "randomisation_spearman": rho,
        "randomisation_flag": float(rho >= RANDOMISATION_FLAG),
    }


# ------------------------------------------------------------------------------ CAM x kinetics


def kinetics_share(
    heatmap: np.ndarray,
    curve_map: np.ndarray | None = None,
    lesion_mask: np.ndarray | None = None,
    tissue: np.ndarray | None = None,
) -> dict[str, float]:
    """Share of the heatmap's mass per curve type, and in lesion vs background parenchyma."""
    heat = np.clip(np.asarray(heatmap, dtype=float), 0, None)
    total = float(heat.sum())
    out: dict[str, float] = {}
    if total <= 0:
        return out
    if curve_map is not None:
        curve_map = np.asarray(curve_map)
        for value, name in CURVE_NAMES.items():
            out[name] = float(heat[curve_map == value].sum() / total)
    if lesion_mask is not None:
        lesion = np.asarray(lesion_mask) > 0
        out["lesion"] = float(heat[lesion].sum() / total)
        if tissue is not None:
            out["background_parenchyma"] = float(heat[np.asarray(tissue) & ~lesion].sum() / total)
        # how much hotter the lesion is than the rest, per voxel (1 = no preference)
        if lesion.any() and (~lesion).any():
            inside, outside = heat[lesion].mean(), heat[~lesion].mean()
            out["lesion_contrast"] = float(inside / outside) if outside > 0 else float("inf")
    return out


# ------------------------------------------------------------------------------ plain language


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def describe(heatmap: Heatmap) -> str:
    """One sentence a teacher or a radiologist can read beside the heatmap."""
    from .cam import display_name

    parts = [f"{display_name(heatmap.method)} for {heatmap.target}"]
    ks = heatmap.kinetics_share
    if "lesion" in ks:
        parts.append(f"{_pct(ks['lesion'])} of the heat lies in the lesion")
    curves = {k: ks[k] for k in ("washout", "plateau", "persistent") if k in ks}
    if curves:
        top = max(curves, key=curves.__getitem__)
        parts.append(f"{_pct(curves[top])} in {top} voxels")
    if heatmap.phase_attribution:
        top = max(heatmap.phase_attribution, key=heatmap.phase_attribution.__getitem__)
        parts.append(f"most evidence from {top} ({_pct(heatmap.phase_attribution[top])})")
    s = heatmap.scores
    if "deletion_auc" in s and "deletion_auc_random" in s:
        better = s["deletion_auc"] < s["deletion_auc_random"]
        parts.append(
            f"removing the hottest voxels first lowers the score {'faster' if better else 'no faster'} than random "
            f"(deletion AUC {s['deletion_auc']:.2f} vs {s['deletion_auc_random']:.2f})"
        )
    if "randomisation_spearman" in s:
        if s.get("randomisation_flag", 0.0) >= 1.0:
            parts.append(
                f"caution: a randomised model gives a similar map (rho {s['randomisation_spearman']:.2f})"
            )
        else:
            parts.append(
                f"a randomised model gives a different map (rho {s['randomisation_spearman']:.2f}), as it should"
            )
    if "pointing_hit" in s:
        parts.append(
            "the peak is on the true lesion" if s["pointing_hit"] >= 1 else "the peak misses the true lesion"
        )
    if s.get("empty", 0.0) >= 1.0:
        parts.append("the map is empty: the layer shows no positive evidence for this target")
    return "; ".join(parts) + "."
