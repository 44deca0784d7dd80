"""The Explore tab's two render stages: image layers first, segmentation and Dice table after.

Run under a display (``xvfb-run -a``); the scene is test_widget.py's, on the
``tiny`` fixture of conftest.py. Stage two (the target's pass) is held
in its worker by a gate where a test needs to see the state between stages.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from test_widget import SPACING, _organ_slice, _strong_generator, _tiny_scene

pytestmark = pytest.mark.gui


class Gate:
    """Holds the stage-two jobs (``SliceRenderer.segment``) while closed; records the requests they got."""

    def __init__(self):
        self.open = threading.Event()
        self.open.set()
        self.started: list[int] = []

    def held(self, original):
        def segment(renderer, result):
            self.started.append(result.request.seq)
            if not self.open.wait(30):
                raise TimeoutError("the test never opened the gate")
            return original(renderer, result)
        return segment


@pytest.fixture
def gate(monkeypatch):
    import napari_advseg.widgets._tasks as tasks

    gate = Gate()
    monkeypatch.setattr(tasks.SliceRenderer, "segment", gate.held(tasks.SliceRenderer.segment))
    yield gate
    gate.open.set()  # let a held worker finish before the viewer closes


def _code_driven_generator(tiny, folder: Path) -> Path:
    """A generator trained one step, then with its field decoders perturbed so that the code moves the fields."""
    from napari_advseg.attack.config import SLIDER_OPTIONS_OFF, AttackConfig
    from napari_advseg.attack.trainer import AttackTrainer
    from napari_advseg.data.cases import make_case
    from napari_advseg.io.atomic import save_torch
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.models.target_load import load_target

    target = load_target(tiny["target"], "cpu")
    case = make_case(volume_from_array(tiny["hu"], SPACING), tiny["labels"], target.normalisation)
    # The slider options' extra terms change where the one step leaves the weights, and the gradient cap
    # scales the perturbed fields down; the figures in test_a_slider_move_changes_the_dice_table hold for a
    # generator without them, with a budget on the bias alone.
    trainer = AttackTrainer(AttackConfig(steps=1, batch_size=2, critic_steps=1, base_channels=8, phi_edge_gate=None,
                                        phi_gradient_max=None, phi_rho_max=None, bias_rho_max=0.06, rho_max=None,
                                        **SLIDER_OPTIONS_OFF), target, case.images, case.labels, "cpu")
    trainer.step()
    torch.manual_seed(1)
    with torch.no_grad():
        for decoder in (trainer.generator.decoder_phi, trainer.generator.decoder_b):
            for p in decoder.parameters():
                p.add_(0.1 * torch.randn_like(p))
    path = folder / "code_driven_generator.pt"
    save_torch(trainer.state_dict(), path)
    return path


def _explore_scene(make_napari_viewer, qtbot, tiny, folder, make_generator=_strong_generator, **viewer_kwargs):
    """The tiny scene with a generator whose fields are visible, settled on an organ slice."""
    # made before the scene starts its workers: they build networks too, drawing from torch's global random
    # state, which the generator's seeded initialisation and perturbation read
    generator = make_generator(tiny, folder)
    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny, **viewer_kwargs)
    assert widget.load_generator_file(generator)
    z = _organ_slice(widget)
    viewer.dims.set_current_step(0, z)
    explore = widget.explore
    qtbot.waitUntil(lambda: explore.last_segmented is not None and explore.last_segmented.request.z == z
                    and explore.renders.idle(), timeout=30_000)
    return viewer, explore


def _segmented_at(explore, eps_phi: float, eps_b: float) -> bool:
    """Whether the segmentation on screen is of every slider at ``eps_phi`` / ``eps_b`` and nothing is pending
    (a render of an earlier code may arrive after the sliders moved)."""
    request = explore.last_segmented.request
    return bool(np.allclose(request.eps_phi, eps_phi) and np.allclose(request.eps_b, eps_b)
                and explore.renders.idle())


def _table(explore) -> list[list[str]]:
    table = explore.table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_image_first_then_segmentation_and_table(make_napari_viewer, qtbot, tiny, tmp_path, gate):
    from napari_advseg.widgets import _layers as L

    viewer, explore = _explore_scene(make_napari_viewer, qtbot, tiny, tmp_path)
    image, segmentation = viewer.layers[L.ADVERSARIAL], viewer.layers[L.ADVERSARIAL_SEG]
    before, first = np.array(image.data), explore.last_segmented
    assert segmentation.visible and explore.table.isEnabled()

    gate.open.clear()
    gate.started.clear()
    explore.phi_sliders.set_eps(np.full(len(explore.phi_sliders.sliders), 3.0))
    qtbot.waitUntil(lambda: explore.last_result.request.seq > first.request.seq, timeout=30_000)
    shown = explore.last_result
    # stage one is on screen while stage two is held: new image, no segmentation of another code over it
    assert not np.array_equal(image.data, before) and np.array_equal(image.data[0], shown.adversarial_hu)
    assert explore.last_segmented is first and segmentation.visible and not segmentation.data.any()
    assert not explore.table.isEnabled() and "segmenting" in explore.rho_label.text()
    qtbot.waitUntil(lambda: shown.request.seq in gate.started, timeout=30_000)

    gate.open.set()
    qtbot.waitUntil(lambda: explore.last_segmented.request.seq == shown.request.seq and explore.renders.idle(),
                    timeout=30_000)
    view = explore.last_segmented.view
    assert segmentation.visible and explore.table.isEnabled() and segmentation.data.any()
    assert np.array_equal(segmentation.data[0], view.adversarial_segmentation)
    assert np.allclose(segmentation.translate, image.translate)
    assert [row[0] for row in _table(explore)] == list(view.organs)
    assert [row[2] for row in _table(explore)] == [f"{100 * e['dice_adv']:.1f} %" for e in view.organs.values()]
    assert "segmenting" not in explore.rho_label.text()


def test_a_stale_segmentation_is_dropped(make_napari_viewer, qtbot, tiny, tmp_path, gate):
    from napari_advseg.widgets import _layers as L

    viewer, explore = _explore_scene(make_napari_viewer, qtbot, tiny, tmp_path)
    segmentation = viewer.layers[L.ADVERSARIAL_SEG]
    handed = []  # (request, whether it became the segmentation on screen) for each finished stage two
    show = explore.renders.show_segmentation

    def recording(result):
        show(result)
        handed.append((result.request.seq, explore.last_segmented is result))

    explore.renders.show_segmentation = recording
    n = len(explore.phi_sliders.sliders)
    first = explore.last_result.request.seq

    gate.open.clear()
    gate.started.clear()
    explore.phi_sliders.set_eps(np.full(n, 3.0))  # code A: its image is shown, its segmentation held
    qtbot.waitUntil(lambda: explore.last_result.request.seq > first and len(gate.started) == 1, timeout=30_000)
    a = gate.started[0]
    assert explore.last_result.request.seq == a
    explore.phi_sliders.set_eps(np.full(n, -3.0))  # code B, while A's segmentation is still running
    qtbot.waitUntil(lambda: explore.last_result.request.seq > a and explore.renders.pending_segment is not None,
                    timeout=30_000)
    b = explore.last_result.request.seq
    assert not segmentation.data.any()

    gate.open.set()
    qtbot.waitUntil(lambda: explore.renders.idle() and len(handed) == 2, timeout=30_000)
    assert handed == [(a, False), (b, True)]  # A's segmentation came back after B's image: dropped
    assert gate.started == [a, b]
    assert segmentation.visible
    assert np.array_equal(segmentation.data[0], explore.last_segmented.view.adversarial_segmentation)


def test_a_slider_move_changes_the_dice_table(make_napari_viewer, qtbot, tiny, tmp_path):
    # The generator must be one whose fields follow the code, or the table would stay put whatever the
    # sliders do: one training step leaves the decoders' last layers near their zero start (fields ~0
    # for every code), and _strong_generator's perturbation of every weight saturates both fields
    # (tanh at phi_max and b_max for every code). Perturbing the decoders alone, by 0.1, gives fields of
    # about 0.5 px at the mean and 4-6 px at +-3 sigma, and liver Dice of 0.15, 0.145 and 0.12.
    viewer, explore = _explore_scene(make_napari_viewer, qtbot, tiny, tmp_path, _code_driven_generator)
    before = _table(explore)
    assert before and all(row[1] != "nan" for row in before)
    explore.phi_sliders.set_eps(np.full(len(explore.phi_sliders.sliders), 3.0))
    explore.bias_sliders.set_eps(np.full(len(explore.bias_sliders.sliders), -3.0))
    qtbot.waitUntil(lambda: _segmented_at(explore, 3.0, -3.0), timeout=30_000)
    after = _table(explore)
    assert [row[0] for row in after] == [row[0] for row in before]
    assert [row[1] for row in after] == [row[1] for row in before]  # the clean Dice does not move
    assert [row[2] for row in after] != [row[2] for row in before]  # the adversarial Dice does


def test_layers_updated_in_place_keep_their_own_arrays(make_napari_viewer):
    from napari_advseg.widgets import _layers as L

    viewer = make_napari_viewer()
    geo = {"scale": (1.0, 1.0, 1.0), "translate": (0.0, 0.0, 0.0)}
    first, second = np.zeros((1, 8, 8), np.float32), np.ones((1, 8, 8), np.float32)
    layer = L.show_image(viewer, "image", first, geo, in_place=True)
    own = layer.data
    assert L.show_image(viewer, "image", second, geo, in_place=True) is layer
    assert layer.data is own and np.array_equal(layer.data, second)
    assert not first.any()  # the array first given is not the one written to
    labels = L.show_labels(viewer, "labels", first.astype(np.uint8), geo, in_place=True)
    L.show_labels(viewer, "labels", np.full((1, 8, 10), 2, np.uint8), geo, in_place=True)  # another shape
    assert labels.data.shape == (1, 8, 10) and (labels.data == 2).all()


def test_sliders_say_what_each_number_mostly_does(make_napari_viewer, qtbot, tiny, tmp_path):
    """The effect labels beside the sliders come from a measurement of this slice, and follow the slice."""
    viewer, explore = _explore_scene(make_napari_viewer, qtbot, tiny, tmp_path)
    probe = explore.effects
    z = explore.last_result.request.z
    qtbot.waitUntil(lambda: probe.measured == (explore.owner.session.revision, z) and not probe.busy,
                    timeout=60_000)
    sliders = explore.phi_sliders.sliders + explore.bias_sliders.sliders
    labels = [label.text() for label in explore.phi_sliders.effects + explore.bias_sliders.effects]
    assert len(labels) == len(sliders) and any(labels)
    organs = ("liver", "spleen", "kidney L", "kidney R", "pancr.")
    assert all(text.endswith(" %") for text in labels if text)  # Dice in %, with its unit
    assert all(text[:-2].rsplit(" ", 1)[0] in organs and text[:-2].rsplit(" ", 1)[1].isdigit()
               for text in labels if text)
    tips = [slider.toolTip() for slider in sliders]
    assert all("mean" in tip and "SD" in tip for tip in tips)  # the latent value line is kept
    assert any("From -3 to +3 SD" in tip and "Dice by up to" in tip for tip in tips)
    other = next(k for k in range(explore.owner.session.case.volume.n_slices)
                 if k != z and (explore.owner.session.case.labels[k] > 0).any())
    viewer.dims.set_current_step(0, other)
    qtbot.waitUntil(lambda: probe.measured == (explore.owner.session.revision, other) and not probe.busy,
                    timeout=60_000)


def _canvas(viewer, qtbot) -> np.ndarray:
    """The canvas rendered at a fixed size, the camera fitted to the data first: the dock may change the
    canvas's size between two calls (a summary line appearing), which must not count as a change."""
    qtbot.wait(50)
    viewer.reset_view()
    return viewer.screenshot(canvas_only=True, flash=False, size=(300, 300))[..., :3].astype(float)


