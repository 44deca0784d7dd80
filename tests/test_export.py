"""Export details: HU within the scanner's range in the input's type, strict JSON, names that never collide."""

from __future__ import annotations

import json
import math

import nibabel
import numpy as np
import pytest
import torch
from torch import nn

from test_apply import _setup
from napari_advseg.attack import apply
from napari_advseg.attack.apply import SCANNER_HU, adversarial_hu, attack_volume, run_attack_volume
from napari_advseg.attack.sampling import export_prefix, sample_volume
from napari_advseg.data.cases import make_case
from napari_advseg.data.intensity import IntensityScale
from napari_advseg.errors import AdvsegError
from napari_advseg.io.json_write import strict_json
from napari_advseg.io.nifti import load_ct, load_labels
from napari_advseg.io.nifti_save import hu_dtype, save_volume
from napari_advseg.models.target import make_target


def _strict(text: str):
    """Parse JSON, refusing the NaN / Infinity extensions Python's json accepts."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_adversarial_hu_stays_in_the_scanner_range_and_whole():
    scale = IntensityScale("zscore", offset=0.0, scale=100.0)
    hu = np.array([[[-1000.0, 0.0, 3000.0]]], np.float32)
    out = adversarial_hu(hu, np.array([[[-10.9, 0.504, 30.9]]], np.float32), None, scale)
    assert out.tolist() == [[[SCANNER_HU[0], 50.0, SCANNER_HU[1]]]]
    # a slice beyond the scanner's range (padding at -2048) keeps its own range; fractional HU stay fractional
    hu = np.array([[[-2048.0, 0.5, 100.0]]], np.float32)
    out = adversarial_hu(hu, np.array([[[-30.0, 0.504, 1.0]]], np.float32), None, scale)
    assert out[0, 0, 0] == -2048.0 and out[0, 0, 1] == pytest.approx(50.4)


def test_export_keeps_the_input_type_and_range(tmp_path, monkeypatch):
    target, case, config, generator = _setup("zscore", "additive")
    source = tmp_path / "ct.nii.gz"
    save_volume(case.volume.hu, case.volume, source, dtype=np.int16)
    volume = load_ct(source)
    case = make_case(volume, case.labels, target.normalisation)
    eps_b = np.full(4, -3.0)  # a strong bias, below -1024 HU in the air
    sidecar = sample_volume(generator, config, target, case, tmp_path / "out", slices=[1, 2, 3], eps_b=eps_b)
    written = nibabel.load(tmp_path / "out" / sidecar["files"]["adversarial"])
    assert written.get_data_dtype() == np.int16
    hu = np.asarray(written.dataobj)
    assert hu.min() >= SCANNER_HU[0] and hu.max() <= SCANNER_HU[1]
    again = load_ct(tmp_path / "out" / sidecar["files"]["adversarial"])
    # the same attack without the scanner's range goes below it; the export is that, clipped
    monkeypatch.setattr(apply, "SCANNER_HU", (-1e6, 1e6))
    unclipped = run_attack_volume(attack_volume(generator, config, target, case, slices=[1, 2, 3], eps_b=eps_b))
    assert unclipped.adversarial_hu.min() < SCANNER_HU[0] - 10
    assert np.array_equal(again.hu, np.clip(unclipped.adversarial_hu, *SCANNER_HU))
    # still the image the network was scored on
    scale = IntensityScale.from_dict(sidecar["intensity_scale"])
    with torch.no_grad():
        seg = target(torch.as_tensor(scale.apply(again.hu))[:, None]).argmax(dim=1).numpy()
    exported = load_labels(tmp_path / "out" / sidecar["files"]["segmentation"], again)
    assert np.array_equal(seg[1:4], exported[1:4])
    # a float input keeps its float type
    assert hu_dtype(volume, again.hu) == np.int16
    float_file = tmp_path / "float.nii.gz"
    save_volume(volume.hu + 0.5, volume, float_file, dtype=np.float32)
    assert hu_dtype(load_ct(float_file), again.hu) == np.float32


class Background(nn.Module):
    """Sees nothing: every pixel is background, so every organ's clean Dice is 0 and its drop undefined."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 6, *x.shape[2:])
        logits[:, 0] = 1.0
        return logits


def test_sample_json_is_strict_and_names_do_not_collide(tmp_path):
    _, case, config, generator = _setup("zscore", "additive")
    target = make_target(Background(), normalisation={"mode": "zscore"}, device="cpu")
    runs = {}
    for slices in ([1], [1, 2, 3], None):
        prefix = export_prefix(slices, case.volume.n_slices, name="a")
        runs[prefix] = sample_volume(generator, config, target, case, tmp_path, slices=slices, prefix=prefix)
    assert list(runs) == ["a_slice_1_", "a_slices_1-3_", "a_all_slices_"]
    names = [set(sidecar["files"].values()) for sidecar in runs.values()]
    assert not names[0] & names[1] and not names[1] & names[2]
    assert all((tmp_path / name).is_file() for group in names for name in group)  # nothing replaced

    sidecar = runs["a_slice_1_"]
    assert sidecar["organs"] and all(math.isnan(row["drop"]) for row in sidecar["organs"].values())
    text = (tmp_path / sidecar["files"]["sidecar"]).read_text()
    written = _strict(text)
    assert all(row["drop"] is None for row in written["organs"].values())

    with pytest.raises(AdvsegError, match="exists already"):  # the same export again is refused
        sample_volume(generator, config, target, case, tmp_path, slices=[1], prefix="a_slice_1_")
    with pytest.raises(AdvsegError, match="run name"):
        export_prefix([1], 5, name="../up")
    assert export_prefix([3, 9, 10], 120) == "slices_003-010_n3_"


def test_strict_json_maps_undefined_numbers_to_null():
    value = {"a": float("nan"), "b": [np.float32(1.5), np.inf, -np.inf], "c": np.arange(2), "d": (np.nan,)}
    assert _strict(strict_json(value)) == {"a": None, "b": [1.5, None, None], "c": [0, 1], "d": [None]}
