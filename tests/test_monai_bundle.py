"""MONAI bundles: reading, bad bundles, and prediction equal to the bundle's own inferer."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from folder_helpers import (CLASS_NAMES, bundle_config, check_slab_equals_volume, monai_reference, synthetic_ct,
                            write_monai_bundle)
from napari_advseg.errors import AdvsegError

pytest.importorskip("monai")

from napari_advseg.models.folder_targets import load_volume_target  # noqa: E402
from napari_advseg.models.monai_bundle import read_monai_bundle  # noqa: E402
from napari_advseg.models.target_load import load_target  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray, c: int) -> float:
    both = (a == c).sum() + (b == c).sum()
    return 1.0 if both == 0 else 2 * ((a == c) & (b == c)).sum() / both


def _message(call) -> str:
    with pytest.raises(AdvsegError) as info:
        call()
    return str(info.value)


def test_prediction_equals_the_bundles_own_inferer(tmp_path):
    import nibabel

    folder = write_monai_bundle(tmp_path)
    array = np.ascontiguousarray(synthetic_ct().transpose(2, 1, 0))
    affine = np.diag([1.2, 1.1, 2.5, 1.0])
    affine[:3, 3] = [-20.0, 10.0, 5.0]
    nibabel.save(nibabel.Nifti1Image(array, affine), tmp_path / "ct.nii.gz")
    reference = monai_reference(folder, tmp_path / "ct.nii.gz")
    bundle = read_monai_bundle(folder)
    assert bundle.invert_probabilities and bundle.roi_size == (16, 32, 32) and bundle.overlap == 0.5
    hu = torch.tensor(array, requires_grad=True)
    logits = bundle.logits(hu, affine)
    ours = logits.argmax(0).numpy()
    assert ours.shape == reference.shape and len(np.unique(reference)) >= 2
    for c in range(3):
        assert dice(ours, reference, c) >= 0.999, (c, dice(ours, reference, c))
    logits[1].sum().backward()
    assert float(hu.grad.abs().sum()) > 0


def test_bundle_reads_names_window_and_loads_as_volume_target(tmp_path):
    folder = write_monai_bundle(tmp_path)
    bundle = read_monai_bundle(folder)
    assert bundle.class_names == CLASS_NAMES
    assert bundle.normalisation == {"mode": "window", "window": [-175.0, 250.0], "range": [0.0, 1.0]}
    assert [type(t).__name__ for t in bundle.transforms] == ["Orientationd", "Spacingd", "ScaleIntensityRanged"]
    assert load_volume_target(folder, "cpu").class_names == CLASS_NAMES
    message = _message(lambda: load_target(folder, "cpu"))  # Spacingd before the window: no slab target
    assert "Spacingd resamples HU before the intensity transform" in message and "\n" not in message


def test_3d_bundle_is_a_slab_target_equal_to_the_volume_prediction(tmp_path):
    """Window first, then Orientationd and Spacingd: on the whole volume as one slab, the bundle's argmax."""
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.models.folder_targets import fit_target_to_volume

    transforms = [{"_target_": "LoadImaged", "keys": "image"},
                  {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -175, "a_max": 250, "b_min": 0.0,
                   "b_max": 1.0, "clip": True},
                  {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
                  {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"}]
    folder = write_monai_bundle(tmp_path, config=bundle_config(roi=(32, 32, 16), transforms=transforms))
    hu = synthetic_ct()
    volume = volume_from_array(hu, (2.5, 1.2, 1.1))
    target = load_target(folder, "cpu")
    fit_target_to_volume(target, volume)
    assert target.volumetric and target.slab_depth == round(16 * 2.0 / 2.5)  # RAS puts z last: roi 16 at 2 mm
    check_slab_equals_volume(folder, target, hu, volume, channel=2)


def test_2d_bundle_is_a_target(tmp_path):
    transforms = [{"_target_": "LoadImaged", "keys": "image"},
                  {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -160, "a_max": 240,
                   "b_min": -1.0, "b_max": 1.0, "clip": True}]
    folder = write_monai_bundle(tmp_path, config=bundle_config(2, (32, 32), transforms=transforms))
    target = load_target(folder, "cpu")
    assert target.kind == "monai" and target.class_names == CLASS_NAMES
    assert target.normalisation == {"mode": "window", "window": [-160.0, 240.0], "range": [-1.0, 1.0]}
    x = torch.randn(2, 1, 45, 40, requires_grad=True)
    out = target(x)
    assert out.shape == (2, 3, 45, 40)
    from monai.inferers import SlidingWindowInferer

    with torch.no_grad():
        reference = SlidingWindowInferer((32, 32), overlap=0.5, mode="gaussian")(x, target.model.network)
    assert torch.allclose(out, reference, atol=1e-4)
    out.sum().backward()
    assert float(x.grad.abs().sum()) > 0


def test_bad_bundles_name_the_file(tmp_path):
    folder = write_monai_bundle(tmp_path / "a")
    (folder / "models" / "model.pt").unlink()
    assert "model.pt: is missing" in _message(lambda: read_monai_bundle(folder))

    folder = write_monai_bundle(tmp_path / "b")
    (folder / "configs" / "metadata.json").unlink()
    assert "metadata.json: is missing" in _message(lambda: read_monai_bundle(folder))

    config = bundle_config()
    config["preprocessing"]["transforms"].insert(2, {"_target_": "CropForegroundd", "keys": "image",
                                                     "source_key": "image"})
    folder = write_monai_bundle(tmp_path / "c", config=config)
    message = _message(lambda: read_monai_bundle(folder))
    assert "inference.json" in message and "CropForegroundd is not supported" in message

    config = bundle_config()
    config["network_def"]["in_channels"] = 2
    folder = write_monai_bundle(tmp_path / "d", config=config)
    assert "2 input channels; a CT gives one" in _message(lambda: read_monai_bundle(folder))

    other = bundle_config(n_classes=4)
    folder = write_monai_bundle(tmp_path / "e", config=bundle_config(), class_names=CLASS_NAMES,
                                weights=_weights(other))
    message = _message(lambda: read_monai_bundle(folder))
    assert "model.pt" in message and "weights do not fit" in message


def _weights(config: dict) -> dict:
    from monai.bundle import ConfigParser

    return ConfigParser(config).get_parsed_content("network_def").state_dict()


def test_missing_extra_names_it(tmp_path, monkeypatch):
    folder = write_monai_bundle(tmp_path)
    monkeypatch.setitem(sys.modules, "monai", None)
    message = _message(lambda: load_target(folder, "cpu"))
    assert 'pip install "napari-advseg[monai]"' in message and "\n" not in message


def test_plain_folder_says_what_a_target_folder_holds(tmp_path):
    message = _message(lambda: load_target(tmp_path, "cpu"))
    assert "neither an nnU-Net trained-model folder" in message and "MONAI bundle" in message
