"""Creating the plugin's output layers once and then only updating their data.

Per-slice layers are ``(1, Y, X)`` arrays placed on the shown slice with a
translation along Z, so they overlay the CT exactly (same scale) and vanish
on other slices; whole-volume layers are ``(Z, Y, X)``.
"""

from __future__ import annotations

import numpy as np

from napari_advseg._napari.layers import is_output, output_metadata  # noqa: F401  (is_output: re-exported)

ADVERSARIAL = "adversarial image"
BIAS = "bias field"
DEFORMATION = "deformation"
CLEAN_SEG = "clean segmentation"
ADVERSARIAL_SEG = "adversarial segmentation"
WARPED_REFERENCE = "warped reference"
VOLUME_ADVERSARIAL = "adversarial volume"
VOLUME_SEG = "adversarial volume segmentation"

SLICE_LAYERS = (ADVERSARIAL, BIAS, CLEAN_SEG, ADVERSARIAL_SEG, WARPED_REFERENCE, DEFORMATION)


def organ_colormap():
    """A DirectLabelColormap with the plugin's organ colours (grey for other values)."""
    from napari.utils.colormaps import DirectLabelColormap

    from napari_advseg.organs import ORGAN_COLOURS

    colours = dict(ORGAN_COLOURS)
    colours[None] = (0.6, 0.6, 0.6, 1.0)
    return DirectLabelColormap(color_dict=colours)


def arrow_colormap():
    """Cyan (short) to yellow to red (long): bright on CT grey at every length."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=[[0.2, 0.9, 1.0, 1.0], [1.0, 0.95, 0.2, 1.0], [1.0, 0.2, 0.1, 1.0]],
                    name="advseg arrows", interpolation="linear")


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


def show_labels(viewer, name: str, data: np.ndarray, geo: dict, in_place: bool = False, **kwargs):
    """Add a Labels layer with the organ colours, or update the existing one (``contour`` on creation).

    Unchanged data is not set again (napari would redraw the layer, contours and all).
    """
    layer = _existing(viewer, name, "Labels")
    if layer is None:
        contour = kwargs.pop("contour", 0)
        layer = viewer.add_labels(np.array(data) if in_place else data, name=name, colormap=organ_colormap(),
                                  metadata=output_metadata(), **geo, **kwargs)
        layer.contour = contour
        return layer
    _place(layer, geo)
    if not np.array_equal(layer.data, data):  # e.g. the clean segmentation: the same for every code
        _set_data(layer, data, in_place)
    return layer


def show_vectors(viewer, name: str, vectors: np.ndarray, magnitude: np.ndarray, geo: dict,
                 max_length: float, arrow_spacing: float = 6.0, **kwargs):
    """Add a Vectors layer coloured by arrow length (0 .. ``max_length`` pixels), or update it.

    The same number of arrows as before (the same slice) is written into the layer's own array. An
    update leaves the layer-list thumbnail (which napari draws arrow by arrow) to :func:`refresh_thumbnail`.
    """
    layer = _existing(viewer, name, "Vectors")
    features = {"magnitude": np.asarray(magnitude, dtype=np.float32)}
    if layer is None:
        # Displacements are often a pixel or less: draw them longer, by a factor chosen once
        # (shown as the layer's "length"), so that the longest arrow of the first slice is
        # about as long as the arrows are apart.
        longest = float(np.max(magnitude)) if len(magnitude) else 0.0
        length = float(np.clip(np.round(0.8 * arrow_spacing / max(longest, 1e-3)), 1.0, 20.0))
        return viewer.add_vectors(np.array(vectors), name=name, features=features, edge_color="magnitude",
                                  edge_colormap=arrow_colormap(), edge_contrast_limits=(0.0, max(max_length, 1e-3)),
                                  length=length, metadata=output_metadata(), **geo, **kwargs)
    _place(layer, geo)
    if layer.data.shape == vectors.shape:
        layer.data[...] = vectors
    else:
        layer.data = np.array(vectors)
    layer.features = features  # recolours the arrows by the new magnitudes
    layer.refresh(thumbnail=False)  # the extent too: the same number of arrows may lie on another slice
    return layer


def refresh_thumbnail(viewer, name: str) -> None:
    """Redraw the layer-list thumbnail of an output layer, if there is one (see :func:`show_vectors`)."""
    layer = _existing(viewer, name, "Vectors")
    if layer is not None:
        layer.refresh(data_displayed=False, extent=False, highlight=False)
