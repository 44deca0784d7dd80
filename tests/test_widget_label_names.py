"""The dock widget scores reference labels by class name, as the command line does.

Run under a display (``xvfb-run -a``). A target whose output channels are the
standard one-layer network's in another order, with the class names in that
order, must give the same Dice as the standard network on the standard labels;
the labels come through the plugin's reader with a sidecar naming another
numbering of their values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from test_widget import SPACING, _organ_slice, _widget

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ORDER = (0, 2, 1, 5, 3, 4)
"""Output channel j of the reordered network is the standard network's channel ORDER[j]."""
LABEL_NUMBERING = ("background", "spleen", "kidney_right", "liver", "pancreas", "kidney_left")
"""Value -> name of the label file the widget reads (its sidecar says so)."""


def _networks(folder):
    """(standard module, path of the reordered TorchScript target with its sidecar, its class names)."""
    from napari_advseg.organs import ORGAN_CLASSES

    torch.manual_seed(0)
    standard = nn.Conv2d(1, len(ORGAN_CLASSES), 3, padding=1).eval()
    reordered = nn.Conv2d(1, len(ORGAN_CLASSES), 3, padding=1).eval()
    with torch.no_grad():
        reordered.weight.copy_(standard.weight[list(ORDER)])
        reordered.bias.copy_(standard.bias[list(ORDER)])
    names = [ORGAN_CLASSES[i] for i in ORDER]
    path = folder / "reordered.pt"
    torch.jit.save(torch.jit.script(reordered), str(path))
    (folder / "reordered.json").write_text(json.dumps({"class_names": names, "normalisation": {"mode": "zscore"}}))
    return standard, path, tuple(names)


def _generator(target_path, hu, labels, folder):
    """A generator trained one step against the reordered target (the Explore tab needs one for its table)."""
    from napari_advseg.attack.config import AttackConfig
    from napari_advseg.attack.trainer import AttackTrainer
    from napari_advseg.data.cases import make_case
    from napari_advseg.io.atomic import save_torch
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.models.target_load import load_target

    target = load_target(target_path, "cpu")
    case = make_case(volume_from_array(hu, SPACING), labels, target.normalisation)
    trainer = AttackTrainer(AttackConfig(steps=1, batch_size=2, critic_steps=1, base_channels=8), target,
                            case.images, case.labels, "cpu")
    trainer.step()
    path = folder / "generator.pt"
    save_torch(trainer.state_dict(), path)
    return path


def test_a_target_with_other_class_names_is_scored_by_name(make_napari_viewer, qtbot, tiny, tmp_path):
    from napari.utils.notifications import notification_manager

    from napari_advseg._napari.reader import read_layer
    from napari_advseg.data.class_map import map_classes
    from napari_advseg.evaluation.metrics import dice_per_organ, network_dice
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.io.nifti_save import save_volume
    from napari_advseg.models.unet import predict_labels
    from napari_advseg.organs import ORGAN_CLASSES

    standard_labels = tiny["labels"].astype(np.uint8)
    renumbered = np.array([LABEL_NUMBERING.index(n) for n in ORGAN_CLASSES], np.uint8)[standard_labels]
    labels_path = tmp_path / "seg.nii.gz"
    save_volume(renumbered, volume_from_array(tiny["hu"], SPACING), labels_path, dtype=np.uint8)
    (tmp_path / "seg.json").write_text(json.dumps({"class_names": list(LABEL_NUMBERING)}))
    standard, target_path, names = _networks(tmp_path)

    viewer = make_napari_viewer()
    viewer.add_image(tiny["hu"], name="CT", scale=SPACING, colormap="gray", contrast_limits=(-200, 300))
    data, kwargs, _ = read_layer(labels_path)
    assert np.array_equal(data, renumbered)
    viewer.add_labels(data, **kwargs)
    widget = _widget(viewer, qtbot)
    session = widget.session
    assert widget.data.labels_layer().name == "seg"
    seen = len(notification_manager.records)
    assert widget.load_target_file(target_path)

    # the command line's warning line, as a notification and on the Data tab's status line
    expected = map_classes(LABEL_NUMBERING, names).message()
    assert expected and "liver 3->2" in expected
    warnings = [str(n.message) for n in notification_manager.records[seen:] if "class mapping" in str(n.message)]
    assert warnings == [expected]
    assert expected in widget.data.info_label.text()

    # the case's labels are the standard ones in the target's indices, and score as the standard network does
    in_target = np.array([names.index(n) for n in ORGAN_CLASSES], np.uint8)[standard_labels]
    case = session.case
    assert np.array_equal(case.labels, in_target)
    ours = network_dice(session.target, case.images, case.labels, names)
    reference = network_dice(standard, case.images, standard_labels, ORGAN_CLASSES)
    assert ours == {name: reference[name] for name in names[1:]}
    assert any(reference[name] for name in ORGAN_CLASSES[1:])

    # the Explore tab's Dice table: each organ's clean Dice on the shown slice is the standard network's
    assert widget.load_generator_file(_generator(target_path, tiny["hu"], case.labels, tmp_path))
    z = _organ_slice(widget)
    viewer.dims.set_current_step(0, z)
    explore = widget.explore
    qtbot.waitUntil(lambda: explore.last_segmented is not None and explore.last_segmented.request.z == z
                    and explore.renders.idle(), timeout=30_000)
    table = explore.table
    shown = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    prediction = predict_labels(standard, case.images[z:z + 1])
    expected_dice = dice_per_organ(prediction, standard_labels[z:z + 1], ORGAN_CLASSES)
    present = {name: f"{100 * d:.1f} %" for name, d in expected_dice.items() if not np.isnan(d)}  # Dice in %
    assert shown and shown == present

    # without the sidecar's names the values are read as the six organs in their standard order
    widget.data.labels_layer().metadata = {}
    widget.data.apply_inputs()
    assert not np.array_equal(session.case.labels, in_target)
    assert map_classes(ORGAN_CLASSES, names).message() in widget.data.info_label.text()
