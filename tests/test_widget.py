"""The napari dock widget: a user's whole path, rendering, closing while training, errors.

Run under a display (``xvfb-run -a``, as scripts/test.sh does). Tiny data: an
(8, 64, 64) phantom and a 4-channel U-Net, unless the shipped sample data
(CT, labels, U-Net and generator) is present, in which case the user's path
runs on it as a user would.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gui

SPACING = (5.0, 3.0, 3.0)  # the voxel size of conftest.py's tiny phantom


def _sample_ready() -> bool:
    """Whether the shipped sample (files and the manifest's sample-data entry) can be opened.

    Call after ``make_napari_viewer()``, which registers the plugin's manifest.
    """
    from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir

    if not all((sample_data_dir() / name).is_file() for name in SAMPLE_FILES.values()):
        return False
    try:
        from npe2 import PluginManager

        manifest = PluginManager.instance().get_manifest("napari-advseg")
        return any(s.key == "abdomen_phantom" for s in (manifest.contributions.sample_data or []))
    except Exception:
        return False


def _manifest_widgets() -> list[str]:
    """Display names of the widgets in the plugin's manifest (after ``make_napari_viewer()``)."""
    try:
        from npe2 import PluginManager

        manifest = PluginManager.instance().get_manifest("napari-advseg")
        return [w.display_name for w in (manifest.contributions.widgets or [])]
    except Exception:
        return []


def _widget(viewer, qtbot):
    """The dock widget as napari makes it from the manifest (viewer behind napari's proxy) if declared."""
    from napari_advseg.widgets import AttackWidget

    if "Adversarial attack" in _manifest_widgets():
        _, widget = viewer.window.add_plugin_dock_widget("napari-advseg", "Adversarial attack")
    else:
        widget = AttackWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Adversarial attack")
    assert isinstance(widget, AttackWidget)
    return widget


def _tiny_scene(make_napari_viewer, qtbot, tiny, labels=True, **viewer_kwargs):
    viewer = make_napari_viewer(**viewer_kwargs)
    viewer.add_image(tiny["hu"], name="CT", scale=SPACING, colormap="gray", contrast_limits=(-200, 300))
    if labels:
        viewer.add_labels(tiny["labels"], name="reference", scale=SPACING)
    widget = _widget(viewer, qtbot)
    assert widget.load_target_file(tiny["target"])
    return viewer, widget


def _tiny_training(widget, folder: Path, steps: int) -> None:
    train = widget.train
    train.steps.setValue(steps)
    train.batch_size.setValue(2)
    train.folder.setText(str(folder))
    train.config_overrides = {"critic_steps": 1, "base_channels": 8}


def _organ_slice(widget) -> int:
    labels = widget.session.case.labels
    if labels is None:
        return widget.session.volume.n_slices // 2
    counts = (labels > 0).sum(axis=(1, 2))
    return int(np.argmax(counts))


def test_widget_import_does_not_load_torch():
    code = "import sys, napari_advseg.widgets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_user_path_train_pause_resume_stop_explore_export(make_napari_viewer, qtbot, tiny, tmp_path,
                                                         monkeypatch):
    import nibabel

    from napari_advseg.attack.checkpoint import GENERATOR_FORMAT
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.io.nifti import load_ct
    from napari_advseg.widgets import _layers as L
    from napari_advseg.widgets._tasks import MAX_ARROWS
    from napari_advseg.widgets._train import IDLE, PAUSED

    viewer = make_napari_viewer()  # registers the plugin's manifest
    if _sample_ready():
        viewer.open_sample("napari-advseg", "abdomen_phantom")
        widget = _widget(viewer, qtbot)
        ct = widget.data.ct_layer()
        assert widget.session.target is not None and widget.session.generator is not None  # from the metadata
        ct_path = Path(ct.metadata["advseg_path"])
        reference = nibabel.load(ct_path)
        expected_shape, expected_affine = reference.shape, reference.affine
        expected_hu = load_ct(ct_path).hu
    else:
        viewer.add_image(tiny["hu"], name="CT", scale=SPACING, colormap="gray", contrast_limits=(-200, 300))
        viewer.add_labels(tiny["labels"], name="reference", scale=SPACING)
        widget = _widget(viewer, qtbot)
        assert widget.load_target_file(tiny["target"])
        ct = widget.data.ct_layer()
        source = volume_from_array(tiny["hu"], SPACING).source
        expected_shape, expected_affine = source.shape, source.affine
        expected_hu = tiny["hu"]
    assert widget.session.labels is not None  # the reference layer was taken by default
    run = tmp_path / "run"
    _tiny_training(widget, run, steps=40)
    train = widget.train

    # Start, pause, resume, stop
    train.start_button.click()
    qtbot.waitUntil(lambda: len(train.plot.history) >= 1, timeout=60_000)
    train.pause_button.click()
    qtbot.waitUntil(lambda: train.state == PAUSED, timeout=30_000)
    paused_at = len(train.plot.history)
    qtbot.wait(400)
    assert len(train.plot.history) == paused_at  # nothing trains while paused
    assert "step" in train.progress.text() and "left" in train.progress.text()
    train.resume_button.click()
    qtbot.waitUntil(lambda: len(train.plot.history) > paused_at, timeout=30_000)
    train.stop_button.click()
    qtbot.waitUntil(lambda: train.state == IDLE and train.job is None, timeout=60_000)

    checkpoint = run / "generator.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["format"] == GENERATOR_FORMAT
    last = int(train.plot.history[-1]["step"])
    assert state["step"] == last and 2 <= last < 40
    assert len(state["history"]) == last
    entry = widget.session.generator_entry(checkpoint)  # the run is listed, with its steps
    assert entry is not None and (entry.steps, entry.total) == (last, 40) and not entry.complete()
    assert widget.generators.combo.findData(str(checkpoint)) >= 0
    if _sample_ready():  # stopped early, it does not replace the shipped generator
        assert widget.session.generator_path != str(checkpoint)
    else:  # nothing else was current
        assert widget.session.generator_path == str(checkpoint)

    # Resume from the checkpoint for two more steps
    train.steps.setValue(last + 2)
    widget.resume_from(checkpoint)
    qtbot.waitUntil(lambda: train.state == IDLE and train.job is None, timeout=60_000)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["step"] == last + 2 and len(state["history"]) == last + 2
    assert widget.session.generator_path == str(checkpoint)  # it trained all its steps: now current
    assert widget.session.generator_entry(checkpoint).steps == last + 2
    assert [m["step"] for m in train.plot.history] == list(range(1, last + 3))

    # Explore: the slice shown, then a slider move changes the adversarial image
    z = _organ_slice(widget)
    viewer.dims.set_current_step(0, z)
    qtbot.waitUntil(lambda: L.ADVERSARIAL in viewer.layers and widget.explore.last_result is not None
                    and widget.explore.last_result.request.z == z and widget.explore.renders.idle(), timeout=30_000)
    adversarial = viewer.layers[L.ADVERSARIAL]
    assert adversarial.data.shape == (1,) + ct.data.shape[1:]
    assert np.allclose(adversarial.translate[0], ct.translate[0] + z * ct.scale[0])
    assert np.allclose(adversarial.scale, ct.scale)
    before = np.array(adversarial.data)
    for name in L.SLICE_LAYERS:
        assert name in viewer.layers
    assert widget.explore.table.rowCount() >= 1
    widget.explore.phi_sliders.sliders[0].setValue(25)
    widget.explore.bias_sliders.sliders[1].setValue(-25)
    qtbot.waitUntil(lambda: not np.array_equal(viewer.layers[L.ADVERSARIAL].data, before), timeout=30_000)
    qtbot.waitUntil(widget.explore.renders.idle, timeout=30_000)
    widget.explore.set_overlay(L.DEFORMATION, True)  # hidden overlays are drawn when shown
    vectors = viewer.layers[L.DEFORMATION].data
    assert vectors.shape[1:] == (2, 3) and len(vectors) <= MAX_ARROWS
    assert np.all(vectors[:, 0, 0] == z) and np.all(vectors[:, 1, 0] == 0)

    # Apply to the whole volume: the same sliders give the same slice
    widget.explore.volume.button.click()
    qtbot.waitUntil(lambda: L.VOLUME_ADVERSARIAL in viewer.layers and widget.explore.volume.job is None,
                    timeout=60_000)
    volume = viewer.layers[L.VOLUME_ADVERSARIAL].data
    assert volume.shape == ct.data.shape
    assert np.allclose(volume[z], viewer.layers[L.ADVERSARIAL].data[0], atol=0.5)
    assert viewer.layers[L.VOLUME_SEG].data.shape == ct.data.shape

    # Export two slices; read them back
    out = tmp_path / "export"
    asked = []
    monkeypatch.setattr(widget, "_confirm_overwrite", lambda paths: asked.append(list(paths)) or True)
    widget.export.set_range(z, z + 1)
    widget.export.folder.setText(str(out))
    widget.export.format.setCurrentIndex(widget.export.format.findData("both"))
    assert widget.export.drop_patient.isEnabled()
    widget.export.export_button.click()
    qtbot.waitUntil(lambda: widget.export.job is None and widget.export.last_sidecar is not None, timeout=60_000)
    assert not asked  # nothing to overwrite yet
    files = widget.export.last_sidecar["files"]
    assert files["adversarial"] == f"slices_{z}-{z + 1}_adversarial_hu.nii.gz"  # the names carry the slices
    exported = nibabel.load(out / files["adversarial"])
    assert exported.shape == tuple(expected_shape)
    assert np.allclose(exported.affine, expected_affine)
    hu = load_ct(out / files["adversarial"]).hu
    assert hu.shape == expected_hu.shape
    changed = [k for k in range(hu.shape[0]) if not np.allclose(hu[k], expected_hu[k], atol=1e-3)]
    assert changed == [z, z + 1]
    assert widget.export.last_sidecar["slices"] == [z, z + 1]
    eps = widget.export.last_sidecar["fixed_deviates"]["eps_phi"]
    assert eps[0] == pytest.approx(2.5)
    segmentation = nibabel.load(out / files["segmentation"])
    assert segmentation.shape == tuple(expected_shape)
    # and as DICOM: a CT series in a fresh study (the layer came from memory) with the SEGs on it
    assert len(list((out / files["dicom_adversarial"]).glob("*.dcm"))) == expected_hu.shape[0]
    assert (out / files["dicom_segmentation"]).is_file() and "fresh anonymous study" in widget.export.status.text()

    # A second export of the same slices asks first; "no" leaves the files alone
    monkeypatch.setattr(widget, "_confirm_overwrite", lambda paths: asked.append(list(paths)) or False)
    stamp = (out / files["adversarial"]).stat().st_mtime_ns
    widget.export.export_button.click()
    assert asked and any(p.name == files["adversarial"] for p in asked[0])
    assert widget.export.job is None and (out / files["adversarial"]).stat().st_mtime_ns == stamp


