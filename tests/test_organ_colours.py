"""Colours by class name: the organ class map keeps the plugin's colours, other class maps colour the same
organs alike and every other class distinctly (organs.class_colours and the places that use it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_advseg.organs import (BACKGROUND_COLOUR, ORGAN_CLASSES, ORGAN_COLOURS, OTHER_COLOURS, OUTSIDE_COLOUR,
                                  class_colours, other_colour)

DEFAULT_COLOURS = {
    0: (0.0, 0.0, 0.0, 0.0),
    1: (0.80, 0.35, 0.85, 1.0),   # liver: purple
    2: (0.20, 0.55, 0.95, 1.0),   # spleen: blue
    3: (0.95, 0.35, 0.25, 1.0),   # kidney_left: red
    4: (1.00, 0.80, 0.15, 1.0),   # kidney_right: yellow
    5: (0.25, 0.85, 0.35, 1.0),   # pancreas: green
}
"""The colours of the organ class map's values (the shipped sample's look)."""


def _totalsegmentator_like() -> list[str]:
    """A 118-value class map in the order of TotalSegmentator's 'total' task (spleen 1, liver 5, pancreas 7)."""
    names = ["background", "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
             "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
             "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus", "trachea",
             "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder", "prostate", "kidney_cyst_left",
             "kidney_cyst_right", "sacrum", "vertebrae_S1"]
    names += [f"vertebrae_L{i}" for i in range(5, 0, -1)] + [f"vertebrae_T{i}" for i in range(12, 0, -1)]
    names += [f"vertebrae_C{i}" for i in range(7, 0, -1)]
    names += ["heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right",
              "subclavian_artery_left", "common_carotid_artery_right", "common_carotid_artery_left",
              "brachiocephalic_vein_left", "brachiocephalic_vein_right", "atrial_appendage_left",
              "superior_vena_cava", "inferior_vena_cava", "portal_vein_and_splenic_vein"]
    for pair in ("iliac_artery", "iliac_vena", "humerus", "scapula", "clavicula", "femur", "hip"):
        names += [f"{pair}_left", f"{pair}_right"]
    names.append("spinal_cord")
    for muscle in ("gluteus_maximus", "gluteus_medius", "gluteus_minimus", "autochthon", "iliopsoas"):
        names += [f"{muscle}_left", f"{muscle}_right"]
    names += ["brain", "skull"] + [f"rib_{side}_{i}" for side in ("left", "right") for i in range(1, 13)]
    names += ["sternum", "costal_cartilages"]
    return names


TOTAL = _totalsegmentator_like()


def test_the_organ_class_map_keeps_its_colours():
    assert class_colours(ORGAN_CLASSES) == DEFAULT_COLOURS
    assert class_colours() == DEFAULT_COLOURS


def test_a_totalsegmentator_class_map_colours_organs_by_name_and_the_rest_apart():
    assert len(TOTAL) == 118 and len(set(TOTAL)) == 118
    assert [TOTAL.index(n) for n in ("spleen", "kidney_right", "kidney_left", "liver", "pancreas")] == [1, 2, 3, 5, 7]
    colours = class_colours(TOTAL)
    assert sorted(colours) == list(range(len(TOTAL)))
    for organ, rgba in ORGAN_COLOURS.items():
        assert colours[TOTAL.index(organ)] == rgba, organ
    assert len(set(colours[v] for v in range(20))) == 20  # the first 20 classes can be told apart
    others = [rgba for value, rgba in colours.items() if value and TOTAL[value] not in ORGAN_COLOURS]
    assert len(others) == len(TOTAL) - 1 - len(ORGAN_COLOURS)
    assert len(set(others)) == len(others)  # every class of this map has its own colour
    for rgba in others:
        assert rgba not in ORGAN_COLOURS.values() and rgba not in (OUTSIDE_COLOUR, BACKGROUND_COLOUR)
        assert rgba[3] == 1.0 and all(0.0 <= c <= 1.0 for c in rgba)
    assert colours[0] == BACKGROUND_COLOUR
    assert class_colours(TOTAL) == colours  # the same map, the same colours
    # the other classes take the palette in class order: gallbladder is the first, stomach the second
    assert colours[TOTAL.index("gallbladder")] == OTHER_COLOURS[0]
    assert colours[TOTAL.index("stomach")] == OTHER_COLOURS[1]


