"""Creating the plugin's output layers once and then only updating their data.

Per-slice layers are ``(1, Y, X)`` arrays placed on the shown slice with a
translation along Z, so they overlay the CT exactly (same scale) and vanish
on other slices; whole-volume layers are ``(Z, Y, X)``.
"""

from __future__ import annotations

import numpy as np

from napari_advseg._napari.layers import LABEL_NAMES, class_colormap, label_names, output_metadata
from napari_advseg._napari.layers import is_output  # noqa: F401  (re-exported)
from napari_advseg.organs import ORGAN_CLASSES

ADVERSARIAL = "adversarial image"
BIAS = "bias field (HU)"
BIAS_PERCENT = "bias field (%)"
MAGNITUDE = "displacement (mm)"
CLEAN_SEG = "clean segmentation (fill)"
REFERENCE = "reference (outline)"
ADVERSARIAL_SEG = "adversarial segmentation (fill)"
CHANGES = "label changes"
WARPED_REFERENCE = "warped reference (outline)"
GRID = "deformation grid"
DEFORMATION = "deformation arrows"
VOLUME_ADVERSARIAL = "volume: adversarial image"
VOLUME_SEG = "volume: adversarial segmentation (fill)"

EXPLORE_STACK = (ADVERSARIAL, BIAS, BIAS_PERCENT, MAGNITUDE, CLEAN_SEG, REFERENCE, ADVERSARIAL_SEG, CHANGES, WARPED_REFERENCE,
                 GRID, DEFORMATION)
"""The Explore tab's per-slice layers, bottom to top, over every other layer."""

SLICE_LAYERS = tuple(name for name in EXPLORE_STACK if name != BIAS_PERCENT)
"""The layers a render of a generator with an additive bias makes."""

BEFORE = (REFERENCE, CLEAN_SEG)
"""Over the CT on the left of the compare view (bottom to top)."""

AFTER = (ADVERSARIAL, BIAS, BIAS_PERCENT, MAGNITUDE, ADVERSARIAL_SEG, CHANGES, WARPED_REFERENCE, GRID, DEFORMATION)
"""The right of the compare view (bottom to top)."""

VOLUME_LAYERS = (VOLUME_ADVERSARIAL, VOLUME_SEG)

REDRAWN = (BIAS, BIAS_PERCENT, MAGNITUDE, GRID, DEFORMATION)
"""Overlays drawn only while shown (drawn from the result on screen when switched on)."""

DEFORMATION_RGB = (0.0, 0.9, 1.0)
"""Cyan: the deformation's colour (grid, arrows, displacement), which no organ has."""

CHANGES_RGBA = (1.0, 1.0, 1.0, 1.0)
"""White: the pixels whose label the attack changed."""


def organ_colormap(class_names=None):
    """A DirectLabelColormap with the colours of a class map's classes (grey for values outside it).

    ``class_names``: value -> name (default the organ class map); colours from
    :func:`napari_advseg.organs.class_colours`.
    """
    return class_colormap(ORGAN_CLASSES if class_names is None else class_names)


def deformation_colormap():
    """Transparent to cyan: the deformation grid (values 0..1)."""
    from napari.utils.colormaps import Colormap

    r, g, b = DEFORMATION_RGB
    return Colormap(colors=[[r, g, b, 0.0], [r, g, b, 1.0]], name="advseg deformation grid", interpolation="linear")


def magnitude_colormap():
    """Transparent (no displacement) through cyan to white (the largest): drawn over the CT without hiding it."""
    from napari.utils.colormaps import Colormap

    r, g, b = DEFORMATION_RGB
    return Colormap(colors=[[r, g, b, 0.0], [r, g, b, 0.7], [1.0, 1.0, 1.0, 0.95]], controls=[0.0, 0.5, 1.0],
                    name="advseg displacement", interpolation="linear")


