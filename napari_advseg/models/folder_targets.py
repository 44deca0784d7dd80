"""Targets from folders: nnU-Net v2 trained-model folders and MONAI bundles.

Two interfaces:

:func:`load_folder_target`
    A :class:`~napari_advseg.models.target.Target`, what the attack uses.
    For an nnU-Net ``2d`` configuration or a bundle whose network is 2D it
    segments each slice on its own. Its
    :attr:`~napari_advseg.models.target.Target.normalisation` is the folder's
    own scheme (nnU-Net's ``CTNormalization`` is the project's ``ct`` mode with
    the plans' percentiles, mean and std; a bundle's ``ScaleIntensityRanged``
    is a ``window``), so the attack applies its fields in HU and the target's
    clipping is part of the graph. Its model takes the normalised canonical
    slices ``(N, 1, H, W)`` and does the rest of the framework's inference:
    nnU-Net's in-plane resampling to the plans' spacing (set from the volume by
    :func:`fit_target_to_volume`), the sliding window with Gaussian weights,
    the logits resampled back.
    For an nnU-Net ``3d_fullres`` configuration or a 3D bundle it is a *slab
    target* (:attr:`~napari_advseg.models.target.Target.slab_depth` set):
    its model (:class:`NnUNetSlab`, :class:`MonaiSlab`) reads a call's
    ``(D, 1, H, W)`` normalised slices as ``D`` consecutive canonical slices,
    runs the framework's 3D inference on that sub-volume (resampling to the
    plans' or the bundle's spacing included) and returns ``(D, C, H, W)``. On
    a whole volume its argmax is the framework's segmentation.
:func:`load_volume_target`
    A :class:`VolumeTarget` for any of them: ``predict(hu, volume)`` maps a
    canonical ``(Z, Y, X)`` HU tensor to logits ``(C, Z, Y, X)``,
    differentiably, equal to the framework's own prediction (nonzero crop
    and HU-space preprocessing included), the reference the slab targets are
    checked against.

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
from napari_advseg.models.monai_bundle import GEOMETRIC_TRANSFORMS, MonaiBundle, is_monai_bundle, read_monai_bundle
from napari_advseg.models.nnunet_folder import CHECKPOINT_NAMES, NnUNetModel, is_nnunet_folder, read_nnunet_folder
from napari_advseg.models.resample import new_shape_for_spacing, resize_like_nnunet
from napari_advseg.models.sliding_window import monai_starts, round_to, sliding_window
from napari_advseg.models.target import Target, is_volumetric, validate_target
from napari_advseg.models.target_meta import check_class_names, check_normalisation

__all__ = [
    "METRICS_FILE",
    "NnUNetSlices",
    "NnUNetSlab",
    "MonaiSlices",
    "MonaiSlab",
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


# --------------------------------------------------------------------------
# 3D slab targets
# --------------------------------------------------------------------------


class NnUNetSlab(nn.Module):
    """An nnU-Net ``3d_fullres`` configuration as a network on a slab of normalised canonical slices.

    ``forward`` takes ``(D, 1, H, W)``: ``D`` consecutive slices (the slab's
    z), normalised as the plans say (:attr:`Target.normalisation`). Steps:
    flip to nnU-Net's in-plane order, the plans' ``transpose_forward`` (its
    first axis must be z), then nnU-Net's own resampling to the plans'
    spacing, sliding window and resampling back
    (:meth:`~napari_advseg.models.nnunet_folder.NnUNetModel.predict_normalised`),
    and the way back; returns ``(D, C, H, W)``. The spacing is the volume's
    (:meth:`set_spacing`, from :func:`fit_target_to_volume`); before that the
    plans' own.
    """

    def __init__(self, model: NnUNetModel, mirror: bool = False):
        super().__init__()
        self.nnunet = model
        self.networks = nn.ModuleList(model.networks)
        self.mirror = mirror
        forward = model.plan.transpose_forward
        self.spacing = tuple(float(model.plan.spacing[forward.index(a)]) for a in range(3))

    def set_spacing(self, spacing: Sequence[float]) -> None:
        """The volume's voxel size ``(dz, dy, dx)`` (mm), canonical order."""
        if len(spacing) != 3:
            raise AdvsegError(f"a 3D nnU-Net target needs the volume's 3 spacings (dz, dy, dx), got {list(spacing)}")
        self.spacing = tuple(float(s) for s in spacing)

    @property
    def slab_depth(self) -> int:
        """The plans' patch depth in the volume's slices (at least 1)."""
        plan = self.nnunet.plan
        return max(1, int(round(plan.patch_size[0] * plan.spacing[0] / self.spacing[0])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        forward, backward = self.nnunet.plan.transpose_forward, self.nnunet.plan.transpose_backward
        data = torch.flip(x, (-2, -1)).permute(1, 0, 2, 3).permute(0, *[a + 1 for a in forward])
        logits = self.nnunet.predict_normalised(data, [self.spacing[a] for a in forward], mirror=self.mirror)
        logits = logits.permute(0, *[a + 1 for a in backward])
        return torch.flip(logits, (-2, -1)).permute(1, 0, 2, 3)


def _canonical_affine(spacing: Sequence[float]) -> np.ndarray:
    """Voxel ``(z, y, x)`` -> RAS+ mm of a canonical array with this spacing (as ``volume_from_array`` gives)."""
    dz, dy, dx = (float(s) for s in spacing)
    return np.array([[0.0, 0.0, -dx, 0.0], [0.0, -dy, 0.0, 0.0], [dz, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


class MonaiSlab(nn.Module):
    """A 3D MONAI bundle as a network on a slab of normalised canonical slices.

    ``forward`` takes ``(D, 1, H, W)`` consecutive slices normalised by the
    bundle's intensity transform (:attr:`Target.normalisation`), runs the
    bundle's geometric transforms (``Orientationd``, ``Spacingd``: MONAI's
    own, with the volume's affine), its sliding window and their inverse
    (:meth:`~napari_advseg.models.monai_bundle.MonaiBundle.predict`), and
    returns ``(D, C, H, W)``. The intensity transform has run before the
    geometric ones here, so a bundle whose ``Spacingd`` resamples HU before
    its intensity transform is refused (:func:`load_folder_target`): the
    window's clip does not commute with interpolation.
    """

    def __init__(self, bundle: MonaiBundle):
        super().__init__()
        self.bundle = bundle
        self.network = bundle.network
        self.affine = _canonical_affine((1.0, 1.0, 1.0))

    def set_spacing(self, spacing: Sequence[float]) -> None:
        """The volume's voxel size ``(dz, dy, dx)`` (mm), for a volume without its own affine."""
        self.affine = _canonical_affine(spacing)

    def set_affine(self, affine) -> None:
        """The volume's canonical affine (voxel ``(z, y, x)`` -> RAS+ mm)."""
        self.affine = np.asarray(affine, dtype=np.float64)

    @property
    def slab_depth(self) -> int:
        """The bundle's ROI along the volume's z, in the volume's slices (at least 1).

        The bundle's geometric transforms are run on a tiny probe with the
        volume's affine to find which of the network's axes z becomes and its
        voxel size there.
        """
        from monai.data import MetaTensor
        from monai.transforms import Compose

        key = self.bundle.image_key
        probe = MetaTensor(torch.zeros(1, 4, 4, 4), affine=torch.as_tensor(self.affine))
        out = Compose(self.bundle.geometric_transforms)({key: probe})[key]
        columns = np.asarray(out.affine, dtype=np.float64)[:3, :3]
        sizes = np.linalg.norm(columns, axis=0)
        z = self.affine[:3, 0]
        axis = int(np.argmax(np.abs(z @ columns) / sizes))
        return max(1, int(round(self.bundle.roi_size[axis] * sizes[axis] / np.linalg.norm(z))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.bundle.predict(x[:, 0], self.affine, self.bundle.geometric_transforms, device=x.device)
        return logits.permute(1, 0, 2, 3)


def fit_target_to_volume(target, volume) -> None:
    """Tell a target whose model resamples (:class:`NnUNetSlices`, the slab models) the geometry of the volume
    it will see: its voxel size (and affine); a slab target's :attr:`~Target.slab_depth` follows from it."""
    model = getattr(target, "model", None)
    if hasattr(model, "set_spacing") and getattr(volume, "spacing", None) is not None:
        model.set_spacing(volume.spacing)
    if hasattr(model, "set_affine") and getattr(volume, "affine", None) is not None:
        model.set_affine(volume.affine)
    if is_volumetric(target) and hasattr(model, "slab_depth"):
        target.slab_depth = model.slab_depth


def _nnunet_target(path: Path, model: NnUNetModel, class_names, device) -> Target:
    plan = model.plan
    if plan.transpose_forward[0] != 0:
        what = "slices along" if plan.is_2d else "puts first"
        raise InputFileError(path, f"its {plan.configuration} configuration {what} axis {plan.transpose_forward[0]} "
                                   f"(transpose_forward {list(plan.transpose_forward)}), not the axial one (z)")
    normalisation = plan.normalisation()
    if normalisation is None:
        raise InputFileError(path, f"its normalisation {plan.scheme}"
                                   f"{' with use_mask_for_norm' if plan.use_mask_for_norm else ''} has no "
                                   "target form (ct, zscore and none have); use it as a volume target")
    model_on_slices = NnUNetSlices(model) if plan.is_2d else NnUNetSlab(model)
    target = Target(model_on_slices, class_names, check_normalisation(normalisation), "nnunet", str(path), device,
                    notes=list(model.notes))
    if not plan.is_2d:
        target.slab_depth = model_on_slices.slab_depth
    return target


def _monai_target(path: Path, bundle: MonaiBundle, class_names, device) -> Target:
    geometric = [type(t).__name__ for t in bundle.geometric_transforms]
    if bundle.spatial_dims == 2 and geometric:
        raise InputFileError(path, f"its 2D preprocessing resamples or reorients ({', '.join(geometric)}); a 2D "
                                   "target takes the slices as they are")
    if bundle.normalisation is None:
        raise InputFileError(path, "its intensity transform has no project form (ScaleIntensityRanged with "
                                   "clip, or NormalizeIntensityd)")
    names = [type(t).__name__ for t in bundle.transforms]
    if "Spacingd" in names and names.index("Spacingd") < max(i for i, n in enumerate(names)
                                                              if n not in GEOMETRIC_TRANSFORMS):
        raise InputFileError(path, "its Spacingd resamples HU before the intensity transform; a 3D slab target "
                                   "takes normalised slices, where that order cannot be kept (clipping does not "
                                   "commute with interpolation): list the intensity transform first in "
                                   "configs/inference.json, or use the bundle as a volume target")
    model = MonaiSlices(bundle) if bundle.spatial_dims == 2 else MonaiSlab(bundle)
    target = Target(model, class_names, check_normalisation(bundle.normalisation), "monai", str(path), device,
                    notes=list(bundle.notes))
    if bundle.spatial_dims == 3:
        target.slab_depth = model.slab_depth
    return target


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
    """A :class:`Target` from an nnU-Net folder (``2d`` or ``3d_fullres``) or a MONAI bundle (2D or 3D).

    3D networks give slab targets (:attr:`Target.slab_depth` set, see the
    module's docstring); call :func:`fit_target_to_volume` with the volume
    before using one.

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
