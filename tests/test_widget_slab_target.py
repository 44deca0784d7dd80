"""The Explore tab with a volumetric (3D) target stays live: the adversarial image first, with no network
call, then the 3D network's segmentation of the slab around the slice, from a worker.

Run under a display (``xvfb-run -a``). The target is slab_helpers.py's stand-in for a 3D network (a Conv3d
over 3 consecutive slices), given to the Data tab as a file would be; the scene is test_widget.py's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slab_helpers import slab_target
from test_widget import SPACING, _strong_generator, _widget
from test_widget_explore import gate  # noqa: F401  (the fixture that holds stage two)

pytestmark = pytest.mark.gui


def test_explore_shows_the_image_first_then_the_slab_segmentation(make_napari_viewer, qtbot, tiny, tmp_path,
                                                                  monkeypatch, gate):  # noqa: F811
    import napari_advseg.models.target_load as target_load
    from napari_advseg.widgets import _layers as L

    target = slab_target(3)
    load = target_load.load_target
    monkeypatch.setattr(target_load, "load_target",
                        lambda path, *args, **kwargs: target if str(path).endswith("slab3d.pt") else
                        load(path, *args, **kwargs))
    viewer = make_napari_viewer()
    viewer.add_image(tiny["hu"], name="CT", scale=SPACING, colormap="gray", contrast_limits=(-200, 300))
    viewer.add_labels(tiny["labels"], name="reference", scale=SPACING)
    widget = _widget(viewer, qtbot)
    assert widget.load_target_file(tmp_path / "slab3d.pt")
    session, explore = widget.session, widget.explore
    assert session.target is target
    assert widget.load_generator_file(_strong_generator(tiny, tmp_path))
    z = 4
    viewer.dims.set_current_step(0, z)
    entry = session.current_entry()
    qtbot.waitUntil(lambda: explore.last_segmented is not None and explore.last_segmented.request.z == z
                    and explore.renders.idle() and explore.effects.measured == (session.revision, z)
                    and (entry.summary is not None or entry.problem is not None), timeout=60_000)
    assert entry.problem is None
    image, segmentation = viewer.layers[L.ADVERSARIAL], viewer.layers[L.ADVERSARIAL_SEG]
    with torch.no_grad():  # the clean segmentation is the 3D network's of the clean slab z-1..z+1
        clean = target(torch.as_tensor(session.case.images[z - 1:z + 2])[:, None]).argmax(dim=1)[1].numpy()
    assert np.array_equal(viewer.layers[L.CLEAN_SEG].data[0], clean)
    before, first = np.array(image.data), explore.last_segmented

    calls = target.model.calls
    calls.clear()
    gate.open.clear()
    gate.started.clear()
    explore.phi_sliders.set_eps(np.full(len(explore.phi_sliders.sliders), 2.5))
    qtbot.waitUntil(lambda: explore.last_result.request.seq > first.request.seq, timeout=30_000)
    shown = explore.last_result
    qtbot.waitUntil(lambda: shown.request.seq in gate.started, timeout=30_000)
    # phase one is on screen and no network has run: the new image, no segmentation of another code
    assert calls == []
    assert not np.array_equal(image.data, before) and np.array_equal(image.data[0], shown.adversarial_hu)
    assert not segmentation.data.any() and not explore.table.isEnabled()
    assert "segmenting the slab of 3 slice(s)" in explore.rho_label.text()
    assert np.array_equal(viewer.layers[L.CLEAN_SEG].data[0], clean)  # known from the first render: kept

    gate.open.set()
    qtbot.waitUntil(lambda: explore.last_segmented.request.seq == shown.request.seq and explore.renders.idle(),
                    timeout=30_000)
    assert calls == [3]  # phase two: one call, on the adversarial slab (the clean one is known)
    view = explore.last_segmented.view
    slab = explore.renders.renderer.explorer.adversarial_slab(view)
    assert torch.equal(slab[1, 0], torch.as_tensor(view.adversarial))
    with torch.no_grad():
        expected = target(slab).argmax(dim=1)[1].numpy()
        alone = target(slab[1:2]).argmax(dim=1)[0].numpy()
    assert np.array_equal(segmentation.data[0], expected) and segmentation.data.any()
    assert not np.array_equal(expected, alone)  # what is shown is the slab's middle, not the slice alone
    assert explore.table.isEnabled() and explore.table.rowCount() == len(view.organs) > 0