def test_names_compare_as_class_names_do_and_an_organ_is_coloured_once():
    colours = class_colours(["bg", "Spleen", "Liver", "kidney-left", "liver", "tumour"])
    assert colours[1] == ORGAN_COLOURS["spleen"] and colours[2] == ORGAN_COLOURS["liver"]
    assert colours[3] == ORGAN_COLOURS["kidney_left"]
    assert colours[4] == other_colour(0) and colours[5] == other_colour(1)  # a second "liver" is another class
    # the folders of the tests: background, liver, spleen
    assert class_colours(["background", "liver", "spleen"]) == {k: DEFAULT_COLOURS[k] for k in (0, 1, 2)}
    with pytest.raises(ValueError, match="index"):
        other_colour(-1)


def test_the_dose_response_plot_uses_the_class_colours():
    from napari_advseg.evaluation.curve import organ_colour

    assert organ_colour("spleen", TOTAL) == ORGAN_COLOURS["spleen"][:3]
    assert organ_colour("stomach", TOTAL) == OTHER_COLOURS[1][:3]
    assert organ_colour("liver", ORGAN_CLASSES) == DEFAULT_COLOURS[1][:3]
    assert organ_colour("stomach", ORGAN_CLASSES) is None


def test_the_reader_colours_a_label_file_by_its_sidecar_names(tmp_path):
    import nibabel

    from napari_advseg._napari.reader import read_layer

    data = np.zeros((4, 6, 5), np.uint8)
    data[1, 1:3, 1:3], data[2, 2:4, 2:4], data[3, 0, 0] = 1, 2, 9
    nibabel.save(nibabel.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "seg.nii.gz")
    no_sidecar = read_layer(tmp_path / "seg.nii.gz", kind="labels")[1]
    assert "colormap" not in no_sidecar  # values past the organ class map and no names: napari's own colours
    (tmp_path / "seg.json").write_text(json.dumps({"labels": {"1": "spleen", "2": "liver", "9": "stomach"}}))
    colormap = read_layer(tmp_path / "seg.nii.gz", kind="labels")[1]["colormap"]
    mapped = colormap.map(np.array([0, 1, 2, 3, 9, 10]))
    names = ["background", "spleen", "liver"] + [f"value {v}" for v in range(3, 9)] + ["stomach"]
    colours = class_colours(names)
    assert np.allclose(mapped, [BACKGROUND_COLOUR, ORGAN_COLOURS["spleen"], ORGAN_COLOURS["liver"], colours[3],
                                colours[9], OUTSIDE_COLOUR])


def _lab(rgb) -> np.ndarray:
    """CIELAB (D65) of an sRGB colour."""
    c = np.asarray(rgb[:3], float)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_the_palette_is_well_separated_from_itself_and_from_the_organs_and_overlays():
    from napari_advseg.widgets._layers import CHANGES_RGBA, DEFORMATION_RGB

    fixed = [*ORGAN_COLOURS.values(), DEFORMATION_RGB, CHANGES_RGBA, OUTSIDE_COLOUR, (0.0, 0.0, 0.0)]
    palette = [_lab(c) for c in OTHER_COLOURS]
    for i, lab in enumerate(palette):
        nearest = min(np.linalg.norm(lab - other) for other in [_lab(c) for c in fixed] + palette[:i])
        assert nearest > 25, OTHER_COLOURS[i]  # CIELAB distance; about 2.3 is the smallest difference one sees
        assert lab[0] >= 40, OTHER_COLOURS[i]  # light enough to show on a CT's dark tissue
