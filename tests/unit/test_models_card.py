"""card.yaml parsing: a valid card round-trips; each kind of mistake is refused with a clear message."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from napari_breastmri.errors import ModelPackageError
from napari_breastmri.models.card import load_card, parse_card, sha256_path, valid_channel_token

SHA = "a" * 64


def good() -> dict[str, Any]:
    return {
        "name": "demo-lesion",
        "version": "1.2",
        "task": "segment",
        "target": "lesion",
        "demo": True,
        "network": {
            "factory": "monai.networks.nets.BasicUNet",
            "kwargs": {"spatial_dims": 3, "in_channels": 3, "out_channels": 2},
        },
        "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": SHA},
        "inputs": {"channels": ["pre", "post1", "sub1"], "spacing_mm": [2, 1, 1], "patch_size": [16, 32, 32]},
        "outputs": {"classes": ["background", "lesion"], "display_names": {"lesion": "Lesion"}},
        "cam": {"target_layer": "final_conv"},
        "uncertainty": {"method": "tta", "passes": 4},
        "metrics": {"dice": 0.8},
        "intended_use": "demo",
        "custom_key": {"kept": True},
    }


def test_valid_card_parses_with_defaults_and_round_trips() -> None:
    card = parse_card(good())
    assert card.label == "demo-lesion@1.2"
    assert card.inputs.spacing_mm == [2.0, 1.0, 1.0]
    assert card.inputs.normalisation == {"method": "percentile"}
    assert card.outputs.activation == "softmax" and card.outputs.threshold == 0.5
    assert card.uncertainty.method == "tta" and card.cam.target_layer == "final_conv"
    assert card.n_channels == 3 and not card.needs_follow_up
    again = parse_card(yaml.safe_load(card.to_yaml()))
    assert again == card
    assert again.extra == {"custom_key": {"kept": True}}


def test_load_card_from_folder(tmp_path) -> None:
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(good()))
    assert load_card(tmp_path).name == "demo-lesion"
    (tmp_path / "card.yaml").write_text("name: [unclosed")
    with pytest.raises(ModelPackageError, match="not valid YAML"):
        load_card(tmp_path)
    with pytest.raises(ModelPackageError, match=r"No card\.yaml"):
        load_card(tmp_path / "nowhere")


def _mutate(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(good())
    keys = path.split(".")
    node = doc
    for k in keys[:-1]:
        node = node[k]
    if value is KeyError:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("name", KeyError, "required key 'name'"),
        ("name", "bad name/..", "may only hold"),
        ("task", "regress", "'task' is 'regress'"),
        ("network.factory", "os.system", "not allowed"),
        ("network.factory", "builtins.eval", "not allowed"),
        ("weights.sha256", "1234", "64-hex sha256"),
        ("weights.file", "../escape.safetensors", "relative path inside"),
        ("weights.format", "pickle", "weights.format"),
        ("inputs.channels", ["pre", "post1", "t2"], "unknown channel token"),
        ("inputs.channels", ["pre", "post1"], "3 input channels but inputs.channels lists 2"),
        ("inputs.patch_size", KeyError, "needs 'inputs.patch_size'"),
        ("inputs.spacing_mm", [1, 1], "3 positive numbers"),
        ("inputs.spacing", [1, 1, 1], "unknown key"),
        ("outputs.classes", ["background", "lesion", "node"], "3"),
        ("outputs.threshold", 1.5, "between 0 and 1"),
        ("uncertainty.method", "ensembles", "uncertainty.method"),
        ("inputs", KeyError, "'inputs' section is missing"),
    ],
)
def test_card_mistakes_are_refused_with_a_clear_message(path: str, value: Any, message: str) -> None:
    with pytest.raises(ModelPackageError, match=message):
        parse_card(_mutate(path, value))


def test_torchscript_needs_both_factory_and_format() -> None:
    doc = _mutate("network.factory", "torchscript")
    with pytest.raises(ModelPackageError, match="TorchScript"):
        parse_card(doc)
    doc["weights"]["format"] = "torchscript"
    assert parse_card(doc).weights.format == "torchscript"


def test_channel_tokens() -> None:
    for ok in ("pre", "post3", "sub12", "last", "sub_last", "uf4", "pair:sub1", "pair:pre"):
        assert valid_channel_token(ok), ok
    for bad in ("post", "t1", "pair:", "pair:pair:pre", "sub-1"):
        assert not valid_channel_token(bad), bad


def test_sha256_of_file_and_folder(tmp_path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    assert sha256_path(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    d = tmp_path / "nnunet"
    (d / "fold_0").mkdir(parents=True)
    (d / "fold_0" / "checkpoint_final.pth").write_bytes(b"x")
    first = sha256_path(d)
    (d / "fold_0" / "checkpoint_final.pth").write_bytes(b"y")
    assert sha256_path(d) != first
