"""The slice explorer with a volumetric target: stage one calls no network, stage two segments the slab."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slab_helpers import slab_target
from test_explore import _explorer
from test_widget import SPACING


def test_slab_bounds_centre_the_slice_and_stay_inside():
    from napari_advseg.attack.explore import slab_bounds

    assert slab_bounds(5, 10, 3) == (4, 7)
    assert slab_bounds(5, 10, 4) == (4, 8)  # the lower middle for an even depth
    assert slab_bounds(0, 10, 5) == (0, 5) and slab_bounds(9, 10, 5) == (5, 10)
    assert slab_bounds(2, 4, 9) == (0, 4)  # fewer slices than the depth: all of them
    assert slab_bounds(0, 1, 1) == (0, 1)


def _case(tiny, labels=True):
    from napari_advseg.data.cases import make_case
    from napari_advseg.io.geometry import volume_from_array

    return make_case(volume_from_array(tiny["hu"], SPACING), tiny["labels"] if labels else None, {"mode": "zscore"})


def _slab_explorer(depth=3):
    from napari_advseg.attack.explore import SliceExplorer

    base = _explorer()
    target = slab_target(depth)
    return SliceExplorer(base.generator, base.config, target), target


@pytest.mark.parametrize("labels", [True, False])
def test_stage_two_segments_the_slab_with_one_code(tiny, labels):
    from napari_advseg.attack.explore import SliceExplorer

    case = _case(tiny, labels)
    explorer, target = _slab_explorer(3)
    explorer.scale = case.scale
    calls = target.model.calls
    z = 4
    assert explorer.set_case_slice(case, z) == z
    eps = np.array([2.0, -1.0, 0.5], np.float32)
    view = explorer.render_fields(eps, -eps, rho=0.05)
    assert calls == []  # stage one: no network at all
    assert view.clean_segmentation is None and view.adversarial_segmentation is None
    assert (view.warped_reference is not None) == labels  # label-free, the reference is the clean prediction
    assert view.slab.depth == 3 and view.slab.centre == 1

    explorer.segment(view)
    assert calls == [3, 3]  # the clean slab once, the adversarial slab
    slab = explorer.adversarial_slab(view)
    assert slab.shape == (3, 1) + case.images.shape[1:]
    assert torch.equal(slab[1, 0], torch.as_tensor(view.adversarial))  # the slice shown sits in the middle
    with torch.no_grad():
        expected = target(slab).argmax(dim=1)[1].numpy()
        alone = target(torch.as_tensor(view.adversarial)[None, None]).argmax(dim=1)[0].numpy()
    assert np.array_equal(view.adversarial_segmentation, expected)
    assert not np.array_equal(expected, alone)  # the neighbours matter to this network
    # the neighbours carry the same code: each, rendered alone with these deviates, is the slab's slice
    single = SliceExplorer(explorer.generator, explorer.config, target, scale=case.scale)
    for k, index in ((0, z - 1), (2, z + 1)):
        single.set_slice(case.images[index], hu=case.volume.hu[index])
        alone_view = single.render_fields(eps, -eps, rho=0.05)
        assert np.allclose(slab[k, 0].numpy(), alone_view.adversarial, atol=1e-4)
        assert not np.allclose(slab[k, 0].numpy(), case.images[index], atol=1e-3)
    with torch.no_grad():
        clean = target(torch.as_tensor(case.images[z - 1:z + 2])[:, None]).argmax(dim=1)[1].numpy()
    assert np.array_equal(view.clean_segmentation, clean)
    assert view.organs and set(view.organs) <= set(target.class_names[1:])

    calls.clear()
    again = explorer.render_fields(-eps, eps)  # the clean prediction is known now: no network, nothing missing
    assert calls == [] and np.array_equal(again.clean_segmentation, clean)
    assert again.warped_reference is not None and again.dice_clean == view.dice_clean
    explorer.segment(again)
    assert calls == [3]  # only the adversarial slab


def test_a_slab_at_the_volume_edge_and_a_2d_target_unchanged(tiny, monkeypatch):
    import napari_advseg.attack.explore as explore

    case = _case(tiny)
    explorer, target = _slab_explorer(4)
    explorer.set_case_slice(case, 0)
    view = explorer.render(np.ones(3), np.zeros(3))
    assert (view.slab.depth, view.slab.centre) == (4, 0)
    slab = explorer.adversarial_slab(view)
    with torch.no_grad():
        expected = target(slab).argmax(dim=1)[0].numpy()
    assert np.array_equal(view.adversarial_segmentation, expected)
    monkeypatch.setattr(explore, "SLAB_BATCH", 2)  # a deep slab is encoded and decoded a few slices at a time
    explorer.set_case_slice(case, 0)
    assert torch.allclose(explorer.adversarial_slab(explorer.render_fields(np.ones(3), np.zeros(3))), slab,
                          atol=1e-3)

    flat = _explorer()  # a 2D target: no slab, the segmentation is the slice's own
    flat.set_case_slice(case, 3)
    view = flat.render(np.ones(3), np.zeros(3))
    assert view.slab is None
    with torch.no_grad():
        own = flat.target(torch.as_tensor(view.adversarial)[None, None]).argmax(dim=1)[0].numpy()
    assert np.array_equal(view.adversarial_segmentation, own)


def test_an_nnunet_3d_folder_in_the_explorer_segments_its_slab(tmp_path, tiny):
    """The slab explorer with a real 3D target: a tiny nnU-Net 3d_fullres folder loaded as the CLI loads it."""
    pytest.importorskip("dynamic_network_architectures")
    from folder_helpers import write_nnunet_folder
    from napari_advseg.attack.explore import SliceExplorer
    from napari_advseg.data.cases import make_case
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.models.folder_targets import fit_target_to_volume
    from napari_advseg.models.target_load import load_target

    target = load_target(write_nnunet_folder(tmp_path, "3d_fullres"), "cpu")
    volume = volume_from_array(tiny["hu"], SPACING)
    fit_target_to_volume(target, volume)
    assert target.volumetric and 1 <= target.slab_depth
    case = make_case(volume, None, target.normalisation)
    base = _explorer()
    explorer = SliceExplorer(base.generator, base.config, target, scale=case.scale)
    z = 4
    explorer.set_case_slice(case, z)
    eps = np.array([1.0, -2.0, 0.5], np.float32)
    view = explorer.render_fields(eps, eps, rho=0.05)
    assert view.adversarial_segmentation is None  # stage one: no network
    explorer.segment(view)
    slab = explorer.adversarial_slab(view)
    assert slab.shape[0] == view.slab.depth == min(target.slab_depth, case.volume.n_slices)
    with torch.no_grad():
        expected = target(slab).argmax(dim=1)[view.slab.centre].numpy()
    assert view.adversarial_segmentation.shape == case.images.shape[1:]
    assert np.array_equal(view.adversarial_segmentation, expected)
