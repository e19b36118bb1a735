"""The demo networks: shapes, the CAM layers the cards name, temperature, dropout, size."""

from __future__ import annotations

import numpy as np
import torch

from napari_breastmri.models.networks import CaseClassifier, LesionAttentionClassifier, LesionUNet
from napari_breastmri.training.loops import build_network
from napari_breastmri.training.tasks import TASKS


def test_unet_keeps_the_grid_and_is_small() -> None:
    net = LesionUNet(3, 1, features=(4, 8, 8, 8)).eval()
    x = torch.randn(1, 3, 8, 16, 24)
    assert net(x).shape == (1, 1, 8, 16, 24)


def test_classifier_temperature_divides_the_logits() -> None:
    net = CaseClassifier(2, 4, features=(4, 4, 8, 8)).eval()
    x = torch.randn(2, 2, 8, 16, 16)
    logits = net.logits(x)
    net.temperature.fill_(2.0)
    torch.testing.assert_close(net(x), logits / 2.0)
    assert "temperature" in net.state_dict()  # it ships inside the weights


def test_classifier_dropout_is_stochastic_in_train_mode_only() -> None:
    torch.manual_seed(0)
    net = CaseClassifier(1, 2, features=(4, 4, 4, 4), dropout=0.5)
    x = torch.randn(1, 1, 8, 16, 16)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    outs = torch.stack([net(x) for _ in range(8)])
    assert outs.std(dim=0).max() > 0


def test_every_task_card_builds_and_names_an_existing_cam_layer() -> None:
    for spec in TASKS.values():
        card = spec.parsed_card()  # validated by the models code
        net = build_network(spec)
        modules = dict(net.named_modules())
        assert card.cam.target_layer in modules, spec.key
        n_params = sum(p.numel() for p in net.parameters())
        assert n_params * 4 < 3e6, f"{spec.key}: {n_params} parameters is not a tiny demo network"
        assert card.network.kwargs["in_channels"] == len(card.inputs.channels)
        assert card.demo and "not for clinical use" in card.intended_use


def test_mc_dropout_on_the_head_alone_equals_full_passes() -> None:
    """The convolutions run once when all dropout is in the head: same samples, same numbers."""
    from napari_breastmri import progress
    from napari_breastmri.inference.uncertainty import predict_passes

    net = CaseClassifier(in_channels=2, out_channels=3, features=(4, 8, 8, 8), dropout=0.5).eval()

    class Whole(torch.nn.Module):  # the same network without the head split: full passes
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    x = torch.randn(2, 8, 16, 16)
    runs = []
    for model in (net, Whole(net)):
        torch.manual_seed(3)
        with torch.inference_mode():
            probs, method = progress.run(
                predict_passes(model, x, method="mc_dropout", passes=10, activation="softmax")
            )
        runs.append(probs)
        assert method == "mc_dropout" and probs.shape == (10, 3)
    assert np.allclose(runs[0], runs[1], atol=1e-6)
    assert float(runs[0].std(axis=0).max()) > 1e-4  # dropout really varied the passes


def test_attention_classifier_pools_only_where_it_attends() -> None:
    """Features outside the attention map cannot move the logits: the evidence is where it attends."""
    torch.manual_seed(0)
    net = LesionAttentionClassifier(2, 4, features=(4, 8, 8)).eval()
    x = torch.randn(1, 2, 16, 16, 16)
    logits, att = net.logits_and_attention(x)
    assert logits.shape == (1, 4) and att.shape == (1, 1, 4, 4, 4)
    torch.testing.assert_close(net(x), net.dropout_head(net.features(x)))
    with torch.no_grad():  # attend to one corner cell only
        net.attention.weight.zero_()
        net.attention.bias.fill_(-30.0)
    f = net.features(x)
    w = torch.full_like(f[:, :1], -30.0)
    w[..., 0, 0, 0] = 30.0
    net.attention_logits = lambda _f: w  # type: ignore[method-assign]
    g = f.clone()
    g[..., 2:, 2:, 2:] += 5.0  # change the features away from the attended cell
    torch.testing.assert_close(net.head_logits(g), net.head_logits(f))
    g[..., 0, 0, 0] += 5.0
    assert not torch.allclose(net.head_logits(g), net.head_logits(f))


def test_softmax_attention_hides_the_attention_strength_from_the_head() -> None:
    """With softmax pooling only *where* it attends matters: a uniform shift of the attention
    logits (attend more or less to everything) leaves the logits unchanged; with sigmoid it does not."""
    torch.manual_seed(1)
    x = torch.randn(1, 2, 16, 16, 16)
    for pooling, invariant in (("softmax", True), ("sigmoid", False)):
        net = LesionAttentionClassifier(2, 3, features=(4, 8, 8), pooling=pooling).eval()
        f = net.features(x)
        before = net.head_logits(f)
        with torch.no_grad():
            net.attention.bias -= 6.0  # much weaker attention everywhere
        assert torch.allclose(net.head_logits(f), before, atol=1e-5) is invariant, pooling


def test_attention_target_any_lesion_cell_counts_small_lesions_fully() -> None:
    from napari_breastmri.training import loops

    masks = torch.zeros(1, 8, 8, 8)
    masks[0, 0, 0, 0] = 1.0  # one voxel of 64 in the first 4 x 4 x 4 cell
    on_it = torch.full((1, 1, 2, 2, 2), -8.0)
    on_it[0, 0, 0, 0, 0] = 8.0
    assert float(loops._attention_loss(on_it, masks, "any")) < 0.1
    assert float(loops._attention_loss(on_it, masks, "share")) > float(
        loops._attention_loss(on_it, masks, "any")
    )