def _strong_generator(tiny, folder: Path, bias_mode: str = "additive") -> Path:
    """A generator checkpoint whose decoders give clearly visible fields (its bias ``bias_mode``)."""
    from napari_advseg.io.atomic import save_torch
    from napari_advseg.attack.config import AttackConfig
    from napari_advseg.data.cases import make_case
    from napari_advseg.models.target_load import load_target
    from napari_advseg.attack.trainer import AttackTrainer
    from napari_advseg.io.geometry import volume_from_array

    target = load_target(tiny["target"], "cpu")
    volume = volume_from_array(tiny["hu"], SPACING)
    case = make_case(volume, tiny["labels"], target.normalisation)
    trainer = AttackTrainer(AttackConfig(steps=1, batch_size=2, critic_steps=1, base_channels=8,
                                         bias_mode=bias_mode), target, case.images, case.labels, "cpu")
    trainer.step()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in trainer.generator.parameters():
            p.add_(0.3 * torch.randn_like(p))
    path = folder / f"strong_generator_{bias_mode}.pt"
    save_torch(trainer.state_dict(), path)
    return path


def test_screenshot_with_overlays_is_not_the_ct_alone(make_napari_viewer, qtbot, tiny, tmp_path):
    from napari_advseg.widgets import _layers as L

    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny, show=True)
    assert widget.load_generator_file(_strong_generator(tiny, tmp_path))
    z = _organ_slice(widget)
    viewer.dims.set_current_step(0, z)
    widget.explore.render_now()

    # a drag: many slider values while renders run; the view ends at the last value, not a queue
    import napari_advseg.widgets._tasks as tasks

    renders = []
    original = tasks.SliceRenderer.render_fields

    def counting(self, request):
        renders.append(request)
        return original(self, request)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(tasks.SliceRenderer, "render_fields", counting)
    slider = widget.explore.phi_sliders.sliders[0]
    for value in range(-30, 31, 2):
        slider.setValue(value)
        qtbot.wait(2)
    qtbot.waitUntil(widget.explore.renders.idle, timeout=30_000)
    monkeypatch.undo()
    assert widget.explore.last_result.request.eps_phi[0] == pytest.approx(3.0)
    assert 1 <= len(renders) < 31

    for name in (L.ADVERSARIAL, L.ADVERSARIAL_SEG, L.GRID):  # what the Explore tab shows at first
        assert viewer.layers[name].visible
    overlays = [layer for layer in viewer.layers if L.is_output(layer) or layer.name == "reference"]
    shown = {layer.name: layer.visible for layer in overlays}
    for layer in overlays:
        layer.visible = False
    viewer.reset_view()
    qtbot.wait(50)
    ct_alone = viewer.screenshot(canvas_only=True, flash=False)
    for layer in overlays:
        layer.visible = shown[layer.name]
    qtbot.wait(50)
    with_overlays = viewer.screenshot(canvas_only=True, flash=False)
    assert ct_alone.shape == with_overlays.shape
    assert ct_alone[..., :3].std() > 5  # the CT itself is visible
    difference = np.abs(with_overlays[..., :3].astype(float) - ct_alone[..., :3].astype(float))
    assert (difference.sum(axis=-1) > 30).mean() > 0.01  # overlays cover a visible part of the canvas
    colourful = np.ptp(with_overlays[..., :3].astype(int), axis=-1) > 40
    assert colourful.mean() > np.ptp(ct_alone[..., :3].astype(int), axis=-1).__gt__(40).mean()


