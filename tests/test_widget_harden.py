"""The Harden tab: a background run with progress and a live plot, then the target switch.

Runs on the shipped sample under a display (``xvfb-run -a``).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_harden_tab_runs_in_the_background_and_switches_the_target(make_napari_viewer, qtbot, tmp_path,
                                                                  one_thread):
    from napari_advseg.models.target_load import load_target
    from napari_advseg.widgets import AttackWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-advseg", "abdomen_phantom")
    widget = AttackWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Adversarial attack")
    session, harden = widget.session, widget.harden
    assert [widget.tabs.tabText(i) for i in range(widget.tabs.count())] == [
        "Data and model", "Train", "Explore", "Harden", "Export"]
    original = session.target_path
    assert not harden.switch_button.isEnabled() and not harden.stop_button.isEnabled()

    out = tmp_path / "hardened.pt"
    harden.out.setText(str(out))
    harden.steps.setValue(3)
    harden.rounds.setValue(2)
    harden.generator_steps.setValue(1)
    harden.start()
    assert harden.job is not None and harden.stop_button.isEnabled() and not harden.start_button.isEnabled()
    qtbot.waitUntil(lambda: harden.job is None, timeout=120_000)
    assert out.is_file()
    record = load_target(out, "cpu").metrics["hardening"]
    assert record["complete"] and record["step"] == 3 and record["generator_rounds"] == 2
    assert record["generator"]["path"] == session.generator_path
    assert [m["step"] for m in harden.plot.history] == [1.0, 2.0, 3.0]  # the live plot got every step
    assert all(0.0 <= m["dice_adversarial"] <= 1.0 for m in harden.plot.history)
    assert "saved hardened.pt" in harden.progress.format()
    assert "held-out slices" in harden.dice_label.text() and "liver" in harden.dice_label.text()

    assert harden.switch_button.isEnabled() and harden.switch_button.text() == "Use hardened network"
    harden.switch_button.click()
    assert session.target_path == str(out) and harden.switch_button.text() == "Use original network"
    assert session.generator is not None  # same classes: the generator stays for Explore
    harden.switch_button.click()
    assert session.target_path == original

    harden.steps.setValue(4)  # Resume continues the same run to the new total
    harden.start(resume=True)
    qtbot.waitUntil(lambda: harden.job is None, timeout=120_000)
    assert load_target(out, "cpu").metrics["hardening"]["step"] == 4
