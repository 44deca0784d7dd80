"""The Explore and Export tabs with folder targets: an nnU-Net 2d folder and a 2D MONAI bundle, as a user
would use them (Data tab, a generator, Explore sliders, Apply to whole volume, Export to NIfTI and DICOM).

Run under a display (``xvfb-run -a``). The CT is conftest.py's ``tiny`` phantom (8 x 64 x 64, 5 x 3 x 3 mm),
the folders are test_folder_commands.py's (2d plans at 2.5 mm with a 64-pixel patch; a bundle whose
preprocessing is a window), so each slice is resampled and windowed inside the target.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from folder_helpers import CLASS_NAMES
from test_folder_commands import _folder
from test_widget import SPACING, _organ_slice, _tiny_training, _widget

pytestmark = pytest.mark.gui

ORGANS = set(CLASS_NAMES[1:])


def _folder_scene(make_napari_viewer, qtbot, tiny, folder):
    """The tiny CT and its reference labels (the six organs), the folder loaded as the Data tab's target."""
    viewer = make_napari_viewer()
    viewer.add_image(tiny["hu"], name="CT", scale=SPACING, colormap="gray", contrast_limits=(-200, 300))
    viewer.add_labels(tiny["labels"], name="reference", scale=SPACING)
    widget = _widget(viewer, qtbot)
    assert widget.data.load_target_file(folder)
    return viewer, widget