def test_closing_the_viewer_while_training_saves_and_joins(make_napari_viewer, qtbot, tiny, tmp_path):
    from qtpy.QtCore import QThreadPool

    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny, labels=False)  # label-free, too
    assert widget.session.labels is None
    _tiny_training(widget, tmp_path, steps=100_000)
    widget.train.start_button.click()
    qtbot.waitUntil(lambda: len(widget.train.plot.history) >= 1, timeout=60_000)
    job = widget.train.job
    viewer.close()
    assert widget.closing and job.done.is_set() and not job.worker.is_running
    state = torch.load(tmp_path / "generator.pt", map_location="cpu", weights_only=True)
    assert state["step"] >= 1 and state["label_source"] == "predicted"
    deadline = time.monotonic() + 10
    while QThreadPool.globalInstance().activeThreadCount() and time.monotonic() < deadline:
        qtbot.wait(20)
    assert QThreadPool.globalInstance().activeThreadCount() == 0


def test_what_a_target_leaves_undeclared_is_a_warning(make_napari_viewer, qtbot, tiny, tiny_files, tmp_path):
    """A TorchScript file that declares nothing: the assumptions the CLI prints as warnings are notifications."""
    import torch
    from napari.utils.notifications import notification_manager
    from torch import nn

    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    path = tmp_path / "bare.pt"
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.InstanceNorm2d(6), nn.Conv2d(6, 6, 1))
    torch.jit.save(torch.jit.script(net.eval()), str(path))
    seen = len(notification_manager.records)
    assert widget.load_target_file(path)
    messages = [str(n.message) for n in notification_manager.records[seen:]]
    assert any("declares no input normalisation" in m for m in messages)
    assert any("declares no class names" in m for m in messages)
    assert any("instance or group norm" in m and "sliding window" in m for m in messages)
    seen = len(notification_manager.records)
    assert widget.load_target_file(tiny["target"])  # a project checkpoint declares everything
    assert not any("declares no" in str(n.message) for n in notification_manager.records[seen:])

    # a generator trained against whole slices, loaded for the network declared with a window: a warning
    import json

    from napari_advseg.organs import ORGAN_CLASSES

    path.with_suffix(".json").write_text(json.dumps({
        "normalisation": {"mode": "zscore"}, "class_names": list(ORGAN_CLASSES),
        "sliding_window": {"roi_size": [32, 32], "mode": "gaussian"}}))
    assert widget.load_target_file(path)
    assert widget.data.normalisation_label.text() == "z-score (per volume); run by a 32 x 32 sliding window"
    seen = len(notification_manager.records)
    assert widget.load_generator_file(tiny_files["generator"])
    messages = [str(n.message) for n in notification_manager.records[seen:]]
    assert any("trained against its network run on whole slices, but this target runs by a 32 x 32 sliding "
               "window" in m for m in messages)


