"""Targets from folders: nnU-Net v2 trained-model folders and MONAI bundles.

Two interfaces, one per kind of network:

:func:`load_folder_target`
    A 2D :class:`~napari_advseg.models.target.Target`, what the attack uses:
    an nnU-Net ``2d`` configuration or a bundle whose network is 2D. Its
    :attr:`~napari_advseg.models.target.Target.normalisation` is the folder's
    own scheme (nnU-Net's ``CTNormalization`` is the project's ``ct`` mode with
    the plans' percentiles, mean and std; a bundle's ``ScaleIntensityRanged``
    is a ``window``), so the attack applies its fields in HU and the target's
    clipping is part of the graph. Its model takes the normalised canonical
    slices ``(N, 1, H, W)`` and does the rest of the framework's inference:
    nnU-Net's in-plane resampling to the plans' spacing (set from the volume by
    :func:`fit_target_to_volume`), the sliding window with Gaussian weights,
    the logits resampled back.
:func:`load_volume_target`
    A :class:`VolumeTarget` for any of them, ``3d_fullres`` and 3D bundles
    included: ``predict(hu, volume)`` maps a canonical ``(Z, Y, X)`` HU tensor
    to logits ``(C, Z, Y, X)``, differentiably, equal to the framework's own
    prediction. The 2D attack cannot use it yet; it is the interface a volume
    attack builds on.

Array order: the project's canonical volumes run (inferior->superior,
anterior->posterior, right->left). nnU-Net networks see the image in the
order SimpleITK reads their training files; for files stored in RAS (what
TotalSegmentator and most NIfTI converters write) that is (S, A, R), the
canonical order with the second and third axes flipped, which is what these
targets give them. A MONAI bundle gets the volume with its affine and
reorients it itself (``Orientationd``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_advseg.errors import AdvsegError, InputFileError
from napari_advseg.device import resolve_device
from napari_advseg.io.atomic import file_sha256
from napari_advseg.io.sidecar import read_sidecar_object
from napari_advseg.models.monai_bundle import MonaiBundle, is_monai_bundle, read_monai_bundle
from napari_advseg.models.nnunet_folder import CHECKPOINT_NAMES, NnUNetModel, is_nnunet_folder, read_nnunet_folder
from napari_advseg.models.resample import new_shape_for_spacing, resize_like_nnunet
from napari_advseg.models.sliding_window import monai_starts, round_to, sliding_window
from napari_advseg.models.target import Target, validate_target
from napari_advseg.models.target_meta import check_class_names, check_normalisation

__all__ = [
    "METRICS_FILE",
    "NnUNetSlices",
    "MonaiSlices",
    "VolumeTarget",
    "fit_target_to_volume",
    "folder_kind",
    "load_folder_target",
    "load_volume_target",
    "weights_sha256",
]

METRICS_FILE = "advseg_metrics.json"
"""A folder target's scores and hardening record (``Target.metrics``), written by ``advseg harden``."""

_SITK_FLIPS = (1, 2)
"""Canonical (S, P, L) -> (S, A, R): the axes flipped for an nnU-Net network."""


def folder_kind(path: Path) -> str:
    """``"nnunet"`` or ``"monai"`` for a folder of that kind; InputFileError naming what a target folder holds."""
    path = Path(path)
    if is_monai_bundle(path):
        return "monai"
    if is_nnunet_folder(path) or (path / "dataset.json").exists():
        return "nnunet"
    raise InputFileError(path, "is a folder but neither an nnU-Net trained-model folder (dataset.json, plans.json, "
                               "fold_K/checkpoint_final.pth) nor a MONAI bundle (configs/inference.json, "
                               "configs/metadata.json, models/model.pt)")


def _weight_files(path: Path) -> list[Path]:
    """The files that make a folder target's network: its JSON declarations and its weights."""
    if folder_kind(path) == "monai":
        names = ["configs/inference.json", "configs/metadata.json", "models/model.pt"]
    else:
        names = ["dataset.json", "plans.json"] + [f"{fold.name}/{name}" for fold in sorted(path.glob("fold_*"))
                                                   for name in CHECKPOINT_NAMES]
    return [path / name for name in names if (path / name).is_file()]


def weights_sha256(path: str | os.PathLike | None) -> str | None:
    """SHA-256 identifying a target: a model file's bytes, or a folder's declarations and checkpoints.

    For a folder it is the digest of each file's relative path and SHA-256
    (``dataset.json``, ``plans.json`` and every fold's checkpoints, or the
    bundle's two configs and ``models/model.pt``). None for no path or a path
    that is neither a file nor a target folder.
    """
    if not path:
        return None
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        return None
    try:
        files = _weight_files(path)
    except InputFileError:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _folder_metrics(path: Path) -> dict:
    """The scores and hardening record of :data:`METRICS_FILE` in a target folder, ``{}`` where there is none."""
    file = path / METRICS_FILE
    if not file.is_file():
        return {}
    return read_sidecar_object(file, path)


