"""Model packages: every weights format loads; tampered, truncated, unsafe or unfitting ones are refused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from napari_breastmri.errors import (
    CorruptFile,
    IncompatibleModel,
    ModelPackageError,
    ModelVerificationError,
)
from napari_breastmri.models import cli as models_cli
from napari_breastmri.models import registry
from napari_breastmri.models.card import sha256_file
from napari_breastmri.models.package import CorruptWeights, load_package, save_package, zip_package

from .test_models_helpers import ThresholdNet, blob_study, seg_card, threshold_package

UNET_KW = {"spatial_dims": 3, "in_channels": 2, "out_channels": 2, "features": [2, 2, 4, 4, 8, 2]}


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREASTMRI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BREASTMRI_MODELS_DIR", str(tmp_path / "user-models"))
    torch.manual_seed(0)


def unet_card(name: str = "toy-unet") -> dict:
    card = seg_card()
    card.update(name=name, network={"factory": "monai.networks.nets.BasicUNet", "kwargs": UNET_KW})
    card["outputs"] = {"classes": ["background", "lesion"], "activation": "softmax"}
    return card


def unet() -> torch.nn.Module:
    from monai.networks.nets import BasicUNet

    return BasicUNet(**UNET_KW)


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_monai_network_with_state_dict_loads_with_identical_weights(tmp_path: Path, fmt: str) -> None:
    net = unet()
    pkg = save_package(tmp_path / fmt, unet_card(), net, fmt=fmt)
    assert pkg.card.weights.format == fmt and pkg.card.weights.sha256 == sha256_file(pkg.weights_path)
    built = pkg.build("cpu")
    assert not built.training
    x = torch.rand(1, 2, 32, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(built(x), net.eval()(x))


def test_torchscript_package_loads(tmp_path: Path) -> None:
    pkg = threshold_package(tmp_path)
    net = pkg.build()
    x = torch.zeros(1, 2, 2, 2, 2)
    x[:, 1] = 1.0
    assert torch.all(net(x) > 0)


def test_zip_package_loads_and_reuses_its_extraction(tmp_path: Path) -> None:
    folder = save_package(tmp_path / "pkg", unet_card(), unet()).path
    z = zip_package(folder, tmp_path / "pkg.zip")
    a = load_package(z)
    assert a.origin == "zip" and a.source == z and (a.path / "card.yaml").is_file()
    assert a.path.is_relative_to(tmp_path / "cache")
    a.build()
    assert load_package(z).path == a.path


def test_zip_with_top_folder_loads(tmp_path: Path) -> None:
    folder = save_package(tmp_path / "pkg", unet_card(), unet()).path
    z = tmp_path / "nested.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in folder.iterdir():
            zf.write(p, f"inner/{p.name}")
    assert load_package(z).card.name == "toy-unet"


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_zip_path_traversal_is_refused(tmp_path: Path, member: str) -> None:
    folder = save_package(tmp_path / "pkg", unet_card(), unet()).path
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in folder.iterdir():
            zf.write(p, p.name)
        zf.writestr(member, "pwned")
    with pytest.raises(ModelPackageError, match="unsafe path"):
        load_package(z)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "evil.txt").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("card.yaml")
        info.external_attr = (0o120777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ModelPackageError, match="symbolic link"):
        load_package(z)


def test_wrong_sha256_is_refused_before_loading(tmp_path: Path) -> None:
    pkg = save_package(tmp_path / "pkg", unet_card(), unet())
    data = bytearray(pkg.weights_path.read_bytes())
    data[-1] ^= 0xFF
    pkg.weights_path.write_bytes(bytes(data))
    with pytest.raises(ModelVerificationError, match="sha256"):
        load_package(pkg.path).build()


def _rewrite_sha(folder: Path) -> None:
    card = yaml.safe_load((folder / "card.yaml").read_text())
    card["weights"]["sha256"] = sha256_file(folder / card["weights"]["file"])
    (folder / "card.yaml").write_text(yaml.safe_dump(card))


@pytest.mark.parametrize("fmt", ["safetensors", "torch", "torchscript"])
def test_truncated_weights_with_matching_sha_are_reported_as_corrupt(tmp_path: Path, fmt: str) -> None:
    if fmt == "torchscript":
        pkg = threshold_package(tmp_path)
    else:
        pkg = save_package(tmp_path / "pkg", unet_card(), unet(), fmt=fmt)
    data = pkg.weights_path.read_bytes()
    pkg.weights_path.write_bytes(data[: len(data) // 2])
    _rewrite_sha(pkg.path)
    with pytest.raises(CorruptWeights) as err:
        load_package(pkg.path).build()
    assert isinstance(err.value, CorruptFile) and isinstance(err.value, ModelPackageError)


class _Payload:
    """A pickle that would create a file when unpickled (a stand-in for running any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    pkg = save_package(tmp_path / "pkg", unet_card(), unet(), fmt="torch")
    marker = tmp_path / "pwned"
    torch.save({"weight": _Payload(marker)}, pkg.weights_path)
    _rewrite_sha(pkg.path)  # an attacker can always write a matching hash
    with pytest.raises(ModelPackageError, match="not plain weights"):
        load_package(pkg.path).build()
    assert not marker.exists()


def test_pickled_whole_module_is_refused(tmp_path: Path) -> None:
    pkg = save_package(tmp_path / "pkg", unet_card(), unet(), fmt="torch")
    torch.save(unet(), pkg.weights_path)
    _rewrite_sha(pkg.path)
    with pytest.raises(ModelPackageError, match="not plain weights"):
        load_package(pkg.path).build()


def test_weights_from_another_network_are_refused(tmp_path: Path) -> None:
    pkg = save_package(tmp_path / "pkg", unet_card(), unet())
    card = yaml.safe_load((pkg.path / "card.yaml").read_text())
    card["network"]["kwargs"]["features"] = [4, 4, 4, 4, 8, 4]
    (pkg.path / "card.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelPackageError, match="do not fit"):
        load_package(pkg.path).build()


def test_missing_weights_file(tmp_path: Path) -> None:
    pkg = save_package(tmp_path / "pkg", unet_card(), unet())
    pkg.weights_path.unlink()
    with pytest.raises(ModelPackageError, match="missing"):
        load_package(pkg.path).build()


def test_nnunet_package_gives_a_clear_message_without_nnunetv2(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    import importlib.util

    if importlib.util.find_spec("nnunetv2") is not None:
        pytest.skip("nnunetv2 is installed here; the message is for installations without it")
    folder = tmp_path / "nnunet-pkg"
    trained = folder / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (trained / "fold_0").mkdir(parents=True)
    (trained / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    (trained / "plans.json").write_text("{}")
    from napari_breastmri.models.card import sha256_path

    card = seg_card()
    card["network"] = {"factory": "nnunetv2"}
    card["weights"] = {"file": trained.name, "format": "nnunetv2", "sha256": sha256_path(trained)}
    (folder / "card.yaml").write_text(yaml.safe_dump(card))
    pkg = load_package(folder)
    pkg.verify()
    with pytest.raises(ModelPackageError, match=r"pip install napari-breastmri\[nnunet\]"):
        pkg.build()


def test_missing_phase_wrong_channels_and_missing_follow_up_are_incompatible(tmp_path: Path) -> None:
    study, _ = blob_study()
    pkg = save_package(tmp_path / "a", seg_card(channels=["pre", "sub2"]), ThresholdNet(), fmt="torchscript")
    with pytest.raises(IncompatibleModel, match="post2"):
        pkg.prepare_input(study)
    pkg = save_package(tmp_path / "b", seg_card(min_phases=4), ThresholdNet(), fmt="torchscript")
    with pytest.raises(IncompatibleModel, match="at least 4 phases"):
        pkg.prepare_input(study)
    pkg = save_package(
        tmp_path / "c", seg_card(channels=["pre", "pair:sub1"]), ThresholdNet(), fmt="torchscript"
    )
    with pytest.raises(IncompatibleModel, match="follow-up"):
        pkg.prepare_input(study)
    x, _ = pkg.prepare_input(study, follow_up=study)
    assert x.shape[0] == 2
    # a card whose channel count disagrees with the network's in_channels never opens
    bad = unet_card()
    bad["inputs"]["channels"] = ["pre", "post1", "sub1"]
    with pytest.raises(ModelPackageError, match="2 input channels but inputs.channels lists 3"):
        save_package(tmp_path / "d", bad, unet())


def test_prepare_input_returns_tensor_and_model_grid(tmp_path: Path) -> None:
    study, _ = blob_study()
    pkg = threshold_package(tmp_path, spacing_mm=[2.0, 1.6, 1.6])
    x, affine = pkg.prepare_input(study)
    assert x.dtype == torch.float32 and tuple(x.shape) == (2, 30, 24, 24)
    assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0), [2.0, 1.6, 1.6])


def test_registry_list_add_resolve_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = save_package(tmp_path / "src", unet_card("my-model"), unet())
    assert all(i.name != "my-model" for i in registry.available())
    added = registry.add(src.path)
    assert added.origin == "user" and added.source.parent == tmp_path / "user-models"
    with pytest.raises(ModelPackageError, match="already installed"):
        registry.add(src.path)
    assert "my-model@1.0" in [i.label for i in registry.available()]
    assert load_package("my-model").card.name == "my-model"
    assert load_package("my-model@1.0").origin == "user"
    with pytest.raises(ModelPackageError, match="No model package named"):
        load_package("no-such-model")
    # a zip can be added too, and a broken card is listed only on request
    zip_package(src.path, tmp_path / "z.zip")
    registry.add(tmp_path / "z.zip", force=True)
    broken = tmp_path / "user-models" / "broken"
    broken.mkdir()
    (broken / "card.yaml").write_text("name: x\n")
    assert "broken" not in [i.name for i in registry.available()]
    assert any(i.error for i in registry.available(include_broken=True))

    import argparse

    parser = argparse.ArgumentParser()
    models_cli.add_arguments(parser)
    assert models_cli.run(parser.parse_args(["list", "--all"])) == 0
    assert models_cli.run(parser.parse_args(["verify", "my-model"])) == 0
    out = capsys.readouterr().out
    assert "my-model@1.0" in out and "BROKEN" in out and "ok" in out