def test_a_dropped_generator_takes_its_layers_with_it(make_napari_viewer, qtbot, tiny, tiny_files, tmp_path):
    """A target the generator does not fit drops the generator, and its attack layers leave the canvas."""
    import json

    import torch
    from torch import nn

    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    assert widget.load_generator_file(tiny_files["generator"])
    widget.explore.render_now()
    assert "adversarial image" in viewer.layers and "clean segmentation (fill)" in viewer.layers
    assert widget.explore.rho_label.text() != ""
    path = tmp_path / "windowed.pt"
    torch.jit.save(torch.jit.script(nn.Conv2d(1, 6, 3, padding=1).eval()), str(path))
    path.with_suffix(".json").write_text(json.dumps({"normalisation": {"mode": "window", "window": [-100, 200]},
                                                     "class_names": list(widget.session.target.class_names)}))
    assert widget.load_target_file(path)
    assert widget.session.generator is None
    assert "adversarial image" not in viewer.layers and "clean segmentation (fill)" not in viewer.layers
    assert not viewer.layers["deformation grid"].data.any()  # the overlays stay, blank (transparent at 0)
    assert len(viewer.layers["deformation arrows"].data) == 0
    assert widget.explore.table.rowCount() == 0 and widget.explore.rho_label.text() == ""
    assert "CT" in viewer.layers and "reference" in viewer.layers
    # a generator again: the next render draws the attack again
    assert widget.load_target_file(tiny["target"]) and widget.load_generator_file(tiny_files["generator"])
    widget.explore.render_now()
    assert "adversarial image" in viewer.layers and "clean segmentation (fill)" in viewer.layers
    assert widget.explore.rho_label.text() != ""


