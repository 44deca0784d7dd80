"""MONAI bundles as targets, with inference equal to the bundle's own and gradients.

A bundle folder holds ``configs/inference.json`` (the network's
``network_def``, the ``preprocessing`` transforms, the ``inferer``),
``configs/metadata.json`` (the output channels' names under
``network_data_format.outputs.pred.channel_def``) and ``models/model.pt``
(the weights). :func:`read_monai_bundle` parses the config with MONAI's own
``ConfigParser``, builds the network from ``network_def``, loads the weights
with ``torch.load(weights_only=True)`` and keeps the transforms that act on
the image's geometry and intensities (``Orientationd``, ``Spacingd``,
``ScaleIntensityRanged``, ``NormalizeIntensityd``, ``ScaleIntensityd``); the
loading and type transforms are replaced by the volume itself. Any other
transform is refused by name.

:meth:`MonaiBundle.logits` runs those transforms (MONAI's own, on a
``MetaTensor`` that keeps the graph), the sliding window with the inferer's
ROI size, overlap, Gaussian or constant weights (MONAI's own
``compute_importance_map``) and MONAI's window positions, then MONAI's
inverse of the geometric transforms (as the bundle's ``Invertd`` does). A
bundle's config holds Python expressions that parsing runs: load only
bundles you trust.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_advseg.errors import AdvsegError, InputFileError, first_line
from napari_advseg.models.sliding_window import monai_starts, sliding_window
from napari_advseg.models.target import freeze, load_fitting_weights
from napari_advseg.seeding import seeded_build

__all__ = ["MONAI_EXTRA", "MonaiBundle", "is_monai_bundle", "read_monai_bundle"]

MONAI_EXTRA = 'pip install "napari-advseg[monai]"'
"""The install line a MONAI bundle needs."""
KEPT_TRANSFORMS = ("Orientationd", "Spacingd", "ScaleIntensityRanged", "NormalizeIntensityd", "ScaleIntensityd")
"""Preprocessing transforms applied to the volume (MONAI's own objects, in the bundle's order)."""
GEOMETRIC_TRANSFORMS = ("Orientationd", "Spacingd")
"""Kept transforms that reorient or resample the voxels; the others act on intensities alone."""
_MIN_PROBABILITY = 1e-12
"""Floor of the resampled probabilities before their log (a class absent from a voxel)."""
SKIPPED_TRANSFORMS = ("LoadImaged", "EnsureChannelFirstd", "AddChanneld", "EnsureTyped", "ToTensord", "CastToTyped",
                      "ToDeviced")
"""Transforms that load or retype the image: the volume given takes their place."""


def is_monai_bundle(path: Path) -> bool:
    """True for a folder that looks like a MONAI bundle (``configs/`` with ``inference.json`` or ``metadata.json``)."""
    path = Path(path)
    return path.is_dir() and ((path / "configs" / "inference.json").exists()
                              or (path / "configs" / "metadata.json").exists())


def _require_monai(folder: Path):
    try:
        import monai  # noqa: F401
    except ImportError:
        raise AdvsegError(f"{folder} is a MONAI bundle; reading it needs the MONAI extra: {MONAI_EXTRA}") from None


def _class_names(metadata: dict, path: Path, n_classes: int) -> tuple[tuple[str, ...], list[str]]:
    try:
        channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    except (KeyError, TypeError):
        channel_def = None
    if not isinstance(channel_def, dict) or not channel_def:
        names = tuple(["background"] + [f"class_{i}" for i in range(1, n_classes)])
        return names, [f"{path} names no output channels (network_data_format.outputs.pred.channel_def); "
                       f"calling them {', '.join(names)}"]
    try:
        by_index = {int(k): str(v) for k, v in channel_def.items()}
    except (TypeError, ValueError):
        raise InputFileError(path, f"has channel_def keys {list(channel_def)}; expected channel numbers") from None
    if sorted(by_index) != list(range(n_classes)):
        raise InputFileError(path, f"names channels {sorted(by_index)} but the network outputs {n_classes}")
    return tuple(by_index[i] for i in range(n_classes)), []


def _read_weights(path: Path) -> dict:
    if not path.is_file():
        raise InputFileError(path, "is missing: a MONAI bundle needs its weights in models/model.pt")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f" ({match.group(1)})" if match else ""
        raise InputFileError(path, f"holds pickled Python objects{what} that are not loaded for safety; expected "
                                   "a state_dict") from None
    except Exception as error:  # noqa: BLE001
        raise InputFileError(path, f"is not a readable torch file: {first_line(error)}") from None
    if isinstance(state, dict) and len(state) == 1:
        (only,) = state.values()
        if isinstance(only, dict):
            state = only
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputFileError(path, "is not a state_dict (a dict of tensors)")
    return state


@dataclass
class MonaiBundle:
    """A read MONAI bundle: its network (frozen), kept transforms, inferer settings and class names.

    Attributes
    ----------
    path : pathlib.Path
    network : torch.nn.Module
    transforms : list
        The bundle's own transform objects kept (see :data:`KEPT_TRANSFORMS`), in order.
    image_key : str
        The key the transforms act on (``"image"``).
    roi_size : tuple of int
    overlap : float or tuple of float
    mode : str
        ``"gaussian"`` or ``"constant"``.
    sigma_scale : float or tuple of float
    class_names : tuple of str
    normalisation : dict or None
        The intensity transform as a project normalisation (HU), where it has one.
    invert_probabilities : bool
        The bundle's postprocessing takes the softmax before ``Invertd``: the
        probabilities are resampled back, and :meth:`logits` returns their log.
    """

    path: Path
    network: nn.Module
    transforms: list
    image_key: str
    roi_size: tuple[int, ...]
    overlap: float | tuple[float, ...]
    mode: str
    sigma_scale: float | tuple[float, ...]
    padding_value: float
    class_names: tuple[str, ...]
    normalisation: dict | None
    device: torch.device
    invert_probabilities: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def spatial_dims(self) -> int:
        return len(self.roi_size)

    def importance_map(self, device=None) -> torch.Tensor:
        """The inferer's window weights, from MONAI's own ``compute_importance_map``."""
        from monai.data.utils import compute_importance_map

        return compute_importance_map(self.roi_size, mode=self.mode, sigma_scale=self.sigma_scale,
                                      device=device or self.device).float()

    def network_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Sliding-window logits of a preprocessed ``(N, 1, *spatial)`` input, as the bundle's inferer gives them."""
        overlap = self.overlap
        return sliding_window(x, self.network, self.roi_size, lambda size, p: monai_starts(size, p, overlap),
                              self.importance_map(x.device))

    @property
    def geometric_transforms(self) -> list:
        """The kept transforms that move or resample voxels (``Orientationd``, ``Spacingd``), in order."""
        return [t for t in self.transforms if type(t).__name__ in GEOMETRIC_TRANSFORMS]

    def predict(self, image: torch.Tensor, affine, transforms: Sequence, device=None) -> torch.Tensor:
        """Logits ``(C, D0, D1, D2)`` of a ``(D0, D1, D2)`` volume with ``affine`` through ``transforms``.

        ``transforms``: the bundle's own (all of :attr:`transforms` for HU,
        :attr:`geometric_transforms` for data already normalised); then the
        sliding window and MONAI's inverse of the transforms, differentiable
        in ``image``, on ``device`` (default :attr:`device`). Shared by
        :meth:`logits` and the 3D slab target
        (:class:`~napari_advseg.models.folder_targets.MonaiSlab`).
        """
        from monai.data import MetaTensor
        from monai.transforms import Compose

        affine = torch.as_tensor(np.asarray(affine, dtype=np.float64))
        pipeline = Compose(list(transforms))
        image = image.to(device or self.device, torch.float32)
        data = pipeline({self.image_key: MetaTensor(image[None], affine=affine)})
        x = data[self.image_key]
        logits = self.network_logits(x.as_tensor()[None].float())[0]
        if self.invert_probabilities:
            logits = torch.softmax(logits, dim=0)
        pred = MetaTensor(logits, meta=dict(x.meta), applied_operations=list(x.applied_operations))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back = pipeline.inverse({self.image_key: pred})[self.image_key]
        back = back.as_tensor() if isinstance(back, MetaTensor) else back
        return torch.log(back.clamp_min(_MIN_PROBABILITY)) if self.invert_probabilities else back

    def logits(self, image: torch.Tensor, affine) -> torch.Tensor:
        """The bundle's prediction of a 3D volume as logits on the volume's grid, differentiable in ``image``.

        Parameters
        ----------
        image : torch.Tensor
            ``(D0, D1, D2)`` HU.
        affine : array_like
            ``(4, 4)`` voxel -> RAS+ mm of ``image`` (MONAI's convention, nibabel's).

        Returns
        -------
        torch.Tensor
            ``(C, D0, D1, D2)`` logits; their argmax is the bundle's segmentation.
        """
        if self.spatial_dims != 3 or image.ndim != 3:
            raise AdvsegError(f"{self.path}: a {self.spatial_dims}D bundle predicts slices, not a volume")
        return self.predict(image, affine, self.transforms)


