"""What the Explore tab draws over a slice (pure arrays) and how it lays out napari's layers (no window)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_advseg.widgets import _overlays as O


def test_grid_lines_move_with_the_tissue():
    h, w = 40, 48
    still = O.deformation_grid(np.zeros((2, h, w), np.float32), (8.0, 8.0))
    columns = np.flatnonzero(still[h // 2 + 3] > 0.9)  # a row between horizontal lines
    assert columns.tolist() == [0, 8, 16, 24, 32, 40]
    shifted = np.zeros((2, h, w), np.float32)
    shifted[1] = 3.0  # the image at p shows the tissue at p + 3 px: the tissue moved 3 px to the left
    moved = O.deformation_grid(shifted, (8.0, 8.0))
    assert np.flatnonzero(moved[h // 2 + 3] > 0.9).tolist() == [5, 13, 21, 29, 37, 45]
    left = np.zeros((h, w), bool)
    left[:, :20] = True
    fine = O.deformation_grid(np.zeros((2, h, w), np.float32), (8.0, 8.0), factor=4, mask=left)
    assert fine.shape == (4 * h, 4 * w) and fine[:, 4 * 20:].max() == 0  # outside the mask: nothing
    assert fine[:, :4 * 20].max() == 1.0


def test_raster_geometry_keeps_the_pixel_edges():
    geo = O.raster_geometry({"scale": (5.0, 3.0, 2.0), "translate": (10.0, 0.0, 0.0)}, 4)
    assert geo["scale"] == (5.0, 0.75, 0.5)
    # a slice pixel's left edge (-0.5 px) is the first raster pixel's left edge
    assert geo["translate"][1] - 0.5 * geo["scale"][1] == pytest.approx(-0.5 * 3.0)
    assert geo["translate"][0] == 10.0


def test_body_mask_fills_the_lungs_and_drops_the_table():
    hu = np.full((40, 40), -1000.0)
    hu[5:30, 5:35] = 40.0  # the body
    hu[10:20, 10:18] = -850.0  # a lung
    hu[35:37, 2:38] = 200.0  # the table
    mask = O.body_mask(hu)
    assert mask[15, 14] and mask[5, 5] and not mask[36, 20] and not mask[0, 0]


def test_fields_are_drawn_inside_the_body_in_their_units():
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    bias = O.bias_overlay(np.full((4, 4), 30.0, np.float32), additive=True, mask=mask)
    assert bias[1, 1] == 30.0 and bias[0, 0] == 0.0
    factor = O.bias_overlay(np.full((4, 4), 1.1, np.float32), additive=False)
    assert factor[0, 0] == pytest.approx(10.0)  # a factor 1.1 is +10 %
    displacement = np.zeros((2, 4, 4), np.float32)
    displacement[0] = 3.0
    displacement[1] = 4.0
    assert O.displacement_mm(displacement, (2.0, 1.0), mask)[1, 1] == pytest.approx(np.hypot(6.0, 4.0))
    assert O.displacement_mm(displacement, (2.0, 1.0), mask)[0, 0] == 0.0


def test_arrows_point_the_way_tissue_moved_and_are_drawn_visible():
    vectors = np.array([[[7.0, 10.0, 10.0], [0.0, 1.0, -2.0]]], np.float32)
    moved = O.tissue_arrows(vectors)
    assert moved[0, 0].tolist() == [7.0, 11.0, 8.0] and moved[0, 1].tolist() == [0.0, -1.0, 2.0]
    for largest in (0.3, 1.8, 5.0, 40.0):
        scale = O.arrow_scale(largest, 6.0)
        assert np.log2(scale) == int(np.log2(scale)) and scale >= 1
        assert largest * scale >= 4.5 or scale == 1  # the longest arrow reaches most of the spacing
        assert largest * scale <= 9.0 or scale == 1


def test_display_bounds_are_round():
    assert O.nice_ceiling(105.6) == 150.0
    assert O.nice_ceiling(0.07) == pytest.approx(0.08)
    assert O.symmetric_limit(np.array([-80.0, 20.0]), floor=5.0) == 100.0
    assert O.grid_step_mm(384.0) == 25.0 and O.grid_step_mm(160.0) == 10.0


def test_views_keep_the_head_up():
    from napari.components import ViewerModel

    from napari_advseg.widgets._orientation import RadiologicalView, view_order

    assert view_order(4, "coronal") == (0, 2, 1, 3)
    viewer = ViewerModel()
    viewer.add_image(np.zeros((6, 8, 10), np.float32))
    view = RadiologicalView(viewer)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert view.current() == "axial" and str(camera.orientation2d[0]) == "down"  # anterior up
    for name in ("coronal", "sagittal"):
        view.show(name)
        assert view.current() == name and str(camera.orientation2d[0]) == "up"  # superior up
    viewer.dims.order = (0, 1, 2)  # the user rolls back to axial by hand
    assert str(camera.orientation2d[0]) == "down"
    view.disconnect()


def test_compare_layout_puts_before_left_and_after_right():
    from napari.components import ViewerModel

    from napari_advseg.widgets import _layers as L

    viewer = ViewerModel()
    image = np.zeros((1, 8, 8), np.float32)
    labels = np.zeros((1, 8, 8), np.uint8)
    viewer.add_image(image, name="CT")
    viewer.add_labels(labels, name="my labels", visible=False)
    meta = L.output_metadata()
    viewer.add_image(image, name=L.ADVERSARIAL, metadata=meta)
    viewer.add_image(image, name=L.BIAS, metadata=meta, visible=False)
    viewer.add_labels(labels, name=L.CLEAN_SEG, metadata=meta)
    viewer.add_labels(labels, name=L.REFERENCE, metadata=meta)
    for name in (L.ADVERSARIAL_SEG, L.WARPED_REFERENCE, L.CHANGES):
        viewer.add_labels(labels, name=name, metadata=meta)
    viewer.add_image(image, name=L.GRID, metadata=meta)
    earlier = [layer.name for layer in viewer.layers]
    order, stride = L.compare_order(viewer, "CT")
    L.put_in_order(viewer, order)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.stride, grid.shape, grid.enabled = stride, (1, 2), True
    layers = list(viewer.layers)
    cell = {layer.name: grid.position(i, layers) for i, layer in enumerate(layers)}
    assert cell["CT"] == cell[L.CLEAN_SEG] == cell[L.REFERENCE] == (0, 0)
    for name in (L.ADVERSARIAL, L.ADVERSARIAL_SEG, L.WARPED_REFERENCE, L.CHANGES, L.GRID):
        assert cell[name] == (0, 1)
    assert cell[L.BIAS] == cell["my labels"] == (-1, -1)
    names = [layer.name for layer in layers]
    assert names.index(L.ADVERSARIAL) < names.index(L.ADVERSARIAL_SEG) < names.index(L.WARPED_REFERENCE)
    # too few hidden layers to fill the left cell: no layout (the view adds a hidden spacer)
    viewer.layers[L.BIAS].visible = True
    viewer.layers["my labels"].visible = True  # a user's layer shown goes left, over the CT
    order, stride = L.compare_order(viewer, "CT")
    assert stride == 0 or order.index("my labels") < stride
    # the single overlay: the Explore stack on top, in its order
    L.put_in_order(viewer, L.single_order(viewer, earlier))
    names = [layer.name for layer in viewer.layers]
    assert names[:2] == ["CT", "my labels"]
    assert names[2:] == [name for name in L.EXPLORE_STACK if name in names]


def test_masks_follow_the_tissue():
    body = np.zeros((10, 12), bool)
    body[2:6, 3:7] = True
    displacement = np.zeros((2, 10, 12), np.float32)
    displacement[1] = -2.0  # the image at p shows the tissue at p - 2: the body moved 2 px right
    moved = O.warped_mask(body, displacement)
    assert np.array_equal(moved[:, 2:], body[:, :-2]) and not moved[:, :5].any()
    grid = O.deformation_grid(displacement, (4.0, 4.0), mask=body)
    assert not grid[:, :5].any() and grid[2:6, 5:9].any()
