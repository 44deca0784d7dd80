"""Tests of models.target, target_files and target_load: saving, exporting, loading and checking targets."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.errors import AdvsegError, InputFileError
from napari_advseg.models.target import Target, make_target, validate_target
from napari_advseg.models.target_meta import check_normalisation
from napari_advseg.models.target_files import CHECKPOINT_FORMAT, export_torchscript, save_target
from napari_advseg.models.target_load import load_target
from napari_advseg.models.unet import UNet2D

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("one_thread")]




class _NotAllowed:
    """An arbitrary class: pickled instances must be refused by weights_only loading."""

    def __init__(self):
        self.value = 3


def tiny_unet(n_classes: int = 6, seed: int = 0) -> UNet2D:
    """A small U-Net with non-trivial BatchNorm statistics (so buffers matter)."""
    torch.manual_seed(seed)
    model = UNet2D(1, n_classes, base_channels=4, depth=2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def script_file(tmp_path, module: nn.Module, name: str = "model.ts", extra: dict | None = None):
    path = tmp_path / name
    torch.jit.save(torch.jit.script(module.eval()), str(path), _extra_files=extra or {})
    return path


def assert_frozen(target: Target):
    assert not target.model.training
    assert all(not m.training for m in target.model.modules())
    assert all(not p.requires_grad for p in target.model.parameters())


def assert_gradient_to_input_only(target: Target):
    x = torch.randn(1, 1, 23, 31, requires_grad=True)
    target(x)[:, 1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in target.model.parameters())


# ----------------------------------------------------------------- checkpoint round trip


def test_checkpoint_round_trip(tmp_path):
    model = tiny_unet()
    path = tmp_path / "sub" / "target.pt"
    metrics = {"dice": {1: np.float32(0.9), 5: float("nan")}, "steps": np.int64(10), "curve": np.array([1.0, 0.5])}
    returned = save_target(path, model, normalisation={"mode": "window", "window": [-160, 240]}, metrics=metrics)
    assert returned == path and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["target.pt"]  # no temporary file left

    target = load_target(path, device="cpu")
    assert target.kind == "checkpoint" and target.path == str(path)
    assert target.class_names == ORGAN_CLASSES and target.n_classes == 6
    assert target.normalisation == {"mode": "window", "window": [-160.0, 240.0]}
    assert target.device == torch.device("cpu")
    assert target.metrics["dice"][1] == pytest.approx(0.9) and target.metrics["steps"] == 10
    assert target.metrics["curve"] == [1.0, 0.5]
    assert_frozen(target)
    x = torch.randn(2, 1, 37, 50)
    with torch.no_grad():
        torch.testing.assert_close(target(x), model(x), rtol=0, atol=0)
    assert_gradient_to_input_only(target)
    # the original model is untouched by saving
    assert all(p.requires_grad for p in model.parameters())


def test_checkpoint_is_plain_data_for_weights_only(tmp_path):
    path = save_target(tmp_path / "t.pt", tiny_unet(n_classes=3), class_names=["bg", "a", "b"])
    data = torch.load(path, weights_only=True)
    assert data["format"] == CHECKPOINT_FORMAT and data["version"] == 1
    assert data["arch"] == {"in_channels": 1, "n_classes": 3, "base_channels": 4, "depth": 2}
    assert data["class_names"] == ["bg", "a", "b"]
    assert data["normalisation"] == {"mode": "zscore"}
    assert data["metrics"] == {}
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in data["state_dict"].values())
    assert load_target(path, "cpu").class_names == ("bg", "a", "b")


def test_numpy_scalars_in_metrics_are_stored_as_python_numbers(tmp_path):
    metrics = {"dice": {"a": np.float64(0.5)}, "history": [np.float32(1.5), np.int64(3)], "flag": np.bool_(True)}
    path = save_target(tmp_path / "t.pt", tiny_unet(n_classes=3), class_names=["bg", "a", "b"], metrics=metrics)
    stored = torch.load(path, weights_only=True)["metrics"]  # numpy.float64 subclasses float: it used to fail here
    assert stored == {"dice": {"a": 0.5}, "history": [1.5, 3], "flag": True}
    assert type(stored["dice"]["a"]) is float and type(stored["history"][1]) is int


def test_arguments_override_stored_metadata(tmp_path):
    path = save_target(tmp_path / "t.pt", tiny_unet(n_classes=2), class_names=["bg", "organ"])
    target = load_target(path, "cpu", class_names=["background", "tumour"], normalisation={"mode": "zscore"})
    assert target.class_names == ("background", "tumour")


def test_save_accepts_a_target(tmp_path):
    path = save_target(tmp_path / "a.pt", tiny_unet(n_classes=2), class_names=["x", "y"], metrics={"m": 1})
    again = save_target(tmp_path / "b.pt", load_target(path, "cpu"))
    target = load_target(again, "cpu")
    assert target.class_names == ("x", "y") and target.metrics == {"m": 1}


def test_save_errors_leave_no_file(tmp_path, monkeypatch):
    path = tmp_path / "t.pt"
    with pytest.raises(AdvsegError, match="class names"):
        save_target(path, tiny_unet(), class_names=["bg", "liver"])
    with pytest.raises(AdvsegError, match="metrics"):
        save_target(path, tiny_unet(), metrics={"obj": _NotAllowed()})
    with pytest.raises(AdvsegError, match="normalisation mode"):
        save_target(path, tiny_unet(), normalisation={"mode": "minmax"})
    with pytest.raises(AdvsegError, match="UNet2D"):
        save_target(path, nn.Conv2d(1, 6, 1))
    assert list(tmp_path.iterdir()) == []

    # a failure while writing keeps an existing file intact and leaves no temporary file
    path.write_bytes(b"old")

    def failing_save(obj, name):
        with open(name, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_target(path, tiny_unet())
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.pt"]


# ----------------------------------------------------------------- TorchScript


def test_torchscript_round_trip(tmp_path):
    model = tiny_unet(n_classes=3)
    path = export_torchscript(model, tmp_path / "m.ts", class_names=["bg", "liver", "spleen"],
                              normalisation={"mode": "window", "window": [-100, 200]})
    assert [p.name for p in tmp_path.iterdir()] == ["m.ts"]
    assert model.training is False and all(p.requires_grad for p in model.parameters())  # original untouched
    target = load_target(path, "cpu")
    assert target.kind == "torchscript"
    assert target.class_names == ("bg", "liver", "spleen")
    assert target.normalisation == {"mode": "window", "window": [-100.0, 200.0]}
    assert_frozen(target)
    x = torch.randn(1, 1, 19, 45)
    with torch.no_grad():
        torch.testing.assert_close(target(x), model(x))
    assert_gradient_to_input_only(target)


def test_torchscript_from_a_loaded_checkpoint_keeps_metadata(tmp_path):
    checkpoint = save_target(tmp_path / "t.pt", tiny_unet(n_classes=2), class_names=["bg", "kidney"],
                             metrics={"dice": 0.5})
    exported = export_torchscript(load_target(checkpoint, "cpu"), tmp_path / "t.ts")
    target = load_target(exported, "cpu")
    assert target.class_names == ("bg", "kidney") and target.metrics == {"dice": 0.5}
    # a TorchScript target can be exported again
    again = load_target(export_torchscript(target, tmp_path / "again.ts"), "cpu")
    assert again.class_names == ("bg", "kidney")


def test_torchscript_without_metadata_uses_defaults_or_arguments(tmp_path):
    path = script_file(tmp_path, tiny_unet(n_classes=6))
    target = load_target(path, "cpu")
    assert target.class_names == ORGAN_CLASSES and target.normalisation == {"mode": "zscore"}
    path2 = script_file(tmp_path, tiny_unet(n_classes=2), "two.ts")
    assert load_target(path2, "cpu", class_names=["bg", "fg"]).n_classes == 2


def test_export_falls_back_to_tracing(tmp_path):
    class Unscriptable(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x, *args):  # *args cannot be scripted
            return self.conv(x)

    path = export_torchscript(Unscriptable(), tmp_path / "traced.ts", class_names=["bg", "fg"])
    assert load_target(path, "cpu").n_classes == 2


def test_export_refuses_a_model_that_does_not_fit(tmp_path):
    with pytest.raises(AdvsegError, match="3 channels"):
        export_torchscript(nn.Conv2d(1, 3, 1), tmp_path / "bad.ts")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- in-memory targets and validation


def test_make_target_freezes_and_validates():
    model = tiny_unet(n_classes=6)
    target = make_target(model)
    assert target.kind == "memory" and target.path is None
    assert_frozen(target)
    assert_gradient_to_input_only(target)
    with pytest.raises(AdvsegError, match="outputs 6 channels but 2 classes"):
        make_target(tiny_unet(n_classes=6), class_names=["a", "b"])


def test_validate_target_direct():
    target = Target(nn.Conv2d(1, 6, 3, stride=2, padding=1), ORGAN_CLASSES, {"mode": "zscore"}, "memory",
                    "somewhere/net.pt", torch.device("cpu"))
    with pytest.raises(AdvsegError, match=r"net\.pt.*20x24 pixels.*40x48 input"):
        validate_target(target, 40, 48)
    target.model = nn.Conv2d(1, 6, 3, padding=1)
    validate_target(target, 40, 48)


def test_check_normalisation():
    assert check_normalisation(None) == {"mode": "zscore"}
    assert check_normalisation({"mode": "window", "window": (np.int16(-1), 5)}) == {"mode": "window",
                                                                                   "window": [-1.0, 5.0]}
    for bad in ({"mode": "window", "window": [5, 1]}, {"mode": "window"}, {"mode": "hist"}, "zscore"):
        with pytest.raises(ValueError):
            check_normalisation(bad)


# ----------------------------------------------------------------- load errors


def load_error(path, **kwargs) -> str:
    with pytest.raises(InputFileError) as info:
        load_target(path, "cpu", **kwargs)
    message = str(info.value)
    assert os.path.basename(str(path)) in message
    assert info.value.path == str(path)
    return message


def test_missing_file_and_folder(tmp_path):
    assert "no such file" in load_error(tmp_path / "absent.pt")
    assert "folder" in load_error(tmp_path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a network\n")
    message = load_error(path)
    assert "neither" in message and "text" in message


def test_random_bytes(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    assert "neither a napari-advseg target checkpoint nor a TorchScript model" in load_error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert "empty" in load_error(path)


def test_nifti_like_garbage(tmp_path):
    header = bytearray(352)
    header[0:4] = struct.pack("<i", 348)
    header[344:348] = b"n+1\x00"
    image = bytes(header) + np.zeros(64, np.int16).tobytes()
    raw = tmp_path / "ct.nii"
    raw.write_bytes(image)
    assert "NIfTI" in load_error(raw)
    packed = tmp_path / "ct.nii.gz"
    packed.write_bytes(gzip.compress(image))
    assert "gzip" in load_error(packed)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": _NotAllowed()}, path)
    message = load_error(path)
    assert "_NotAllowed" in message and "safety" in message
    plain_pickle = tmp_path / "plain.pkl"
    with open(plain_pickle, "wb") as handle:
        pickle.dump(_NotAllowed(), handle)
    load_error(plain_pickle)


def test_dict_of_another_format(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "someone-else", "weights": torch.zeros(3)}, path)
    assert "someone-else" in load_error(path)
    path2 = tmp_path / "keys.pt"
    torch.save({"epoch": 3, "optimizer": {}}, path2)
    message = load_error(path2)
    assert "missing keys" in message and "arch" in message and "state_dict" in message
    path3 = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path3)
    assert "Tensor" in load_error(path3)


def test_bare_state_dict(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(tiny_unet().state_dict(), path)
    assert "state_dict" in load_error(path)


def test_newer_version(tmp_path):
    path = save_target(tmp_path / "t.pt", tiny_unet())
    data = torch.load(path, weights_only=True)
    data["version"] = 7
    torch.save(data, path)
    assert "newer" in load_error(path)


def test_state_dict_that_does_not_fit(tmp_path):
    path = save_target(tmp_path / "t.pt", tiny_unet())
    data = torch.load(path, weights_only=True)
    data["state_dict"]["head.weight"] = torch.zeros(6, 8, 1, 1)
    del data["state_dict"]["head.bias"]
    data["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(data, path)
    message = load_error(path)
    assert "head.weight (file (6, 8, 1, 1), network (6, 4, 1, 1))" in message
    assert "missing: head.bias" in message and "unexpected: extra.weight" in message

    data["arch"] = {"in_channels": 1, "n_classes": 6, "width": 3}
    torch.save(data, path)
    assert "network description" in load_error(path)


def test_unknown_normalisation_mode(tmp_path):
    path = save_target(tmp_path / "t.pt", tiny_unet())
    data = torch.load(path, weights_only=True)
    data["normalisation"] = {"mode": "histogram"}
    torch.save(data, path)
    assert "histogram" in load_error(path)
    ts = script_file(tmp_path, tiny_unet(), "m.ts",
                     {"advseg.json": json.dumps({"class_names": list(ORGAN_CLASSES),
                                                 "normalisation": {"mode": "minmax"}})})
    assert "minmax" in load_error(ts)


def test_torchscript_with_wrong_channel_count(tmp_path):
    path = script_file(tmp_path, nn.Conv2d(1, 3, 3, padding=1), "three.ts")
    message = load_error(path)
    assert "outputs 3 channels" in message and "6 classes" in message


def test_checkpoint_with_wrong_class_count(tmp_path):
    path = save_target(tmp_path / "t.pt", tiny_unet(n_classes=6))
    message = load_error(path, class_names=["bg", "liver", "spleen"])
    assert "outputs 6 channels but 3 classes" in message


def test_output_of_another_size(tmp_path):
    path = script_file(tmp_path, nn.Conv2d(1, 6, 3, stride=2, padding=1), "strided.ts")
    message = load_error(path)
    assert "32x32" in message and "64x64" in message


def test_model_that_fails_or_returns_labels(tmp_path):
    class TwoChannelInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 6, 1)

        def forward(self, x):
            return self.conv(x)

    assert "expects 2 input channels" in load_error(script_file(tmp_path, TwoChannelInput(), "two_in.ts"))

    class Labels(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 6, x.shape[2], x.shape[3], dtype=torch.long)

    assert "floating point" in load_error(script_file(tmp_path, Labels(), "labels.ts"))


def test_no_deprecation_noise_from_our_wrappers(tmp_path):
    path = export_torchscript(tiny_unet(), tmp_path / "m.ts")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        load_target(path, "cpu")