def bias_colormap():
    """Diverging about 0: blue (darker) through transparent (no change) to orange (brighter)."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=[[0.15, 0.45, 1.0, 0.95], [0.5, 0.7, 1.0, 0.45], [1.0, 1.0, 1.0, 0.0],
                            [1.0, 0.7, 0.4, 0.45], [1.0, 0.45, 0.05, 0.95]],
                    controls=[0.0, 0.3, 0.5, 0.7, 1.0], name="advseg bias", interpolation="linear")


def changes_colormap():
    """White where the label changed, transparent elsewhere."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={0: (0.0, 0.0, 0.0, 0.0), 1: CHANGES_RGBA, None: (0.0, 0.0, 0.0, 0.0)})


def geometry(ct_layer, z: int | None = None) -> dict:
    """Scale and translation that put a ``(1, Y, X)`` array on slice ``z`` of ``ct_layer``.

    With ``z`` None, the geometry of the whole CT (for ``(Z, Y, X)`` arrays).
    """
    scale = np.asarray(ct_layer.scale, dtype=float)
    translate = np.asarray(ct_layer.translate, dtype=float).copy()
    if z is not None:
        translate[0] += scale[0] * int(z)
    return {"scale": tuple(scale), "translate": tuple(translate)}


def _existing(viewer, name: str, kind: str):
    import napari.layers

    if name in viewer.layers:
        layer = viewer.layers[name]
        # isinstance, not type(): plugin widgets get the viewer wrapped in napari's proxy
        if isinstance(layer, getattr(napari.layers, kind)) and is_output(layer):
            return layer
        viewer.layers.remove(layer)  # a foreign layer of that name: ours replaces it
    return None


def _place(layer, geo: dict) -> None:
    if tuple(layer.scale) != geo["scale"]:
        layer.scale = geo["scale"]
    if tuple(layer.translate) != geo["translate"]:
        layer.translate = geo["translate"]


def _set_data(layer, data: np.ndarray, in_place: bool) -> None:
    """New data for an existing layer.

    ``in_place``: written into the layer's own array (a copy made when it was
    given) where shape and type allow, then redrawn; napari then neither
    recomputes the layer's extent nor the viewer's dims, which a new array
    costs on every slider change.
    """
    current = layer.data
    if in_place and current.shape == data.shape and current.dtype == data.dtype:
        current[...] = data
        layer.refresh(extent=False)
    else:
        layer.data = np.array(data) if in_place else data


def show_image(viewer, name: str, data: np.ndarray, geo: dict, in_place: bool = False, **kwargs):
    """Add an Image layer, or update the data and placement of the existing one (see :func:`_set_data`)."""
    layer = _existing(viewer, name, "Image")
    if layer is None:
        return viewer.add_image(np.array(data) if in_place else data, name=name, metadata=output_metadata(),
                                **geo, **kwargs)
    _place(layer, geo)
    _set_data(layer, data, in_place)
    return layer


def show_labels(viewer, name: str, data: np.ndarray, geo: dict, in_place: bool = False, class_names=None,
                **kwargs):
    """Add a Labels layer (its classes' colours unless ``colormap`` is given), or update the existing one.

    ``class_names``: the class map of the values (value -> name, default the
    organ class map), which colours them (:func:`organ_colormap`) and is kept
    in the layer's metadata as its label names; given for a layer coloured
    for another class map, the layer is coloured anew. ``contour`` and
    ``colormap`` apply on creation. Unchanged data is not set again (napari
    would redraw the layer, contours and all).
    """
    layer = _existing(viewer, name, "Labels")
    colormap = kwargs.pop("colormap", None)
    names = None if colormap is not None else list(ORGAN_CLASSES if class_names is None else class_names)
    if layer is None:
        contour = kwargs.pop("contour", 0)
        metadata = output_metadata()
        if names is not None:
            metadata[LABEL_NAMES] = names
        layer = viewer.add_labels(np.array(data) if in_place else data, name=name,
                                  colormap=colormap or organ_colormap(names), metadata=metadata, **geo, **kwargs)
        layer.contour = contour
        return layer
    _place(layer, geo)
    shown = label_names(layer)
    if class_names is not None and names is not None and shown is not None and shown != tuple(names):
        layer.colormap = organ_colormap(names)
        layer.metadata = {**layer.metadata, LABEL_NAMES: names}
    if not np.array_equal(layer.data, data):  # e.g. the clean segmentation: the same for every code
        _set_data(layer, data, in_place)
    return layer