# --------------------------------------------------------------------------
# 2D targets
# --------------------------------------------------------------------------


class NnUNetSlices(nn.Module):
    """An nnU-Net ``2d`` configuration as a network on normalised canonical slices ``(N, 1, H, W)``.

    Steps: flip to nnU-Net's in-plane order; resample each slice from
    :attr:`pixel_spacing` to the plans' spacing (spline order 3, clipped per
    slice); nnU-Net's sliding window (folds averaged, half-precision sums);
    logits back to the slice's grid (order 1); flip back. The per-slice clip
    is nnU-Net's for volumes whose slices are over 3 times thicker than their
    pixels (the usual CT); for near-isotropic volumes nnU-Net clips over the
    whole volume, which a batch of slices cannot know.
    """

    def __init__(self, model: NnUNetModel, mirror: bool = False):
        super().__init__()
        self.nnunet = model
        self.networks = nn.ModuleList(model.networks)
        self.mirror = mirror
        self.pixel_spacing = tuple(model.plan.spacing)

    def set_spacing(self, spacing: Sequence[float]) -> None:
        """The slices' pixel size (mm): ``(dy, dx)``, or a volume's ``(dz, dy, dx)``."""
        self.pixel_spacing = tuple(float(s) for s in spacing[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.nnunet.plan
        x = torch.flip(x, (-2, -1))
        size = tuple(int(s) for s in x.shape[-2:])
        new = new_shape_for_spacing(size, self.pixel_spacing, plan.spacing)
        res = plan.data_resampling
        data = resize_like_nnunet(x.permute(1, 0, 2, 3), (x.shape[0], *new), order=res["order"], separate_axis=0)
        logits = self.nnunet.network_logits(data.permute(1, 0, 2, 3), mirror=self.mirror)
        res = plan.logits_resampling
        back = resize_like_nnunet(logits.permute(1, 0, 2, 3), (x.shape[0], *size), order=res["order"],
                                  separate_axis=0)
        return torch.flip(round_to(back, torch.float16).permute(1, 0, 2, 3), (-2, -1))


class MonaiSlices(nn.Module):
    """A 2D MONAI bundle as a network on normalised slices: the bundle's sliding window and weights."""

    def __init__(self, bundle: MonaiBundle):
        super().__init__()
        self.bundle = bundle
        self.network = bundle.network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bundle.network_logits(x)


def fit_target_to_volume(target, volume) -> None:
    """Tell a target whose model resamples (:class:`NnUNetSlices`) the voxel size of the volume it will see."""
    model = getattr(target, "model", None)
    if hasattr(model, "set_spacing") and getattr(volume, "spacing", None) is not None:
        model.set_spacing(volume.spacing)


def _nnunet_target(path: Path, model: NnUNetModel, class_names, device) -> Target:
    plan = model.plan
    if not plan.is_2d:
        raise InputFileError(path, f"is an nnU-Net {plan.configuration} folder: the attack works on 2D slices and "
                                   "needs a 2d configuration; a 3D one is a volume target (load_volume_target)")
    if plan.transpose_forward[0] != 0:
        raise InputFileError(path, f"its 2d configuration slices along axis {plan.transpose_forward[0]} "
                                   f"(transpose_forward {list(plan.transpose_forward)}), not along the axial one")
    normalisation = plan.normalisation()
    if normalisation is None:
        raise InputFileError(path, f"its normalisation {plan.scheme}"
                                   f"{' with use_mask_for_norm' if plan.use_mask_for_norm else ''} has no 2D "
                                   "target form (ct, zscore and none have); use it as a volume target")
    return Target(NnUNetSlices(model), class_names, check_normalisation(normalisation), "nnunet", str(path),
                  device, notes=list(model.notes))


def _monai_target(path: Path, bundle: MonaiBundle, class_names, device) -> Target:
    if bundle.spatial_dims != 2:
        raise InputFileError(path, f"is a {bundle.spatial_dims}D MONAI bundle: the attack works on 2D slices; a 3D "
                                   "bundle is a volume target (load_volume_target)")
    geometric = [type(t).__name__ for t in bundle.transforms if type(t).__name__ in ("Orientationd", "Spacingd")]
    if geometric:
        raise InputFileError(path, f"its 2D preprocessing resamples or reorients ({', '.join(geometric)}); a 2D "
                                   "target takes the slices as they are")
    if bundle.normalisation is None:
        raise InputFileError(path, "its intensity transform has no project form (ScaleIntensityRanged with "
                                   "clip, or NormalizeIntensityd)")
    return Target(MonaiSlices(bundle), class_names, check_normalisation(bundle.normalisation), "monai", str(path),
                  device, notes=list(bundle.notes))


def _names(given, declared, path: Path) -> tuple[str, ...]:
    if given is None:
        return tuple(declared)
    try:
        names = check_class_names(given)
    except ValueError as error:
        raise AdvsegError(f"{path}: {error}") from None
    if len(names) != len(declared):
        raise AdvsegError(f"{path}: {len(names)} class names were given but the network outputs {len(declared)} "
                          f"({', '.join(declared)})")
    return names


def load_folder_target(
    path: str | os.PathLike,
    device: str | torch.device | None = "auto",
    *,
    class_names: Sequence[str] | None = None,
    normalisation: dict | None = None,
    folds: Sequence[str | int] | None = None,
    configuration: str | None = None,
) -> Target:
    """A 2D :class:`Target` from an nnU-Net ``2d`` folder or a 2D MONAI bundle.

    ``class_names`` renames the outputs (same count); ``normalisation`` is
    refused (the folder declares its own). ``folds`` and ``configuration`` are
    those of :func:`~napari_advseg.models.nnunet_folder.read_nnunet_folder`.
    """
    path = Path(path)
    if normalisation is not None:
        raise AdvsegError(f"{path}: a folder target declares its own normalisation; --normalisation applies to "
                          "model files")
    torch_device = resolve_device(device)
    kind = folder_kind(path)
    if kind == "nnunet":
        model = read_nnunet_folder(path, folds=folds, configuration=configuration, device=torch_device)
        target = _nnunet_target(path, model, _names(class_names, model.class_names, path), torch_device)
    else:
        if folds:
            raise AdvsegError(f"{path}: --fold applies to nnU-Net folders, not to MONAI bundles")
        bundle = read_monai_bundle(path, device=torch_device)
        target = _monai_target(path, bundle, _names(class_names, bundle.class_names, path), torch_device)
    target.metrics = _folder_metrics(path)
    validate_target(target, 64, 64)
    return target


# --------------------------------------------------------------------------
# volume targets
# --------------------------------------------------------------------------


@dataclass
class VolumeTarget:
    """A frozen network that predicts a whole volume, differentiably.

    Call it with a canonical ``(Z, Y, X)`` HU tensor and the volume it comes
    from (for its ``spacing`` and ``affine``, a
    :class:`~napari_advseg.io.geometry.CTVolume`); it returns logits
    ``(C, Z, Y, X)`` on the same grid whose argmax is the framework's own
    segmentation, with gradients to the HU.
    """

    kind: str
    path: str
    class_names: tuple[str, ...]
    device: torch.device
    source: NnUNetModel | MonaiBundle
    mirror: bool = False
    notes: list[str] = field(default_factory=list)

    def __call__(self, hu: torch.Tensor, volume) -> torch.Tensor:
        hu = torch.as_tensor(hu)
        if self.kind == "nnunet":
            logits = self.source.logits(torch.flip(hu, _SITK_FLIPS), volume.spacing, mirror=self.mirror)
            return torch.flip(logits, tuple(a + 1 for a in _SITK_FLIPS))
        return self.source.logits(hu, np.asarray(volume.affine, dtype=np.float64))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def load_volume_target(
    path: str | os.PathLike,
    device: str | torch.device | None = "auto",
    *,
    folds: Sequence[str | int] | None = None,
    configuration: str | None = None,
    mirror: bool = False,
) -> VolumeTarget:
    """A :class:`VolumeTarget` from an nnU-Net folder (any configuration but a cascade) or a 3D MONAI bundle.

    ``mirror`` averages nnU-Net's mirror images (its predictor's default, 4x
    the network calls in 2D and 8x in 3D); the bundle's inferer has none.
    """
    path = Path(path)
    torch_device = resolve_device(device)
    if folder_kind(path) == "nnunet":
        model = read_nnunet_folder(path, folds=folds, configuration=configuration, device=torch_device)
        return VolumeTarget("nnunet", str(path), model.class_names, torch_device, model, mirror, list(model.notes))
    bundle = read_monai_bundle(path, device=torch_device)
    if bundle.spatial_dims != 3:
        raise InputFileError(path, f"is a {bundle.spatial_dims}D MONAI bundle; load it as a 2D target")
    return VolumeTarget("monai", str(path), bundle.class_names, torch_device, bundle, False, list(bundle.notes))
