"""CAM methods: 3D contract (input grid, [0, 1], on the lesion, no hooks left), and agreement with
pytorch-grad-cam on 2D cases both support (so our N-D code is the library's method, not a new one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_breastmri.explain import _torch_ndcam as nd
from napari_breastmri.explain.cam import METHODS, BoxTarget, ClassTarget, RegionTarget, box_mask, compute_cam
from tests.unit import _explain_toys as toys

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def classifier() -> nn.Module:
    return toys.trained_classifier()


@pytest.fixture(scope="module")
def cases() -> list:
    rng = np.random.default_rng(123)
    return [toys.blob_volume(rng, True) for _ in range(3)]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_3d_has_input_grid_unit_range_lands_on_blob_and_leaves_no_hooks(
    classifier, cases, method
):
    for x, centre, _ in cases:
        heat = compute_cam(classifier, x, 1, method, "features.7")
        assert heat.shape == x.shape[1:]
        assert heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.99
        peak = np.array(np.unravel_index(int(heat.argmax()), heat.shape))
        assert np.linalg.norm(peak - centre) <= 4.0, (method, peak, centre)
    assert toys.all_hooks(classifier) == 0


def test_batched_input_gives_one_map_per_item(classifier, cases):
    x = np.stack([c[0] for c in cases])
    heat = compute_cam(classifier, x, 1, "gradcam", "features.7")
    assert heat.shape == (len(cases), *x.shape[2:])
    single = compute_cam(classifier, cases[1][0], 1, "gradcam", "features.7")
    np.testing.assert_allclose(heat[1], single, atol=1e-5)


def test_hooks_released_when_the_model_fails_after_the_layer(classifier):
    class Broken(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            self.inner.features(x)
            raise RuntimeError("head crashed")

    broken = Broken(classifier)
    with pytest.raises(RuntimeError, match="head crashed"):
        compute_cam(broken, np.zeros((3, *toys.SHAPE), np.float32), 1, "gradcam", "inner.features.7")
    assert toys.all_hooks(broken) == 0
    assert broken.training is True  # the model's mode is given back


def test_default_target_is_top_class_and_default_layer_is_last_conv(classifier, cases):
    x = cases[0][0]
    explicit = compute_cam(classifier, x, 1, "gradcam", "features.7")
    implicit = compute_cam(classifier, x, None, "gradcam", None)  # the last conv: features.6 (pre-ReLU)
    assert implicit.shape == explicit.shape
    assert torch.no_grad()(classifier)(torch.tensor(x)[None]).argmax() == 1
    # same peak: the pre-ReLU conv and its ReLU see the same evidence on a confident case
    assert np.linalg.norm(np.subtract(np.unravel_index(implicit.argmax(), x.shape[1:]), cases[0][1])) <= 4


def test_input_made_under_inference_mode_still_works(classifier, cases):
    with torch.inference_mode():
        x = torch.tensor(cases[0][0])
    assert compute_cam(classifier, x, 1, "gradcam++", "features.7").shape == x.shape[1:]


def test_unknown_method_and_layer_are_clear_errors(classifier):
    x = np.zeros((3, *toys.SHAPE), np.float32)
    with pytest.raises(ValueError, match="unknown CAM method"):
        compute_cam(classifier, x, 1, "magiccam", "features.7")
    with pytest.raises(ValueError, match="no layer named"):
        compute_cam(classifier, x, 1, "gradcam", "features.99")


def test_region_and_box_targets_on_a_segmenter():
    seg = toys.trained_segmenter()
    x, centre, mask = toys.blob_volume(np.random.default_rng(4), True)
    zz, yy, xx = np.indices(mask.shape)
    near = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= 7**2
    box = [int(c) - 3 for c in centre] + [int(c) + 4 for c in centre]
    for target in (RegionTarget(0, mask), BoxTarget(box, mask.shape)):
        for method in METHODS:
            heat = compute_cam(seg, x, target, method, "mid")
            assert heat.shape == mask.shape and heat.min() >= 0 and heat.max() <= 1, method
        # LayerCAM (positive gradients only) is never empty here; the toy segmenter's evidence sits
        # within a few voxels of the blob (its kernels are learned, not centred)
        heat = compute_cam(seg, x, target, "layercam", "mid")
        assert heat[near].sum() / heat.sum() > 0.5
    assert toys.all_hooks(seg) == 0


def test_box_mask_scales_to_a_coarser_output_grid():
    mask = box_mask([4, 8, 8, 8, 16, 16], (16, 32, 32), (4, 8, 8))
    assert mask.sum() == 1 * 2 * 2 and mask[1, 2:4, 2:4].all()


def test_class_target_probability_matches_softmax():
    out = torch.tensor([[1.0, 2.0, 0.5]])
    t = ClassTarget(1)
    assert float(t(out)) == 2.0
    assert float(t.probability(out)) == pytest.approx(float(torch.softmax(out, 1)[0, 1]))


# ------------------------------------------------------------------------------ geometry of upsampling


def test_upsampling_keeps_feature_cells_in_place_and_the_library_zoom_does_not():
    """A 4 -> 32 map: feature cell i covers input voxels 8i..8i+7 (centre 8i + 3.5)."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    cam = np.zeros((1, 4, 4, 4), np.float32)
    cam[0, 1, 2, 1] = 1.0
    ours = nd.upsample_cam(cam, (32, 32, 32))[0]
    centroid = np.array([(ours * idx).sum() / ours.sum() for idx in np.indices(ours.shape)])
    np.testing.assert_allclose(centroid, [11.5, 19.5, 11.5], atol=1e-4)  # cell centre (i + 0.5) * 8 - 0.5
    lib = np.clip(scale_cam_image(cam, (32, 32, 32))[0], 0, None)
    lib_centroid = np.array([(lib * idx).sum() / lib.sum() for idx in np.indices(lib.shape)])
    assert np.abs(lib_centroid - [11.5, 19.5, 11.5]).max() > 0.4  # why we do not use it in 3D