def show_vectors(viewer, name: str, vectors: np.ndarray, geo: dict, length: float, **kwargs):
    """Add a Vectors layer drawn ``length`` times longer than the vectors, in the deformation's cyan, or update it.

    The same number of arrows as before (the same slice) is written into the layer's own array. An
    update leaves the layer-list thumbnail (which napari draws arrow by arrow) to :func:`refresh_thumbnail`.
    """
    layer = _existing(viewer, name, "Vectors")
    if layer is None:
        return viewer.add_vectors(np.array(vectors), name=name, edge_color=list(DEFORMATION_RGB) + [1.0], length=length,
                                  metadata=output_metadata(), **geo, **kwargs)
    _place(layer, geo)
    if layer.data.shape == vectors.shape:
        layer.data[...] = vectors
    else:
        layer.data = np.array(vectors)
    if layer.length != length:
        layer.length = length
    layer.refresh(thumbnail=False)  # the extent too: the same number of arrows may lie on another slice
    return layer


def refresh_thumbnail(viewer, name: str) -> None:
    """Redraw the layer-list thumbnail of an output layer, if there is one (see :func:`show_vectors`)."""
    layer = _existing(viewer, name, "Vectors")
    if layer is not None:
        layer.refresh(data_displayed=False, extent=False, highlight=False)


def show_colorbar(layer, position: str) -> None:
    """Show an Image layer's colour bar (its values, in the units its name gives) at a corner of the canvas."""
    colorbar = getattr(layer, "colorbar", None)
    if colorbar is None:
        return
    colorbar.position = position
    colorbar.visible = True


def put_in_order(viewer, names) -> None:
    """Move the layers of the viewer into the order ``names`` (bottom to top; every layer's name once).

    By name: a plugin's viewer is napari's proxy, which wraps each layer anew on every access.
    """
    for index, name in enumerate(names):
        current = viewer.layers.index(name)
        if current != index:
            viewer.layers.move(current, index)


def _ours(viewer, names) -> list[str]:
    return [name for name in names if name in viewer.layers and is_output(viewer.layers[name])]


def single_order(viewer, earlier=None) -> list[str]:
    """Every layer's name, the Explore stack on top (in :data:`EXPLORE_STACK` order), the volume layers
    just below it, the rest below those: in the order of the names ``earlier`` (layers it does not name
    after those), or in their own order."""
    stack, volumes = _ours(viewer, EXPLORE_STACK), _ours(viewer, VOLUME_LAYERS)
    others = [layer.name for layer in viewer.layers if layer.name not in stack + volumes]
    if earlier is not None:
        rank = {name: i for i, name in enumerate(earlier)}
        others.sort(key=lambda name: rank.get(name, len(rank)))  # stable: unnamed ones keep their order
    return others + volumes + stack


def compare_order(viewer, ct_name: str) -> tuple[list[str], int]:
    """The layer order of the compare view and the grid's stride: ``(names bottom to top, stride)``.

    napari's grid puts the layers ``[0, stride)`` in the left cell and ``[stride, 2 * stride)`` in the
    right one; hidden layers take no cell. Left: the CT, any other visible layer the user shows, the
    reference outline and the clean segmentation; right: the visible layers of :data:`AFTER`. Hidden
    layers fill the left cell up to ``stride`` (below the CT, so they stay hidden) and follow the right
    cell. Returns a stride of 0 when there are too few hidden layers to fill the left cell.
    """
    visible = {layer.name: layer.visible for layer in viewer.layers}
    before, after = _ours(viewer, BEFORE), _ours(viewer, AFTER)
    mine = set(before + after) | {ct_name}
    others = [name for name, shown in visible.items() if name not in mine and shown]
    left = [ct_name] + others + [name for name in before if visible[name]]
    right = [name for name in after if visible[name]]
    hidden = [name for name in visible if name not in left and name not in right]
    stride = max(len(left), len(right))
    padding = stride - len(left)
    if padding > len(hidden):
        return [], 0
    return hidden[:padding] + left + right + hidden[padding:], stride
