"""The napari sample data contribution: the shipped phantom CT, labels, target and generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_advseg._napari.sample_data import CT_LAYER_NAME, LABELS_LAYER_NAME, abdomen_phantom
from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir
from napari_advseg.errors import AdvsegError


@pytest.fixture
def sample_paths() -> dict[str, Path]:
    """Paths of the shipped sample files; skips when any is missing."""
    folder = sample_data_dir()
    paths = {kind: folder / name for kind, name in SAMPLE_FILES.items()}
    missing = sorted(path.name for path in paths.values() if not path.is_file())
    if missing:
        pytest.skip(f"sample data not built ({', '.join(missing)} missing in {folder}; run `advseg make-sample`)")
    return paths


def test_missing_sample_data_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVSEG_SAMPLE_DATA", str(tmp_path))
    with pytest.raises(AdvsegError, match="advseg make-sample") as info:
        abdomen_phantom()
    assert str(tmp_path) in str(info.value)
    assert SAMPLE_FILES["ct"] in str(info.value)


def test_abdomen_phantom_layers(sample_paths):
    (ct, ct_kwargs, ct_type), (labels, labels_kwargs, labels_type) = abdomen_phantom()
    assert (ct_type, labels_type) == ("image", "labels")
    assert ct_kwargs["name"] == CT_LAYER_NAME and labels_kwargs["name"] == LABELS_LAYER_NAME
    assert ct.dtype == np.float32 and labels.dtype == np.uint8
    assert ct.shape == labels.shape and ct.ndim == 3
    assert ct_kwargs["scale"] == labels_kwargs["scale"]
    np.testing.assert_allclose(ct_kwargs["metadata"]["advseg_affine"], labels_kwargs["metadata"]["advseg_affine"])
    assert ct.min() < -500  # air in HU
    assert set(np.unique(labels).tolist()) <= set(range(6))

    meta = ct_kwargs["metadata"]
    assert meta["advseg_kind"] == "ct" and labels_kwargs["metadata"]["advseg_kind"] == "labels"
    assert Path(meta["advseg_path"]) == sample_paths["ct"]
    assert Path(meta["advseg_target"]) == sample_paths["target"]
    assert Path(meta["advseg_generator"]) == sample_paths["generator"]


@pytest.mark.gui
def test_open_sample_in_viewer(sample_paths, make_napari_viewer):  # skip before the viewer exists
    from napari.layers import Image, Labels

    viewer = make_napari_viewer()
    viewer.open_sample("napari-advseg", "abdomen_phantom")
    assert [layer.name for layer in viewer.layers] == [CT_LAYER_NAME, LABELS_LAYER_NAME]
    ct, labels = viewer.layers
    assert isinstance(ct, Image) and isinstance(labels, Labels)
    assert ct.metadata["advseg_target"] == str(sample_paths["target"])
    assert ct.metadata["advseg_generator"] == str(sample_paths["generator"])
    assert ct.metadata["advseg_source"] is not None and labels.metadata["advseg_source"] is not None
    np.testing.assert_allclose(ct.scale, labels.scale)
    assert tuple(ct.contrast_limits) == (-200, 300)