def test_avgpool_network_cam_centres_on_the_bright_cell():
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.AvgPool3d(4)
            self.head = nn.Linear(1, 2)

        def forward(self, x):
            return self.head(self.pool(x).mean(dim=(2, 3, 4)))

    model = Pooled()
    with torch.no_grad():
        model.head.weight.fill_(1.0)
    x = np.zeros((1, 16, 16, 16), np.float32)
    x[0, 8:12, 4:8, 12:16] = 1.0
    heat = compute_cam(model, x, 1, "gradcam", "pool")
    centroid = np.array([(heat * idx).sum() / heat.sum() for idx in np.indices(heat.shape)])
    np.testing.assert_allclose(centroid, [9.5, 5.5, 13.5], atol=0.6)
    assert np.unravel_index(heat.argmax(), heat.shape)[0] in (9, 10)


# ------------------------------------------------------------------------------ 2D: same as the library


class Tiny2D(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def model2d():
    return Tiny2D().eval()


@pytest.fixture(scope="module")
def x2d():
    return torch.tensor(np.random.default_rng(9).normal(size=(1, 3, 24, 20)).astype(np.float32))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "layercam", "xgradcam"])
def test_2d_matches_pytorch_grad_cam(model2d, x2d, method):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {
        "gradcam": pgc.GradCAM,
        "gradcam++": pgc.GradCAMPlusPlus,
        "hirescam": pgc.HiResCAM,
        "layercam": pgc.LayerCAM,
        "xgradcam": pgc.XGradCAM,
    }[method]
    cam = cls(model=model2d, target_layers=[model2d.features[4]])
    try:
        expected = cam(input_tensor=x2d, targets=[ClassifierOutputTarget(2)])[0]
    finally:
        cam.activations_and_grads.release()
    ours = compute_cam(model2d, x2d[0], 2, method, "features.4", spatial_dims=2)
    assert ours.shape == expected.shape == (24, 20)
    np.testing.assert_allclose(ours, expected, atol=2e-4)


def test_2d_eigen_projection_matches_library(model2d, x2d):
    from pytorch_grad_cam.utils.svd_on_activations import (
        get_2d_projection,
        get_2d_projection_with_sign_correction,
    )

    acts = model2d.features(x2d).detach().numpy()
    np.testing.assert_allclose(
        nd.eigen_projection(acts), get_2d_projection_with_sign_correction(acts), atol=1e-4
    )
    plain = nd.eigen_projection(acts, sign_correction=False)
    lib = get_2d_projection(acts)
    assert min(np.abs(plain - lib).max(), np.abs(plain + lib).max()) < 1e-4  # SVD sign is arbitrary


def test_2d_score_cam_weights_match_library(model2d, x2d):
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    acts_t = model2d.features(x2d).detach()
    cam = ScoreCAM(model=model2d, target_layers=[model2d.features[4]])
    cam.batch_size = 4
    try:
        expected = cam.get_cam_weights(x2d, None, [ClassifierOutputTarget(2)], acts_t.numpy(), None)
    finally:
        cam.activations_and_grads.release()
    ours = nd.score_cam_weights(model2d, x2d, acts_t, ClassTarget(2), max_channels=None, align_corners=True)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    capped = nd.score_cam_weights(model2d, x2d, acts_t, ClassTarget(2), max_channels=5)
    assert (capped > 0).sum() == 5 and capped.sum() == pytest.approx(1.0, abs=1e-5)
    assert toys.all_hooks(model2d) == 0


def test_class_target_log_prob_is_contrastive() -> None:
    """score="log_prob": a shift of every logit (evidence for all classes alike) does not move the
    target, and its gradient is e_c - p; a sigmoid output keeps its logit."""
    logits = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
    t = ClassTarget(0, score="log_prob")
    value = t(logits)
    assert torch.allclose(value, torch.log_softmax(logits, dim=1)[:, 0])
    assert torch.allclose(t(logits + 3.0), value)
    (grad,) = torch.autograd.grad(value.sum(), logits)
    p = torch.softmax(logits, dim=1)
    assert torch.allclose(grad, torch.tensor([[1.0, 0.0, 0.0]]) - p)
    assert torch.equal(ClassTarget(0)(logits), logits[:, 0])  # the default: the logit
    assert torch.equal(ClassTarget(0, activation="sigmoid", score="log_prob")(logits), logits[:, 0])
