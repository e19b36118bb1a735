"""The demo networks: shapes, the CAM layers the cards name, temperature, dropout, size."""

from __future__ import annotations

import torch

from napari_breastmri.models.networks import CaseClassifier, LesionUNet
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
