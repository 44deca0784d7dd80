"""The dock widget colours its Labels layers and the Dice table's squares by the target's class names.

Run under a display (``xvfb-run -a``). A one-layer target names its classes
background, spleen, liver: its spleen (value 1) must be drawn in the spleen's
blue and its liver (value 2) in the liver's purple, not in the colours the
organ class map gives values 1 and 2.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from test_widget import SPACING, _organ_slice, _widget
from test_widget_label_names import _generator

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

NAMES = ("background", "spleen", "liver")


def _maps(layer, values) -> np.ndarray:
    return layer.colormap.map(np.asarray(values))


def test_labels_layers_are_coloured_anew_for_another_class_map(make_napari_viewer):
    from napari_advseg._napari.layers import label_names
    from napari_advseg.organs import ORGAN_CLASSES, ORGAN_COLOURS, class_colours
    from napari_advseg.widgets import _layers as L

    viewer = make_napari_viewer()
    geo = {"scale": (1.0, 1.0, 1.0), "translate": (0.0, 0.0, 0.0)}
    data = np.array([[[0, 1], [2, 0]]], np.uint8)
    layer = L.show_labels(viewer, "seg", data, geo)
    assert label_names(layer) == ORGAN_CLASSES
    assert np.allclose(_maps(layer, [1, 2]), [ORGAN_COLOURS["liver"], ORGAN_COLOURS["spleen"]])
    changes = L.show_labels(viewer, "changes", data, geo, colormap=L.changes_colormap())

    L.show_labels(viewer, "seg", data, geo, class_names=NAMES)
    L.show_labels(viewer, "changes", data, geo, class_names=NAMES)  # its own colormap stays
    layer = viewer.layers["seg"]
    assert label_names(layer) == NAMES
    assert np.allclose(_maps(layer, [0, 1, 2, 3]), [*class_colours(NAMES).values(), (0.6, 0.6, 0.6, 1.0)])
    assert np.allclose(_maps(viewer.layers["changes"], [1, 2]), [L.CHANGES_RGBA, (0, 0, 0, 0)])
    assert label_names(changes) is None


def test_a_target_with_spleen_first_colours_the_spleen_blue(make_napari_viewer, qtbot, tiny, tmp_path):
    from napari_advseg.organs import ORGAN_CLASSES, ORGAN_COLOURS
    from napari_advseg.widgets import _layers as L

    torch.manual_seed(0)
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(nn.Conv2d(1, len(NAMES), 3, padding=1).eval()), str(path))
    path.with_suffix(".json").write_text(json.dumps({"class_names": list(NAMES),
                                                     "normalisation": {"mode": "zscore"}}))
    viewer = make_napari_viewer()
    viewer.add_image(tiny["hu"], name="CT", scale=SPACING, colormap="gray", contrast_limits=(-200, 300))
    viewer.add_labels(tiny["labels"], name="reference", scale=SPACING)
    widget = _widget(viewer, qtbot)
    session = widget.session
    assert widget.load_target_file(path) and session.target.class_names == NAMES
    assert widget.load_generator_file(_generator(path, tiny["hu"], session.case.labels, tmp_path))
    z = _organ_slice(widget)
    viewer.dims.set_current_step(0, z)
    explore = widget.explore
    qtbot.waitUntil(lambda: explore.last_segmented is not None and explore.last_segmented.request.z == z
                    and explore.renders.idle(), timeout=30_000)

    # the reference in the target's classes: the phantom's spleen (its value 2) is value 1 on the canvas
    in_target = np.array([NAMES.index(n) if n in NAMES else 0 for n in ORGAN_CLASSES], np.uint8)[tiny["labels"][z]]
    assert np.array_equal(viewer.layers[L.REFERENCE].data[0], in_target) and {1, 2} <= set(np.unique(in_target))
    expected = [(0, 0, 0, 0), ORGAN_COLOURS["spleen"], ORGAN_COLOURS["liver"]]
    for name in (L.CLEAN_SEG, L.REFERENCE, L.ADVERSARIAL_SEG, L.WARPED_REFERENCE):
        assert np.allclose(_maps(viewer.layers[name], [0, 1, 2]), expected), name
    # the Dice table's squares: each organ's colour on the canvas
    table = explore.table
    rows = {table.item(r, 0).text(): table.item(r, 0).icon() for r in range(table.rowCount())}
    assert rows and set(rows) <= {"spleen", "liver"}
    for organ, icon in rows.items():
        colour = icon.pixmap(12, 12).toImage().pixelColor(6, 6)
        assert np.allclose([colour.redF(), colour.greenF(), colour.blueF()], ORGAN_COLOURS[organ][:3], atol=0.01)
