"""napari sample data: the shipped abdominal CT phantom, its labels, target and attack.

The CT and the labels are read through the plugin's reader
(:func:`napari_advseg._napari.reader.read_layer`), so they carry the same metadata
and canonical orientation as files opened from disk and can be saved back
with the plugin's writers. The CT layer's metadata also names the shipped
target U-Net and trained generator checkpoints (``advseg_target``: ``unet.pt``,
the frozen segmentation network to attack; ``advseg_generator``:
``generator.pt``, a generator trained against it; see
:mod:`napari_advseg._napari.layers`). The attack dock widget reads these two
entries and makes them its current target and generator.
"""

from __future__ import annotations

__all__ = ["CT_LAYER_NAME", "LABELS_LAYER_NAME", "abdomen_phantom"]

CT_LAYER_NAME = "phantom CT"
LABELS_LAYER_NAME = "reference labels"


def abdomen_phantom() -> list[tuple]:
    """npe2 sample data: the abdominal CT phantom with its reference labels.

    Returns
    -------
    list of tuple
        Two layer data tuples: the CT as an Image named ``"phantom CT"``
        (float32 HU; metadata with ``advseg_target`` and ``advseg_generator``
        besides the reader's entries) and its label map as Labels named
        ``"reference labels"``.

    Raises
    ------
    AdvsegError
        A sample file is missing (the message names the files, the folder
        and the command ``advseg make-sample`` that builds them), or cannot
        be read.
    """
    from napari_advseg._napari.layers import with_models
    from napari_advseg._napari.reader import read_layer
    from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir
    from napari_advseg.errors import AdvsegError

    folder = sample_data_dir()
    paths = {kind: folder / name for kind, name in SAMPLE_FILES.items()}
    missing = [path.name for path in paths.values() if not path.is_file()]
    if missing:
        raise AdvsegError(
            f"the napari-advseg sample data are incomplete: {', '.join(missing)} missing in {folder}; "
            "build them with `advseg make-sample`"
        )
    ct = read_layer(paths["ct"], kind="ct", name=CT_LAYER_NAME)
    labels = read_layer(paths["labels"], kind="labels", name=LABELS_LAYER_NAME)
    with_models(ct[1]["metadata"], target=paths["target"], generator=paths["generator"])
    return [ct, labels]