def test_bad_files_give_notifications_not_exceptions(make_napari_viewer, qtbot, tiny, tmp_path):
    from napari.utils.notifications import notification_manager

    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    bad = tmp_path / "bad_model.pt"
    bad.write_bytes(b"this is not a model" * 10)
    seen = len(notification_manager.records)
    assert not widget.load_target_file(bad)
    assert not widget.load_generator_file(bad)
    messages = [str(n.message) for n in notification_manager.records[seen:]]
    assert len(messages) == 2 and all("bad_model.pt" in m for m in messages)
    assert widget.session.target_path == str(tiny["target"])  # the good target stays current

    # a bad checkpoint to resume from fails inside the worker: still a notification
    _tiny_training(widget, tmp_path / "run", steps=3)
    seen = len(notification_manager.records)
    widget.resume_from(bad)
    qtbot.waitUntil(lambda: widget.train.job is None and len(notification_manager.records) > seen, timeout=30_000)
    assert any("bad_model.pt" in str(n.message) for n in notification_manager.records[seen:])
    assert not (tmp_path / "run" / "generator.pt").exists()

    # a reference of the wrong shape is refused with a message; the CT stays usable label-free
    seen = len(notification_manager.records)
    wrong = viewer.add_labels(np.zeros((3, 10, 10), np.uint8), name="wrong")
    widget.data.select_labels(wrong)
    assert any("shape" in str(n.message) for n in notification_manager.records[seen:])
    assert widget.session.volume is not None and widget.session.labels is None


def test_layer_changes_keep_the_case(make_napari_viewer, qtbot, tiny):
    """Adding unrelated layers (or the widget's own) neither rebuilds the case nor loses the choices."""
    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    revision, case = widget.session.revision, widget.session.case
    viewer.add_image(np.zeros((4, 4)), name="something 2D")
    viewer.add_points(np.zeros((1, 3)))
    assert widget.session.revision == revision and widget.session.case is case
    assert widget.data.ct_layer().name == "CT" and widget.data.labels_layer().name == "reference"
    viewer.layers.remove("reference")
    assert widget.session.labels is None and widget.data.labels_layer() is None


def test_session_batches_its_announcements(tiny):
    """Each change is announced after it is made; inside ``batch`` once, at the end, in a fixed order."""
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.widgets._model import AttackSession, LatentChoice

    session = AttackSession()
    heard = []
    for name in ("device_changed", "target_changed", "generator_changed", "volume_changed", "latent_changed"):
        getattr(session, name).connect(lambda name=name: heard.append((name, session.revision)))
    session.changed.connect(lambda what: heard.append(("changed", what)))
    volume = volume_from_array(tiny["hu"], SPACING)

    session.set_volume(volume, tiny["labels"])
    assert heard == [("volume_changed", 1), ("changed", ("volume",))]
    heard.clear()
    with session.batch():
        session.load_target(tiny["target"])
        with session.batch():
            session.clear_volume()
            session.set_volume(volume, None)
        assert heard == []  # nothing is announced before the outermost batch ends
    assert heard == [("target_changed", 4), ("volume_changed", 4), ("changed", ("target", "volume"))]
    heard.clear()
    session.set_device("cpu")
    assert [h[0] for h in heard] == ["device_changed", "target_changed", "changed"]
    assert heard[-1] == ("changed", ("device", "target"))
    heard.clear()
    session.set_latent(LatentChoice(np.ones(2, np.float32), np.zeros(2, np.float32), 0.5))
    assert heard == [("latent_changed", session.revision)] and session.latent.temperature == 0.5
    assert session.subscriber_count() == 6