@pytest.mark.parametrize("kind", ["nnunet", "monai"])
def test_explore_apply_and_export_with_a_folder_target(kind, make_napari_viewer, qtbot, tiny, tmp_path,
                                                       monkeypatch):
    import highdicom as hd
    import nibabel

    from napari_advseg.io.nifti import load_ct, load_labels
    from napari_advseg.widgets import _layers as L
    from napari_advseg.widgets._train import IDLE

    from napari.utils.notifications import NotificationSeverity, notification_manager

    seen = len(notification_manager.records)
    folder = _folder(tmp_path / "target", kind)
    viewer, widget = _folder_scene(make_napari_viewer, qtbot, tiny, folder)
    session = widget.session
    assert session.target.class_names == CLASS_NAMES and session.target.kind == kind
    # the Data tab names the folder's own normalisation (the plans' CTNormalization; the bundle's window)
    assert widget.data.normalisation_label.text() == {
        "nnunet": "CT: HU clipped to [-150, 250], then (HU - 60) / 70",
        "monai": "window [-160, 240] HU -> [-1, 1]"}[kind]
    # the reference's six organs mapped by name into the folder's classes: kidneys and pancreas become background
    assert session.labels is not None and set(np.unique(session.labels)) <= {0, 1, 2}

    # a generator trained through the Train tab against the folder target
    _tiny_training(widget, tmp_path / "run", steps=4)
    widget.train.start_button.click()
    qtbot.waitUntil(lambda: widget.train.state == IDLE and widget.train.job is None
                    and session.generator is not None, timeout=120_000)
    assert session.generator_path == str(tmp_path / "run" / "generator.pt")

    # Explore: the slice, its segmentation in the folder's classes, a table of the folder's organs
    explore = widget.explore
    z = _organ_slice(widget)
    viewer.dims.set_current_step(0, z)
    qtbot.waitUntil(lambda: explore.last_segmented is not None and explore.last_segmented.request.z == z
                    and explore.renders.idle(), timeout=60_000)
    ct = viewer.layers["CT"]
    for name in L.SLICE_LAYERS:
        assert name in viewer.layers, name
    adversarial = viewer.layers[L.ADVERSARIAL]
    assert adversarial.data.shape == (1,) + ct.data.shape[1:]
    assert np.allclose(adversarial.translate[0], ct.translate[0] + z * ct.scale[0])
    segmentation = viewer.layers[L.ADVERSARIAL_SEG].data
    assert segmentation.shape == (1,) + ct.data.shape[1:] and set(np.unique(segmentation)) <= {0, 1, 2}
    view = explore.last_segmented.view
    organs = [explore.table.item(r, 0).text() for r in range(explore.table.rowCount())]
    assert organs and set(organs) <= ORGANS and organs == list(view.organs)
    # the segmentation shown is the folder target's own prediction of the adversarial slice
    x_adv = torch.as_tensor(view.adversarial)[None, None]
    with torch.no_grad():
        expected = session.target(x_adv).argmax(dim=1)[0].numpy()
    assert np.array_equal(segmentation[0], expected)

    # the sliders' effects and the generator's Table-1 line are measured against the folder target
    qtbot.waitUntil(lambda: explore.effects.measured == (session.revision, z), timeout=60_000)
    effects = [label.text() for label in explore.phi_sliders.effects + explore.bias_sliders.effects]
    assert any(effects) and all(text.split()[0] in ORGANS for text in effects if text)
    entry = session.current_entry()
    qtbot.waitUntil(lambda: entry.summary is not None or entry.problem is not None, timeout=60_000)
    assert entry.problem is None and set(entry.summary["organs"]) <= ORGANS

    # the strength: "Set rho" reaches it, the dose-response curve has one line per organ of the table
    strength = explore.strength
    strength.set_rho(0.03)
    qtbot.waitUntil(lambda: explore.last_segmented is not None and explore.last_segmented.request.rho == 0.03
                    and explore.renders.idle(), timeout=60_000)
    assert explore.last_segmented.view.rho == pytest.approx(0.03, rel=0.01)
    strength.curve_button.click()
    qtbot.waitUntil(lambda: strength.job is None and strength.plot.marker is not None, timeout=60_000)
    organs = [explore.table.item(r, 0).text() for r in range(explore.table.rowCount())]
    assert sorted(line.get_label() for line in strength.plot.axes.get_lines() if line.get_label() in ORGANS) \
        == sorted(organs)
    strength.set_rho(None)

    before = np.array(adversarial.data)
    explore.phi_sliders.sliders[0].setValue(25)
    explore.bias_sliders.sliders[0].setValue(-25)
    qtbot.waitUntil(lambda: not np.array_equal(viewer.layers[L.ADVERSARIAL].data, before), timeout=30_000)
    qtbot.waitUntil(explore.renders.idle, timeout=60_000)
    shown = np.array(viewer.layers[L.ADVERSARIAL].data[0])

    # Apply to whole volume: the same code gives the same slice
    explore.volume.button.click()
    qtbot.waitUntil(lambda: L.VOLUME_ADVERSARIAL in viewer.layers and explore.volume.job is None, timeout=120_000)
    volume = viewer.layers[L.VOLUME_ADVERSARIAL].data
    assert volume.shape == ct.data.shape
    assert np.allclose(volume[z], shown, atol=0.5)
    volume_seg = viewer.layers[L.VOLUME_SEG].data
    assert volume_seg.shape == ct.data.shape and set(np.unique(volume_seg)) <= {0, 1, 2}

    # Export two slices as NIfTI and DICOM
    out = tmp_path / "export"
    monkeypatch.setattr(widget, "_confirm_overwrite", lambda paths: True)
    widget.export.set_range(z, z + 1)
    widget.export.folder.setText(str(out))
    widget.export.format.setCurrentIndex(widget.export.format.findData("both"))
    widget.export.export_button.click()
    qtbot.waitUntil(lambda: widget.export.job is None and widget.export.last_sidecar is not None, timeout=120_000)
    sidecar = widget.export.last_sidecar
    assert json.loads((out / sidecar["files"]["sidecar"]).read_text())["slices"] == [z, z + 1]
    assert sidecar["target"] == str(folder) and set(sidecar["organs"]) <= ORGANS
    files = sidecar["files"]
    hu = load_ct(out / files["adversarial"]).hu
    assert hu.shape == tiny["hu"].shape
    assert np.allclose(hu[z], shown, atol=0.5)
    changed = [k for k in range(hu.shape[0]) if not np.allclose(hu[k], tiny["hu"][k], atol=1e-3)]
    assert changed == [z, z + 1]
    seg = nibabel.load(out / files["segmentation"])
    assert seg.shape == nibabel.load(out / files["adversarial"]).shape
    assert np.allclose(seg.affine, nibabel.load(out / files["adversarial"]).affine)
    seg = load_labels(out / files["segmentation"], load_ct(out / files["adversarial"]), CLASS_NAMES)
    assert np.array_equal(seg[[z, z + 1]], volume_seg[[z, z + 1]]) and not seg[:z].any()
    dicom = hd.seg.segread(out / files["dicom_segmentation"])
    assert [d.SegmentLabel for d in dicom.SegmentSequence] == list(CLASS_NAMES[1:])
    assert len(list((out / files["dicom_adversarial"]).glob("*.dcm"))) == tiny["hu"].shape[0]
    # nothing failed on the way; the one warning is the class mapping of the reference into the folder's classes
    warnings = [str(n.message) for n in notification_manager.records[seen:]
                if n.severity >= NotificationSeverity.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("class mapping by name") and "pancreas" in warnings[0]