def _normalisation_of(transforms: list) -> dict | None:
    from monai.transforms import NormalizeIntensityd, ScaleIntensityRanged

    for t in transforms:
        if isinstance(t, ScaleIntensityRanged):
            scaler = t.scaler
            if not scaler.clip:
                return None
            return {"mode": "window", "window": [float(scaler.a_min), float(scaler.a_max)],
                    "range": [float(scaler.b_min), float(scaler.b_max)]}
        if isinstance(t, NormalizeIntensityd):
            n = t.normalizer
            if n.subtrahend is None and n.divisor is None and not n.nonzero:
                return {"mode": "zscore"}
            return None
    return None


def read_monai_bundle(folder: str | Path, *, device: torch.device | str = "cpu") -> MonaiBundle:
    """Read and check a MONAI bundle folder.

    Raises
    ------
    InputFileError
        Naming the file at fault: a missing ``configs/inference.json``,
        ``configs/metadata.json`` or ``models/model.pt``; a config without
        ``network_def``, ``preprocessing`` or ``inferer``, or whose parsing
        fails; a transform or inferer that is not supported; weights that do
        not fit; a network taking more than one input channel.
    AdvsegError
        When MONAI is not installed (naming the extra).
    """
    folder = Path(folder)
    config_path = folder / "configs" / "inference.json"
    meta_path = folder / "configs" / "metadata.json"
    weights_path = folder / "models" / "model.pt"
    for path, what in ((config_path, "the network, preprocessing and inferer"), (meta_path, "the class names")):
        if not path.is_file():
            raise InputFileError(path, f"is missing: a MONAI bundle needs it ({what})")
    _require_monai(folder)
    from monai.bundle import ConfigParser
    from monai.inferers import SlidingWindowInferer

    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(meta_path, f"cannot be read as JSON: {first_line(error)}") from None
    parser = ConfigParser()
    try:
        parser.read_config(str(config_path))
    except Exception as error:  # noqa: BLE001
        raise InputFileError(config_path, f"cannot be read: {first_line(error)}") from None
    parser["bundle_root"] = str(folder)
    for key in ("network_def", "preprocessing", "inferer"):
        if key not in parser.get():
            raise InputFileError(config_path, f"has no {key!r}")

    def parsed(key):
        try:
            return parser.get_parsed_content(key)
        except Exception as error:  # noqa: BLE001 - the config's own expressions may fail in many ways
            raise InputFileError(config_path, f"its {key!r} cannot be built: {first_line(error)}") from None

    with seeded_build(None):  # its first weights are replaced by the bundle's
        network = parsed("network_def")
    if not isinstance(network, nn.Module):
        raise InputFileError(config_path, f"network_def builds a {type(network).__name__}, not a torch module")
    first = next((p for p in network.parameters() if p.ndim >= 4), None)
    if first is not None and int(first.shape[1]) != 1:
        raise InputFileError(config_path, f"network_def takes {int(first.shape[1])} input channels; a CT gives one")
    load_fitting_weights(network, _read_weights(weights_path), weights_path, "the bundle's network_def")
    preprocessing = parsed("preprocessing")
    steps = list(getattr(preprocessing, "transforms", [preprocessing]))
    kept, image_key = [], "image"
    for step in steps:
        name = type(step).__name__
        if name in SKIPPED_TRANSFORMS:
            continue
        if name not in KEPT_TRANSFORMS:
            raise InputFileError(config_path, f"preprocessing transform {name} is not supported (supported: "
                                              f"{', '.join(KEPT_TRANSFORMS)}; ignored: {', '.join(SKIPPED_TRANSFORMS)})")
        keys = list(getattr(step, "keys", ()))
        image_key = keys[0] if keys else image_key
        kept.append(step)
    inferer = parsed("inferer")
    if not isinstance(inferer, SlidingWindowInferer):
        raise InputFileError(config_path, f"inferer {type(inferer).__name__} is not supported (SlidingWindowInferer)")
    roi = tuple(int(r) for r in np.atleast_1d(inferer.roi_size))
    mode = str(getattr(inferer.mode, "value", inferer.mode))
    if mode not in ("gaussian", "constant"):
        raise InputFileError(config_path, f"inferer mode {mode!r} is not supported (gaussian, constant)")
    padding = str(getattr(inferer.padding_mode, "value", inferer.padding_mode))
    if padding != "constant" or float(inferer.cval) != 0.0:
        raise InputFileError(config_path, f"inferer padding {padding!r} (cval {inferer.cval}) is not supported "
                                          "(constant 0)")
    torch_device = torch.device(device)
    network = freeze(network.to(torch_device))
    with torch.no_grad():
        probe = network(torch.zeros(1, 1, *roi, device=torch_device))
    class_names, notes = _class_names(metadata, meta_path, int(probe.shape[1]))
    overlap = inferer.overlap if np.isscalar(inferer.overlap) else tuple(float(o) for o in inferer.overlap)
    sigma = inferer.sigma_scale if np.isscalar(inferer.sigma_scale) else tuple(inferer.sigma_scale)
    return MonaiBundle(folder, network, kept, image_key, roi, overlap, mode, sigma, 0.0, class_names,
                       _normalisation_of(kept), torch_device, _softmax_before_invert(parser), notes)


def _softmax_before_invert(parser) -> bool:
    """True when the bundle's postprocessing applies a softmax (``Activationsd``) before ``Invertd``."""
    try:
        steps = parser.get()["postprocessing"]["transforms"]
    except (KeyError, TypeError):
        return False
    names = [str(step.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(step, dict) else "" for step in steps]
    if "Invertd" not in names:
        return False
    before = steps[:names.index("Invertd")]
    return any(isinstance(step, dict) and str(step.get("_target_", "")).endswith("Activationsd")
               and step.get("softmax") for step in before)
