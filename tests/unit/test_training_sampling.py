"""What the training loops feed the networks: region samples centred on the index lesion, shifts
that move content without wrapping it round, hard-negative centres off the lesion, a learning-rate
schedule that survives a time cap, and a parallel phantom cache that gives the same samples."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_breastmri.geometry import resample_to_grid
from napari_breastmri.inference.preprocess import box_centre_world
from napari_breastmri.training import data as D
from napari_breastmri.training import loops
from napari_breastmri.training.tasks import get_task


def test_region_samples_are_centred_on_the_index_lesion() -> None:
    raw = D.phantom_case(900_000_003, shape=(32, 128, 128), spacing=(3.0, 1.6, 1.6))
    card = get_task("subtype").parsed_card()
    sample = D.make_sample(raw, card)
    assert raw.index_box is not None and sample.label is not None
    assert sample.x.shape == (3, *card.inputs.resize_to)
    centre = box_centre_world(raw.index_box, raw.study.affine)
    grid_centre = sample.affine @ np.append((np.array(sample.x.shape[1:]) - 1) / 2.0, 1.0)
    assert np.allclose(grid_centre[:3], centre, atol=1e-6)
    # the index lesion's own mask, carried onto the region grid, sits in the middle of it
    z0, y0, x0, z1, y1, x1 = raw.index_box
    inside = raw.label_mask[z0:z1, y0:y1, x0:x1]
    index_label = int(np.bincount(inside[inside > 0].ravel()).argmax())  # the label filling its box
    lesion = resample_to_grid(
        (raw.label_mask == index_label).astype(np.float32),
        raw.study.affine,
        sample.affine,
        sample.x.shape[1:],
    )
    com = np.array(ndimage.center_of_mass(lesion))
    assert np.all(np.abs(com - (np.array(sample.x.shape[1:]) - 1) / 2) <= 2.0)
    assert float(sample.x[1][lesion > 0.5].mean()) > float(sample.x[1].mean())  # it enhances


def test_a_case_without_a_lesion_is_kept_out_of_region_training() -> None:
    raw = D.RawCase("empty", D.phantom_case(7, shape=(16, 64, 64)).study, labels={"subtype": "luminal_a"})
    sample = D.make_sample(raw, get_task("subtype").parsed_card())
    assert sample.label is None  # _stack drops unlabelled samples


def test_shift_moves_content_and_fills_with_zeros() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5) + 1
    out = loops._shift_zero(x, (1, -2, 0))
    assert torch.equal(out[:, 1:, :2, :], x[:, :2, 2:, :])
    assert float(out[:, 0].abs().sum()) == 0 and float(out[:, :, 2:].abs().sum()) == 0
    assert torch.equal(loops._shift_zero(x, (0, 0, 0)), x)


def test_region_samples_carry_the_lesion_mask_for_the_attention_loss() -> None:
    raw = D.phantom_case(900_000_003, shape=(32, 128, 128), spacing=(3.0, 1.6, 1.6))
    sample = D.make_sample(raw, get_task("subtype").parsed_card())
    assert sample.mask is not None and sample.mask.shape == sample.x.shape[1:]
    centre = tuple(n // 2 for n in sample.mask.shape)  # the region is centred on the index lesion
    assert sample.mask[centre] == 1 and 0 < sample.mask.mean() < 0.5


def test_augmentation_moves_the_mask_with_the_image() -> None:
    x = torch.zeros(2, 8, 8, 8)
    x[:, 2:4, 1:3, 5:7] = 1.0
    mask = (x[0] > 0).float()
    for seed in range(6):
        xa, ma = loops._augment_case(x, np.random.default_rng(seed), 2, mask)
        assert torch.equal(ma > 0, xa[0] > 0), seed


def test_attention_loss_pools_the_mask_to_the_attention_grid() -> None:
    masks = torch.zeros(1, 8, 8, 8)
    masks[0, :4, :4, :4] = 1.0
    right = torch.full((1, 1, 2, 2, 2), -8.0)
    right[0, 0, 0, 0, 0] = 8.0
    wrong = -right
    assert float(loops._attention_loss(right, masks)) < 0.1 < float(loops._attention_loss(wrong, masks))


def test_hard_negatives_are_bright_and_off_the_lesion() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((3, 10, 20, 20), np.float32)
    x[1, 2:4, 2:6, 2:6] = 5.0  # "heart": bright, not lesion
    x[1, 6:8, 10:14, 10:14] = 5.0  # the lesion
    mask = np.zeros((10, 20, 20), np.uint8)
    mask[6:8, 10:14, 10:14] = 1
    sample = D.Sample("c", x, np.eye(4), mask=mask)
    centres = loops._hard_negative_centres(sample, ["pre", "sub1", "sub_last"], rng)
    assert len(centres) > 0
    assert all(mask[tuple(c)] == 0 and x[1][tuple(c)] == 5.0 for c in centres)


def test_learning_rate_warms_up_then_decays_to_zero_whatever_the_step_count() -> None:
    for steps in (31, 100, 2812):
        lrs = [loops._lr_at(s, steps, 3e-3) for s in range(steps)]
        peak = int(np.argmax(lrs))
        assert lrs[peak] == pytest.approx(3e-3) and peak <= 0.1 * steps + 1
        assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))
        assert lrs[-1] < 0.01 * 3e-3 or steps < 40
        assert all(math.isfinite(v) and v > 0 for v in lrs[:-1])


@pytest.mark.slow
def test_parallel_cache_gives_the_same_samples_as_sequential(tmp_path: Path) -> None:
    cards = {"seg": get_task("seg").parsed_card(), "subtype": get_task("subtype").parsed_card()}
    kw = {"shape": (16, 64, 64), "spacing": (3.0, 3.2, 3.2)}
    seeds = [11, 12]
    progress_seen = list(
        D.fill_phantom_cache(seeds, cards, cache_dir=tmp_path / "par", phantom_kwargs=kw, workers=2)
    )
    assert [p.fraction for p in progress_seen] == [0.5, 1.0]
    par = list(D.phantom_sample_sets(seeds, cards, cache_dir=tmp_path / "par", phantom_kwargs=kw))
    seq = list(D.phantom_sample_sets(seeds, cards, cache_dir=tmp_path / "seq", phantom_kwargs=kw))
    for a, b in zip(par, seq):
        for key in cards:
            assert np.array_equal(a[key].x, b[key].x) and a[key].label == b[key].label
    # a filled cache needs no second fill
    assert list(D.fill_phantom_cache(seeds, cards, cache_dir=tmp_path / "par", phantom_kwargs=kw)) == []


def test_attention_training_warns_when_a_case_lacks_its_lesion_mask() -> None:
    from napari_breastmri import progress

    spec = get_task("subtype")
    spec.features = [2, 2, 4]
    spec.batch_size = 2
    rng = np.random.default_rng(0)
    samples = [
        D.Sample(f"c{i}", rng.normal(size=(3, 8, 16, 16)).astype(np.float32), np.eye(4), label=i % 4)
        for i in range(4)
    ]
    for s in samples[:3]:
        s.mask = np.zeros((8, 16, 16), np.uint8)
        s.mask[2:6, 4:12, 4:12] = 1
    with pytest.warns(UserWarning, match="no lesion mask"):
        net = progress.run(loops.train_classifier(spec, samples, 1, seed=0))
    assert net.logits(torch.from_numpy(samples[0].x[None])).shape == (1, 4)


def test_lesion_components_split_a_mask_into_its_lesions() -> None:
    mask = np.zeros((8, 10, 10), dtype=np.uint8)
    mask[1:3, 1:3, 1:3] = 1  # 8 voxels
    mask[5:8, 6:9, 6:9] = 1  # 27 voxels, not touching the first
    mask[3, 3, 3] = 1  # touches the first only at a corner: 26-connected, so the same lesion
    parts = sorted(loops.lesion_components(mask), key=len)
    assert [len(p) for p in parts] == [9, 27]
    assert {tuple(v) for v in parts[0]} == {tuple(v) for v in np.argwhere(mask[:4, :4, :4])}
    assert loops.lesion_components(np.zeros((4, 4, 4))) == []


def test_missed_lesions_are_drawn_more_often_but_found_ones_stay_in_view() -> None:
    w = loops.missed_lesion_weights(np.array([1.0, 0.0, 0.6]))
    assert math.isclose(w.sum(), 1.0)
    assert w[1] > w[2] > w[0] > 0  # the floor keeps a found lesion in the draw
    assert math.isclose(w[1] / w[0], 11.0)  # (0.1 + 1) / (0.1 + 0)


def test_fine_tuning_on_missed_lesions_measures_them_and_keeps_the_card_threshold(tmp_path: Path) -> None:
    """A two-step fine-tune with missed-lesion sampling counts the lesions it misses, before and after."""
    spec = dataclasses.replace(get_task("seg"), batch_size=2)  # one small step
    samples = list(
        D.phantom_samples([900_000_003], spec.parsed_card(), cache_dir=tmp_path,
                          phantom_kwargs={"shape": (32, 128, 128), "spacing": (3.0, 1.6, 1.6)})
    )  # fmt: skip
    net0 = loops.build_network(spec)
    with torch.no_grad():
        net0.head.bias.fill_(-20.0)  # a detector that finds nothing
    stats: dict = {}
    gen = loops.train_segmentation(
        spec, samples, epochs=1, seed=0, init_state=net0.state_dict(), device="cpu", stats=stats,
        lesion_sampling="missed",
    )  # fmt: skip
    messages = []
    try:
        while True:
            messages.append(next(gen).message)
    except StopIteration as done:
        net = done.value
    n = stats["training_lesions"]
    assert n >= 1 and stats["lesion_sampling"] == "missed"
    # measured at the start (this network misses every lesion) and at the end
    assert stats["missed_training_lesions"][0] == n and len(stats["missed_training_lesions"]) == 2
    assert any("training lesions missed" in m for m in messages)
    assert not net.training and next(net.parameters()).is_contiguous()
    with pytest.raises(ValueError, match="lesion_sampling"):
        next(loops.train_segmentation(spec, samples, 1, 0, device="cpu", lesion_sampling="lesion"))


def test_small_lesions_weigh_as_much_as_large_ones_in_the_fine_tuning_loss() -> None:
    mask = np.zeros((1, 20, 20, 20), dtype=np.float32)  # a patch's label, channel first
    mask[0, 1:3, 1:3, 1:3] = 1  # 8 voxels
    mask[0, 5:15, 5:15, 5:15] = 1  # 1000 voxels
    w = loops.lesion_size_weights(mask, reference_voxels=40.0, cap=10.0)
    assert w.shape == mask.shape and w.dtype == np.float32
    assert w[0, 1, 1, 1] == 5.0  # 40 / 8
    assert w[0, 6, 6, 6] == 1.0  # larger than the reference: never below 1
    assert w[0, 0, 19, 19] == 1.0  # background
    assert loops.lesion_size_weights(mask, reference_voxels=1000.0, cap=10.0)[0, 1, 1, 1] == 10.0  # capped
    assert np.array_equal(loops.lesion_size_weights(np.zeros((4, 4, 4))), np.ones((4, 4, 4)))


def test_sized_sampling_weighs_the_loss_from_scratch_and_records_only_its_name(tmp_path: Path) -> None:
    """``sized`` changes the gradient (the size weights reach the loss) but mines no lesions."""
    spec = dataclasses.replace(get_task("seg"), batch_size=2)
    samples = list(
        D.phantom_samples([900_000_003], spec.parsed_card(), cache_dir=tmp_path,
                          phantom_kwargs={"shape": (32, 128, 128), "spacing": (3.0, 1.6, 1.6)})
    )  # fmt: skip
    init = loops.build_network(spec).state_dict()
    trained, stats = {}, {}
    for mode in ("voxel", "sized"):
        stats[mode] = {}
        gen = loops.train_segmentation(
            spec, samples, epochs=1, seed=0, init_state=init, device="cpu", stats=stats[mode],
            lesion_sampling=mode,
        )  # fmt: skip
        try:
            while True:
                next(gen)
        except StopIteration as done:
            trained[mode] = done.value.state_dict()
    # same seed, same patches: only the loss's weights differ
    assert any(not torch.equal(trained["voxel"][k], trained["sized"][k]) for k in init)
    assert stats["sized"]["lesion_sampling"] == "sized" and "missed_training_lesions" not in stats["sized"]
    assert "lesion_sampling" not in stats["voxel"]