def test_session_signals_reach_the_tabs(make_napari_viewer, qtbot, tiny, tmp_path):
    """A generator loaded through the session alone reaches every tab; the Explore tab's choice reaches
    the session (which the Export tab reads)."""
    from napari_advseg.widgets import _layers as L

    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    session, explore = widget.session, widget.explore
    assert session.generator is None and not explore.phi_sliders.sliders
    assert widget.export.last.maximum() == session.volume.n_slices - 1
    assert "Load a CT, a target and a generator" in explore.slice_label.text()
    path = _strong_generator(tiny, tmp_path)

    session.load_generator(path)  # no widget or tab method is called

    dim = session.config.latent_dim
    assert dim > 0
    assert len(explore.phi_sliders.sliders) == dim and len(explore.bias_sliders.sliders) == dim
    assert explore.use_phi.isEnabled() == session.config.use_phi
    assert explore.use_bias.isEnabled() == session.config.use_bias
    assert widget.data.generator_edit.text() == str(path)
    assert "generator: 1 training steps" in widget.data.info_label.text()
    assert [m["step"] for m in widget.train.plot.history] == [m["step"] for m in session.generator_history]
    assert session.latent.eps_phi.shape == (dim,)
    qtbot.waitUntil(lambda: explore.last_result is not None and explore.renders.idle(), timeout=30_000)
    assert L.ADVERSARIAL in viewer.layers

    explore.phi_sliders.sliders[0].setValue(25)
    explore.use_bias.setChecked(False)
    assert session.latent.eps_phi[0] == pytest.approx(2.5) and not session.latent.use_bias

    viewer.layers.remove("reference")  # a new volume (label-free) reaches Data and Explore
    assert session.labels is None and "label-free" in widget.data.info_label.text()
    qtbot.waitUntil(explore.renders.idle, timeout=30_000)


def test_tabs_do_not_reach_into_each_other():
    """The tabs talk through the session: none touches another tab (or the widget's tab attributes)."""
    import re

    folder = Path(__file__).resolve().parents[1] / "napari_advseg" / "widgets"
    pattern = re.compile(r"\b(owner|widget)\.(data|train|explore|export|tabs|panels)\b")
    for name in ("_data.py", "_train.py", "_explore.py", "_export.py"):
        text = (folder / name).read_text()
        assert not pattern.search(text), f"{name}: {pattern.search(text).group(0)}"


def test_closed_widget_leaves_no_session_subscribers(make_napari_viewer, qtbot, tiny):
    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    session = widget.session
    assert session.subscriber_count() > 0  # the tabs listen
    widget.close()
    assert widget.closing
    assert {name: len(signal) for name, signal in session.signals().items()} == dict.fromkeys(session.SIGNALS, 0)
    session.clear_volume()  # a change after closing reaches no tab (and raises nothing)
    viewer.close()


def test_a_folder_target_loads_in_the_data_tab_and_learns_the_ct_spacing(make_napari_viewer, qtbot, tiny, tmp_path):
    """An nnU-Net 2d folder through the Data tab's Folder… path: class names from dataset.json, and the case
    tells the target the CT's voxel size (the target resamples slices to its own spacing)."""
    pytest.importorskip("dynamic_network_architectures")
    from folder_helpers import CLASS_NAMES, write_nnunet_folder

    folder = write_nnunet_folder(tmp_path, "2d")
    viewer = make_napari_viewer()
    viewer.add_image(tiny["hu"], name="CT", scale=SPACING, colormap="gray", contrast_limits=(-200, 300))
    widget = _widget(viewer, qtbot)
    assert widget.data.target_folder_button.isEnabled()
    assert widget.data.load_target_file(folder)
    session = widget.session
    assert session.target.class_names == CLASS_NAMES
    assert session.case is not None
    assert session.target.model.pixel_spacing == pytest.approx(tuple(float(s) for s in SPACING[-2:]))