def test_walkthrough_volume_then_slider_still_changes_the_canvas(make_napari_viewer, qtbot, tiny, tmp_path):
    """Apply to whole volume, then move a slider: the canvas follows (the volume does not cover the Explore
    layers); then the compare view, back to the single overlay, and a coronal view with the head up."""
    from napari_advseg.widgets import _layers as L

    viewer, explore = _explore_scene(make_napari_viewer, qtbot, tiny, tmp_path, _code_driven_generator, show=True)
    explore.volume.apply()
    qtbot.waitUntil(lambda: L.VOLUME_ADVERSARIAL in viewer.layers and explore.volume.job is None, timeout=60_000)
    names = [layer.name for layer in viewer.layers]
    assert max(names.index(n) for n in L.VOLUME_LAYERS) < min(names.index(n) for n in L.EXPLORE_STACK if n in names)
    assert "below the Explore layers" in explore.volume.status.text()
    viewer.reset_view()
    before = _canvas(viewer, qtbot)
    explore.phi_sliders.set_eps(np.full(len(explore.phi_sliders.sliders), 3.0))
    explore.bias_sliders.set_eps(np.full(len(explore.bias_sliders.sliders), -3.0))
    qtbot.waitUntil(lambda: _segmented_at(explore, 3.0, -3.0), timeout=30_000)
    after = _canvas(viewer, qtbot)
    assert np.abs(after - before).mean() > 1.0  # the canvas shows the new code, not the volume

    # compare view: two cells, before on the left, after on the right; the clean segmentation shown
    assert explore.set_compare(True)
    qtbot.wait(50)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    layers = list(viewer.layers)
    cell = {layer.name: grid.position(i, layers) for i, layer in enumerate(layers)}
    assert grid.enabled and cell["CT"] == cell[L.CLEAN_SEG] == (0, 0)
    assert cell[L.ADVERSARIAL] == cell[L.ADVERSARIAL_SEG] == cell[L.WARPED_REFERENCE] == (0, 1)
    assert not viewer.layers[L.VOLUME_ADVERSARIAL].visible  # it would cover the CT on the left
    compare = _canvas(viewer, qtbot)
    half = compare.shape[1] // 2
    assert compare[:, :half].std() > 5 and compare[:, half:].std() > 5  # both cells drawn
    # an overlay switched on in the compare view goes to the right cell
    explore.view_row.toggles[L.CHANGES].setChecked(True)
    qtbot.waitUntil(lambda: grid.position([l.name for l in viewer.layers].index(L.CHANGES), list(viewer.layers))
                    == (0, 1), timeout=5_000)
    view = explore.last_segmented.view
    changed = view.clean_segmentation != view.adversarial_segmentation
    assert np.array_equal(viewer.layers[L.CHANGES].data[0] > 0, changed)
    explore.view_row.compare.setChecked(False)  # one click back
    assert not grid.enabled and viewer.layers[L.VOLUME_ADVERSARIAL].visible
    assert not viewer.layers[L.CLEAN_SEG].visible

    # the coronal reformat: superior up; the volume layers show the attacked volume there
    explore.orientation.show("coronal")
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert str(camera.orientation2d[0]) == "up" and tuple(viewer.dims.order) == (1, 0, 2)
    explore.orientation.show("axial")
    assert str(camera.orientation2d[0]) == "down"


def test_a_generator_of_the_other_bias_mode_swaps_the_bias_layer(make_napari_viewer, qtbot, tiny, tmp_path):
    """HU bias, then a multiplicative (%) one, then HU again, with the bias shown: one bias layer at a time,
    drawn in its own units, still shown."""
    from napari_advseg.widgets import _layers as L

    multiplicative = _strong_generator(tiny, tmp_path, "multiplicative")
    viewer, explore = _explore_scene(make_napari_viewer, qtbot, tiny, tmp_path)
    widget = explore.owner
    viewer.layers[L.BIAS].visible = True
    explore.render_now()
    assert viewer.layers[L.BIAS].data.any() and L.BIAS_PERCENT not in viewer.layers
    for path, shown, gone in ((multiplicative, L.BIAS_PERCENT, L.BIAS),
                              (_strong_generator(tiny, tmp_path), L.BIAS, L.BIAS_PERCENT)):
        assert widget.load_generator_file(path)
        explore.render_now()
        assert gone not in viewer.layers
        layer = viewer.layers[shown]
        assert layer.visible and layer.data.any()
        assert explore.view_row.wanted(L.BIAS)
    qtbot.waitUntil(explore.renders.idle, timeout=30_000)
