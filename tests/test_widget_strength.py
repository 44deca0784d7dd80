"""The Explore tab's strength: "Set rho" moves the view's rho and Dice; "Dose-response" plots a curve.

Runs on the shipped sample (trained U-Net and generator, so that Dice moves
with rho), under a display (``xvfb-run -a``).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _table(explore) -> list[list[str]]:
    table = explore.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def _shown(explore, z: int, rho) -> bool:
    result = explore.last_result
    return (result is not None and result.request.z == z and result.request.rho == rho
            and explore.renders.idle() and explore.last_segmented is not None
            and explore.last_segmented.request.seq == result.request.seq)


def test_set_rho_and_dose_response(make_napari_viewer, qtbot, one_thread):
    from napari_advseg.widgets import AttackWidget
    from napari_advseg.widgets import _layers as L

    viewer = make_napari_viewer()
    viewer.open_sample("napari-advseg", "abdomen_phantom")
    widget = AttackWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Adversarial attack")
    session, explore = widget.session, widget.explore
    assert session.can_explore()
    strength = explore.strength
    assert strength.rho() is None and not strength.slider.isEnabled()

    labels = session.case.labels
    z = int(np.argmax([len(np.unique(s)) * 1e6 + (s > 0).sum() for s in labels]))  # most organs, then area
    viewer.dims.set_current_step(0, z)
    qtbot.waitUntil(lambda: _shown(explore, z, None), timeout=30_000)
    sampled = _table(explore)
    assert sampled

    for rho in (0.1, 0.02):
        strength.set_rho(rho)
        qtbot.waitUntil(lambda: _shown(explore, z, rho), timeout=30_000)
        assert abs(explore.last_result.view.rho - rho) <= 0.01 * rho
        assert f"{explore.last_result.view.rho:.4f}" in explore.rho_label.text()
        assert session.latent.rho == rho and strength.value_label.text() == f"{rho:.3f}"
    weak = _table(explore)
    strength.set_rho(0.1)
    qtbot.waitUntil(lambda: _shown(explore, z, 0.1), timeout=30_000)
    assert _table(explore) != weak  # the Dice table follows the strength
    assert [row[0] for row in _table(explore)] == [row[0] for row in sampled]

    strength.curve_button.click()
    assert not strength.curve_button.isEnabled()
    qtbot.waitUntil(lambda: strength.job is None and strength.plot.marker is not None, timeout=60_000)
    assert strength.curve_button.isEnabled() and not strength.plot.isHidden()
    organs = [row[0] for row in _table(explore)]
    lines = [line for line in strength.plot.axes.get_lines() if line.get_label() in organs]
    assert sorted(line.get_label() for line in lines) == sorted(organs)  # one line per organ on the slice
    assert all(len(line.get_xdata()) == 13 for line in lines)
    assert strength.plot.marker.get_xdata()[0] == pytest.approx(explore.last_result.view.rho)
    assert "organ(s)" in strength.curve_status.text()

    explore.volume.button.click()  # the whole volume at the rho set: slice z as shown
    qtbot.waitUntil(lambda: L.VOLUME_ADVERSARIAL in viewer.layers and explore.volume.job is None, timeout=60_000)
    assert np.allclose(viewer.layers[L.VOLUME_ADVERSARIAL].data[z], viewer.layers[L.ADVERSARIAL].data[0], atol=0.5)

    strength.set_rho(None)  # back to the generator's own strength
    qtbot.waitUntil(lambda: _shown(explore, z, None), timeout=30_000)
    assert _table(explore) == sampled and session.latent.rho is None
    assert strength.plot.marker.get_xdata()[0] == pytest.approx(explore.last_result.view.rho)
